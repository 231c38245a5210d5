/**
 * Password pre-hashing on the client (RFC 9106 argon2id at OWASP's minimum: m = 19 MiB, t = 2, p = 1).
 *
 * The server never receives the password: it receives `prehash = argon2id(password, salt)` with a salt
 * derived from the normalised username (so login needs no salt lookup that would reveal whether a username
 * exists), and stores its own salted hash of the prehash. An attacker holding the database must still pay
 * one argon2id per guess. Usernames are unique, so the derived salt is unique per account.
 *
 * Does NOT: normalise usernames (the caller passes the normalised form), or talk to the server.
 * @module
 */
import { concat, utf8 } from './bytes.js';
import { LABEL_PASSWORD_SALT, PASSWORD_ARGON2 } from './constants.js';
import { ErrorCode, fail } from './errors.js';
import { argon2id, sha256 } from './primitives.js';

/** Salt = SHA-256(LABEL_PASSWORD_SALT ‖ 0x00 ‖ UTF-8(normalised username))[0..16]. */
export function passwordSalt(normalizedUsername: string): Uint8Array {
  if (!normalizedUsername) fail(ErrorCode.Decode, 'passwordSalt', 'empty username');
  return sha256(concat(utf8(LABEL_PASSWORD_SALT), Uint8Array.of(0), utf8(normalizedUsername))).slice(0, 16);
}

/** The 32-byte value sent to the server in place of the password (NFKC-normalised UTF-8 password). */
export function passwordPrehash(
  password: string,
  normalizedUsername: string,
  onProgress?: (fraction: number) => void,
): Promise<Uint8Array> {
  if (password.length === 0) fail(ErrorCode.Decode, 'passwordPrehash', 'empty password');
  return argon2id(utf8(password.normalize('NFKC')), passwordSalt(normalizedUsername), PASSWORD_ARGON2, onProgress);
}
