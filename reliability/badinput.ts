/**
 * Bad-input suite: every HTTP route, GraphQL operation and WebSocket frame type of the app, found by walking
 * the app itself (reliability/lib/surface.ts: the Hono routes of worker/app.ts, the GraphQL schema's
 * Query / Mutation / Subscription fields, `CLIENT_FRAME_TYPES` of schema/wire.ts), attacked with generated
 * input. A route added tomorrow is fuzzed tomorrow.
 *
 * ## Adding a surface (the registration point)
 *
 * Each discovered surface needs an entry in one of the three tables below — `ROUTE_GENERATORS` (key
 * `"METHOD /path"` exactly as Hono lists it, e.g. `"POST /api/conversations/:id/log"`), `GRAPHQL_GENERATORS`
 * (key `"Query.field"` / `"Mutation.field"`) or `FRAME_GENERATORS` (key = frame `type`).
 * reliability/badinput.test.ts fails while a surface has none (an unregistered surface is still fuzzed here
 * with the generic generators, and reported). An entry says what the surface takes; the generator families
 * below are applied to it automatically:
 *
 *   HTTP   `{ keys: ['a', 'b'] }`        JSON body with these keys, filled with hostile values (or `body:` your own
 *                                        fast-check arbitrary of body strings)
 *          `json: true`                  the route reads a JSON body: any other Content-Type must be 415
 *          `query: 'a=:q&b=:q'`          query string; each `:q` gets a hostile value
 *          `auth: 'bearer' | 'none'`     what the route needs (the wrong-content-type family signs in for it)
 *          `destructive: true`           a valid call ends the caller's session or similar: fuzzed only with a
 *                                        throwaway account whose rows may change
 *          `upgrade: 'ticket' | 'room'`  a WebSocket upgrade route (refused-upgrade shapes)
 *          `oversize: {target, status, code}`  the route bounds its body itself (an attachment upload: its
 *                                        reserved size): the oversize family sends its body to `target(w)`
 *                                        and expects that answer instead of 413
 *   GraphQL `TYPE_DRIVEN`               variables generated from the argument types (enough for most fields),
 *          or `{ vars: (w) => arbitrary }` for your own
 *   Frames `(w) => arbitrary of objects`  frames of that type (the suite adds `v`/`type` and malformed variants)
 *
 * ## Generator families (each runs over every discovered surface it applies to)
 *  1. fuzz: hostile bodies / params / tokens / methods per route; type-driven GraphQL variables per field;
 *     malformed frames per type on a live socket;
 *  2. oversize bodies: far over the limit, streamed with and without Content-Length → 413 JSON (or the
 *     answer the route registered under `oversize`), never a dropped connection or an HTML page;
 *  3. truncated bodies: JSON cut short (→ 4xx JSON) and a body that stops before its Content-Length with
 *     the socket closed (→ the server stays healthy);
 *  4. wrong content types on JSON routes → 415;
 *  5. refused upgrades: an upgrade to every route, and used / foreign / missing tickets → the 4xx JSON the
 *     Worker sent, delivered (not a reset connection);
 *  6. GraphQL shapes: aliases, depth, size (in the fuzz), and the list-amplifying query of issue 12 over
 *     `groups` groups, alone and three at once, with the largest shape the cost allows (times reported);
 *  7. attack shapes: unconsented group floods (refused with Retry-After, the victim's conversation still
 *     connects); sign-in lockout by strangers is pinned in worker/hardening.test.ts;
 *  8. attachment uploads that break the size contract (issue 16) — see `attachmentUploads`.
 *
 * Pass: no 5xx; every error is JSON with a stable code; every server frame matches schema/wire.ts; a socket
 * either stays usable (a `resume` still gets its reply) or closes with a documented code (1009 only past the
 * 1 MiB hard cap); a valid send works afterwards; and no D1 row changed except the tables valid requests may
 * write (see ALLOWED).
 * @module
 */
import fc from 'fast-check';
import type { GraphQLArgument } from 'graphql';
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
import { SEALED_SETTINGS_LENGTHS } from '../web/src/protocol/private-settings.js';
import { SEALED_PROFILE_LENGTHS } from '../web/src/protocol/profile.js';
import { diffSnapshots, snapshotD1 } from './lib/d1.js';
import { pool } from './lib/people.js';
import { streamBody, truncatedBody, tryUpgrade } from './lib/raw-http.js';
import {
  type AppSurface,
  argKind,
  discoverSurface,
  type GraphqlSurface,
  operationFor,
  type RouteSurface,
} from './lib/surface.js';
import type { SuiteResult } from './report.js';
import { remember } from './secrets.js';

export interface BadInputConfig {
  http: number;
  graphql: number;
  ws: number;
  /** Groups of the fuzzing account for the list-amplifying GraphQL shapes (the probe used 150–200). */
  groups: number;
  /** Bytes of each oversize body (every body-taking route, streamed with and without Content-Length). */
  oversizeBytes: number;
  seed?: number;
}
export const BADINPUT_FULL: BadInputConfig = {
  http: 600,
  graphql: 300,
  ws: 300,
  groups: 200,
  oversizeBytes: 20 * 1024 * 1024,
};
export const BADINPUT_CI: BadInputConfig = { http: 100, graphql: 50, ws: 50, groups: 30, oversizeBytes: 1024 * 1024 };

/**
 * Tables valid requests in the mix may legitimately write: single-use challenges, tickets and MFA steps,
 * audit events, the mailbox (the DO flushes accepted sends there ~2 s later; acks delete), and a fuzzing
 * account's own sealed profile and private settings (a well-shaped blob is a valid write). Prekey
 * tables may only lose rows (a claim takes one-time prekeys). `devices.last_seen_at` may change. Rows of
 * the throwaway account (destructive routes) may change.
 */
const ALLOWED = new Set([
  // Linking (issue 14): a valid token request on the suite's open channel issues a single-use token.
  'linking_tokens',
  'login_challenges',
  'ws_tickets',
  'mfa_pending',
  'audit_events',
  'mailbox',
  'group_envelopes',
  // Reservations made by valid POST /api/attachments calls in the mix and by attachmentUploads (never uploaded).
  'attachments',
  'profiles',
  'private_settings',
  'sqlite_sequence',
  '_cf_METADATA',
  'd1_migrations',
]);
const DELETE_ONLY = new Set(['one_time_prekeys', 'kem_prekeys']);

const b64u = (s: string) => Buffer.from(s).toString('base64url');

/** The accounts and conversations every generator may use. */
export interface World {
  base: string;
  /** The main fuzzing account (member of `conv`). */
  a: BenchUser;
  /** A second member of `conv`. */
  b: BenchUser;
  /** A stranger: member of `other` only. */
  c: BenchUser;
  /** The throwaway account for destructive routes (its rows may change). */
  z: BenchUser;
  conv: string;
  /** A conversation `a` is not in (tickets minted for it are foreign to `conv`). */
  other: string;
  /** An open provisioning channel (issue 14) and its secret, so the link routes are reached past the id check. */
  channel: { id: string; secret: string };
}

type Auth = 'none' | 'a' | 'b' | 'z' | 'garbage' | 'algnone' | 'lowercase' | 'zlowercase';

// ---- value generators ---------------------------------------------------------------------------------

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
    '%00',
    '__proto__',
  ),
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
);
const weirdNumber = fc.constantFrom(
  -1,
  0,
  1,
  2 ** 31,
  -(2 ** 31) - 1,
  2 ** 53,
  1e308,
  Number.MAX_SAFE_INTEGER + 2,
  0.5,
);
const weird = fc.oneof(
  boundaryString,
  fc.integer(),
  weirdNumber,
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 8 }), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }),
);

export function idArb(w: World) {
  return fc.oneof(
    fc.constantFrom(
      w.a.userId,
      w.b.userId,
      w.c.userId,
      w.a.deviceId,
      w.b.deviceId,
      w.conv,
      w.other,
      w.channel.id,
      'nonexistent_id',
    ),
    boundaryString.map((s) => encodeURIComponent(s)),
  );
}

/** A JSON body with `keys` filled with hostile values, or random JSON, junk, truncated or oversize JSON. */
export function bodyArb(keys: string[], w: World) {
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
    {
      weight: 1,
      arbitrary: fc.tuple(filled, fc.nat()).map(([o, n]) => {
        const s = JSON.stringify(o);
        return s.slice(0, n % Math.max(1, s.length)); // truncated JSON
      }),
    },
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

// ---- people (issue 17): sealed profiles and private settings -------------------------------------------

/**
 * Sealed-looking values: every size the server accepts, one byte short and over, with version bytes 0-3
 * and (settings) any revision bytes — the server can check only shape and revision; plus boundary strings
 * and a value far over the limit.
 */
export function sealedArb(what: 'profile' | 'settings'): fc.Arbitrary<string> {
  const lengths = what === 'profile' ? SEALED_PROFILE_LENGTHS : SEALED_SETTINGS_LENGTHS;
  const shaped = fc
    .tuple(
      fc.constantFrom(...lengths),
      fc.constantFrom(-1, 0, 0, 1),
      fc.constantFrom(0, 1, 1, 2, 255),
      fc.uint8Array({ minLength: 8, maxLength: 8 }),
    )
    .map(([len, delta, version, revision]) => {
      const b = Buffer.alloc(len + delta, 0x5a);
      b[0] = version;
      if (what === 'settings') b.set(revision, 1);
      return b.toString('base64url');
    });
  return fc.oneof(
    { weight: 4, arbitrary: shaped },
    { weight: 1, arbitrary: boundaryString },
    { weight: 1, arbitrary: fc.constant('A'.repeat(300_000)) },
  );
}

function peopleBody(key: 'profile' | 'settings', w: World): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: sealedArb(key).map((v) => JSON.stringify({ [key]: v })) },
    { weight: 2, arbitrary: bodyArb([key], w) },
  );
}

// ---- linking (issue 14): the provisioning channel -----------------------------------------------------

/**
 * Bodies for the provisioning-channel routes: the real channel id and secret (or hostile ones), cursors,
 * sealed-looking data of every size class, and waits that are never long (a valid long poll would hold a
 * fuzz case for 25 s).
 */
function linkBody(w: World, keys: string[]): fc.Arbitrary<string> {
  const values: Record<string, fc.Arbitrary<unknown>> = {
    secret: fc.oneof(fc.constant(w.channel.secret), boundaryString, fc.constant('A'.repeat(43))),
    channelId: fc.oneof(fc.constant(w.channel.id), boundaryString, fc.constant('A'.repeat(22))),
    after: fc.oneof(fc.constantFrom(0, 1, 999_999, 1_000_001), weird),
    waitMs: fc.oneof(fc.constantFrom(0, -1, 25_001, 1e12), boundaryString),
    data: fc.oneof(
      fc.constant(b64u('sealed')),
      fc.constant('A'.repeat(300_000)),
      fc.constant(b64u('x'.repeat(5000))),
      boundaryString,
    ),
  };
  const wanted = ['secret', ...keys];
  const filled = fc.record(Object.fromEntries(wanted.map((k) => [k, fc.oneof(values[k] ?? weird, weird)])), {
    requiredKeys: [],
  });
  return fc.oneof(
    { weight: 4, arbitrary: filled.map((o) => JSON.stringify(o)) },
    { weight: 1, arbitrary: bodyArb(wanted, w) },
  );
}

// ---- the registration tables --------------------------------------------------------------------------

export interface RouteGenerator {
  keys?: string[];
  body?: (w: World) => fc.Arbitrary<string>;
  query?: string;
  json?: boolean;
  auth: 'bearer' | 'none';
  destructive?: boolean;
  upgrade?: 'ticket' | 'room';
  /**
   * The route bounds its body by something other than the global body limit, so a body over the limit gets
   * its own stable answer instead of 413 `payload_too_large` (an attachment upload: the size reserved for
   * it; more is 400 `size_mismatch`). The oversize family streams its body at `target(w)` — a real resource,
   * so the answer is about the size and not a 404 — with `headers`, and expects exactly `status` + `code`.
   */
  oversize?: {
    target: (w: World) => Promise<string>;
    headers?: Record<string, string>;
    status: number;
    code: string;
  };
}

/** Every HTTP route (key: `METHOD /path` as Hono lists it). */
export const ROUTE_GENERATORS: Record<string, RouteGenerator> = {
  'GET /api/health': { auth: 'none' },
  // realtime
  'POST /api/conversations/:id/ticket': { auth: 'bearer' },
  'GET /api/conversations/:id/ws': { auth: 'none', query: 'ticket=:q', upgrade: 'ticket' },
  'GET /api/probe/ws': { auth: 'none', query: 'room=:q', upgrade: 'room' },
  // conversations
  'GET /api/conversations': { auth: 'bearer' },
  'POST /api/conversations': { auth: 'bearer', keys: ['kind', 'entries'], json: true },
  'GET /api/conversations/:id': { auth: 'bearer' },
  'GET /api/conversations/:id/log': { auth: 'bearer', query: 'afterSeq=:q&limit=:q' },
  'POST /api/conversations/:id/log': { auth: 'bearer', keys: ['entry'], json: true },
  // mailbox
  'GET /api/mailbox': { auth: 'bearer', query: 'afterConversation=:q&afterSeq=:q&limit=:q' },
  'POST /api/mailbox/ack': { auth: 'bearer', keys: ['acks'], json: true },
  // devices and keys
  'GET /api/devices': { auth: 'bearer' },
  'POST /api/devices/challenge': { auth: 'bearer' },
  // Without a bearer token this is the new device redeeming a linking token (issue 14).
  'POST /api/devices': {
    auth: 'bearer',
    keys: ['deviceList', 'challengeId', 'signature', 'linkingToken', 'channelId', 'channelSecret', 'name'],
    json: true,
  },
  'POST /api/devices/:deviceId/revoke': { auth: 'bearer', keys: ['deviceList'], json: true },
  'PUT /api/devices/:deviceId/name': { auth: 'bearer', keys: ['name'], json: true },
  // linking (issue 14): provisioning channels and linking tokens
  'POST /api/link/channels': { auth: 'none', keys: ['channelId'], json: true },
  'POST /api/link/channels/:id/new/poll': {
    auth: 'none',
    json: true,
    keys: ['secret', 'after', 'waitMs'],
    body: (w) => linkBody(w, ['after', 'waitMs']),
  },
  'POST /api/link/channels/:id/new/send': {
    auth: 'none',
    json: true,
    keys: ['secret', 'data'],
    body: (w) => linkBody(w, ['data']),
  },
  'POST /api/link/channels/:id/new/close': { auth: 'none', json: true, keys: ['secret'], body: (w) => linkBody(w, []) },
  'POST /api/link/token': { auth: 'bearer', json: true, keys: ['channelId'], body: (w) => linkBody(w, ['channelId']) },
  'POST /api/link/channels/:id/existing/poll': {
    auth: 'bearer',
    json: true,
    keys: ['after', 'waitMs'],
    body: (w) => linkBody(w, ['after', 'waitMs']),
  },
  'POST /api/link/channels/:id/existing/send': {
    auth: 'bearer',
    json: true,
    keys: ['data'],
    body: (w) => linkBody(w, ['data']),
  },
  'POST /api/link/channels/:id/existing/close': { auth: 'bearer' },
  'POST /api/keys': { auth: 'bearer', keys: ['upload'], json: true },
  'GET /api/keys/count': { auth: 'bearer' },
  'POST /api/keys/claim': { auth: 'bearer', keys: ['userId'], json: true },
  // GraphQL over HTTP (operations themselves: GRAPHQL_GENERATORS)
  'GET /graphql': { auth: 'none', query: 'query=:q&variables=:q' },
  'POST /graphql': { auth: 'none', keys: ['query', 'variables', 'operationName'], json: true },
  'ALL /graphql': { auth: 'none', keys: ['query'] },
  // auth
  'POST /api/auth/challenge': { auth: 'none' },
  'GET /api/auth/username/:username': { auth: 'none' },
  'POST /api/auth/register': {
    auth: 'none',
    json: true,
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
  'POST /api/auth/login': {
    auth: 'none',
    json: true,
    keys: ['username', 'passwordPrehash', 'deviceId', 'challengeId', 'challengeSignature'],
  },
  'POST /api/auth/totp': { auth: 'none', json: true, keys: ['mfaToken', 'code', 'recoveryCode'] },
  'POST /api/auth/refresh': { auth: 'none' },
  'GET /api/auth/session': { auth: 'bearer' },
  'POST /api/auth/logout': { auth: 'bearer', destructive: true },
  'POST /api/auth/logout-all': { auth: 'bearer', destructive: true },
  'POST /api/auth/sessions/revoke': { auth: 'bearer', json: true, keys: ['deviceId'], destructive: true },
  'POST /api/auth/password': { auth: 'bearer', json: true, keys: ['currentPrehash', 'newPrehash'] },
  'POST /api/auth/totp/enroll': { auth: 'bearer', json: true, keys: ['currentPrehash'] },
  'POST /api/auth/totp/confirm': { auth: 'bearer', json: true, keys: ['code'] },
  'POST /api/auth/totp/disable': { auth: 'bearer', json: true, keys: ['code'] },
  'POST /api/auth/reset-identity': {
    auth: 'none',
    json: true,
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
  // users
  'GET /api/users/by-name/:username': { auth: 'bearer' },
  'GET /api/users/names': { auth: 'bearer', query: 'ids=:q' },
  'GET /api/users/:userId/device-list': { auth: 'bearer' },
  // attachments (issue 16)
  'POST /api/attachments': { auth: 'bearer', keys: ['conversationId', 'size', 'parts'], json: true },
  'PUT /api/attachments/:id': {
    auth: 'bearer',
    oversize: {
      target: async (w) => `/api/attachments/${await reserveUpload(w, 70_000)}`,
      headers: { 'content-type': 'application/octet-stream' },
      status: 400,
      code: 'size_mismatch',
    },
  },
  'PUT /api/attachments/:id/parts/:n': {
    auth: 'bearer',
    oversize: {
      target: async (w) => `/api/attachments/${await reserveUpload(w, 70_000, true)}/parts/1`,
      headers: { 'content-type': 'application/octet-stream' },
      status: 400,
      code: 'size_mismatch',
    },
  },
  'POST /api/attachments/:id/complete': { auth: 'bearer', keys: ['parts'], json: true },
  'GET /api/attachments/:id': { auth: 'bearer' },
  'DELETE /api/attachments/:id': { auth: 'bearer' },
  // people: sealed profiles and private settings (issue 17)
  'GET /api/users/:userId/profile': { auth: 'bearer' },
  'GET /api/profile': { auth: 'bearer' },
  'PUT /api/profile': { auth: 'bearer', json: true, keys: ['profile'], body: (w) => peopleBody('profile', w) },
  'GET /api/settings': { auth: 'bearer' },
  'PUT /api/settings': { auth: 'bearer', json: true, keys: ['settings'], body: (w) => peopleBody('settings', w) },
  // status and account data (issue 18)
  'GET /api/status/counters': { auth: 'none' },
  'GET /api/account/export': { auth: 'bearer', query: 'cursor=:q' },
  'POST /api/account/delete': {
    auth: 'bearer',
    json: true,
    keys: ['passwordPrehash', 'code', 'recoveryCode', 'leave'],
    destructive: true,
  },
  // webhooks (issue 15): hostile endpoint URLs — every SSRF shape — and hostile fields; no URL here is accepted
  'GET /api/webhooks': { auth: 'bearer' },
  'POST /api/webhooks': {
    auth: 'bearer',
    json: true,
    keys: ['url', 'events', 'conversationId', 'description'],
    body: (w) => webhookBody(w, false),
  },
  'GET /api/webhooks/:id': { auth: 'bearer' },
  'PATCH /api/webhooks/:id': {
    auth: 'bearer',
    json: true,
    keys: ['url', 'events', 'conversationId', 'description', 'enabled'],
    body: (w) => webhookBody(w, true),
  },
  'DELETE /api/webhooks/:id': { auth: 'bearer' },
  'POST /api/webhooks/:id/rotate': { auth: 'bearer' },
  'POST /api/webhooks/:id/test': { auth: 'bearer' },
  'GET /api/webhooks/:id/deliveries': { auth: 'bearer', query: 'limit=:q' },
  // key transparency (public: heads and proofs name nobody)
  'GET /api/kt/key': { auth: 'none' },
  'GET /api/kt/head': { auth: 'none' },
  'GET /api/kt/heads': { auth: 'none', query: 'after=:q&limit=:q' },
  'GET /api/kt/consistency': { auth: 'none', query: 'from=:q&to=:q' },
};

/** A fresh reservation by `a` in `conv` (never uploaded unless the caller does; `parts`: a parts upload); its id. */
async function reserveUpload(w: World, size: number, parts = false): Promise<string> {
  const r = await fetch(`${w.base}/api/attachments`, {
    method: 'POST',
    headers: { ...authHeader(w, 'a'), 'content-type': 'application/json', ...ipHeader() },
    body: JSON.stringify(parts ? { conversationId: w.conv, size, parts } : { conversationId: w.conv, size }),
  });
  const text = await r.text();
  if (r.status !== 201) throw new Error(`attachments: reservation → ${r.status} ${text.slice(0, 80)}`);
  return (JSON.parse(text) as { attachmentId: string }).attachmentId;
}

/**
 * Attachment uploads that break the size contract — one byte more or less, nothing, a chunked stream longer
 * than reserved, a stream cut short, a JSON content type — each into a fresh reservation, whole and as part 1
 * of a parts upload; and parts uploads broken otherwise (part numbers out of range or not numbers, the whole
 * blob PUT into a parts reservation, completions with a stale etag, no parts, too many parts): every answer
 * must be a 4xx and the blob must never become downloadable.
 */
async function attachmentUploads(w: World): Promise<FamilyResult> {
  const failures: string[] = [];
  const auth = { authorization: `Bearer ${w.a.token}` };
  const size = 70_000;
  const body = (n: number) => new Uint8Array(n).fill(7);
  const truncated = () =>
    new ReadableStream<Uint8Array>({
      start(ctl) {
        ctl.enqueue(body(30_000));
        ctl.error(new Error('connection dropped'));
      },
    });
  // Fresh bodies each time: a stream is read once.
  const makeCases = (): { what: string; init: RequestInit & { duplex?: 'half' } }[] => [
    { what: 'one byte more', init: { body: body(size + 1) } },
    { what: 'one byte less', init: { body: body(size - 1) } },
    { what: 'no body', init: {} },
    {
      what: 'a chunked stream longer than reserved',
      init: { body: new Blob([body(size + 65_536)]).stream(), duplex: 'half' },
    },
    { what: 'a stream cut short', init: { body: truncated(), duplex: 'half' } },
    { what: 'a JSON content type', init: { body: body(size), headers: { 'content-type': 'application/json' } } },
  ];
  const cases = makeCases();
  const partsCases: { what: string; path: (id: string) => string; init: RequestInit }[] = [
    ...makeCases().map((c) => ({ what: `part 1 as ${c.what}`, path: (id: string) => `${id}/parts/1`, init: c.init })),
    ...['0', '2', '-1', '1.5', 'x', '99999', '%00'].map((n) => ({
      what: `part ${n}`,
      path: (id: string) => `${id}/parts/${n}`,
      init: { body: body(size) },
    })),
    { what: 'the whole blob into a parts reservation', path: (id: string) => id, init: { body: body(size) } },
    ...[
      [{ partNumber: 1, etag: 'stale' }],
      [],
      [
        { partNumber: 1, etag: 'a' },
        { partNumber: 2, etag: 'b' },
      ],
      [{ partNumber: 0, etag: 'a' }],
    ].map((parts) => ({
      what: `a completion with ${JSON.stringify(parts)}`,
      path: (id: string) => `${id}/complete`,
      init: { method: 'POST', body: JSON.stringify({ parts }), headers: { 'content-type': 'application/json' } },
    })),
  ];
  const all = [
    ...cases.map((c) => ({ ...c, parts: false, path: (id: string) => id })),
    ...partsCases.map((c) => ({ ...c, parts: true })),
  ];
  for (const c of all) {
    const attachmentId = await reserveUpload(w, size, c.parts).catch((e: Error) => {
      failures.push(`${e.message} (for "${c.what}")`);
      return null;
    });
    if (!attachmentId) continue;
    const put = await fetch(`${w.base}/api/attachments/${c.path(attachmentId)}`, {
      method: 'PUT',
      ...c.init,
      headers: { ...auth, 'content-type': 'application/octet-stream', ...ipHeader(), ...(c.init.headers ?? {}) },
    }).catch(() => null); // a stream the client itself aborts may end the request without an answer
    if (put) await put.arrayBuffer();
    if (put && (put.status < 400 || put.status >= 500))
      failures.push(`attachments: upload of ${c.what} → ${put.status}`);
    const get = await fetch(`${w.base}/api/attachments/${attachmentId}`, {
      headers: { authorization: `Bearer ${w.b.token}`, ...ipHeader() },
    });
    await get.arrayBuffer();
    if (get.status !== 404) failures.push(`attachments: after an upload of ${c.what} the blob answers ${get.status}`);
  }
  return {
    rows: [['attachment uploads breaking the size contract: cases / bad', `${all.length} / ${failures.length}`]],
    failures,
  };
}

/** Variables generated from the field's argument types. */
export const TYPE_DRIVEN = Object.freeze({});
export interface GraphqlGenerator {
  vars?: (w: World) => fc.Arbitrary<Record<string, unknown>>;
}
/** Every GraphQL field of Query / Mutation / Subscription. */
export const GRAPHQL_GENERATORS: Record<string, GraphqlGenerator> = {
  'Query.viewer': TYPE_DRIVEN,
  'Query.user': TYPE_DRIVEN,
  'Query.usernames': TYPE_DRIVEN,
  'Query.conversations': TYPE_DRIVEN,
  'Query.conversation': TYPE_DRIVEN,
  'Query.prekeyCount': TYPE_DRIVEN,
  'Mutation.deviceChallenge': TYPE_DRIVEN,
  'Mutation.registerDevice': TYPE_DRIVEN,
  'Mutation.revokeDevice': TYPE_DRIVEN,
  'Mutation.uploadPrekeys': TYPE_DRIVEN,
  'Mutation.claimPrekeyBundles': TYPE_DRIVEN,
  'Mutation.createConversation': {
    vars: (w) =>
      fc.record({
        kind: fc.oneof(fc.constantFrom('direct', 'group'), boundaryString),
        entries: fc.oneof(
          fc.array(fc.oneof(boundaryString, fc.constant(b64u('x'.repeat(200)))), { maxLength: 70 }),
          idArb(w),
        ),
      }),
  },
  'Mutation.appendMembershipEntry': TYPE_DRIVEN,
  // people (issue 17)
  'Query.profile': TYPE_DRIVEN,
  'Query.viewerProfile': TYPE_DRIVEN,
  'Query.sealedSettings': TYPE_DRIVEN,
  'Mutation.setProfile': { vars: () => fc.record({ profile: sealedArb('profile') }) },
  'Mutation.putSealedSettings': { vars: () => fc.record({ settings: sealedArb('settings') }) },
  'Query.webhooks': TYPE_DRIVEN,
  'Query.webhook': TYPE_DRIVEN,
  'Mutation.createWebhook': {
    vars: (w) =>
      fc.record(
        { url: webhookUrl, events: fc.oneof(webhookEvents, weird), conversationId: idArb(w), description: weird },
        { requiredKeys: ['url'] },
      ),
  },
  'Mutation.updateWebhook': {
    vars: (w) =>
      fc.record(
        { id: idArb(w), url: webhookUrl, events: fc.oneof(webhookEvents, weird), enabled: weird },
        { requiredKeys: ['id'] },
      ),
  },
  'Mutation.rotateWebhookSecret': TYPE_DRIVEN,
  'Mutation.deleteWebhook': TYPE_DRIVEN,
  'Mutation.testWebhook': TYPE_DRIVEN,
};

/**
 * Endpoint URLs the webhook routes must refuse with a 400 code (worker/webhooks/url-policy.ts): every SSRF
 * shape — private, loopback, link-local, reserved and mapped IP literals in several spellings, credentials,
 * other schemes, fragments, local names, over-long — plus boundary strings. None is accepted, so no endpoint
 * is ever created (and nothing is ever fetched) by the fuzzer.
 */
const webhookUrl = fc.oneof(
  fc.constantFrom(
    'https://10.0.0.1/h',
    'https://172.16.5.4/h',
    'https://192.168.0.1/h',
    'https://127.0.0.1/h',
    'https://2130706433/h',
    'https://0x7f.0.0.1/h',
    'https://0177.0.0.1/h',
    'https://169.254.169.254/latest/meta-data/',
    'https://100.64.0.1/h',
    'https://0.0.0.0/h',
    'https://[::1]/h',
    'https://[::ffff:10.0.0.1]/h',
    'https://[fe80::1]/h',
    'https://[fd12::1]/h',
    'https://[64:ff9b::7f00:1]/h',
    // IPv6 outside the global unicast 2000::/3: IPv4-compatible forms of loopback / private, and unassigned space.
    'https://[::127.0.0.1]/h',
    'https://[::10.0.0.1]/h',
    'https://[4000::1]/h',
    'https://localhost/h',
    'https://x.localhost/h',
    'https://intranet/h',
    'https://user:pw@hooks.example.com/h',
    'http://hooks.example.com/h',
    'http://10.0.0.1/h',
    'ftp://hooks.example.com/h',
    'file:///etc/passwd',
    'javascript:alert(1)',
    'https://hooks.example.com/h#frag',
    `https://hooks.example.com/${'a'.repeat(2100)}`,
    '//hooks.example.com/h',
    'https://',
  ),
  boundaryString,
);
const webhookEvents = fc.array(
  fc.oneof(fc.constantFrom('message.created', 'device.added', 'message.deleted', 'MESSAGE.CREATED'), boundaryString),
  { maxLength: 9 },
);
/** A create (or, with `patch`, an update) body: a hostile URL and hostile optional fields, as JSON text. */
function webhookBody(w: World, patch: boolean): fc.Arbitrary<string> {
  return fc
    .record(
      {
        url: webhookUrl,
        events: fc.oneof(webhookEvents, weird),
        conversationId: fc.oneof(idArb(w), fc.constant(null)),
        description: weird,
        ...(patch ? { enabled: weird } : {}),
        extra: weird,
      },
      { requiredKeys: patch ? [] : ['url'] },
    )
    .map((b) => JSON.stringify(b));
}

/**
 * Ciphertext-ish values: a valid-looking one, boundary strings, one far over the ciphertext limit, and
 * base64url-alphabet strings that do not decode (4n + 1 characters, bits set past the last byte, padding,
 * whitespace — the runtime's own decoder would take the last two).
 */
const cipher = fc.oneof(
  fc.constant(payload()),
  boundaryString,
  fc.constant('A'.repeat(90_000)),
  fc.constantFrom('AAAAA', 'AB', 'AAB', 'AA==', 'AA AA'),
);
function pairwise(w: World) {
  const item = fc.record(
    {
      u: fc.oneof(fc.constantFrom(w.a.userId, w.b.userId, w.c.userId), boundaryString),
      d: fc.oneof(fc.constantFrom(w.a.deviceId, w.b.deviceId), boundaryString),
      c: cipher,
      x: weird,
    },
    { requiredKeys: ['u', 'd', 'c'] },
  );
  return fc.oneof(
    fc.array(item, { maxLength: 3 }),
    weird,
    fc.constant(Array.from({ length: 300 }, () => ({ u: 'u', d: 'd', c: 'AA' }))),
  );
}
const seqArb = fc.oneof(fc.constantFrom(0, 1, 2 ** 40, Number.MAX_SAFE_INTEGER), weird);
const msgId = fc.oneof(fc.constantFrom('m1', 'dup', 'x'.repeat(64)), boundaryString);

/** Every client frame type (schema/wire.ts CLIENT_FRAME_TYPES): the fields of that type, hostile. */
export const FRAME_GENERATORS: Record<string, (w: World) => fc.Arbitrary<Record<string, unknown>>> = {
  send: (w) => fc.record({ id: msgId, to: pairwise(w), group: cipher, extra: weird }, { requiredKeys: ['id'] }),
  receipt: (w) =>
    fc.record(
      {
        id: msgId,
        status: fc.oneof(fc.constantFrom('delivered', 'read'), boundaryString),
        to: pairwise(w),
        group: cipher,
      },
      { requiredKeys: ['id'] },
    ),
  ack: () => fc.record({ upTo: seqArb, extra: weird }, { requiredKeys: [] }),
  resume: () => fc.record({ after: seqArb, extra: weird }, { requiredKeys: [] }),
  // Issue 17: an ephemeral typing signal (relayed, never stored): both bodies, either, neither, and floods
  // of them are all in the mix; a stray `id` must not make it look like a send.
  typing: (w) => fc.record({ to: pairwise(w), group: cipher, id: msgId, extra: weird }, { requiredKeys: [] }),
};

// ---- generic generators for surfaces nobody registered (still fuzzed; the unit test complains) --------

const GENERIC_ROUTE: RouteGenerator = { auth: 'bearer', keys: ['id', 'value', 'data'], query: 'q=:q' };
const genericFrame = () => fc.dictionary(fc.string({ maxLength: 8 }), weird, { maxKeys: 5 });

export interface Coverage {
  unregistered: string[];
  stale: string[];
}
/** Which discovered surfaces lack generators, and which registrations name nothing the app has. */
export function coverage(s: AppSurface): Coverage {
  const routes = new Set(s.routes.map((r) => r.key));
  const fields = new Set(s.graphql.map((g) => g.key));
  const frames = new Set(s.frameTypes);
  return {
    unregistered: [
      ...s.routes.filter((r) => !ROUTE_GENERATORS[r.key]).map((r) => `route ${r.key}`),
      ...s.graphql.filter((g) => !GRAPHQL_GENERATORS[g.key]).map((g) => `GraphQL ${g.key}`),
      ...s.frameTypes.filter((t) => !FRAME_GENERATORS[t]).map((t) => `frame ${t}`),
    ],
    stale: [
      ...Object.keys(ROUTE_GENERATORS)
        .filter((k) => !routes.has(k))
        .map((k) => `route ${k}`),
      ...Object.keys(GRAPHQL_GENERATORS)
        .filter((k) => !fields.has(k))
        .map((k) => `GraphQL ${k}`),
      ...Object.keys(FRAME_GENERATORS)
        .filter((k) => !frames.has(k))
        .map((k) => `frame ${k}`),
    ],
  };
}

// ---- family 1: fuzz --------------------------------------------------------------------------------------

interface HttpCase {
  route: string;
  method: string;
  path: string;
  auth: Auth;
  body?: string;
  contentType: string;
}

const routeGen = (r: RouteSurface) => ROUTE_GENERATORS[r.key] ?? GENERIC_ROUTE;

/** `/api/x/:id/y` with each `:param` replaced by a hostile or real value. */
function pathArb(r: RouteSurface, w: World): fc.Arbitrary<string> {
  const params = r.path.match(/:[A-Za-z]+/g) ?? [];
  const g = routeGen(r);
  const q = fc.oneof(fc.constantFrom('-1', '0', '99999999999999999999', 'NaN'), idArb(w));
  return fc
    .tuple(
      fc.array(idArb(w), { minLength: params.length, maxLength: params.length }),
      fc.array(q, { minLength: 4, maxLength: 4 }),
    )
    .map(([ids, qs]) => {
      let p = r.path;
      for (const [i, name] of params.entries()) p = p.replace(name, ids[i]!);
      if (g.query) {
        let k = 0;
        p += `?${g.query.replaceAll(':q', () => encodeURIComponent(qs[k++ % qs.length]!))}`;
      }
      return p;
    });
}

function methodOf(r: RouteSurface): string {
  return r.method === 'ALL' ? 'PATCH' : r.method;
}

function httpCaseArb(routes: RouteSurface[], w: World): fc.Arbitrary<HttpCase> {
  return fc.constantFrom(...routes).chain((r) => {
    const g = routeGen(r);
    const auths: Auth[] = g.destructive
      ? ['none', 'garbage', 'z', 'z', 'zlowercase']
      : ['none', 'a', 'a', 'a', 'b', 'garbage', 'algnone', 'lowercase'];
    const takesBody = !!(g.keys?.length || g.body || methodOf(r) !== 'GET');
    return fc.record({
      route: fc.constant(r.key),
      method: fc.oneof(
        { weight: 9, arbitrary: fc.constant(methodOf(r)) },
        fc.constantFrom('GET', 'POST', 'PATCH', 'PUT', 'DELETE'),
      ),
      path: pathArb(r, w),
      auth: fc.constantFrom(...auths),
      body: takesBody ? (g.body ? g.body(w) : bodyArb(g.keys ?? [], w)) : fc.constant(undefined),
      contentType: fc.constantFrom(
        'application/json',
        'application/json',
        'application/json; charset=utf-8',
        'text/plain',
        'application/x-www-form-urlencoded',
        'application/octet-stream',
      ),
    });
  });
}

function authHeader(w: World, auth: Auth): Record<string, string> {
  switch (auth) {
    case 'a':
      return { authorization: `Bearer ${w.a.token}` };
    case 'b':
      return { authorization: `Bearer ${w.b.token}` };
    case 'z':
      return { authorization: `Bearer ${w.z.token}` };
    case 'lowercase':
      return { authorization: `bearer ${w.a.token}` };
    case 'zlowercase':
      return { authorization: `bearer ${w.z.token}` };
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

/** Per-surface figures: cases, 4xx, 5xx, slowest answer. */
class Tally {
  private readonly m = new Map<string, { n: number; c4: number; c5: number; maxMs: number }>();
  add(key: string, status: number | null, ms: number) {
    const t = this.m.get(key) ?? { n: 0, c4: 0, c5: 0, maxMs: 0 };
    t.n++;
    if (status !== null && status >= 400 && status < 500) t.c4++;
    if (status === null || status >= 500) t.c5++;
    t.maxMs = Math.max(t.maxMs, ms);
    this.m.set(key, t);
  }
  table(): string {
    const lines = [
      '| surface | cases | 4xx | 5xx or no answer | slowest (ms) |',
      '| --- | ---: | ---: | ---: | ---: |',
    ];
    for (const [k, t] of [...this.m].sort(([x], [y]) => x.localeCompare(y)))
      lines.push(`| ${k} | ${t.n} | ${t.c4} | ${t.c5} | ${t.maxMs.toFixed(0)} |`);
    return lines.join('\n');
  }
}

/** A 4xx/5xx must be a JSON error with a stable code (REST `error.code`, GraphQL `errors[].extensions.code`). */
function jsonErrorProblem(status: number, text: string): string | null {
  if (status < 400) return null;
  if (/^\s*</.test(text) || /<html|<!DOCTYPE/i.test(text)) return 'an HTML error page';
  try {
    const j = JSON.parse(text) as { error?: { code?: unknown }; errors?: { extensions?: { code?: unknown } }[] };
    if (typeof j.error?.code === 'string' || typeof j.errors?.[0]?.extensions?.code === 'string') return null;
  } catch {
    /* fall through */
  }
  return `a non-JSON or code-less error body (${text.slice(0, 60)})`;
}

/** The REST error body's `error.code` is `code`, or what it is instead. */
function codeProblem(text: string, code: string): string | null {
  try {
    const got = (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;
    return got === code ? null : `code ${String(got)} (expected ${code})`;
  } catch {
    return `a non-JSON body (${text.slice(0, 60)})`;
  }
}

async function runHttp(w: World, c: HttpCase, tally: Tally): Promise<string | null> {
  const t0 = performance.now();
  const res = await fetch(`${w.base}${c.path.startsWith('/') ? c.path : `/${c.path}`}`, {
    method: c.method,
    headers: { ...authHeader(w, c.auth), 'content-type': c.contentType, ...ipHeader() },
    body: c.method === 'GET' || c.method === 'HEAD' ? undefined : c.body,
  });
  const text = await res.text();
  tally.add(c.route, res.status, performance.now() - t0);
  if (res.status >= 500) return `${c.method} ${c.path.slice(0, 80)} → ${res.status}`;
  const p = jsonErrorProblem(res.status, text);
  return p ? `${c.method} ${c.path.slice(0, 80)} → ${res.status} with ${p}` : null;
}

/** Values of a GraphQL argument's type, hostile. */
function argArb(a: GraphQLArgument, w: World): fc.Arbitrary<unknown> {
  const k = argKind(a);
  const base: fc.Arbitrary<unknown> =
    k.base === 'Int' || k.base === 'Float'
      ? fc.oneof(weirdNumber, fc.integer(), fc.constantFrom(500, 501, 10_000), weird)
      : k.base === 'Boolean'
        ? fc.oneof(fc.boolean(), weird)
        : k.base === 'enum'
          ? fc.oneof(fc.constantFrom(...(k.enumValues ?? ['x'])), boundaryString)
          : fc.oneof(idArb(w), boundaryString, weird);
  return k.list
    ? fc.oneof(fc.array(base, { maxLength: 5 }), fc.array(base, { minLength: 150, maxLength: 200 }), weird)
    : base;
}

function varsArb(s: GraphqlSurface, w: World): fc.Arbitrary<Record<string, unknown>> {
  const custom = GRAPHQL_GENERATORS[s.key]?.vars;
  if (custom) return custom(w);
  return fc.record(Object.fromEntries(s.field.args.map((a) => [a.name, argArb(a, w)])), { requiredKeys: [] });
}

interface GqlCase {
  surface: string;
  query: string;
  variables: unknown;
  auth: Auth;
  get: boolean;
}

function gqlCaseArb(fields: GraphqlSurface[], w: World): fc.Arbitrary<GqlCase> {
  const perField = fc.constantFrom(...fields).chain((s) =>
    fc.record({
      surface: fc.constant(s.key),
      query: fc.constantFrom(operationFor(s, 2), operationFor(s, 0)),
      variables: fc.oneof(
        { weight: 4, arbitrary: varsArb(s, w) },
        fc.json({ maxDepth: 2 }).map((x) => JSON.parse(x) as unknown),
      ),
    }),
  );
  const shapes = fc.oneof(
    fc.string({ maxLength: 120 }),
    fc
      .integer({ min: 1, max: 60 })
      .map((n) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: viewer { id }`).join(' ')} }`),
    fc
      .integer({ min: 5, max: 40 })
      .map((n) => `{ conversations { members { userId } ${'__typename '.repeat(n * 30)} } }`),
    fc
      .integer({ min: 6, max: 30 })
      .map((n) => `{ ${'__schema { types { fields { type { '.repeat(n)}name${' } } } }'.repeat(n)} }`),
    fc.constant(`{ viewer { id ${'x'.repeat(9000)} } }`),
    fc.constant('subscription { viewer { id } }'),
    fc.constant('{ __schema { types { name fields { name } } } }'),
  );
  return fc
    .oneof(
      { weight: 6, arbitrary: perField },
      {
        weight: 2,
        arbitrary: fc.record({ surface: fc.constant('(shapes)'), query: shapes, variables: fc.constant({}) }),
      },
    )
    .chain((q) =>
      fc.record({
        surface: fc.constant(q.surface),
        query: fc.constant(q.query),
        variables: fc.constant(q.variables),
        auth: fc.constantFrom<Auth>('none', 'a', 'a', 'b', 'garbage', 'lowercase'),
        get: fc.boolean(),
      }),
    );
}

/** The longest GraphQL GET URL the fuzz sends (under Node's 16 KiB request head with the headers; longer ones go as POST). */
const MAX_GET_URL = 12 * 1024;

async function runGql(w: World, c: GqlCase, tally: Tally): Promise<string | null> {
  const headers = { ...authHeader(w, c.auth), 'content-type': 'application/json', ...ipHeader() };
  const t0 = performance.now();
  const url = `${w.base}/graphql?query=${encodeURIComponent(c.query)}&variables=${encodeURIComponent(JSON.stringify(c.variables) ?? '')}`;
  // A GET whose URL is past what HTTP servers take (Node's 16 KiB request head: an empty 431 from the dev
  // server; Cloudflare's edge answers 414 itself) never reaches the Worker: such a case goes as a POST.
  const res =
    c.get && url.length <= MAX_GET_URL
      ? await fetch(url, { headers })
      : await fetch(`${w.base}/graphql`, {
          method: 'POST',
          headers,
          body: JSON.stringify({ query: c.query, variables: c.variables }),
        });
  const text = await res.text();
  tally.add(`GraphQL ${c.surface}`, res.status, performance.now() - t0);
  if (res.status >= 500) return `graphql ${c.query.slice(0, 60)} → ${res.status}`;
  if (text.includes('INTERNAL_SERVER_ERROR'))
    return `graphql ${c.query.slice(0, 60)} ${JSON.stringify(c.variables).slice(0, 200)} → INTERNAL_SERVER_ERROR`;
  const p = jsonErrorProblem(res.status, text);
  return p ? `graphql ${c.query.slice(0, 60)} → ${res.status} with ${p}` : null;
}

function frameArb(types: readonly string[], w: World) {
  const typed = fc
    .constantFrom(...types)
    .chain((type) =>
      fc
        .tuple(
          (FRAME_GENERATORS[type] ?? genericFrame)(w),
          fc.oneof({ weight: 5, arbitrary: fc.constant<unknown>(WIRE_VERSION) }, weird),
        )
        .map(([fields, v]) => ({ v, type, ...fields })),
    );
  return fc.oneof(
    { weight: 8, arbitrary: typed.map((o) => JSON.stringify(o)) },
    {
      weight: 1,
      arbitrary: fc.record({ v: fc.constant(WIRE_VERSION), type: boundaryString }).map((o) => JSON.stringify(o)),
    },
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

// ---- families 2–5: bodies, content types, upgrades --------------------------------------------------------

/** A concrete path for a route: its params filled with `w`'s real ids (so auth and lookups get past 404). */
function concretePath(r: RouteSurface, w: World): string {
  return r.path
    .replace(':id', w.conv)
    .replace(':deviceId', w.a.deviceId)
    .replace(':userId', w.b.userId)
    .replace(':username', 'nobody_here')
    .replace(/:[A-Za-z]+/g, 'x');
}

interface FamilyResult {
  rows: [string, string][];
  failures: string[];
}

async function oversizeFamily(w: World, routes: RouteSurface[], bytes: number, tally: Tally): Promise<FamilyResult> {
  const failures: string[] = [];
  let cases = 0;
  let slowest = 0;
  for (const r of routes) {
    const method = methodOf(r);
    if (method === 'GET') continue;
    const g = routeGen(r);
    const want: { status: number; code?: string } = g.oversize ?? { status: 413 };
    for (const contentLength of [true, false]) {
      cases++;
      const path = g.oversize ? await g.oversize.target(w) : concretePath(r, w);
      const res = await streamBody(`${w.base}${path}`, {
        method,
        bytes,
        contentLength,
        prefix: '{"pad":"',
        headers: {
          ...(g.auth === 'bearer' ? authHeader(w, 'a') : {}),
          ...ipHeader(),
          ...(g.oversize?.headers ?? {}),
        },
      });
      tally.add(`oversize ${r.key}`, res.status, res.ms);
      slowest = Math.max(slowest, res.ms);
      const how = `${method} ${r.path} with ${(bytes / 2 ** 20).toFixed(0)} MiB ${contentLength ? 'and Content-Length' : 'chunked'}`;
      if (res.status === null) failures.push(`${how}: no response (${res.error})`);
      else if (res.status !== want.status)
        failures.push(
          `${how}: ${res.status} ${res.body.slice(0, 80)} (expected ${want.status}${want.code ? ` ${want.code}` : ''})`,
        );
      else {
        const p = jsonErrorProblem(res.status, res.body) ?? (want.code ? codeProblem(res.body, want.code) : null);
        if (p) failures.push(`${how}: ${res.status} with ${p}`);
      }
    }
  }
  return {
    rows: [
      [
        `oversize bodies (${(bytes / 2 ** 20).toFixed(0)} MiB, streamed ± Content-Length): cases / not 413 JSON (or the answer a route registered)`,
        `${cases} / ${failures.length}`,
      ],
      ['oversize bodies: slowest answer (ms)', slowest.toFixed(0)],
    ],
    failures,
  };
}

async function truncatedFamily(w: World, routes: RouteSurface[], tally: Tally): Promise<FamilyResult> {
  const failures: string[] = [];
  let cut = 0;
  let dropped = 0;
  const jsonRoutes = routes.filter((r) => routeGen(r).json);
  for (const r of jsonRoutes) {
    const g = routeGen(r);
    const headers = {
      'content-type': 'application/json',
      ...(g.auth === 'bearer' ? authHeader(w, 'a') : {}),
      ...ipHeader(),
    };
    // JSON cut short, with a correct Content-Length: a 4xx JSON error.
    const whole = JSON.stringify(Object.fromEntries((g.keys ?? ['x']).map((k) => [k, 'AAAA'])));
    const t0 = performance.now();
    const res = await fetch(`${w.base}${concretePath(r, w)}`, {
      method: methodOf(r),
      headers,
      body: whole.slice(0, Math.floor(whole.length / 2)),
    });
    const text = await res.text();
    tally.add(`truncated ${r.key}`, res.status, performance.now() - t0);
    cut++;
    if (res.status >= 500 || res.status < 400) failures.push(`${r.key} with truncated JSON → ${res.status}`);
    const p = jsonErrorProblem(res.status, text);
    if (p) failures.push(`${r.key} with truncated JSON → ${res.status} with ${p}`);
    // A body that stops before its Content-Length, connection closed: no answer is possible; the server must
    // simply carry on.
    await truncatedBody(`${w.base}${concretePath(r, w)}`, {
      method: methodOf(r),
      headers,
      body: whole,
      declared: 4096,
    });
    dropped++;
  }
  const health = await fetch(`${w.base}/api/health`);
  await health.arrayBuffer();
  if (!health.ok) failures.push(`health after ${dropped} cut-off uploads: ${health.status}`);
  return {
    rows: [
      [
        'truncated bodies: JSON cut short / uploads cut off mid-body; health afterwards',
        `${cut} / ${dropped}; ${health.status}`,
      ],
    ],
    failures,
  };
}

async function contentTypeFamily(w: World, routes: RouteSurface[], tally: Tally): Promise<FamilyResult> {
  const failures: string[] = [];
  let cases = 0;
  for (const r of routes.filter((x) => routeGen(x).json)) {
    const g = routeGen(r);
    for (const type of [
      undefined,
      'text/plain',
      'multipart/form-data; boundary=x',
      'application/jsonx',
      'application/x-www-form-urlencoded',
    ]) {
      cases++;
      const t0 = performance.now();
      const res = await fetch(`${w.base}${concretePath(r, w)}`, {
        method: methodOf(r),
        headers: {
          ...(type ? { 'content-type': type } : {}),
          ...(g.auth === 'bearer' ? authHeader(w, 'a') : {}),
          ...ipHeader(),
        },
        body: '{}',
      });
      const text = await res.text();
      tally.add(`content-type ${r.key}`, res.status, performance.now() - t0);
      // fetch labels a string body text/plain when no type is given.
      if (res.status !== 415)
        failures.push(`${r.key} with Content-Type ${type ?? '(none)'} → ${res.status} (expected 415)`);
      const p = jsonErrorProblem(res.status, text);
      if (p) failures.push(`${r.key} with Content-Type ${type ?? '(none)'} → ${res.status} with ${p}`);
    }
  }
  return {
    rows: [['wrong content types on JSON routes: cases / not 415 JSON', `${cases} / ${failures.length}`]],
    failures,
  };
}

async function ticketFor(w: World, user: BenchUser, conv: string): Promise<string> {
  const t = await json(
    await fetch(`${w.base}/api/conversations/${conv}/ticket`, {
      method: 'POST',
      headers: { authorization: `Bearer ${user.token}`, ...ipHeader() },
    }),
    'ticket',
  );
  return t.ticket as string;
}

async function upgradeFamily(w: World, routes: RouteSurface[], tally: Tally): Promise<FamilyResult> {
  const failures: string[] = [];
  const wsBase = w.base.replace(/^http/, 'ws');
  let cases = 0;
  const expect = async (what: string, path: string, want: number[], code?: string) => {
    cases++;
    const t0 = performance.now();
    const r = await tryUpgrade(`${wsBase}${path}`, ipHeader());
    tally.add(`upgrade ${what.split(':')[0]}`, r.status, performance.now() - t0);
    if (r.status === null) return failures.push(`${what}: connection dropped (${r.error}) instead of the refusal`);
    if (!want.includes(r.status)) return failures.push(`${what}: ${r.status} (expected ${want.join('/')})`);
    const p = jsonErrorProblem(r.status, r.body);
    if (p) return failures.push(`${what}: ${r.status} with ${p}`);
    if (code && !r.body.includes(`"${code}"`)) failures.push(`${what}: ${r.body.slice(0, 80)} (expected ${code})`);
  };
  // An upgrade to every route that is not a WebSocket route: refused with the route's own 4xx JSON.
  for (const r of routes) {
    if (routeGen(r).upgrade) continue;
    await expect(
      `${r.key}: upgrade to a plain route`,
      concretePath(r, w),
      [200, 400, 401, 403, 404, 405, 413, 415, 426],
    );
  }
  // The conversation socket: missing, garbage, used, foreign and stolen tickets.
  const conv = (t: string) => `/api/conversations/${w.conv}/ws${t}`;
  await expect('ws: no ticket', conv(''), [401], 'ticket_required');
  await expect('ws: garbage ticket', conv('?ticket=garbage'), [401], 'invalid_ticket');
  const used = await ticketFor(w, w.a, w.conv);
  const first = await tryUpgrade(`${wsBase}${conv(`?ticket=${used}`)}`);
  if (first.status !== 101) failures.push(`ws: a fresh ticket was refused (${first.status})`);
  await expect('ws: used ticket', conv(`?ticket=${used}`), [401], 'invalid_ticket');
  const foreign = await ticketFor(w, w.c, w.other);
  await expect('ws: ticket for another conversation', conv(`?ticket=${foreign}`), [401], 'invalid_ticket');
  await expect('ws: bad conversation id', `/api/conversations/${encodeURIComponent('../x')}/ws?ticket=x`, [400, 404]);
  // The probe socket: a bad room.
  await expect('probe: bad room', '/api/probe/ws?room=x', [400], 'bad_room');
  return { rows: [['refused upgrades: cases / dropped or not 4xx JSON', `${cases} / ${failures.length}`]], failures };
}

// ---- families 6–7: list-amplifying GraphQL, group floods -----------------------------------------------------

/** The probe's query (issue 12 item 1): 15 aliases of conversations with their members and logs. */
export const AMPLIFYING_QUERY = `{ ${Array.from(
  { length: 15 },
  (_, i) => `a${i}: conversations { id headHash members { userId } membershipLog { seq } }`,
).join(' ')} }`;
/** The largest shape the cost allows over the same data: two aliases of 100 conversations × 5 × 5. */
export const LARGEST_ALLOWED_QUERY = `{ ${[0, 1]
  .map(
    (i) =>
      `a${i}: conversations(first: 100) { id headHash members(first: 5) { userId } membershipLog(limit: 5) { seq } }`,
  )
  .join(' ')} }`;

async function timedGql(w: World, query: string): Promise<{ status: number; ms: number; code?: string }> {
  const t0 = performance.now();
  const res = await fetch(`${w.base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeader(w, 'a'), ...ipHeader() },
    body: JSON.stringify({ query }),
  });
  const body = (await res.json()) as { errors?: { extensions?: { code?: string } }[] };
  return { status: res.status, ms: performance.now() - t0, code: body.errors?.[0]?.extensions?.code };
}

async function healthMs(base: string): Promise<number> {
  const t0 = performance.now();
  const r = await fetch(`${base}/api/health`);
  await r.arrayBuffer();
  return performance.now() - t0;
}

/**
 * `groups` groups of `a` (with `b`), then the probe's query alone and three at once with a health check in
 * between, and the largest allowed shape three at once. Pass: the probe's query is refused (400
 * QUERY_TOO_COMPLEX), the allowed shape answers (no 503 QUERY_TIMEOUT, no 5xx); the times are figures.
 */
async function amplificationFamily(w: World, groups: number, tally: Tally): Promise<FamilyResult> {
  const failures: string[] = [];
  const t0 = performance.now();
  // Made by several accounts (each stays under the per-account creation limit, left at its default), all
  // with `a` as a member.
  const perCreator = 25;
  const creators = await Promise.all(
    Array.from({ length: Math.ceil(groups / perCreator) }, (_, i) => register(w.base, `fuzzmk${i}`)),
  );
  await pool(
    Array.from({ length: groups }, (_, i) => i),
    4,
    (i) => createConversation(w.base, [creators[Math.floor(i / perCreator)]!, w.a]),
  );
  const setupS = (performance.now() - t0) / 1000;
  const alone = await timedGql(w, AMPLIFYING_QUERY);
  tally.add('GraphQL (list-amplifying)', alone.status, alone.ms);
  if (alone.status !== 400 || alone.code !== 'QUERY_TOO_COMPLEX')
    failures.push(
      `the list-amplifying query over ${groups} groups → ${alone.status} ${alone.code} (expected 400 QUERY_TOO_COMPLEX)`,
    );
  const three = Promise.all([0, 1, 2].map(() => timedGql(w, AMPLIFYING_QUERY)));
  const health = await healthMs(w.base);
  const threeR = await three;
  const largest = Promise.all([0, 1, 2].map(() => timedGql(w, LARGEST_ALLOWED_QUERY)));
  const healthDuring = await healthMs(w.base);
  const largestR = await largest;
  for (const r of [...threeR, ...largestR]) tally.add('GraphQL (list-amplifying)', r.status, r.ms);
  for (const r of largestR)
    if (r.status !== 200)
      failures.push(`the largest allowed shape over ${groups} groups → ${r.status} ${r.code ?? ''}`);
  const ms = (xs: number[]) => `${Math.max(...xs).toFixed(0)}`;
  return {
    rows: [
      [`list-amplifying GraphQL: ${groups} groups made (s)`, setupS.toFixed(0)],
      [
        'list-amplifying GraphQL: probe query (15 aliases) alone / slowest of 3 at once (ms); /api/health meanwhile (ms)',
        `${alone.ms.toFixed(0)} (${alone.status}) / ${ms(threeR.map((r) => r.ms))}; ${health.toFixed(0)}`,
      ],
      [
        'list-amplifying GraphQL: largest allowed shape (2 × 100 × (5 + 5)), slowest of 3 at once (ms); /api/health meanwhile (ms)',
        `${ms(largestR.map((r) => r.ms))} (${largestR.map((r) => r.status).join('/')}); ${healthDuring.toFixed(0)}`,
      ],
    ],
    failures,
  };
}

/**
 * A stranger (`c`) puts `b` into group after group: refused with 429 + Retry-After before 40 (the
 * per-account creation limit), and `b`'s real conversation still connects afterwards.
 */
async function floodFamily(w: World): Promise<FamilyResult> {
  const failures: string[] = [];
  let created = 0;
  let refused: { status: number; retryAfter: string | null; body: string } | null = null;
  for (let i = 0; i < 40 && !refused; i++) {
    try {
      await createConversation(w.base, [w.c, w.b]);
      created++;
    } catch (err) {
      const m = /create conversation: (\d+) (.*)$/s.exec((err as Error).message);
      refused = { status: Number(m?.[1]), retryAfter: null, body: m?.[2] ?? '' };
    }
  }
  if (!refused) failures.push(`group flood: ${created} groups with a stranger's victim and no refusal`);
  else if (refused.status !== 429 || !refused.body.includes('retryAfterSec'))
    failures.push(
      `group flood refused with ${refused.status} ${refused.body.slice(0, 80)} (expected 429 with retryAfterSec)`,
    );
  const sock = await connectApp(w.base, w.conv, w.b).catch((e: Error) => e);
  if (sock instanceof Error)
    failures.push(`after the flood the victim's conversation does not connect: ${sock.message}`);
  else sock.close(1000);
  return {
    rows: [
      [
        'group flood by a stranger: groups accepted before 429 / victim still connects',
        `${created} / ${sock instanceof Error ? 'no' : 'yes'}`,
      ],
    ],
    failures,
  };
}

/** A provisioning channel for the link routes' generators (its secret is remembered for the secrets suite). */
async function openChannel(base: string): Promise<{ id: string; secret: string }> {
  const id = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64url');
  const res = await fetch(`${base}/api/link/channels`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...ipHeader() },
    body: JSON.stringify({ channelId: id }),
  });
  if (res.status !== 201) throw new Error(`badinput: opening a link channel: ${res.status}`);
  const { secret } = (await res.json()) as { secret: string };
  remember('token', secret);
  return { id, secret };
}

// ---- the suite -------------------------------------------------------------------------------------------

export async function badInputSuite(
  base: string,
  stateDir: string,
  cfg: BadInputConfig,
  log = (_: string) => {},
): Promise<SuiteResult> {
  const t0 = performance.now();
  const failures: string[] = [];
  const seed = cfg.seed ?? Date.now() % 2 ** 31;
  const surface = await discoverSurface();
  const cov = coverage(surface);
  for (const u of cov.unregistered) log(`badinput: ${u} has no registered generators (generic fuzzing only)`);
  const tally = new Tally();

  const [a, b, c, z] = await Promise.all(['fuzza', 'fuzzb', 'fuzzc', 'fuzzz'].map((n) => register(base, n)));
  for (const u of [a, b, c, z]) remember('token', u!.token);
  const w: World = {
    base,
    a: a!,
    b: b!,
    c: c!,
    z: z!,
    conv: await createConversation(base, [a!, b!]),
    other: await createConversation(base, [c!]),
    channel: await openChannel(base),
  };
  // A valid send to replay later.
  let sock = await open(w);
  const valid = JSON.stringify({ v: WIRE_VERSION, type: 'send', id: 'dup', group: payload() });
  sock.ws.send(valid);
  if (!(await next(sock, (f) => f.type === 'accepted'))) failures.push('set-up: a valid send was not accepted');
  await new Promise((r) => setTimeout(r, 3000)); // let the DO flush to D1 before the snapshot
  const before = snapshotD1(stateDir);

  // 1. fuzz: HTTP
  const httpCases = fc.sample(httpCaseArb(surface.routes, w), { numRuns: cfg.http, seed });
  const httpBad = (
    await pool(httpCases, 4, (x) => runHttp(w, x, tally).catch((e: Error) => `${x.path}: ${e.message}`))
  ).filter((x): x is string => x !== null);
  log(`badinput: ${httpCases.length} HTTP cases over ${surface.routes.length} routes, ${httpBad.length} bad`);
  // 1. fuzz: GraphQL
  const gqlCases = fc.sample(gqlCaseArb(surface.graphql, w), { numRuns: cfg.graphql, seed });
  const gqlBad = (
    await pool(gqlCases, 4, (x) => runGql(w, x, tally).catch((e: Error) => `graphql: ${e.message}`))
  ).filter((x): x is string => x !== null);
  log(`badinput: ${gqlCases.length} GraphQL cases over ${surface.graphql.length} fields, ${gqlBad.length} bad`);
  // 1. fuzz: WebSocket frames, one at a time on one socket; after each, a resume must still be answered.
  const frames = fc.sample(frameArb(surface.frameTypes, w), { numRuns: cfg.ws, seed });
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
      if ((x as { type?: string }).type === 'accepted_batch')
        accepted += (x as { accepted: unknown[] }).accepted.length;
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
  log(
    `badinput: ${frames.length} frames over ${surface.frameTypes.length} types, ${reconnects} reconnects, ${wsBad.length} bad`,
  );

  // 2–5. bodies, content types, upgrades
  const families = [
    await oversizeFamily(w, surface.routes, cfg.oversizeBytes, tally),
    await truncatedFamily(w, surface.routes, tally),
    await contentTypeFamily(w, surface.routes, tally),
    await upgradeFamily(w, surface.routes, tally),
    await attachmentUploads(w),
  ];
  for (const f of families) log(`badinput: ${f.rows.map(([k, v]) => `${k}: ${v}`).join('; ')}`);

  // The fuzzing accounts still work.
  for (const u of [w.a, w.b]) {
    const r = await fetch(`${base}/api/auth/session`, {
      headers: { authorization: `Bearer ${u.token}`, ...ipHeader() },
    });
    if (!r.ok) failures.push(`session of a fuzzing account: ${r.status}`);
  }
  await json(await fetch(`${base}/api/health`), 'health');
  await new Promise((r) => setTimeout(r, 3000));
  const after = snapshotD1(stateDir);
  const throwaway = [w.z.userId];
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
  const ofThrowaway = (d: { added: string[]; removed: string[] }) =>
    [...d.added, ...d.removed].every((row) => throwaway.some((id) => row.includes(id)));
  const rowChanges = changed.filter((d) => !devicesOnlySeen(d) && !ofThrowaway(d));
  for (const d of rowChanges)
    failures.push(
      `D1 table ${d.table} changed: +${d.added.length} −${d.removed.length} (${(d.added[0] ?? d.removed[0] ?? '').slice(0, 160)})`,
    );
  // 6–7 write conversations on purpose: after the D1 comparison.
  for (const f of [await amplificationFamily(w, cfg.groups, tally), await floodFamily(w)]) {
    log(`badinput: ${f.rows.map(([k, v]) => `${k}: ${v}`).join('; ')}`);
    families.push(f);
  }
  failures.push(...httpBad, ...gqlBad, ...wsBad, ...families.flatMap((f) => f.failures));
  const total = httpCases.length + gqlCases.length + frames.length;
  return {
    name: 'bad input',
    rows: [
      [
        'surfaces discovered (routes / GraphQL fields / frame types); without registered generators',
        `${surface.routes.length} / ${surface.graphql.length} / ${surface.frameTypes.length}; ${cov.unregistered.length}`,
      ],
      [
        'fuzz cases (HTTP / GraphQL / WS frames)',
        `${httpCases.length} / ${gqlCases.length} / ${frames.length} = ${total}`,
      ],
      ['fast-check seed', String(seed)],
      ['fuzz: 5xx or non-JSON errors (HTTP + GraphQL)', String(httpBad.length + gqlBad.length)],
      ['WS: undocumented closes / off-schema or internal frames / dead sockets', String(wsBad.length)],
      ['WS: sockets closed (documented codes) and reopened', String(reconnects)],
      ['WS: fuzz frames accepted (valid by chance, incl. replays)', String(accepted)],
      ...families.flatMap((f) => f.rows),
      ['D1 tables with unexpected row changes', String(rowChanges.length)],
      ['wall time (s)', ((performance.now() - t0) / 1000).toFixed(0)],
    ],
    detail: tally.table(),
    failures,
  };
}
