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
import { Reader } from './bytes.js';
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

/** Same bytes as `new Writer().fixed(key, 32).u32(PN).u32(N)`, written in place (on every encrypt). */
export function encodeHeader(h: MessageHeader): Uint8Array {
  if (h.ratchetKey.length !== KEY_LEN) fail(ErrorCode.Decode, 'Writer.fixed', `expected ${KEY_LEN} bytes`);
  const out = new Uint8Array(HEADER_LEN);
  out.set(h.ratchetKey, 0);
  putU32(out, KEY_LEN, h.previousChainLength);
  putU32(out, KEY_LEN + 4, h.messageNumber);
  return out;
}

function putU32(out: Uint8Array, at: number, n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) fail(ErrorCode.Decode, 'u32be', 'out of range');
  out[at] = n >>> 24;
  out[at + 1] = (n >>> 16) & 0xff;
  out[at + 2] = (n >>> 8) & 0xff;
  out[at + 3] = n & 0xff;
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
