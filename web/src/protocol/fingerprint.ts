/**
 * Safety numbers: Signal's NumericFingerprintGenerator (libsignal rust/protocol/src/fingerprint.rs;
 * docs/PROTOCOL.md §"Safety numbers"). Per side: h = SHA-512(u16be(version) ‖ key ‖ id ‖ key), then
 * `iterations − 1` times h = SHA-512(h ‖ key); the first 30 bytes give six 5-digit groups
 * (40-bit big-endian mod 100000). Display = the two 30-digit halves, lexicographically smaller first.
 * The scannable (QR) payload is libsignal's CombinedFingerprints protobuf, byte for byte.
 *
 * Our product uses the USER identity key (0x06 ‖ Ed25519 public key) and the UTF-8 user id, so adding or
 * removing devices never changes a safety number; only a user identity key change does.
 *
 * Does NOT: decide what happens on a mismatch or key change (the caller blocks sending until accepted).
 * @module
 */
import { concat, equal, fromB64u, fromHex, toB64u, utf8 } from './bytes.js';
import {
  FINGERPRINT_ITERATIONS,
  FINGERPRINT_KEY_TYPE_ED25519,
  FINGERPRINT_VERSION,
  SAFETY_QR_PREFIX,
  SAFETY_QR_TEXT_VERSION,
  SCANNABLE_FINGERPRINT_VERSION,
} from './constants.js';
import { ErrorCode, fail } from './errors.js';
import { theirEd25519 } from './keys.js';
import { sha512, sha512Iterate } from './primitives.js';

/** Length of each side's fingerprint in the scannable payload (libsignal truncates SHA-512 to 32). */
export const SCANNABLE_SIDE_LEN = 32;

/** The 64-byte iterated hash for one side. `version` is the 2-byte big-endian hash prefix (Signal: 0). */
export function fingerprintHash(iterations: number, version: number, key: Uint8Array, id: Uint8Array): Uint8Array {
  if (!Number.isInteger(iterations) || iterations <= 1 || iterations > 1_000_000)
    fail(ErrorCode.InvalidStructure, 'fingerprintHash', 'bad iterations');
  if (!Number.isInteger(version) || version < 0 || version > 0xffff)
    fail(ErrorCode.InvalidStructure, 'fingerprintHash', 'bad version');
  const h0 = sha512(concat(Uint8Array.of(version >> 8, version & 0xff), key, id, key));
  return sha512Iterate(h0, key, iterations - 1);
}

/** 30 digits: six groups of 5 bytes, each a 40-bit big-endian integer mod 100000, zero-padded. */
export function encodeDigits(hash: Uint8Array): string {
  if (hash.length < 30) fail(ErrorCode.InvalidStructure, 'encodeDigits', 'short hash');
  let s = '';
  for (let i = 0; i < 30; i += 5) {
    let n = 0;
    for (let j = 0; j < 5; j++) n = n * 256 + hash[i + j]!;
    s += String(n % 100000).padStart(5, '0');
  }
  return s;
}

/** The 60-digit displayable fingerprint, identical for both parties (smaller half first). */
export function displayableFingerprint(
  iterations: number,
  version: number,
  localKeyBytes: Uint8Array,
  localIdBytes: Uint8Array,
  remoteKeyBytes: Uint8Array,
  remoteIdBytes: Uint8Array,
): string {
  const local = encodeDigits(fingerprintHash(iterations, version, localKeyBytes, localIdBytes));
  const remote = encodeDigits(fingerprintHash(iterations, version, remoteKeyBytes, remoteIdBytes));
  return local < remote ? local + remote : remote + local;
}

const SCAN_HEAD = (v: number) => Uint8Array.of(0x08, v, 0x12, 0x22, 0x0a, 0x20);
const SCAN_MID = fromHex('1a220a20');
/** 6 + 32 + 4 + 32 */
export const SCANNABLE_LEN = 74;

/**
 * libsignal CombinedFingerprints protobuf: 08 ver ‖ 12 22 0a 20 ‖ local[32] ‖ 1a 22 0a 20 ‖ remote[32]
 * (fields: 1 version varint, 2 localFingerprint{1 content}, 3 remoteFingerprint{1 content}); version < 128.
 */
export function encodeScannable(version: number, localHash: Uint8Array, remoteHash: Uint8Array): Uint8Array {
  if (!Number.isInteger(version) || version < 0 || version > 127)
    fail(ErrorCode.InvalidStructure, 'encodeScannable', 'bad version');
  if (localHash.length < SCANNABLE_SIDE_LEN || remoteHash.length < SCANNABLE_SIDE_LEN)
    fail(ErrorCode.InvalidStructure, 'encodeScannable', 'short hash');
  return concat(
    SCAN_HEAD(version),
    localHash.subarray(0, SCANNABLE_SIDE_LEN),
    SCAN_MID,
    remoteHash.subarray(0, SCANNABLE_SIDE_LEN),
  );
}

/** Strict decode of exactly the layout encodeScannable writes. */
export function decodeScannable(bytes: Uint8Array): { version: number; local: Uint8Array; remote: Uint8Array } {
  const op = 'decodeScannable';
  if (bytes.length !== SCANNABLE_LEN) fail(ErrorCode.Decode, op, 'bad length');
  const version = bytes[1]!;
  if (version > 127 || !equal(bytes.subarray(0, 6), SCAN_HEAD(version))) fail(ErrorCode.Decode, op, 'bad header');
  if (!equal(bytes.subarray(38, 42), SCAN_MID)) fail(ErrorCode.Decode, op, 'bad field');
  return { version, local: bytes.slice(6, 38), remote: bytes.slice(42, 74) };
}

/**
 * True iff the payload scanned from the other party's screen is the mirror of ours (their local = our
 * remote and vice versa), compared in constant time. A different version is a `decode` error.
 */
export function compareScanned(ours: Uint8Array, scanned: Uint8Array): boolean {
  const a = decodeScannable(ours);
  const b = decodeScannable(scanned);
  if (a.version !== b.version) fail(ErrorCode.Decode, 'compareScanned', 'version mismatch');
  const same1 = equal(a.local, b.remote);
  const same2 = equal(a.remote, b.local);
  return same1 && same2;
}

/** The text a safety-number QR code carries: `e2echat-sn:1:` ‖ base64url(the 74-byte payload), 112 characters. */
export function encodeScannableText(scannable: Uint8Array): string {
  decodeScannable(scannable); // only a well-formed payload is ever shown
  return `${SAFETY_QR_PREFIX}${SAFETY_QR_TEXT_VERSION}:${toB64u(scannable)}`;
}

/**
 * Strict decode of a scanned (or pasted) safety-number code: the prefix, text version 1, canonical
 * base64url of exactly a well-formed payload. Anything else is a `decode` error (a QR of something else).
 */
export function decodeScannableText(text: string): Uint8Array {
  const op = 'decodeScannableText';
  const head = `${SAFETY_QR_PREFIX}${SAFETY_QR_TEXT_VERSION}:`;
  const t = text.trim();
  if (!t.startsWith(head)) fail(ErrorCode.Decode, op, 'not a safety-number code');
  const body = t.slice(head.length);
  if (!/^[A-Za-z0-9_-]+$/.test(body)) fail(ErrorCode.Decode, op, 'bad encoding');
  const bytes = fromB64u(body);
  if (toB64u(bytes) !== body) fail(ErrorCode.Decode, op, 'non-canonical encoding');
  decodeScannable(bytes);
  return bytes;
}

/** Compares our payload with a scanned code's text: true iff it is the mirror of ours (compareScanned). */
export function compareScannedText(ours: Uint8Array, text: string): boolean {
  return compareScanned(ours, decodeScannableText(text));
}

export interface SafetyNumber {
  /** 60 digits. */
  readonly digits: string;
  /** 12 groups of 5 digits separated by spaces, for display. */
  readonly display: string;
  /** The QR payload (libsignal CombinedFingerprints layout, version SCANNABLE_FINGERPRINT_VERSION). */
  readonly scannable: Uint8Array;
}

/** Fingerprint key bytes for a user identity key: FINGERPRINT_KEY_TYPE_ED25519 ‖ Ed25519 public key. */
export function fingerprintKeyBytes(userIdentityKey: Uint8Array): Uint8Array {
  theirEd25519(userIdentityKey, 'fingerprintKeyBytes');
  return concat(Uint8Array.of(FINGERPRINT_KEY_TYPE_ED25519), userIdentityKey);
}

/** The safety number between two USERS (device keys never enter it). */
export function safetyNumber(
  localUserIdentityKey: Uint8Array,
  localUserId: string,
  remoteUserIdentityKey: Uint8Array,
  remoteUserId: string,
): SafetyNumber {
  const lk = fingerprintKeyBytes(localUserIdentityKey);
  const rk = fingerprintKeyBytes(remoteUserIdentityKey);
  const lh = fingerprintHash(FINGERPRINT_ITERATIONS, FINGERPRINT_VERSION, lk, utf8(localUserId));
  const rh = fingerprintHash(FINGERPRINT_ITERATIONS, FINGERPRINT_VERSION, rk, utf8(remoteUserId));
  const l = encodeDigits(lh);
  const r = encodeDigits(rh);
  const digits = l < r ? l + r : r + l;
  return {
    digits,
    display: digits.match(/.{5}/g)!.join(' '),
    scannable: encodeScannable(SCANNABLE_FINGERPRINT_VERSION, lh, rh),
  };
}
