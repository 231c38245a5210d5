/**
 * "Download my data" and "delete my account" (issue 18; README §Your data).
 *
 * Both work from the schema as it is at run time, not from a list: every D1 table is enumerated
 * (`sqlite_master`), and a column that names an account is recognised by its name — `user_id`, or
 * `<role>_user_id` (`author_user_id`, `sender_user_id`, `owner_user_id`, …), plus `users.id`. A table added
 * later is exported and wiped without a change here AS LONG AS its account column follows that naming;
 * worker/account.test.ts scans every cell of every table for the id afterwards, so one that does not is
 * caught. State outside D1 (R2 objects, queued work, key-transparency entries, Durable Objects of other
 * features) is handled by an `onAccountDeletion` hook of its owner (`before` the rows go when the hook
 * finds its state through them, `after` otherwise).
 *
 * What deletion keeps, by design (README §Your data):
 *  - membership-log entries of conversations that still have other members: they are the signed history
 *    every remaining member verifies from entry 0 (the bytes carry the account id the members signed); the
 *    deleting client appends a signed `leave` (after a `transfer_ownership` if it was the owner) first;
 *  - messages it sent that are still waiting for other members: kept for them, with the sender replaced by
 *    the tombstone id `deleted` in D1 and in the conversation object;
 *  - a keyed hash of the username, so the name stays blocked for LIMITS.usernameCooldownMs.
 */
import { eq, sql } from 'drizzle-orm';
import type { AccountExportPage } from '../../schema/auth-api.js';
import { fromB64u, toB64u, utf8 } from '../../web/src/protocol/bytes.js';
import { hmacSha256 } from '../../web/src/protocol/primitives.js';
import { type Db, d1, schema } from '../db.js';
import type { Env } from '../env.js';
import { AppError } from '../errors.js';
import { LIMITS } from '../limits.js';
import { log, logId } from '../log.js';
import { secretBytes } from '../secrets.js';

/** The id that replaces a deleted account as the sender of messages still waiting for other members. */
export const DELETED_USER = 'deleted';

const INTERNAL = /^(sqlite_|_cf_|d1_migrations$)/;
const isUserColumn = (table: string, column: string) =>
  column === 'user_id' || column.endsWith('_user_id') || (table === 'users' && column === 'id');

export interface UserColumn {
  table: string;
  column: string;
}

/** Every D1 table (internal ones excluded) with its columns. */
export async function tablesAndColumns(env: Pick<Env, 'DB'>): Promise<{ table: string; columns: string[] }[]> {
  const tables = await d1(env).prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all<{
    name: string;
  }>();
  const out: { table: string; columns: string[] }[] = [];
  for (const { name } of tables.results) {
    if (INTERNAL.test(name)) continue;
    const cols = await d1(env).prepare(`SELECT name FROM pragma_table_info(?1)`).bind(name).all<{ name: string }>();
    out.push({ table: name, columns: cols.results.map((c) => c.name) });
  }
  return out;
}

export async function userColumns(env: Pick<Env, 'DB'>): Promise<UserColumn[]> {
  return (await tablesAndColumns(env)).flatMap(({ table, columns }) =>
    columns.filter((c) => isUserColumn(table, c)).map((column) => ({ table, column })),
  );
}

const quote = (id: string) => `"${id.replaceAll('"', '""')}"`;
/** Columns never exported, even to their owner: hashes and encrypted secrets the owner cannot use. */
const WITHHELD = /(^|_)(hash|salt|secret_enc|password_params)$/;

/** Rows of one table in one export page (a table with more continues on the next page). */
export const EXPORT_ROWS_PER_TABLE = 1_000;
/** Row JSON in one export page, all tables together (a page always holds at least one row if any is left). */
export const EXPORT_PAGE_BYTES = 4 * 1024 * 1024;
/** Rows per D1 read while a page is filled (bounds what one read holds: a mailbox row can be ~350 KB). */
const EXPORT_READ_ROWS = 50;
/** Below every rowid: where a table's export starts. */
const FIRST_ROWID = Number.MIN_SAFE_INTEGER;

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const badCursor = () => new AppError(400, 'invalid_cursor', 'not a cursor of this export; start again without one');

/** The cursor: base64url JSON `{ table: last rowid exported }` of every table with rows left. */
function encodeCursor(pending: Record<string, number>): string {
  return toB64u(utf8(JSON.stringify(pending)));
}

function decodeCursor(cursor: string): Map<string, number> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(fromB64u(cursor)));
  } catch {
    throw badCursor();
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw badCursor();
  const out = new Map<string, number>();
  for (const [table, after] of Object.entries(parsed)) {
    if (!TABLE_NAME.test(table) || !Number.isSafeInteger(after)) throw badCursor();
    out.set(table, after as number);
  }
  if (out.size === 0) throw badCursor();
  return out;
}

const exportCell = ([k, v]: [string, unknown]) => [
  k,
  WITHHELD.test(k) ? '(withheld)' : v instanceof ArrayBuffer ? toB64u(new Uint8Array(v)) : v,
];

/**
 * Everything D1 holds about the account, table by table (rows where any account column is this user, in
 * rowid order; blobs as base64url; hashes and encrypted secrets withheld), one bounded page at a time: each
 * table at most EXPORT_ROWS_PER_TABLE rows, the page at most EXPORT_PAGE_BYTES of row JSON. When rows are
 * left the page says `truncated: true` and `next` is the cursor of the following page (only the tables with
 * rows left continue there). Pages are read one after the other, not as one snapshot: a row written between
 * two pages may or may not appear. 400 `invalid_cursor` for a cursor this export did not make.
 */
export async function exportAccount(env: Pick<Env, 'DB'>, userId: string, cursor?: string): Promise<AccountExportPage> {
  const from = cursor === undefined ? null : decodeCursor(cursor);
  const tables: Record<string, Record<string, unknown>[]> = {};
  const pending: Record<string, number> = {};
  let bytes = 0;
  for (const { table, columns } of await tablesAndColumns(env)) {
    const mine = columns.filter((c) => isUserColumn(table, c));
    if (mine.length === 0) continue;
    let after = from === null ? FIRST_ROWID : from.get(table);
    if (after === undefined) continue; // finished on an earlier page
    if (bytes >= EXPORT_PAGE_BYTES) {
      pending[table] = after;
      continue;
    }
    const where = mine.map((c) => `${quote(c)} = ?1`).join(' OR ');
    const rows: Record<string, unknown>[] = [];
    let done = false;
    let pageFull = false;
    while (!done && !pageFull && rows.length < EXPORT_ROWS_PER_TABLE) {
      const want = Math.min(EXPORT_READ_ROWS, EXPORT_ROWS_PER_TABLE - rows.length);
      const read: D1Result<Record<string, unknown>> = await d1(env)
        // sql-interpolation-ok: table and column names come from sqlite_master / pragma_table_info; values are bound.
        .prepare(
          `SELECT rowid AS "__export_rowid", * FROM ${quote(table)} WHERE (${where}) AND rowid > ?2 ORDER BY rowid LIMIT ?3`,
        )
        .bind(userId, after, want)
        .all<Record<string, unknown>>();
      for (const r of read.results as Record<string, unknown>[]) {
        const { __export_rowid: rowid, ...cells }: Record<string, unknown> = r;
        const row = Object.fromEntries(Object.entries(cells).map(exportCell));
        const size = JSON.stringify(row).length;
        if (bytes > 0 && bytes + size > EXPORT_PAGE_BYTES) {
          pageFull = true;
          break;
        }
        rows.push(row);
        bytes += size;
        after = Number(rowid);
      }
      if (!pageFull && read.results.length < want) done = true;
    }
    if (rows.length > 0) tables[table] = rows;
    if (!done) pending[table] = after;
  }
  const truncated = Object.keys(pending).length > 0;
  return {
    format: 'e2e-chat account export',
    version: 1,
    userId,
    exportedAt: new Date().toISOString(),
    tables,
    truncated,
    next: truncated ? encodeCursor(pending) : null,
  };
}

// ---- deletion -----------------------------------------------------------------------------------------------

export interface AccountDeletionContext {
  env: Env;
  db: Db;
  userId: string;
  deviceIds: string[];
  /** Conversations the account was in (before deletion). */
  conversationIds: string[];
  /** Of those, the ones nobody else is in: they go whole (log, mailboxes, object storage). */
  orphanedConversationIds: string[];
}
export type AccountDeletionHook = (ctx: AccountDeletionContext) => Promise<void>;
/**
 * `before`: runs while the account's D1 rows still exist (state found through them — R2 blobs keyed by an
 * attachment row); a failure stops the deletion before anything in D1 changed (503, the user retries).
 * `after` (default): runs once the rows are gone, so nothing new can be made for the account; a failure
 * is logged for the operator.
 */
export type AccountDeletionPhase = 'before' | 'after';

const hooks: { name: string; run: AccountDeletionHook; phase: AccountDeletionPhase }[] = [];

/**
 * Registers work to run when an account is deleted — R2 objects, queued deliveries, a key-transparency
 * tombstone, other Durable Objects… Hooks must be idempotent (a failed deletion is retried by the user)
 * and must not throw for "nothing to delete". Registered at module load by the feature that owns the
 * state (worker/domain/attachments.ts is an example).
 */
export function onAccountDeletion(name: string, run: AccountDeletionHook, phase: AccountDeletionPhase = 'after'): void {
  if (!hooks.some((h) => h.name === name)) hooks.push({ name, run, phase });
}

/** The registered hooks' names by phase (the deletion test checks the features it knows about are wired). */
export function accountDeletionHooks(): { name: string; phase: AccountDeletionPhase }[] {
  return hooks.map(({ name, phase }) => ({ name, phase }));
}

export function usernameHash(env: Pick<Env, 'TOKEN_HASH_KEY'>, normalized: string): Uint8Array {
  return hmacSha256(secretBytes(env as Env, 'TOKEN_HASH_KEY'), utf8(`username:${normalized}`));
}

/** True while a deleted account's username is still blocked. */
export async function usernameCoolingDown(
  env: Pick<Env, 'TOKEN_HASH_KEY'>,
  db: Db,
  normalized: string,
  now: number,
): Promise<boolean> {
  const row = await db
    .select({ until: schema.releasedUsernames.blockedUntil })
    .from(schema.releasedUsernames)
    .where(eq(schema.releasedUsernames.nameHash, usernameHash(env, normalized)))
    .get();
  return row !== undefined && row.until > now;
}

/**
 * Deletes the account from D1 (every row in every table whose account column is it; see the header for
 * what is kept), then tells each conversation object and runs the hooks. The caller has verified the
 * password (and TOTP) and appended the client-signed leave entries.
 */
export async function deleteAccountData(env: Env, db: Db, userId: string, now = Date.now()): Promise<void> {
  const user = await db
    .select({ username: schema.users.username })
    .from(schema.users)
    .where(eq(schema.users.id, userId))
    .get();
  const deviceIds = (
    await db.select({ d: schema.devices.deviceId }).from(schema.devices).where(eq(schema.devices.userId, userId))
  ).map((r) => r.d);
  const memberOf = (
    await db.select({ c: schema.members.conversationId }).from(schema.members).where(eq(schema.members.userId, userId))
  ).map((r) => r.c);
  // Conversations the account took part in, even ones it already left (its log entries and messages).
  const authored = (
    await db
      .selectDistinct({ c: schema.membershipLog.conversationId })
      .from(schema.membershipLog)
      .where(eq(schema.membershipLog.authorUserId, userId))
  ).map((r) => r.c);
  const conversationIds = [...new Set([...memberOf, ...authored])];

  // Conversations nobody else is in go completely (log, envelopes, mailboxes, and their object's storage).
  const orphaned: string[] = [];
  for (const c of conversationIds) {
    const others = await db
      .select({ n: sql<number>`count(*)` })
      .from(schema.members)
      .where(sql`${schema.members.conversationId} = ${c} AND ${schema.members.userId} != ${userId}`)
      .get();
    if (Number(others?.n ?? 0) === 0) orphaned.push(c);
  }

  const ctx: AccountDeletionContext = {
    env,
    db,
    userId,
    deviceIds,
    conversationIds,
    orphanedConversationIds: orphaned,
  };
  for (const h of hooks.filter((x) => x.phase === 'before')) {
    try {
      await h.run(ctx);
    } catch (err) {
      log('error', 'account_delete_hook_failed', { hook: h.name, type: err instanceof Error ? err.name : 'unknown' });
      throw new AppError(503, 'account_deletion_incomplete', 'account deletion could not finish; try again');
    }
  }

  const stmts: string[] = [];
  const binds: unknown[][] = [];
  const add = (q: string, ...b: unknown[]) => {
    stmts.push(q);
    binds.push(b);
  };
  // Table and column names below come from constants or from sqlite_master; every value is bound.
  for (const c of orphaned) {
    for (const t of ['mailbox', 'group_envelopes', 'ws_tickets', 'members', 'membership_log']) {
      add(`DELETE FROM ${quote(t)} WHERE conversation_id = ?1`, c);
    }
    add('DELETE FROM conversations WHERE id = ?1', c);
  }
  // Messages it sent that others still wait for: kept for them, sender replaced by the tombstone.
  add(
    "UPDATE mailbox SET sender_user_id = ?2, sender_device_id = ?2, client_msg_id = 'deleted-' || seq WHERE sender_user_id = ?1",
    userId,
    DELETED_USER,
  );
  // Other accounts' audit rows that name it (e.g. "removed by an admin") keep the event, not the id.
  add(
    "UPDATE audit_events SET details = replace(details, ?1, '[deleted account]') WHERE instr(details, ?1) > 0",
    userId,
  );
  // Every row whose account column is it, in every table; the users row last (foreign keys cascade).
  const cols = (await userColumns(env)).filter((c) => c.table !== 'membership_log');
  for (const { table, column } of cols.filter((c) => c.table !== 'users')) {
    add(`DELETE FROM ${quote(table)} WHERE ${quote(column)} = ?1`, userId);
  }
  add('DELETE FROM users WHERE id = ?1', userId);
  if (user) {
    add(
      'INSERT INTO released_usernames (name_hash, blocked_until) VALUES (?1, ?2) ON CONFLICT (name_hash) DO UPDATE SET blocked_until = excluded.blocked_until',
      usernameHash(env, user.username),
      now + LIMITS.usernameCooldownMs,
    );
  }
  add(
    "INSERT INTO audit_events (event, details) VALUES ('account_deleted', ?1)",
    JSON.stringify({ conversations: conversationIds.length }),
  );
  await d1(env).batch(
    stmts.map((q, i) =>
      d1(env)
        .prepare(q)
        .bind(...binds[i]!),
    ),
  );

  // The conversation objects: sockets closed, its devices' envelopes and cursors dropped, its sent
  // messages re-attributed to the tombstone; an orphaned conversation's storage erased.
  for (const c of conversationIds) {
    try {
      const stub = env.CONVERSATION.get(env.CONVERSATION.idFromName(c));
      if (orphaned.includes(c)) await stub.erase();
      else await stub.forgetUser(userId, deviceIds, DELETED_USER);
    } catch {
      log('warn', 'account_delete_conversation_failed', { conv: logId(env, 'c', c) });
    }
  }
  for (const h of hooks.filter((x) => x.phase === 'after')) {
    try {
      await h.run(ctx);
    } catch (err) {
      // The account is gone already (its session too): logged for the operator, who re-runs the hook.
      log('error', 'account_delete_hook_failed', { hook: h.name, type: err instanceof Error ? err.name : 'unknown' });
    }
  }
}
