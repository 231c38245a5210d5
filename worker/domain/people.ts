/**
 * People: sealed profiles and sealed private settings — the one place REST (routes/people.ts,
 * routes/users.ts) and GraphQL share their rules.
 *
 * The server never holds a key for either: a profile is sealed under its owner's profile key (shared only
 * inside end-to-end encrypted messages), the private settings under a key only the owner's devices derive.
 * What the server checks is what it can see: a sealed profile's version byte and one of its five lengths, the
 * settings' version byte, length and revision (docs/PROTOCOL.md §"Profiles", §"Private settings").
 *
 * - Profiles: the owner writes (rate limit `people`); any signed-in user reads any user's sealed profile
 *   (rate limit `profile`, per account). No profile and no such user answer the same 404 `not_found`.
 * - Private settings: only the owner reads and writes. A write must carry exactly the stored revision + 1
 *   (1 for the first): compare-and-swap in one statement, so two devices never overwrite each other unseen;
 *   otherwise 409 `revision_conflict` with the current revision.
 *
 * Does NOT: open anything, or log sizes beyond the size class the length already shows.
 * @module
 */
import { and, eq } from 'drizzle-orm';
import { sealedSettingsRevision } from '../../web/src/protocol/private-settings.js';
import { isSealedProfileShape } from '../../web/src/protocol/profile.js';
import { schema } from '../db.js';
import { AppError } from '../errors.js';
import { enforceRateLimit } from '../limiter.js';
import { asBytes, type Caller } from './common.js';

export interface SealedProfileRow {
  readonly userId: string;
  readonly sealed: Uint8Array;
  readonly updatedAt: number;
}

/** Stores the caller's sealed profile (replacing the previous one). 422 `invalid_profile` for another shape. */
export async function putProfile(caller: Caller, sealed: Uint8Array): Promise<{ updatedAt: number }> {
  if (!isSealedProfileShape(sealed))
    throw new AppError(422, 'invalid_profile', 'not a sealed profile (version 1, one of the five sizes)');
  await enforceRateLimit(caller.env, 'people', [`acct:${caller.auth.userId}`]);
  const updatedAt = Date.now();
  await caller.db
    .insert(schema.profiles)
    .values({ userId: caller.auth.userId, sealed, updatedAt })
    .onConflictDoUpdate({ target: schema.profiles.userId, set: { sealed, updatedAt } });
  return { updatedAt };
}

/** Any user's sealed profile, for any signed-in caller (counted against the caller's `profile` bucket). */
export async function getProfile(caller: Caller, userId: string): Promise<SealedProfileRow | null> {
  await enforceRateLimit(caller.env, 'profile', [`acct:${caller.auth.userId}`]);
  const row = await caller.db
    .select({ sealed: schema.profiles.sealed, updatedAt: schema.profiles.updatedAt })
    .from(schema.profiles)
    .where(eq(schema.profiles.userId, userId))
    .get();
  return row ? { userId, sealed: asBytes(row.sealed), updatedAt: row.updatedAt } : null;
}

/** The caller's own sealed settings, or revision 0 and null before the first write. */
export async function getPrivateSettings(caller: Caller): Promise<{ revision: number; sealed: Uint8Array | null }> {
  const row = await caller.db
    .select({ revision: schema.privateSettings.revision, sealed: schema.privateSettings.sealed })
    .from(schema.privateSettings)
    .where(eq(schema.privateSettings.userId, caller.auth.userId))
    .get();
  return row ? { revision: row.revision, sealed: asBytes(row.sealed) } : { revision: 0, sealed: null };
}

/**
 * Stores the caller's sealed settings if they carry exactly the stored revision + 1; else 409
 * `revision_conflict` with `revision` (the stored one). 422 `invalid_settings` for another shape.
 */
export async function putPrivateSettings(caller: Caller, sealed: Uint8Array): Promise<{ revision: number }> {
  const revision = sealedSettingsRevision(sealed);
  if (revision === null)
    throw new AppError(422, 'invalid_settings', 'not sealed private settings (version 1, a known size, revision ≥ 1)');
  await enforceRateLimit(caller.env, 'people', [`acct:${caller.auth.userId}`]);
  const userId = caller.auth.userId;
  const updatedAt = Date.now();
  const t = schema.privateSettings;
  const stored =
    revision === 1
      ? await caller.db
          .insert(t)
          .values({ userId, revision, sealed, updatedAt })
          .onConflictDoNothing()
          .returning({ revision: t.revision })
      : await caller.db
          .update(t)
          .set({ revision, sealed, updatedAt })
          .where(and(eq(t.userId, userId), eq(t.revision, revision - 1)))
          .returning({ revision: t.revision });
  if (stored.length === 1) return { revision };
  const current = await getPrivateSettings(caller);
  throw new AppError(409, 'revision_conflict', 'the settings changed on another device: read them and try again', {
    revision: current.revision,
  });
}
