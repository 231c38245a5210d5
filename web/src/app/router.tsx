/**
 * A tiny pushState router: the current path as a signal, `navigate`, `<Link>` (plain anchors that route
 * without reloading; modified clicks keep browser behaviour) and `match` for `:param` patterns.
 * @module
 */
import { createSignal, type JSX, splitProps } from 'solid-js';

const [path, setPath] = createSignal(typeof location === 'undefined' ? '/' : location.pathname);
if (typeof window !== 'undefined') window.addEventListener('popstate', () => setPath(location.pathname));

export { path };

export function navigate(to: string, opts: { replace?: boolean } = {}): void {
  if (to === location.pathname) return;
  history[opts.replace ? 'replaceState' : 'pushState'](null, '', to);
  setPath(to);
}

export { match } from './logic.js';

export function Link(props: JSX.AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  const [own, rest] = splitProps(props, ['href', 'onClick']);
  return (
    <a
      {...rest}
      href={own.href}
      onClick={(e) => {
        if (typeof own.onClick === 'function') own.onClick(e);
        if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(own.href);
      }}
    />
  );
}
