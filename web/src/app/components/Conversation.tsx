/**
 * One conversation: header with connection state, key-change warning (sending is blocked until the user
 * accepts), a notice while the member list cannot be verified (messages wait as sending), the timeline (messages from the local store — older pages load as you scroll up — with info
 * lines for group changes, date separators and a "new messages" divider), delivery states on our
 * messages, failed messages with their reason, Retry and Delete, links, attachments (Attachments.tsx),
 * "jump to latest" when scrolled up, and the composer: it grows with its text, counts against the
 * engine's length limit as you type, Enter sends, Shift+Enter adds a line; files are attached with the
 * paperclip button, by dropping them on the conversation or by pasting them. A conversation we were
 * removed from is read-only: its history, "You were removed", no composer and no socket.
 */
import { createEffect, createMemo, createSignal, For, Match, on, onCleanup, onMount, Show, Switch } from 'solid-js';
import type { MessageView } from '../../engine/context.js';
import type { InfoLine } from '../../engine/info.js';
import { MAX_TEXT_BYTES } from '../../engine/messages.js';
import { useConversationName, usePeerProfile } from '../pages/Chats.js';
import { Link, navigate } from '../router.js';
import { useStore } from '../store/index.js';
import { buildTimeline, infoText, linkify, timerLabel } from '../timeline.js';
import { AttachmentContent, PaperclipIcon, UploadCardView } from './Attachments.js';
import { ComposerContext, canAct, MessageMenu, QuoteBlock, Reactions } from './MessageActions.js';
import { ConfirmDialog, Modal } from './Modal.js';
import { SafetyNumber } from './SafetyNumber.js';
import { pendingJump, takePendingJump } from './Search.js';
import { TypingIndicator } from './Typing.js';
import { Avatar, Banner, Button, errorText, focusRing, inputClass, Spinner } from './ui.js';

const time = (ms: number) => new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
const utf8 = new TextEncoder();

/**
 * ✓ sent, ✓✓ delivered. In a group ✓✓ means every other member has it (review R8); until then a message some
 * members have shows "✓ k/n" (delivered to k of n).
 */
export function StatusMark(props: { status: MessageView['status']; delivery?: MessageView['delivery'] }) {
  const partial = () =>
    props.status === 'sent' && props.delivery && props.delivery.to > 0 && props.delivery.to < props.delivery.of
      ? props.delivery
      : null;
  const label = () => {
    const p = partial();
    if (p) return `Delivered to ${p.to} of ${p.of}`;
    return (
      { sending: 'Sending', sent: 'Sent', delivered: 'Delivered', failed: 'Not sent', received: '', undecryptable: '' }[
        props.status
      ] ?? ''
    );
  };
  const mark = () => {
    const p = partial();
    if (p) return `✓ ${p.to}/${p.of}`;
    return ({ sending: '◷', sent: '✓', delivered: '✓✓', failed: '!' } as Record<string, string>)[props.status] ?? '';
  };
  return (
    <Show when={label()}>
      <span class={props.status === 'failed' ? 'font-semibold' : ''} title={label()} data-testid="status-mark">
        <span aria-hidden="true">{mark()}</span>
        <span class="sr-only">{label()}</span>
      </span>
    </Show>
  );
}

/** Why a message was not sent, in words. */
export function failureText(code: string | undefined): string {
  switch (code) {
    case 'too_long':
      return 'It is too long to send.';
    case 'identity_changed':
      return 'A safety number changed: review it, then retry.';
    case 'not_member':
    case 'forbidden':
      return 'You are not a member of this conversation.';
    case 'device_mismatch':
      return 'The recipients’ devices kept changing.';
    case 'rate_limited':
      return 'Too many messages at once.';
    case 'no_devices':
      return 'Nobody here has a device to receive it.';
    case 'unreachable':
      return 'The server could not be reached for 20 hours.';
    default:
      return 'It could not be sent.';
  }
}

/** Message text with http(s) links (opened in a new tab, no referrer, nothing fetched for previews). */
function Body(props: { text: string }) {
  return (
    <For each={linkify(props.text)}>
      {(part) =>
        part.href ? (
          <a
            href={part.href}
            target="_blank"
            rel="noopener noreferrer"
            class="break-all underline decoration-1 underline-offset-2"
          >
            {part.text}
          </a>
        ) : (
          part.text
        )
      }
    </For>
  );
}

function InfoRow(props: { line: InfoLine }) {
  const { state, actions } = useStore();
  return (
    <li
      class="flex justify-center py-1"
      data-testid="info-line"
      data-action={props.line.event.type === 'membership' ? props.line.event.action : props.line.event.type}
    >
      <p class="max-w-[90%] rounded-full bg-slate-200/80 px-3 py-1 text-center text-xs text-slate-700 dark:bg-slate-800 dark:text-slate-300">
        {infoText(props.line, (u) => actions.nameOf(u), state.me?.userId)}
      </p>
    </li>
  );
}

/** Issue 17: what a bubble may do with its message (set by the conversation). */
interface BubbleActions {
  /** We may delete anyone's message here (a group's owner or admin). */
  readonly moderator: boolean;
  readonly onReply: (m: MessageView) => void;
  readonly onEdit: (m: MessageView) => void;
  readonly onDelete: (m: MessageView) => void;
  readonly onJump: (id: string) => void;
  /** The message a jump just brought into view (marked for a few seconds). */
  readonly highlighted: string | null;
}

function Bubble(props: { m: MessageView; showSender: boolean; act?: BubbleActions }) {
  const { state, actions } = useStore();
  const out = () => props.m.outgoing;
  const failed = () => out() && props.m.status === 'failed';
  const [busy, setBusy] = createSignal(false);
  const act = async (fn: () => Promise<void>) => {
    setBusy(true);
    try {
      await fn();
    } catch (e) {
      actions.toast(`Not sent: ${errorText(e)}`, 'error');
    } finally {
      setBusy(false);
    }
  };
  const react = (emoji: string) =>
    void actions
      .react(props.m.conversationId, props.m.clientId, emoji)
      .catch((e) => actions.toast(`Reaction not sent: ${errorText(e)}`, 'error'));
  const menu = () =>
    props.act && canAct(props.m) ? (
      <MessageMenu
        m={props.m}
        canDelete={out() || props.act.moderator}
        onReply={() => props.act?.onReply(props.m)}
        onReact={react}
        onEdit={() => props.act?.onEdit(props.m)}
        onDelete={() => props.act?.onDelete(props.m)}
      />
    ) : null;
  return (
    <li
      class={`flex items-start gap-1 rounded-xl outline-none data-[highlight=true]:bg-amber-100 dark:data-[highlight=true]:bg-amber-900/40 ${out() ? 'justify-end' : 'justify-start'}`}
      data-testid="message"
      data-status={props.m.status}
      data-outgoing={out() ? 'true' : 'false'}
      data-message-id={props.m.clientId}
      data-highlight={props.act?.highlighted === props.m.clientId ? 'true' : undefined}
      tabindex="-1"
    >
      <Show when={out()}>{menu()}</Show>
      <div
        class={`max-w-[80%] rounded-2xl px-3.5 py-2 text-[0.95rem] leading-snug shadow-sm ${
          out()
            ? failed()
              ? 'rounded-br-md bg-red-700 text-white'
              : 'rounded-br-md bg-blue-600 text-white'
            : 'rounded-bl-md bg-white text-slate-900 ring-1 ring-slate-200 dark:bg-slate-800 dark:text-slate-100 dark:ring-slate-700'
        }`}
      >
        <Show when={props.showSender && !out()}>
          <div class="mb-0.5 text-xs font-semibold text-blue-700 dark:text-blue-300">
            {actions.nameOf(props.m.from.userId)}
          </div>
        </Show>
        <Show when={props.m.quote && !props.m.deleted && props.m.quote}>
          {(q) => <QuoteBlock quote={q()} outgoing={out()} onJump={(id) => props.act?.onJump(id)} />}
        </Show>
        <Show when={props.m.attachment && !props.m.deleted}>
          <AttachmentContent m={props.m} />
        </Show>
        <Show
          when={props.m.body !== null}
          fallback={
            <Switch
              fallback={
                <span class="italic opacity-90" data-testid="undecryptable" data-error={props.m.error ?? ''}>
                  {props.m.error === 'no_session'
                    ? 'Waiting for this message. It appears when the sender’s device shares its key.'
                    : 'This message could not be decrypted.'}
                </span>
              }
            >
              {/* ---- issue 17: content types (docs/PROTOCOL.md §"Content types") ---- */}
              <Match when={props.m.deleted}>
                <span class="italic opacity-90" data-testid="deleted">
                  {props.m.deleted?.by === props.m.from.userId
                    ? 'This message was deleted.'
                    : `This message was deleted by ${actions.nameOf(props.m.deleted?.by ?? '')}.`}
                </span>
              </Match>
              <Match when={props.m.unsupported !== undefined}>
                <span class="italic opacity-90" data-testid="unsupported" data-type={props.m.unsupported}>
                  Unsupported message: this app cannot show it yet.
                </span>
              </Match>
            </Switch>
          }
        >
          <Show when={!props.m.attachment || props.m.body}>
            <p class="break-words whitespace-pre-wrap" data-testid="message-body">
              <Body text={props.m.pending?.body ?? props.m.body ?? ''} />
            </p>
          </Show>
        </Show>
        <Show when={!props.m.deleted}>
          <Reactions m={props.m} me={state.me?.userId} onToggle={react} />
        </Show>
        <div
          class={`mt-0.5 flex justify-end gap-1 text-[0.7rem] ${out() ? 'text-white/95' : 'text-slate-600 dark:text-slate-300'}`}
        >
          <Show when={props.m.edited && !props.m.deleted}>
            <span data-testid="edited">edited</span>
          </Show>
          <time dateTime={new Date(props.m.sentAt).toISOString()}>{time(Math.min(props.m.sentAt, Date.now()))}</time>
          <Show when={out()}>
            <StatusMark status={props.m.status} delivery={props.m.delivery} />
          </Show>
        </div>
        <Show when={failed()}>
          <div class="mt-1.5 border-t border-white/30 pt-1.5 text-xs" data-testid="failed">
            <p data-testid="failure-reason">Not sent. {failureText(props.m.error)}</p>
            <div class="mt-1 flex justify-end gap-1.5">
              <button
                type="button"
                class={`rounded-md bg-white/20 px-2 py-0.5 font-medium hover:bg-white/30 ${focusRing}`}
                disabled={busy()}
                onClick={() => void act(() => actions.retrySend(props.m.conversationId, props.m.clientId))}
              >
                Retry
              </button>
              <button
                type="button"
                class={`rounded-md bg-white/20 px-2 py-0.5 font-medium hover:bg-white/30 ${focusRing}`}
                disabled={busy()}
                onClick={() => void act(() => actions.discardFailed(props.m.conversationId, props.m.clientId))}
              >
                Delete
              </button>
            </div>
          </div>
        </Show>
      </div>
      <Show when={!out()}>{menu()}</Show>
    </li>
  );
}

export function Conversation(props: { id: string }) {
  const { state, actions } = useStore();
  const nameOf = useConversationName();
  const profileOf = usePeerProfile();
  const conv = () => state.conversations[props.id];
  const messages = () => state.messages[props.id] ?? [];
  const [draft, setDraft] = createSignal('');
  const [loadingOlder, setLoadingOlder] = createSignal(false);
  const [review, setReview] = createSignal<string | null>(null);
  const [atBottom, setAtBottom] = createSignal(true);
  // The first message that arrived while the conversation was not on screen (the "new messages" divider).
  const [unreadFrom, setUnreadFrom] = createSignal<string | null>(null);
  let scroller!: HTMLDivElement;
  let input: HTMLTextAreaElement | undefined;
  let picker!: HTMLInputElement;
  let root!: HTMLDivElement;
  const [dragging, setDragging] = createSignal(false);

  // ---- issue 17: reply / edit / delete for everyone / jump to a quoted message ----
  const [replyTo, setReplyTo] = createSignal<MessageView | null>(null);
  const [editing, setEditing] = createSignal<MessageView | null>(null);
  const [deleting, setDeleting] = createSignal<MessageView | null>(null);
  const [highlighted, setHighlighted] = createSignal<string | null>(null);
  const moderator = () => conv()?.kind === 'group' && (conv()?.myRole === 'owner' || conv()?.myRole === 'admin');
  const jumpTo = async (id: string) => {
    if (!(await actions.revealMessage(props.id, id))) {
      actions.toast('The original message is not on this device any more.', 'info');
      return;
    }
    setHighlighted(id);
    setTimeout(() => setHighlighted((h) => (h === id ? null : h)), 3000);
    queueMicrotask(() => {
      const el = scroller.querySelector<HTMLElement>(`[data-message-id="${CSS.escape(id)}"]`);
      if (!el) return;
      el.scrollIntoView({ block: 'center' });
      el.focus({ preventScroll: true });
    });
  };
  // A search result opened this conversation (or asks for another message in it): jump there once loaded.
  createEffect(
    on(
      () => [pendingJump(), state.messages[props.id] !== undefined] as const,
      ([, loaded]) => {
        if (!loaded) return;
        const id = takePendingJump(props.id);
        if (id) void jumpTo(id);
      },
    ),
  );
  const bubbleActions = {
    get moderator() {
      return moderator();
    },
    get highlighted() {
      return highlighted();
    },
    onReply: (m: MessageView) => {
      setEditing(null);
      setReplyTo(m);
      input?.focus();
    },
    onEdit: (m: MessageView) => {
      setReplyTo(null);
      setEditing(m);
      setDraft(m.body ?? '');
      input?.focus();
    },
    onDelete: (m: MessageView) => setDeleting(m),
    onJump: (id: string) => void jumpTo(id),
  };
  const cancelContext = () => {
    if (editing()) setDraft('');
    setEditing(null);
    setReplyTo(null);
    input?.focus();
  };
  /** The dialog shows a failure itself and stays open. */
  const confirmDelete = async () => {
    const m = deleting();
    if (m) await actions.deleteForEveryone(props.id, m.clientId);
  };

  const others = createMemo(() => (conv()?.members ?? []).map((m) => m.userId).filter((u) => u !== state.me?.userId));
  const blocked = createMemo(() => others().filter((u) => state.contacts[u]?.blocked));
  /** A direct chat whose other person deleted their account (their signed leave): read-only from then on. */
  const peerDeleted = () => conv()?.kind === 'direct' && conv()!.myRole !== null && others().length === 0;
  const removed = () => (conv() !== undefined && conv()!.myRole === null) || peerDeleted();
  // The newest membership entry by log order (line id `membership:<log seq>`), not by arrival: a line the
  // engine re-emits (e.g. placed again once its frame's position is known) moves to the end of the list.
  const left = () => {
    let newest: { seq: number; event: InfoLine['event'] } | null = null;
    for (const l of state.info[props.id] ?? []) {
      if (l.event.type !== 'membership' || !l.id.startsWith('membership:')) continue;
      const seq = Number(l.id.slice('membership:'.length));
      if (newest === null || seq > newest.seq) newest = { seq, event: l.event };
    }
    const last = newest?.event;
    return last?.type === 'membership' && last.action === 'leave' && last.actor === state.me?.userId;
  };
  const status = () => state.connection[props.id] ?? 'connecting';
  const bytes = createMemo(() => utf8.encode(draft()).length);
  const tooLong = () => bytes() > MAX_TEXT_BYTES;
  const nearLimit = () => bytes() > MAX_TEXT_BYTES * 0.9;
  const timeline = createMemo(() =>
    buildTimeline(messages(), state.info[props.id] ?? [], {
      hasOlder: state.hasOlder[props.id] ?? false,
      unreadFrom: unreadFrom(),
    }),
  );

  const scrollToEnd = () => {
    scroller.scrollTop = scroller.scrollHeight;
    setAtBottom(true);
  };

  onMount(() => {
    const unread = state.unread[props.id] ?? 0;
    actions.setActive(props.id);
    void actions.loadMessages(props.id).then(() => {
      if (unread > 0) {
        const received = messages().filter((m) => !m.outgoing);
        setUnreadFrom(received[Math.max(0, received.length - unread)]?.clientId ?? null);
      }
      scrollToEnd();
      if (unread > 0) scroller.querySelector('[data-testid="unread-divider"]')?.scrollIntoView({ block: 'center' });
    });
    input?.focus();
    setTimeout(() => input?.focus(), 0); // after a dialog that opened this conversation has let go of focus
  });
  onCleanup(() => {
    actions.setActive(null);
    void actions.typingChanged(props.id, false);
  });
  // Files dropped anywhere on the conversation are attached (the paperclip button is the keyboard path).
  onMount(() => {
    const over = (e: DragEvent) => {
      if (!e.dataTransfer?.types.includes('Files')) return;
      e.preventDefault();
      setDragging(true);
    };
    const leave = (e: DragEvent) => {
      if (e.target === root) setDragging(false);
    };
    const drop = (e: DragEvent) => {
      if (!e.dataTransfer?.files.length) return;
      e.preventDefault();
      setDragging(false);
      attach([...e.dataTransfer.files]);
    };
    root.addEventListener('dragover', over);
    root.addEventListener('dragleave', leave);
    root.addEventListener('drop', drop);
    onCleanup(() => {
      root.removeEventListener('dragover', over);
      root.removeEventListener('dragleave', leave);
      root.removeEventListener('drop', drop);
    });
  });
  createEffect(
    on(others, (us) => {
      // Fresh device lists on open: an identity key change shows up here, before anything is sent.
      if (removed()) return;
      for (const u of us) void actions.loadContact(u, { refresh: true }).catch(() => undefined);
    }),
  );

  // Stick to the bottom when new items arrive and we were already there.
  createEffect(
    on(
      () => timeline().length + (state.uploads[props.id]?.length ?? 0),
      () => {
        if (atBottom()) queueMicrotask(scrollToEnd);
      },
    ),
  );

  const onScroll = async () => {
    setAtBottom(scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40);
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

  /** The composer grows with its text up to its max height, then scrolls. */
  const fit = () => {
    if (!input) return;
    input.style.height = 'auto';
    input.style.height = `${input.scrollHeight + 2}px`;
  };
  createEffect(on(draft, () => queueMicrotask(fit)));

  /** Picked, dropped or pasted files: each becomes an upload card, then a message once uploaded. */
  const attach = (files: File[]) => {
    if (!files.length || blocked().length || removed() || !conv()) return;
    setUnreadFrom(null);
    void actions.sendFiles(props.id, files);
    queueMicrotask(scrollToEnd);
  };

  const send = async () => {
    const body = draft().trim();
    if (!body || blocked().length || removed() || tooLong()) return;
    const edit = editing();
    if (edit) {
      setDraft('');
      setEditing(null);
      try {
        if (body !== edit.body) await actions.editMessage(props.id, edit.clientId, body);
      } catch (e) {
        setDraft(body);
        setEditing(edit);
        actions.toast(`Not edited: ${errorText(e)}`, 'error');
      }
      input?.focus();
      return;
    }
    const reply = replyTo();
    setReplyTo(null);
    setDraft('');
    void actions.typingChanged(props.id, false);
    setUnreadFrom(null);
    setAtBottom(true);
    try {
      await actions.send(props.id, body, reply ? { replyTo: reply.clientId } : {});
    } catch (e) {
      setDraft(body); // rollback: the text comes back to the composer
      if (reply) setReplyTo(reply);
      actions.toast(`Not sent: ${errorText(e)}`, 'error');
    }
    input?.focus();
  };

  return (
    <div
      ref={root}
      class={`relative flex h-full min-h-0 flex-col ${dragging() ? 'ring-4 ring-inset ring-blue-400' : ''}`}
      data-testid="conversation"
    >
      <header class="flex items-center gap-3 border-b border-slate-200 bg-white px-3 py-2.5 dark:border-slate-800 dark:bg-slate-900">
        <Link href="/chats" class={`rounded-lg p-1.5 md:hidden ${focusRing}`} aria-label="Back to chats">
          ←
        </Link>
        <Avatar name={profileOf(conv()).name || nameOf(conv())} seed={props.id} src={profileOf(conv()).avatarUrl} />
        <div class="min-w-0 flex-1">
          <h1 class="truncate font-semibold" data-testid="conversation-title">
            <Show when={profileOf(conv()).name}>
              <span data-testid="header-profile-name">{profileOf(conv()).name}</span>{' '}
              <span class="text-sm font-normal text-slate-600 dark:text-slate-300">· </span>
            </Show>
            {conv() ? nameOf(conv()) : state.conversationsLoaded ? 'Conversation not found' : 'Loading…'}
          </h1>
          <p class="text-xs text-slate-500 dark:text-slate-400" aria-live="polite">
            {!conv()
              ? ''
              : peerDeleted()
                ? 'Account deleted'
                : removed()
                  ? 'You are no longer a member'
                  : // A request has no socket until accepted (its messages come by the mailbox poll): not "Connecting…".
                    status() === 'online' || (conv()?.requestState ?? 'accepted') !== 'accepted'
                    ? conv()?.kind === 'group'
                      ? `${conv()?.members.length} members · end-to-end encrypted`
                      : 'End-to-end encrypted'
                    : status() === 'forbidden'
                      ? 'You are no longer a member'
                      : 'Connecting…'}
            <Show when={!removed() && (conv()?.timer ?? 0) > 0}>
              <span data-testid="timer-badge"> · Disappearing messages: {timerLabel(conv()?.timer ?? 0)}</span>
            </Show>
          </p>
        </div>
        <Show when={conv()}>
          <Link
            href={`/chats/${props.id}/info`}
            class={`rounded-lg px-2.5 py-1.5 text-sm text-slate-600 hover:bg-slate-100 dark:text-slate-300 dark:hover:bg-slate-800 ${focusRing}`}
            aria-label="Conversation info and safety numbers"
          >
            Info
          </Link>
        </Show>
      </header>

      <Show when={conv()?.membershipGap && !removed()}>
        <div
          class="border-b border-amber-200 bg-amber-50 px-4 py-3 text-sm text-amber-950 dark:border-amber-900 dark:bg-amber-950/60 dark:text-amber-100"
          role="status"
          data-testid="membership-gap"
        >
          The member list of this conversation could not be verified: the server’s copy is missing a change. Retrying —
          messages you send wait until it is verified.
        </div>
      </Show>
      <Show when={blocked().length && !removed()}>
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

      <div class="relative min-h-0 flex-1">
        <div
          ref={scroller}
          onScroll={() => void onScroll()}
          class={`h-full overflow-y-auto bg-slate-50 px-3 py-4 sm:px-6 dark:bg-slate-950 ${focusRing} focus-visible:-outline-offset-2`}
          role="log"
          aria-label="Messages"
          aria-live="polite"
          tabindex="0"
          data-testid="message-list"
        >
          <Show when={loadingOlder()}>
            <div class="flex justify-center py-2 text-slate-500">
              <Spinner />
            </div>
          </Show>
          <Show
            when={
              state.messages[props.id] &&
              !messages().length &&
              !(state.info[props.id] ?? []).length &&
              !(state.uploads[props.id] ?? []).length
            }
          >
            <p class="py-10 text-center text-sm text-slate-500 dark:text-slate-400">
              No messages yet. Say hello — only the people here can read it.
            </p>
          </Show>
          <ul class="mx-auto flex max-w-3xl flex-col gap-1.5">
            <For each={timeline()}>
              {(e) => (
                <Switch>
                  <Match when={e.kind === 'message' && e}>
                    {(m) => <Bubble m={m().message} showSender={conv()?.kind === 'group'} act={bubbleActions} />}
                  </Match>
                  <Match when={e.kind === 'info' && e}>{(i) => <InfoRow line={i().info} />}</Match>
                  <Match when={e.kind === 'date' && e}>
                    {(d) => (
                      <li class="flex justify-center py-2" data-testid="date-separator">
                        <span class="rounded-full bg-white px-3 py-0.5 text-xs font-medium text-slate-600 ring-1 ring-slate-200 dark:bg-slate-900 dark:text-slate-300 dark:ring-slate-800">
                          {d().label}
                        </span>
                      </li>
                    )}
                  </Match>
                  <Match when={e.kind === 'unread'}>
                    <li class="flex items-center gap-3 py-1" data-testid="unread-divider">
                      <span class="h-px flex-1 bg-blue-600/40 dark:bg-blue-400/40" />
                      <span class="text-xs font-semibold text-blue-700 dark:text-blue-300">New messages</span>
                      <span class="h-px flex-1 bg-blue-600/40 dark:bg-blue-400/40" />
                    </li>
                  </Match>
                </Switch>
              )}
            </For>
            <For each={state.uploads[props.id] ?? []}>{(u) => <UploadCardView conversationId={props.id} u={u} />}</For>
          </ul>
        </div>
        <Show when={!atBottom()}>
          <button
            type="button"
            class={`absolute right-4 bottom-3 rounded-full bg-white px-3 py-1.5 text-sm font-medium text-slate-800 shadow-lg ring-1 ring-slate-200 hover:bg-slate-50 dark:bg-slate-800 dark:text-slate-100 dark:ring-slate-700 ${focusRing}`}
            onClick={scrollToEnd}
            data-testid="jump-to-latest"
          >
            ↓ Latest
          </button>
        </Show>
      </div>
      <Show when={!removed() && conv()}>
        <TypingIndicator conversationId={props.id} />
      </Show>

      {/* ---- people: a message request is answered before anything goes back (store/people.ts) ---- */}
      <Show when={conv()?.requestState === 'request' && !removed()}>
        <RequestBar id={props.id} />
      </Show>
      {/* Replying to a request accepts it (the engine does), so the composer stays. */}
      <Show
        when={!removed()}
        fallback={
          <Show when={conv()}>
            <div class="border-t border-slate-200 bg-white p-3 dark:border-slate-800 dark:bg-slate-900">
              <Banner kind="warn">
                <p data-testid="removed-notice">
                  {peerDeleted()
                    ? 'This person deleted their account.'
                    : left()
                      ? 'You left this group.'
                      : 'You were removed from this conversation.'}{' '}
                  You can read its history here, but not send.
                </p>
              </Banner>
            </div>
          </Show>
        }
      >
        <form
          class="border-t border-slate-200 bg-white p-3 dark:border-slate-800 dark:bg-slate-900"
          onSubmit={(e) => {
            e.preventDefault();
            void send();
          }}
        >
          <Show when={editing() ?? replyTo()}>
            {(m) => <ComposerContext mode={editing() ? 'edit' : 'reply'} m={m()} onCancel={cancelContext} />}
          </Show>
          <input
            ref={picker}
            type="file"
            multiple
            class="hidden"
            data-testid="attach-input"
            onChange={(e) => {
              const files = [...(e.currentTarget.files ?? [])];
              e.currentTarget.value = '';
              attach(files);
            }}
          />
          <div class="flex items-end gap-2">
            <Button
              type="button"
              variant="secondary"
              aria-label="Attach files"
              title="Attach files (or drop or paste them here)"
              disabled={!conv() || blocked().length > 0}
              onClick={() => picker.click()}
              data-testid="attach"
            >
              <PaperclipIcon />
            </Button>
            <textarea
              ref={(el) => {
                input = el;
              }}
              onPaste={(e) => {
                const files = [...(e.clipboardData?.files ?? [])];
                if (files.length) {
                  e.preventDefault();
                  attach(files);
                }
              }}
              rows={1}
              aria-label="Message"
              aria-describedby="composer-count"
              aria-invalid={tooLong() ? 'true' : undefined}
              placeholder={blocked().length ? 'Review the safety number change to send' : 'Message'}
              class={`${inputClass} max-h-40 min-h-10 resize-none overflow-y-auto`}
              value={draft()}
              disabled={!conv() || blocked().length > 0}
              onInput={(e) => {
                setDraft(e.currentTarget.value);
                if (!editing()) void actions.typingChanged(props.id, e.currentTarget.value.trim() !== '');
              }}
              onBlur={() => void actions.typingChanged(props.id, false)}
              onKeyDown={(e) => {
                if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
                  e.preventDefault();
                  void send();
                } else if (e.key === 'Escape' && (editing() || replyTo())) {
                  e.preventDefault();
                  cancelContext();
                }
              }}
              data-testid="composer"
            />
            <Button
              type="submit"
              disabled={!draft().trim() || !conv() || blocked().length > 0 || tooLong()}
              aria-label={editing() ? 'Save edit' : 'Send'}
            >
              {editing() ? 'Save' : 'Send'}
            </Button>
          </div>
          <p
            id="composer-count"
            class={`mt-1 text-right text-xs ${tooLong() ? 'font-medium text-red-700 dark:text-red-400' : 'text-slate-600 dark:text-slate-400'} ${nearLimit() ? '' : 'sr-only'}`}
            data-testid="composer-count"
            aria-live={nearLimit() ? 'polite' : 'off'}
          >
            {/* The limit is in UTF-8 bytes; for plain text a byte is a character, otherwise this is conservative. */}
            {tooLong()
              ? `Too long to send: remove ${(bytes() - MAX_TEXT_BYTES).toLocaleString()} character${bytes() - MAX_TEXT_BYTES === 1 ? '' : 's'}.`
              : `${(MAX_TEXT_BYTES - bytes()).toLocaleString()} characters left`}
          </p>
        </form>
      </Show>

      <ConfirmDialog
        open={deleting() !== null}
        onOpenChange={(o) => !o && setDeleting(null)}
        title="Delete for everyone?"
        confirmLabel="Delete for everyone"
        danger
        onConfirm={confirmDelete}
      >
        The message is erased from every device in this conversation; “This message was deleted” stays in its place.
        This cannot be undone.
      </ConfirmDialog>

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

/**
 * A message request: who is asking, and Accept / Delete / Block. Until accepted the other side gets no
 * delivery receipt and not our profile (engine/people.ts).
 */
function RequestBar(props: { id: string }) {
  const { state, actions } = useStore();
  const [busy, setBusy] = createSignal(false);
  const [requester, setRequester] = createSignal<string | null>(null);
  const conv = () => state.conversations[props.id];
  createEffect(
    on(
      () => props.id,
      async (id) => setRequester(await actions.requesterOf(id)),
    ),
  );
  const who = () => (requester() ? actions.nameOf(requester()!) : 'Someone');
  const run = async (fn: () => Promise<void>) => {
    setBusy(true);
    try {
      await fn();
    } catch (e) {
      actions.toast(errorText(e), 'error');
    } finally {
      setBusy(false);
    }
  };
  return (
    <section
      class="border-t border-slate-200 bg-white p-3 dark:border-slate-800 dark:bg-slate-900"
      data-testid="request-bar"
      aria-label="Message request"
    >
      <p class="mb-2 text-sm text-slate-700 dark:text-slate-200">
        <strong>{who()}</strong> {conv()?.kind === 'group' ? 'added you to this group.' : 'wants to message you.'} They
        will not know you have seen this, and get no delivery signal or profile, until you accept or reply.
      </p>
      <div class="flex flex-wrap gap-2">
        <Button
          disabled={busy()}
          onClick={() => run(() => actions.acceptRequest(props.id))}
          data-testid="request-accept"
        >
          Accept
        </Button>
        <Button
          variant="secondary"
          disabled={busy()}
          onClick={() => run(() => actions.deleteRequest(props.id).then(() => navigate('/chats')))}
          data-testid="request-delete"
        >
          Delete
        </Button>
        <Button
          variant="danger"
          disabled={busy() || !requester()}
          onClick={() => run(() => actions.block({ userId: requester()! }).then(() => navigate('/chats')))}
          data-testid="request-block"
        >
          Block {who()}
        </Button>
      </div>
    </section>
  );
}
