/**
 * Access tokens: HS256 JWTs (jose) with a key id, pinned algorithm, issuer and audience, ≤ 15 min.
 * Refresh tokens: opaque 32 random bytes, stored only as HMAC(TOKEN_HASH_KEY, token).
 */
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { toB64u } from '../../web/src/protocol/bytes.js';
import { hmacSha256 } from '../../web/src/protocol/primitives.js';
import type { AuthContext, Env } from '../env.js';
import { AppError } from '../errors.js';
import { LIMITS } from '../limits.js';
import { jwtKeys, secretBytes } from '../secrets.js';

export const ISSUER = 'e2e-chat';
export const AUDIENCE = 'e2e-chat/api';
const ALG = 'HS256';

export async function issueAccessToken(
  env: Env,
  a: AuthContext,
  nowSec = Math.floor(Date.now() / 1000),
): Promise<string> {
  const [signing] = jwtKeys(env);
  return new SignJWT({ did: a.deviceId, fam: a.familyId })
    .setProtectedHeader({ alg: ALG, kid: signing!.kid, typ: 'at+jwt' })
    .setSubject(a.userId)
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt(nowSec)
    .setExpirationTime(nowSec + LIMITS.accessTokenTtlSec)
    .sign(signing!.key);
}

/** Verifies signature (by kid), alg (HS256 only), iss, aud, exp; throws 401 `invalid_token` otherwise. */
export async function verifyAccessToken(env: Env, token: string): Promise<AuthContext> {
  const keys = jwtKeys(env);
  try {
    const { payload } = await jwtVerify(
      token,
      (header) => {
        const k = keys.find((x) => x.kid === header.kid);
        if (!k) throw new joseErrors.JWSSignatureVerificationFailed('unknown key id');
        return k.key;
      },
      {
        algorithms: [ALG],
        issuer: ISSUER,
        audience: AUDIENCE,
        typ: 'at+jwt',
        maxTokenAge: LIMITS.accessTokenTtlSec + 5,
      },
    );
    const { sub, did, fam } = payload as { sub?: unknown; did?: unknown; fam?: unknown };
    if (typeof sub !== 'string' || typeof did !== 'string' || typeof fam !== 'string') throw new Error('claims');
    return { userId: sub, deviceId: did, familyId: fam };
  } catch {
    throw new AppError(401, 'invalid_token', 'access token missing, invalid or expired');
  }
}

export function newOpaqueToken(rng: (n: number) => Uint8Array = (n) => crypto.getRandomValues(new Uint8Array(n))) {
  return toB64u(rng(32));
}

/** Keyed hash under which refresh tokens, recovery codes and challenges are stored. */
export function tokenHash(
  env: Env,
  token: string,
  purpose: 'refresh' | 'recovery' | 'challenge' | 'mfa' | 'linking',
): Uint8Array {
  return hmacSha256(secretBytes(env, 'TOKEN_HASH_KEY'), new TextEncoder().encode(`${purpose}:${token}`));
}
