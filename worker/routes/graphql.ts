/**
 * GraphQL-lite at /graphql: real GraphQL over HTTP executed by graphql-js 16, sharing every rule with the
 * REST routes through worker/domain/*.
 *
 * Request handling, in this order (PITFALLS 24, 25) — nothing reaches a resolver before all limits pass:
 *   1. method GET (queries only; a mutation over GET is 405) or POST with `application/json`;
 *   2. document size ≤ LIMITS.graphqlMaxQueryBytes (413 QUERY_TOO_LARGE);
 *   3. parse with the GraphQL Armor token-counting parser, ≤ LIMITS.graphqlMaxTokens (400);
 *   4. GraphQL Armor depth / alias rules from LIMITS (400 QUERY_TOO_COMPLEX), then graphql-js's specified
 *      validation rules (400 GRAPHQL_VALIDATION_FAILED);
 *   5. the cost (worker/graphql/cost.ts): every list field multiplies its selection by its size — its
 *      `first` / `limit` argument, which must be within its ceiling (400 BAD_USER_INPUT), or a fixed bound;
 *      over LIMITS.graphqlMaxCost → 400 QUERY_TOO_COMPLEX;
 *   6. the Bearer access token, verified exactly as REST's requireAuth (401 UNAUTHENTICATED if present
 *      and invalid; absent → only introspection and `user`-less fields work, the rest say UNAUTHENTICATED);
 *   7. execution, with nested lists read in batches (worker/graphql/loaders.ts: one query per level, not per
 *      parent) and a wall-time cap (LIMITS.graphqlMaxWallMs → 503 QUERY_TIMEOUT, Retry-After; no resolver
 *      starts after it). Resolver errors come back with HTTP 200 and `errors[].extensions.code` (+ `reason`,
 *      the REST error code; a RATE_LIMITED one also sets Retry-After); unknown errors are masked as
 *      INTERNAL_SERVER_ERROR.
 *
 * Introspection is allowed (GraphiQL and codegen work); the schema has no private field at all — no
 * password, token, secret or private key exists in it.
 */

import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { MaxTokensParserWLexer } from '@escape.tech/graphql-armor-max-tokens';
import { eq } from 'drizzle-orm';
import {
  buildSchema,
  type DocumentNode,
  defaultFieldResolver,
  type ExecutionResult,
  execute,
  type GraphQLError,
  GraphQLError as GraphQLErrorClass,
  type GraphQLFormattedError,
  getOperationAST,
  specifiedRules,
  validate,
} from 'graphql';
import { type Context, Hono } from 'hono';
import { z } from 'zod';
import type { WebhookEndpointView } from '../../schema/webhooks.js';
import { createWebhookBody, updateWebhookBody } from '../../schema/webhooks.js';
import { toB64u, utf8 } from '../../web/src/protocol/bytes.js';
import { requireAuth } from '../auth/middleware.js';
import { clientKey } from '../context.js';
import { makeDb, schema as tables } from '../db.js';
import type { Caller } from '../domain/common.js';
import {
  appendEntry,
  type ConversationView,
  createConversation,
  getConversation,
  listConversations,
} from '../domain/conversations.js';
import {
  currentDeviceList,
  issueDeviceChallenge,
  listDevices,
  registerDevice,
  revokeDevice,
} from '../domain/devices.js';
import { claimBundles, prekeyCounts, uploadPrekeys } from '../domain/keys.js';
import { lookupUserByName, MAX_NAME_IDS, usernamesForIds } from '../domain/users.js';
import {
  createWebhook,
  deleteWebhook,
  getWebhook,
  listWebhooks,
  rotateWebhookSecret,
  testWebhook,
  updateWebhook,
  webhookDeliveries,
} from '../domain/webhooks.js';
import type { AppBindings } from '../env.js';
import { AppError } from '../errors.js';
import { badArgumentError, queryCost } from '../graphql/cost.js';
import { type Deadline, type Loaders, makeLoaders } from '../graphql/loaders.js';
import { LIMITS } from '../limits.js';
import { log } from '../log.js';
import { idString } from '../validate.js';
import { appendEntryBody, createConversationBody } from './conversations.js';
import { registerDeviceBody, revokeDeviceBody } from './devices.js';
import { parseInput } from './input.js';
import { claimBody, uploadBody } from './keys.js';
import { PEOPLE_SDL, peopleResolvers } from './people.js';

export const SDL = /* GraphQL */ `
"""All byte strings are base64url (RFC 4648 section 5, no padding). Times are ms since the epoch."""
type Query {
  "The signed-in user."
  viewer: Viewer!
  "Directory lookup by (normalised) username; null if there is no such user."
  user(username: String!): User
  "Usernames of up to 100 user ids: the viewer's and those of users sharing a conversation with the viewer (others are left out)."
  usernames(ids: [ID!]!): [UserName!]!
  "Conversations the viewer is a member of, oldest first: at most first (1-100), after the conversation with id after (the last id of the previous page)."
  conversations(first: Int = 20, after: ID): [Conversation!]!
  "A conversation the viewer is a member of (NOT_FOUND otherwise)."
  conversation(id: ID!): Conversation
  "Prekey counts of the viewer's current device."
  prekeyCount: PrekeyCounts!
  "The viewer's webhook endpoints (issue 15; same rules as /api/webhooks)."
  webhooks: [WebhookEndpoint!]!
  "One of the viewer's webhook endpoints (NOT_FOUND otherwise)."
  webhook(id: ID!): WebhookEndpoint
}

type Viewer {
  id: ID!
  username: String!
  deviceId: ID!
  devices: [Device!]!
  deviceList: DeviceList
}

type Device {
  deviceId: ID!
  createdAt: Float!
  lastSeenAt: Float
  revoked: Boolean!
}

"A device list exactly as the user identity key signed it (verify it on the client)."
type DeviceList {
  version: Int!
  bytes: String!
}

type UserName {
  userId: ID!
  username: String!
}

type User {
  id: ID!
  username: String!
  "Ed25519 user identity public key."
  identityKey: String!
  deviceList: DeviceList
}

enum ConversationKind {
  direct
  group
}

enum Role {
  owner
  admin
  member
}

type Member {
  userId: ID!
  role: Role!
  joinedSeq: Int!
}

"One signed membership-log entry (encodeMembershipEntry bytes)."
type LogEntry {
  seq: Int!
  entry: String!
  authorUserId: ID!
  authorDeviceId: ID!
}

type Conversation {
  id: ID!
  kind: ConversationKind!
  "The viewer's role; null in the answer to a mutation that just took the viewer out (its own leave)."
  role: Role
  headSeq: Int!
  headHash: String!
  createdAt: Float!
  "The first members (1-256) in joinedSeq order."
  members(first: Int = 50): [Member!]!
  "Log entries after afterSeq, oldest first, at most limit (1-500)."
  membershipLog(afterSeq: Int = -1, limit: Int = 100): [LogEntry!]!
}

type PrekeyCounts {
  oneTime: Int!
  kem: Int!
  signedPrekey: Boolean!
  lastResortKem: Boolean!
  low: Boolean!
}

"Prekey ids are u32, hence Float."
type DeviceBundle {
  deviceId: ID!
  "encodeBundle bytes: decodeBundle + verifyBundle on the client."
  bundle: String!
  signedPrekeyId: Float!
  oneTimePrekeyId: Float
  kemPrekeyId: Float!
  kemLastResort: Boolean!
  remainingOneTime: Int!
  remainingKem: Int!
  low: Boolean!
}

type ClaimResult {
  userId: ID!
  identityKey: String!
  deviceList: DeviceList!
  devices: [DeviceBundle!]!
  unavailable: [ID!]!
}

type DeviceChallenge {
  challengeId: String!
  challenge: String!
}

"A webhook endpoint. Event types: message.created, conversation.member_added, conversation.member_removed, conversation.role_changed, device.added, device.removed, contact.identity_changed."
type WebhookEndpoint {
  id: ID!
  url: String!
  description: String!
  events: [String!]!
  "Only this conversation's events; null = all."
  conversationId: ID
  enabled: Boolean!
  "Why delivery stopped (retries_exhausted, gone, disabled_by_user), with the last failure."
  disabledReason: String
  disabledAt: Float
  lastSuccessAt: Float
  "Until when the previous secret still signs (after a rotation)."
  previousSecretExpiresAt: Float
  createdAt: Float!
  updatedAt: Float!
  "The newest delivery attempts, newest first (at most 100 are kept)."
  deliveries(limit: Int = 100): [WebhookDelivery!]!
}

type WebhookDelivery {
  id: Float!
  "The webhook-id (the same for every attempt of one event)."
  eventId: String!
  eventType: String!
  attempt: Int!
  "succeeded or failed"
  status: String!
  httpStatus: Int
  "http_status, timeout, network, redirect or url_refused"
  error: String
  latencyMs: Int!
  nextRetryAt: Float
  at: Float!
}

"The only answer that carries the signing secret (whsec_…): create and rotate."
type WebhookSecret {
  endpoint: WebhookEndpoint!
  secret: String!
}

type Mutation {
  "A single-use challenge for a NEW device to sign (signLoginChallenge)."
  deviceChallenge: DeviceChallenge!
  "Adds exactly one device: the signed device list version + 1 and the new device's challenge signature."
  registerDevice(deviceList: String!, challengeId: String!, signature: String!): DeviceList!
  "Removes exactly deviceId: the signed device list version + 1 without it."
  revokeDevice(deviceId: ID!, deviceList: String!): DeviceList!
  "encodePrekeyUpload bytes for the viewer's current device."
  uploadPrekeys(upload: String!): PrekeyCounts!
  "One bundle per live device of userId; takes one one-time prekey of each. Rate-limited."
  claimPrekeyBundles(userId: ID!): ClaimResult!
  "entries: [create, ...] signed by the viewer's devices; direct = [create, add other as member]."
  createConversation(kind: ConversationKind!, entries: [String!]!): Conversation!
  "Appends one signed entry extending the current head."
  appendMembershipEntry(conversationId: ID!, entry: String!): Conversation!
  "A webhook endpoint (https URL; at most 10 per account); the secret is shown only here."
  createWebhook(url: String!, events: [String!], conversationId: ID, description: String): WebhookSecret!
  "Changes an endpoint; conversationId null removes the filter; enabled true re-enables a disabled one."
  updateWebhook(id: ID!, url: String, events: [String!], conversationId: ID, description: String, enabled: Boolean): WebhookEndpoint!
  "A new secret; the previous one keeps signing alongside it for 24 h."
  rotateWebhookSecret(id: ID!): WebhookSecret!
  deleteWebhook(id: ID!): Boolean!
  "Queues a webhook.test event to the endpoint; returns its webhook-id."
  testWebhook(id: ID!): String!
}
`;

export const graphqlSchema = buildSchema(SDL + PEOPLE_SDL);

const armorRules = [maxDepthRule({ n: LIMITS.graphqlMaxDepth }), maxAliasesRule({ n: LIMITS.graphqlMaxAliases })];

interface GqlContext {
  caller: Caller | null;
  username: string | null;
  loaders: Loaders | null;
  deadline: Deadline;
}

function need(ctx: GqlContext): Caller & { loaders: Loaders } {
  if (!ctx.caller || !ctx.loaders) throw new AppError(401, 'invalid_token', 'access token missing, invalid or expired');
  return { ...ctx.caller, loaders: ctx.loaders };
}

type LogArgs = { afterSeq: number; limit: number };

/** A conversation's nested lists, read through the request's loaders (one query per level). */
function nested(loaders: Loaders, id: string) {
  return {
    membershipLog: (args: LogArgs) => loaders.log.load({ id, afterSeq: args.afterSeq, limit: args.limit }),
  };
}

/** A conversation already read in full (single lookup or a mutation's result): members from it. */
function conversationObject(caller: Caller & { loaders: Loaders }, v: ConversationView) {
  const me = v.members.find((m) => m.userId === caller.auth.userId);
  return {
    ...v,
    role: me?.role ?? null,
    members: (args: { first: number }) => v.members.slice(0, args.first),
    ...nested(caller.loaders, v.id),
  };
}

const b64uString = z.string().max(LIMITS.maxPrekeyBodyBytes);

/** A WebhookEndpoint object: the view plus its delivery log on demand. */
function webhookObject(caller: Caller, v: WebhookEndpointView) {
  return {
    ...v,
    deliveries: (args: { limit?: number }) =>
      webhookDeliveries(caller, v.id, parseInput(z.number().int().min(1).max(100), args.limit ?? 100)),
  };
}

/** GraphQL passes absent optional arguments as undefined and explicit nulls as null: keep only the given ones. */
function given(args: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => args[k] !== undefined).map((k) => [k, args[k]]));
}

const rootValue = {
  viewer: async (_: unknown, ctx: GqlContext) => {
    const caller = need(ctx);
    const { userId, deviceId } = caller.auth;
    const row = await caller.db
      .select({ username: tables.users.username })
      .from(tables.users)
      .where(eq(tables.users.id, userId))
      .get();
    if (!row) throw new AppError(401, 'session_revoked', 'this session was signed out or its device revoked');
    return {
      id: userId,
      username: row.username,
      deviceId,
      devices: () => listDevices(caller.db, userId),
      deviceList: () => currentDeviceList(caller.db, userId),
    };
  },
  user: async (args: { username: string }, ctx: GqlContext) => {
    const caller = need(ctx);
    // The same normalisation and per-account `lookup` rate limit as REST (every alias counts).
    const row = await lookupUserByName(caller, parseInput(z.string(), args.username));
    if (!row) return null;
    return {
      id: row.id,
      username: row.username,
      identityKey: toB64u(row.identityKey),
      deviceList: () => currentDeviceList(caller.db, row.id),
    };
  },
  usernames: async (args: { ids: string[] }, ctx: GqlContext) => {
    const caller = need(ctx);
    const ids = parseInput(z.array(idString).min(1).max(MAX_NAME_IDS), args.ids);
    return usernamesForIds(caller.db, caller.auth.userId, ids);
  },
  conversations: async (args: { first: number; after?: string | null }, ctx: GqlContext) => {
    const caller = need(ctx);
    const after = args.after == null ? null : parseInput(idString, args.after);
    const rows = await listConversations(caller.db, caller.auth.userId, { first: args.first, after });
    return rows.map((r) => ({
      ...r,
      headHash: toB64u(r.headHash),
      members: (a: { first: number }) => caller.loaders.members.load({ id: r.id, first: a.first }),
      ...nested(caller.loaders, r.id),
    }));
  },
  conversation: async (args: { id: string }, ctx: GqlContext) => {
    const caller = need(ctx);
    return conversationObject(caller, await getConversation(caller.db, caller.auth.userId, args.id));
  },
  prekeyCount: (_: unknown, ctx: GqlContext) => {
    const caller = need(ctx);
    return prekeyCounts(caller.db, caller.auth.userId, caller.auth.deviceId);
  },
  deviceChallenge: (_: unknown, ctx: GqlContext) => issueDeviceChallenge(need(ctx)),
  registerDevice: (args: unknown, ctx: GqlContext) => {
    const caller = need(ctx);
    return registerDevice(caller, parseInput(registerDeviceBody, args));
  },
  revokeDevice: (args: { deviceId: string; deviceList: string }, ctx: GqlContext) => {
    const caller = need(ctx);
    const deviceId = parseInput(idString, args.deviceId);
    const { deviceList } = parseInput(revokeDeviceBody, { deviceList: args.deviceList });
    return revokeDevice(caller, { deviceId, deviceList });
  },
  uploadPrekeys: (args: unknown, ctx: GqlContext) => {
    const caller = need(ctx);
    return uploadPrekeys(caller, parseInput(uploadBody, args).upload);
  },
  claimPrekeyBundles: async (args: unknown, ctx: GqlContext) => {
    const caller = need(ctx);
    const r = await claimBundles(caller, parseInput(claimBody, args).userId);
    return {
      ...r,
      devices: r.devices.map((d) => ({ ...d, remainingOneTime: d.remaining.oneTime, remainingKem: d.remaining.kem })),
    };
  },
  createConversation: async (args: unknown, ctx: GqlContext) => {
    const caller = need(ctx);
    return conversationObject(caller, await createConversation(caller, parseInput(createConversationBody, args)));
  },
  appendMembershipEntry: async (args: { conversationId: string; entry: string }, ctx: GqlContext) => {
    const caller = need(ctx);
    const { entry } = parseInput(appendEntryBody, { entry: args.entry });
    return conversationObject(caller, await appendEntry(caller, args.conversationId, entry));
  },
  // People (routes/people.ts): sealed profiles and private settings.
  ...peopleResolvers(need),
  // ---- webhooks (worker/domain/webhooks.ts) ----
  webhooks: async (_: unknown, ctx: GqlContext) => {
    const caller = need(ctx);
    return (await listWebhooks(caller)).map((v) => webhookObject(caller, v));
  },
  webhook: async (args: { id: string }, ctx: GqlContext) => {
    const caller = need(ctx);
    return webhookObject(caller, await getWebhook(caller, args.id));
  },
  createWebhook: async (args: Record<string, unknown>, ctx: GqlContext) => {
    const caller = need(ctx);
    const input = parseInput(createWebhookBody, given(args, ['url', 'events', 'conversationId', 'description']));
    const r = await createWebhook(caller, input);
    return { endpoint: webhookObject(caller, r.endpoint), secret: r.secret };
  },
  updateWebhook: async (args: Record<string, unknown> & { id: string }, ctx: GqlContext) => {
    const caller = need(ctx);
    const input = parseInput(
      updateWebhookBody,
      given(args, ['url', 'events', 'conversationId', 'description', 'enabled']),
    );
    return webhookObject(caller, await updateWebhook(caller, args.id, input));
  },
  rotateWebhookSecret: async (args: { id: string }, ctx: GqlContext) => {
    const caller = need(ctx);
    const r = await rotateWebhookSecret(caller, args.id);
    return { endpoint: webhookObject(caller, r.endpoint), secret: r.secret };
  },
  deleteWebhook: async (args: { id: string }, ctx: GqlContext) => {
    await deleteWebhook(need(ctx), args.id);
    return true;
  },
  testWebhook: async (args: { id: string }, ctx: GqlContext) => (await testWebhook(need(ctx), args.id)).eventId,
};
void b64uString;

const CODE_BY_STATUS: Record<number, string> = {
  400: 'BAD_USER_INPUT',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  409: 'CONFLICT',
  410: 'GONE',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'BAD_REQUEST',
  422: 'BAD_USER_INPUT',
  429: 'RATE_LIMITED',
  503: 'SERVICE_UNAVAILABLE',
};

/** Resolver errors: AppError → stable code + REST reason; anything else is masked. */
function formatError(err: GraphQLError): GraphQLFormattedError {
  const original = err.originalError;
  if (original instanceof AppError) {
    return {
      message: original.message,
      path: err.path,
      extensions: {
        code: CODE_BY_STATUS[original.status] ?? 'BAD_REQUEST',
        reason: original.code,
        ...original.details,
      },
    };
  }
  // graphql-js wraps its own coercion failures (e.g. an enum variable with an unknown value) around a
  // GraphQLError: those are bad input, not resolver failures.
  if (original && !(original instanceof GraphQLErrorClass)) {
    log('error', 'graphql_resolver_error', { type: original.name ?? 'unknown' });
    return { message: 'internal error', path: err.path, extensions: { code: 'INTERNAL_SERVER_ERROR' } };
  }
  // Errors raised by graphql-js itself during execution (e.g. variable coercion): its message quotes the
  // offending value, so a fixed message with the path / location only.
  return {
    message: FIXED_MESSAGE.BAD_USER_INPUT,
    ...(err.path ? { path: err.path } : {}),
    ...(err.locations ? { locations: err.locations } : {}),
    extensions: { code: 'BAD_USER_INPUT' },
  };
}

/** graphql-js messages quote the request (values, names, source text): clients get these instead. */
const FIXED_MESSAGE = {
  BAD_USER_INPUT: 'invalid input: a variable or argument has the wrong type or value',
  GRAPHQL_PARSE_FAILED: 'syntax error in the query document',
  GRAPHQL_VALIDATION_FAILED: 'the query does not match the schema',
} as const;

type Status = 200 | 400 | 401 | 405 | 413 | 415 | 503;
function gqlError(c: Context<AppBindings>, status: Status, code: string, message: string) {
  return c.json({ errors: [{ message, extensions: { code } }] }, status);
}

const params = z.object({
  query: z.string(),
  variables: z.record(z.string(), z.unknown()).nullish(),
  operationName: z.string().max(256).nullish(),
  extensions: z.record(z.string(), z.unknown()).nullish(),
});

async function handle(c: Context<AppBindings>, method: 'GET' | 'POST') {
  let raw: unknown;
  if (method === 'GET') {
    const q = c.req.query();
    let variables: unknown = null;
    if (q.variables) {
      try {
        variables = JSON.parse(q.variables);
      } catch {
        return gqlError(c, 400, 'BAD_REQUEST', 'variables is not valid JSON');
      }
    }
    raw = { query: q.query, variables, operationName: q.operationName ?? null };
  } else {
    const type = c.req.header('content-type') ?? '';
    if (!/^application\/json\s*(;|$)/i.test(type))
      return gqlError(c, 415, 'BAD_REQUEST', 'expected Content-Type: application/json');
    try {
      raw = JSON.parse(await c.req.text());
    } catch {
      return gqlError(c, 400, 'BAD_REQUEST', 'request body is not valid JSON');
    }
  }
  const p = params.safeParse(raw);
  if (!p.success)
    return gqlError(c, 400, 'BAD_REQUEST', 'expected {query: string, variables?: object, operationName?}');
  const { query, variables, operationName } = p.data;
  if (utf8(query).length > LIMITS.graphqlMaxQueryBytes)
    return gqlError(c, 413, 'QUERY_TOO_LARGE', `query document larger than ${LIMITS.graphqlMaxQueryBytes} bytes`);

  let document: DocumentNode;
  try {
    document = new MaxTokensParserWLexer(query, { n: LIMITS.graphqlMaxTokens }).parseDocument();
  } catch (err) {
    const tooMany = err instanceof Error && /Token limit/.test(err.message);
    return tooMany
      ? gqlError(c, 400, 'QUERY_TOO_COMPLEX', `more than ${LIMITS.graphqlMaxTokens} tokens`)
      : c.json(
          {
            errors: [
              {
                message: FIXED_MESSAGE.GRAPHQL_PARSE_FAILED,
                ...(err instanceof GraphQLErrorClass && err.locations ? { locations: err.locations } : {}),
                extensions: { code: 'GRAPHQL_PARSE_FAILED' },
              },
            ],
          },
          400,
        );
  }
  // Limits first (they are cheap and bounded by the token limit), then the spec's validation.
  // Armor rules throw their GraphQLError (propagateOnRejection) or report it: both mean "too complex".
  let tooComplex: readonly GraphQLError[];
  try {
    tooComplex = validate(graphqlSchema, document, armorRules);
  } catch (err) {
    if (!(err instanceof GraphQLErrorClass)) throw err;
    tooComplex = [err];
  }
  if (tooComplex.length > 0) {
    return c.json(
      {
        errors: tooComplex.slice(0, 5).map((e) => ({ message: e.message, extensions: { code: 'QUERY_TOO_COMPLEX' } })),
      },
      400,
    );
  }
  const invalid = validate(graphqlSchema, document, specifiedRules);
  if (invalid.length > 0) {
    return c.json(
      {
        errors: invalid.slice(0, 10).map((e) => ({
          message: FIXED_MESSAGE.GRAPHQL_VALIDATION_FAILED,
          locations: e.locations,
          extensions: { code: 'GRAPHQL_VALIDATION_FAILED' },
        })),
      },
      400,
    );
  }
  const op = getOperationAST(document, operationName ?? undefined);
  if (!op) return gqlError(c, 400, 'BAD_REQUEST', 'no unique operation (name it with operationName)');
  // Cost: list sizes multiply (worker/graphql/cost.ts).
  let cost: ReturnType<typeof queryCost>;
  try {
    cost = queryCost(graphqlSchema, document, variables ?? undefined, operationName ?? undefined);
  } catch (err) {
    if (!(err instanceof GraphQLErrorClass)) throw err;
    return gqlError(c, 400, 'BAD_USER_INPUT', FIXED_MESSAGE.BAD_USER_INPUT);
  }
  if (cost.badArguments.length > 0) {
    return gqlError(c, 400, 'BAD_USER_INPUT', badArgumentError(cost.badArguments).message);
  }
  if (cost.cost > LIMITS.graphqlMaxCost) {
    return c.json(
      {
        errors: [
          {
            message: `query cost ${cost.cost} exceeds ${LIMITS.graphqlMaxCost} (list fields cost their size × their selection: ask for fewer items)`,
            extensions: { code: 'QUERY_TOO_COMPLEX', cost: cost.cost, maxCost: LIMITS.graphqlMaxCost },
          },
        ],
      },
      400,
    );
  }
  // The schema has no Subscription type; graphql-js would answer at execution time (HTTP 200).
  if (op.operation === 'subscription')
    return gqlError(c, 400, 'BAD_REQUEST', 'subscriptions are not supported (use the conversation WebSocket)');
  if (method === 'GET' && op.operation !== 'query') {
    c.header('Allow', 'POST');
    return gqlError(c, 405, 'METHOD_NOT_ALLOWED', 'mutations require POST');
  }

  let caller: Caller | null = null;
  if (c.req.header('authorization') !== undefined) {
    try {
      await requireAuth(c, async () => {});
    } catch (err) {
      if (err instanceof AppError && err.status === 401) return gqlError(c, 401, 'UNAUTHENTICATED', err.message);
      throw err;
    }
    caller = { env: c.env, db: makeDb(c.env), auth: c.get('auth'), clientHash: clientKey(c) };
  }

  // Wall-time cap: past the deadline no resolver or batch starts, and the answer is 503 QUERY_TIMEOUT.
  const deadlineAt = Date.now() + LIMITS.graphqlMaxWallMs;
  let timedOut = false;
  const deadline: Deadline = {
    check() {
      if (timedOut || Date.now() > deadlineAt) {
        timedOut = true;
        throw new AppError(503, 'query_timeout', 'the query took too long');
      }
    },
  };
  const context: GqlContext = {
    caller,
    username: null,
    loaders: caller ? makeLoaders(caller.db, caller.auth.userId, deadline) : null,
    deadline,
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    Promise.resolve(
      execute({
        schema: graphqlSchema,
        document,
        rootValue,
        contextValue: context,
        variableValues: variables ?? undefined,
        operationName: operationName ?? undefined,
        fieldResolver: (source, args, ctx: GqlContext, info) => {
          ctx.deadline.check();
          return defaultFieldResolver(source, args, ctx, info);
        },
      }) as ExecutionResult | Promise<ExecutionResult>,
    ),
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), LIMITS.graphqlMaxWallMs);
    }),
  ]);
  if (timer !== undefined) clearTimeout(timer);
  if (outcome === 'timeout' || timedOut) {
    timedOut = true;
    log('warn', 'graphql_timeout', { requestId: c.get('requestId'), cost: cost.cost });
    c.header('Retry-After', '5');
    return gqlError(c, 503, 'QUERY_TIMEOUT', `the query took longer than ${LIMITS.graphqlMaxWallMs} ms; ask for less`);
  }
  const result = outcome;
  const errors = result.errors?.map(formatError);
  // Like every 429: a RATE_LIMITED field error sets Retry-After (the longest wait any of them asks for).
  const waits = (errors ?? [])
    .filter((e) => e.extensions?.code === 'RATE_LIMITED')
    .map((e) => Number(e.extensions?.retryAfterSec))
    .filter((n) => Number.isFinite(n));
  if (waits.length > 0) c.header('Retry-After', String(Math.max(...waits)));
  // No data at all means the request failed before any resolver (variable coercion): a request error.
  const status = result.data === undefined && errors ? 400 : 200;
  return c.json(errors ? { errors, data: result.data ?? null } : { data: result.data }, status);
}

export const graphql = new Hono<AppBindings>()
  .get('/', (c) => handle(c, 'GET'))
  .post('/', (c) => handle(c, 'POST'))
  .all('/', (c) => {
    c.header('Allow', 'GET, POST');
    return gqlError(c, 405, 'METHOD_NOT_ALLOWED', 'use GET (queries) or POST');
  });
