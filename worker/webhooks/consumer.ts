/**
 * The webhook queue's consumer (the Worker's `queue` handler): fan-out of events to endpoints, signed POSTs,
 * the delivery log, retries and disabling.
 *
 * Per batch:
 *  1. `fanout` messages: every event's audience (user ids, or the contacts of a user) is matched against the
 *     enabled endpoints subscribed to its type (and, for conversation events, the endpoint's conversation
 *     filter); each match becomes an attempt with the event's fixed body and `webhook-id`. The first
 *     `inlineAttempts` are made in this invocation (one queue hop from event to endpoint); the rest are
 *     queued as `attempt` messages.
 *  2. Every due attempt (inline first attempts and queued retries alike) is checked again at the time of
 *     sending: the endpoint still exists and is enabled, still subscribes to the type (conversation filter
 *     included), and its owner is still in the event's audience (audience.ts: e.g. still a member of the
 *     conversation). One that is not is dropped — acked, not retried, not sent, not in the delivery log;
 *     logged (endpoint id, type, reason) and counted (`webhook_deliveries` / `dropped`).
 *     The others run with at most `concurrency` requests at once: URL
 *     policy again (url-policy.ts), Standard Webhooks headers (signing.ts: current secret, plus the previous
 *     one during a rotation's overlap), `redirect: "manual"`, a `timeoutMs` abort, the response body
 *     discarded unread. 2xx succeeds; anything else fails (`http_status`, `redirect`, `timeout`, `network`,
 *     `url_refused`).
 *  3. A failed attempt with attempts left is re-queued with the schedule's next delay (±10 % jitter, at least
 *     a `Retry-After` the receiver sent with 429/503); a delay longer than one queue message may carry hops.
 *     `410 Gone` disables the endpoint at once (`gone`); the last attempt failing disables it
 *     (`retries_exhausted`) unless some delivery to it succeeded since that event's first attempt.
 *  4. One D1 batch records every attempt (kept: the newest WEBHOOK_DELIVERIES_KEPT per endpoint), successes
 *     and disablings.
 *
 * Delivery is at least once: a batch that fails half-way is retried by the queue and an attempt can repeat
 * with the same `webhook-id` — receivers de-duplicate by it (docs/API.md). Nothing here waits on, or is
 * waited on by, message delivery.
 *
 * Does NOT: log bodies, secrets or URLs (ids, types, statuses and counts only); follow redirects; read
 * response bodies.
 */
import { and, eq, inArray, lt, sql } from 'drizzle-orm';
import {
  WEBHOOK_DELIVERIES_KEPT,
  type WebhookEventBody,
  type WebhookEventType,
  webhookEventBody,
} from '../../schema/webhooks.js';
import { type Db, makeDb, schema } from '../db.js';
import { asBytes, chunkRows, writeBatch } from '../domain/common.js';
import type { Env } from '../env.js';
import { log } from '../log.js';
import { countWebhookDelivery } from '../metrics.js';
import { audienceRule, contactsOf as contactsOfUser, type EntitlementCheck, entitledNow } from './audience.js';
import { type WebhookConfig, webhookConfig } from './config.js';
import { type AttemptJob, eventBody, type FanoutEvent, type QueueMessage, queueMessage } from './events.js';
import { openSecret, signedHeaders } from './signing.js';
import { checkWebhookUrl } from './url-policy.js';

/** Vite's mode (see db.ts): the queue tap below exists only in `vite dev` and the test pool. */
const MODE = (import.meta as { env?: { MODE?: string } }).env?.MODE;
const TAP_COMPILED_IN = MODE === 'development' || MODE === 'test';

type EndpointRow = typeof schema.webhookEndpoints.$inferSelect;

interface Outcome {
  job: AttemptJob;
  ok: boolean;
  httpStatus: number | null;
  error: 'http_status' | 'timeout' | 'network' | 'redirect' | 'url_refused' | null;
  latencyMs: number;
  at: number;
  retryAfterSec: number | null;
}

export async function handleWebhookBatch(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const cfg = webhookConfig(env.WEBHOOK_SETTINGS);
  const db = makeDb(env);
  const fanouts: { msg: Message<unknown>; events: FanoutEvent[] }[] = [];
  const attempts: { msg: Message<unknown>; job: AttemptJob }[] = [];
  for (const msg of batch.messages) {
    // Development only (APP_ENV=development + E2E_CHAT_QUEUE_TAP=1): every queue message into the log, so the
    // e2e scan for plaintext covers queue messages too. Compiled out of production builds.
    if (TAP_COMPILED_IN && env.APP_ENV === 'development' && env.E2E_CHAT_QUEUE_TAP === '1') {
      log('info', 'webhook_queue_tap', { body: JSON.stringify(msg.body) });
    }
    const parsed = queueMessage.safeParse(msg.body);
    if (!parsed.success) {
      log('warn', 'webhook_queue_bad_message', {});
      msg.ack();
      continue;
    }
    const m: QueueMessage = parsed.data;
    if (m.k === 'fanout') fanouts.push({ msg, events: m.events });
    else attempts.push({ msg, job: m });
  }

  // 1. Fan-out: events → attempts (a failure here retries those queue messages; nothing was sent yet).
  const inline: AttemptJob[] = [];
  const queued: AttemptJob[] = [];
  for (const f of fanouts) {
    try {
      const jobs = await fanout(db, f.events);
      for (const j of jobs) (inline.length < cfg.inlineAttempts ? inline : queued).push(j);
    } catch (err) {
      log('warn', 'webhook_fanout_failed', { type: err instanceof Error ? err.name : 'unknown' });
      f.msg.retry({ delaySeconds: 5 });
    }
  }
  if (queued.length > 0)
    await sendJobs(
      env,
      queued.map((job) => ({ job, delaySec: 0 })),
    );
  for (const f of fanouts) f.msg.ack();

  // 2. Attempts (queued ones whose time has not come hop again).
  const now = Date.now();
  const due: AttemptJob[] = [...inline];
  const hops: { job: AttemptJob; delaySec: number }[] = [];
  for (const a of attempts) {
    if (a.job.notBefore !== undefined && a.job.notBefore > now + 1000) {
      hops.push({ job: a.job, delaySec: Math.min(cfg.maxQueueDelaySec, Math.ceil((a.job.notBefore - now) / 1000)) });
    } else {
      due.push(a.job);
    }
  }
  if (hops.length > 0) await sendJobs(env, hops);
  if (due.length > 0) {
    const endpoints = await loadEndpoints(db, [...new Set(due.map((j) => j.endpointId))]);
    const live = await stillDeliverable(env, db, endpoints, due);
    // Each endpoint's secrets are opened once per batch, not once per attempt.
    const secrets = new Map<string, Uint8Array[]>();
    const outcomes = await pool(live, cfg.concurrency, (j) =>
      attempt(env, cfg, endpoints.get(j.endpointId)!, j, secrets),
    );
    await settle(env, db, cfg, endpoints, outcomes);
  }
  for (const a of attempts) a.msg.ack();
}

/** Why an attempt is dropped instead of made (logged and counted; never retried). */
export type DropReason = 'endpoint_gone' | 'endpoint_disabled' | 'not_subscribed' | 'not_entitled' | 'unreadable';

/**
 * The attempts that may still be made, checked at the time of sending (first attempts and retries alike):
 * the endpoint still exists and is enabled, still subscribes to the type (and its conversation filter still
 * matches), and its owner is still in the event's audience (audience.ts). The others are dropped: their
 * queue messages are acked, nothing is sent or written to the delivery log, one log line per attempt
 * (endpoint id, event type, reason) and a `webhook_deliveries` count (`dropped`).
 */
async function stillDeliverable(
  env: Env,
  db: Db,
  endpoints: Map<string, EndpointRow>,
  due: AttemptJob[],
): Promise<AttemptJob[]> {
  const dropped: { job: AttemptJob; reason: DropReason }[] = [];
  const candidates: { job: AttemptJob; check: EntitlementCheck }[] = [];
  for (const job of due) {
    const ep = endpoints.get(job.endpointId);
    if (!ep) {
      dropped.push({ job, reason: 'endpoint_gone' });
      continue;
    }
    if (!ep.enabled) {
      dropped.push({ job, reason: 'endpoint_disabled' });
      continue;
    }
    let body: WebhookEventBody;
    try {
      body = webhookEventBody.parse(JSON.parse(job.body));
    } catch {
      // Only our own fan-out writes bodies; one that no longer parses (a schema change) is not sent.
      dropped.push({ job, reason: 'unreadable' });
      continue;
    }
    const conversationId = 'conversationId' in body.data ? body.data.conversationId : undefined;
    if (body.type !== 'webhook.test' && !subscribes(ep, { type: body.type, conversationId })) {
      dropped.push({ job, reason: 'not_subscribed' });
      continue;
    }
    candidates.push({ job, check: { ownerId: ep.userId, endpointId: ep.id, rule: audienceRule(body) } });
  }
  const ok = await entitledNow(
    db,
    candidates.map((c) => c.check),
  );
  const live: AttemptJob[] = [];
  candidates.forEach((c, i) => {
    if (ok[i]) live.push(c.job);
    else dropped.push({ job: c.job, reason: 'not_entitled' });
  });
  for (const { job, reason } of dropped) {
    log('info', 'webhook_attempt_dropped', {
      endpointId: job.endpointId,
      type: job.type,
      attempt: job.attempt,
      reason,
    });
  }
  if (dropped.length > 0) countWebhookDelivery(env, 'dropped', dropped.length);
  return live;
}

/** Endpoints by id (enabled or not: a disabled one's pending attempts are dropped). */
async function loadEndpoints(db: Db, ids: string[]): Promise<Map<string, EndpointRow>> {
  const out = new Map<string, EndpointRow>();
  for (const part of chunkRows(ids, 1)) {
    const rows = await db.select().from(schema.webhookEndpoints).where(inArray(schema.webhookEndpoints.id, part)).all();
    for (const r of rows) out.set(r.id, r);
  }
  return out;
}

/** The attempts an event batch turns into: one per (event, matching enabled endpoint of its audience). */
export async function fanout(db: Db, events: FanoutEvent[]): Promise<AttemptJob[]> {
  const users = new Set<string>();
  const contactsOf = new Set<string>();
  for (const e of events) {
    if ('users' in e.audience) for (const u of e.audience.users) users.add(u);
    else contactsOf.add(e.audience.contactsOf);
  }
  const contacts = new Map<string, Set<string>>();
  for (const u of contactsOf) {
    const them = await contactsOfUser(db, u);
    contacts.set(u, them);
    for (const c of them) users.add(c);
  }
  const byUser = new Map<string, EndpointRow[]>();
  for (const part of chunkRows([...users], 1)) {
    const rows = await db
      .select()
      .from(schema.webhookEndpoints)
      .where(and(inArray(schema.webhookEndpoints.userId, part), eq(schema.webhookEndpoints.enabled, true)))
      .all();
    for (const r of rows) byUser.set(r.userId, [...(byUser.get(r.userId) ?? []), r]);
  }
  const jobs: AttemptJob[] = [];
  const firstAt = Date.now();
  for (const e of events) {
    const audienceUsers = 'users' in e.audience ? e.audience.users : [...(contacts.get(e.audience.contactsOf) ?? [])];
    let body: string | null = null;
    for (const u of new Set(audienceUsers)) {
      for (const ep of byUser.get(u) ?? []) {
        if (!subscribes(ep, e)) continue;
        body ??= eventBody(e);
        jobs.push({ k: 'attempt', endpointId: ep.id, eventId: e.id, type: e.type, body, attempt: 1, firstAt });
      }
    }
  }
  return jobs;
}

function subscribes(ep: EndpointRow, e: Pick<FanoutEvent, 'type' | 'conversationId'>): boolean {
  let types: WebhookEventType[];
  try {
    types = JSON.parse(ep.eventTypes) as WebhookEventType[];
  } catch {
    return false;
  }
  if (!types.includes(e.type as WebhookEventType)) return false;
  return e.conversationId === undefined || ep.conversationId === null || ep.conversationId === e.conversationId;
}

async function sendJobs(env: Env, jobs: { job: AttemptJob; delaySec: number }[]): Promise<void> {
  for (let i = 0; i < jobs.length; i += 100) {
    await env.WEBHOOK_QUEUE.sendBatch(
      jobs.slice(i, i + 100).map(({ job, delaySec }) => ({
        body: job satisfies QueueMessage,
        contentType: 'json' as const,
        ...(delaySec > 0 ? { delaySeconds: delaySec } : {}),
      })),
    );
  }
}

async function pool<T, R>(items: T[], n: number, f: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

/** One signed POST. Never throws: every failure is an Outcome. */
export async function attempt(
  env: Env,
  cfg: WebhookConfig,
  ep: EndpointRow,
  job: AttemptJob,
  opened: Map<string, Uint8Array[]> = new Map(),
): Promise<Outcome> {
  const started = Date.now();
  const done = (o: Partial<Outcome>): Outcome => ({
    job,
    ok: false,
    httpStatus: null,
    error: null,
    retryAfterSec: null,
    ...o,
    latencyMs: Date.now() - started,
    at: started,
  });
  let url: URL;
  try {
    url = checkWebhookUrl(ep.url, env.APP_ENV);
  } catch {
    return done({ error: 'url_refused' });
  }
  let headers: Record<string, string>;
  try {
    const overlap = ep.prevSecretEnc !== null && (ep.prevExpiresAt ?? 0) > started;
    const key = `${ep.id}\n${overlap}`;
    let secrets = opened.get(key);
    if (!secrets) {
      secrets = [openSecret(env, ep.id, asBytes(ep.secretEnc))];
      if (overlap && ep.prevSecretEnc) secrets.push(openSecret(env, ep.id, asBytes(ep.prevSecretEnc)));
      opened.set(key, secrets);
    }
    headers = signedHeaders(job.eventId, job.body, secrets, started);
  } catch (err) {
    log('error', 'webhook_sign_failed', { endpointId: ep.id, type: err instanceof Error ? err.name : 'unknown' });
    return done({ error: 'network' });
  }
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'e2e-chat-webhooks/1', ...headers },
      body: job.body,
      redirect: 'manual',
      signal: AbortSignal.timeout(cfg.timeoutMs),
    });
    // Discarded unread (never buffered, never logged).
    await res.body?.cancel().catch(() => undefined);
    if (res.status >= 200 && res.status < 300) return done({ ok: true, httpStatus: res.status });
    const retryAfter = Number.parseInt(res.headers.get('retry-after') ?? '', 10);
    return done({
      httpStatus: res.status,
      error: res.status >= 300 && res.status < 400 ? 'redirect' : 'http_status',
      retryAfterSec: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null,
    });
  } catch (err) {
    const name = err instanceof Error ? err.name : '';
    return done({ error: name === 'TimeoutError' || name === 'AbortError' ? 'timeout' : 'network' });
  }
}

function describe(o: Outcome): string {
  if (o.error === 'http_status' || o.error === 'redirect') return `HTTP ${o.httpStatus}`;
  return o.error ?? 'ok';
}

/** Retries, disabling and the delivery log for one batch of outcomes. */
async function settle(
  env: Env,
  db: Db,
  cfg: WebhookConfig,
  endpoints: Map<string, EndpointRow>,
  outcomes: Outcome[],
): Promise<void> {
  const schedule = cfg.retryScheduleSec;
  const retries: { job: AttemptJob; delaySec: number }[] = [];
  const rows: (typeof schema.webhookDeliveries.$inferInsert)[] = [];
  const succeeded = new Map<string, number>();
  const disable = new Map<string, string>();
  for (const o of outcomes) {
    const ep = endpoints.get(o.job.endpointId)!;
    let nextRetryAt: number | null = null;
    if (o.ok) {
      succeeded.set(ep.id, Math.max(succeeded.get(ep.id) ?? 0, o.at));
    } else if (o.httpStatus === 410) {
      disable.set(ep.id, `gone: the endpoint answered 410 Gone to ${o.job.eventId}`);
    } else if (o.job.attempt < schedule.length) {
      const base = schedule[o.job.attempt]!;
      const jittered = base === 0 ? 0 : Math.round(base * (0.9 + Math.random() * 0.2));
      const delaySec = Math.max(jittered, o.retryAfterSec ?? 0);
      nextRetryAt = o.at + o.latencyMs + delaySec * 1000;
      const next: AttemptJob = { ...o.job, attempt: o.job.attempt + 1 };
      if (delaySec > cfg.maxQueueDelaySec) next.notBefore = nextRetryAt;
      else delete next.notBefore;
      retries.push({ job: next, delaySec: Math.min(delaySec, cfg.maxQueueDelaySec) });
    } else {
      const lastOk = Math.max(ep.lastSuccessAt ?? 0, succeeded.get(ep.id) ?? 0);
      if (lastOk < o.job.firstAt) {
        disable.set(
          ep.id,
          `retries_exhausted: ${o.job.attempt} attempts of ${o.job.eventId} (${o.job.type}) failed; last: ${describe(o)}`,
        );
      }
    }
    rows.push({
      endpointId: ep.id,
      eventId: o.job.eventId,
      eventType: o.job.type,
      attempt: o.job.attempt,
      status: o.ok ? 'succeeded' : 'failed',
      httpStatus: o.httpStatus,
      error: o.error,
      latencyMs: o.latencyMs,
      nextRetryAt,
      at: o.at,
    });
  }
  // Retries first: if the log write below fails, the schedule still goes on.
  if (retries.length > 0) await sendJobs(env, retries);
  const e = schema.webhookEndpoints;
  const d = schema.webhookDeliveries;
  const stmts: unknown[] = [];
  for (const part of chunkRows(rows, 10)) stmts.push(db.insert(d).values(part));
  for (const [id, at] of succeeded) {
    stmts.push(
      db
        .update(e)
        .set({ lastSuccessAt: sql`max(coalesce(${e.lastSuccessAt}, 0), ${at})` })
        .where(eq(e.id, id)),
    );
  }
  const now = Date.now();
  for (const [id, reason] of disable) {
    stmts.push(
      db
        .update(e)
        .set({ enabled: false, disabledReason: reason, disabledAt: now, updatedAt: now })
        .where(and(eq(e.id, id), eq(e.enabled, true))),
    );
  }
  // Keep the newest WEBHOOK_DELIVERIES_KEPT attempts of each endpoint written to.
  for (const id of new Set(rows.map((r) => r.endpointId))) {
    stmts.push(
      db
        .delete(d)
        .where(
          and(
            eq(d.endpointId, id),
            lt(
              d.id,
              sql`(SELECT coalesce(min(id), 0) FROM (SELECT id FROM webhook_deliveries WHERE endpoint_id = ${id} ORDER BY id DESC LIMIT ${WEBHOOK_DELIVERIES_KEPT}))`,
            ),
          ),
        ),
    );
  }
  try {
    await writeBatch(env, stmts);
  } catch (err) {
    log('warn', 'webhook_log_write_failed', { type: err instanceof Error ? err.name : 'unknown', rows: rows.length });
  }
  for (const [id] of disable) log('warn', 'webhook_endpoint_disabled', { endpointId: id });
}
