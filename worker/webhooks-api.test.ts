/**
 * Webhook management (REST and GraphQL, one domain module): create shows the secret once, list / read /
 * update / delete, the 10-endpoint limit, other accounts' endpoints are invisible, and every SSRF refusal is
 * a 400 with its stable code — through the API, and for production rules through the policy itself.
 */
import { env } from 'cloudflare:workers';
import { eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { MAX_WEBHOOK_ENDPOINTS, WEBHOOK_EVENT_TYPES } from '../schema/webhooks.js';
import { makeDb, schema } from './db.js';
import { findInD1 } from './test/d1.js';
import { api, makeConversation, makeUser } from './test/delivery-fixtures.js';
import { checkWebhookUrl, WebhookUrlRefused } from './webhooks/url-policy.js';

const db = () => makeDb(env);

async function create(token: string, body: Record<string, unknown>) {
  return api('/api/webhooks', token, { method: 'POST', json: body });
}

async function gql(token: string, query: string, variables: Record<string, unknown> = {}) {
  const res = await api('/graphql', token, { method: 'POST', json: { query, variables } });
  return (await res.json()) as { data?: Record<string, unknown>; errors?: { extensions: Record<string, unknown> }[] };
}

describe('webhook management (REST)', () => {
  it('create answers 201 with the secret once; list and read never show it, and D1 holds it only encrypted', async () => {
    const alice = await makeUser('alice');
    const tok = alice.devices[0]!.token;
    const res = await create(tok, { url: 'https://hooks.example.com/in?token=abc', description: 'bot' });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { endpoint: { id: string; events: string[] }; secret: string };
    expect(body.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(body.endpoint.events).toEqual([...WEBHOOK_EVENT_TYPES]);
    const raw = Uint8Array.from(atob(body.secret.slice(6)), (ch) => ch.charCodeAt(0));
    expect(await findInD1([body.secret, body.secret.slice(6), raw])).toEqual([]);

    const list = await api('/api/webhooks', tok, { method: 'GET' });
    const listed = await list.text();
    expect(listed).not.toContain(body.secret.slice(6));
    expect(JSON.parse(listed).endpoints).toHaveLength(1);
    const one = await api(`/api/webhooks/${body.endpoint.id}`, tok, { method: 'GET' });
    expect(one.status).toBe(200);
    expect(await one.text()).not.toContain('whsec_');
    // The audit row names the endpoint and the URL's origin, not its query (the receiver's own token).
    const audit = await db().select().from(schema.auditEvents).where(eq(schema.auditEvents.userId, alice.userId)).all();
    expect(audit.map((a) => a.event)).toContain('webhook.created');
    expect(JSON.stringify(audit)).not.toContain('token=abc');
  });

  it('update changes url, types, filter and description; delete removes it; a stranger gets 404 everywhere', async () => {
    const alice = await makeUser('alice');
    const mallory = await makeUser('mallory');
    const conv = await makeConversation([alice]);
    const tok = alice.devices[0]!.token;
    const { endpoint } = (await (await create(tok, { url: 'https://a.example.com/h' })).json()) as {
      endpoint: { id: string };
    };
    const patched = await api(`/api/webhooks/${endpoint.id}`, tok, {
      method: 'PATCH',
      json: { url: 'https://b.example.com/h', events: ['message.created'], conversationId: conv, description: 'x' },
    });
    expect(patched.status).toBe(200);
    expect(((await patched.json()) as { endpoint: unknown }).endpoint).toMatchObject({
      url: 'https://b.example.com/h',
      events: ['message.created'],
      conversationId: conv,
      description: 'x',
    });
    // A conversation the account is not in cannot be a filter.
    const foreign = await makeConversation([mallory]);
    const bad = await api(`/api/webhooks/${endpoint.id}`, tok, { method: 'PATCH', json: { conversationId: foreign } });
    expect(bad.status).toBe(404);

    const mt = mallory.devices[0]!.token;
    for (const [method, path, json] of [
      ['GET', `/api/webhooks/${endpoint.id}`, undefined],
      ['PATCH', `/api/webhooks/${endpoint.id}`, { description: 'mine' }],
      ['DELETE', `/api/webhooks/${endpoint.id}`, undefined],
      ['POST', `/api/webhooks/${endpoint.id}/rotate`, undefined],
      ['POST', `/api/webhooks/${endpoint.id}/test`, undefined],
      ['GET', `/api/webhooks/${endpoint.id}/deliveries`, undefined],
    ] as const) {
      const r = await api(path, mt, { method, ...(json ? { json } : {}) });
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('not_found');
    }
    expect(JSON.parse(await (await api('/api/webhooks', mt, { method: 'GET' })).text()).endpoints).toEqual([]);

    expect((await api(`/api/webhooks/${endpoint.id}`, tok, { method: 'DELETE' })).status).toBe(204);
    expect((await api(`/api/webhooks/${endpoint.id}`, tok, { method: 'GET' })).status).toBe(404);
  });

  it(`at most ${MAX_WEBHOOK_ENDPOINTS} endpoints per account: the next one is 409 too_many_webhooks`, async () => {
    const bob = await makeUser('bob');
    const tok = bob.devices[0]!.token;
    const made = await Promise.all(
      Array.from({ length: MAX_WEBHOOK_ENDPOINTS + 2 }, (_, i) => create(tok, { url: `https://h${i}.example.com/` })),
    );
    const statuses = made.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 201)).toHaveLength(MAX_WEBHOOK_ENDPOINTS);
    expect(statuses.filter((s) => s === 409)).toHaveLength(2);
    const rows = await db()
      .select()
      .from(schema.webhookEndpoints)
      .where(eq(schema.webhookEndpoints.userId, bob.userId));
    expect(rows).toHaveLength(MAX_WEBHOOK_ENDPOINTS);
    const again = await create(tok, { url: 'https://one-more.example.com/' });
    expect(((await again.json()) as { error: { code: string } }).error.code).toBe('too_many_webhooks');
  });

  it('bad bodies are 400 invalid_request, a non-JSON type 415, an oversized body 413, no token 401', async () => {
    const carol = await makeUser('carol');
    const tok = carol.devices[0]!.token;
    for (const json of [
      {},
      { url: 'https://x.example.com', events: [] },
      { url: 'https://x.example.com', events: ['message.deleted'] },
      { url: 'https://x.example.com', events: ['message.created', 'message.created'] },
      { url: 'https://x.example.com', extra: 1 },
      { url: 42 },
    ]) {
      const r = await create(tok, json);
      expect(r.status, JSON.stringify(json)).toBe(400);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('invalid_request');
    }
    const text = await api('/api/webhooks', tok, {
      method: 'POST',
      body: 'url=x',
      headers: { 'content-type': 'text/plain' },
    });
    expect(text.status).toBe(415);
    const big = await create(tok, { url: 'https://x.example.com', description: 'x'.repeat(20_000) });
    expect(big.status).toBe(413);
    expect((await api('/api/webhooks', null, { method: 'GET' })).status).toBe(401);
    expect(
      await db().select().from(schema.webhookEndpoints).where(eq(schema.webhookEndpoints.userId, carol.userId)),
    ).toEqual([]);
  });
});

/** Every refusal through the API (APP_ENV=test: like development, plain http only to this machine). */
const REFUSED: [string, string][] = [
  ['not a url', 'webhook_url_invalid'],
  ['/relative/path', 'webhook_url_invalid'],
  ['https://example.com/hook#frag', 'webhook_url_invalid'],
  [`https://example.com/${'a'.repeat(2100)}`, 'webhook_url_too_long'],
  ['ftp://example.com/hook', 'webhook_url_scheme'],
  ['javascript:alert(1)', 'webhook_url_scheme'],
  ['http://example.com/hook', 'webhook_url_scheme'],
  ['http://10.0.0.1/hook', 'webhook_url_scheme'],
  ['https://user:pass@example.com/hook', 'webhook_url_credentials'],
  ['https://token@example.com/hook', 'webhook_url_credentials'],
  ['https://127.0.0.1/hook', 'webhook_url_private_address'],
  ['https://2130706433/hook', 'webhook_url_private_address'],
  ['https://0x7f.1/hook', 'webhook_url_private_address'],
  ['https://10.1.2.3/hook', 'webhook_url_private_address'],
  ['https://172.16.0.1/hook', 'webhook_url_private_address'],
  ['https://192.168.1.1/hook', 'webhook_url_private_address'],
  ['https://169.254.169.254/latest/meta-data', 'webhook_url_private_address'],
  ['https://100.64.0.1/hook', 'webhook_url_private_address'],
  ['https://0.0.0.0/hook', 'webhook_url_private_address'],
  ['https://224.0.0.1/hook', 'webhook_url_private_address'],
  ['https://255.255.255.255/hook', 'webhook_url_private_address'],
  ['https://192.0.2.10/hook', 'webhook_url_private_address'],
  ['https://240.0.0.1/hook', 'webhook_url_private_address'],
  ['https://[::1]/hook', 'webhook_url_private_address'],
  ['https://[::]/hook', 'webhook_url_private_address'],
  ['https://[fe80::1]/hook', 'webhook_url_private_address'],
  ['https://[fd00::1]/hook', 'webhook_url_private_address'],
  ['https://[::ffff:127.0.0.1]/hook', 'webhook_url_private_address'],
  ['https://[::ffff:10.0.0.1]/hook', 'webhook_url_private_address'],
  ['https://[64:ff9b::a00:1]/hook', 'webhook_url_private_address'],
  ['https://[2002:a00:1::]/hook', 'webhook_url_private_address'],
  ['https://[2001:db8::1]/hook', 'webhook_url_private_address'],
  ['https://[ff02::1]/hook', 'webhook_url_private_address'],
  // IPv4-compatible (deprecated ::/96) and other addresses outside the global unicast 2000::/3.
  ['https://[::127.0.0.1]/hook', 'webhook_url_private_address'],
  ['https://[::169.254.169.254]/hook', 'webhook_url_private_address'],
  ['https://[::a00:1]/hook', 'webhook_url_private_address'],
  ['https://[1::1]/hook', 'webhook_url_private_address'],
  ['https://[4000::1]/hook', 'webhook_url_private_address'],
  ['https://localhost/hook', 'webhook_url_private_address'],
  ['https://api.localhost/hook', 'webhook_url_private_address'],
  ['https://intranet/hook', 'webhook_url_private_address'],
];

describe('webhook URL policy (SSRF)', () => {
  it('every refused URL is a 400 with its stable code on create and on update, and stores nothing', async () => {
    const dave = await makeUser('dave');
    const tok = dave.devices[0]!.token;
    const ok = await create(tok, { url: 'https://hooks.example.com/ok' });
    const { endpoint } = (await ok.json()) as { endpoint: { id: string } };
    for (const [url, code] of REFUSED) {
      const r = await create(tok, { url });
      expect(r.status, url).toBe(400);
      expect(((await r.json()) as { error: { code: string } }).error.code, url).toBe(code);
      const u = await api(`/api/webhooks/${endpoint.id}`, tok, { method: 'PATCH', json: { url } });
      expect(u.status, url).toBe(400);
      expect(((await u.json()) as { error: { code: string } }).error.code, url).toBe(code);
    }
    const rows = await db()
      .select()
      .from(schema.webhookEndpoints)
      .where(eq(schema.webhookEndpoints.userId, dave.userId));
    expect(rows.map((r) => r.url)).toEqual(['https://hooks.example.com/ok']);
  });

  it('public https URLs (names and global unicast literals) are accepted', () => {
    for (const url of [
      'https://hooks.example.com/a?b=c',
      'https://8.8.8.8/hook',
      'https://[2606:4700:4700::1111]/hook',
      'https://example.com:8443/x',
    ]) {
      expect(checkWebhookUrl(url, 'production').href).toBe(new URL(url).href);
    }
  });

  it('production: https only — plain http to 127.0.0.1 or localhost is refused; development and test allow it', () => {
    for (const url of ['http://127.0.0.1:8787/hook', 'http://localhost:3000/hook', 'http://[::1]:3000/hook']) {
      const err = (() => {
        try {
          checkWebhookUrl(url, 'production');
        } catch (e) {
          return e;
        }
      })();
      expect(err, url).toBeInstanceOf(WebhookUrlRefused);
      expect((err as WebhookUrlRefused).code).toBe('webhook_url_scheme');
      expect(checkWebhookUrl(url, 'development').protocol).toBe('http:');
      expect(checkWebhookUrl(url, 'test').protocol).toBe('http:');
    }
    // Even in development, plain http goes nowhere but this machine, and https to it is still refused.
    expect(() => checkWebhookUrl('http://192.168.1.5/hook', 'development')).toThrow(WebhookUrlRefused);
    expect(() => checkWebhookUrl('https://127.0.0.1/hook', 'development')).toThrow(WebhookUrlRefused);
    for (const [url, code] of REFUSED) {
      expect(() => checkWebhookUrl(url, 'production'), url).toThrow(WebhookUrlRefused);
      try {
        checkWebhookUrl(url, 'production');
      } catch (e) {
        expect((e as WebhookUrlRefused).code, url).toBe(code);
      }
    }
  });
});

describe('webhook management (GraphQL)', () => {
  it('create, list with deliveries, update, rotate, test and delete share the REST rules', async () => {
    const erin = await makeUser('erin');
    const tok = erin.devices[0]!.token;
    const created = await gql(
      tok,
      'mutation($u: String!) { createWebhook(url: $u, events: ["message.created"]) { secret endpoint { id events enabled } } }',
      { u: 'https://gql.example.com/hook' },
    );
    const c = created.data!.createWebhook as { secret: string; endpoint: { id: string; events: string[] } };
    expect(c.secret).toMatch(/^whsec_/);
    expect(c.endpoint.events).toEqual(['message.created']);

    const refused = await gql(tok, 'mutation { createWebhook(url: "https://10.0.0.1/x") { secret } }');
    expect(refused.errors?.[0]?.extensions).toMatchObject({
      code: 'BAD_USER_INPUT',
      reason: 'webhook_url_private_address',
    });
    const badType = await gql(
      tok,
      'mutation { createWebhook(url: "https://a.example.com", events: ["nope"]) { secret } }',
    );
    expect(badType.errors?.[0]?.extensions).toMatchObject({ reason: 'invalid_request' });

    const listed = await gql(tok, '{ webhooks { id url deliveries(limit: 5) { id } } }');
    expect(listed.data!.webhooks).toEqual([{ id: c.endpoint.id, url: 'https://gql.example.com/hook', deliveries: [] }]);
    expect(JSON.stringify(listed)).not.toContain('whsec_');

    const updated = await gql(
      tok,
      'mutation($id: ID!) { updateWebhook(id: $id, description: "d", enabled: false) { description enabled disabledReason } }',
      { id: c.endpoint.id },
    );
    expect(updated.data!.updateWebhook).toEqual({
      description: 'd',
      enabled: false,
      disabledReason: 'disabled_by_user',
    });
    const testDisabled = await gql(tok, 'mutation($id: ID!) { testWebhook(id: $id) }', { id: c.endpoint.id });
    expect(testDisabled.errors?.[0]?.extensions).toMatchObject({ reason: 'webhook_disabled' });

    const rotated = await gql(
      tok,
      'mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret endpoint { previousSecretExpiresAt } } }',
      { id: c.endpoint.id },
    );
    const r = rotated.data!.rotateWebhookSecret as { secret: string; endpoint: { previousSecretExpiresAt: number } };
    expect(r.secret).not.toBe(c.secret);
    expect(r.endpoint.previousSecretExpiresAt).toBeGreaterThan(Date.now() + 23 * 3600 * 1000);

    const other = await makeUser('frank');
    const stolen = await gql(other.devices[0]!.token, 'query($id: ID!) { webhook(id: $id) { id } }', {
      id: c.endpoint.id,
    });
    expect(stolen.errors?.[0]?.extensions).toMatchObject({ code: 'NOT_FOUND' });

    const deleted = await gql(tok, 'mutation($id: ID!) { deleteWebhook(id: $id) }', { id: c.endpoint.id });
    expect(deleted.data!.deleteWebhook).toBe(true);
    expect((await gql(tok, '{ webhooks { id } }')).data!.webhooks).toEqual([]);
  });
});
