/**
 * /chats, /chats/:id, /chats/:id/info — the messenger: conversation list in a sidebar and the open
 * conversation (or its info) beside it on wide screens; one at a time, stacked, on narrow ones.
 */
import { DropdownMenu } from '@kobalte/core/dropdown-menu';
import { createEffect, createMemo, createSignal, For, onCleanup, Show } from 'solid-js';
import type { ConversationView } from '../../engine/engine.js';
import { Conversation } from '../components/Conversation.js';
import { ConversationInfo } from '../components/ConversationInfo.js';
import { Modal } from '../components/Modal.js';
import { Notifier } from '../components/Notifications.js';
import { MessageSearch } from '../components/Search.js';
import { ThemeToggle } from '../components/ThemeToggle.js';
import { Avatar, Banner, Button, buttonClass, errorText, Field, focusRing, Logo } from '../components/ui.js';
import { unreadTitle } from '../logic.js';
import { Link, navigate, path } from '../router.js';
import { directPeer } from '../store/conversations.js';
import { useStore } from '../store/index.js';
import { relativeTime } from '../timeline.js';

export function useConversationName() {
  const { state, actions } = useStore();
  return (c: ConversationView | undefined) => {
    if (!c) return '';
    if (c.kind === 'group') return c.title || 'Untitled group';
    const gone = departedPeerName(c, state.me?.userId ?? '', state.me?.username ?? '');
    if (gone !== undefined) return gone;
    const peer = directPeer(c, state.me?.userId ?? '');
    return peer ? actions.nameOf(peer) : 'Direct message';
  };
}

/**
 * A direct chat whose other person deleted their account holds only us: their name comes from the signed
 * title ("creator other", both usernames). Undefined while the other person is still a member.
 */
function departedPeerName(c: ConversationView, me: string, myName: string): string | undefined {
  if (c.kind !== 'direct' || c.members.some((m) => m.userId !== me)) return undefined;
  return c.title.split(' ').find((n) => n && n !== myName) ?? 'Deleted account';
}

/** The other person of a direct conversation (their profile picture and display name; store/people.ts). */
export function usePeerProfile() {
  const { state } = useStore();
  return (c: ConversationView | undefined) => {
    if (c?.kind !== 'direct' || !c.members.some((m) => m.userId !== state.me?.userId))
      return { name: '', avatarUrl: null as string | null };
    const peer = directPeer(c, state.me?.userId ?? '');
    const p = peer ? state.profiles[peer] : undefined;
    return { name: p?.name ?? '', avatarUrl: p?.avatarUrl ?? null };
  };
}

const menuItem = `flex w-full cursor-default items-center rounded-md px-3 py-2 text-sm outline-none data-[highlighted]:bg-slate-100 dark:data-[highlighted]:bg-slate-800`;
const menuContent = `z-50 min-w-48 rounded-xl bg-white p-1 shadow-lg ring-1 ring-slate-200 dark:bg-slate-900 dark:ring-slate-800`;

function NewChatDialogs(props: {
  mode: 'direct' | 'group' | null;
  onClose: () => void;
  returnFocus: () => HTMLElement | undefined;
}) {
  const { actions } = useStore();
  const [name, setName] = createSignal('');
  const [title, setTitle] = createSignal('');
  const [members, setMembers] = createSignal('');
  const [error, setError] = createSignal<string | null>(null);
  const [busy, setBusy] = createSignal(false);
  // After "Start chat" the conversation opens with focus in its composer; Cancel / Esc return to "New".
  let opened = false;
  const close = () => {
    setName('');
    setTitle('');
    setMembers('');
    setError(null);
    props.onClose();
  };
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const id =
        props.mode === 'direct'
          ? await actions.startDirect(name())
          : await actions.createGroup(
              title(),
              members()
                .split(/[\s,]+/)
                .filter(Boolean),
            );
      opened = true;
      close();
      navigate(`/chats/${id}`);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal
      open={props.mode !== null}
      onOpenChange={(o) => !o && close()}
      title={props.mode === 'group' ? 'New group' : 'New chat'}
      returnFocus={() => {
        if (!opened) return props.returnFocus();
        opened = false;
        return null;
      }}
      description={
        props.mode === 'group'
          ? 'Everyone you add gets the group’s messages from now on.'
          : 'Start an end-to-end encrypted conversation.'
      }
    >
      <form class="space-y-4" onSubmit={submit}>
        <Show
          when={props.mode === 'group'}
          fallback={
            <Field
              label="Username"
              name="peer"
              autocapitalize="none"
              spellcheck={false}
              value={name()}
              onInput={(e) => setName(e.currentTarget.value)}
              autofocus
              required
            />
          }
        >
          <Field
            label="Group name"
            name="title"
            value={title()}
            onInput={(e) => setTitle(e.currentTarget.value)}
            maxlength={100}
            autofocus
            required
          />
          <Field
            label="Members"
            name="members"
            hint="Usernames, separated by commas or spaces."
            autocapitalize="none"
            spellcheck={false}
            value={members()}
            onInput={(e) => setMembers(e.currentTarget.value)}
          />
        </Show>
        <Show when={error()}>
          <Banner kind="error">
            <span role="alert">{error()}</span>
          </Banner>
        </Show>
        <div class="flex justify-end gap-2">
          <Button variant="ghost" onClick={close}>
            Cancel
          </Button>
          <Button type="submit" busy={busy()} disabled={busy()}>
            {props.mode === 'group' ? 'Create group' : 'Start chat'}
          </Button>
        </div>
      </form>
    </Modal>
  );
}

function Sidebar(props: { activeId?: string }) {
  const { state, actions } = useStore();
  const nameOf = useConversationName();
  const profileOf = usePeerProfile();
  const [dialog, setDialog] = createSignal<'direct' | 'group' | null>(null);
  // Relative times ("5 min") refresh every half minute.
  const [tick, setTick] = createSignal(0);
  const timer = setInterval(() => setTick((n) => n + 1), 30_000);
  onCleanup(() => clearInterval(timer));
  // The unread count in the tab title.
  createEffect(() => {
    // Muted conversations (and direct chats with a muted person) do not count (store/people.ts).
    document.title = unreadTitle(state.unread, (id) => actions.isMuted(id));
  });
  onCleanup(() => {
    document.title = 'e2e-chat';
  });
  let newButton: HTMLButtonElement | undefined;
  // Most recent activity first (Signal-like); conversations without messages by name.
  // Deleted requests and blocked conversations are not listed (they come back with a later message / unblock).
  const list = createMemo(() =>
    Object.values(state.conversations)
      .filter((c) => c.requestState !== 'hidden' && c.requestState !== 'blocked')
      .sort(
        (a, b) =>
          (state.last[b.id]?.receivedAt ?? 0) - (state.last[a.id]?.receivedAt ?? 0) ||
          nameOf(a).localeCompare(nameOf(b)),
      ),
  );
  const preview = (c: ConversationView) => {
    const m = state.last[c.id];
    if (c.myRole === null) return 'You left or were removed';
    if (!m) return c.kind === 'group' ? `Group · ${c.members.length} members` : 'Direct message';
    const who = m.outgoing ? 'You: ' : c.kind === 'group' ? `${actions.nameOf(m.from.userId)}: ` : '';
    const att = m.attachment ? (m.attachment.width !== null ? 'Photo' : m.attachment.fileName) : null;
    const text = att ? (m.body ? `${att} · ${m.body}` : att) : m.body;
    // issue 17: a deleted or unsupported message is not an undecryptable one.
    if (m.deleted) return `${who}Message deleted`;
    if (m.unsupported !== undefined) return `${who}Unsupported message`;
    return `${who}${text ?? 'Message could not be decrypted'}`;
  };
  return (
    <div class="flex h-full flex-col">
      <header class="flex items-center gap-2 border-b border-slate-200 px-4 py-3 dark:border-slate-800">
        <Logo />
        <h1 class="flex-1 text-lg font-semibold">Chats</h1>
        <ThemeToggle />
        <DropdownMenu>
          <DropdownMenu.Trigger
            ref={(el: HTMLButtonElement) => {
              newButton = el;
            }}
            class={buttonClass('primary', 'px-2.5 py-1.5')}
            aria-label="New conversation"
          >
            <span aria-hidden="true" class="text-base leading-none">
              +
            </span>{' '}
            New
          </DropdownMenu.Trigger>
          <DropdownMenu.Portal>
            <DropdownMenu.Content class={menuContent}>
              <DropdownMenu.Item class={menuItem} onSelect={() => setDialog('direct')}>
                New chat
              </DropdownMenu.Item>
              <DropdownMenu.Item class={menuItem} onSelect={() => setDialog('group')}>
                New group
              </DropdownMenu.Item>
            </DropdownMenu.Content>
          </DropdownMenu.Portal>
        </DropdownMenu>
      </header>
      <MessageSearch />
      <Notifier />
      <nav aria-label="Conversations" class="min-h-0 flex-1 overflow-y-auto p-2">
        <Show
          when={list().length}
          fallback={
            <p class="px-3 py-8 text-center text-sm text-slate-500 dark:text-slate-400">
              {state.conversationsLoaded ? 'No conversations yet. Start one with “New”.' : 'Loading…'}
            </p>
          }
        >
          <ul class="space-y-0.5" data-testid="conversation-list">
            <For each={list()}>
              {(c) => (
                <li>
                  <Link
                    href={`/chats/${c.id}`}
                    aria-current={props.activeId === c.id ? 'page' : undefined}
                    class={`flex items-center gap-3 rounded-xl px-3 py-2.5 ${focusRing} ${
                      props.activeId === c.id
                        ? 'bg-blue-600/10 dark:bg-blue-400/15'
                        : 'hover:bg-slate-100 dark:hover:bg-slate-800/70'
                    }`}
                  >
                    <Avatar name={profileOf(c).name || nameOf(c)} seed={c.id} src={profileOf(c).avatarUrl} />
                    <span class="min-w-0 flex-1">
                      <span class="flex items-baseline gap-2">
                        <span class="min-w-0 flex-1 truncate font-medium">
                          <Show when={profileOf(c).name}>
                            <span data-testid="profile-name">{profileOf(c).name}</span>{' '}
                            <span class="text-xs font-normal text-slate-600 dark:text-slate-300">{nameOf(c)}</span>
                          </Show>
                          <Show when={!profileOf(c).name}>{nameOf(c)}</Show>
                        </span>
                        <Show when={c.requestState === 'request'}>
                          <span
                            class="shrink-0 rounded-full bg-amber-100 px-2 text-xs font-medium text-amber-900 dark:bg-amber-900/60 dark:text-amber-100"
                            data-testid="request-badge"
                          >
                            Request
                          </span>
                        </Show>
                        <Show when={actions.isMuted(c.id)}>
                          <span class="shrink-0 text-xs text-slate-600 dark:text-slate-300" data-testid="muted-badge">
                            Muted
                          </span>
                        </Show>
                        <Show when={state.last[c.id]}>
                          {(m) => (
                            <time
                              class="shrink-0 text-xs text-slate-600 dark:text-slate-300"
                              dateTime={new Date(m().receivedAt).toISOString()}
                              data-testid="last-time"
                            >
                              {relativeTime(Math.min(m().receivedAt, Date.now()), Date.now() + tick() * 0)}
                            </time>
                          )}
                        </Show>
                      </span>
                      <span
                        class={`block truncate text-xs ${
                          props.activeId === c.id
                            ? 'text-slate-700 dark:text-slate-200'
                            : 'text-slate-500 dark:text-slate-400'
                        }`}
                        data-testid="preview"
                        data-error={state.last[c.id]?.error}
                      >
                        {preview(c)}
                      </span>
                    </span>
                    <Show when={(state.unread[c.id] ?? 0) > 0 && props.activeId !== c.id}>
                      <span
                        class="min-w-5 rounded-full bg-blue-600 px-1.5 text-center text-xs leading-5 font-semibold text-white"
                        data-testid="unread"
                      >
                        {state.unread[c.id]}
                        <span class="sr-only"> unread</span>
                      </span>
                    </Show>
                    <Show when={state.connection[c.id] && state.connection[c.id] !== 'online' && c.myRole}>
                      <span
                        class="size-2 rounded-full bg-amber-500"
                        title="Connecting"
                        role="img"
                        aria-label="connecting"
                      />
                    </Show>
                  </Link>
                </li>
              )}
            </For>
          </ul>
        </Show>
      </nav>
      <footer class="flex items-center gap-1 border-t border-slate-200 p-2 dark:border-slate-800">
        <Link
          href="/account"
          class={`flex min-w-0 flex-1 items-center gap-3 rounded-xl px-3 py-2 hover:bg-slate-100 dark:hover:bg-slate-800/70 ${focusRing}`}
        >
          <Avatar name={state.me?.username ?? ''} seed={state.me?.userId ?? ''} size="sm" />
          <span class="min-w-0 flex-1">
            <span class="block truncate text-sm font-medium" data-testid="me">
              {state.me?.username}
            </span>
            <span class="block text-xs text-slate-500 dark:text-slate-400">Account & devices</span>
          </span>
        </Link>
        <Show when={state.localPassphrase}>
          <button
            type="button"
            class={buttonClass('ghost', 'px-2.5')}
            onClick={() => void actions.lockNow()}
            aria-label="Lock now"
            title="Lock now: forget the keys until the passphrase is entered again"
          >
            <svg viewBox="0 0 24 24" class="size-5" aria-hidden="true">
              <path
                fill="currentColor"
                d="M12 2a5 5 0 0 0-5 5v3H6a2 2 0 0 0-2 2v8a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2v-8a2 2 0 0 0-2-2h-1V7a5 5 0 0 0-5-5Zm-3 8V7a3 3 0 1 1 6 0v3H9Z"
              />
            </svg>
          </button>
        </Show>
      </footer>
      <NewChatDialogs mode={dialog()} onClose={() => setDialog(null)} returnFocus={() => newButton} />
    </div>
  );
}

export default function Chats(props: { params: Record<string, string> }) {
  const id = () => props.params.id;
  const info = () => path().endsWith('/info');
  return (
    <main class="flex h-full">
      <aside
        class={`${id() ? 'hidden md:block' : 'block'} h-full w-full shrink-0 border-r border-slate-200 bg-white md:w-80 dark:border-slate-800 dark:bg-slate-900`}
        aria-label="Conversation list"
      >
        <Sidebar activeId={id()} />
      </aside>
      <section class={`${id() ? 'flex' : 'hidden md:flex'} h-full min-w-0 flex-1 flex-col`} aria-label="Conversation">
        <Show
          when={id()}
          keyed
          fallback={
            <div class="m-auto max-w-xs text-center text-sm text-slate-500 dark:text-slate-400">
              <h2 class="text-base font-medium text-slate-700 dark:text-slate-200">Pick a conversation</h2>
              <p class="mt-1">Messages are end-to-end encrypted: only the people in a conversation can read them.</p>
            </div>
          }
        >
          {(cid) => (
            <Show when={info()} fallback={<Conversation id={cid} />}>
              <ConversationInfo id={cid} />
            </Show>
          )}
        </Show>
      </section>
    </main>
  );
}
