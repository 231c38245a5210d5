/**
 * Looking another user up by username — the one path both GET /api/users/by-name/:username and GraphQL
 * `user(username)` use, so neither can skip the normalisation or the per-account `lookup` rate limit
 * (GraphQL aliases would otherwise allow many lookups per request with no limit at all).
 */
import { eq } from 'drizzle-orm';
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
