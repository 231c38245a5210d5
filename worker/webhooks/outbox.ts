/**
 * Producing webhook events for changes made through the Worker (membership, devices, identity) without
 * losing one: the event is a `webhook_outbox` row written in the SAME D1 batch as the change (both or
 * neither), sent to the queue after the commit and then deleted; the per-minute cron (`sweepOutbox`) re-sends
 * rows still there after WEBHOOK_SETTINGS.outboxSweepAfterMs (a Worker that died between commit and send, a
 * queue hiccup). A re-send keeps the event's id, so receivers drop the copy.
 *
 * The audience of each event (who may see it) is decided here, by the rules in docs/API.md § Webhooks:
 *   member_added / role_changed: the members after the change; member_removed: those plus the removed user;
 *   device.added / device.removed: the account itself; contact.identity_changed: everyone who shares a
 *   conversation with the account (resolved by the consumer when it fans out).
 *
 * Does NOT: emit `message.created` (the ConversationDO does, from its own log: worker/webhooks/emit.ts) or
 * carry anything but ids, roles, sequence numbers and times.
 */
import { asc, inArray, lt } from 'drizzle-orm';
import type { Db } from '../db.js';
import { schema } from '../db.js';
import type { Env } from '../env.js';
import { log } from '../log.js';
import { webhookConfig } from './config.js';
import { type FanoutEvent, fanoutMessages, randomEventId } from './events.js';

type Role = 'owner' | 'admin' | 'member';

/** Membership-log change → member_added / member_removed / role_changed events. */
export function membershipEvents(p: {
  conversationId: string;
  before: ReadonlyMap<string, Role>;
  after: ReadonlyMap<string, Role>;
  byUserId: string;
  logSeq: number;
  at: number;
}): FanoutEvent[] {
  const members = [...p.after.keys()];
  const base = { conversationId: p.conversationId, byUserId: p.byUserId, logSeq: p.logSeq };
  const out: FanoutEvent[] = [];
  const ev = (type: string, data: Record<string, unknown>, users: string[]): FanoutEvent => ({
    id: randomEventId(),
    ts: p.at,
    conversationId: p.conversationId,
    audience: { users },
    type,
    data,
  });
  for (const [u, role] of p.after) {
    const had = p.before.get(u);
    if (had === undefined) out.push(ev('conversation.member_added', { ...base, userId: u, role }, members));
    else if (had !== role) {
      out.push(ev('conversation.role_changed', { ...base, userId: u, role, previousRole: had }, members));
    }
  }
  for (const u of p.before.keys()) {
    if (!p.after.has(u)) out.push(ev('conversation.member_removed', { ...base, userId: u }, [...members, u]));
  }
  return out;
}

export function deviceEvent(
  type: 'device.added' | 'device.removed',
  p: { userId: string; deviceId: string; listVersion: number; at: number },
): FanoutEvent {
  return {
    id: randomEventId(),
    ts: p.at,
    audience: { users: [p.userId] },
    type,
    data: { userId: p.userId, deviceId: p.deviceId, listVersion: p.listVersion },
  };
}

export function identityChangedEvent(p: { userId: string; identityVersion: number; at: number }): FanoutEvent {
  return {
    id: randomEventId(),
    ts: p.at,
    audience: { contactsOf: p.userId },
    type: 'contact.identity_changed',
    data: { userId: p.userId, identityVersion: p.identityVersion },
  };
}

const outboxInsert = (db: Db, row: typeof schema.webhookOutbox.$inferInsert) =>
  db.insert(schema.webhookOutbox).values(row);

export interface PendingEvents {
  /** Put these in the change's own D1 batch. */
  readonly statements: ReturnType<typeof outboxInsert>[];
  /** After the batch committed: queue the events and delete the rows (never throws). */
  release(env: Env, db: Db): Promise<void>;
}

/** Outbox rows for `events` (one row per queue message) and the post-commit step that sends them. */
export function outboxEvents(db: Db, events: FanoutEvent[], at = Date.now()): PendingEvents {
  const rows = fanoutMessages(events).map((m) => ({ id: randomEventId(), body: JSON.stringify(m), createdAt: at }));
  return {
    statements: rows.map((r) => outboxInsert(db, r)),
    release: (env, d) => sendRows(env, d, rows),
  };
}

async function sendRows(env: Env, db: Db, rows: { id: string; body: string }[]): Promise<void> {
  if (rows.length === 0) return;
  try {
    await env.WEBHOOK_QUEUE.sendBatch(rows.map((r) => ({ body: JSON.parse(r.body), contentType: 'json' as const })));
    await db.delete(schema.webhookOutbox).where(
      inArray(
        schema.webhookOutbox.id,
        rows.map((r) => r.id),
      ),
    );
  } catch (err) {
    // The rows stay; the cron sends them again (same event ids).
    log('warn', 'webhook_outbox_send_failed', { type: err instanceof Error ? err.name : 'unknown', rows: rows.length });
  }
}

/** Cron: re-sends outbox rows older than outboxSweepAfterMs (oldest first, 100 per run). */
export async function sweepOutbox(env: Env, db: Db, now = Date.now()): Promise<number> {
  const cutoff = now - webhookConfig(env.WEBHOOK_SETTINGS).outboxSweepAfterMs;
  const rows = await db
    .select({ id: schema.webhookOutbox.id, body: schema.webhookOutbox.body })
    .from(schema.webhookOutbox)
    .where(lt(schema.webhookOutbox.createdAt, cutoff))
    .orderBy(asc(schema.webhookOutbox.createdAt))
    .limit(100)
    .all();
  await sendRows(env, db, rows);
  return rows.length;
}
