/**
 * Webhook delivery end to end inside workerd: the real queue (producer + consumer from wrangler.toml), the
 * real ConversationDO, and a local receiver in Node (worker/test/receiver-setup.ts) that fails, times out,
 * redirects, answers 500 or 410. Every request the receiver got is verified with the Standard Webhooks
 * reference library (`standardwebhooks`), never with our own code.
 *
 * The test pool shortens the retry schedule to [0, 1, 1] s and the timeout to 1.5 s (WEBHOOK_SETTINGS in
 * vitest.config.ts).
 */
import { abortAllDurableObjects, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { and, eq } from 'drizzle-orm';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { describe, expect, inject, it } from 'vitest';
import { type WebhookDeliveryView, type WebhookEventBody, webhookEventBody } from '../schema/webhooks.js';
import { WIRE_VERSION } from '../schema/wire.js';
import { makeDb, schema } from './db.js';
import { DEFAULT_RATE_LIMITS } from './limits.js';
import { localCounters } from './metrics.js';
import {
  api,
  connect,
  conversationStub,
  fakeCiphertext,
  flushOutbox,
  mailboxRows,
  makeConversation,
  makeUser,
  type TestMember,
} from './test/delivery-fixtures.js';
import { api as dirApi, enc, entry, type Fixture, makeUser as makeKeyedUser } from './test/directory-fixtures.js';
import { handleWebhookBatch } from './webhooks/consumer.js';
import { eventBody } from './webhooks/events.js';
import { sweepOutbox } from './webhooks/outbox.js';

const receiver = inject('webhookReceiver');
const db = () => makeDb(env);
let names = 0;
const uniq = (label: string) => `${label}${++names}${crypto.randomUUID().slice(0, 8)}`;

interface Received {
  headers: Record<string, string>;
  body: string;
  at: number;
}

async function received(name: string): Promise<Received[]> {
  return (await (await fetch(`${receiver}/log/${name}`)).json()) as Received[];
}

async function waitFor<T>(what: string, f: () => Promise<T | null | undefined | false>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const atLeast = (name: string, n: number, ms?: number) =>
  waitFor(
    `${n} request(s) at ${name}`,
    async () => {
      const r = await received(name);
      return r.length >= n ? r : null;
    },
    ms,
  );

/** Verifies one received request with the reference library and returns the parsed, schema-checked body. */
function verified(secret: string, r: Received): WebhookEventBody {
  const payload = new Webhook(secret).verify(r.body, r.headers);
  expect(r.headers['content-type']).toBe('application/json');
  return webhookEventBody.parse(payload);
}

async function endpoint(
  token: string,
  name: string,
  behaviour: string,
  extra: Record<string, unknown> = {},
): Promise<{ id: string; secret: string }> {
  const res = await api('/api/webhooks', token, {
    method: 'POST',
    json: { url: `${receiver}/hook/${name}/${behaviour}`, ...extra },
  });
  expect(res.status, await res.clone().text()).toBe(201);
  const b = (await res.json()) as { endpoint: { id: string }; secret: string };
  return { id: b.endpoint.id, secret: b.secret };
}

async function sendTest(token: string, id: string): Promise<string> {
  const res = await api(`/api/webhooks/${id}/test`, token, { method: 'POST' });
  expect(res.status).toBe(202);
  return ((await res.json()) as { eventId: string }).eventId;
}

async function deliveries(token: string, id: string): Promise<WebhookDeliveryView[]> {
  const res = await api(`/api/webhooks/${id}/deliveries`, token, { method: 'GET' });
  return ((await res.json()) as { deliveries: WebhookDeliveryView[] }).deliveries;
}

async function endpointRow(id: string) {
  return (await db().select().from(schema.webhookEndpoints).where(eq(schema.webhookEndpoints.id, id)).get())!;
}

/** The endpoint's row once it has been disabled. */
const disabled = (id: string, ms?: number) =>
  waitFor(
    `endpoint ${id} disabled`,
    async () => {
      const r = await endpointRow(id);
      return r.enabled ? null : r;
    },
    ms,
  );

/** The delivery log once it holds `n` attempts (newest first). */
const logged = (token: string, id: string, n: number) =>
  waitFor(`${n} attempts logged`, async () => {
    const d = await deliveries(token, id);
    return d.length === n ? d : null;
  });

describe('webhook signatures (verified with standardwebhooks)', () => {
  it('a test event arrives with webhook-id / -timestamp / -signature that the reference library accepts', async () => {
    const u = await makeUser('wh');
    const tok = u.devices[0]!.token;
    const name = uniq('sig');
    const ep = await endpoint(tok, name, 'ok');
    const eventId = await sendTest(tok, ep.id);
    const [r] = await atLeast(name, 1);
    const body = verified(ep.secret, r!);
    expect(body).toMatchObject({ type: 'webhook.test', data: { endpointId: ep.id } });
    expect(r!.headers['webhook-id']).toBe(eventId);
    expect(r!.headers['webhook-signature']!.split(' ')).toHaveLength(1);
    expect(Math.abs(Number(r!.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(60);
    // A wrong secret, a changed body or another id do not verify.
    const other = `whsec_${btoa('x'.repeat(32))}`;
    expect(() => new Webhook(other).verify(r!.body, r!.headers)).toThrow(WebhookVerificationError);
    expect(() => new Webhook(ep.secret).verify(`${r!.body} `, r!.headers)).toThrow(WebhookVerificationError);
    expect(() => new Webhook(ep.secret).verify(r!.body, { ...r!.headers, 'webhook-id': 'msg_other' })).toThrow(
      WebhookVerificationError,
    );
    const log = await logged(tok, ep.id, 1);
    expect(log[0]).toMatchObject({
      eventId,
      eventType: 'webhook.test',
      attempt: 1,
      status: 'succeeded',
      httpStatus: 200,
    });
    expect(log[0]!.nextRetryAt).toBeNull();
  });

  it('secret rotation: during the 24 h overlap both secrets sign (either verifies); after it only the new one', async () => {
    const u = await makeUser('rot');
    const tok = u.devices[0]!.token;
    const name = uniq('rot');
    const ep = await endpoint(tok, name, 'ok');
    const rot = await api(`/api/webhooks/${ep.id}/rotate`, tok, { method: 'POST' });
    expect(rot.status).toBe(200);
    const { secret: fresh, endpoint: view } = (await rot.json()) as {
      secret: string;
      endpoint: { previousSecretExpiresAt: number };
    };
    expect(fresh).not.toBe(ep.secret);
    expect(view.previousSecretExpiresAt - Date.now()).toBeGreaterThan(24 * 3600 * 1000 - 60_000);
    await sendTest(tok, ep.id);
    const [during] = await atLeast(name, 1);
    expect(during!.headers['webhook-signature']!.split(' ')).toHaveLength(2);
    expect(verified(fresh, during!).type).toBe('webhook.test');
    expect(verified(ep.secret, during!).type).toBe('webhook.test');

    // The overlap ends (moved into the past here): the old secret no longer signs.
    await db()
      .update(schema.webhookEndpoints)
      .set({ prevExpiresAt: Date.now() - 1 })
      .where(eq(schema.webhookEndpoints.id, ep.id));
    await sendTest(tok, ep.id);
    const after = (await atLeast(name, 2))[1]!;
    expect(after.headers['webhook-signature']!.split(' ')).toHaveLength(1);
    expect(verified(fresh, after).type).toBe('webhook.test');
    expect(() => new Webhook(ep.secret).verify(after.body, after.headers)).toThrow(WebhookVerificationError);
  });
});

describe('test events are limited', () => {
  it(`at most ${DEFAULT_RATE_LIMITS.webhookTest.limit} test events per account per minute: then 429 over REST and GraphQL, nothing queued`, async () => {
    const u = await makeUser('whtest');
    const tok = u.devices[0]!.token;
    const name = uniq('limit');
    const ep = await endpoint(tok, name, 'ok');
    for (let i = 0; i < DEFAULT_RATE_LIMITS.webhookTest.limit; i++) await sendTest(tok, ep.id);
    const over = await api(`/api/webhooks/${ep.id}/test`, tok, { method: 'POST' });
    expect(over.status).toBe(429);
    expect(((await over.json()) as { error: { code: string } }).error.code).toBe('rate_limited');
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(0);
    // GraphQL aliases go through the same domain call: none gets through.
    const gql = await api('/graphql', tok, {
      method: 'POST',
      json: { query: `mutation { a: testWebhook(id: "${ep.id}") b: testWebhook(id: "${ep.id}") }`, variables: {} },
    });
    const g = (await gql.json()) as { data: unknown; errors?: { extensions: { code: string } }[] };
    expect(g.data).toBeNull();
    expect(new Set(g.errors?.map((e) => e.extensions.code))).toEqual(new Set(['RATE_LIMITED']));
    // Exactly the allowed ones arrive.
    const got = await atLeast(name, DEFAULT_RATE_LIMITS.webhookTest.limit);
    await new Promise((r) => setTimeout(r, 300));
    expect((await received(name)).length).toBe(got.length);
    expect(got).toHaveLength(DEFAULT_RATE_LIMITS.webhookTest.limit);
  });
});

describe('retries and disabling', () => {
  it('an endpoint answering 500 gets the schedule’s 3 attempts of one event, then is disabled with the reason', async () => {
    const u = await makeUser('r500');
    const tok = u.devices[0]!.token;
    const name = uniq('five');
    const ep = await endpoint(tok, name, '500');
    const eventId = await sendTest(tok, ep.id);
    const got = await atLeast(name, 3);
    expect(new Set(got.map((r) => r.headers['webhook-id']))).toEqual(new Set([eventId]));
    for (const r of got) verified(ep.secret, r);
    // Retries waited for the schedule (≥ 1 s apart; 10 % jitter allowed).
    expect(got[1]!.at - got[0]!.at).toBeGreaterThanOrEqual(800);
    const row = await disabled(ep.id);
    expect(row.disabledReason).toMatch(
      new RegExp(`^retries_exhausted: 3 attempts of ${eventId} \\(webhook.test\\) failed; last: HTTP 500$`),
    );
    const log = await logged(tok, ep.id, 3);
    expect(log.map((d) => [d.attempt, d.status, d.httpStatus, d.error])).toEqual([
      [3, 'failed', 500, 'http_status'],
      [2, 'failed', 500, 'http_status'],
      [1, 'failed', 500, 'http_status'],
    ]);
    expect(log[0]!.nextRetryAt).toBeNull();
    expect(log[1]!.nextRetryAt).not.toBeNull();
    expect(log[2]!.nextRetryAt).not.toBeNull();
    // Disabled: a test is refused, nothing more arrives; enabling again clears the reason.
    expect((await api(`/api/webhooks/${ep.id}/test`, tok, { method: 'POST' })).status).toBe(409);
    const re = await api(`/api/webhooks/${ep.id}`, tok, { method: 'PATCH', json: { enabled: true } });
    expect(((await re.json()) as { endpoint: unknown }).endpoint).toMatchObject({
      enabled: true,
      disabledReason: null,
    });
    expect(await received(name)).toHaveLength(3);
  });

  it('a receiver that never answers times out (timeoutMs) each attempt and the endpoint is disabled', async () => {
    const u = await makeUser('tmo');
    const tok = u.devices[0]!.token;
    const name = uniq('slow');
    const ep = await endpoint(tok, name, 'timeout');
    await sendTest(tok, ep.id);
    const row = await disabled(ep.id, 30_000);
    expect(row.disabledReason).toMatch(/^retries_exhausted: 3 attempts .* failed; last: timeout$/);
    const log = await deliveries(tok, ep.id);
    expect(log.map((d) => d.error)).toEqual(['timeout', 'timeout', 'timeout']);
    for (const d of log) expect(d.latencyMs).toBeGreaterThanOrEqual(1400);
    expect(await received(name)).toHaveLength(3);
  });

  it('a flaky receiver (two 500s, then 200) gets the event on the third attempt and stays enabled', async () => {
    const u = await makeUser('flaky');
    const tok = u.devices[0]!.token;
    const name = uniq('flaky');
    const ep = await endpoint(tok, name, 'flaky-2');
    await sendTest(tok, ep.id);
    await atLeast(name, 3);
    const log = await logged(tok, ep.id, 3);
    expect(log.map((d) => d.status)).toEqual(['succeeded', 'failed', 'failed']);
    const row = await endpointRow(ep.id);
    expect(row.enabled).toBe(true);
    expect(row.lastSuccessAt).not.toBeNull();
  });

  it('410 Gone disables the endpoint at once; a redirect is a failure and is not followed', async () => {
    const u = await makeUser('gone');
    const tok = u.devices[0]!.token;
    const gone = uniq('gone');
    const g = await endpoint(tok, gone, 'gone');
    const goneId = await sendTest(tok, g.id);
    const row = await disabled(g.id);
    expect(row.disabledReason).toBe(`gone: the endpoint answered 410 Gone to ${goneId}`);
    expect(await received(gone)).toHaveLength(1);

    const redir = uniq('redir');
    const r = await endpoint(tok, redir, 'redirect');
    await sendTest(tok, r.id);
    await atLeast(redir, 3);
    const log = await logged(tok, r.id, 3);
    expect(log.map((d) => [d.httpStatus, d.error])).toEqual([
      [302, 'redirect'],
      [302, 'redirect'],
      [302, 'redirect'],
    ]);
    expect(await received(`${redir}-redirected`)).toEqual([]);
  });

  it('Retry-After on a 503 delays the next attempt at least that long', async () => {
    const u = await makeUser('ra');
    const tok = u.devices[0]!.token;
    const name = uniq('ra');
    const ep = await endpoint(tok, name, 'retry-2');
    await sendTest(tok, ep.id);
    const got = await atLeast(name, 2);
    expect(got[1]!.at - got[0]!.at).toBeGreaterThanOrEqual(1900);
  });
});

/** Bob (offline) is messaged by Alice; Bob's endpoint subscribes to message.created. */
async function messagedBob(label: string) {
  const alice = await makeUser(`${label}a`);
  const bob = await makeUser(`${label}b`);
  const conv = await makeConversation([alice, bob]);
  const name = uniq(label);
  const ep = await endpoint(bob.devices[0]!.token, name, 'ok', { events: ['message.created'] });
  return { alice, bob, conv, name, ep };
}

async function pairwise(c: Awaited<ReturnType<typeof connect>>, to: TestMember, id: string) {
  const f = await c.sendAndWait({
    v: WIRE_VERSION,
    type: 'send',
    id,
    to: to.devices.map((d) => ({ u: d.userId, d: d.deviceId, c: fakeCiphertext() })),
  });
  expect(f.type).toBe('accepted');
  return f as Extract<typeof f, { type: 'accepted' }>;
}

describe('message.created from the ConversationDO', () => {
  it('is sent after the envelope reached the recipient’s D1 mailbox, to the recipient only, without content', async () => {
    const { alice, bob, conv, name, ep } = await messagedBob('mc');
    // Alice's own endpoint and a non-member's get nothing for this conversation.
    const aliceName = uniq('mcself');
    await endpoint(alice.devices[0]!.token, aliceName, 'ok');
    const stranger = await makeUser('mcx');
    const strangerName = uniq('mcx');
    await endpoint(stranger.devices[0]!.token, strangerName, 'ok');

    const a = await connect(conv, alice.devices[0]!);
    const m1 = await pairwise(a, bob, 'm-1');
    a.sendGroup('m-2', fakeCiphertext(80));
    const m2 = (await a.next('accepted', (f) => f.id === 'm-2')) as { seq: number; ts: number };
    const rc = await a.sendAndWait({
      v: WIRE_VERSION,
      type: 'receipt',
      id: 'r-1',
      status: 'read',
      to: [{ u: bob.userId, d: 'd0', c: fakeCiphertext() }],
    });
    expect(rc.type).toBe('accepted');
    await flushOutbox(conv);

    const got = await atLeast(name, 2);
    const bodies = got.map((r) => verified(ep.secret, r));
    expect(bodies.map((b) => b.type)).toEqual(['message.created', 'message.created']);
    expect(bodies.map((b) => b.data).sort((x, y) => (x as { seq: number }).seq - (y as { seq: number }).seq)).toEqual([
      { conversationId: conv, seq: m1.seq, senderUserId: alice.userId, senderDeviceId: 'd0', ts: m1.ts },
      { conversationId: conv, seq: m2.seq, senderUserId: alice.userId, senderDeviceId: 'd0', ts: m2.ts },
    ]);
    // By the time the event is sent, the mailbox has the envelope (a bot that syncs on the event finds it).
    const box = await mailboxRows(bob.userId, 'd0');
    for (const b of bodies) expect(box.map((r) => r.seq)).toContain((b.data as { seq: number }).seq);
    // No ciphertext in the body: only ids, seq and time.
    for (const r of got) expect(r.body.length).toBeLessThan(400);
    // The receipt has no event; the sender and the stranger got nothing.
    await new Promise((r) => setTimeout(r, 500));
    expect(await received(name)).toHaveLength(2);
    expect(await received(aliceName)).toEqual([]);
    expect(await received(strangerName)).toEqual([]);
    a.close();
  });

  it('a conversation filter and the subscribed types are respected', async () => {
    const alice = await makeUser('flta');
    const bob = await makeUser('fltb');
    const c1 = await makeConversation([alice, bob]);
    const c2 = await makeConversation([alice, bob]);
    const only1 = uniq('only1');
    const devOnly = uniq('devonly');
    await endpoint(bob.devices[0]!.token, only1, 'ok', { events: ['message.created'], conversationId: c1 });
    await endpoint(bob.devices[0]!.token, devOnly, 'ok', { events: ['device.added'] });
    const a1 = await connect(c1, alice.devices[0]!);
    const a2 = await connect(c2, alice.devices[0]!);
    const s1 = await pairwise(a1, bob, 'f-1');
    await pairwise(a2, bob, 'f-2');
    await flushOutbox(c1);
    await flushOutbox(c2);
    const got = await atLeast(only1, 1);
    await new Promise((r) => setTimeout(r, 500));
    expect((await received(only1)).map((r) => JSON.parse(r.body).data.seq)).toEqual([s1.seq]);
    expect(JSON.parse(got[0]!.body).data.conversationId).toBe(c1);
    expect(await received(devOnly)).toEqual([]);
    a1.close();
    a2.close();
  });

  it('is not lost when the object restarts after the commit with no alarm set (start-up schedules it)', async () => {
    const { alice, bob, conv, name, ep } = await messagedBob('crash');
    const a = await connect(conv, alice.devices[0]!);
    const m = await pairwise(a, bob, 'c-1');
    a.close();
    const stub = conversationStub(conv);
    // The alarm set by the commit is gone and the object is evicted: only the DO's SQLite is left.
    await runInDurableObject(stub, (_i, state) => state.storage.deleteAlarm());
    await abortAllDurableObjects();
    const fresh = conversationStub(conv); // the old stub is broken by the reset
    await fresh.connectedCount(); // a new instance starts
    // (runInDurableObject may run before the constructor's blockConcurrencyWhile has finished: poll.)
    await waitFor(
      'an alarm set at start-up',
      () => runInDurableObject(fresh, (_i, state) => state.storage.getAlarm()),
      5_000,
    );
    await flushOutbox(conv);
    const [r] = await atLeast(name, 1);
    expect(verified(ep.secret, r!).data).toMatchObject({ conversationId: conv, seq: m.seq });
  });

  it('an emission repeated after a crash between queue send and mark carries the same webhook-id', async () => {
    const { alice, bob, conv, name } = await messagedBob('dup');
    const a = await connect(conv, alice.devices[0]!);
    await pairwise(a, bob, 'd-1');
    a.close();
    await flushOutbox(conv);
    const [first] = await atLeast(name, 1);
    const stub = conversationStub(conv);
    // As if the object died right after the queue accepted the events: the mark is back where it was.
    await runInDurableObject(stub, (_i, state) => {
      state.storage.sql.exec('UPDATE state SET events_through = 0 WHERE id = 1');
    });
    await runDurableObjectAlarm(stub);
    const [, second] = await atLeast(name, 2);
    expect(second!.headers['webhook-id']).toBe(first!.headers['webhook-id']);
    expect(second!.body).toBe(first!.body);
  });
});

describe('events from the D1 outbox', () => {
  it('membership changes: member_added for a new group, member_removed to the members and the removed user', async () => {
    const [o, b, x] = await Promise.all(['mo', 'mb', 'mx'].map((n) => makeKeyedUser(n)));
    const [ot, bt] = await Promise.all([(o as Fixture).token(), (b as Fixture).token()]);
    const bName = uniq('memb');
    const bEp = await endpoint(bt, bName, 'ok', {
      events: ['conversation.member_added', 'conversation.member_removed'],
    });
    const id = uniq('grp');
    const e0 = await entry(o!, null, id, { action: 'create', title: 't' });
    const { entryHash } = await import('../web/src/protocol/membership.js');
    const s0 = { conversationId: id, members: new Map(), title: '', headHash: entryHash(e0), seq: e0.seq };
    const e1 = await entry(o!, s0, id, { action: 'add', target: b!.userId, role: 'member' });
    const s1 = { ...s0, headHash: entryHash(e1), seq: e1.seq };
    const e2 = await entry(o!, s1, id, { action: 'add', target: x!.userId, role: 'member' });
    const created = await dirApi('/api/conversations', ot, {
      method: 'POST',
      json: { kind: 'group', entries: [e0, e1, e2].map(enc) },
    });
    expect(created.status).toBe(201);
    const added = await atLeast(bName, 3);
    const addedBodies = added.map((r) => verified(bEp.secret, r));
    expect(addedBodies.map((a) => a.type)).toEqual(Array(3).fill('conversation.member_added'));
    expect(addedBodies.map((a) => (a.data as { userId: string }).userId).sort()).toEqual(
      [o!.userId, b!.userId, x!.userId].sort(),
    );
    const s2 = { ...s1, headHash: entryHash(e2), seq: e2.seq };
    const e3 = await entry(o!, s2, id, { action: 'remove', target: b!.userId });
    expect(
      (await dirApi(`/api/conversations/${id}/log`, ot, { method: 'POST', json: { entry: enc(e3) } })).status,
    ).toBe(200);
    const all = await atLeast(bName, 4);
    expect(verified(bEp.secret, all[3]!)).toMatchObject({
      type: 'conversation.member_removed',
      data: { conversationId: id, userId: b!.userId, byUserId: o!.userId, logSeq: e3.seq },
    });
    // Delivered rows are gone from the outbox.
    expect(await db().select().from(schema.webhookOutbox).all()).toEqual([]);
  });

  it('the per-minute sweep re-sends an event whose queue send never happened, with its stored id', async () => {
    const u = await makeUser('sweep');
    const name = uniq('sweep');
    const ep = await endpoint(u.devices[0]!.token, name, 'ok', { events: ['device.added'] });
    const event = {
      id: 'msg_sweepsweepsweep01',
      ts: Date.now(),
      audience: { users: [u.userId] },
      type: 'device.added',
      data: { userId: u.userId, deviceId: 'd9', listVersion: 2 },
    };
    await db()
      .insert(schema.webhookOutbox)
      .values({
        id: 'msg_row_left_behind',
        body: JSON.stringify({ k: 'fanout', events: [event] }),
        createdAt: Date.now() - 120_000,
      });
    expect(await sweepOutbox(env, db())).toBe(1);
    const [r] = await atLeast(name, 1);
    expect(r!.headers['webhook-id']).toBe(event.id);
    expect(verified(ep.secret, r!)).toMatchObject({ type: 'device.added', data: event.data });
    expect(await db().select().from(schema.webhookOutbox).all()).toEqual([]);
  });
});

/** How many attempts the consumer dropped so far (this isolate's tally of `webhook_deliveries` / `dropped`). */
const droppedSoFar = () =>
  localCounters().find((c) => c.name === 'webhook_deliveries' && c.label === 'dropped')?.value ?? 0;

/** Runs the consumer on `bodies` as one queue batch; returns what happened to each message. */
async function consume(bodies: unknown[]): Promise<('acked' | 'retried' | 'none')[]> {
  const fate: ('acked' | 'retried' | 'none')[] = bodies.map(() => 'none');
  const messages = bodies.map((body, i) => ({
    id: `m${i}`,
    timestamp: new Date(),
    attempts: 1,
    body,
    ack: () => {
      fate[i] = 'acked';
    },
    retry: () => {
      fate[i] = 'retried';
    },
  }));
  const batch = {
    queue: 'e2e-chat-webhooks',
    messages,
    ackAll: () => undefined,
    retryAll: () => undefined,
  } as unknown as MessageBatch<unknown>;
  await handleWebhookBatch(batch, env);
  return fate;
}

/** A retry (attempt 2) of `type` with `data`, as the consumer re-queues it, to endpoint `endpointId`. */
function retryOf(endpointId: string, type: string, data: Record<string, unknown>) {
  const eventId = `msg_${crypto.randomUUID().replaceAll('-', '')}`;
  return {
    k: 'attempt',
    endpointId,
    eventId,
    type,
    body: eventBody({ type, ts: Date.now(), data }),
    attempt: 2,
    firstAt: Date.now() - 1000,
  };
}

const removeMember = (conversationId: string, userId: string) =>
  db()
    .delete(schema.members)
    .where(and(eq(schema.members.conversationId, conversationId), eq(schema.members.userId, userId)));

describe('every attempt re-checks the endpoint and its owner’s right to the event', () => {
  it('a retry of message.created after the recipient was removed from the conversation is dropped, not sent', async () => {
    const { alice, bob, conv, name } = await messagedBob('gone');
    // Bob's endpoint answers the first attempt 503 with Retry-After: 2, then 200.
    await db()
      .update(schema.webhookEndpoints)
      .set({ url: `${receiver}/hook/${name}/retry-2` })
      .where(eq(schema.webhookEndpoints.userId, bob.userId));
    const a = await connect(conv, alice.devices[0]!);
    await pairwise(a, bob, 'g-1');
    a.close();
    const before = droppedSoFar();
    await flushOutbox(conv);
    const [first] = await atLeast(name, 1);
    expect(JSON.parse(first!.body).data.conversationId).toBe(conv);
    // Bob is removed before the retry is due.
    await removeMember(conv, bob.userId);
    await waitFor('the retry dropped', async () => droppedSoFar() > before, 15_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(await received(name)).toHaveLength(1);
    // The delivery log has the first attempt only: the retry was not made.
    const log = await deliveries(bob.devices[0]!.token, (await endpointRowOf(bob.userId)).id);
    expect(log.map((d) => [d.attempt, d.status])).toEqual([[1, 'failed']]);
  });

  it('conversation events: a retry goes to current members (and the removed user of member_removed) only', async () => {
    const alice = await makeUser('rca');
    const bob = await makeUser('rcb');
    const conv = await makeConversation([alice, bob]);
    const name = uniq('rc');
    const ep = await endpoint(bob.devices[0]!.token, name, 'ok');
    const base = { conversationId: conv, byUserId: alice.userId, logSeq: 3 };
    const stillMember = retryOf(ep.id, 'conversation.role_changed', {
      ...base,
      userId: alice.userId,
      role: 'admin',
      previousRole: 'member',
    });
    expect(await consume([stillMember])).toEqual(['acked']);
    await atLeast(name, 1);

    await removeMember(conv, bob.userId);
    const before = droppedSoFar();
    const message = retryOf(ep.id, 'message.created', {
      conversationId: conv,
      seq: 7,
      senderUserId: alice.userId,
      senderDeviceId: 'd0',
      ts: Date.now(),
    });
    const added = retryOf(ep.id, 'conversation.member_added', { ...base, userId: alice.userId, role: 'member' });
    const ownRemoval = retryOf(ep.id, 'conversation.member_removed', { ...base, userId: bob.userId });
    const otherRemoval = retryOf(ep.id, 'conversation.member_removed', { ...base, userId: alice.userId });
    // Every message is acked (a refused attempt is not retried); only Bob's own removal is sent.
    expect(await consume([message, added, ownRemoval, otherRemoval])).toEqual(['acked', 'acked', 'acked', 'acked']);
    const got = await atLeast(name, 2);
    await new Promise((r) => setTimeout(r, 300));
    expect((await received(name)).map((r) => r.headers['webhook-id'])).toEqual([
      stillMember.eventId,
      ownRemoval.eventId,
    ]);
    expect(verified(ep.secret, got[1]!).data).toMatchObject({ userId: bob.userId });
    expect(droppedSoFar() - before).toBe(3);
    // Nothing about the dropped events reaches Bob's delivery log either.
    const logged = (await deliveries(bob.devices[0]!.token, ep.id)).map((d) => d.eventId);
    expect(logged).not.toContain(message.eventId);
    expect(logged).not.toContain(added.eventId);
  });

  it('contact.identity_changed goes only to someone who still shares a conversation; device events to the account only', async () => {
    const alice = await makeUser('ica');
    const bob = await makeUser('icb');
    const conv = await makeConversation([alice, bob]);
    const name = uniq('ic');
    const ep = await endpoint(bob.devices[0]!.token, name, 'ok');
    const shared = retryOf(ep.id, 'contact.identity_changed', { userId: alice.userId, identityVersion: 2 });
    const own = retryOf(ep.id, 'device.added', { userId: bob.userId, deviceId: 'd1', listVersion: 2 });
    const someoneElses = retryOf(ep.id, 'device.added', { userId: alice.userId, deviceId: 'd1', listVersion: 2 });
    expect(await consume([shared, own, someoneElses])).toEqual(['acked', 'acked', 'acked']);
    await atLeast(name, 2);
    await removeMember(conv, bob.userId);
    const later = retryOf(ep.id, 'contact.identity_changed', { userId: alice.userId, identityVersion: 3 });
    expect(await consume([later])).toEqual(['acked']);
    await new Promise((r) => setTimeout(r, 300));
    expect(new Set((await received(name)).map((r) => r.headers['webhook-id']))).toEqual(
      new Set([shared.eventId, own.eventId]),
    );
  });

  it('a retry to an endpoint deleted, disabled, unsubscribed from the type or filtered to another conversation is dropped', async () => {
    const alice = await makeUser('epa');
    const bob = await makeUser('epb');
    const c1 = await makeConversation([alice, bob]);
    const c2 = await makeConversation([alice, bob]);
    const tok = bob.devices[0]!.token;
    const msg = (endpointId: string, conversationId = c1) =>
      retryOf(endpointId, 'message.created', {
        conversationId,
        seq: 1,
        senderUserId: alice.userId,
        senderDeviceId: 'd0',
        ts: Date.now(),
      });
    const names = ['del', 'off', 'unsub', 'filt', 'live'].map(uniq);
    const [del, off, unsub, filt, live] = await Promise.all(names.map((n) => endpoint(tok, n, 'ok')));
    expect((await api(`/api/webhooks/${del!.id}`, tok, { method: 'DELETE' })).status).toBe(204);
    for (const [id, json] of [
      [off!.id, { enabled: false }],
      [unsub!.id, { events: ['device.added'] }],
      [filt!.id, { conversationId: c2 }],
    ] as const) {
      expect((await api(`/api/webhooks/${id}`, tok, { method: 'PATCH', json })).status).toBe(200);
    }
    const before = droppedSoFar();
    const jobs = [msg(del!.id), msg(off!.id), msg(unsub!.id), msg(filt!.id), msg(live!.id)];
    expect(await consume(jobs)).toEqual(Array(5).fill('acked'));
    await atLeast(names[4]!, 1);
    await new Promise((r) => setTimeout(r, 300));
    for (const n of names.slice(0, 4)) expect(await received(n!)).toEqual([]);
    expect(droppedSoFar() - before).toBe(4);
    // The account is deleted: its endpoints go with it, and a pending retry to them is dropped.
    await db().delete(schema.users).where(eq(schema.users.id, bob.userId));
    expect(await consume([msg(live!.id)])).toEqual(['acked']);
    await new Promise((r) => setTimeout(r, 300));
    expect(await received(names[4]!)).toHaveLength(1);
    expect(droppedSoFar() - before).toBe(5);
  });
});

async function endpointRowOf(userId: string) {
  return (await db().select().from(schema.webhookEndpoints).where(eq(schema.webhookEndpoints.userId, userId)).get())!;
}
