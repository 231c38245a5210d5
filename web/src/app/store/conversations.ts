/**
 * Conversations: the list (from the engine's verified membership logs), starting a 1:1 chat by username,
 * groups and their membership (add, remove, roles, leave), realtime connection state and reconnecting.
 *
 * New conversations other people start with us have no socket yet, so the list is polled (every few
 * seconds while the page is visible); each new one is connected, and its socket's resume replays it —
 * except a message request, which the engine leaves unconnected (no ticket) and reads from the mailbox
 * until it is accepted.
 *
 * Direct conversation titles carry the two usernames ("alice bob", creator first) so both sides can show
 * a name: the server knows usernames anyway, and the title is signed in the membership log. Group
 * members we never looked up are named by one batched `GET /api/users/names` (the server answers only for
 * people who share a conversation with us; a name is a label — identities are what safety numbers check).
 * @module
 */
import { reconcile } from 'solid-js/store';
import type { ConversationView } from '../../engine/engine.js';
import { namesFromDirectTitle } from '../logic.js';
import { CLIENT_POLL_MS } from '../poll.js';
import type { Agent } from './agent.js';
import { setLast } from './messages.js';
import type { Actions, SetState, State } from './state.js';

const POLL_VISIBLE_MS = CLIENT_POLL_MS; // 4 s (poll.ts)
const POLL_HIDDEN_MS = 30_000;

export function directPeer(c: ConversationView, me: string): string | undefined {
  return c.members.find((m) => m.userId !== me)?.userId ?? c.members[0]?.userId;
}

export function createConversations(agent: () => Agent, actions: Actions, state: State, setState: SetState): void {
  let wired = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const connected = new Set<string>();

  const learnNames = (c: ConversationView) => {
    if (c.kind !== 'direct') return;
    const names = namesFromDirectTitle(
      c.title,
      c.members.map((m) => m.userId),
    );
    for (const [id, n] of Object.entries(names)) if (!state.names[id]) actions.rememberName(id, n);
  };

  // Member ids without a name, asked for in one batch (each id at most once per page load).
  const asked = new Set<string>();
  let pendingNames: Set<string> | null = null;
  const askNames = (ids: string[]) => {
    const unknown = ids.filter((id) => !state.names[id] && id !== state.me?.userId && !asked.has(id));
    if (unknown.length === 0) return;
    if (!pendingNames) {
      pendingNames = new Set();
      setTimeout(async () => {
        const batch = [...(pendingNames ?? [])];
        pendingNames = null;
        for (let i = 0; i < batch.length; i += 100) {
          try {
            const found = await agent().session.names(batch.slice(i, i + 100));
            for (const [id, name] of Object.entries(found)) if (!state.names[id]) actions.rememberName(id, name);
          } catch {
            for (const id of batch.slice(i, i + 100)) asked.delete(id); // try again with the next load
          }
        }
      }, 50);
    }
    for (const id of unknown) {
      asked.add(id);
      pendingNames.add(id);
    }
  };

  const put = (c: ConversationView) => {
    learnNames(c);
    setState('conversations', c.id, reconcile(c));
    askNames(c.members.map((m) => m.userId));
  };

  const wire = () => {
    if (wired) return;
    wired = true;
    agent().onEvent((e) => {
      switch (e.type) {
        case 'membership_changed':
          void actions.refreshConversation(e.conversationId);
          break;
        case 'connection':
          setState('connection', e.conversationId, e.status);
          if (e.status === 'forbidden') {
            setState('conversations', e.conversationId, (c) => (c ? { ...c, myRole: null, removed: true } : c));
            // Removed from the conversation, or this device was removed from the account: ask now.
            void agent()
              .session.checkSession()
              .catch(() => undefined);
          }
          break;
        case 'membership_gap':
          setState('conversations', e.conversationId, (c) => (c ? { ...c, membershipGap: e.retryAt !== null } : c));
          break;
        case 'message_added':
          if (!state.conversations[e.message.conversationId]) void actions.loadConversations();
          break;
      }
    });
    const schedule = () => {
      timer = setTimeout(
        async () => {
          if (state.me) await actions.loadConversations().catch(() => undefined);
          schedule();
        },
        document.visibilityState === 'visible' ? POLL_VISIBLE_MS : POLL_HIDDEN_MS,
      );
    };
    schedule();
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState !== 'visible' || !state.me) return;
      clearTimeout(timer);
      void actions.loadConversations().finally(schedule);
    });
  };

  const connectNew = async (ids: string[]) => {
    const fresh = ids.filter((id) => !connected.has(id));
    if (!fresh.length) return;
    for (const id of fresh) connected.add(id);
    await agent().engine.connect(fresh);
  };

  const lookup = async (username: string) => {
    const u = await agent().session.lookup(username.trim());
    if (!u) throw new Error(`There is no user named “${username.trim()}”.`);
    actions.rememberName(u.userId, u.username);
    return u;
  };

  Object.assign(actions, {
    async loadConversations() {
      wire();
      const list = await agent().engine.conversations();
      const live = new Set(list.map((c) => c.id));
      for (const c of list) put(c);
      // Conversations we were removed from stay readable, marked as left.
      for (const id of Object.keys(state.conversations))
        if (!live.has(id)) setState('conversations', id, (c) => (c ? { ...c, myRole: null, removed: true } : c));
      setState('conversationsLoaded', true);
      // Previews for conversations we have not opened yet (local reads of the newest message).
      for (const c of list)
        if (!state.last[c.id])
          void agent()
            .engine.messages(c.id, { limit: 1 })
            .then((page) => {
              const m = page[page.length - 1];
              if (m && !state.last[c.id]) setLast(setState, m);
            });
      // Conversations we were removed from are read-only: no socket (it would only be refused).
      await connectNew(list.filter((c) => !c.removed).map((c) => c.id));
    },
    async refreshConversation(id: string) {
      try {
        put(await agent().engine.conversation(id));
      } catch {
        setState('conversations', id, (c) => (c ? { ...c, myRole: null, removed: true } : c));
      }
    },
    async startDirect(username: string) {
      const me = state.me!;
      const u = await lookup(username);
      if (u.userId === me.userId) throw new Error('That is you — pick someone else.');
      const existing = Object.values(state.conversations).find(
        (c) => c.kind === 'direct' && c.myRole && c.members.some((m) => m.userId === u.userId),
      );
      if (existing) return existing.id;
      const id = await agent().engine.createConversation({
        kind: 'direct',
        members: [u.userId],
        title: `${me.username} ${u.username}`,
      });
      await actions.refreshConversation(id);
      await connectNew([id]);
      return id;
    },
    async createGroup(title: string, usernames: string[]) {
      const users = await Promise.all(usernames.filter((n) => n.trim()).map(lookup));
      const id = await agent().engine.createConversation({
        kind: 'group',
        members: users.map((u) => u.userId),
        title: title.trim(),
      });
      await actions.refreshConversation(id);
      await connectNew([id]);
      return id;
    },
    async addMember(id: string, username: string) {
      const u = await lookup(username);
      await agent().engine.addMember(id, u.userId);
      await actions.refreshConversation(id);
    },
    async removeMember(id: string, userId: string) {
      // Optimistic: the member disappears at once and comes back if the server refuses.
      const before = state.conversations[id];
      if (before)
        setState('conversations', id, { ...before, members: before.members.filter((m) => m.userId !== userId) });
      try {
        await agent().engine.removeMember(id, userId);
      } catch (e) {
        if (before) setState('conversations', id, reconcile(before));
        throw e;
      }
      await actions.refreshConversation(id);
    },
    async changeRole(id: string, userId: string, action: 'promote' | 'demote' | 'transfer_ownership') {
      await agent().engine.changeMembership(id, { action, target: userId });
      await actions.refreshConversation(id);
    },
    async leave(id: string) {
      await agent().engine.changeMembership(id, { action: 'leave' });
      setState('conversations', id, (c) => (c ? { ...c, myRole: null } : c));
    },
    async renameGroup(id: string, title: string) {
      await agent().engine.changeMembership(id, { action: 'rename', title: title.trim() });
      await actions.refreshConversation(id);
    },
    async reconnect() {
      await agent().engine.disconnect();
      connected.clear();
      await actions.loadConversations();
      await agent()
        .engine.syncMailbox()
        .catch(() => 0);
    },
  } satisfies Partial<Actions>);
}
