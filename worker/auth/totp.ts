/**
 * TOTP (RFC 6238 via `otpauth`: SHA-1, 6 digits, 30 s, window ±1 step) and its at-rest encryption.
 *
 * Secrets are stored as nonce[12] ‖ AES-256-GCM(key, nonce, secret, AD = "e2e-chat/v1 totp:" ‖ userId),
 * the key derived (HKDF-SHA256) from TOTP_ENCRYPTION_KEY; binding the user id stops a row being moved to
 * another account. A code is accepted only for a time step greater than the last accepted one (no replay).
 * Recovery codes: 10 × 80 random bits, shown once, stored as tokenHash(…, 'recovery').
 */
import * as OTPAuth from 'otpauth';
import { concat, utf8 } from '../../web/src/protocol/bytes.js';
import { aesGcmDecrypt, aesGcmEncrypt, GCM_NONCE_LEN, hkdfSha256 } from '../../web/src/protocol/primitives.js';
import type { Env } from '../env.js';
import { secretBytes } from '../secrets.js';

export const TOTP_PERIOD_SEC = 30;
export const TOTP_DIGITS = 6;
export const TOTP_WINDOW = 1;
export const TOTP_ISSUER = 'e2e-chat';
export const RECOVERY_CODE_COUNT = 10;

const rand = (n: number) => crypto.getRandomValues(new Uint8Array(n));

function encKey(env: Env): Uint8Array {
  return hkdfSha256(secretBytes(env, 'TOTP_ENCRYPTION_KEY'), new Uint8Array(0), utf8('e2e-chat/v1 totp at rest'), 32);
}
const ad = (userId: string) => utf8(`e2e-chat/v1 totp:${userId}`);

export function encryptTotpSecret(env: Env, userId: string, secret: Uint8Array): Uint8Array {
  const nonce = rand(GCM_NONCE_LEN);
  return concat(nonce, aesGcmEncrypt(encKey(env), nonce, secret, ad(userId)));
}

export function decryptTotpSecret(env: Env, userId: string, stored: Uint8Array): Uint8Array {
  const b = new Uint8Array(stored);
  return aesGcmDecrypt(encKey(env), b.subarray(0, GCM_NONCE_LEN), b.subarray(GCM_NONCE_LEN), ad(userId));
}

function totp(secret: Uint8Array, label = 'account'): OTPAuth.TOTP {
  return new OTPAuth.TOTP({
    issuer: TOTP_ISSUER,
    label,
    algorithm: 'SHA1',
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_SEC,
    secret: new OTPAuth.Secret({ buffer: secret.slice().buffer }),
  });
}

export function newTotpSecret(): Uint8Array {
  return rand(20);
}

export function otpauthUri(secret: Uint8Array, username: string): { uri: string; base32: string } {
  const t = totp(secret, username);
  return { uri: t.toString(), base32: t.secret.base32 };
}

/** The time step the code belongs to (within ±TOTP_WINDOW of now), or null if it is not valid now. */
export function totpStep(secret: Uint8Array, code: string, now = Date.now()): number | null {
  const delta = totp(secret).validate({ token: code, timestamp: now, window: TOTP_WINDOW });
  if (delta === null) return null;
  return Math.floor(now / 1000 / TOTP_PERIOD_SEC) + delta;
}

/** For tests and clients: the code for a given time. */
export function totpCodeAt(secret: Uint8Array, now: number): string {
  return totp(secret).generate({ timestamp: now });
}

const ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789'; // 31 symbols, no 0/o, 1/l/i
/** 16 symbols ≈ 79 bits, shown as four groups of four. */
export function newRecoveryCode(rng: (n: number) => Uint8Array = rand): string {
  const out: string[] = [];
  while (out.length < 16) {
    for (const b of rng(32)) {
      if (b < 248 && out.length < 16) out.push(ALPHABET[b % 31]!); // rejection sampling: 248 = 8 × 31
    }
  }
  return [0, 4, 8, 12].map((i) => out.slice(i, i + 4).join('')).join('-');
}

/** Canonical form for hashing: lower case, no spaces or dashes. */
export function canonicalRecoveryCode(code: string): string {
  return code.toLowerCase().replace(/[\s-]/g, '');
}
