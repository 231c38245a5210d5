/**
 * The caller device's mailbox (offline sync), across all its conversations:
 *
 *   GET  /api/mailbox?afterConversation=&afterSeq=&limit=   → { envelopes: [...], next: {…} | null }
 *   POST /api/mailbox/ack   { acks: [{ conversationId, upTo }] }   → 204
 *
 * Pages are in (conversation, seq) order; `next` is the cursor for the following page. Envelopes are the
 * wire `envelope` (schema/wire.ts) plus `conversationId`; the ciphertexts are opaque to the server.
 * Envelopes reach D1 from the conversation DO's outbox within DELIVERY_LIMITS.flushDelayMs; a device that
 * is online gets them live (and resumes over the WebSocket) instead.
 */
import { eq } from 'drizzle-orm';
import { Hono } from 'hono';
import { z } from 'zod';
import type { MailboxPage } from '../../schema/wire.js';
import { requireAuth } from '../auth/middleware.js';
import { makeDb, schema } from '../db.js';
import { deliveryConfig } from '../delivery/config.js';
import { ackMailbox, readMailbox } from '../delivery/mailbox-db.js';
import type { AppBindings } from '../env.js';
import { log } from '../log.js';
import { idString } from '../validate.js';
import { parseInput, readJson, smallBody } from './input.js';

const MAX_ACKS = 100;
const pageQuery = z.strictObject({
  afterConversation: z.union([idString, z.literal('')]).default(''),
  afterSeq: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
  limit: z.coerce.number().int().min(1).optional(),
});
const ackBody = z.strictObject({
  acks: z
    .array(z.strictObject({ conversationId: idString, upTo: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) }))
    .min(1)
    .max(MAX_ACKS),
});

export const mailbox = new Hono<AppBindings>()
  .get('/', requireAuth, async (c) => {
    const q = parseInput(pageQuery, c.req.query());
    const cap = deliveryConfig(c.env.DELIVERY_LIMITS).mailboxPageMax;
    const limit = Math.min(q.limit ?? cap, cap);
    const auth = c.get('auth');
    const envelopes = await readMailbox(makeDb(c.env), auth.userId, auth.deviceId, {
      afterConversation: q.afterConversation,
      afterSeq: q.afterSeq,
      limit,
    });
    const last = envelopes[envelopes.length - 1];
    const next =
      envelopes.length === limit && last ? { afterConversation: last.conversationId, afterSeq: last.seq } : null;
    c.header('Cache-Control', 'no-store');
    const page: MailboxPage = { envelopes, next };
    return c.json(page);
  })
  .post('/ack', smallBody, requireAuth, async (c) => {
    const body = await readJson(c, ackBody);
    const auth = c.get('auth');
    const db = makeDb(c.env);
    await ackMailbox(db, auth.userId, auth.deviceId, body.acks);
    // The DO may still hold un-flushed copies; tell it (best effort: D1 is already clean, and the flush's
    // ON CONFLICT would only re-insert what the device has acked, which the next ack or the TTL removes).
    // Only conversations the caller is a member of: `idFromName` on an arbitrary id would create a DO
    // (and its storage) for any string a client sends.
    // (All of the caller's conversations in one indexed read: up to 100 ids plus the user would pass
    // D1's 100 bound parameters.)
    const mine = new Set(
      (
        await db
          .select({ id: schema.members.conversationId })
          .from(schema.members)
          .where(eq(schema.members.userId, auth.userId))
          .all()
      ).map((r) => r.id),
    );
    const results = await Promise.allSettled(
      body.acks
        .filter((a) => mine.has(a.conversationId))
        .map((a) =>
          c.env.CONVERSATION.get(c.env.CONVERSATION.idFromName(a.conversationId)).ackDevice(
            auth.userId,
            auth.deviceId,
            a.upTo,
          ),
        ),
    );
    const failed = results.filter((r) => r.status === 'rejected').length;
    if (failed > 0) log('warn', 'mailbox_ack_notify_failed', { failed });
    return c.body(null, 204);
  });
