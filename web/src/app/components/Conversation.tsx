/**
 * One conversation: header with connection state, key-change warning (sending is blocked until the user
 * accepts), history from the local store (older pages load as you scroll up), delivery states on our
 * messages, and the composer (Enter sends, Shift+Enter adds a line).
 */
import { createEffect, createMemo, createSignal, For, on, onCleanup, onMount, Show } from 'solid-js';
import type { MessageView } from '../../engine/context.js';
import { useConversationName } from '../pages/Chats.js';
import { Link } from '../router.js';
import { useStore } from '../store/index.js';
import { Modal } from './Modal.js';
import { SafetyNumber } from './SafetyNumber.js';
import { Avatar, Banner, Button, focusRing, inputClass, Spinner } from './ui.js';

const time = (ms: number) => new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });

export function StatusMark(props: { status: MessageView['status'] }) {
  const label = () =>
    ({ sending: 'Sending', sent: 'Sent', delivered: 'Delivered', failed: 'Not sent', received: '', undecryptable: '' })[
      props.status
    ];
  const mark = () => ({ sending: '◷', sent: '✓', delivered: '✓✓', failed: '!' })[props.status as 'sent'] ?? '';
  return (
    <Show when={label()}>
      <span class={props.status === 'failed' ? 'font-semibold text-red-200' : ''} title={label()}>
        <span aria-hidden="true">{mark()}</span>
        <span class="sr-only">{label()}</span>
      </span>
    </Show>
  );
}

function Bubble(props: { m: MessageView; showSender: boolean }) {
  const { actions } = useStore();
  const out = () => props.m.outgoing;
  return (
    <li
      class={`flex ${out() ? 'justify-end' : 'justify-start'}`}
      data-testid="message"
      data-status={props.m.status}
      data-outgoing={out() ? 'true' : 'false'}
    >
      <div
        class={`max-w-[80%] rounded-2xl px-3.5 py-2 text-[0.95rem] leading-snug shadow-sm ${
          out()
            ? props.m.status === 'failed'
              ? 'rounded-br-md bg-red-600 text-white'
              : 'rounded-br-md bg-blue-600 text-white'
            : 'rounded-bl-md bg-white text-slate-900 ring-1 ring-slate-200 dark:bg-slate-800 dark:text-slate-100 dark:ring-slate-700'
        }`}
      >
        <Show when={props.showSender && !out()}>
          <div class="mb-0.5 text-xs font-semibold text-blue-700 dark:text-blue-300">
            {actions.nameOf(props.m.from.userId)}
          </div>
        </Show>
        <Show
          when={props.m.body !== null}
          fallback={
            <span class="italic opacity-80" data-testid="undecryptable" data-error={props.m.error ?? ''}>
              This message could not be decrypted.
            </span>
          }
        >
          <p class="break-words whitespace-pre-wrap" data-testid="message-body">
            {props.m.body}
          </p>
        </Show>
        <div
          class={`mt-0.5 flex justify-end gap-1 text-[0.7rem] ${out() ? 'text-white/95' : 'text-slate-600 dark:text-slate-300'}`}
        >
          <time dateTime={new Date(props.m.sentAt).toISOString()}>{time(Math.min(props.m.sentAt, Date.now()))}</time>
          <Show when={out()}>
            <StatusMark status={props.m.status} />
          </Show>
        </div>
      </div>
    </li>
  );
}

export function Conversation(props: { id: string }) {
  const { state, actions } = useStore();
  const nameOf = useConversationName();
  const conv = () => state.conversations[props.id];
  const messages = () => state.messages[props.id] ?? [];
  const [draft, setDraft] = createSignal('');
  const [loadingOlder, setLoadingOlder] = createSignal(false);
  const [review, setReview] = createSignal<string | null>(null);
  let scroller!: HTMLDivElement;
  let input!: HTMLTextAreaElement;

  const others = createMemo(() => (conv()?.members ?? []).map((m) => m.userId).filter((u) => u !== state.me?.userId));
  const blocked = createMemo(() => others().filter((u) => state.contacts[u]?.blocked));
  const removed = () => conv() !== undefined && conv()!.myRole === null;
  const status = () => state.connection[props.id] ?? 'connecting';

  onMount(() => {
    actions.setActive(props.id);
    void actions.loadMessages(props.id).then(() => {
      scroller.scrollTop = scroller.scrollHeight;
    });
    input?.focus();
    setTimeout(() => input?.focus(), 0); // after a dialog that opened this conversation has let go of focus
  });
  onCleanup(() => actions.setActive(null));
  createEffect(
    on(others, (us) => {
      // Fresh device lists on open: an identity key change shows up here, before anything is sent.
      for (const u of us) void actions.loadContact(u, { refresh: true }).catch(() => undefined);
    }),
  );

  // Stick to the bottom when new messages arrive and we were already there.
  let atBottom = true;
  createEffect(
    on(
      () => messages().length,
      () => {
        if (atBottom) queueMicrotask(() => (scroller.scrollTop = scroller.scrollHeight));
      },
    ),
  );

  const onScroll = async () => {
    atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
    if (scroller.scrollTop > 80 || loadingOlder() || !state.hasOlder[props.id]) return;
    setLoadingOlder(true);
    const before = scroller.scrollHeight;
    try {
      await actions.loadOlder(props.id);
      scroller.scrollTop += scroller.scrollHeight - before; // keep the reader's place
    } finally {
      setLoadingOlder(false);
    }
  };

  const send = async () => {
    const body = draft().trim();
    if (!body || blocked().length || removed()) return;
    setDraft('');
    atBottom = true;
    try {
      await actions.send(props.id, body);
    } catch (e) {
      setDraft(body); // rollback: the text comes back to the composer
      actions.toast(
        (e as Error).message === 'identity_changed' ? 'A safety number changed.' : `Not sent: ${(e as Error).message}`,
        'error',
      );
    }
    input.focus();
  };

  return (
    <div class="flex h-full min-h-0 flex-col" data-testid="conversation">
      <header class="flex items-center gap-3 border-b border-slate-200 bg-white px-3 py-2.5 dark:border-slate-800 dark:bg-slate-900">
        <Link href="/chats" class={`rounded-lg p-1.5 md:hidden ${focusRing}`} aria-label="Back to chats">
          ←
        </Link>
        <Avatar name={nameOf(conv())} seed={props.id} />
        <div class="min-w-0 flex-1">
          <h1 class="truncate font-semibold" data-testid="conversation-title">
            {nameOf(conv())}
          </h1>
          <p class="text-xs text-slate-500 dark:text-slate-400" aria-live="polite">
            {removed()
              ? 'Not a member'
              : status() === 'online'
                ? conv()?.kind === 'group'
                  ? `${conv()?.members.length} members · end-to-end encrypted`
                  : 'End-to-end encrypted'
                : status() === 'forbidden'
                  ? 'Not a member'
                  : 'Connecting…'}
          </p>
        </div>
        <Link
          href={`/chats/${props.id}/info`}
          class={`rounded-lg px-2.5 py-1.5 text-sm text-slate-600 hover:bg-slate-100 dark:text-slate-300 dark:hover:bg-slate-800 ${focusRing}`}
          aria-label="Conversation info and safety numbers"
        >
          Info
        </Link>
      </header>

      <Show when={blocked().length}>
        <div
          class="border-b border-amber-200 bg-amber-50 px-4 py-3 text-sm text-amber-950 dark:border-amber-900 dark:bg-amber-950/60 dark:text-amber-100"
          role="alert"
          data-testid="key-change"
        >
          <For each={blocked()}>
            {(u) => (
              <div class="flex flex-wrap items-center gap-2">
                <span class="flex-1">
                  <strong>{actions.nameOf(u)}</strong>’s safety number changed — they may have reinstalled, or someone
                  may be intercepting. Sending is paused until you review it.
                </span>
                <Button variant="secondary" onClick={() => setReview(u)}>
                  Review
                </Button>
                <Button
                  onClick={() =>
                    void actions.acceptKeyChange(u).catch(() => actions.toast('Could not accept the change', 'error'))
                  }
                >
                  Accept
                </Button>
              </div>
            )}
          </For>
        </div>
      </Show>

      <div
        ref={scroller}
        onScroll={() => void onScroll()}
        class={`min-h-0 flex-1 overflow-y-auto bg-slate-50 px-3 py-4 sm:px-6 dark:bg-slate-950 ${focusRing} focus-visible:-outline-offset-2`}
        role="log"
        aria-label="Messages"
        tabindex="0"
        aria-live="polite"
        data-testid="message-list"
      >
        <Show when={loadingOlder()}>
          <div class="flex justify-center py-2 text-slate-400">
            <Spinner />
          </div>
        </Show>
        <Show when={state.messages[props.id] && !messages().length}>
          <p class="py-10 text-center text-sm text-slate-500 dark:text-slate-400">
            No messages yet. Say hello — only the people here can read it.
          </p>
        </Show>
        <ul class="mx-auto flex max-w-3xl flex-col gap-1.5">
          <For each={messages()}>{(m) => <Bubble m={m} showSender={conv()?.kind === 'group'} />}</For>
        </ul>
      </div>

      <Show when={removed()}>
        <Banner kind="warn" class="m-3">
          You are no longer a member of this conversation. You can read its history, but not send.
        </Banner>
      </Show>
      <form
        class="flex items-end gap-2 border-t border-slate-200 bg-white p-3 dark:border-slate-800 dark:bg-slate-900"
        onSubmit={(e) => {
          e.preventDefault();
          void send();
        }}
      >
        <textarea
          ref={input}
          rows={1}
          aria-label="Message"
          placeholder={blocked().length ? 'Review the safety number change to send' : 'Message'}
          class={`${inputClass} max-h-40 min-h-10 resize-none`}
          value={draft()}
          disabled={removed() || blocked().length > 0}
          onInput={(e) => setDraft(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
              e.preventDefault();
              void send();
            }
          }}
          data-testid="composer"
        />
        <Button type="submit" disabled={!draft().trim() || removed() || blocked().length > 0} aria-label="Send">
          Send
        </Button>
      </form>

      <Modal
        open={review() !== null}
        onOpenChange={(o) => !o && setReview(null)}
        title={`Safety number with ${review() ? actions.nameOf(review()!) : ''}`}
      >
        <Show when={review()}>{(u) => <SafetyNumber userId={u()} />}</Show>
      </Modal>
    </div>
  );
}
