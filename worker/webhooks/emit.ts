/**
 * `message.created` from the ConversationDO: run by the DO's alarm right after its D1 flush, never on the
 * send path (a message is sequenced, stored, fanned out and acknowledged without waiting for any of this).
 *
 * Durability: the DO's SQLite `state.events_through` says up to which seq events were queued. Each run takes
 * the messages after it that are *ready* — every recipient device can fetch them (their pairwise rows are in
 * D1 or acked, the D1 flush has passed the group ones: DeliveryStore.eventsReadyThrough) — builds one event
 * per message for the recipient accounts that have a subscribed, enabled endpoint, hands them to the queue,
 * and only after the queue accepted them moves the mark. A crash after the commit of a message therefore
 * loses nothing: the log row and the mark survive, the next alarm (set at commit, or at start-up when events
 * are behind) emits it. A crash between the queue send and the mark update sends the events again with the
 * same deterministic ids (events.ts `messageEventId`), which receivers drop.
 *
 * Audience of a message: the accounts it was addressed to, other than the sender's own — a group message's
 * recipient-set epoch, a pairwise message's recipients (`log.rcpt`, recorded at commit) — that are still
 * members when the event is built. Receipts have no event.
 *
 * Does NOT: carry the ciphertext or anything about the content (ids, seq and the server's timestamp only),
 * or contact an endpoint (the queue consumer does).
 */
import { sql } from 'drizzle-orm';
import { makeDb } from '../db.js';
import type { DeliveryStore, EventRow } from '../delivery/store.js';
import type { Env } from '../env.js';
import { type FanoutEvent, fanoutMessages, messageEventId } from './events.js';

/** Messages looked at per run (a run that stops there asks for an immediate re-run). */
export const EMIT_BATCH = 1_000;

/** Queues the events of the ready messages after the mark, then moves it. Returns true if more are ready. */
export async function emitMessageEvents(env: Env, store: DeliveryStore, conversationId: string): Promise<boolean> {
  const from = store.eventsThrough();
  const ready = store.eventsReadyThrough();
  if (ready <= from) return false;
  const rows = store.eventRows(from, ready, EMIT_BATCH);
  const full = rows.length === EMIT_BATCH;
  const through = full ? rows[rows.length - 1]!.seq : ready;
  if (rows.length > 0) {
    const subscribed = await subscribers(env, conversationId);
    if (subscribed.size > 0) {
      const events: FanoutEvent[] = [];
      for (const r of rows) {
        const users = audienceOf(store, r).filter((u) => subscribed.has(u));
        if (users.length > 0) events.push(messageEvent(conversationId, r, users));
      }
      const messages = fanoutMessages(events);
      for (let i = 0; i < messages.length; i += 100) {
        await env.WEBHOOK_QUEUE.sendBatch(messages.slice(i, i + 100).map((body) => ({ body, contentType: 'json' })));
      }
    }
  }
  store.setEventsThrough(through);
  return full;
}

function messageEvent(conversationId: string, r: EventRow, users: string[]): FanoutEvent {
  return {
    id: messageEventId(conversationId, r.seq),
    ts: r.ts,
    conversationId,
    audience: { users },
    type: 'message.created',
    data: { conversationId, seq: r.seq, senderUserId: r.sender_user, senderDeviceId: r.sender_device, ts: r.ts },
  };
}

/** The accounts a message was addressed to, other than the sender's. */
function audienceOf(store: DeliveryStore, r: EventRow): string[] {
  if (r.rcpt !== null) return r.rcpt.split(' ').filter((u) => u !== '');
  if (r.epoch === null) return [];
  const users = new Set<string>();
  for (const key of store.epochDevices(r.epoch)) {
    const u = key.slice(0, key.indexOf('\n'));
    if (u !== r.sender_user) users.add(u);
  }
  return [...users];
}

/** Members of the conversation with an enabled endpoint subscribed to `message.created` for it (one D1 read). */
async function subscribers(env: Env, conversationId: string): Promise<Set<string>> {
  const rows = await makeDb(env).all<{ user_id: string }>(sql`
    SELECT DISTINCT e.user_id AS user_id FROM webhook_endpoints e
    JOIN members m ON m.user_id = e.user_id AND m.conversation_id = ${conversationId}
    WHERE e.enabled = 1
      AND (e.conversation_id IS NULL OR e.conversation_id = ${conversationId})
      AND instr(e.event_types, '"message.created"') > 0`);
  return new Set(rows.map((r) => r.user_id));
}
