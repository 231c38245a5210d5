/**
 * Group sender keys (after Signal's SenderKey, libsignal `sender_keys.rs` / `group_cipher.rs`;
 * docs/PROTOCOL.md §"Sender keys"). Per (sender device, conversation) the sender holds a chain:
 * a random u32 chain id, an iteration index, a chain key (kdf-chains.ts `SenderChainKey`: HMAC chain with
 * LABEL_SENDER_CHAIN-separated seeds) and an Ed25519 signing key pair.
 *
 * - The SenderKeyDistributionMessage (conversation id, chain id, iteration, chain key, signing public key)
 *   travels inside the pairwise sessions to each member device.
 * - A SenderKeyMessage is AES-256-GCM under the iteration's message keys (AD = its 9-byte prefix), signed by
 *   the chain's signing key over SIG_SENDER_MESSAGE ‖ body. The receiver accepts nothing before the signature
 *   verified: for the chain's next iteration or a stored skipped seed the key derivation and AES-GCM open run
 *   on the side, concurrently with the signature check, and are dropped unless it succeeds; a message that
 *   would skip keys is verified BEFORE any key derivation. It refuses a (chain, iteration) already used (`duplicate`, PITFALLS 18) and more than
 *   MAX_SENDER_SKIP ahead (`too_far_ahead`), and keeps MAX_SENDER_SKIPPED_KEYS skipped keys per chain.
 * - Decryption is all-or-nothing: immutable state, a new record only after authentication succeeded.
 * - Rotation = `createSenderKey` again (fresh chain id, chain key and signing key), distributed only to the
 *   current members: a removed member holds nothing that decrypts later messages (PITFALLS 19). Receivers
 *   keep MAX_SENDER_KEY_STATES chains per sender for late messages; a distribution for a chain id already
 *   held is ignored, so a replayed distribution can never rewind a chain and re-open old iterations.
 *
 * Does NOT: choose when to rotate or to whom to distribute (the engine does, from the membership log),
 * send anything, or store state.
 * @module
 */
import { concat, Reader, u32be, Writer } from './bytes.js';
import {
  MAX_SENDER_KEY_STATES,
  MAX_SENDER_SKIP,
  MAX_SENDER_SKIPPED_KEYS,
  PROTOCOL_VERSION,
  SIG_SENDER_MESSAGE,
  STATE_VERSION,
} from './constants.js';
import { ErrorCode, fail, publicDecryptError } from './errors.js';
import { assertId, readId } from './identity.js';
import { MessageKeys, SenderChainKey } from './kdf-chains.js';
import { generateEd25519, type OurEd25519KeyPair, type TheirEd25519Key, theirEd25519 } from './keys.js';
import { MAX_PADDED_LEN, pad, unpad } from './padding.js';
import { aesGcmEncrypt, type Curve25519, GCM_TAG_LEN, KEY_LEN, type Rng, SIG_LEN } from './primitives.js';
import { type SkippedKey, SkippedKeys } from './skipped-keys.js';

/** Our own sending chain for one conversation. */
export interface OwnSenderKey {
  readonly chainId: number;
  readonly chain: SenderChainKey;
  readonly signingKey: OurEd25519KeyPair;
}

/** A member's chain as we received it. */
export interface ReceivedSenderKey {
  readonly chainId: number;
  readonly signingKey: TheirEd25519Key;
  readonly chain: SenderChainKey;
  readonly skipped: SkippedKeys;
}

/** Chains of ONE sender device in ONE conversation, newest first (≤ MAX_SENDER_KEY_STATES). */
export interface SenderKeyRecord {
  readonly states: readonly ReceivedSenderKey[];
}

export interface SenderKeyDistribution {
  readonly conversationId: string;
  readonly chainId: number;
  readonly iteration: number;
  readonly chainKey: Uint8Array;
  readonly signingKey: Uint8Array;
}

export const emptySenderKeyRecord = (): SenderKeyRecord => ({ states: [] });

const SIG_PREFIX = new Writer().str(SIG_SENDER_MESSAGE).finish(); // = identity.ts signatureInput(label, ·)
const PREFIX_LEN = 9;
/** Largest SenderKeyMessage: prefix, the padded maximum plaintext with its GCM tag, the signature. */
const MAX_MESSAGE_LEN = PREFIX_LEN + MAX_PADDED_LEN + GCM_TAG_LEN + SIG_LEN;

function randomChainId(rng: Rng): number {
  const b = rng(4);
  if (!(b instanceof Uint8Array) || b.length !== 4) fail(ErrorCode.InvalidKey, 'createSenderKey', 'bad rng');
  return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, false);
}

/** A fresh chain (also the rotation step): random chain id, chain key and signing key pair. */
export async function createSenderKey(curves: Curve25519, rng: Rng): Promise<OwnSenderKey> {
  const chainId = randomChainId(rng);
  const chainKey = rng(KEY_LEN);
  const signingKey = await generateEd25519(curves, rng);
  return { chainId, chain: new SenderChainKey(chainKey, 0), signingKey };
}

export function senderKeyDistribution(own: OwnSenderKey, conversationId: string): SenderKeyDistribution {
  return {
    conversationId,
    chainId: own.chainId,
    iteration: own.chain.index,
    chainKey: own.chain.key,
    signingKey: own.signingKey.publicKey,
  };
}

/** version u8 ‖ str conversationId ‖ u32 chainId ‖ u32 iteration ‖ chainKey[32] ‖ signingKey[32] */
export function encodeSenderKeyDistribution(d: SenderKeyDistribution): Uint8Array {
  assertId(d.conversationId, 'conversation id', 'encodeSenderKeyDistribution');
  return new Writer()
    .u8(PROTOCOL_VERSION)
    .str(d.conversationId)
    .u32(d.chainId)
    .u32(d.iteration)
    .fixed(d.chainKey, KEY_LEN)
    .fixed(d.signingKey, KEY_LEN)
    .finish();
}

export function decodeSenderKeyDistribution(bytes: Uint8Array): SenderKeyDistribution {
  const op = 'decodeSenderKeyDistribution';
  const r = new Reader(bytes, op);
  if (r.u8() !== PROTOCOL_VERSION) fail(ErrorCode.Decode, op, 'unknown version');
  const d = {
    conversationId: readId(r, op),
    chainId: r.u32(),
    iteration: r.u32(),
    chainKey: r.fixed(KEY_LEN),
    signingKey: theirEd25519(r.fixed(KEY_LEN), op),
  };
  r.end();
  return d;
}

/**
 * Add a member's chain from a distribution message received over the pairwise session of that member's
 * device. A chain id we already hold is left as it is (no rewind); the oldest chain beyond the cap is dropped.
 */
export function processSenderKeyDistribution(
  record: SenderKeyRecord,
  d: SenderKeyDistribution,
  conversationId: string,
): SenderKeyRecord {
  const op = 'processSenderKeyDistribution';
  if (d.conversationId !== conversationId) fail(ErrorCode.InvalidStructure, op, 'wrong conversation');
  if (record.states.some((s) => s.chainId === d.chainId)) return record;
  const state: ReceivedSenderKey = {
    chainId: d.chainId,
    signingKey: theirEd25519(d.signingKey, op),
    chain: new SenderChainKey(d.chainKey, d.iteration),
    skipped: SkippedKeys.empty(MAX_SENDER_SKIPPED_KEYS),
  };
  return { states: [state, ...record.states].slice(0, MAX_SENDER_KEY_STATES) };
}

/**
 * SenderKeyMessage:
 * ```text
 *  0         1            5            9                      len-64      len
 *  +---------+------------+------------+----------------------+-----------+
 *  | version | chain id   | iteration  | AES-256-GCM ct + tag | Ed25519   |
 *  | u8      | u32 BE     | u32 BE     | (padded plaintext)   | sig (64)  |
 *  +---------+------------+------------+----------------------+-----------+
 *  AEAD AD = bytes [0, 9); signature over u32(len(label)) ‖ SIG_SENDER_MESSAGE ‖ bytes [0, len-64)
 * ```
 */
export async function senderEncrypt(
  curves: Curve25519,
  own: OwnSenderKey,
  plaintext: Uint8Array,
): Promise<{ own: OwnSenderKey; message: Uint8Array }> {
  const mk = own.chain.messageKeys();
  const prefix = concat(Uint8Array.of(PROTOCOL_VERSION), u32be(own.chainId), u32be(own.chain.index));
  const body = concat(prefix, aesGcmEncrypt(mk.cipherKey, mk.nonce, pad(plaintext), prefix));
  const next = { ...own, chain: own.chain.next() };
  const signature = await curves.ed25519Sign(own.signingKey, concat(SIG_PREFIX, body));
  return { own: next, message: concat(body, signature) };
}

function keysFor(state: ReceivedSenderKey, iteration: number): { keys: MessageKeys; state: ReceivedSenderKey } {
  const op = 'senderDecrypt';
  const id = u32be(state.chainId);
  if (iteration < state.chain.index) {
    const hit = state.skipped.take(id, iteration) ?? fail(ErrorCode.Duplicate, op, 'iteration already used');
    return { keys: MessageKeys.fromSeed(hit.seed, iteration, 'sender'), state: { ...state, skipped: hit.rest } };
  }
  if (iteration - state.chain.index > MAX_SENDER_SKIP) fail(ErrorCode.TooFarAhead, op, 'iteration too far ahead');
  let ck = state.chain;
  const skipped: SkippedKey[] = [];
  while (ck.index < iteration) {
    skipped.push({ chainId: id, index: ck.index, seed: ck.messageKeySeed() });
    ck = ck.next();
  }
  return { keys: ck.messageKeys(), state: { ...state, chain: ck.next(), skipped: state.skipped.add(skipped) } };
}

/** Candidate keys and plaintext for `iteration`, computed from immutable state (commits nothing). */
async function open(
  curves: Curve25519,
  state: ReceivedSenderKey,
  iteration: number,
  body: Uint8Array,
): Promise<{ next: ReturnType<typeof keysFor>; plaintext: Uint8Array }> {
  const next = keysFor(state, iteration);
  const padded = await curves.aesGcmOpen(
    next.keys.cipherKey,
    next.keys.nonce,
    body.subarray(PREFIX_LEN),
    body.subarray(0, PREFIX_LEN),
  );
  return { next, plaintext: unpad(padded) };
}

async function senderDecryptInner(
  curves: Curve25519,
  record: SenderKeyRecord,
  message: Uint8Array,
): Promise<{ record: SenderKeyRecord; plaintext: Uint8Array }> {
  const op = 'senderDecrypt';
  if (message.length < PREFIX_LEN + GCM_TAG_LEN + SIG_LEN) fail(ErrorCode.Decode, op, 'too short');
  if (message.length > MAX_MESSAGE_LEN) fail(ErrorCode.Decode, op, 'too long');
  const r = new Reader(message.subarray(0, PREFIX_LEN), op);
  if (r.u8() !== PROTOCOL_VERSION) fail(ErrorCode.Decode, op, 'unknown version');
  const chainId = r.u32();
  const iteration = r.u32();
  const at = record.states.findIndex((s) => s.chainId === chainId);
  const state = record.states[at] ?? fail(ErrorCode.NoSession, op, 'unknown chain');
  const body = message.subarray(0, message.length - SIG_LEN);
  const signature = message.subarray(message.length - SIG_LEN);
  const verified = curves.ed25519Verify(state.signingKey, concat(SIG_PREFIX, body), signature);
  // The next iteration (the usual case) or a stored skipped seed: derive and decrypt on the side while the
  // signature check runs; a jump ahead (keys to skip) waits for the signature first, so an unsigned message
  // can never make us derive up to MAX_SENDER_SKIP keys. Either way nothing is committed or returned, and
  // no symmetric error is reported, before the signature verified.
  const overlap = iteration <= state.chain.index;
  const opening = overlap
    ? open(curves, state, iteration, body).then(
        (opened) => ({ opened }),
        (error: unknown) => ({ error }),
      )
    : undefined;
  if (!(await verified)) fail(ErrorCode.Signature, op);
  const early = opening ? await opening : undefined;
  if (early && 'error' in early) throw early.error;
  const { next, plaintext } = early ? early.opened : await open(curves, state, iteration, body);
  return { record: { states: record.states.map((s, i) => (i === at ? next.state : s)) }, plaintext };
}

/**
 * Decrypt a SenderKeyMessage from the sender whose `record` this is. All-or-nothing; errors collapse to
 * `decryption_failed` except `duplicate` and `no_session` (unknown chain: ask for a distribution).
 */
export async function senderDecrypt(
  curves: Curve25519,
  record: SenderKeyRecord,
  message: Uint8Array,
): Promise<{ record: SenderKeyRecord; plaintext: Uint8Array }> {
  try {
    return await senderDecryptInner(curves, record, message);
  } catch (e) {
    throw publicDecryptError(e, 'senderDecrypt');
  }
}

// ---------------------------------------------------------------------------------------------
// Serialization (STATE_VERSION first; the engine stores these encrypted)
// ---------------------------------------------------------------------------------------------

/** STATE_VERSION u8 ‖ u32 chainId ‖ u32 iteration ‖ chainKey[32] ‖ signing secret[32] ‖ signing public[32] */
export function serializeOwnSenderKey(own: OwnSenderKey): Uint8Array {
  return new Writer()
    .u8(STATE_VERSION)
    .u32(own.chainId)
    .u32(own.chain.index)
    .fixed(own.chain.key, KEY_LEN)
    .fixed(own.signingKey.secretKey, KEY_LEN)
    .fixed(own.signingKey.publicKey, KEY_LEN)
    .finish();
}

export function deserializeOwnSenderKey(bytes: Uint8Array): OwnSenderKey {
  const op = 'deserializeOwnSenderKey';
  const r = new Reader(bytes, op);
  if (r.u8() !== STATE_VERSION) fail(ErrorCode.Decode, op, 'unknown state version');
  const chainId = r.u32();
  const index = r.u32();
  const chain = new SenderChainKey(r.fixed(KEY_LEN), index);
  const signingKey: OurEd25519KeyPair = { kind: 'ed25519', secretKey: r.fixed(KEY_LEN), publicKey: r.fixed(KEY_LEN) };
  r.end();
  return { chainId, chain, signingKey };
}

/**
 * STATE_VERSION u8 ‖ u32 #states ‖ (u32 chainId ‖ signingKey[32] ‖ chainKey[32] ‖ u32 iteration ‖
 * u32 #skipped ‖ (u32 iteration ‖ seed[32])*)*  — newest state first, skipped keys oldest first.
 */
export function serializeSenderKeyRecord(record: SenderKeyRecord): Uint8Array {
  const w = new Writer().u8(STATE_VERSION).u32(record.states.length);
  for (const s of record.states) {
    w.u32(s.chainId).fixed(s.signingKey, KEY_LEN).fixed(s.chain.key, KEY_LEN).u32(s.chain.index);
    const keys = s.skipped.list();
    w.u32(keys.length);
    for (const k of keys) w.u32(k.index).fixed(k.seed, KEY_LEN);
  }
  return w.finish();
}

export function deserializeSenderKeyRecord(bytes: Uint8Array): SenderKeyRecord {
  const op = 'deserializeSenderKeyRecord';
  const r = new Reader(bytes, op);
  if (r.u8() !== STATE_VERSION) fail(ErrorCode.Decode, op, 'unknown state version');
  const n = r.u32();
  if (n > MAX_SENDER_KEY_STATES) fail(ErrorCode.Decode, op, 'too many states');
  const states: ReceivedSenderKey[] = [];
  for (let i = 0; i < n; i++) {
    const chainId = r.u32();
    const signingKey = theirEd25519(r.fixed(KEY_LEN), op);
    const chain = new SenderChainKey(r.fixed(KEY_LEN), r.u32());
    const count = r.u32();
    if (count > MAX_SENDER_SKIPPED_KEYS) fail(ErrorCode.Decode, op, 'too many skipped keys');
    const id = u32be(chainId);
    const keys: SkippedKey[] = [];
    for (let j = 0; j < count; j++) keys.push({ chainId: id, index: r.u32(), seed: r.fixed(KEY_LEN) });
    const skipped = SkippedKeys.empty(MAX_SENDER_SKIPPED_KEYS).add(keys);
    if (skipped.size !== count) fail(ErrorCode.Decode, op, 'duplicate skipped key');
    states.push({ chainId, signingKey, chain, skipped });
  }
  r.end();
  return { states };
}
