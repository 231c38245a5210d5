/**
 * Issue 17 — what a person does with one message: reply (a quote that jumps to the original), react (one
 * emoji per person, grouped with counts; pressing your own removes it), edit your own text within 24 h and
 * delete for everyone (your own, or anyone's as a group's owner or admin). The rules are the engine's
 * (docs/PROTOCOL.md §"Content types"); this only offers what it would accept.
 * @module
 */
import { createSignal, For, onCleanup, Show } from 'solid-js';
import type { MessageView, QuoteView } from '../../engine/context.js';
import { useStore } from '../store/index.js';
import { focusRing } from './ui.js';

/** The reactions offered in one tap (any single emoji is valid on the wire). */
export const QUICK_REACTIONS = ['👍', '❤️', '😂', '😮', '😢', '🙏'] as const;
/** Matches EDIT_WINDOW_MS: the menu stops offering Edit when the engine would refuse it. */
const EDIT_WINDOW_MS = 24 * 3600 * 1000;

/** Whether the engine would accept our edit of `m` now. */
export function canEdit(m: MessageView, now = Date.now()): boolean {
  return (
    m.outgoing &&
    m.seq !== null &&
    m.body !== null &&
    !m.deleted &&
    !m.attachment &&
    m.unsupported === undefined &&
    (m.status === 'sent' || m.status === 'delivered') &&
    now - (m.ts ?? m.sentAt) <= EDIT_WINDOW_MS
  );
}

/** Whether a message can be acted on at all (sequenced, readable, not deleted). */
export function canAct(m: MessageView): boolean {
  return m.seq !== null && !m.deleted && m.status !== 'undecryptable' && m.unsupported === undefined;
}

/** The quoted message inside a reply: author and excerpt; activating it jumps to the original. */
export function QuoteBlock(props: { quote: QuoteView; outgoing: boolean; onJump: (id: string) => void }) {
  const { actions } = useStore();
  return (
    <button
      type="button"
      class={`mb-1 block w-full rounded-md border-l-4 px-2 py-1 text-left text-xs ${
        props.outgoing
          ? 'border-white/80 bg-blue-800 text-white'
          : 'border-blue-600 bg-slate-100 text-slate-800 dark:border-blue-400 dark:bg-slate-700 dark:text-slate-100'
      } ${focusRing}`}
      onClick={() => props.onJump(props.quote.id)}
      data-testid="quote"
      data-quote-id={props.quote.id}
    >
      <span class="block font-semibold">{actions.nameOf(props.quote.author)}</span>
      <span class="line-clamp-2 break-words">{props.quote.text ?? <em>The original message was deleted.</em>}</span>
      <span class="sr-only"> (show the original message)</span>
    </button>
  );
}

/** Reactions grouped by emoji with counts (our pending change shown until the server has sequenced it). */
export function Reactions(props: { m: MessageView; me: string | undefined; onToggle: (emoji: string) => void }) {
  const { actions } = useStore();
  const groups = () => {
    let list = [...(props.m.reactions ?? [])];
    const pending = props.m.pending?.react;
    if (pending !== undefined) {
      list = list.filter((r) => r.userId !== props.me);
      if (pending !== '') list.push({ userId: props.me ?? '', emoji: pending, seq: Number.MAX_SAFE_INTEGER });
    }
    const by = new Map<string, string[]>();
    for (const r of list) by.set(r.emoji, [...(by.get(r.emoji) ?? []), r.userId]);
    return [...by.entries()].map(([emoji, users]) => ({ emoji, users, mine: users.includes(props.me ?? '') }));
  };
  return (
    <Show when={groups().length}>
      <div class="mt-1 flex flex-wrap gap-1" data-testid="reactions">
        <For each={groups()}>
          {(g) => (
            <button
              type="button"
              class={`inline-flex items-center gap-1 rounded-full px-2 py-0.5 text-xs ring-1 ${
                g.mine
                  ? 'bg-blue-100 text-blue-900 ring-blue-400 dark:bg-blue-900 dark:text-blue-50 dark:ring-blue-500'
                  : 'bg-white text-slate-800 ring-slate-300 dark:bg-slate-800 dark:text-slate-100 dark:ring-slate-600'
              } ${focusRing}`}
              aria-pressed={g.mine ? 'true' : 'false'}
              title={g.users.map((u) => actions.nameOf(u)).join(', ')}
              aria-label={`${g.emoji} ${g.users.length}: ${g.users.map((u) => actions.nameOf(u)).join(', ')}${g.mine ? ' (press to remove yours)' : ''}`}
              onClick={() => props.onToggle(g.mine ? '' : g.emoji)}
              data-testid="reaction"
              data-emoji={g.emoji}
              data-count={g.users.length}
            >
              <span aria-hidden="true">{g.emoji}</span>
              <span aria-hidden="true">{g.users.length}</span>
            </button>
          )}
        </For>
      </div>
    </Show>
  );
}

/** The "⋯" button of a message and its menu: quick reactions, Reply, Edit, Delete for everyone. */
export function MessageMenu(props: {
  m: MessageView;
  canDelete: boolean;
  onReply: () => void;
  onReact: (emoji: string) => void;
  onEdit: () => void;
  onDelete: () => void;
}) {
  const [open, setOpen] = createSignal(false);
  let root!: HTMLDivElement;
  let trigger!: HTMLButtonElement;
  const close = (refocus = true) => {
    setOpen(false);
    if (refocus) trigger.focus();
  };
  const outside = (e: PointerEvent) => {
    if (open() && !root.contains(e.target as Node)) setOpen(false);
  };
  const onEscape = (e: KeyboardEvent) => {
    if (e.key === 'Escape' && open() && root.contains(document.activeElement)) {
      e.stopPropagation();
      close();
    }
  };
  document.addEventListener('pointerdown', outside);
  document.addEventListener('keydown', onEscape, true);
  onCleanup(() => {
    document.removeEventListener('pointerdown', outside);
    document.removeEventListener('keydown', onEscape, true);
  });
  const pick = (fn: () => void) => () => {
    close(false);
    fn();
  };
  const item = `block w-full rounded-md px-3 py-1.5 text-left text-sm hover:bg-slate-100 dark:hover:bg-slate-700 ${focusRing}`;
  return (
    <div ref={root} class="relative self-center">
      <button
        ref={trigger}
        type="button"
        class={`rounded-full px-2 py-0.5 text-slate-600 hover:bg-slate-200 dark:text-slate-300 dark:hover:bg-slate-800 ${focusRing}`}
        aria-label="Message actions"
        aria-haspopup="true"
        aria-expanded={open() ? 'true' : 'false'}
        onClick={() => {
          setOpen(!open());
          if (open()) queueMicrotask(() => root.querySelector<HTMLButtonElement>('[data-first]')?.focus());
        }}
        data-testid="message-menu"
      >
        <span aria-hidden="true">⋯</span>
      </button>
      <Show when={open()}>
        <div
          class={`absolute z-20 mt-1 w-56 rounded-xl bg-white p-1.5 text-slate-900 shadow-lg ring-1 ring-slate-200 dark:bg-slate-800 dark:text-slate-100 dark:ring-slate-700 ${
            props.m.outgoing ? 'right-0' : 'left-0'
          }`}
          data-testid="message-menu-panel"
        >
          <fieldset class="mb-1 flex justify-between">
            <legend class="sr-only">React</legend>
            <For each={QUICK_REACTIONS}>
              {(emoji, i) => (
                <button
                  type="button"
                  class={`rounded-md px-1.5 py-1 text-lg hover:bg-slate-100 dark:hover:bg-slate-700 ${focusRing}`}
                  aria-label={`React with ${emoji}`}
                  data-first={i() === 0 ? '' : undefined}
                  onClick={pick(() => props.onReact(emoji))}
                  data-testid="react-option"
                  data-emoji={emoji}
                >
                  {emoji}
                </button>
              )}
            </For>
          </fieldset>
          <button type="button" class={item} onClick={pick(props.onReply)} data-testid="action-reply">
            Reply
          </button>
          <Show when={canEdit(props.m)}>
            <button type="button" class={item} onClick={pick(props.onEdit)} data-testid="action-edit">
              Edit
            </button>
          </Show>
          <Show when={props.canDelete}>
            <button
              type="button"
              class={`${item} text-red-700 dark:text-red-300`}
              onClick={pick(props.onDelete)}
              data-testid="action-delete"
            >
              Delete for everyone
            </button>
          </Show>
        </div>
      </Show>
    </div>
  );
}

/** Above the composer while replying or editing: what it refers to, and a way out. */
export function ComposerContext(props: { mode: 'reply' | 'edit'; m: MessageView; onCancel: () => void }) {
  const { actions } = useStore();
  return (
    <div
      class="mb-2 flex items-start gap-2 rounded-lg border-l-4 border-blue-600 bg-slate-100 px-3 py-1.5 text-xs text-slate-800 dark:border-blue-400 dark:bg-slate-800 dark:text-slate-100"
      data-testid={props.mode === 'reply' ? 'replying-to' : 'editing'}
    >
      <div class="min-w-0 flex-1">
        <p class="font-semibold">
          {props.mode === 'reply' ? `Replying to ${actions.nameOf(props.m.from.userId)}` : 'Editing your message'}
        </p>
        <p class="truncate">{props.m.body ?? ''}</p>
      </div>
      <button
        type="button"
        class={`rounded-md px-1.5 text-base leading-none hover:bg-slate-200 dark:hover:bg-slate-700 ${focusRing}`}
        aria-label={props.mode === 'reply' ? 'Cancel reply' : 'Cancel edit'}
        onClick={() => props.onCancel()}
        data-testid="cancel-context"
      >
        <span aria-hidden="true">×</span>
      </button>
    </div>
  );
}
