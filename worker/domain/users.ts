/**
 * Looking another user up by username — the one path both GET /api/users/by-name/:username and GraphQL
 * `user(username)` use, so neither can skip the normalisation or the per-account `lookup` rate limit
 * (GraphQL aliases would otherwise allow many lookups per request with no limit at all).
 */
import { and, eq, exists, inArray, or, sql } from 'drizzle-orm';
import { alias } from 'drizzle-orm/sqlite-core';
import { normalizeUsername } from '../../schema/auth-api.js';
import type { Db } from '../db.js';
import { schema } from '../db.js';
import type { AuthContext, Env } from '../env.js';
import { AppError } from '../errors.js';
import { enforceRateLimit } from '../limiter.js';
import { asBytes } from './common.js';

export interface UserByName {
  id: string;
  username: string;
  identityKey: Uint8Array;
  identityVersion: number;
}

/**
 * Normalises `raw` (400 `invalid_username` if it cannot be a username), counts one hit against the
 * caller's `lookup` bucket (429 `rate_limited`), then reads the user. Unknown → null.
 */
export async function lookupUserByName(
  caller: { env: Env; db: Db; auth: Pick<AuthContext, 'userId'> },
  raw: string,
): Promise<UserByName | null> {
  const name = normalizeUsername(raw);
  if (!name) {
    throw new AppError(
      400,
      'invalid_username',
      'usernames are 3-32 characters of a-z, 0-9, "_", "." and "-", starting with a letter',
    );
  }
  await enforceRateLimit(caller.env, 'lookup', [`acct:${caller.auth.userId}`]);
  const row = await caller.db
    .select({
      id: schema.users.id,
      identityKey: schema.users.identityKey,
      identityVersion: schema.users.identityVersion,
    })
    .from(schema.users)
    .where(eq(schema.users.username, name))
    .get();
  if (!row) return null;
  return { id: row.id, username: name, identityKey: asBytes(row.identityKey), identityVersion: row.identityVersion };
}

/** At most this many ids per names lookup. */
export const MAX_NAME_IDS = 100;

/** Ids per names query: 90 plus the caller's id twice stays under D1's 100 bound parameters. */
const NAME_ID_BATCH = 90;

/**
 * The usernames of `ids` that the caller may see: the caller's own, and those of users who currently
 * share a conversation with the caller (their ids are in membership logs the caller reads anyway, and a
 * direct conversation's title already carries both names). Any other id, known or not, is simply absent
 * from the answer, so the lookup cannot turn arbitrary user ids into names. Read-only, bounded by the
 * caller's own conversations.
 */
export async function usernamesForIds(
  db: Db,
  callerId: string,
  ids: readonly string[],
): Promise<{ userId: string; username: string }[]> {
  const unique = [...new Set(ids)];
  if (unique.length === 0) return [];
  const mine = alias(schema.members, 'mine');
  const theirs = alias(schema.members, 'theirs');
  const shared = db
    .select({ one: sql`1` })
    .from(mine)
    .innerJoin(theirs, eq(theirs.conversationId, mine.conversationId))
    .where(and(eq(mine.userId, callerId), eq(theirs.userId, schema.users.id)));
  // The caller's id is bound twice besides the ids, and D1 binds at most 100 parameters per statement: one
  // query per NAME_ID_BATCH ids (MAX_NAME_IDS = 100 ids in one query was a 500).
  const out: { userId: string; username: string }[] = [];
  for (let i = 0; i < unique.length; i += NAME_ID_BATCH) {
    const part = unique.slice(i, i + NAME_ID_BATCH);
    out.push(
      ...(await db
        .select({ userId: schema.users.id, username: schema.users.username })
        .from(schema.users)
        .where(and(inArray(schema.users.id, part), or(eq(schema.users.id, callerId), exists(shared))))),
    );
  }
  return out.sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
}
