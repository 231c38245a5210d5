/**
 * Typed protocol errors, modelled on libsignal's `node/ts/Errors.ts`: every error carries a stable
 * `code` (part of our public API — never rename one) and the `operation` that raised it.
 *
 * Does NOT: carry secrets. Messages name what failed, never key bytes or plaintext.
 * Callers outside the core see a single `decryption_failed` for every authentication failure
 * (duplicates excepted) so an attacker learns nothing from which check failed.
 * @module
 */

export const ErrorCode = {
  /** Bytes that do not parse: wrong length, unknown version, truncated, trailing data. */
  Decode: 'decode',
  /** A public key of the wrong length, non-canonical, or of low order. */
  InvalidKey: 'invalid_key',
  /** An Ed25519 signature that does not verify (strict RFC 8032 rules). */
  Signature: 'signature',
  /** A peer identity that does not match the one we trust (key change). */
  UntrustedIdentity: 'untrusted_identity',
  /** A message whose key was already used (replay or duplicate delivery). */
  Duplicate: 'duplicate',
  /** A message counter too far ahead (more than MAX_SKIP keys would be derived). */
  TooFarAhead: 'too_far_ahead',
  /** Authentication failed: bad tag, wrong session, tampered header. */
  DecryptionFailed: 'decryption_failed',
  /** Sending from a state older than the last one persisted (would reuse a key/nonce pair). */
  StaleState: 'stale_state',
  /** A session that must not be used to send (too old, unacknowledged for too long). */
  SessionExpired: 'session_expired',
  /** No session / sender key for this peer or chain. */
  NoSession: 'no_session',
  /** A device list, certificate or membership entry that breaks a rule (version, chain, role). */
  InvalidStructure: 'invalid_structure',
  /** An action that the author's role does not allow. */
  Forbidden: 'forbidden',
  /** A limit from constants.ts was exceeded (sizes, counts). */
  LimitExceeded: 'limit_exceeded',
  /** The Diffie-Hellman output was all zeros (low-order peer key). */
  ZeroSharedSecret: 'zero_shared_secret',
  /** A message index at or past the authenticated end (the next chain's PN) of an older receiving chain. */
  BeyondChainEnd: 'beyond_chain_end',
  /** A PQXDH init naming a (user id, device id) other than the sender the transport authenticated. */
  SenderMismatch: 'sender_mismatch',
  /** A Merkle inclusion or consistency proof that does not verify (key transparency). */
  Proof: 'proof',
  /** A passphrase-encrypted export whose key check does not match: wrong passphrase (or a changed header). */
  WrongPassphrase: 'wrong_passphrase',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  constructor(
    readonly code: ErrorCode,
    readonly operation: string,
    message?: string,
  ) {
    super(`${operation}: ${message ?? code}`);
  }
}

/** Type guard: `is(err, 'duplicate')`. */
export function is(err: unknown, code?: ErrorCode): err is ProtocolError {
  return err instanceof ProtocolError && (code === undefined || err.code === code);
}

/** Throw a ProtocolError. `fail(code, op, msg)` reads well in one-line checks. */
export function fail(code: ErrorCode, operation: string, message?: string): never {
  throw new ProtocolError(code, operation, message);
}

/**
 * Collapse every authentication-type failure into one generic `decryption_failed` for callers outside
 * the core, keeping `duplicate` (the client needs it to dedupe), `no_session` (ask for a session or a
 * distribution), `untrusted_identity` (a key change to show) and `stale_state` as they are. Everything
 * else — including `beyond_chain_end`, `sender_mismatch` and `limit_exceeded` — leaves as
 * `decryption_failed`, so a prober learns nothing from which check refused its message.
 */
export function publicDecryptError(err: unknown, operation: string): ProtocolError {
  if (is(err, ErrorCode.Duplicate)) return err;
  if (is(err, ErrorCode.StaleState) || is(err, ErrorCode.NoSession) || is(err, ErrorCode.UntrustedIdentity)) {
    return err;
  }
  return new ProtocolError(ErrorCode.DecryptionFailed, operation);
}
