// Vite's `?raw` imports (text of a file) in workerd tests.
declare module '*?raw' {
  const text: string;
  export default text;
}
