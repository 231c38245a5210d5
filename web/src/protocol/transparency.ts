/**
 * Key transparency formats (docs/PROTOCOL.md §"Key transparency"): the log entry that binds a username
 * and user id to a user identity key at a version, the signed tree head (size, root, time) the log
 * publishes, and the checks a client runs on them — a head's signature under the log key the client
 * build pins, an entry's inclusion in a head, and one head's consistency with another. The tree itself
 * is RFC 9162's (merkle.ts); a leaf's data is the encoded entry.
 *
 * Does NOT: decide what to do with a failure (the engine refuses the key and warns the user), keep the
 * newest head a client has seen, fetch proofs, or read a clock (freshness is the caller's policy).
 * @module
 */
import { equal, Reader, Writer } from './bytes.js';
import { KT_MAX_PROOF_HASHES, KT_MAX_USERNAME_LEN, PROTOCOL_VERSION, SIG_KT_TREE_HEAD } from './constants.js';
import { ErrorCode, fail } from './errors.js';
import { assertId, readId, signatureInput } from './identity.js';
import { type OurEd25519KeyPair, theirEd25519 } from './keys.js';
import { HASH_LEN, leafHash, verifyConsistency, verifyInclusion } from './merkle.js';
import { type Curve25519, KEY_LEN, SIG_LEN } from './primitives.js';

// ---- log entries -----------------------------------------------------------------------------------------

/**
 * One leaf of the log. `key`: a registration (version 1) or an identity reset (version + 1) — from now on
 * `username` and `userId` mean `identityKey`. `deleted`: the account was deleted (version + 1); it names
 * neither the username nor a key, so nothing personal stays readable in the log.
 */
export type KtEntry =
  | {
      readonly kind: 'key';
      readonly userId: string;
      readonly version: number;
      /** Milliseconds since the epoch when the log accepted the entry (shown to the account's owner). */
      readonly time: number;
      readonly username: string;
      readonly identityKey: Uint8Array;
    }
  | { readonly kind: 'deleted'; readonly userId: string; readonly version: number; readonly time: number };

const KIND_CODE = { key: 1, deleted: 2 } as const;

function assertEntry(e: KtEntry, op: string): void {
  assertId(e.userId, 'userId', op);
  if (!Number.isInteger(e.version) || e.version < 1 || e.version > 0xffffffff)
    fail(ErrorCode.InvalidStructure, op, 'bad version');
  if (!Number.isSafeInteger(e.time) || e.time < 0) fail(ErrorCode.InvalidStructure, op, 'bad time');
  if (e.kind === 'key') {
    const len = new TextEncoder().encode(e.username).length;
    if (len === 0 || len > KT_MAX_USERNAME_LEN) fail(ErrorCode.InvalidStructure, op, 'bad username');
    theirEd25519(e.identityKey, op);
  }
}

/** `u8 0x01 ‖ u8 kind ‖ id userId ‖ u32 version ‖ u64 time [‖ str username ‖ UIK[32]]` (kind 1 only). */
export function encodeKtEntry(e: KtEntry): Uint8Array {
  assertEntry(e, 'encodeKtEntry');
  const w = new Writer().u8(PROTOCOL_VERSION).u8(KIND_CODE[e.kind]).str(e.userId).u32(e.version).u64(e.time);
  if (e.kind === 'key') w.str(e.username).fixed(e.identityKey, KEY_LEN);
  return w.finish();
}

export function decodeKtEntry(bytes: Uint8Array): KtEntry {
  const op = 'decodeKtEntry';
  const r = new Reader(bytes, op);
  if (r.u8() !== PROTOCOL_VERSION) fail(ErrorCode.Decode, op, 'unknown version');
  const code = r.u8();
  const userId = readId(r, op);
  const version = r.u32();
  const time = r.u64();
  let e: KtEntry;
  if (code === KIND_CODE.key) {
    const username = r.str(KT_MAX_USERNAME_LEN);
    const identityKey = r.fixed(KEY_LEN);
    e = { kind: 'key', userId, version, time, username, identityKey };
  } else if (code === KIND_CODE.deleted) {
    e = { kind: 'deleted', userId, version, time };
  } else {
    return fail(ErrorCode.Decode, op, 'unknown entry kind');
  }
  r.end();
  if (version < 1) fail(ErrorCode.Decode, op, 'bad version');
  if (e.kind === 'key') {
    if (e.username.length === 0) fail(ErrorCode.Decode, op, 'empty username');
    theirEd25519(e.identityKey, op);
  }
  return e;
}

/** The leaf hash of an encoded entry (RFC 9162 §2.1.1). */
export const ktLeafHash = (entry: Uint8Array): Uint8Array => leafHash(entry);

// ---- signed tree heads ---------------------------------------------------------------------------------------

export interface TreeHead {
  /** Number of entries. */
  readonly size: number;
  /** MTH of the first `size` entries (merkle.ts). */
  readonly root: Uint8Array;
  /** Milliseconds since the epoch when the log signed it. */
  readonly time: number;
}

declare const verifiedHead: unique symbol;
/** A head whose signature was checked under the pinned log key. Only produced by `verifyTreeHead`. */
export type VerifiedTreeHead = TreeHead & { readonly bytes: Uint8Array; readonly [verifiedHead]: true };

/** `u8 0x01 ‖ u64 size ‖ root[32] ‖ u64 time` — the signed body. */
export function encodeTreeHeadBody(h: TreeHead): Uint8Array {
  const op = 'encodeTreeHead';
  if (!Number.isSafeInteger(h.size) || h.size < 0) fail(ErrorCode.InvalidStructure, op, 'bad size');
  if (!Number.isSafeInteger(h.time) || h.time < 0) fail(ErrorCode.InvalidStructure, op, 'bad time');
  return new Writer().u8(PROTOCOL_VERSION).u64(h.size).fixed(h.root, HASH_LEN).u64(h.time).finish();
}

/** The signed tree head: `body ‖ Ed25519(logKey, SigInput(SIG_KT_TREE_HEAD, body))`. */
export async function signTreeHead(curves: Curve25519, logKey: OurEd25519KeyPair, h: TreeHead): Promise<Uint8Array> {
  const body = encodeTreeHeadBody(h);
  const sig = await curves.ed25519Sign(logKey, signatureInput(SIG_KT_TREE_HEAD, body));
  return new Writer().fixed(body, body.length).fixed(sig, SIG_LEN).finish();
}

/** Parses a signed head WITHOUT checking its signature (`verifyTreeHead` does). */
export function decodeTreeHead(
  bytes: Uint8Array,
): TreeHead & { readonly body: Uint8Array; readonly signature: Uint8Array } {
  const op = 'decodeTreeHead';
  const r = new Reader(bytes, op);
  if (r.u8() !== PROTOCOL_VERSION) fail(ErrorCode.Decode, op, 'unknown version');
  const size = r.u64();
  const root = r.fixed(HASH_LEN);
  const time = r.u64();
  const bodyLen = bytes.length - r.remaining;
  const signature = r.fixed(SIG_LEN);
  r.end();
  return { size, root, time, body: bytes.slice(0, bodyLen), signature };
}

/** Decodes and checks the signature under the log's public key (`signature` on failure). */
export async function verifyTreeHead(
  curves: Curve25519,
  logPublicKey: Uint8Array,
  bytes: Uint8Array,
): Promise<VerifiedTreeHead> {
  const h = decodeTreeHead(bytes);
  const key = theirEd25519(logPublicKey, 'verifyTreeHead');
  if (!(await curves.ed25519Verify(key, signatureInput(SIG_KT_TREE_HEAD, h.body), h.signature)))
    fail(ErrorCode.Signature, 'verifyTreeHead', 'tree head signature');
  return { size: h.size, root: h.root, time: h.time, bytes: bytes.slice() } as VerifiedTreeHead;
}

// ---- proofs against verified heads ------------------------------------------------------------------------------

/** Throws `proof` unless `entry` (encoded) is leaf `index` of `head`'s tree; returns the decoded entry. */
export function verifyEntryInclusion(
  head: VerifiedTreeHead,
  index: number,
  entry: Uint8Array,
  proof: readonly Uint8Array[],
): KtEntry {
  if (proof.length > KT_MAX_PROOF_HASHES) fail(ErrorCode.Proof, 'verifyEntryInclusion', 'proof too long');
  const decoded = decodeKtEntry(entry);
  verifyInclusion(index, head.size, ktLeafHash(entry), proof, head.root);
  return decoded;
}

/**
 * Throws `proof` unless `newer` extends `older` (RFC 9162 §2.1.4.2). Every tree extends the empty one, and
 * two heads of one size must have one root — a different root is a fork (the log showed two histories).
 */
export function verifyHeadConsistency(older: TreeHead, newer: TreeHead, proof: readonly Uint8Array[]): void {
  if (older.size === 0) {
    if (proof.length !== 0) fail(ErrorCode.Proof, 'verifyHeadConsistency', 'proof from the empty tree');
    return;
  }
  verifyConsistency(older.size, newer.size, proof, older.root, newer.root);
}

/** True when two heads of the same size disagree on the root: proof that the log forked. */
export const isFork = (a: TreeHead, b: TreeHead): boolean => a.size === b.size && !equal(a.root, b.root);
