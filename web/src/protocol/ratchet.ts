/**
 * The Double Ratchet (Signal Double Ratchet spec rev. 4 §3; docs/PROTOCOL.md §"Double Ratchet").
 *
 * - `initAlice` / `initBob` (§3.3): Alice's first ratchet key pair is fresh from the rng and her first
 *   sending chain comes from DH(ratchet, Bob's signed prekey); Bob's initial ratchet key IS his signed
 *   prekey, and he has no sending chain until Alice's first message arrives — so his first reply always uses
 *   a fresh ratchet key (PITFALLS 6).
 * - `ratchetEncrypt` (§3.4) is synchronous: one HMAC step, one HKDF, one AES-256-GCM — no await.
 *   Ciphertext = AES-256-GCM(mk.key, mk.nonce, plaintext, AD ‖ header).
 * - `ratchetDecrypt` (§3.5) is ALL-OR-NOTHING: state values are immutable, the new state is assembled on the
 *   side and returned only after AES-GCM authenticated; on any failure the caller's state is untouched
 *   (PITFALLS 11). Its AES-GCM open is the curves' (`aesGcmOpen`: WebCrypto where the platform has it, off
 *   the JS thread; noble otherwise), awaited before anything is returned. Order: skipped keys (TrySkippedMessageKeys); a known receiving chain; else a DH ratchet
 *   step. A counter more than MAX_SKIP ahead is refused BEFORE any key or DH is derived (`too_far_ahead`,
 *   PITFALLS 8); a counter below a known chain's position whose key is not stored is a `duplicate`
 *   (PITFALLS 10 — used, or evicted as oldest from the capped store).
 * - DH ratchet step: the receiving DH, the sending DH with the fresh secret and the fresh public key are
 *   independent given the new secret, so all three run concurrently (one round of curve latency).
 *   `startDhStep` begins them before the state exists (Bob's first step, concurrently with PQXDH).
 * - Old receiving chains (MAX_RECEIVER_CHAINS) are kept, as libsignal does, so late messages of earlier
 *   chains decrypt lazily: keys are skipped only when a message actually needs them (not eagerly up to PN
 *   at every DH step). Each old chain remembers its authenticated end (the PN of the next chain) and refuses
 *   counters at or beyond it (`beyond_chain_end`). A chain leaving that window has its outstanding keys (up
 *   to its end, at most MAX_SKIP) moved to the skipped store — the spec's SkipMessageKeys(PN), deferred.
 *   Its ratchet key is forgotten: a later replay of one of its used messages looks like a new chain and
 *   fails as `decryption_failed`, not `duplicate` (docs/PROTOCOL.md §"Double Ratchet", decryption step 3).
 *
 * Does NOT: frame messages, pad, choose or archive sessions, check expiry or send generations (session.ts),
 * or run key agreement (pqxdh.ts).
 * @module
 */
import { concat, equal, Reader, Writer } from './bytes.js';
import { MAX_RECEIVER_CHAINS, MAX_SKIP, MAX_SKIPPED_KEYS } from './constants.js';
import { ErrorCode, fail } from './errors.js';
import { decodeHeader, encodeHeader } from './header.js';
import { ChainKey, MessageKeys, RemoteChainKey, RootKey } from './kdf-chains.js';
import { type OurX25519KeyPair, type TheirX25519Key, theirX25519 } from './keys.js';
import { aesGcmEncrypt, type Curve25519, KEY_LEN, type Rng } from './primitives.js';
import { type SkippedKey, SkippedKeys } from './skipped-keys.js';

/** A peer ratchet key with its receiving chain; `end` is the chain's length once the next chain told us. */
export interface ReceiverChain {
  readonly ratchetKey: TheirX25519Key;
  readonly chainKey: RemoteChainKey;
  readonly end: number | null;
}

export interface RatchetState {
  readonly rootKey: RootKey;
  /** DHs: our current ratchet key pair (the same arrays across states, so WebCrypto keys stay cached). */
  readonly sendingRatchetKey: OurX25519KeyPair;
  /** CKs with Ns as its index; null for Bob until Alice's first message arrives. */
  readonly sendingChain: ChainKey | null;
  /** PN: length of our previous sending chain. */
  readonly previousCounter: number;
  /** Newest first; [0] is the chain of DHr. At most MAX_RECEIVER_CHAINS. */
  readonly receivingChains: readonly ReceiverChain[];
  readonly skipped: SkippedKeys;
  /** Session associated data (PQXDH AD), prefixed to every header in the AES-GCM AAD. */
  readonly associatedData: Uint8Array;
}

export interface RatchetCiphertext {
  /** Encoded 40-byte header (header.ts). */
  readonly header: Uint8Array;
  readonly ciphertext: Uint8Array;
}

/**
 * A fresh key pair's public half. With WebCrypto this reuses the one cached (extractable) import of the fresh
 * secret that the sending DH also uses and reads the public key back with one `exportKey`: measured on Node 20
 * ≈ 10 % cheaper per DH step than X25519(secret, 9) as a third `deriveBits` job, and no second import.
 */
function publicKeyOf(curves: Curve25519, secretKey: Uint8Array): Promise<Uint8Array> {
  return curves.x25519PublicKey(secretKey);
}

function freshSecret(rng: Rng, op: string): Uint8Array {
  const sk = rng(KEY_LEN);
  if (!(sk instanceof Uint8Array) || sk.length !== KEY_LEN) fail(ErrorCode.InvalidKey, op, 'rng returned wrong length');
  return sk;
}

function assertSecret32(k: Uint8Array, op: string): void {
  if (!(k instanceof Uint8Array) || k.length !== KEY_LEN) fail(ErrorCode.InvalidKey, op, 'expected 32 bytes');
}

/** Alice's first ratchet key pair and DH(it, Bob's signed prekey): the part of RatchetInitAlice without SK. */
export interface AliceRatchetStart {
  readonly keyPair: OurX25519KeyPair;
  readonly dh: Uint8Array;
}

/**
 * The curve work of RatchetInitAlice (§3.3). Independent of the PQXDH result, so session set-up runs it
 * concurrently with PQXDH. The fresh secret is drawn from `rng` synchronously, at the call.
 */
export async function aliceRatchetStart(
  curves: Curve25519,
  rng: Rng,
  theirSignedPrekey: TheirX25519Key,
): Promise<AliceRatchetStart> {
  const secretKey = freshSecret(rng, 'initAlice');
  const [dh, publicKey] = await Promise.all([
    curves.x25519(secretKey, theirSignedPrekey),
    publicKeyOf(curves, secretKey),
  ]);
  return { keyPair: { kind: 'x25519', secretKey, publicKey }, dh };
}

/** RatchetInitAlice (§3.3) from its curve part: RK, CKs = KDF_RK(SK, DH). */
export function initAliceWith(
  start: AliceRatchetStart,
  sharedSecret: Uint8Array,
  associatedData: Uint8Array,
): RatchetState {
  assertSecret32(sharedSecret, 'initAlice');
  const [rootKey, sendingChain] = new RootKey(sharedSecret).createSendingChain(start.dh);
  return {
    rootKey,
    sendingRatchetKey: start.keyPair,
    sendingChain,
    previousCounter: 0,
    receivingChains: [],
    skipped: SkippedKeys.empty(),
    associatedData,
  };
}

/** RatchetInitAlice (§3.3): fresh DHs from `rng`, DHr = Bob's signed prekey, RK, CKs = KDF_RK(SK, DH). */
export async function initAlice(
  curves: Curve25519,
  rng: Rng,
  sharedSecret: Uint8Array,
  associatedData: Uint8Array,
  theirSignedPrekey: TheirX25519Key,
): Promise<RatchetState> {
  assertSecret32(sharedSecret, 'initAlice');
  return initAliceWith(await aliceRatchetStart(curves, rng, theirSignedPrekey), sharedSecret, associatedData);
}

/** RatchetInitBob (§3.3): DHs = our signed prekey, RK = SK, no chains yet. */
export function initBob(
  sharedSecret: Uint8Array,
  associatedData: Uint8Array,
  ourSignedPrekey: OurX25519KeyPair,
): RatchetState {
  assertSecret32(sharedSecret, 'initBob');
  return {
    rootKey: new RootKey(sharedSecret),
    sendingRatchetKey: ourSignedPrekey,
    sendingChain: null,
    previousCounter: 0,
    receivingChains: [],
    skipped: SkippedKeys.empty(),
    associatedData,
  };
}

/** RatchetEncrypt (§3.4). Synchronous; returns the next state and the header + ciphertext. */
export function ratchetEncrypt(
  state: RatchetState,
  plaintext: Uint8Array,
): { state: RatchetState; message: RatchetCiphertext } {
  const chain = state.sendingChain ?? fail(ErrorCode.NoSession, 'ratchetEncrypt', 'no sending chain yet');
  const mk = chain.messageKeys();
  const header = encodeHeader({
    ratchetKey: state.sendingRatchetKey.publicKey,
    previousChainLength: state.previousCounter,
    messageNumber: chain.index,
  });
  const ciphertext = aesGcmEncrypt(mk.cipherKey, mk.nonce, plaintext, concat(state.associatedData, header));
  return { state: { ...state, sendingChain: chain.next() }, message: { header, ciphertext } };
}

/**
 * SkipMessageKeys (§3.5) for one chain, lazily: the seeds of indices [chain.index, until) go to the store,
 * and the chain positioned at `until` is returned. The MAX_SKIP check comes first, before any derivation.
 */
function skipTo(
  chain: ReceiverChain,
  until: number,
  skipped: SkippedKeys,
): { chainKey: RemoteChainKey; skipped: SkippedKeys } {
  let ck = chain.chainKey;
  if (until - ck.index > MAX_SKIP) fail(ErrorCode.TooFarAhead, 'ratchetDecrypt', 'message too far ahead');
  if (until === ck.index) return { chainKey: ck, skipped };
  const keys: SkippedKey[] = [];
  while (ck.index < until) {
    keys.push({ chainId: chain.ratchetKey, index: ck.index, seed: ck.messageKeySeed() });
    ck = ck.next();
  }
  return { chainKey: ck, skipped: skipped.add(keys) };
}

/**
 * A chain pushed out of the MAX_RECEIVER_CHAINS window: its remaining keys up to its authenticated end
 * (at most MAX_SKIP of them) move to the capped skipped store, so late messages still decrypt (as with the
 * spec's eager SkipMessageKeys(PN), but only for chains that really have messages outstanding).
 */
function retire(chain: ReceiverChain, skipped: SkippedKeys): SkippedKeys {
  const end = chain.end ?? chain.chainKey.index;
  if (end <= chain.chainKey.index || end - chain.chainKey.index > MAX_SKIP) return skipped;
  return skipTo(chain, end, skipped).skipped;
}

/** The message key's AES-256-GCM open, on the curves' platform (WebCrypto or noble: `Curve25519.aesGcmOpen`). */
function open(
  curves: Curve25519,
  mk: MessageKeys,
  state: RatchetState,
  header: Uint8Array,
  ciphertext: Uint8Array,
): Promise<Uint8Array> {
  return curves.aesGcmOpen(mk.cipherKey, mk.nonce, ciphertext, concat(state.associatedData, header));
}

/** Advance `chain` to the message's index, decrypt with that key; the chain ends one past it. */
async function decryptInChain(
  curves: Curve25519,
  state: RatchetState,
  chain: ReceiverChain,
  n: number,
  header: Uint8Array,
  ciphertext: Uint8Array,
): Promise<{ plaintext: Uint8Array; chain: ReceiverChain; skipped: SkippedKeys }> {
  const { chainKey, skipped } = skipTo(chain, n, state.skipped);
  const plaintext = await open(curves, chainKey.messageKeys(), state, header, ciphertext);
  return { plaintext, chain: { ...chain, chainKey: chainKey.next() }, skipped };
}

/** The curve work of a DH ratchet step, begun before the state it applies to exists (see `startDhStep`). */
export interface StartedDhStep {
  readonly ours: OurX25519KeyPair;
  readonly theirs: Uint8Array;
  readonly result: Promise<DhStep>;
}
interface DhStep {
  readonly dhRecv: Uint8Array;
  readonly dhSend: Uint8Array;
  readonly secretKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

function startStep(curves: Curve25519, rng: Rng, ours: OurX25519KeyPair, theirs: Uint8Array, n: number, op: string) {
  if (n > MAX_SKIP) fail(ErrorCode.TooFarAhead, op, 'message too far ahead');
  const secretKey = freshSecret(rng, op);
  return Promise.all([
    curves.x25519(ours, theirs),
    curves.x25519(secretKey, theirs),
    publicKeyOf(curves, secretKey),
  ]).then(([dhRecv, dhSend, publicKey]): DhStep => ({ dhRecv, dhSend, secretKey, publicKey }));
}

/**
 * Begins the DH ratchet step a message needs from a state whose sending ratchet key is `ours` and that has
 * no chain for the message's ratchet key — Bob's first step after RatchetInitBob (DHs = his signed prekey),
 * which does not depend on the shared secret, so the responder runs it concurrently with PQXDH. Draws the
 * fresh secret from `rng` now (`ratchetDecrypt` would draw it as its first use of `rng`; the order of draws is
 * the same). Pass the result to `ratchetDecrypt`, which uses it only for that key pair and ratchet key.
 * Rejects, unhandled-safe, as `ratchetDecrypt` would (`too_far_ahead`, curve errors).
 */
export function startDhStep(
  curves: Curve25519,
  rng: Rng,
  ours: OurX25519KeyPair,
  message: RatchetCiphertext,
): StartedDhStep {
  const op = 'ratchetDecrypt';
  const h = decodeHeader(message.header);
  const result = startStep(curves, rng, ours, h.ratchetKey, h.messageNumber, op);
  result.catch(() => undefined);
  return { ours, theirs: h.ratchetKey, result };
}

/**
 * RatchetDecrypt (§3.5), all-or-nothing: resolves to a NEW state and the plaintext, or rejects leaving
 * `state` as it was. `rng` is used only for a DH ratchet step (our fresh ratchet key pair).
 */
export async function ratchetDecrypt(
  curves: Curve25519,
  rng: Rng,
  state: RatchetState,
  message: RatchetCiphertext,
  started?: StartedDhStep,
): Promise<{ state: RatchetState; plaintext: Uint8Array }> {
  const op = 'ratchetDecrypt';
  const h = decodeHeader(message.header);
  const n = h.messageNumber;

  // TrySkippedMessageKeys
  const hit = state.skipped.take(h.ratchetKey, n);
  if (hit) {
    const plaintext = await open(curves, MessageKeys.fromSeed(hit.seed, n), state, message.header, message.ciphertext);
    return { state: { ...state, skipped: hit.rest }, plaintext };
  }

  // A chain we already know (current or an older one kept for late messages)
  const at = state.receivingChains.findIndex((c) => equal(c.ratchetKey, h.ratchetKey));
  const known = state.receivingChains[at];
  if (known) {
    if (n < known.chainKey.index) fail(ErrorCode.Duplicate, op, 'message key already used');
    if (known.end !== null && n >= known.end) fail(ErrorCode.BeyondChainEnd, op, 'beyond end of chain');
    const r = await decryptInChain(curves, state, known, n, message.header, message.ciphertext);
    const receivingChains = state.receivingChains.map((c, i) => (i === at ? r.chain : c));
    return { state: { ...state, receivingChains, skipped: r.skipped }, plaintext: r.plaintext };
  }

  // DHRatchet: a new peer ratchet key. Refuse before any DH if the counter is beyond MAX_SKIP.
  const step =
    started && started.ours === state.sendingRatchetKey && equal(started.theirs, h.ratchetKey)
      ? await started.result
      : await startStep(curves, rng, state.sendingRatchetKey, h.ratchetKey, n, op);
  const { dhRecv, dhSend, secretKey, publicKey } = step;
  const [rk1, recvKey] = state.rootKey.createReceivingChain(dhRecv);
  const [rootKey, sendingChain] = rk1.createSendingChain(dhSend);
  const fresh: ReceiverChain = { ratchetKey: h.ratchetKey, chainKey: recvKey, end: null };
  const r = await decryptInChain(curves, state, fresh, n, message.header, message.ciphertext);
  const [prev, ...older] = state.receivingChains;
  const chains = [r.chain, ...(prev ? [{ ...prev, end: h.previousChainLength }] : []), ...older];
  const receivingChains = chains.slice(0, MAX_RECEIVER_CHAINS);
  const evicted = chains[MAX_RECEIVER_CHAINS];
  return {
    state: {
      rootKey,
      sendingRatchetKey: { kind: 'x25519', secretKey, publicKey },
      sendingChain,
      previousCounter: state.sendingChain?.index ?? 0,
      receivingChains,
      skipped: evicted ? retire(evicted, r.skipped) : r.skipped,
      associatedData: state.associatedData,
    },
    plaintext: r.plaintext,
  };
}

// ---------------------------------------------------------------------------------------------
// Serialization (inside the session record; STATE_VERSION is written by session.ts)
// ---------------------------------------------------------------------------------------------

/** Max bytes of a session AD (PQXDH AD: version + 2 × (2 ids + key) with length prefixes). */
const MAX_AD_LEN = 1024;

/**
 * rootKey[32] ‖ DHs.secret[32] ‖ DHs.public[32] ‖ bool hasCKs [‖ CKs[32] ‖ u32 Ns] ‖ u32 PN ‖
 * u32 #chains ‖ (ratchetKey[32] ‖ CK[32] ‖ u32 index ‖ bool hasEnd [‖ u32 end])* ‖
 * u32 #skipped ‖ (ratchetKey[32] ‖ u32 N ‖ seed[32])* (oldest first) ‖ bytes AD
 */
export function writeRatchetState(w: Writer, s: RatchetState): void {
  w.fixed(s.rootKey.key, KEY_LEN)
    .fixed(s.sendingRatchetKey.secretKey, KEY_LEN)
    .fixed(s.sendingRatchetKey.publicKey, KEY_LEN)
    .bool(s.sendingChain !== null);
  if (s.sendingChain) w.fixed(s.sendingChain.key, KEY_LEN).u32(s.sendingChain.index);
  w.u32(s.previousCounter).u32(s.receivingChains.length);
  for (const c of s.receivingChains) {
    w.fixed(c.ratchetKey, KEY_LEN)
      .fixed(c.chainKey.key, KEY_LEN)
      .u32(c.chainKey.index)
      .bool(c.end !== null);
    if (c.end !== null) w.u32(c.end);
  }
  const skipped = s.skipped.list();
  w.u32(skipped.length);
  for (const k of skipped) w.fixed(k.chainId, KEY_LEN).u32(k.index).fixed(k.seed, KEY_LEN);
  w.bytes(s.associatedData);
}

export function readRatchetState(r: Reader): RatchetState {
  const op = 'readRatchetState';
  const rootKey = new RootKey(r.fixed(KEY_LEN));
  const sendingRatchetKey: OurX25519KeyPair = {
    kind: 'x25519',
    secretKey: r.fixed(KEY_LEN),
    publicKey: r.fixed(KEY_LEN),
  };
  const sendingChain = r.bool() ? new ChainKey(r.fixed(KEY_LEN), r.u32()) : null;
  const previousCounter = r.u32();
  const nChains = r.u32();
  if (nChains > MAX_RECEIVER_CHAINS) fail(ErrorCode.Decode, op, 'too many receiving chains');
  const receivingChains: ReceiverChain[] = [];
  for (let i = 0; i < nChains; i++) {
    const ratchetKey = theirX25519(r.fixed(KEY_LEN), op);
    const chainKey = new RemoteChainKey(r.fixed(KEY_LEN), r.u32());
    receivingChains.push({ ratchetKey, chainKey, end: r.bool() ? r.u32() : null });
  }
  const nSkipped = r.u32();
  if (nSkipped > MAX_SKIPPED_KEYS) fail(ErrorCode.Decode, op, 'too many skipped keys');
  const keys: SkippedKey[] = [];
  for (let i = 0; i < nSkipped; i++) {
    keys.push({ chainId: theirX25519(r.fixed(KEY_LEN), op), index: r.u32(), seed: r.fixed(KEY_LEN) });
  }
  const skipped = SkippedKeys.empty().add(keys);
  if (skipped.size !== nSkipped) fail(ErrorCode.Decode, op, 'duplicate skipped key');
  return {
    rootKey,
    sendingRatchetKey,
    sendingChain,
    previousCounter,
    receivingChains,
    skipped,
    associatedData: r.bytes(MAX_AD_LEN),
  };
}

/** Standalone encoding of a ratchet state (tests and vectors); sessions embed it via writeRatchetState. */
export function encodeRatchetState(s: RatchetState): Uint8Array {
  const w = new Writer();
  writeRatchetState(w, s);
  return w.finish();
}

export function decodeRatchetState(bytes: Uint8Array): RatchetState {
  const r = new Reader(bytes, 'decodeRatchetState');
  const s = readRatchetState(r);
  r.end();
  return s;
}
