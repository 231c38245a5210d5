/**
 * The Double Ratchet message header (Signal Double Ratchet spec rev. 4 §3.1 HEADER; docs/PROTOCOL.md
 * §"Messages"). Fixed 40 bytes:
 *
 * ```text
 *  0                              32         36         40
 *  +------------------------------+----------+----------+
 *  | ratchet public key (X25519)  | PN (u32) | N (u32)  |
 *  +------------------------------+----------+----------+
 *  ratchet key: the sender's current ratchet public key, canonical (u < p, top bit clear)
 *  PN: number of messages in the sender's previous sending chain (big-endian)
 *  N:  this message's number in the current sending chain (big-endian)
 * ```
 *
 * The header is NOT encrypted. It is authenticated as AES-GCM associated data, `AD ‖ header`, exactly as
 * DR §3.4 ENCRYPT(mk, plaintext, CONCAT(AD, header)). Reasons (as Signal): the server already sees which
 * device talks to which, so the header hides little; header encryption (DR §4) needs trial decryption with
 * header keys and makes skipped-key lookup and all-or-nothing decryption more complex and slower; a
 * ratchet public key and counters reveal only message ordering, which the server sees anyway.
 *
 * Does NOT: encrypt, derive keys, or know the surrounding message framing (session.ts).
 * @module
 */
import { Reader, Writer } from './bytes.js';
import { ErrorCode, fail } from './errors.js';
import { type TheirX25519Key, theirX25519 } from './keys.js';
import { KEY_LEN } from './primitives.js';

export const HEADER_LEN = KEY_LEN + 4 + 4;

export interface MessageHeader {
  /** The sender's ratchet public key (DHs of the sender). */
  readonly ratchetKey: Uint8Array;
  /** PN: length of the sender's previous sending chain. */
  readonly previousChainLength: number;
  /** N: index of this message in the sender's current chain. */
  readonly messageNumber: number;
}

export interface DecodedHeader extends MessageHeader {
  readonly ratchetKey: TheirX25519Key;
}

export function encodeHeader(h: MessageHeader): Uint8Array {
  return new Writer().fixed(h.ratchetKey, KEY_LEN).u32(h.previousChainLength).u32(h.messageNumber).finish();
}

/** Strict: exactly 40 bytes and a canonical X25519 key, else `decode` / `invalid_key`. */
export function decodeHeader(bytes: Uint8Array): DecodedHeader {
  const op = 'decodeHeader';
  if (bytes.length !== HEADER_LEN) fail(ErrorCode.Decode, op, 'header must be 40 bytes');
  const r = new Reader(bytes, op);
  const ratchetKey = theirX25519(r.fixed(KEY_LEN), op);
  const previousChainLength = r.u32();
  const messageNumber = r.u32();
  r.end();
  return { ratchetKey, previousChainLength, messageNumber };
}
