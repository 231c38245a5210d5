/** Toast notices in a polite live region (errors assertive), dismissible, keyboard-reachable, in a named region. */
import { For } from 'solid-js';
import { useStore } from '../store/index.js';
import { focusRing } from './ui.js';

export function Toasts() {
  const { state, actions } = useStore();
  return (
    <section aria-label="Notifications">
      <ol class="pointer-events-none fixed right-0 bottom-0 z-50 flex w-full max-w-sm flex-col gap-2 p-4">
        <For each={state.toasts}>
          {(t) => (
            <li
              role={t.kind === 'error' ? 'alert' : 'status'}
              class={`pointer-events-auto flex items-start gap-3 rounded-xl px-4 py-3 text-sm shadow-lg ring-1 ${
                t.kind === 'error'
                  ? 'bg-red-600 text-white ring-red-700'
                  : 'bg-slate-900 text-white ring-slate-800 dark:bg-slate-100 dark:text-slate-900'
              }`}
            >
              <span class="flex-1">{t.text}</span>
              <button
                type="button"
                class={`rounded px-1 opacity-80 hover:opacity-100 ${focusRing}`}
                aria-label="Dismiss"
                onClick={() => actions.dismissToast(t.id)}
              >
                ✕
              </button>
            </li>
          )}
        </For>
      </ol>
    </section>
  );
}
