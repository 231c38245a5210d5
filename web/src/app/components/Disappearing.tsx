/**
 * Issue 17 — disappearing messages: the conversation's timer (off, 5 minutes … 4 weeks), set with a signed
 * membership entry by whoever the log allows (owners and admins in a group, either person in a direct chat),
 * so every member's device agrees on it; the change appears in the timeline as an info line.
 * @module
 */
import { createSignal, For, Show } from 'solid-js';
import { useStore } from '../store/index.js';
import { TIMER_CHOICES, timerLabel } from '../timeline.js';
import { errorText, inputClass } from './ui.js';

export function DisappearingSetting(props: { id: string }) {
  const { state, actions } = useStore();
  const conv = () => state.conversations[props.id];
  const [busy, setBusy] = createSignal(false);
  const [error, setError] = createSignal<string | null>(null);
  const allowed = () => {
    const c = conv();
    if (!c?.myRole) return false;
    return c.kind === 'direct' || c.members.length <= 2 || c.myRole === 'owner' || c.myRole === 'admin';
  };
  const current = () => conv()?.timer ?? 0;
  const choices = () => (TIMER_CHOICES.includes(current()) ? TIMER_CHOICES : [...TIMER_CHOICES, current()]);
  return (
    <section aria-labelledby="timer-h" class="space-y-1.5">
      <h2 id="timer-h" class="text-sm font-semibold text-slate-500 uppercase dark:text-slate-400">
        Disappearing messages
      </h2>
      <label class="block text-sm" for="timer-select">
        New messages disappear from every device after
      </label>
      <select
        id="timer-select"
        class={`${inputClass} max-w-xs`}
        value={String(current())}
        disabled={!allowed() || busy()}
        aria-describedby="timer-hint"
        onChange={async (e) => {
          const seconds = Number(e.currentTarget.value);
          setBusy(true);
          setError(null);
          try {
            await actions.setTimer(props.id, seconds);
          } catch (err) {
            setError(errorText(err));
            e.currentTarget.value = String(current());
          } finally {
            setBusy(false);
          }
        }}
        data-testid="timer-select"
      >
        <For each={choices()}>{(s) => <option value={String(s)}>{timerLabel(s)}</option>}</For>
      </select>
      <p id="timer-hint" class="text-xs text-slate-600 dark:text-slate-400">
        {allowed()
          ? 'Everyone here sees the change. Messages sent before it keep their own timer.'
          : 'Only owners and admins can change this in a group.'}
      </p>
      <Show when={error()}>
        <p class="text-xs text-red-700 dark:text-red-400" role="alert">
          {error()}
        </p>
      </Show>
    </section>
  );
}
