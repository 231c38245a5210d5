/**
 * Messages per conversation: the newest page from the local (sealed) store, older pages on demand,
 * sending with an optimistic bubble (replaced by the engine's own record, rolled back with the draft
 * returned on failure), and live updates from engine events (new messages, sent → delivered, failed).
 * @module
 */
import type { MessageView } from '../../engine/context.js';
import type { InfoLine } from '../../engine/info.js';
import { sortMessages } from '../timeline.js';
import type { Agent } from './agent.js';
import type { Actions, SetState, State } from './state.js';

export const PAGE = 50;

/** Sequenced messages by seq, then local ones (no seq yet) by time. */
export function order(a: MessageView, b: MessageView): number {
  if (a.seq !== null && b.seq !== null) return a.seq - b.seq;
  if (a.seq !== null) return -1;
  if (b.seq !== null) return 1;
  return a.sentAt - b.sentAt;
}

/** Inserts or replaces `m` (matched by clientId) keeping the timeline order (timeline.ts sortMessages). */
export function upsert(list: readonly MessageView[], m: MessageView): MessageView[] {
  const out = list.filter((x) => x.clientId !== m.clientId);
  out.push(m);
  return sortMessages(out);
}

/**
 * Applies an announced message to a loaded list: replaced in place, or inserted — unless it is older than
 * every sequenced message shown while older pages are still in the store (`hasOlder`). Inserting it there
 * would make its seq the `loadOlder` cursor and skip every message between; `loadOlder` reads it from the
 * store, with its latest state, when the user scrolls back to it.
 */
export function applyLoaded(list: readonly MessageView[], m: MessageView, hasOlder: boolean): MessageView[] {
  if (m.seq !== null && hasOlder && !list.some((x) => x.clientId === m.clientId)) {
    const oldest = list.find((x) => x.seq !== null)?.seq;
    if (oldest !== undefined && oldest !== null && m.seq < oldest) return [...list];
  }
  return upsert(list, m);
}

/**
 * Sets the chat-list preview of `m`'s conversation to `m` by REPLACING the previous one. Solid merges an
 * object set at a path over the object already there (`setState('last', c, m)` copies m's fields INTO the
 * previous message object) — and that object is usually also in the open conversation's list, so the
 * previous message turned into a copy of the new one and vanished from the view (the first message of a
 * new conversation, when the second arrived). Setting `{ [c]: m }` on `last` replaces the entry.
 */
export function setLast(setState: SetState, m: MessageView): void {
  setState('last', { [m.conversationId]: m });
}

export class SendError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function createMessages(agent: () => Agent, actions: Actions, state: State, setState: SetState): void {
  let wired = false;
  let localId = 0;
  const readTimers = new Map<string, ReturnType<typeof setTimeout>>();
  // Several tabs of one account share the sealed store, but each tab's engine reports only what IT
  // processed: whichever tab handles a frame first stores it. Tabs tell each other which conversation
  // changed, and the others re-read it from the store.
  const tabs = typeof BroadcastChannel === 'undefined' ? null : new BroadcastChannel('e2e-chat:messages');
  const rereads = new Map<string, ReturnType<typeof setTimeout>>();
  const reread = (c: string) => {
    if (!state.messages[c] || rereads.has(c)) return;
    rereads.set(
      c,
      setTimeout(() => {
        rereads.delete(c);
        void actions.loadMessages(c).catch(() => undefined);
      }, 50),
    );
  };
  // A load asks the engine for a page; the engine stores every message before it announces it, but its
  // read can be taken before a message is stored and answered after the announcement has reached us. So
  // announcements that arrive while a load of their conversation is in flight are kept and applied, in
  // order, on top of the page it returns (otherwise the first message of a conversation opened as it
  // arrives was never shown, and a re-read could put back a status older than one already shown).
  const inFlight = new Map<string, Set<MessageView[]>>();
  const noteLast = (m: MessageView) => {
    const cur = state.last[m.conversationId];
    if (!cur || cur.clientId === m.clientId || order(cur, m) <= 0) setLast(setState, m);
  };
  const wire = () => {
    if (wired) return;
    wired = true;
    tabs?.addEventListener('message', (ev: MessageEvent<{ user: string; conversationId: string }>) => {
      if (ev.data?.user === state.me?.userId) reread(ev.data.conversationId);
    });
    agent().onEvent((e) => {
      if (e.type === 'read_position') {
        // Another of our devices (or this one) read up to here: nothing before it is unread.
        const last = state.last[e.conversationId];
        if (!last || last.seq === null || e.seq >= last.seq) setState('unread', e.conversationId, 0);
        return;
      }
      if (e.type === 'history_imported') {
        void actions.loadConversations().catch(() => undefined);
        for (const c of e.conversations) if (state.messages[c]) void actions.loadMessages(c).catch(() => undefined);
        return;
      }
      if (e.type === 'info_added') {
        const c = e.line.conversationId;
        if (state.info[c]) setState('info', c, (l) => [...l.filter((x) => x.id !== e.line.id), e.line] as InfoLine[]);
        return;
      }
      if (e.type === 'message_removed') {
        if (state.messages[e.conversationId])
          setState('messages', e.conversationId, (l) => l.filter((x) => x.clientId !== e.clientId));
        return;
      }
      if (e.type !== 'message_added' && e.type !== 'message_updated') return;
      const c = e.message.conversationId;
      tabs?.postMessage({ user: state.me?.userId, conversationId: c });
      noteLast(e.message);
      if (
        e.type === 'message_added' &&
        !e.message.outgoing &&
        (state.activeConversation !== c || document.visibilityState !== 'visible')
      )
        setState('unread', c, (n) => (n ?? 0) + 1);
      if (e.type === 'message_added' && state.activeConversation === c && document.visibilityState === 'visible')
        actions.markRead(c);
      for (const during of inFlight.get(c) ?? []) during.push(e.message);
      if (!state.messages[c]) return; // not loaded yet: the load in flight (or a later one) brings it
      setState('messages', c, (l) => applyLoaded(l, e.message, state.hasOlder[c] ?? false));
    });
  };

  Object.assign(actions, {
    async loadMessages(c: string) {
      wire();
      const during: MessageView[] = [];
      const loads = inFlight.get(c) ?? new Set<MessageView[]>();
      inFlight.set(c, loads);
      loads.add(during);
      let page: MessageView[];
      try {
        const [p, info] = await Promise.all([
          agent().engine.messages(c, { limit: PAGE }),
          agent()
            .engine.infoLines(c)
            .catch(() => [] as InfoLine[]),
        ]);
        page = p;
        setState('info', c, info);
      } finally {
        loads.delete(during);
        if (loads.size === 0) inFlight.delete(c);
      }
      const first = !state.messages[c];
      const hasOlder = first ? page.filter((m) => m.seq !== null).length >= PAGE : (state.hasOlder[c] ?? false);
      setState('messages', c, (l) => {
        // The store's view, then what was announced while it was being read (it may be newer); older
        // pages already shown stay.
        let out = (l ?? []).filter((m) => !page.some((x) => x.clientId === m.clientId));
        for (const m of page) out = upsert(out, m);
        for (const m of during) out = applyLoaded(out, m, hasOlder);
        return out;
      });
      if (first) setState('hasOlder', c, hasOlder);
      const newest = page[page.length - 1];
      if (newest) noteLast(newest);
    },
    async loadOlder(c: string) {
      const oldest = state.messages[c]?.find((m) => m.seq !== null)?.seq;
      if (oldest === undefined || oldest === null || !state.hasOlder[c]) return 0;
      const page = await agent().engine.messages(c, { beforeSeq: oldest, limit: PAGE });
      setState('messages', c, (l) => [...page.filter((m) => !l.some((x) => x.clientId === m.clientId)), ...l]);
      setState('hasOlder', c, page.length >= PAGE);
      return page.length;
    },
    watchMessages: () => wire(),
    setActive(c: string | null) {
      setState('activeConversation', c);
      if (c) {
        setState('unread', c, 0);
        actions.markRead(c);
      }
    },
    markRead(c: string) {
      // Debounced: a burst of arrivals is one read position (and one sync to our other devices).
      clearTimeout(readTimers.get(c));
      readTimers.set(
        c,
        setTimeout(() => {
          readTimers.delete(c);
          const seqs = [...(state.messages[c] ?? []), ...(state.last[c] ? [state.last[c]!] : [])]
            .map((m) => m.seq)
            .filter((s): s is number => s !== null);
          if (seqs.length)
            void agent()
              .engine.markRead(c, Math.max(...seqs))
              .catch(() => undefined);
        }, 400),
      );
    },
    async send(c: string, body: string, opts: { replyTo?: string } = {}) {
      wire();
      const me = state.me!;
      const temp: MessageView = {
        conversationId: c,
        seq: null,
        clientId: `local-${++localId}`,
        from: { userId: me.userId, deviceId: me.deviceId },
        outgoing: true,
        body,
        status: 'sending',
        sentAt: Date.now() + 1e9, // sorts last until the engine's record replaces it
        receivedAt: Date.now(),
      };
      setState('messages', c, (l) => upsert(l ?? [], temp));
      try {
        const m = await agent().engine.sendText(c, body, opts.replyTo ? { replyTo: opts.replyTo } : {});
        setState('messages', c, (l) =>
          upsert(
            l.filter((x) => x.clientId !== temp.clientId),
            m,
          ),
        );
      } catch (e) {
        setState('messages', c, (l) => l.filter((x) => x.clientId !== temp.clientId));
        const err = e as { code?: string; message?: string };
        throw new SendError(err.code ?? 'send_failed', err.message ?? 'sending failed');
      }
    },
    async retrySend(c: string, clientId: string) {
      wire();
      const m = await agent().engine.retrySend(c, clientId);
      setState('messages', c, (l) => upsert(l ?? [], m));
    },
    async discardFailed(c: string, clientId: string) {
      wire();
      await agent().engine.discardFailed(c, clientId);
      setState('messages', c, (l) => (l ?? []).filter((x) => x.clientId !== clientId));
    },
  } satisfies Partial<Actions>);
}
