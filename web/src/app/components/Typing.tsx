/**
 * Issue 17 — "Alice is typing…": received typing signals (ephemeral, never stored) shown for a few seconds
 * unless refreshed, and the privacy setting that turns them off both ways.
 * @module
 */
import { createSignal, onCleanup, onMount, Show } from 'solid-js';
import { useStore } from '../store/index.js';
import { TYPING_SHOW_MS } from '../store/message-actions.js';

/** "Alice is typing…", "Alice and Bob are typing…", "Several people are typing…". */
export function typingText(names: readonly string[]): string {
  if (names.length === 0) return '';
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return 'Several people are typing…';
}

export function TypingIndicator(props: { conversationId: string }) {
  const { state, actions } = useStore();
  const [who, setWho] = createSignal<string[]>([]);
  const timers = new Map<string, ReturnType<typeof setTimeout>>();
  const drop = (u: string) => {
    clearTimeout(timers.get(u));
    timers.delete(u);
    setWho((l) => l.filter((x) => x !== u));
  };
  onMount(() => {
    const off = actions.watchTyping((e) => {
      if (e.conversationId !== props.conversationId || e.userId === state.me?.userId) return;
      if (!e.on) return drop(e.userId);
      clearTimeout(timers.get(e.userId));
      timers.set(
        e.userId,
        setTimeout(() => drop(e.userId), TYPING_SHOW_MS),
      );
      setWho((l) => (l.includes(e.userId) ? l : [...l, e.userId]));
    });
    onCleanup(() => {
      off();
      for (const t of timers.values()) clearTimeout(t);
    });
  });
  return (
    <p
      class="h-5 bg-slate-50 px-4 text-xs text-slate-600 italic dark:bg-slate-950 dark:text-slate-300"
      aria-live="polite"
      data-testid="typing-indicator"
    >
      <Show when={who().length}>{typingText(who().map((u) => actions.nameOf(u)))}</Show>
    </p>
  );
}

/** Account › General: typing indicators on or off (off: neither sent nor shown). */
export function TypingSetting() {
  const { actions } = useStore();
  const [on, setOn] = createSignal(true);
  onMount(() => void actions.typingIndicators().then(setOn, () => undefined));
  return (
    <label class="flex items-start gap-3 text-sm">
      <input
        type="checkbox"
        class="mt-0.5 size-4"
        checked={on()}
        onChange={(e) => {
          const next = e.currentTarget.checked;
          setOn(next);
          void actions.setTypingIndicators(next).catch(() => actions.toast('Could not save the setting', 'error'));
        }}
        data-testid="typing-setting"
      />
      <span>
        <span class="font-medium">Typing indicators</span>
        <span class="block text-slate-600 dark:text-slate-400">
          Show when others are typing and let them see when you are. When off, you neither send nor see them.
        </span>
      </span>
    </label>
  );
}
