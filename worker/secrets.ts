/** Decoding of Worker secrets. A missing or malformed secret is a deployment error (500, logged by name only). */
import { fromB64u } from '../web/src/protocol/bytes.js';
import type { Env } from './env.js';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const cache = new Map<string, Uint8Array>();

/** A 32-byte base64url secret from the environment. */
export function secretBytes(env: Env, name: 'TOTP_ENCRYPTION_KEY' | 'TOKEN_HASH_KEY'): Uint8Array {
  const raw = env[name];
  const key = `${name}:${raw}`;
  const hit = cache.get(key);
  if (hit) return hit;
  let b: Uint8Array;
  try {
    b = fromB64u(raw ?? '');
  } catch {
    throw new ConfigError(`${name} is not base64url`);
  }
  if (b.length < 32) throw new ConfigError(`${name} must be at least 32 bytes`);
  cache.set(key, b);
  return b;
}

export interface JwtKey {
  kid: string;
  key: Uint8Array;
}

/** JWT_SIGNING_KEYS = "kid1:b64u,kid2:b64u": the first signs, all verify (rotation without logouts). */
export function jwtKeys(env: Env): JwtKey[] {
  const keys = (env.JWT_SIGNING_KEYS ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => {
      const i = p.indexOf(':');
      if (i <= 0) throw new ConfigError('JWT_SIGNING_KEYS entries must be kid:base64url');
      const key = fromB64u(p.slice(i + 1));
      if (key.length < 32) throw new ConfigError('JWT signing keys must be at least 32 bytes');
      return { kid: p.slice(0, i), key };
    });
  if (keys.length === 0) throw new ConfigError('JWT_SIGNING_KEYS is empty');
  return keys;
}
