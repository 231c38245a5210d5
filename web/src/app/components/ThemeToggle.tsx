/** Cycles the colour theme: system → light → dark. */
import { useStore } from '../store/index.js';
import type { Theme } from '../store/state.js';
import { focusRing } from './ui.js';

const NEXT: Record<Theme, Theme> = { system: 'light', light: 'dark', dark: 'system' };
const ICON: Record<Theme, string> = { system: '◐', light: '☀', dark: '☾' };

export function ThemeToggle() {
  const { state, actions } = useStore();
  return (
    <button
      type="button"
      class={`rounded-lg px-2 py-1.5 text-slate-600 hover:bg-slate-100 dark:text-slate-300 dark:hover:bg-slate-800 ${focusRing}`}
      aria-label={`Theme: ${state.theme}. Switch to ${NEXT[state.theme]}`}
      title={`Theme: ${state.theme}`}
      onClick={() => actions.setTheme(NEXT[state.theme])}
    >
      <span aria-hidden="true">{ICON[state.theme]}</span>
    </button>
  );
}
