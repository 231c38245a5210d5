import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { toB64u } from '../web/src/protocol/bytes.js';
import { encodeDeviceList, signLoginChallenge } from '../web/src/protocol/identity.js';
import { entryHash as entryHashOf } from '../web/src/protocol/membership.js';
import { limiterFor } from './limiter.js';
import { LIMITS } from './limits.js';
import {
  api,
  auditCount,
  enc,
  entry,
  fullUpload,
  makeUser,
  newDevice,
  nextList,
  snapshot,
  uploadB64,
} from './test/directory-fixtures.js';

type Gql = {
  data?: Record<string, unknown> | null;
  errors?: { message: string; extensions: { code: string; reason?: string } }[];
};

/** Exactly what graphql-request sends: POST, JSON body {query, variables, operationName}. */
async function gql(token: string | null, query: string, variables?: Record<string, unknown>, operationName?: string) {
  const res = await api('/graphql', token, {
    method: 'POST',
    json: { query, variables, operationName },
    headers: { Accept: 'application/graphql-response+json, application/json' },
  });
  return { status: res.status, body: (await res.json()) as Gql };
}

describe('GraphQL over HTTP', () => {
  it('POST like graphql-request: viewer, devices, user lookup and device list', async () => {
    const bob = await makeUser('gqlbob', 2);
    const token = await bob.token();
    const { status, body } = await gql(
      token,
      'query Me($u: String!) { viewer { id username devices { deviceId createdAt revoked } } user(username: $u) { id identityKey deviceList { version bytes } } }',
      { u: bob.username },
      'Me',
    );
    expect(status).toBe(200);
    expect(body.errors).toBeUndefined();
    const viewer = body.data!.viewer as { id: string; devices: unknown[] };
    expect(viewer.id).toBe(bob.userId);
    expect(viewer.devices).toHaveLength(2);
    expect((body.data!.user as { deviceList: { bytes: string } }).deviceList.bytes).toBe(
      toB64u(encodeDeviceList(bob.list)),
    );
  });

  it('a variable the schema cannot coerce (unknown enum value) is 400 BAD_USER_INPUT, not a masked internal error', async () => {
    const bob = await makeUser('gqlenum');
    const { status, body } = await gql(
      await bob.token(),
      'mutation($k: ConversationKind!, $e: [String!]!) { createConversation(kind: $k, entries: $e) { id } }',
      { k: 'not_a_kind', e: ['AA'] },
    );
    expect(status).toBe(400);
    expect(body.errors?.map((e) => e.extensions.code)).toEqual(['BAD_USER_INPUT']);
  });

  it('GET runs queries from query parameters; a mutation over GET is 405', async () => {
    const bob = await makeUser('gqlget');
    const token = await bob.token();
    const q = encodeURIComponent('{ viewer { id } }');
    const res = await api(`/graphql?query=${q}`, token);
    expect(res.status).toBe(200);
    expect(((await res.json()) as Gql).data).toEqual({ viewer: { id: bob.userId } });
    const m = encodeURIComponent('mutation { deviceChallenge { challengeId } }');
    const res2 = await api(`/graphql?query=${m}`, token);
    expect(res2.status).toBe(405);
    expect(await auditCount()).toBeGreaterThanOrEqual(0);
  });

  it('errors have stable codes: missing auth → UNAUTHENTICATED, bad token → 401, bad JSON → 400, unknown field → 400', async () => {
    const anon = await gql(null, '{ viewer { id } }');
    expect(anon.body.errors?.[0]?.extensions.code).toBe('UNAUTHENTICATED');
    const bad = await gql('not.a.valid-token-at-all', '{ viewer { id } }');
    expect(bad.status).toBe(401);
    expect(bad.body.errors?.[0]?.extensions.code).toBe('UNAUTHENTICATED');
    const res = await api('/graphql', null, {
      method: 'POST',
      body: '{"query": ',
      headers: { 'Content-Type': 'application/json' },
    });
    expect(res.status).toBe(400);
    const unknown = await gql(null, '{ viewer { password } }');
    expect(unknown.status).toBe(400);
    expect(unknown.body.errors?.[0]?.extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');
    const wrongType = await gql(null, 'query($u: String!) { user(username: $u) { id } }', { u: 5 });
    expect(wrongType.status).toBe(400);
  });

  it('user(username) shares REST lookup rules: aliases count against the per-account lookup limit, names are normalised and validated', async () => {
    const bob = await makeUser('gqllookup');
    const token = await bob.token();
    // Normalised like REST (NFKC + lower case); a string that cannot be a username is refused, not looked up.
    const upper = await gql(token, 'query($u: String!) { user(username: $u) { id } }', {
      u: bob.username.toUpperCase(),
    });
    expect((upper.body.data!.user as { id: string }).id).toBe(bob.userId);
    const bad = await gql(token, 'query($u: String!) { user(username: $u) { id } }', { u: 'no spaces allowed!' });
    expect(bad.body.errors?.[0]?.extensions.reason).toBe('invalid_username');
    // The account's lookup bucket is nearly spent: one aliased query cannot get past it.
    const { stub: limiter } = limiterFor(env, 'lookup', `acct:${bob.userId}`);
    await limiter.hit(`acct:${bob.userId}`, 120, 60_000, 117);
    const aliases = Array.from({ length: 5 }, (_, i) => `a${i}: user(username: $u) { id }`).join(' ');
    const many = await gql(token, `query($u: String!) { ${aliases} }`, { u: bob.username });
    const reasons = (many.body.errors ?? []).map((e) => e.extensions.reason);
    expect(reasons.filter((r) => r === 'rate_limited').length).toBeGreaterThanOrEqual(2);
  });

  it('error messages never echo the request: variable coercion, parse and validation errors get a fixed message with path/location', async () => {
    const mark = 'ECHO_MARK_4b1d';
    const coercion = await gql(null, 'query($u: String!) { user(username: $u) { id } }', { u: { [mark]: mark } });
    const kind = await gql(
      null,
      'mutation($k: ConversationKind!, $e: [String!]!) { createConversation(kind: $k, entries: $e) { id } }',
      { k: mark, e: ['AA'] },
    );
    const parse = await gql(null, `{ viewer { id } "${mark}`);
    const invalid = await gql(null, `{ viewer { ${mark} } }`);
    for (const [name, r, code] of [
      ['coercion', coercion, 'BAD_USER_INPUT'],
      ['enum', kind, 'BAD_USER_INPUT'],
      ['parse', parse, 'GRAPHQL_PARSE_FAILED'],
      ['validation', invalid, 'GRAPHQL_VALIDATION_FAILED'],
    ] as const) {
      expect(r.status, name).toBe(400);
      expect(r.body.errors?.[0]?.extensions.code, name).toBe(code);
      expect(JSON.stringify(r.body), name).not.toContain(mark);
    }
    expect((invalid.body.errors![0] as { locations?: unknown[] }).locations?.length).toBe(1);
  });

  it('introspection works and reveals no private field (no password, token, secret or private key anywhere)', async () => {
    const { status, body } = await gql(null, '{ __schema { types { name fields { name } inputFields { name } } } }');
    expect(status).toBe(200);
    // The one deliberate exception: a webhook endpoint's own signing secret, which the account chose to create
    // and which createWebhook / rotateWebhookSecret return once (type WebhookSecret, as REST does).
    const types = (body.data as { __schema: { types: { name: string; fields: { name: string }[] | null }[] } }).__schema
      .types;
    const secretType = types.find((t) => t.name === 'WebhookSecret');
    expect(secretType?.fields?.map((f) => f.name).sort()).toEqual(['endpoint', 'secret']);
    const names = JSON.stringify(
      types.filter((t) => t.name !== 'WebhookSecret'),
      (k, v) => (k === 'name' && /^(rotateWebhookSecret|previousSecretExpiresAt)$/.test(v) ? 'allowed' : v),
    ).toLowerCase();
    for (const word of ['password', 'token', 'secret', 'private', 'totp', 'recovery', 'salt'])
      expect(names).not.toContain(word);
    expect(names).toContain('claimprekeybundles');
  });

  it('mutations: upload (bad signature → BAD_USER_INPUT, nothing stored), upload, claim, create conversation, append entry', async () => {
    const bob = await makeUser('gqlmut');
    const alice = await makeUser('gqlalice');
    const bt = await bob.token();
    const up = fullUpload(bob.devices[0]!);
    const before = await snapshot();
    const bad = { ...up, signedPrekey: { ...up.signedPrekey!, signature: new Uint8Array(64).fill(3) } };
    const r0 = await gql(bt, 'mutation($u: String!) { uploadPrekeys(upload: $u) { oneTime } }', { u: uploadB64(bad) });
    expect(r0.status).toBe(200);
    expect(r0.body.errors?.[0]?.extensions).toMatchObject({
      code: 'BAD_USER_INPUT',
      reason: 'invalid_prekey_signature',
    });
    const after = await snapshot();
    delete after.token_families;
    delete before.token_families;
    expect(after).toEqual(before);
    const r1 = await gql(bt, 'mutation($u: String!) { uploadPrekeys(upload: $u) { oneTime kem low } }', {
      u: uploadB64(up),
    });
    expect(r1.body.data).toEqual({ uploadPrekeys: { oneTime: 2, kem: 1, low: true } });
    const at = await alice.token();
    const r2 = await gql(
      at,
      'mutation($id: ID!) { claimPrekeyBundles(userId: $id) { userId devices { deviceId bundle oneTimePrekeyId kemLastResort remainingOneTime } unavailable } }',
      { id: bob.userId },
    );
    expect(r2.body.errors).toBeUndefined();
    expect(
      (r2.body.data!.claimPrekeyBundles as { devices: { oneTimePrekeyId: number }[] }).devices[0]!.oneTimePrekeyId,
    ).toBe(100);

    const e0 = await entry(alice, null, 'gqlconv', { action: 'create', title: 't' });
    const r3 = await gql(
      at,
      'mutation($e: [String!]!) { createConversation(kind: group, entries: $e) { id kind role headSeq headHash members { userId role } } }',
      { e: [enc(e0)] },
    );
    expect(r3.body.errors).toBeUndefined();
    const conv = r3.body.data!.createConversation as { headHash: string; headSeq: number };
    const { fromB64u } = await import('../web/src/protocol/bytes.js');
    const e1 = await entry(
      alice,
      {
        conversationId: 'gqlconv',
        members: new Map(),
        title: '',
        headHash: fromB64u(conv.headHash),
        seq: conv.headSeq,
      },
      'gqlconv',
      { action: 'add', target: bob.userId, role: 'member' },
    );
    const r4 = await gql(
      at,
      'mutation($e: String!) { appendMembershipEntry(conversationId: "gqlconv", entry: $e) { headSeq members { userId role } } }',
      { e: enc(e1) },
    );
    expect(r4.body.errors).toBeUndefined();
    expect((r4.body.data!.appendMembershipEntry as { headSeq: number }).headSeq).toBe(1);
    const r5 = await gql(
      bt,
      '{ conversations { id role } conversation(id: "gqlconv") { kind membershipLog { seq entry } } }',
    );
    expect(r5.body.data!.conversations).toEqual([{ id: 'gqlconv', role: 'member' }]);
    expect((r5.body.data!.conversation as { membershipLog: unknown[] }).membershipLog).toHaveLength(2);
    const stranger = await makeUser('gqlstranger');
    const r6 = await gql(await stranger.token(), '{ conversation(id: "gqlconv") { id } }');
    expect(r6.body.errors?.[0]?.extensions.code).toBe('NOT_FOUND');
  });

  it('a mutation that takes the viewer out of the conversation (leave) answers role null, not an internal error', async () => {
    const alice = await makeUser('gqlleavea');
    const bob = await makeUser('gqlleaveb');
    const id = `gqlleave${crypto.randomUUID().slice(0, 8)}`;
    const e0 = await entry(alice, null, id, { action: 'create', title: 't' });
    const s0 = { conversationId: id, members: new Map(), title: '', headHash: entryHashOf(e0), seq: e0.seq };
    const e1 = await entry(alice, s0, id, { action: 'add', target: bob.userId, role: 'member' });
    const created = await gql(
      await alice.token(),
      'mutation($e: [String!]!) { createConversation(kind: group, entries: $e) { id } }',
      {
        e: [enc(e0), enc(e1)],
      },
    );
    expect(created.body.errors).toBeUndefined();
    const s1 = {
      conversationId: id,
      members: new Map([
        [alice.userId, 'owner' as const],
        [bob.userId, 'member' as const],
      ]),
      title: '',
      headHash: entryHashOf(e1),
      seq: e1.seq,
    };
    const leave = await entry(bob, s1, id, { action: 'leave' });
    const r = await gql(
      await bob.token(),
      'mutation($id: ID!, $e: String!) { appendMembershipEntry(conversationId: $id, entry: $e) { id headSeq role members { userId role } } }',
      { id, e: enc(leave) },
    );
    expect(r.body.errors).toBeUndefined();
    expect(r.body.data!.appendMembershipEntry).toEqual({
      id,
      headSeq: 2,
      role: null,
      members: [{ userId: alice.userId, role: 'owner' }],
    });
  });

  it('registerDevice and revokeDevice mutations go through the signed device list', async () => {
    const bob = await makeUser('gqldev');
    const token = await bob.token();
    const ch = await gql(token, 'mutation { deviceChallenge { challengeId challenge } }');
    const { challengeId, challenge } = ch.body.data!.deviceChallenge as { challengeId: string; challenge: string };
    const dev = await newDevice(bob, 'd1');
    const list = await nextList(bob, [...bob.devices, dev]);
    const { fromB64u } = await import('../web/src/protocol/bytes.js');
    const signature = await signLoginChallenge(bob.curves, dev.signing, fromB64u(challenge), bob.userId, 'd1');
    const r = await gql(
      token,
      'mutation($l: String!, $c: String!, $s: String!) { registerDevice(deviceList: $l, challengeId: $c, signature: $s) { version } }',
      { l: toB64u(encodeDeviceList(list)), c: challengeId, s: toB64u(signature) },
    );
    expect(r.body.errors).toBeUndefined();
    expect(r.body.data).toEqual({ registerDevice: { version: 2 } });
    bob.list = list;
    bob.devices.push(dev);
    const list3 = await nextList(bob, [bob.devices[0]!]);
    const r2 = await gql(token, 'mutation($l: String!) { revokeDevice(deviceId: "d1", deviceList: $l) { version } }', {
      l: toB64u(encodeDeviceList(list3)),
    });
    expect(r2.body.data).toEqual({ revokeDevice: { version: 3 } });
    expect(await auditCount('device.revoked')).toBe(1);
  });
});

describe('pitfall 25: limits are enforced before execution', () => {
  const fragments = (depth: number) => {
    let s = 'fragment F0 on PrekeyCounts { oneTime kem low signedPrekey lastResortKem }\n';
    for (let i = 1; i <= depth; i++) s += `fragment F${i} on PrekeyCounts { ...F${i - 1} ...F${i - 1} }\n`;
    return s;
  };

  it('document size over graphqlMaxQueryBytes → 413, tokens over graphqlMaxTokens → 400 QUERY_TOO_COMPLEX', async () => {
    const big = await gql(null, `{ viewer { id } } # ${'x'.repeat(LIMITS.graphqlMaxQueryBytes)}`);
    expect(big.status).toBe(413);
    const many = await gql(null, `{ viewer { ${'id '.repeat(LIMITS.graphqlMaxTokens)} } }`);
    expect(many.status).toBe(400);
    expect(many.body.errors?.[0]?.extensions.code).toBe('QUERY_TOO_COMPLEX');
  });

  it('depth, aliases and cost beyond the limits are refused with 400 and no resolver runs (no audit row, nothing stored)', async () => {
    const bob = await makeUser('gqllimits');
    const token = await bob.token();
    const upload = uploadB64(fullUpload(bob.devices[0]!));
    const before = await snapshot([]);
    let deep = 'id';
    for (let i = 0; i < LIMITS.graphqlMaxDepth + 2; i++) deep = `devices { ${deep} }`;
    const aliases = Array.from(
      { length: LIMITS.graphqlMaxAliases + 1 },
      (_, i) => `a${i}: uploadPrekeys(upload: $u) { oneTime }`,
    ).join(' ');
    const cases = [
      `mutation($u: String!) { uploadPrekeys(upload: $u) { oneTime } viewer { ${deep} } }`,
      `mutation($u: String!) { ${aliases} }`,
      `mutation($u: String!) { uploadPrekeys(upload: $u) { ...F12 } }\n${fragments(12)}`,
    ];
    for (const q of cases) {
      const r = await gql(token, q, { u: upload });
      expect(r.status).toBe(400);
      expect(r.body.errors?.[0]?.extensions.code).toBe('QUERY_TOO_COMPLEX');
      expect(r.body.data).toBeUndefined();
    }
    expect(await snapshot([])).toEqual(before);
    // The same mutation within the limits does run.
    const ok = await gql(token, 'mutation($u: String!) { uploadPrekeys(upload: $u) { ...F2 } }\n' + fragments(2), {
      u: upload,
    });
    expect(ok.body.errors).toBeUndefined();
    const rows = await env.DB.prepare('SELECT count(*) AS n FROM one_time_prekeys WHERE user_id = ?')
      .bind(bob.userId)
      .first<{ n: number }>();
    expect(rows?.n).toBe(2);
  });
});
