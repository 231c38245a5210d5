/**
 * Server side of the password scheme. The client sends `prehash = argon2id(password, salt(username))`
 * (web/src/protocol/password.ts, m = 19 MiB, t = 2, p = 1 — ≈ 0.35–0.5 s on the user's device); the
 * server stores `HMAC-SHA256(key = per-user random 16-byte salt, msg = prehash)` and the parameters of
 * both stages, so either can be raised later (re-hash on the next successful login).
 *
 * Why so cheap on the server: the expensive, memory-hard step already happened on the client, and a
 * stolen database still costs an attacker one argon2id per guess (the prehash is unknown). The salt makes
 * equal pre-hashes (impossible in practice: salts are per username) hash differently anyway, and a
 * dictionary of pre-hashes cannot be reused across accounts. Measured cost: see docs/API.md.
 */
import { hmacSha256 } from '../../web/src/protocol/primitives.js';

export const PASSWORD_PARAMS = {
  client: { alg: 'argon2id', m: 19456, t: 2, p: 1, salt: 'sha256(label‖username)' },
  server: { alg: 'hmac-sha256', v: 1 },
} as const;
export const PASSWORD_PARAMS_JSON = JSON.stringify(PASSWORD_PARAMS);
export const PASSWORD_SALT_LEN = 16;

export interface PasswordRecord {
  passwordHash: Uint8Array;
  passwordSalt: Uint8Array;
  passwordParams: string;
}

const rand = (n: number) => crypto.getRandomValues(new Uint8Array(n));

export function newPasswordRecord(prehash: Uint8Array, rng: (n: number) => Uint8Array = rand): PasswordRecord {
  const passwordSalt = rng(PASSWORD_SALT_LEN);
  return { passwordHash: hmacSha256(passwordSalt, prehash), passwordSalt, passwordParams: PASSWORD_PARAMS_JSON };
}

/** Constant-time for equal lengths (the lengths are public: always 32). */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

// A fixed salt/hash for unknown users: the same HMAC + comparison runs, so both paths do the same work.
const DUMMY_SALT = new Uint8Array(PASSWORD_SALT_LEN).fill(0x5a);
const DUMMY_HASH = new Uint8Array(32).fill(0xa5);

/** True iff `prehash` matches the stored record. `record === null` (unknown user) does the same work, false. */
export function checkPassword(prehash: Uint8Array, record: Omit<PasswordRecord, 'passwordParams'> | null): boolean {
  const salt = record ? new Uint8Array(record.passwordSalt) : DUMMY_SALT;
  const expected = record ? new Uint8Array(record.passwordHash) : DUMMY_HASH;
  const ok = constantTimeEqual(hmacSha256(salt, prehash), expected);
  return record !== null && ok;
}
