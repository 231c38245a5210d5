/**
 * The D1 side of delivery: the per-device mailbox (written by the ConversationDO's outbox flush, read by
 * GET /api/mailbox and by resume below the DO's retention), acknowledgements, revocation and TTL clean-up.
 *
 * Every write is idempotent so an alarm retried after a partial failure never duplicates or loses an
 * envelope: inserts are `ON CONFLICT DO NOTHING` on (device, conversation, seq); deletes are by key range.
 * Bulk inserts are chunked to ≤ 100 bound parameters and ≤ ~90 KB of ciphertext per statement (D1 limits).
 *
 * Does NOT: decide what to flush (worker/delivery/store.ts) or authenticate (routes do).
 */
import { and, asc, eq, gt, gte, isNotNull, lt, lte, or, sql } from 'drizzle-orm';
import type { BatchItem } from 'drizzle-orm/batch';
import type { MailboxEnvelope } from '../../schema/wire.js';
import { toB64u } from '../../web/src/protocol/bytes.js';
import type { Db } from '../db.js';
import { schema } from '../db.js';
import { asBytes, chunkRows } from '../domain/common.js';
import type { OutboxBatch, PendingAck } from './store.js';

const MAX_PARAMS = 100;
const MAX_STATEMENT_PAYLOAD = 90 * 1024;
/** Statements per D1 batch (one transaction each). */
const STATEMENTS_PER_BATCH = 50;

type Stmt = BatchItem<'sqlite'>;

async function runBatches(db: Db, stmts: Stmt[]): Promise<void> {
  for (let i = 0; i < stmts.length; i += STATEMENTS_PER_BATCH) {
    const part = stmts.slice(i, i + STATEMENTS_PER_BATCH);
    await db.batch(part as [Stmt, ...Stmt[]]);
  }
}

const bytesOf = (b: ArrayBuffer | null) => (b ? new Uint8Array(b) : null);

/**
 * Copies an outbox batch into D1 and applies pending acks after it. Safe to repeat. A mailbox row expires
 * after `mailboxTtlMs`, or after the conversation's disappearing-message timer `timerMs` when that is
 * shorter (issue 17); a group envelope keeps the TTL (the orphan rule of cleanupExpired reads it) and is
 * deleted with its messages by expireConversation.
 */
export async function flushOutbox(
  db: Db,
  conversationId: string,
  batch: OutboxBatch,
  acks: PendingAck[],
  mailboxTtlMs: number,
  timerMs = 0,
): Promise<void> {
  const rowTtl = timerMs > 0 ? Math.min(timerMs, mailboxTtlMs) : mailboxTtlMs;
  const stmts: Stmt[] = [];
  for (const part of chunkRows(batch.groups, 4, {
    maxParams: MAX_PARAMS,
    sizeOf: (g) => g.c.byteLength,
    maxBytes: MAX_STATEMENT_PAYLOAD,
  })) {
    stmts.push(
      db
        .insert(schema.groupEnvelopes)
        .values(
          part.map((g) => ({
            conversationId,
            seq: g.seq,
            ciphertext: new Uint8Array(g.c),
            expiresAt: g.ts + mailboxTtlMs,
          })),
        )
        .onConflictDoNothing(),
    );
  }
  for (const part of chunkRows(batch.rows, 12, {
    maxParams: MAX_PARAMS,
    sizeOf: (r) => (r.c ? r.c.byteLength : 0) + 200,
    maxBytes: MAX_STATEMENT_PAYLOAD,
  })) {
    stmts.push(
      db
        .insert(schema.mailbox)
        .values(
          part.map((r) => ({
            userId: r.user_id,
            deviceId: r.device_id,
            conversationId,
            seq: r.seq,
            ts: r.ts,
            senderUserId: r.sender_user,
            senderDeviceId: r.sender_device,
            clientMsgId: r.client_id,
            kind: r.kind,
            status: r.status,
            ciphertext: bytesOf(r.c),
            expiresAt: r.ts + rowTtl,
          })),
        )
        .onConflictDoNothing(),
    );
  }
  for (const a of acks) stmts.push(ackStatement(db, a.user_id, a.device_id, conversationId, a.up_to));
  await runBatches(db, stmts);
}

export function ackStatement(db: Db, userId: string, deviceId: string, conversationId: string, upTo: number) {
  return db
    .delete(schema.mailbox)
    .where(
      and(
        eq(schema.mailbox.userId, userId),
        eq(schema.mailbox.deviceId, deviceId),
        eq(schema.mailbox.conversationId, conversationId),
        lte(schema.mailbox.seq, upTo),
      ),
    );
}

/**
 * Disappearing messages (issue 17): every pending envelope of the conversation older than `cutoffTs` —
 * mailbox rows by their ts, group envelopes through the same seq (ts grows with seq) or through
 * `throughSeq` (what the ConversationDO has expired). Idempotent.
 */
export async function expireConversation(
  db: Db,
  conversationId: string,
  cutoffTs: number,
  throughSeq: number,
): Promise<void> {
  const m = schema.mailbox;
  const g = schema.groupEnvelopes;
  // Group envelopes first: their seq bound is read from the mailbox rows deleted next (a retry repeats both).
  await db.run(
    sql`DELETE FROM ${g} WHERE ${g.conversationId} = ${conversationId} AND ${g.seq} <= max(${throughSeq}, (SELECT coalesce(max(${m.seq}), 0) FROM ${m} WHERE ${m.conversationId} = ${conversationId} AND ${m.ts} < ${cutoffTs}))`,
  );
  await db.delete(m).where(and(eq(m.conversationId, conversationId), lt(m.ts, cutoffTs)));
}

/** A revoked device's mailbox, in every conversation. */
export async function deleteDeviceMailbox(db: Db, userId: string, deviceId: string): Promise<void> {
  await db.delete(schema.mailbox).where(and(eq(schema.mailbox.userId, userId), eq(schema.mailbox.deviceId, deviceId)));
}

/**
 * A deleted account in one conversation (ConversationDO.forgetUser, after its own forget and the flush in
 * flight): its devices' mailbox rows go and the rows of messages it sent name the tombstone — the same as
 * account deletion's D1 batch, repeated for what a flush wrote after that batch ran.
 */
export async function forgetUserMailbox(
  db: Db,
  conversationId: string,
  userId: string,
  tombstone: string,
): Promise<void> {
  const m = schema.mailbox;
  await db.batch([
    db.delete(m).where(and(eq(m.conversationId, conversationId), eq(m.userId, userId))),
    db
      .update(m)
      .set({ senderUserId: tombstone, senderDeviceId: tombstone, clientMsgId: sql`'deleted-' || ${m.seq}` })
      .where(and(eq(m.conversationId, conversationId), eq(m.senderUserId, userId))),
  ]);
}

export type { MailboxEnvelope };

/**
 * A device's pending envelopes in (conversation, seq) order after the cursor, at most `limit`, optionally
 * within one conversation and up to `throughSeq` (resume below the DO's retention).
 */
export async function readMailbox(
  db: Db,
  userId: string,
  deviceId: string,
  q: {
    afterConversation: string;
    afterSeq: number;
    limit: number;
    onlyConversation?: string;
    throughSeq?: number;
    now?: number;
  },
): Promise<MailboxEnvelope[]> {
  const m = schema.mailbox;
  const g = schema.groupEnvelopes;
  const c = schema.conversations;
  const now = q.now ?? Date.now();
  const conds = [
    eq(m.userId, userId),
    eq(m.deviceId, deviceId),
    // An expired row (TTL or disappearing-message timer) is never served, even before the clean-up ran.
    gte(m.expiresAt, now),
    sql`(${c.timerSeconds} IS NULL OR ${c.timerSeconds} = 0 OR ${m.ts} >= ${now} - ${c.timerSeconds} * 1000)`,
    or(
      gt(m.conversationId, q.afterConversation),
      and(eq(m.conversationId, q.afterConversation), gt(m.seq, q.afterSeq)),
    ),
  ];
  if (q.onlyConversation !== undefined) conds.push(eq(m.conversationId, q.onlyConversation));
  if (q.throughSeq !== undefined) conds.push(lte(m.seq, q.throughSeq));
  // A row whose group ciphertext expired before it has nothing deliverable: left out before LIMIT, so a page
  // holds `limit` envelopes whenever that many follow (a short page means the end: `next`, resume's `more`).
  conds.push(or(isNotNull(m.ciphertext), isNotNull(g.ciphertext))!);
  const rows = await db
    .select({
      conversationId: m.conversationId,
      seq: m.seq,
      ts: m.ts,
      senderUserId: m.senderUserId,
      senderDeviceId: m.senderDeviceId,
      clientMsgId: m.clientMsgId,
      kind: m.kind,
      status: m.status,
      ciphertext: m.ciphertext,
      groupCiphertext: g.ciphertext,
    })
    .from(m)
    .leftJoin(g, and(eq(g.conversationId, m.conversationId), eq(g.seq, m.seq), sql`${m.ciphertext} IS NULL`))
    .leftJoin(c, eq(c.id, m.conversationId))
    .where(and(...conds))
    .orderBy(asc(m.conversationId), asc(m.seq))
    .limit(q.limit)
    .all();
  const out: MailboxEnvelope[] = [];
  for (const r of rows) {
    const c = r.ciphertext ?? r.groupCiphertext;
    if (!c) continue; // (excluded by the query)
    out.push({
      conversationId: r.conversationId,
      seq: r.seq,
      ts: r.ts,
      from: { u: r.senderUserId, d: r.senderDeviceId },
      id: r.clientMsgId,
      kind: r.kind,
      ...(r.status ? { status: r.status } : {}),
      mode: r.ciphertext ? 'pairwise' : 'group',
      c: toB64u(asBytes(c)),
    });
  }
  return out;
}

/** Acks from HTTP: per conversation, everything up to `upTo`. */
export async function ackMailbox(
  db: Db,
  userId: string,
  deviceId: string,
  acks: { conversationId: string; upTo: number }[],
): Promise<void> {
  if (acks.length === 0) return;
  await runBatches(
    db,
    acks.map((a) => ackStatement(db, userId, deviceId, a.conversationId, a.upTo)),
  );
}

/** Rows deleted per statement by the clean-up (keeps each D1 write short). */
const CLEANUP_CHUNK = 5_000;

async function deleteInChunks(run: () => Promise<number>, maxRounds = 20): Promise<number> {
  let total = 0;
  for (let i = 0; i < maxRounds; i++) {
    const n = await run();
    total += n;
    if (n < CLEANUP_CHUNK) break;
  }
  return total;
}

/**
 * The scheduled clean-up: expired mailbox rows and group envelopes, envelopes of revoked devices (a
 * safety net behind deviceRevoked), group envelopes no device is waiting for, expired tickets, login
 * challenges and pending MFA steps. Returns counts for the log line.
 */
export async function cleanupExpired(db: Db, mailboxTtlMs: number, now = Date.now()): Promise<Record<string, number>> {
  const changes = (r: { meta: { changes?: number } }) => r.meta.changes ?? 0;
  const m = schema.mailbox;
  const g = schema.groupEnvelopes;
  const mailbox = await deleteInChunks(async () =>
    changes(
      await db.run(
        sql`DELETE FROM ${m} WHERE rowid IN (SELECT rowid FROM ${m} WHERE ${m.expiresAt} < ${now} LIMIT ${CLEANUP_CHUNK})`,
      ),
    ),
  );
  // Disappearing messages (issue 17): rows older than their conversation's timer, whatever TTL they were
  // written with (the ConversationDO deletes them sooner; this is the net behind it).
  const timed = await deleteInChunks(async () =>
    changes(
      await db.run(
        sql`DELETE FROM ${m} WHERE rowid IN (SELECT ${m}.rowid FROM ${m} JOIN ${schema.conversations} c ON c.id = ${m.conversationId} WHERE c.timer_seconds > 0 AND ${m.ts} < ${now} - c.timer_seconds * 1000 LIMIT ${CLEANUP_CHUNK})`,
      ),
    ),
  );
  const revokedDevices = await db
    .select({ userId: schema.devices.userId, deviceId: schema.devices.deviceId })
    .from(schema.devices)
    .where(and(isNotNull(schema.devices.revokedAt), gt(schema.devices.revokedAt, now - 7 * 24 * 3600 * 1000)))
    .limit(500)
    .all();
  for (const d of revokedDevices) await deleteDeviceMailbox(db, d.userId, d.deviceId);
  // Orphans only once an hour old: a flush may write a group envelope and its mailbox rows in two batches.
  // A group envelope's expires_at is its ts + the TTL, so in a conversation with a timer it also goes once
  // ts is older than the timer.
  const orphanBefore = now + mailboxTtlMs - 3600 * 1000;
  const groups = await deleteInChunks(async () =>
    changes(
      await db.run(
        sql`DELETE FROM ${g} WHERE rowid IN (SELECT rowid FROM ${g} WHERE ${g.expiresAt} < ${now} OR (${g.expiresAt} < ${orphanBefore} AND NOT EXISTS (SELECT 1 FROM ${m} WHERE ${m.conversationId} = ${g.conversationId} AND ${m.seq} = ${g.seq})) OR EXISTS (SELECT 1 FROM ${schema.conversations} c WHERE c.id = ${g.conversationId} AND c.timer_seconds > 0 AND ${g.expiresAt} - ${mailboxTtlMs} < ${now} - c.timer_seconds * 1000) LIMIT ${CLEANUP_CHUNK})`,
      ),
    ),
  );
  const tickets = changes(await db.delete(schema.wsTickets).where(lt(schema.wsTickets.expiresAt, now)).run());
  const challenges = changes(
    await db.delete(schema.loginChallenges).where(lt(schema.loginChallenges.expiresAt, now)).run(),
  );
  const mfa = changes(await db.delete(schema.mfaPending).where(lt(schema.mfaPending.expiresAt, now)).run());
  return { mailbox: mailbox + timed, groups, revokedDevices: revokedDevices.length, tickets, challenges, mfa };
}

/** Envelopes waiting in D1 mailboxes (all devices): the `mailbox_depth` gauge (worker/metrics.ts). */
export async function mailboxDepth(db: Db): Promise<number> {
  const row = await db.select({ n: sql<number>`count(*)` }).from(schema.mailbox).get();
  return Number(row?.n ?? 0);
}
