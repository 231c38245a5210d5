/**
 * Webhook endpoints of the signed-in account, shared by REST (routes/webhooks.ts) and GraphQL: create (the
 * secret is returned once), list, read, update, rotate the secret (the previous one keeps signing for
 * WEBHOOK_ROTATION_OVERLAP_MS), delete, send a test event, and the last attempts.
 *
 * Rules: at most MAX_WEBHOOK_ENDPOINTS per account (409 `too_many_webhooks`); the URL passes url-policy.ts
 * (400 with its code); a conversation filter must name a conversation the account is in (404 `not_found`
 * otherwise, as everywhere); another account's endpoint is 404 `not_found`. Every change is audited (ids
 * only — never the URL's query, never a secret).
 *
 * Does NOT: deliver (worker/webhooks/consumer.ts), or keep a secret in clear (signing.ts seals it).
 */
import { and, asc, desc, eq, sql } from 'drizzle-orm';
import {
  type CreateWebhookInput,
  MAX_WEBHOOK_ENDPOINTS,
  type UpdateWebhookInput,
  WEBHOOK_EVENT_TYPES,
  WEBHOOK_ROTATION_OVERLAP_MS,
  type WebhookDeliveryView,
  type WebhookEndpointView,
  type WebhookEventType,
  type WebhookSecretView,
} from '../../schema/webhooks.js';
import { toB64u } from '../../web/src/protocol/bytes.js';
import { schema } from '../db.js';
import { AppError } from '../errors.js';
import { enforceRateLimit } from '../limiter.js';
import { eventBody, randomEventId } from '../webhooks/events.js';
import { formatSecret, newWebhookSecret, sealSecret } from '../webhooks/signing.js';
import { checkWebhookUrl } from '../webhooks/url-policy.js';
import { auditStmt, type Caller, isConstraintError, writeBatch } from './common.js';

type Row = typeof schema.webhookEndpoints.$inferSelect;
const E = schema.webhookEndpoints;

const notFound = () => new AppError(404, 'not_found', 'no such webhook endpoint');

function view(r: Row): WebhookEndpointView {
  return {
    id: r.id,
    url: r.url,
    description: r.description,
    events: JSON.parse(r.eventTypes) as WebhookEventType[],
    conversationId: r.conversationId,
    enabled: r.enabled,
    disabledReason: r.disabledReason,
    disabledAt: r.disabledAt,
    lastSuccessAt: r.lastSuccessAt,
    previousSecretExpiresAt: r.prevSecretEnc && (r.prevExpiresAt ?? 0) > Date.now() ? r.prevExpiresAt : null,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}

async function own(caller: Caller, id: string): Promise<Row> {
  if (!/^wh_[A-Za-z0-9_-]{1,60}$/.test(id)) throw notFound();
  const row = await caller.db
    .select()
    .from(E)
    .where(and(eq(E.id, id), eq(E.userId, caller.auth.userId)))
    .get();
  if (!row) throw notFound();
  return row;
}

async function assertMember(caller: Caller, conversationId: string): Promise<void> {
  const m = await caller.db
    .select({ role: schema.members.role })
    .from(schema.members)
    .where(and(eq(schema.members.conversationId, conversationId), eq(schema.members.userId, caller.auth.userId)))
    .get();
  if (!m) throw new AppError(404, 'not_found', 'no such conversation');
}

/** The URL as stored (the parser's normal form), after the SSRF policy. */
function acceptedUrl(caller: Caller, raw: string): string {
  return checkWebhookUrl(raw, caller.env.APP_ENV).href;
}

/** Audit details for a URL: its origin only (a path or query may hold the receiver's own token). */
const origin = (url: string) => new URL(url).origin;

export async function createWebhook(caller: Caller, input: CreateWebhookInput): Promise<WebhookSecretView> {
  const { db, auth } = caller;
  const url = acceptedUrl(caller, input.url);
  if (input.conversationId) await assertMember(caller, input.conversationId);
  const count = await db.select({ n: sql<number>`count(*)` }).from(E).where(eq(E.userId, auth.userId)).get();
  if ((count?.n ?? 0) >= MAX_WEBHOOK_ENDPOINTS) {
    throw new AppError(409, 'too_many_webhooks', `at most ${MAX_WEBHOOK_ENDPOINTS} webhook endpoints per account`);
  }
  const id = `wh_${toB64u(crypto.getRandomValues(new Uint8Array(15)))}`;
  const secret = newWebhookSecret();
  const now = Date.now();
  const row = {
    id,
    userId: auth.userId,
    url,
    description: input.description ?? '',
    eventTypes: JSON.stringify(input.events ?? [...WEBHOOK_EVENT_TYPES]),
    conversationId: input.conversationId ?? null,
    secretEnc: sealSecret(caller.env, id, secret),
    createdAt: now,
    updatedAt: now,
  };
  // The count check and the insert are one statement: two concurrent creates cannot pass 10 together.
  const insert = db.run(sql`
    INSERT INTO webhook_endpoints (id, user_id, url, description, event_types, conversation_id, secret_enc,
                                   created_at, updated_at)
    SELECT ${row.id}, ${row.userId}, ${row.url}, ${row.description}, ${row.eventTypes}, ${row.conversationId},
           ${row.secretEnc}, ${row.createdAt}, ${row.updatedAt}
    WHERE (SELECT count(*) FROM webhook_endpoints WHERE user_id = ${row.userId}) < ${MAX_WEBHOOK_ENDPOINTS}`);
  try {
    await writeBatch(caller.env, [
      insert,
      auditStmt(caller, 'webhook.created', { endpointId: id, origin: origin(url), events: row.eventTypes }),
    ]);
  } catch (err) {
    if (isConstraintError(err)) throw new AppError(409, 'conflict', 'webhook endpoint id collision; retry');
    throw err;
  }
  const stored = await db.select().from(E).where(eq(E.id, id)).get();
  if (!stored) {
    throw new AppError(409, 'too_many_webhooks', `at most ${MAX_WEBHOOK_ENDPOINTS} webhook endpoints per account`);
  }
  return { endpoint: view(stored), secret: formatSecret(secret) };
}

export async function listWebhooks(caller: Caller): Promise<WebhookEndpointView[]> {
  const rows = await caller.db
    .select()
    .from(E)
    .where(eq(E.userId, caller.auth.userId))
    .orderBy(asc(E.createdAt), asc(E.id))
    .all();
  return rows.map(view);
}

export async function getWebhook(caller: Caller, id: string): Promise<WebhookEndpointView> {
  return view(await own(caller, id));
}

export async function updateWebhook(
  caller: Caller,
  id: string,
  input: UpdateWebhookInput,
): Promise<WebhookEndpointView> {
  const row = await own(caller, id);
  const set: Partial<typeof E.$inferInsert> = { updatedAt: Date.now() };
  if (input.url !== undefined) set.url = acceptedUrl(caller, input.url);
  if (input.events !== undefined) set.eventTypes = JSON.stringify(input.events);
  if (input.description !== undefined) set.description = input.description;
  if (input.conversationId !== undefined) {
    if (input.conversationId !== null) await assertMember(caller, input.conversationId);
    set.conversationId = input.conversationId;
  }
  if (input.enabled === true) Object.assign(set, { enabled: true, disabledReason: null, disabledAt: null });
  if (input.enabled === false && row.enabled) {
    Object.assign(set, { enabled: false, disabledReason: 'disabled_by_user', disabledAt: Date.now() });
  }
  await writeBatch(caller.env, [
    caller.db.update(E).set(set).where(eq(E.id, row.id)),
    auditStmt(caller, 'webhook.updated', {
      endpointId: row.id,
      fields: Object.keys(input).sort().join(','),
      ...(set.url ? { origin: origin(set.url) } : {}),
    }),
  ]);
  return getWebhook(caller, row.id);
}

/** A new secret; the current one becomes the previous one and keeps signing for the overlap. */
export async function rotateWebhookSecret(caller: Caller, id: string): Promise<WebhookSecretView> {
  const row = await own(caller, id);
  const secret = newWebhookSecret();
  const now = Date.now();
  await writeBatch(caller.env, [
    caller.db
      .update(E)
      .set({
        secretEnc: sealSecret(caller.env, row.id, secret),
        prevSecretEnc: row.secretEnc,
        prevExpiresAt: now + WEBHOOK_ROTATION_OVERLAP_MS,
        updatedAt: now,
      })
      // Compare-and-swap: two concurrent rotations must not both keep the same "previous" secret.
      .where(and(eq(E.id, row.id), eq(E.updatedAt, row.updatedAt))),
    auditStmt(caller, 'webhook.secret_rotated', { endpointId: row.id }),
  ]);
  const stored = await own(caller, id);
  if (stored.updatedAt !== now) throw new AppError(409, 'conflict', 'the endpoint changed meanwhile; retry');
  return { endpoint: view(stored), secret: formatSecret(secret) };
}

export async function deleteWebhook(caller: Caller, id: string): Promise<void> {
  const row = await own(caller, id);
  await writeBatch(caller.env, [
    caller.db.delete(E).where(eq(E.id, row.id)),
    auditStmt(caller, 'webhook.deleted', { endpointId: row.id }),
  ]);
}

/** Queues one `webhook.test` event for this endpoint (enabled or not); returns its `webhook-id`. */
export async function testWebhook(caller: Caller, id: string): Promise<{ eventId: string }> {
  const row = await own(caller, id);
  if (!row.enabled) throw new AppError(409, 'webhook_disabled', 'the endpoint is disabled; enable it first');
  // Every test event is an outbound POST (and its retries): limited per account (bucket webhookTest).
  await enforceRateLimit(caller.env, 'webhookTest', [`acct:${caller.auth.userId}`]);
  const eventId = randomEventId();
  const now = Date.now();
  const body = eventBody({ type: 'webhook.test', ts: now, data: { endpointId: row.id } });
  await caller.env.WEBHOOK_QUEUE.send(
    { k: 'attempt', endpointId: row.id, eventId, type: 'webhook.test', body, attempt: 1, firstAt: now },
    { contentType: 'json' },
  );
  return { eventId };
}

/** The newest delivery attempts (at most `limit`, ≤ 100), newest first. */
export async function webhookDeliveries(caller: Caller, id: string, limit = 100): Promise<WebhookDeliveryView[]> {
  const row = await own(caller, id);
  const D = schema.webhookDeliveries;
  return caller.db
    .select({
      id: D.id,
      eventId: D.eventId,
      eventType: D.eventType,
      attempt: D.attempt,
      status: D.status,
      httpStatus: D.httpStatus,
      error: D.error,
      latencyMs: D.latencyMs,
      nextRetryAt: D.nextRetryAt,
      at: D.at,
    })
    .from(D)
    .where(eq(D.endpointId, row.id))
    .orderBy(desc(D.id))
    .limit(Math.min(Math.max(1, limit), 100))
    .all();
}
