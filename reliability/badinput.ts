/**
 * Bad-input suite: fast-check generated requests against every HTTP route of docs/API.md, every GraphQL
 * operation and every WebSocket frame type — malformed JSON, wrong types, boundary and oversize values,
 * replayed bodies and frames, out-of-order acks/resumes, other users' ids, missing/foreign/forged tokens.
 * Pass: no 5xx; every server frame matches schema/wire.ts; a socket either stays usable (a `resume`
 * still gets its reply) or closes with a documented code (1009 only past the 1 MiB hard cap); a valid send
 * works afterwards; and no D1 row changed except the tables valid requests may write (see ALLOWED).
 * @module
 */
import fc from 'fast-check';
import type WebSocket from 'ws';
import {
  type BenchUser,
  connectApp,
  createConversation,
  ipHeader,
  json,
  payload,
  register,
} from '../bench/lib/app-client.js';
import { CLOSE, HARD_FRAME_BYTES, MAX_FRAME_BYTES, serverFrame, WIRE_PONG, WIRE_VERSION } from '../schema/wire.js';
import { diffSnapshots, snapshotD1 } from './lib/d1.js';
import { pool } from './lib/people.js';
import type { SuiteResult } from './report.js';
import { remember } from './secrets.js';

export interface BadInputConfig {
  http: number;
  graphql: number;
  ws: number;
  seed?: number;
}
export const BADINPUT_FULL: BadInputConfig = { http: 600, graphql: 300, ws: 300 };
export const BADINPUT_CI: BadInputConfig = { http: 100, graphql: 50, ws: 50 };

/**
 * Tables valid requests in the mix may legitimately write: single-use challenges, tickets and MFA steps,
 * audit events, and the mailbox (the DO flushes accepted sends there ~2 s later; acks delete). Prekey
 * tables may only lose rows (a claim takes one-time prekeys). `devices.last_seen_at` may change.
 */
const ALLOWED = new Set([
  'login_challenges',
  'ws_tickets',
  'mfa_pending',
  'audit_events',
  'mailbox',
  'group_envelopes',
  'sqlite_sequence',
  '_cf_METADATA',
  'd1_migrations',
]);
const DELETE_ONLY = new Set(['one_time_prekeys', 'kem_prekeys']);

const b64u = (s: string) => Buffer.from(s).toString('base64url');

interface World {
  base: string;
  a: BenchUser;
  b: BenchUser;
  conv: string;
}

// ---- generators ---------------------------------------------------------------------------------------

const boundaryString = fc.oneof(
  fc.constantFrom(
    '',
    'a',
    'A'.repeat(63),
    'A'.repeat(64),
    'A'.repeat(65),
    'x'.repeat(4096),
    '\u0000',
    '💥',
    '../../etc',
  ),
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
);
const weird = fc.oneof(
  boundaryString,
  fc.integer(),
  fc.constantFrom(-1, 0, 2 ** 53, -(2 ** 53), 1e308, Number.MAX_SAFE_INTEGER + 2, 0.5),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 8 }), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }),
);

function idArb(w: World) {
  return fc.oneof(
    fc.constantFrom(w.a.userId, w.b.userId, w.a.deviceId, w.b.deviceId, w.conv, 'nonexistent_id'),
    boundaryString.map((s) => encodeURIComponent(s)),
  );
}

/** A body for a route expecting `keys`: right keys with weird values, random JSON, junk or oversize. */
function bodyArb(keys: string[], w: World) {
  const filled = fc.record(
    Object.fromEntries(
      keys.map((k) => [k, fc.oneof(weird, idArb(w), fc.constantFrom(w.a.userId, w.b.deviceId, b64u('x'.repeat(32))))]),
    ),
    { requiredKeys: [] },
  );
  return fc.oneof(
    { weight: 5, arbitrary: filled.map((o) => JSON.stringify(o)) },
    { weight: 2, arbitrary: fc.json({ maxDepth: 3 }) },
    { weight: 1, arbitrary: fc.string({ maxLength: 60 }) },
    { weight: 1, arbitrary: fc.constantFrom('', '{', '[]', 'null', '{"__proto__":{"admin":true}}', '"x"') },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        JSON.stringify({ pad: 'x'.repeat(64 * 1024) }),
        JSON.stringify({ pad: 'x'.repeat(600 * 1024) }),
        `{"a":${'['.repeat(2000)}${']'.repeat(2000)}}`,
      ),
    },
  );
}

interface HttpCase {
  method: string;
  path: string;
  auth: 'none' | 'a' | 'b' | 'garbage' | 'algnone';
  body?: string;
  contentType: string;
}

const ROUTES: { method: string; path: string; keys: string[] }[] = [
  { method: 'GET', path: '/api/health', keys: [] },
  { method: 'POST', path: '/api/auth/challenge', keys: [] },
  {
    method: 'POST',
    path: '/api/auth/register',
    keys: [
      'userId',
      'username',
      'passwordPrehash',
      'userIdentityKey',
      'deviceList',
      'deviceId',
      'challengeId',
      'challengeSignature',
    ],
  },
  {
    method: 'POST',
    path: '/api/auth/login',
    keys: ['username', 'passwordPrehash', 'deviceId', 'challengeId', 'challengeSignature'],
  },
  { method: 'POST', path: '/api/auth/totp', keys: ['mfaToken', 'code', 'recoveryCode'] },
  { method: 'POST', path: '/api/auth/refresh', keys: [] },
  { method: 'GET', path: '/api/auth/session', keys: [] },
  { method: 'POST', path: '/api/auth/sessions/revoke', keys: ['deviceId'] },
  { method: 'POST', path: '/api/auth/password', keys: ['currentPrehash', 'newPrehash'] },
  { method: 'POST', path: '/api/auth/totp/enroll', keys: ['currentPrehash'] },
  { method: 'POST', path: '/api/auth/totp/confirm', keys: ['code'] },
  { method: 'POST', path: '/api/auth/totp/disable', keys: ['code'] },
  {
    method: 'POST',
    path: '/api/auth/reset-identity',
    keys: [
      'username',
      'passwordPrehash',
      'userIdentityKey',
      'deviceList',
      'deviceId',
      'challengeId',
      'challengeSignature',
      'code',
      'recoveryCode',
    ],
  },
  { method: 'GET', path: '/api/devices', keys: [] },
  { method: 'POST', path: '/api/devices/challenge', keys: [] },
  { method: 'POST', path: '/api/devices', keys: ['deviceList', 'challengeId', 'signature'] },
  { method: 'POST', path: '/api/devices/:id/revoke', keys: ['deviceList'] },
  { method: 'POST', path: '/api/keys', keys: ['upload'] },
  { method: 'GET', path: '/api/keys/count', keys: [] },
  { method: 'POST', path: '/api/keys/claim', keys: ['userId'] },
  { method: 'GET', path: '/api/users/by-name/:id', keys: [] },
  { method: 'GET', path: '/api/users/:id/device-list', keys: [] },
  { method: 'GET', path: '/api/conversations', keys: [] },
  { method: 'POST', path: '/api/conversations', keys: ['kind', 'entries'] },
  { method: 'GET', path: '/api/conversations/:id', keys: [] },
  { method: 'GET', path: '/api/conversations/:id/log?afterSeq=:q&limit=:q', keys: [] },
  { method: 'POST', path: '/api/conversations/:id/log', keys: ['entry'] },
  { method: 'POST', path: '/api/conversations/:id/ticket', keys: [] },
  { method: 'GET', path: '/api/conversations/:id/ws?ticket=:q', keys: [] },
  { method: 'GET', path: '/api/mailbox?afterConversation=:q&afterSeq=:q&limit=:q', keys: [] },
  { method: 'POST', path: '/api/mailbox/ack', keys: ['acks'] },
  { method: 'GET', path: '/api/probe/ws?room=:q', keys: [] },
  { method: 'GET', path: '/graphql?query=:q', keys: [] },
  { method: 'PUT', path: '/api/conversations/:id', keys: ['kind'] },
  { method: 'DELETE', path: '/api/devices/:id', keys: [] },
];

function httpCaseArb(w: World): fc.Arbitrary<HttpCase> {
  return fc.constantFrom(...ROUTES).chain((r) =>
    fc.record({
      method: fc.oneof({ weight: 9, arbitrary: fc.constant(r.method) }, fc.constantFrom('GET', 'POST', 'PATCH')),
      path: fc
        .tuple(idArb(w), fc.oneof(fc.constantFrom('-1', '0', '99999999999999999999', 'NaN'), idArb(w)))
        .map(([id, q]) => r.path.replace(':id', id).replaceAll(':q', q)),
      auth: fc.constantFrom('none', 'a', 'a', 'a', 'b', 'garbage', 'algnone') as fc.Arbitrary<HttpCase['auth']>,
      body: r.keys.length || r.method === 'POST' ? bodyArb(r.keys, w) : fc.constant(undefined),
      contentType: fc.constantFrom(
        'application/json',
        'application/json',
        'text/plain',
        'application/x-www-form-urlencoded',
      ),
    }),
  );
}

const GQL_OPS = [
  'query { viewer { id username deviceId devices { deviceId createdAt lastSeenAt revoked } deviceList { version bytes } } }',
  'query($u: String!) { user(username: $u) { id username identityKey deviceList { version bytes } } }',
  'query { conversations { id kind role headSeq headHash createdAt members { userId role joinedSeq } } }',
  'query($id: ID!, $a: Int, $l: Int) { conversation(id: $id) { id members { userId } membershipLog(afterSeq: $a, limit: $l) { seq entry } } }',
  'query { prekeyCount { oneTime kem signedPrekey lastResortKem low } }',
  'mutation { deviceChallenge { challengeId challenge } }',
  'mutation($l: String!, $c: String!, $s: String!) { registerDevice(deviceList: $l, challengeId: $c, signature: $s) { version bytes } }',
  'mutation($d: ID!, $l: String!) { revokeDevice(deviceId: $d, deviceList: $l) { version } }',
  'mutation($u: String!) { uploadPrekeys(upload: $u) { oneTime kem } }',
  'mutation($u: ID!) { claimPrekeyBundles(userId: $u) { userId devices { deviceId } unavailable } }',
  'mutation($k: ConversationKind!, $e: [String!]!) { createConversation(kind: $k, entries: $e) { id } }',
  'mutation($id: ID!, $e: String!) { appendMembershipEntry(conversationId: $id, entry: $e) { id headSeq } }',
  '{ __schema { types { name fields { name } } } }',
];

function gqlCaseArb(w: World) {
  const vars = fc.record(
    Object.fromEntries(['u', 'id', 'a', 'l', 'c', 's', 'd', 'k', 'e'].map((k) => [k, fc.oneof(weird, idArb(w))])),
    { requiredKeys: [] },
  );
  const query = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...GQL_OPS) },
    { weight: 1, arbitrary: fc.string({ maxLength: 120 }) },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: 1, max: 60 })
        .map((n) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: viewer { id }`).join(' ')} }`),
    },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: 5, max: 40 })
        .map((n) => `{ conversations { members { userId } ${'__typename '.repeat(n * 30)} } }`),
    },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: 6, max: 30 })
        .map((n) => `{ ${'__schema { types { fields { type { '.repeat(n)}name${' } } } }'.repeat(n)} }`),
    },
    { weight: 1, arbitrary: fc.constant(`{ viewer { id ${'x'.repeat(9000)} } }`) },
  );
  return fc.record({
    query,
    variables: fc.oneof(
      vars,
      fc.json({ maxDepth: 2 }).map((s) => JSON.parse(s) as unknown),
    ),
    auth: fc.constantFrom('none', 'a', 'a', 'b', 'garbage') as fc.Arbitrary<HttpCase['auth']>,
    get: fc.boolean(),
  });
}

function frameArb(w: World) {
  const c = fc.oneof(fc.constant(payload()), boundaryString, fc.constant('A'.repeat(90_000)));
  const item = fc.record(
    {
      u: fc.oneof(fc.constantFrom(w.a.userId, w.b.userId), boundaryString),
      d: fc.oneof(fc.constantFrom(w.a.deviceId, w.b.deviceId), boundaryString),
      c,
      x: weird,
    },
    { requiredKeys: ['u', 'd', 'c'] },
  );
  const structured = fc.record(
    {
      v: fc.oneof({ weight: 5, arbitrary: fc.constant(WIRE_VERSION) }, weird),
      type: fc.oneof({ weight: 5, arbitrary: fc.constantFrom('send', 'receipt', 'ack', 'resume') }, boundaryString),
      id: fc.oneof(fc.constantFrom('m1', 'dup', 'x'.repeat(64)), boundaryString),
      to: fc.oneof(
        fc.array(item, { maxLength: 3 }),
        weird,
        fc.constant(Array.from({ length: 300 }, () => ({ u: 'u', d: 'd', c: 'AA' }))),
      ),
      group: c,
      status: fc.oneof(fc.constantFrom('delivered', 'read'), boundaryString),
      upTo: fc.oneof(fc.constantFrom(0, 1, 2 ** 40, Number.MAX_SAFE_INTEGER), weird),
      after: fc.oneof(fc.constantFrom(0, 2 ** 40, Number.MAX_SAFE_INTEGER), weird),
      extra: weird,
    },
    { requiredKeys: ['type'] },
  );
  return fc.oneof(
    { weight: 8, arbitrary: structured.map((o) => JSON.stringify(o)) },
    { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
    { weight: 1, arbitrary: fc.string({ maxLength: 100 }) },
    { weight: 1, arbitrary: fc.constantFrom('{"type":"ping"}', '{"type":"pong"}', '', 'null', '[]') },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        JSON.stringify({ v: 1, type: 'send', id: 'big', group: 'A'.repeat(MAX_FRAME_BYTES) }),
        'x'.repeat(HARD_FRAME_BYTES + 10),
      ),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)) },
  );
}

// ---- runners ------------------------------------------------------------------------------------------

function authHeader(w: World, auth: HttpCase['auth']): Record<string, string> {
  switch (auth) {
    case 'a':
      return { authorization: `Bearer ${w.a.token}` };
    case 'b':
      return { authorization: `Bearer ${w.b.token}` };
    case 'garbage':
      return { authorization: 'Bearer not.a.token' };
    case 'algnone':
      return {
        authorization: `Bearer ${b64u('{"alg":"none","typ":"JWT"}')}.${b64u(JSON.stringify({ sub: w.b.userId, exp: 9e9 }))}.`,
      };
    default:
      return {};
  }
}

async function runHttp(w: World, c: HttpCase): Promise<string | null> {
  const res = await fetch(`${w.base}${c.path.startsWith('/') ? c.path : `/${c.path}`}`, {
    method: c.method,
    headers: { ...authHeader(w, c.auth), 'content-type': c.contentType, ...ipHeader() },
    body: c.method === 'GET' || c.method === 'HEAD' ? undefined : c.body,
  });
  await res.arrayBuffer();
  return res.status >= 500 ? `${c.method} ${c.path.slice(0, 80)} → ${res.status}` : null;
}

async function runGql(
  w: World,
  c: { query: string; variables: unknown; auth: HttpCase['auth']; get: boolean },
): Promise<string | null> {
  const headers = { ...authHeader(w, c.auth), 'content-type': 'application/json', ...ipHeader() };
  const res = c.get
    ? await fetch(
        `${w.base}/graphql?query=${encodeURIComponent(c.query)}&variables=${encodeURIComponent(JSON.stringify(c.variables) ?? '')}`,
        { headers },
      )
    : await fetch(`${w.base}/graphql`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ query: c.query, variables: c.variables }),
      });
  const text = await res.text();
  if (res.status >= 500) return `graphql ${c.query.slice(0, 60)} → ${res.status}`;
  if (text.includes('INTERNAL_SERVER_ERROR'))
    return `graphql ${c.query.slice(0, 60)} ${JSON.stringify(c.variables).slice(0, 200)} → INTERNAL_SERVER_ERROR`;
  return null;
}

interface Socket {
  ws: WebSocket;
  frames: unknown[];
  closed: { code: number } | null;
}

async function open(w: World): Promise<Socket> {
  const ws = await connectApp(w.base, w.conv, w.a);
  const s: Socket = { ws, frames: [], closed: null };
  ws.on('message', (d) => s.frames.push(JSON.parse(String(d))));
  ws.on('close', (code) => {
    s.closed = { code };
  });
  // A reset after a close the server initiated (e.g. 1009) is expected; the close handler records it.
  ws.on('error', () => {});
  return s;
}

/** Waits for a frame matching `pred` (or the close); returns it, or null on close / timeout. */
async function next(s: Socket, pred: (f: { type?: string; id?: string }) => boolean, ms = 5000): Promise<unknown> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const i = s.frames.findIndex((f) => pred(f as { type?: string }));
    if (i >= 0) return s.frames.splice(i, 1)[0];
    if (s.closed) return null;
    await new Promise((r) => setTimeout(r, 5));
  }
  return null;
}

const DOCUMENTED_CLOSES = new Set<number>([CLOSE.normal, CLOSE.tooBig, CLOSE.internal, CLOSE.forbidden, CLOSE.stale]);

export async function badInputSuite(
  base: string,
  stateDir: string,
  cfg: BadInputConfig,
  log = (_: string) => {},
): Promise<SuiteResult> {
  const t0 = performance.now();
  const failures: string[] = [];
  const seed = cfg.seed ?? Date.now() % 2 ** 31;
  const a = await register(base, 'fuzza');
  const b = await register(base, 'fuzzb');
  remember('token', a.token);
  remember('token', b.token);
  const w: World = { base, a, b, conv: await createConversation(base, [a, b]) };
  // A valid send to replay later.
  let sock = await open(w);
  const valid = JSON.stringify({ v: WIRE_VERSION, type: 'send', id: 'dup', group: payload() });
  sock.ws.send(valid);
  if (!(await next(sock, (f) => f.type === 'accepted'))) failures.push('set-up: a valid send was not accepted');
  await new Promise((r) => setTimeout(r, 3000)); // let the DO flush to D1 before the snapshot
  const before = snapshotD1(stateDir);

  // HTTP
  const httpCases = fc.sample(httpCaseArb(w), { numRuns: cfg.http, seed });
  const http5xx = (
    await pool(httpCases, 4, (c) => runHttp(w, c).catch((e: Error) => `${c.path}: ${e.message}`))
  ).filter((x): x is string => x !== null);
  log(`badinput: ${httpCases.length} HTTP cases, ${http5xx.length} bad`);
  // GraphQL
  const gqlCases = fc.sample(gqlCaseArb(w), { numRuns: cfg.graphql, seed });
  const gql5xx = (await pool(gqlCases, 4, (c) => runGql(w, c).catch((e: Error) => `graphql: ${e.message}`))).filter(
    (x): x is string => x !== null,
  );
  log(`badinput: ${gqlCases.length} GraphQL cases, ${gql5xx.length} bad`);
  // WebSocket frames, one at a time on one socket; after each, a resume must still be answered.
  const frames = fc.sample(frameArb(w), { numRuns: cfg.ws, seed });
  frames.splice(Math.floor(frames.length / 2), 0, valid, valid); // replays of an accepted send
  const wsBad: string[] = [];
  let reconnects = 0;
  let accepted = 0;
  for (const f of frames) {
    sock.frames.length = 0;
    sock.ws.send(f);
    const size = typeof f === 'string' ? Buffer.byteLength(f) : f.length;
    sock.ws.send(JSON.stringify({ v: WIRE_VERSION, type: 'resume', after: Number.MAX_SAFE_INTEGER }));
    const reply = await next(sock, (x) => x.type === 'resume');
    for (const x of sock.frames) {
      if (JSON.stringify(x) !== WIRE_PONG && !serverFrame.safeParse(x).success)
        wsBad.push(`server frame off-schema: ${JSON.stringify(x).slice(0, 120)}`);
      if ((x as { type?: string }).type === 'accepted') accepted++;
      if ((x as { code?: string }).code === 'internal') wsBad.push(`error internal after ${String(f).slice(0, 80)}`);
    }
    if (!reply) {
      await new Promise((r) => setTimeout(r, 200));
      const code = sock.closed?.code;
      if (code === undefined) wsBad.push(`no resume reply and no close after ${String(f).slice(0, 80)}`);
      else if (
        !DOCUMENTED_CLOSES.has(code) ||
        (code === CLOSE.tooBig && size <= HARD_FRAME_BYTES) ||
        code === CLOSE.internal
      )
        wsBad.push(`close ${code} after a ${size} B frame ${String(f).slice(0, 80)}`);
      sock.ws.terminate();
      sock = await open(w);
      reconnects++;
    }
  }
  // A later valid send still works.
  sock.ws.send(JSON.stringify({ v: WIRE_VERSION, type: 'send', id: 'after-fuzz', group: payload() }));
  if (!(await next(sock, (f) => f.type === 'accepted' && f.id === 'after-fuzz')))
    wsBad.push('a valid send after the fuzzing was not accepted');
  sock.ws.close(1000);
  log(`badinput: ${frames.length} frames, ${reconnects} reconnects, ${wsBad.length} bad`);
  // Both accounts still work.
  for (const u of [a, b]) {
    const r = await fetch(`${base}/api/auth/session`, {
      headers: { authorization: `Bearer ${u.token}`, ...ipHeader() },
    });
    if (!r.ok) failures.push(`session of a fuzzing account: ${r.status}`);
  }
  await json(await fetch(`${base}/api/health`), 'health');
  await new Promise((r) => setTimeout(r, 3000));
  const after = snapshotD1(stateDir);
  const changed = diffSnapshots(before, after).filter(
    (d) => !ALLOWED.has(d.table) && !(DELETE_ONLY.has(d.table) && d.added.length === 0),
  );
  const devicesOnlySeen = (d: { table: string; added: string[]; removed: string[] }) => {
    if (d.table !== 'devices' || d.added.length !== d.removed.length) return false;
    const strip = (r: string) =>
      JSON.stringify((JSON.parse(r) as [string, unknown][]).filter(([k]) => k !== 'last_seen_at'));
    const rem = new Set(d.removed.map(strip));
    return d.added.every((r) => rem.has(strip(r)));
  };
  const rowChanges = changed.filter((d) => !devicesOnlySeen(d));
  for (const d of rowChanges)
    failures.push(
      `D1 table ${d.table} changed: +${d.added.length} −${d.removed.length} (${(d.added[0] ?? d.removed[0] ?? '').slice(0, 160)})`,
    );
  failures.push(...http5xx, ...gql5xx, ...wsBad);
  const total = httpCases.length + gqlCases.length + frames.length;
  return {
    name: 'bad input',
    rows: [
      ['cases (HTTP / GraphQL / WS frames)', `${httpCases.length} / ${gqlCases.length} / ${frames.length} = ${total}`],
      ['fast-check seed', String(seed)],
      ['5xx responses (HTTP + GraphQL)', String(http5xx.length + gql5xx.length)],
      ['WS: undocumented closes / off-schema or internal frames / dead sockets', String(wsBad.length)],
      ['WS: sockets closed (documented codes) and reopened', String(reconnects)],
      ['WS: fuzz frames accepted (valid by chance, incl. replays)', String(accepted)],
      ['D1 tables with unexpected row changes', String(rowChanges.length)],
      ['wall time (s)', ((performance.now() - t0) / 1000).toFixed(0)],
    ],
    failures,
  };
}
