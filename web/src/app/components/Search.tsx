/**
 * Issue 17 — search across this device's decrypted history (the engine searches its sealed store; the
 * server learns nothing: no request leaves the device). Results name the conversation and show the match;
 * opening one jumps to the message in its conversation (loading older pages if needed).
 * @module
 */
import { createSignal, For, onCleanup, Show } from 'solid-js';
import type { MessageView } from '../../engine/context.js';
import { useConversationName } from '../pages/Chats.js';
import { navigate } from '../router.js';
import { useStore } from '../store/index.js';
import { focusRing, inputClass } from './ui.js';

/** A message the next opened conversation should jump to (set by a search result). */
const [pendingJump, setPendingJump] = createSignal<{ conversationId: string; messageId: string } | null>(null);

export { pendingJump };

/** Takes the pending jump for `conversationId`, if there is one. */
export function takePendingJump(conversationId: string): string | null {
  const j = pendingJump();
  if (!j || j.conversationId !== conversationId) return null;
  setPendingJump(null);
  return j.messageId;
}

/** The text around the first match (case- and accent-insensitive, like the engine), at most ~90 chars. */
export function snippet(body: string, query: string): string {
  const fold = (s: string) => s.normalize('NFKD').replace(/\p{M}/gu, '').toLocaleLowerCase();
  const at = fold(body).indexOf(fold(query.trim()));
  if (at < 0 || body.length <= 90) return body.slice(0, 90);
  const start = Math.max(0, at - 30);
  return `${start > 0 ? '…' : ''}${body.slice(start, start + 90)}${start + 90 < body.length ? '…' : ''}`;
}

export function MessageSearch() {
  const { state, actions } = useStore();
  const nameOf = useConversationName();
  const [query, setQuery] = createSignal('');
  const [results, setResults] = createSignal<MessageView[] | null>(null);
  let timer: ReturnType<typeof setTimeout> | undefined;
  onCleanup(() => clearTimeout(timer));
  const run = (q: string) => {
    clearTimeout(timer);
    if (!q.trim()) return setResults(null);
    timer = setTimeout(async () => {
      const hits = await actions.searchMessages(q).catch(() => []);
      if (q === query()) setResults(hits);
    }, 200);
  };
  const open = (m: MessageView) => {
    setPendingJump({ conversationId: m.conversationId, messageId: m.clientId });
    navigate(`/chats/${m.conversationId}`);
  };
  return (
    <div class="px-3 pb-2">
      <label for="message-search" class="sr-only">
        Search messages
      </label>
      <input
        id="message-search"
        type="search"
        class={inputClass}
        placeholder="Search messages"
        value={query()}
        onInput={(e) => {
          setQuery(e.currentTarget.value);
          run(e.currentTarget.value);
        }}
        data-testid="message-search"
      />
      <Show when={results()}>
        {(hits) => (
          <section aria-label="Search results" class="mt-2" data-testid="search-results">
            <p class="px-1 pb-1 text-xs text-slate-600 dark:text-slate-400" aria-live="polite">
              {hits().length
                ? `${hits().length} message${hits().length === 1 ? '' : 's'} on this device`
                : 'No messages found on this device.'}
            </p>
            <ul class="space-y-0.5">
              <For each={hits()}>
                {(m) => (
                  <li>
                    <button
                      type="button"
                      class={`block w-full rounded-lg px-2 py-1.5 text-left text-sm hover:bg-slate-100 dark:hover:bg-slate-800 ${focusRing}`}
                      onClick={() => open(m)}
                      data-testid="search-result"
                    >
                      <span class="block text-xs font-semibold text-slate-700 dark:text-slate-200">
                        {nameOf(state.conversations[m.conversationId])} · {actions.nameOf(m.from.userId)}
                      </span>
                      <span class="block truncate text-slate-800 dark:text-slate-100">
                        {snippet(m.body ?? '', query())}
                      </span>
                    </button>
                  </li>
                )}
              </For>
            </ul>
          </section>
        )}
      </Show>
    </div>
  );
}
