/**
 * UI preferences and notices: the colour theme (system / light / dark, applied as the `dark` class on
 * <html>) and toasts.
 * @module
 */
import type { Actions, SetState, State, Theme } from './state.js';

const THEME_KEY = 'e2e-chat:theme';

export function applyTheme(theme: Theme): void {
  const dark =
    theme === 'dark' || (theme === 'system' && globalThis.matchMedia?.('(prefers-color-scheme: dark)').matches);
  document.documentElement.classList.toggle('dark', !!dark);
}

export function createUi(actions: Actions, state: State, setState: SetState): void {
  const saved = (typeof localStorage !== 'undefined' && localStorage.getItem(THEME_KEY)) as Theme | null;
  if (saved === 'light' || saved === 'dark' || saved === 'system') setState('theme', saved);
  applyTheme(state.theme);
  globalThis.matchMedia?.('(prefers-color-scheme: dark)').addEventListener?.('change', () => applyTheme(state.theme));
  globalThis.addEventListener?.('online', () => {
    setState('browserOnline', true);
    if (state.me) void actions.reconnect();
  });
  globalThis.addEventListener?.('offline', () => setState('browserOnline', false));

  let nextToast = 1;
  Object.assign(actions, {
    setTheme(t: Theme) {
      setState('theme', t);
      localStorage.setItem(THEME_KEY, t);
      applyTheme(t);
    },
    toast(text: string, kind: 'info' | 'error' = 'info') {
      const id = nextToast++;
      setState('toasts', (l) => [...l, { id, kind, text }]);
      setTimeout(() => actions.dismissToast(id), kind === 'error' ? 8000 : 4000);
    },
    dismissToast(id: number) {
      setState('toasts', (l) => l.filter((t) => t.id !== id));
    },
  } satisfies Partial<Actions>);
}
