/**
 * Length-hiding padding for message plaintexts (docs/PROTOCOL.md §"Messages"): ISO/IEC 7816-4 style —
 * one 0x80 byte, then zeros up to the next multiple of PADDING_BLOCK (160 bytes, as Signal pads). The
 * padding is deterministic: no randomness, so known-answer vectors stay reproducible. It hides the exact
 * length of short messages from the server; it is applied inside the AEAD, so it is authenticated.
 *
 * Does NOT: encrypt, or hide the size class (a 161-byte message is visibly longer than a 159-byte one).
 * @module
 */
import { MAX_PLAINTEXT_LEN, PADDING_BLOCK } from './constants.js';
import { ErrorCode, fail } from './errors.js';

/** Longest padded plaintext: MAX_PLAINTEXT_LEN bytes plus its padding (65,600 bytes = 410 blocks). */
export const MAX_PADDED_LEN = (Math.floor(MAX_PLAINTEXT_LEN / PADDING_BLOCK) + 1) * PADDING_BLOCK;

/**
 * Pads to the next multiple of `block` (message plaintexts: PADDING_BLOCK, at most MAX_PLAINTEXT_LEN; the
 * linking formats pass their own block and bound).
 */
export function pad(plaintext: Uint8Array, block = PADDING_BLOCK, max = MAX_PLAINTEXT_LEN): Uint8Array {
  if (plaintext.length > max) fail(ErrorCode.LimitExceeded, 'pad', 'plaintext too long');
  const out = new Uint8Array((Math.floor(plaintext.length / block) + 1) * block);
  out.set(plaintext);
  out[plaintext.length] = 0x80;
  return out;
}

/**
 * Strict: a non-zero multiple of the block whose padding — the last 0x80 byte and the zeros after it — is
 * 1 to `block` bytes long (`decode` otherwise; `pad` writes a whole block for an empty or
 * block-aligned plaintext), and a plaintext of at most `max` bytes (`limit_exceeded`): the
 * limit `pad` enforces on send holds on receive too.
 */
export function unpad(padded: Uint8Array, block = PADDING_BLOCK, max = MAX_PLAINTEXT_LEN): Uint8Array {
  const op = 'unpad';
  if (padded.length === 0 || padded.length % block !== 0) fail(ErrorCode.Decode, op, 'bad padded length');
  let i = padded.length - 1;
  while (i >= 0 && padded[i] === 0) i--;
  if (i < 0 || padded[i] !== 0x80 || padded.length - i > block) fail(ErrorCode.Decode, op, 'bad padding');
  if (i > max) fail(ErrorCode.LimitExceeded, op, 'plaintext too long');
  return padded.subarray(0, i);
}
