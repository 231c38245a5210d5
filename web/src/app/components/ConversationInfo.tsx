/**
 * /chats/:id/info — members and their roles, safety numbers, and the membership actions the protocol's
 * role × action table (canPerform) allows us: add, remove, promote, demote, transfer ownership, leave.
 */
import { DropdownMenu } from '@kobalte/core/dropdown-menu';
import { createMemo, createSignal, For, Show } from 'solid-js';
import { useConversationName } from '../pages/Chats.js';
import { allowedActions, canAddMembers, canLeave, canRename, type MemberAction } from '../roles.js';
import { Link, navigate } from '../router.js';
import { useStore } from '../store/index.js';
import { DisappearingSetting } from './Disappearing.js';
import { ConfirmDialog, Modal } from './Modal.js';
import { SafetyNumber } from './SafetyNumber.js';
import { Avatar, Banner, Button, buttonClass, createAction, errorText, Field, focusRing } from './ui.js';

const ACTION_LABEL: Record<MemberAction, string> = {
  promote: 'Make admin',
  demote: 'Remove admin role',
  transfer_ownership: 'Transfer ownership',
  remove: 'Remove from group',
};

const menuItem = `flex w-full cursor-default items-center rounded-md px-3 py-2 text-sm outline-none data-[highlighted]:bg-slate-100 dark:data-[highlighted]:bg-slate-800`;

export function ConversationInfo(props: { id: string }) {
  const { state, actions } = useStore();
  const nameOf = useConversationName();
  const conv = () => state.conversations[props.id];
  const [safety, setSafety] = createSignal<string | null>(null);
  const [pending, setPending] = createSignal<{ action: MemberAction; userId: string } | null>(null);
  const [leaving, setLeaving] = createSignal(false);
  const [add, setAdd] = createSignal('');
  const [addError, setAddError] = createSignal<string | null>(null);
  const [adding, setAdding] = createSignal(false);
  const [title, setTitle] = createSignal<string | null>(null);
  const [renameError, setRenameError] = createSignal<string | null>(null);
  const [renaming, setRenaming] = createSignal(false);
  const mayRename = () => canRename(conv()?.kind ?? 'direct', myRole());
  const submitRename = async (e: Event) => {
    e.preventDefault();
    const t = (title() ?? '').trim();
    if (!t) return setRenameError('Enter a name.');
    setRenaming(true);
    setRenameError(null);
    try {
      await actions.renameGroup(props.id, t);
      setTitle(null);
    } catch (err) {
      setRenameError(errorText(err));
    } finally {
      setRenaming(false);
    }
  };
  const myRole = () => conv()?.myRole ?? null;
  const members = createMemo(() =>
    [...(conv()?.members ?? [])].sort(
      (a, b) => ['owner', 'admin', 'member'].indexOf(a.role) - ['owner', 'admin', 'member'].indexOf(b.role),
    ),
  );
  const canAdd = () => canAddMembers(conv()?.kind ?? 'direct', myRole());
  const mayLeave = () => canLeave(conv()?.kind ?? 'direct', myRole());

  const submitAdd = async (e: Event) => {
    e.preventDefault();
    setAdding(true);
    setAddError(null);
    try {
      await actions.addMember(props.id, add());
      setAdd('');
    } catch (err) {
      setAddError(errorText(err));
    } finally {
      setAdding(false);
    }
  };

  const runPending = async () => {
    const p = pending();
    if (!p) return;
    if (p.action === 'remove') await actions.removeMember(props.id, p.userId);
    else await actions.changeRole(props.id, p.userId, p.action);
  };

  return (
    <div class="flex h-full min-h-0 flex-col" data-testid="conversation-info">
      <header class="flex items-center gap-3 border-b border-slate-200 bg-white px-3 py-2.5 dark:border-slate-800 dark:bg-slate-900">
        <Link href={`/chats/${props.id}`} class={`rounded-lg p-1.5 ${focusRing}`} aria-label="Back to conversation">
          ←
        </Link>
        <h1 class="font-semibold">Conversation info</h1>
      </header>
      <div class="min-h-0 flex-1 overflow-y-auto p-4 sm:p-6">
        <div class="mx-auto max-w-xl space-y-6">
          <div class="flex items-center gap-3">
            <Avatar name={nameOf(conv())} seed={props.id} />
            <div>
              <p class="text-lg font-semibold">{nameOf(conv())}</p>
              <p class="text-sm text-slate-500 dark:text-slate-400">
                {conv()?.kind === 'group' ? `Group · you are ${myRole() ?? 'not a member'}` : 'Direct message'}
              </p>
            </div>
          </div>

          <Show when={mayRename()}>
            <form class="flex items-end gap-2" onSubmit={submitRename} aria-label="Rename group">
              <Field
                class="flex-1"
                label="Group name"
                name="group-title"
                maxlength={100}
                value={title() ?? conv()?.title ?? ''}
                onInput={(e) => setTitle(e.currentTarget.value)}
                error={renameError()}
              />
              <Button
                type="submit"
                variant="secondary"
                busy={renaming()}
                disabled={renaming() || title() === null || title()!.trim() === conv()?.title}
              >
                Rename
              </Button>
            </form>
          </Show>

          <PeopleControls id={props.id} />
          <Show when={conv()}>
            <DisappearingSetting id={props.id} />
          </Show>

          <section aria-labelledby="members-h">
            <h2 id="members-h" class="mb-2 text-sm font-semibold text-slate-500 uppercase dark:text-slate-400">
              Members
            </h2>
            <ul class="divide-y divide-slate-200 rounded-xl bg-white ring-1 ring-slate-200 dark:divide-slate-800 dark:bg-slate-900 dark:ring-slate-800">
              <For each={members()}>
                {(m) => {
                  const isMe = () => m.userId === state.me?.userId;
                  const acts = () => allowedActions(conv()?.kind ?? 'direct', myRole(), m.role);
                  return (
                    <li class="flex items-center gap-3 px-3 py-2.5" data-testid="member">
                      <Avatar
                        name={actions.profileName(m.userId) || actions.nameOf(m.userId)}
                        seed={m.userId}
                        size="sm"
                        src={state.profiles[m.userId]?.avatarUrl ?? null}
                      />
                      <div class="min-w-0 flex-1">
                        <p class="truncate text-sm font-medium">
                          <Show when={actions.profileName(m.userId)}>
                            <span data-testid="member-profile-name">{actions.profileName(m.userId)}</span>{' '}
                            <span class="font-normal text-slate-600 dark:text-slate-300">· </span>
                          </Show>
                          {actions.nameOf(m.userId)}
                          {isMe() ? ' (you)' : ''}
                          <Show when={state.contacts[m.userId]?.verified}>
                            <span class="ml-1 text-emerald-600 dark:text-emerald-400" title="Verified">
                              ✓<span class="sr-only"> verified</span>
                            </span>
                          </Show>
                        </p>
                        <p class="text-xs text-slate-500 capitalize dark:text-slate-400">{m.role}</p>
                      </div>
                      <Show when={!isMe()}>
                        <Button variant="ghost" onClick={() => setSafety(m.userId)}>
                          Safety number
                        </Button>
                      </Show>
                      <Show when={!isMe() && acts().length}>
                        <DropdownMenu>
                          <DropdownMenu.Trigger
                            class={buttonClass('ghost', 'px-2')}
                            aria-label={`Actions for ${actions.nameOf(m.userId)}`}
                          >
                            ⋯
                          </DropdownMenu.Trigger>
                          <DropdownMenu.Portal>
                            <DropdownMenu.Content class="z-50 min-w-48 rounded-xl bg-white p-1 shadow-lg ring-1 ring-slate-200 dark:bg-slate-900 dark:ring-slate-800">
                              <For each={acts()}>
                                {(a) => (
                                  <DropdownMenu.Item
                                    class={`${menuItem} ${a === 'remove' ? 'text-red-600 dark:text-red-400' : ''}`}
                                    onSelect={() => setPending({ action: a, userId: m.userId })}
                                  >
                                    {ACTION_LABEL[a]}
                                  </DropdownMenu.Item>
                                )}
                              </For>
                            </DropdownMenu.Content>
                          </DropdownMenu.Portal>
                        </DropdownMenu>
                      </Show>
                    </li>
                  );
                }}
              </For>
            </ul>
          </section>

          <Show when={canAdd()}>
            <form class="flex items-end gap-2" onSubmit={submitAdd} aria-label="Add member">
              <Field
                class="flex-1"
                label="Add a member"
                name="add-member"
                placeholder="username"
                autocapitalize="none"
                spellcheck={false}
                value={add()}
                onInput={(e) => setAdd(e.currentTarget.value)}
                error={addError()}
              />
              <Button type="submit" busy={adding()} disabled={adding() || !add().trim()}>
                Add
              </Button>
            </form>
          </Show>

          <Show when={conv()?.kind === 'group' && myRole()}>
            <section class="space-y-2">
              <Show
                when={mayLeave()}
                fallback={
                  <Banner kind="info">As the owner you can leave after transferring ownership to someone else.</Banner>
                }
              >
                <Button variant="danger" onClick={() => setLeaving(true)}>
                  Leave group
                </Button>
              </Show>
            </section>
          </Show>
        </div>
      </div>

      <Modal
        open={safety() !== null}
        onOpenChange={(o) => !o && setSafety(null)}
        title={`Safety number with ${safety() ? actions.nameOf(safety()!) : ''}`}
      >
        <Show when={safety()}>{(u) => <SafetyNumber userId={u()} />}</Show>
      </Modal>
      <ConfirmDialog
        open={pending() !== null}
        onOpenChange={(o) => !o && setPending(null)}
        title={pending() ? `${ACTION_LABEL[pending()!.action]}?` : ''}
        confirmLabel={pending() ? ACTION_LABEL[pending()!.action] : 'Confirm'}
        danger={pending()?.action === 'remove' || pending()?.action === 'transfer_ownership'}
        onConfirm={runPending}
      >
        <p>
          {pending()?.action === 'transfer_ownership'
            ? `${actions.nameOf(pending()!.userId)} becomes the owner; you become an admin. This cannot be undone by you.`
            : pending()?.action === 'remove'
              ? `${actions.nameOf(pending()!.userId)} stops receiving new messages in this group.`
              : `Change ${pending() ? actions.nameOf(pending()!.userId) : ''}’s role.`}
        </p>
      </ConfirmDialog>
      <ConfirmDialog
        open={leaving()}
        onOpenChange={setLeaving}
        title="Leave this group?"
        confirmLabel="Leave"
        danger
        onConfirm={async () => {
          await actions.leave(props.id);
          navigate('/chats');
        }}
      >
        <p>You will stop receiving its messages. Someone must add you again to rejoin.</p>
      </ConfirmDialog>
    </div>
  );
}

// ---- people: mute and block (issue 17; store/people.ts) -------------------------------------------------

function PeopleControls(props: { id: string }) {
  const { state, actions } = useStore();
  const conv = () => state.conversations[props.id];
  const peer = () => {
    const c = conv();
    return c?.kind === 'direct' ? c.members.find((m) => m.userId !== state.me?.userId)?.userId : undefined;
  };
  const muted = () => actions.isMuted(props.id);
  const blocked = () => {
    const p = state.people;
    const u = peer();
    return u ? !!p?.blockedUsers.includes(u) : !!p?.blockedConversations.includes(props.id);
  };
  const target = () => (peer() ? { userId: peer()! } : { conversationId: props.id });
  const { busy, run } = createAction();
  return (
    <section aria-label="Mute and block" class="flex flex-wrap gap-2" data-testid="people-controls">
      <Button
        variant="secondary"
        busy={busy()}
        onClick={() =>
          void run(() =>
            muted() ? actions.unmute({ conversationId: props.id }) : actions.mute({ conversationId: props.id }),
          )
        }
        data-testid="mute-toggle"
      >
        {muted() ? 'Unmute' : 'Mute notifications'}
      </Button>
      <Button
        variant={blocked() ? 'secondary' : 'danger'}
        busy={busy()}
        onClick={() => void run(() => (blocked() ? actions.unblock(target()) : actions.block(target())))}
        data-testid="block-toggle"
      >
        {blocked() ? 'Unblock' : peer() ? `Block ${actions.nameOf(peer()!)}` : 'Block group'}
      </Button>
    </section>
  );
}
