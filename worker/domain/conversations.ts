/**
 * Conversations and their signed membership log (PITFALLS 17). The server is a verifier, never an author:
 * every change is a membership entry signed by a member's device, checked here with the protocol core
 * (`applyEntry`: hash chain, author device key from the author's CURRENT device list, signature, role ×
 * action table) against the stored fold (members + head), then appended in one `db.batch` with the member
 * changes, the new head (compare-and-swap) and an audit event.
 *
 * Kinds: `group` — entry 0 `create` (author becomes owner) and any entries after it. `direct` — exactly two
 * members, created in one request as [create by A, add B as member]; after that it takes only `set_timer`
 * (no rename, add, remove or leave — hiding a 1:1 chat is a client-side action), so a direct conversation
 * can never gain a third member — and, only inside an account deletion (`departure`), the deleting
 * account's `transfer_ownership` to the other person and its `leave`; once one person is left, nothing.
 *
 * Reads are for members only; a non-member gets 404 `not_found` so existence is not revealed.
 */
import { and, asc, count, eq, gt, inArray, isNull, or, type SQL, sql } from 'drizzle-orm';
import { wireId } from '../../schema/wire.js';
import { equal, toB64u } from '../../web/src/protocol/bytes.js';
import { ErrorCode, ProtocolError } from '../../web/src/protocol/errors.js';
import type { DeviceKeyResolver } from '../../web/src/protocol/identity.js';
import { theirEd25519 } from '../../web/src/protocol/keys.js';
import {
  applyEntry,
  decodeMembershipEntry,
  entryHash,
  type MembershipEntry,
  type MembershipState,
  type Role,
} from '../../web/src/protocol/membership.js';
import type { Db } from '../db.js';
import { schema } from '../db.js';
import type { AuthContext } from '../env.js';
import { AppError } from '../errors.js';
import { enforceRateLimit } from '../limiter.js';
import { LIMITS } from '../limits.js';
import { log, logId } from '../log.js';
import { membershipEvents, outboxEvents } from '../webhooks/outbox.js';
import { asBytes, auditStmt, type Caller, chunkRows, curves, isConstraintError, writeBatch } from './common.js';

/** Entries accepted in one create request (more members are added with later entries). */
export const MAX_CREATE_ENTRIES = 64;
/** Log entries returned per read page. */
export const MAX_LOG_PAGE = 500;

export type Kind = 'direct' | 'group';

export interface MemberView {
  userId: string;
  role: Role;
  joinedSeq: number;
}
export interface LogEntryView {
  seq: number;
  /** base64url of the exact signed encoding. */
  entry: string;
  authorUserId: string;
  authorDeviceId: string;
}
export interface ConversationView {
  id: string;
  kind: Kind;
  headSeq: number;
  headHash: string;
  createdAt: number;
  members: MemberView[];
}

const notFound = () => new AppError(404, 'not_found', 'no such conversation');

function decodeEntry(bytes: Uint8Array): MembershipEntry {
  try {
    return decodeMembershipEntry(bytes);
  } catch {
    throw new AppError(400, 'invalid_entry', 'membership entry does not decode');
  }
}

/**
 * A deleting account's departure from one conversation must be `[transfer_ownership]?, leave` (422
 * `invalid_departure` otherwise; 400 `invalid_entry` if an entry does not decode). The entries themselves
 * are checked by `appendEntry` like any other.
 */
export function assertDeparture(conversationId: string, entries: readonly Uint8Array[]): void {
  const actions = entries.map((e) => decodeEntry(e).action);
  const ok =
    actions.length === 1
      ? actions[0] === 'leave'
      : actions.length === 2 && actions[0] === 'transfer_ownership' && actions[1] === 'leave';
  if (!ok)
    throw new AppError(422, 'invalid_departure', 'a departure is [transfer_ownership]?, leave', { conversationId });
}

function entryError(err: unknown): AppError {
  if (!(err instanceof ProtocolError)) throw err;
  switch (err.code) {
    case ErrorCode.Signature:
      return new AppError(422, 'invalid_signature', 'membership entry signature does not verify');
    case ErrorCode.Forbidden:
      return new AppError(403, 'forbidden', 'the author may not perform this action');
    case ErrorCode.LimitExceeded:
      return new AppError(422, 'too_many_members', 'conversation member limit reached');
    default:
      return new AppError(422, 'invalid_entry', 'membership entry breaks a log rule');
  }
}

/** Signing keys of the live (non-revoked) devices of `userIds`, from their certified device rows. */
async function resolverFor(db: Db, userIds: string[]): Promise<DeviceKeyResolver> {
  const unique = [...new Set(userIds)];
  const rows =
    unique.length === 0
      ? []
      : await db
          .select({ userId: schema.devices.userId, deviceId: schema.devices.deviceId, key: schema.devices.signingKey })
          .from(schema.devices)
          .where(and(inArray(schema.devices.userId, unique), isNull(schema.devices.revokedAt)))
          .all();
  const map = new Map(rows.map((r) => [JSON.stringify([r.userId, r.deviceId]), asBytes(r.key)]));
  return (userId, deviceId) => {
    const k = map.get(JSON.stringify([userId, deviceId]));
    return k ? theirEd25519(k) : undefined;
  };
}

async function assertUsersExist(db: Db, userIds: string[]): Promise<void> {
  const unique = [...new Set(userIds)];
  if (unique.length === 0) return;
  const rows = await db
    .select({ id: schema.users.id })
    .from(schema.users)
    .where(inArray(schema.users.id, unique))
    .all();
  if (rows.length !== unique.length) throw new AppError(422, 'unknown_user', 'an added user does not exist');
}

/**
 * The per-account conversation ceiling (LIMITS.maxConversationsPerAccount): each user in `joining` must be
 * below it. Checked before the write; concurrent requests may overshoot by their number.
 */
async function assertRoomFor(db: Db, joining: string[]): Promise<void> {
  const unique = [...new Set(joining)];
  if (unique.length === 0) return;
  const rows = await db
    .select({ userId: schema.members.userId, n: count() })
    .from(schema.members)
    .where(inArray(schema.members.userId, unique))
    .groupBy(schema.members.userId)
    .all();
  const full = rows.find((r) => r.n >= LIMITS.maxConversationsPerAccount);
  if (full) {
    throw new AppError(409, 'too_many_conversations', 'a member is in too many conversations', {
      userId: full.userId,
      limit: LIMITS.maxConversationsPerAccount,
    });
  }
}

/** Creations and member additions per account (buckets conversationCreate, memberAdd): every attempt counts. */
async function enforceFloodLimits(caller: Caller, creates: number, adds: number): Promise<void> {
  const key = [`acct:${caller.auth.userId}`];
  if (creates > 0) await enforceRateLimit(caller.env, 'conversationCreate', key, creates);
  if (adds > 0) await enforceRateLimit(caller.env, 'memberAdd', key, adds);
}

export async function createConversation(
  caller: Caller,
  input: { kind: Kind; entries: Uint8Array[] },
): Promise<ConversationView> {
  const { db, auth } = caller;
  if (input.entries.length === 0 || input.entries.length > MAX_CREATE_ENTRIES)
    throw new AppError(400, 'invalid_request', `1 to ${MAX_CREATE_ENTRIES} entries`);
  const entries = input.entries.map(decodeEntry);
  const first = entries[0]!;
  if (first.action !== 'create') throw new AppError(422, 'invalid_entry', 'the first entry must be create');
  if (!wireId.safeParse(first.conversationId).success)
    throw new AppError(422, 'invalid_entry', 'conversation id must be 1-64 of [A-Za-z0-9_-]');
  if (first.authorUserId !== auth.userId)
    throw new AppError(403, 'forbidden', 'the creator must be the signed-in user');
  if (input.kind === 'direct') {
    const second = entries[1];
    if (entries.length !== 2 || second?.action !== 'add' || second.role !== 'member')
      throw new AppError(422, 'invalid_direct', 'a direct conversation is [create, add the other user as member]');
  }
  const added = entries.filter((e) => e.action === 'add').map((e) => e.target!);
  await enforceFloodLimits(caller, 1, added.length);
  await assertUsersExist(db, added);
  await assertRoomFor(db, [auth.userId, ...added]);
  const resolve = await resolverFor(
    db,
    entries.map((e) => e.authorUserId),
  );
  const c = await curves();
  let state: MembershipState | null = null;
  const joined = new Map<string, number>();
  try {
    for (const e of entries) {
      state = await applyEntry(c, state, e, resolve);
      if (e.action === 'create') joined.set(e.authorUserId, 0);
      if (e.action === 'add') joined.set(e.target!, e.seq);
    }
  } catch (err) {
    throw entryError(err);
  }
  const final = state!;
  const id = first.conversationId;
  const now = Date.now();
  const memberRows = [...final.members].map(([userId, role]) => ({
    conversationId: id,
    userId,
    role,
    joinedSeq: joined.get(userId) ?? 0,
  }));
  const logRows = entries.map((e, i) => ({
    conversationId: id,
    seq: e.seq,
    entry: input.entries[i]!,
    entryHash: entryHash(e),
    authorUserId: e.authorUserId,
    authorDeviceId: e.authorDeviceId,
    createdAt: now,
  }));
  // Webhooks: every member of the new conversation is "added" (the creator included), in the same batch.
  const events = outboxEvents(
    db,
    membershipEvents({
      conversationId: id,
      before: new Map(),
      after: final.members,
      byUserId: auth.userId,
      logSeq: final.seq,
      at: now,
    }),
    now,
  );
  try {
    await writeBatch(caller.env, [
      db.insert(schema.conversations).values({
        id,
        kind: input.kind,
        headSeq: final.seq,
        headHash: final.headHash,
        timerSeconds: final.timer ?? 0,
        createdAt: now,
      }),
      ...chunkRows(logRows, 7).map((part) => db.insert(schema.membershipLog).values(part)),
      ...chunkRows(memberRows, 4).map((part) => db.insert(schema.members).values(part)),
      auditStmt(caller, 'conversation.created', {
        conversationId: id,
        kind: input.kind,
        members: memberRows.length,
        headSeq: final.seq,
      }),
      ...events.statements,
    ]);
  } catch (err) {
    if (isConstraintError(err)) throw new AppError(409, 'conversation_exists', 'a conversation with this id exists');
    throw err;
  }
  await events.release(caller.env, db);
  return {
    id,
    kind: input.kind,
    headSeq: final.seq,
    headHash: toB64u(final.headHash),
    createdAt: now,
    members: memberRows.map(({ userId, role, joinedSeq }) => ({ userId, role, joinedSeq })),
  };
}

async function loadForMember(db: Db, userId: string, id: string) {
  if (!wireId.safeParse(id).success) throw notFound();
  const [conv, mine] = await db.batch([
    db.select().from(schema.conversations).where(eq(schema.conversations.id, id)),
    db
      .select({ role: schema.members.role })
      .from(schema.members)
      .where(and(eq(schema.members.conversationId, id), eq(schema.members.userId, userId))),
  ]);
  if (!conv[0] || !mine[0]) throw notFound();
  return conv[0];
}

async function membersOf(db: Db, id: string): Promise<MemberView[]> {
  return db
    .select({ userId: schema.members.userId, role: schema.members.role, joinedSeq: schema.members.joinedSeq })
    .from(schema.members)
    .where(eq(schema.members.conversationId, id))
    .orderBy(asc(schema.members.joinedSeq), asc(schema.members.userId))
    .all();
}

/**
 * What appendEntry checks before the membership fold (applyEntry), for an entry on top of `conv` at
 * (`headSeq`, `headHash`) with `memberCount` members: who posts it, what a direct conversation takes, and
 * that it extends the head.
 */
function assertAppendable(
  auth: AuthContext,
  conv: { id: string; kind: Kind; headSeq: number },
  headHash: Uint8Array,
  memberCount: number,
  entry: MembershipEntry,
  departure: boolean,
): void {
  // Only the signing device posts its own entry: a member may not replay an entry another member signed
  // but never sent (or sent to another conversation state), as create already requires.
  if (entry.authorUserId !== auth.userId || entry.authorDeviceId !== auth.deviceId)
    throw new AppError(403, 'not_entry_author', 'the entry must be authored by the signed-in device');
  // A direct conversation's log takes no entry after its creation but the disappearing-message timer
  // (issue 17: either person may set it; applyEntry checks the role rule) — and a deleting account's
  // departure (docs/PROTOCOL.md, direct conversations).
  const departing = departure && (entry.action === 'transfer_ownership' || entry.action === 'leave');
  if (conv.kind === 'direct' && entry.action !== 'set_timer' && !departing)
    throw new AppError(422, 'direct_conversation_closed', 'a direct conversation takes no further entries');
  if (entry.conversationId !== conv.id || entry.seq !== conv.headSeq + 1 || !equal(entry.prevHash, headHash)) {
    throw new AppError(409, 'chain_conflict', 'entry does not extend the current head', { headSeq: conv.headSeq });
  }
  // After a departure one person is left in a direct conversation: its log is closed for good.
  if (conv.kind === 'direct' && memberCount < 2)
    throw new AppError(422, 'direct_conversation_closed', 'the other person deleted their account');
}

/**
 * A deleting account's departures (`[transfer_ownership]?, leave` per conversation, assertDeparture),
 * checked whole before any is appended (routes/account.ts): each entry gets exactly appendEntry's checks
 * and fold, on the state the previous one leaves. Throws the error appendEntry would; writes nothing — so a
 * bad entry for one conversation no longer leaves the account already gone from the ones before it.
 */
export async function checkDepartures(
  caller: Caller,
  departures: ReadonlyMap<string, readonly Uint8Array[]>,
): Promise<void> {
  const { db, auth } = caller;
  const c = await curves();
  const resolve = await resolverFor(db, [auth.userId]);
  for (const [conversationId, entries] of departures) {
    const conv = await loadForMember(db, auth.userId, conversationId);
    const current = await membersOf(db, conv.id);
    let state: MembershipState = {
      conversationId: conv.id,
      members: new Map(current.map((m) => [m.userId, m.role])),
      title: '',
      headHash: asBytes(conv.headHash),
      seq: conv.headSeq,
    };
    for (const bytes of entries) {
      const entry = decodeEntry(bytes);
      assertAppendable(auth, { ...conv, headSeq: state.seq }, state.headHash, state.members.size, entry, true);
      try {
        state = await applyEntry(c, state, entry, resolve);
      } catch (err) {
        throw entryError(err);
      }
    }
  }
}

export async function appendEntry(
  caller: Caller,
  conversationId: string,
  entryBytes: Uint8Array,
  /** Set only by POST /api/account/delete: the deleting account's own departure (routes/account.ts). */
  opts: { departure?: boolean } = {},
): Promise<ConversationView> {
  const { db, auth, env } = caller;
  const conv = await loadForMember(db, auth.userId, conversationId);
  const entry = decodeEntry(entryBytes);
  const headHash = asBytes(conv.headHash);
  const current = await membersOf(db, conv.id);
  assertAppendable(auth, conv, headHash, current.length, entry, opts.departure === true);
  const before = new Map(current.map((m) => [m.userId, m.role]));
  const state: MembershipState = {
    conversationId: conv.id,
    members: before,
    // The title is not needed for any server-side rule; clients read it from the log.
    title: '',
    headHash,
    seq: conv.headSeq,
  };
  if (entry.action === 'add') {
    await enforceFloodLimits(caller, 0, 1);
    await assertUsersExist(db, [entry.target!]);
    await assertRoomFor(db, [entry.target!]);
  }
  let next: MembershipState;
  try {
    next = await applyEntry(await curves(), state, entry, await resolverFor(db, [entry.authorUserId]));
  } catch (err) {
    throw entryError(err);
  }
  const removed = [...before.keys()].filter((u) => !next.members.has(u));
  const stmts = [];
  stmts.push(
    db.insert(schema.membershipLog).values({
      conversationId: conv.id,
      seq: entry.seq,
      entry: entryBytes,
      entryHash: next.headHash,
      authorUserId: entry.authorUserId,
      authorDeviceId: entry.authorDeviceId,
    }),
    db
      .update(schema.conversations)
      // The timer the server enforces on its mailbox is the verified log's (only a set_timer entry changes it).
      .set({
        headSeq: next.seq,
        headHash: next.headHash,
        ...(entry.action === 'set_timer' ? { timerSeconds: next.timer ?? 0 } : {}),
      })
      .where(and(eq(schema.conversations.id, conv.id), eq(schema.conversations.headSeq, conv.headSeq))),
  );
  for (const u of removed) {
    stmts.push(
      db.delete(schema.members).where(and(eq(schema.members.conversationId, conv.id), eq(schema.members.userId, u))),
    );
  }
  for (const [u, role] of next.members) {
    const had = before.get(u);
    if (had === undefined) {
      stmts.push(db.insert(schema.members).values({ conversationId: conv.id, userId: u, role, joinedSeq: entry.seq }));
    } else if (had !== role) {
      stmts.push(
        db
          .update(schema.members)
          .set({ role })
          .where(and(eq(schema.members.conversationId, conv.id), eq(schema.members.userId, u))),
      );
    }
  }
  stmts.push(
    auditStmt(caller, 'membership.appended', {
      conversationId: conv.id,
      seq: entry.seq,
      action: entry.action,
      target: entry.target,
    }),
  );
  const events = outboxEvents(
    db,
    membershipEvents({
      conversationId: conv.id,
      before,
      after: next.members,
      byUserId: auth.userId,
      logSeq: entry.seq,
      at: Date.now(),
    }),
  );
  stmts.push(...events.statements);
  try {
    await writeBatch(env, stmts);
  } catch (err) {
    // Two appends for the same seq: the second hits membership_log's primary key and rolls back.
    if (isConstraintError(err)) throw new AppError(409, 'chain_conflict', 'entry does not extend the current head');
    throw err;
  }
  await events.release(env, db);
  try {
    await env.CONVERSATION.get(env.CONVERSATION.idFromName(conv.id)).membershipChanged(toB64u(entryBytes), removed);
  } catch {
    // Committed already. Not retried (a second membership frame could reach the sockets twice): the DO
    // re-reads the member set once its cache is older than DELIVERY_LIMITS.deviceSetTtlMs, closing a
    // removed member's sockets then at the latest.
    log('warn', 'membership_notify_failed', { conv: logId(env, 'c', conv.id) });
  }
  // Built from the new fold, not re-read: after `leave` the caller is no longer allowed to read it.
  const joinedSeq = new Map(current.map((m) => [m.userId, m.joinedSeq]));
  return {
    id: conv.id,
    kind: conv.kind,
    headSeq: next.seq,
    headHash: toB64u(next.headHash),
    createdAt: conv.createdAt,
    members: [...next.members].map(([userId, role]) => ({
      userId,
      role,
      joinedSeq: joinedSeq.get(userId) ?? entry.seq,
    })),
  } satisfies ConversationView;
}

export interface ConversationListItem {
  id: string;
  kind: Kind;
  role: Role;
  headSeq: number;
  headHash: Uint8Array;
  createdAt: number;
}

/**
 * The caller's conversations, oldest first (createdAt, id). With `page`, at most `first` of them after the
 * conversation `after` (a cursor: the id of the last one of the previous page; unknown → from the start).
 * Without, all of them (bounded by LIMITS.maxConversationsPerAccount).
 */
export async function listConversations(
  db: Db,
  userId: string,
  page?: { first: number; after?: string | null },
): Promise<ConversationListItem[]> {
  const c = schema.conversations;
  let cursor: SQL | undefined;
  if (page?.after) {
    const at = await db.select({ createdAt: c.createdAt }).from(c).where(eq(c.id, page.after)).get();
    if (at) cursor = or(gt(c.createdAt, at.createdAt), and(eq(c.createdAt, at.createdAt), gt(c.id, page.after)));
  }
  const q = db
    .select({
      id: c.id,
      kind: c.kind,
      role: schema.members.role,
      headSeq: c.headSeq,
      headHash: c.headHash,
      createdAt: c.createdAt,
    })
    .from(schema.members)
    .innerJoin(c, eq(c.id, schema.members.conversationId))
    .where(and(eq(schema.members.userId, userId), cursor))
    .orderBy(asc(c.createdAt), asc(c.id));
  const rows = page ? await q.limit(page.first).all() : await q.all();
  return rows.map((r) => ({ ...r, headHash: asBytes(r.headHash) }));
}

/** How many conversations `userId` is a member of. */
export async function conversationCount(db: Db, userId: string): Promise<number> {
  const row = await db.select({ n: count() }).from(schema.members).where(eq(schema.members.userId, userId)).get();
  return row?.n ?? 0;
}

/** D1 binds at most 100 parameters per statement: id lists are cut into parts of this size. */
const ID_BATCH = 90;
function parts<T>(xs: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += ID_BATCH) out.push(xs.slice(i, i + ID_BATCH));
  return out;
}

/** Which of `ids` the user is a member of: one query per 90 ids (batched reads: GraphQL's loaders). */
export async function memberOfMany(db: Db, userId: string, ids: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const part of parts([...new Set(ids)])) {
    const rows = await db
      .select({ id: schema.members.conversationId })
      .from(schema.members)
      .where(and(eq(schema.members.userId, userId), inArray(schema.members.conversationId, part)))
      .all();
    for (const r of rows) out.add(r.id);
  }
  return out;
}

/**
 * The first `first` members (joinedSeq, userId order) of each conversation in `ids`, in one query per 90
 * ids (a window function ranks members within each conversation). No membership check: callers pass ids the
 * viewer may read.
 */
export async function membersOfMany(db: Db, ids: readonly string[], first: number): Promise<Map<string, MemberView[]>> {
  const out = new Map<string, MemberView[]>(ids.map((id) => [id, []]));
  for (const part of parts([...new Set(ids)])) {
    const rows = await db.all<{ conversation_id: string; user_id: string; role: Role; joined_seq: number }>(sql`
      SELECT conversation_id, user_id, role, joined_seq FROM (
        SELECT conversation_id, user_id, role, joined_seq,
               ROW_NUMBER() OVER (PARTITION BY conversation_id ORDER BY joined_seq, user_id) AS rn
        FROM members WHERE conversation_id IN (${sql.join(
          part.map((id) => sql`${id}`),
          sql`, `,
        )})
      ) WHERE rn <= ${first} ORDER BY conversation_id, joined_seq, user_id`);
    for (const r of rows)
      out.get(r.conversation_id)?.push({ userId: r.user_id, role: r.role, joinedSeq: r.joined_seq });
  }
  return out;
}

/**
 * Log entries with seq > afterSeq, oldest first, at most `limit` per conversation, for each conversation in
 * `ids`: one query per 90 ids. No membership check: callers pass ids the viewer may read.
 */
export async function logPagesOfMany(
  db: Db,
  ids: readonly string[],
  afterSeq: number,
  limit: number,
): Promise<Map<string, LogEntryView[]>> {
  const out = new Map<string, LogEntryView[]>(ids.map((id) => [id, []]));
  for (const part of parts([...new Set(ids)])) {
    const rows = await db.all<{
      conversation_id: string;
      seq: number;
      entry: unknown;
      author_user_id: string;
      author_device_id: string;
    }>(sql`
      SELECT conversation_id, seq, entry, author_user_id, author_device_id FROM (
        SELECT conversation_id, seq, entry, author_user_id, author_device_id,
               ROW_NUMBER() OVER (PARTITION BY conversation_id ORDER BY seq) AS rn
        FROM membership_log WHERE seq > ${afterSeq} AND conversation_id IN (${sql.join(
          part.map((id) => sql`${id}`),
          sql`, `,
        )})
      ) WHERE rn <= ${limit} ORDER BY conversation_id, seq`);
    for (const r of rows)
      out.get(r.conversation_id)?.push({
        seq: r.seq,
        entry: toB64u(asBytes(r.entry)),
        authorUserId: r.author_user_id,
        authorDeviceId: r.author_device_id,
      });
  }
  return out;
}

export async function getConversation(db: Db, userId: string, id: string): Promise<ConversationView> {
  const conv = await loadForMember(db, userId, id);
  return {
    id: conv.id,
    kind: conv.kind,
    headSeq: conv.headSeq,
    headHash: toB64u(asBytes(conv.headHash)),
    createdAt: conv.createdAt,
    members: await membersOf(db, conv.id),
  };
}

/** Log entries with seq > afterSeq, oldest first, at most `limit` (≤ MAX_LOG_PAGE). Members only. */
export async function membershipLogPage(
  db: Db,
  userId: string,
  id: string,
  afterSeq = -1,
  limit = MAX_LOG_PAGE,
): Promise<LogEntryView[]> {
  await loadForMember(db, userId, id);
  const rows = await db
    .select({
      seq: schema.membershipLog.seq,
      entry: schema.membershipLog.entry,
      authorUserId: schema.membershipLog.authorUserId,
      authorDeviceId: schema.membershipLog.authorDeviceId,
    })
    .from(schema.membershipLog)
    .where(and(eq(schema.membershipLog.conversationId, id), gt(schema.membershipLog.seq, afterSeq)))
    .orderBy(asc(schema.membershipLog.seq))
    .limit(Math.min(Math.max(1, limit), MAX_LOG_PAGE))
    .all();
  return rows.map((r) => ({ ...r, entry: toB64u(asBytes(r.entry)) }));
}
