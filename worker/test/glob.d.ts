// Vite's `import.meta.glob` (eager, raw text) in workerd tests — used by source scans such as the
// "no string-built SQL" check (PITFALLS 26).
interface ImportMeta {
  glob<T = unknown>(
    pattern: string | string[],
    options?: { query?: string; import?: string; eager?: boolean },
  ): Record<string, T>;
}
