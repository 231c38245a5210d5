/**
 * Observability without leaking (issue 18): every route of the Hono app (discovered from `app.routes`, so
 * a route added later is driven too) is called with tokens, cookies, a client address, usernames, ids,
 * keys and ciphertext in its headers, path, query and body; every log line the Worker and its Durable
 * Objects print is then checked: JSON, one `request` line per request with the route PATTERN, status,
 * duration, request id (= X-Request-Id) and a hashed account — and none of the forbidden values anywhere.
 * Counters: the local tally behind the status page, and Analytics Engine data points.
 */
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { WIRE_VERSION } from '../schema/wire.js';
import { fromB64u, toB64u } from '../web/src/protocol/bytes.js';
import { app } from './app.js';
import { makeDb, schema } from './db.js';
import worker from './index.js';
import { logId } from './log.js';
import { Client, upgrade } from './test/delivery-fixtures.js';
import { freshName, type RegisteredUser, registerUser } from './test/fixtures.js';

const IP = '203.0.113.77';
const lines: string[] = [];
const spies: { mockRestore(): void }[] = [];
function capture() {
  for (const m of ['log', 'warn', 'error', 'info', 'debug'] as const) {
    spies.push(vi.spyOn(console, m).mockImplementation((...a: unknown[]) => lines.push(a.map(String).join(' '))));
  }
}
afterAll(() => {
  for (const s of spies) s.mockRestore();
});

interface Line {
  level: string;
  event: string;
  ts: number;
  [k: string]: unknown;
}
const parsed = (): Line[] => lines.map((l) => JSON.parse(l) as Line);

async function call(path: string, init: RequestInit & { token?: string; cookie?: string; json?: unknown } = {}) {
  const headers = new Headers(init.headers);
  headers.set('cf-connecting-ip', IP);
  headers.set('x-forwarded-for', IP);
  if (init.token) headers.set('Authorization', `Bearer ${init.token}`);
  if (init.cookie) headers.set('Cookie', init.cookie);
  if (init.json !== undefined) headers.set('Content-Type', 'application/json');
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request(`https://app.example${path}`, {
      ...init,
      headers,
      body: init.json !== undefined ? JSON.stringify(init.json) : init.body,
    }),
    env,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return res;
}

describe('log lines', () => {
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let conv: string;
  const ciphertext = toB64u(crypto.getRandomValues(new Uint8Array(96)));
  const forbidden: Record<string, string> = {};
  const responses: { method: string; pattern: string; status: number; requestId: string; authed: boolean }[] = [];

  beforeAll(async () => {
    alice = await registerUser(freshName('alice'));
    bob = await registerUser(freshName('bob'));
    conv = `c_${crypto.randomUUID().replaceAll('-', '')}`;
    const db = makeDb(env);
    await db.insert(schema.conversations).values({ id: conv, kind: 'group', headSeq: 0, headHash: new Uint8Array(32) });
    await db.insert(schema.members).values([
      { conversationId: conv, userId: alice.userId, role: 'owner', joinedSeq: 0 },
      { conversationId: conv, userId: bob.userId, role: 'member', joinedSeq: 0 },
    ]);
    Object.assign(forbidden, {
      'access token': alice.accessToken,
      'refresh token': alice.cookie.replace(/^[^=]+=/, ''),
      'password pre-hash': alice.prehash,
      'username (alice)': alice.username,
      'username (bob)': bob.username,
      'client address': IP,
      ciphertext,
      'identity key': toB64u(alice.keys.identity.publicKey),
      'account id (alice)': alice.userId,
      'account id (bob)': bob.userId,
      'conversation id': conv,
    });
    capture();
  });

  it('every route, driven with secrets everywhere, logs one request line with its pattern and no secret', async () => {
    // A real session first: ticket, socket (ticket in the query), a send with ciphertext, resume.
    const t = await call(`/api/conversations/${conv}/ticket`, { method: 'POST', token: alice.accessToken });
    expect(t.status).toBe(201);
    const ticket = ((await t.json()) as { ticket: string }).ticket;
    forbidden['WebSocket ticket'] = ticket;
    const up = await upgrade(conv, ticket);
    expect(up.status).toBe(101);
    const ws = new Client(up.webSocket!, { userId: alice.userId, deviceId: alice.deviceId, token: alice.accessToken });
    up.webSocket!.accept();
    await ws.resume(0);
    const sent = await ws.sendAndWait({ v: WIRE_VERSION, type: 'send', id: 'm1', group: ciphertext });
    expect(sent.type).toBe('accepted');
    ws.send({ v: WIRE_VERSION, type: 'send', id: 'm2', group: `${ciphertext}!` }); // a rejected frame
    await ws.next('error');
    ws.close();
    await ws.waitClosed().catch(() => undefined);

    // Then every route the app declares, destructive ones last.
    const unique = new Map<string, { method: string; path: string }>();
    for (const r of app.routes) if (r.method !== 'ALL') unique.set(`${r.method} ${r.path}`, r);
    const routes = [...unique.values()].sort(
      (a, b) => Number(/logout|revoke|reset|delete/.test(a.path)) - Number(/logout|revoke|reset|delete/.test(b.path)),
    );
    expect(routes.length).toBeGreaterThan(20);
    const fill = (p: string) =>
      p
        .replace(':id', conv)
        .replace(':userId', bob.userId)
        .replace(':username', encodeURIComponent(bob.username))
        .replace(':deviceId', 'd_unknown_device');
    const body = {
      username: bob.username,
      passwordPrehash: alice.prehash,
      ciphertext,
      group: ciphertext,
      userIdentityKey: forbidden['identity key'],
      query: `query { user(username: "${bob.username}") { id } }`,
    };
    for (const r of routes) {
      for (const authed of [true, false]) {
        const res = await call(`${fill(r.path)}?ticket=${encodeURIComponent(ticket)}&u=${bob.username}`, {
          method: r.method,
          token: authed ? alice.accessToken : undefined,
          cookie: alice.cookie,
          ...(r.method === 'GET' ? {} : { json: body }),
          headers: r.path.endsWith('/ws') ? { Upgrade: 'websocket' } : {},
        });
        await res.arrayBuffer();
        const requestId = res.headers.get('X-Request-Id');
        expect(requestId, `${r.method} ${r.path}`).toMatch(/^[0-9a-f-]{36}$/);
        responses.push({ method: r.method, pattern: r.path, status: res.status, requestId: requestId!, authed });
      }
    }
    // An unknown path (with a username in it) logs a pattern, not the path.
    const nf = await call(`/api/nowhere/${bob.username}`, { token: alice.accessToken });
    expect(nf.status).toBe(404);
    responses.push({
      method: 'GET',
      pattern: 'unmatched',
      status: 404,
      requestId: nf.headers.get('X-Request-Id')!,
      authed: false,
    });

    const all = parsed();
    for (const l of all) {
      expect(typeof l.event).toBe('string');
      expect(['info', 'warn', 'error']).toContain(l.level);
      expect(typeof l.ts).toBe('number');
    }
    const requestLines = new Map(all.filter((l) => l.event === 'request').map((l) => [l.requestId as string, l]));
    for (const r of responses) {
      const l = requestLines.get(r.requestId);
      expect(l, `${r.method} ${r.pattern}: no request line`).toBeDefined();
      expect(l).toMatchObject({ method: r.method, route: r.pattern, status: r.status });
      expect(typeof l!.ms).toBe('number');
      if (r.status >= 400)
        expect(String(l!.code ?? 'MISSING'), `${r.method} ${r.pattern} ${r.status}`).toMatch(/^[a-z_]+$/);
      if (l!.user !== undefined) expect(l!.user).toBe(logId(env, 'u', alice.userId));
      expect(Object.keys(l!).sort()).toEqual(
        ['code', 'event', 'level', 'method', 'ms', 'requestId', 'route', 'status', 'ts', 'user'].filter(
          (k) => l![k] !== undefined,
        ),
      );
    }
    // Authenticated calls that passed requireAuth carry the hashed account.
    expect(all.some((l) => l.event === 'request' && l.user === logId(env, 'u', alice.userId))).toBe(true);
    // The Durable Object logged the socket with the conversation hashed.
    expect(all).toContainEqual(
      expect.objectContaining({
        event: 'socket_open',
        conv: logId(env, 'c', conv),
        user: logId(env, 'u', alice.userId),
      }),
    );

    // No forbidden value, in any common encoding, in any line.
    const text = lines.join('\n');
    for (const [what, value] of Object.entries(forbidden)) {
      const forms = new Set([value, encodeURIComponent(value), toB64u(new TextEncoder().encode(value))]);
      let bytes: Uint8Array | null = null;
      try {
        bytes = /^[A-Za-z0-9_-]{16,}$/.test(value) ? fromB64u(value) : null;
      } catch {
        bytes = null; // not base64url (a username, a dotted token)
      }
      if (bytes) {
        forms.add([...bytes].map((b) => b.toString(16).padStart(2, '0')).join(''));
        forms.add(btoa(String.fromCharCode(...bytes)).replace(/=+$/, ''));
      }
      for (const f of forms) expect(text.includes(f), `${what} found in the logs`).toBe(false);
    }
    expect(text).not.toMatch(/\bat .*\.(ts|js):\d+/); // no stack traces
  });
});

describe('log pseudonyms', () => {
  it('logId is u_/c_ + 16 base64url chars of HMAC-SHA256(TOKEN_HASH_KEY, "log:<kind>:<id>") (npm run log-id)', async () => {
    const key = await crypto.subtle.importKey(
      'raw',
      fromB64u(env.TOKEN_HASH_KEY),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign'],
    );
    for (const kind of ['u', 'c'] as const) {
      const mac = await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(`log:${kind}:some_id_42`));
      expect(logId(env, kind, 'some_id_42')).toBe(`${kind}_${toB64u(new Uint8Array(mac)).slice(0, 16)}`);
    }
  });
});

describe('counters', () => {
  it('the local tally behind the status page counts errors by code, rate-limit refusals and messages', async () => {
    const before = await call('/api/status/counters');
    expect(before.status).toBe(200);
    const value = async (name: string, label: string) => {
      const b = (await (await call('/api/status/counters')).json()) as {
        counters: { name: string; label: string; value: number }[];
      };
      return b.counters.find((c) => c.name === name && c.label === label)?.value ?? 0;
    };
    const invalid = await value('errors', 'invalid_token');
    expect((await call('/api/conversations', { token: 'not-a-token-at-all' })).status).toBe(401);
    expect(await value('errors', 'invalid_token')).toBe(invalid + 1);
    // The messages sent by the previous test were counted by the conversation object.
    expect(await value('messages_accepted', 'group')).toBeGreaterThanOrEqual(1);
    expect(await value('sockets_opened', '')).toBeGreaterThanOrEqual(1);
    const depth = await value('mailbox_depth', '');
    const rows = await env.DB.prepare('SELECT count(*) AS n FROM mailbox').first<{ n: number }>();
    expect(depth).toBe(rows?.n);
  });

  it('in a deployed environment the counters go to Analytics Engine and the endpoint answers 404', async () => {
    const points: AnalyticsEngineDataPoint[] = [];
    const METRICS = { writeDataPoint: (p: AnalyticsEngineDataPoint) => points.push(p) } as AnalyticsEngineDataset;
    const ctx = createExecutionContext();
    const deployed = { ...env, APP_ENV: 'production', METRICS };
    const res = await worker.fetch(new Request('https://app.example/api/status/counters'), deployed, ctx);
    const res2 = await worker.fetch(
      new Request('https://app.example/api/devices', { headers: { Authorization: 'Bearer nope-nope-nope' } }),
      deployed,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(404);
    expect(res2.status).toBe(401);
    expect(points).toContainEqual({ indexes: ['errors'], blobs: ['errors', 'not_found'], doubles: [1] });
    expect(points).toContainEqual({ indexes: ['errors'], blobs: ['errors', 'invalid_token'], doubles: [1] });
  });
});
