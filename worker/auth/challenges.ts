/**
 * Single-use, short-lived challenges that a device signs with its device signing key
 * (web/src/protocol/identity.ts signLoginChallenge / verifyLoginChallenge).
 *
 * Nothing secret is stored: the row key is tokenHash("<purpose>:<id>", 'challenge'), and the 32-byte
 * challenge is re-derived from the id as HMAC(TOKEN_HASH_KEY, "challenge-value:<purpose>:<id>") — a PRF of
 * a 256-bit random id, so it is as unpredictable as random bytes, yet neither the id nor the challenge
 * appears in D1. A challenge is consumed (deleted) by its first use, whether or not the signature then
 * verifies; purposes are separate namespaces (a device-linking challenge cannot complete a login).
 */
import { and, eq, gt, lt } from 'drizzle-orm';
import { utf8 } from '../../web/src/protocol/bytes.js';
import { hmacSha256 } from '../../web/src/protocol/primitives.js';
import type { Db } from '../db.js';
import { schema } from '../db.js';
import type { Env } from '../env.js';
import { LIMITS } from '../limits.js';
import { secretBytes } from '../secrets.js';
import { newOpaqueToken, tokenHash } from './tokens.js';

export type ChallengePurpose = 'login' | 'device';

function challengeValue(env: Env, purpose: ChallengePurpose, id: string): Uint8Array {
  return hmacSha256(secretBytes(env, 'TOKEN_HASH_KEY'), utf8(`challenge-value:${purpose}:${id}`));
}

/** Creates a challenge; also sweeps expired ones (indexed on expires_at). */
export async function issueChallenge(
  env: Env,
  db: Db,
  purpose: ChallengePurpose,
  now = Date.now(),
): Promise<{ challengeId: string; challenge: Uint8Array; expiresAt: number }> {
  const challengeId = newOpaqueToken();
  const expiresAt = now + LIMITS.loginChallengeTtlMs;
  await db.batch([
    db.delete(schema.loginChallenges).where(lt(schema.loginChallenges.expiresAt, now)),
    db
      .insert(schema.loginChallenges)
      .values({ idHash: tokenHash(env, `${purpose}:${challengeId}`, 'challenge'), expiresAt }),
  ]);
  return { challengeId, challenge: challengeValue(env, purpose, challengeId), expiresAt };
}

/** Deletes the challenge and returns its bytes, or null if it is unknown, used or expired. */
export async function consumeChallenge(
  env: Env,
  db: Db,
  purpose: ChallengePurpose,
  challengeId: string,
  now = Date.now(),
): Promise<Uint8Array | null> {
  const rows = await db
    .delete(schema.loginChallenges)
    .where(
      and(
        eq(schema.loginChallenges.idHash, tokenHash(env, `${purpose}:${challengeId}`, 'challenge')),
        gt(schema.loginChallenges.expiresAt, now),
      ),
    )
    .returning({ expiresAt: schema.loginChallenges.expiresAt });
  return rows.length === 1 ? challengeValue(env, purpose, challengeId) : null;
}
