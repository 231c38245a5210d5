/**
 * Pairwise sessions per REMOTE DEVICE (docs/PROTOCOL.md §"Sessions" and §"Messages"), after libsignal's
 * `session_cipher.rs` / `state/session.rs`:
 *
 * - A `SessionRecord` holds the current session and up to MAX_ARCHIVED_SESSIONS previous ones (newest
 *   first), each archived one dropped ARCHIVED_SESSION_MAX_AGE_MS after it was archived.
 * - The initiator sends PreKeyMessages (PQXDH init + first ratchet message) until the first message from the
 *   peer arrives in that session, then plain Messages (as Signal does).
 * - A PreKeyMessage whose base key (the initiator's ephemeral key) names a session we already have is
 *   decrypted inside that session — a replayed init never re-derives a session, and the duplicate is
 *   refused by the ratchet (PITFALLS 6). A new one creates a responder session whose first reply uses a
 *   fresh ratchet key, and the result names the one-time and ML-KEM prekeys it used so the caller deletes
 *   them (a last-resort ML-KEM key excepted). The init's (user id, device id) must be the sender the
 *   transport authenticated (`sender_mismatch`).
 * - Promote on decrypt (libsignal): a message that decrypts in an archived session makes that session
 *   current again. This resolves simultaneous initiation: both sides keep both sessions, every message
 *   decrypts in whichever it belongs to, and both converge on the session last used by the peer.
 * - Rollback protection (PITFALLS 12): `sendGeneration` counts every encrypt of the record and never goes
 *   down. The engine persists the record (with its generation) and raises a separate monotonic high-water
 *   mark with compare-and-set BEFORE the ciphertext leaves; `assertNotStale(record, mark)` refuses to send
 *   from an older copy (`stale_state`), and the engine then re-establishes the session.
 * - An initiated session never acknowledged by the peer for SESSION_UNACKED_MAX_AGE_MS refuses to send
 *   (`session_expired`, PITFALLS 13), like libsignal's MAX_UNACKNOWLEDGED_SESSION_AGE.
 * - Every decrypt is all-or-nothing; outside callers see `decryption_failed` for every cryptographic
 *   failure, except `duplicate`, `no_session` and `untrusted_identity` (errors.ts publicDecryptError).
 *
 * Does NOT: store records (the engine does, encrypted), fetch bundles, decide identity trust (the caller's
 * `isTrustedIdentity`), delete prekeys, or read a clock (`now` is passed in).
 * @module
 */
import { concat, equal, Reader, Writer } from './bytes.js';
import {
  ARCHIVED_SESSION_MAX_AGE_MS,
  MAX_ARCHIVED_SESSIONS,
  PROTOCOL_VERSION,
  SESSION_UNACKED_MAX_AGE_MS,
  STATE_VERSION,
} from './constants.js';
import { ErrorCode, fail, is, publicDecryptError } from './errors.js';
import { HEADER_LEN } from './header.js';
import { type TheirX25519Key, theirX25519 } from './keys.js';
import { MAX_PADDED_LEN, pad, unpad } from './padding.js';
import {
  decodePqxdhInit,
  encodePqxdhInit,
  type PqxdhLocalIdentity,
  type PqxdhResponderKeys,
  pqxdhInitiate,
  pqxdhRespond,
} from './pqxdh.js';
import type { VerifiedBundle } from './prekeys.js';
import { type Curve25519, GCM_TAG_LEN, KEY_LEN, type Rng } from './primitives.js';
import {
  aliceRatchetStart,
  initAliceWith,
  initBob,
  type RatchetCiphertext,
  type RatchetState,
  ratchetDecrypt,
  ratchetEncrypt,
  readRatchetState,
  type StartedDhStep,
  startDhStep,
  writeRatchetState,
} from './ratchet.js';

export const MessageType = { Message: 1, PreKey: 2 } as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export interface SessionState {
  /** The initiator's PQXDH ephemeral public key: names the session on both sides. */
  readonly baseKey: Uint8Array;
  readonly localIdentityKey: Uint8Array;
  readonly remoteIdentityKey: Uint8Array;
  readonly ratchet: RatchetState;
  /** Encoded PqxdhInitMessage, sent with every message until the peer's first message arrives. */
  readonly pendingPreKey: Uint8Array | null;
  readonly createdAt: number;
}

export interface ArchivedSession {
  readonly session: SessionState;
  readonly archivedAt: number;
}

export interface SessionRecord {
  readonly current: SessionState | null;
  /** Newest first, at most MAX_ARCHIVED_SESSIONS. */
  readonly archived: readonly ArchivedSession[];
  /** Number of encrypts ever made from this record's lineage (PITFALLS 12). */
  readonly sendGeneration: number;
}

export const emptySessionRecord = (): SessionRecord => ({ current: null, archived: [], sendGeneration: 0 });

// ---------------------------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------------------------

/** Largest ratchet ciphertext: padded maximum plaintext plus the GCM tag. */
const MAX_CIPHERTEXT_LEN = MAX_PADDED_LEN + GCM_TAG_LEN;
/** Largest encoded PqxdhInitMessage we accept (ids ≤ 64 B, keys, ids, ML-KEM-1024 ciphertext). */
const MAX_INIT_LEN = 2048;
const MAX_STATE_PENDING_LEN = MAX_INIT_LEN;

export interface DecodedMessage {
  readonly type: MessageType;
  /** Encoded PQXDH init for PreKey messages. */
  readonly init: Uint8Array | null;
  readonly ratchet: RatchetCiphertext;
}

/**
 * Message:     version u8 ‖ type u8 = 1 ‖ header[40] ‖ ciphertext
 * PreKeyMsg:   version u8 ‖ type u8 = 2 ‖ u32 len ‖ PqxdhInit[len] ‖ header[40] ‖ ciphertext
 */
export function encodeMessage(m: DecodedMessage): Uint8Array {
  const head =
    m.type === MessageType.PreKey && m.init
      ? new Writer().u8(PROTOCOL_VERSION).u8(MessageType.PreKey).bytes(m.init).finish()
      : Uint8Array.of(PROTOCOL_VERSION, MessageType.Message);
  return concat(head, m.ratchet.header, m.ratchet.ciphertext);
}

export function decodeMessage(bytes: Uint8Array): DecodedMessage {
  const op = 'decodeMessage';
  const r = new Reader(bytes, op);
  if (r.u8() !== PROTOCOL_VERSION) fail(ErrorCode.Decode, op, 'unknown version');
  const type = r.u8();
  if (type !== MessageType.Message && type !== MessageType.PreKey) fail(ErrorCode.Decode, op, 'unknown type');
  const init = type === MessageType.PreKey ? r.bytes(MAX_INIT_LEN) : null;
  const header = r.fixed(HEADER_LEN);
  const len = r.remaining;
  if (len < GCM_TAG_LEN || len > MAX_CIPHERTEXT_LEN) fail(ErrorCode.Decode, op, 'bad ciphertext length');
  const ciphertext = r.fixed(len);
  r.end();
  return { type, init, ratchet: { header, ciphertext } };
}

// ---------------------------------------------------------------------------------------------
// Record updates
// ---------------------------------------------------------------------------------------------

function pruneArchived(archived: readonly ArchivedSession[], now: number): ArchivedSession[] {
  return archived.filter((a) => now - a.archivedAt <= ARCHIVED_SESSION_MAX_AGE_MS).slice(0, MAX_ARCHIVED_SESSIONS);
}

/** `session` becomes current; the previous current (if any) is archived at `now`. */
function install(record: SessionRecord, session: SessionState, now: number, fromArchive = -1): SessionRecord {
  const rest = fromArchive >= 0 ? record.archived.filter((_, i) => i !== fromArchive) : record.archived;
  const archived = record.current ? [{ session: record.current, archivedAt: now }, ...rest] : rest;
  return { current: session, archived: pruneArchived(archived, now), sendGeneration: record.sendGeneration };
}

// ---------------------------------------------------------------------------------------------
// Initiate / encrypt
// ---------------------------------------------------------------------------------------------

/** PQXDH with a verified bundle, then RatchetInitAlice. The new session becomes current. */
export async function initiateSession(
  curves: Curve25519,
  rng: Rng,
  ours: PqxdhLocalIdentity,
  bundle: VerifiedBundle,
  now: number,
  record: SessionRecord = emptySessionRecord(),
): Promise<SessionRecord> {
  // The ratchet's first DH does not depend on SK, so it runs concurrently with PQXDH. pqxdhInitiate draws all
  // its randomness (EK_A, then the ML-KEM message) before its first await, so the rng order stays EK_A, m,
  // ratchet key.
  const [x, start] = await Promise.all([
    pqxdhInitiate(curves, rng, ours, bundle),
    aliceRatchetStart(curves, rng, bundle.signedPrekey.publicKey),
  ]);
  const ratchet = initAliceWith(start, x.sharedSecret, x.associatedData);
  const session: SessionState = {
    baseKey: x.init.ephemeralKey,
    localIdentityKey: ours.identityKey.publicKey,
    remoteIdentityKey: x.theirIdentityKey,
    ratchet,
    pendingPreKey: encodePqxdhInit(x.init),
    createdAt: now,
  };
  return install(record, session, now);
}

/** Rule for PITFALLS 12: a record older than the last persisted send generation must not send. */
export function assertNotStale(record: SessionRecord, lastPersistedGeneration: number): void {
  if (record.sendGeneration < lastPersistedGeneration) fail(ErrorCode.StaleState, 'assertNotStale');
}

/** An initiated session never acknowledged for SESSION_UNACKED_MAX_AGE_MS must not send (PITFALLS 13). */
export function isSessionExpired(session: SessionState, now: number): boolean {
  return session.pendingPreKey !== null && now - session.createdAt > SESSION_UNACKED_MAX_AGE_MS;
}

/**
 * Encrypt with the current session. Synchronous (symmetric only). Bumps `sendGeneration`; the caller
 * persists the returned record before the message leaves.
 */
export function encrypt(
  record: SessionRecord,
  plaintext: Uint8Array,
  now: number,
): { record: SessionRecord; message: Uint8Array; type: MessageType } {
  const op = 'encrypt';
  const s = record.current ?? fail(ErrorCode.NoSession, op);
  if (isSessionExpired(s, now)) fail(ErrorCode.SessionExpired, op, 'unacknowledged for too long');
  const r = ratchetEncrypt(s.ratchet, pad(plaintext));
  const type = s.pendingPreKey ? MessageType.PreKey : MessageType.Message;
  const message = encodeMessage({ type, init: s.pendingPreKey, ratchet: r.message });
  return {
    record: { ...record, current: { ...s, ratchet: r.state }, sendGeneration: record.sendGeneration + 1 },
    message,
    type,
  };
}

// ---------------------------------------------------------------------------------------------
// Decrypt
// ---------------------------------------------------------------------------------------------

export interface PrekeyIds {
  readonly signedPrekeyId: number;
  readonly oneTimePrekeyId: number | null;
  readonly kemPrekeyId: number;
}

export interface DecryptContext {
  readonly ours: PqxdhLocalIdentity;
  /** The device the transport says sent this message; a PreKeyMessage must name the same. */
  readonly remote: { readonly userId: string; readonly deviceId: string };
  /** Our private prekeys for these ids, or null if unknown (already used or never ours). */
  responderKeys(ids: PrekeyIds): PqxdhResponderKeys | null | Promise<PqxdhResponderKeys | null>;
  /** Whether the initiator's identity key is the one we trust for `remote` (TOFU or verified). */
  isTrustedIdentity(identityKey: TheirX25519Key): boolean | Promise<boolean>;
}

export interface DecryptResult {
  readonly record: SessionRecord;
  readonly plaintext: Uint8Array;
  /** Set when a new session consumed this one-time prekey: the caller deletes its private half now. */
  readonly consumedOneTimePrekeyId: number | null;
  /**
   * Set when a new session used this ML-KEM prekey (as libsignal's `PreKeysUsed.kyber_pre_key_id`): the
   * caller deletes its private half now unless it is the caller's last-resort key, which stays.
   */
  readonly consumedKemPrekeyId: number | null;
  /** True when the message created a new (responder) session. */
  readonly newSession: boolean;
}

/** Try current then archived sessions (optionally only those with `baseKey`); promote on success. */
async function decryptExisting(
  curves: Curve25519,
  rng: Rng,
  record: SessionRecord,
  m: RatchetCiphertext,
  now: number,
  baseKey: Uint8Array | null,
): Promise<{ record: SessionRecord; plaintext: Uint8Array }> {
  const op = 'decrypt';
  const candidates: [SessionState, number][] = [];
  if (record.current) candidates.push([record.current, -1]);
  for (const [i, a] of record.archived.entries()) candidates.push([a.session, i]);
  let firstError: unknown = null;
  for (const [s, at] of candidates) {
    if (baseKey && !equal(s.baseKey, baseKey)) continue;
    if (at >= 0 && now - record.archived[at]!.archivedAt > ARCHIVED_SESSION_MAX_AGE_MS) continue;
    try {
      const r = await ratchetDecrypt(curves, rng, s.ratchet, m);
      const session: SessionState = { ...s, ratchet: r.state, pendingPreKey: null };
      const next =
        at < 0
          ? { ...record, current: session, archived: pruneArchived(record.archived, now) }
          : install(record, session, now, at);
      return { record: next, plaintext: unpad(r.plaintext) };
    } catch (e) {
      if (is(e, ErrorCode.Duplicate)) throw e;
      firstError ??= e;
    }
  }
  return fail(firstError === null ? ErrorCode.NoSession : ErrorCode.DecryptionFailed, op);
}

async function decryptPreKey(
  curves: Curve25519,
  rng: Rng,
  record: SessionRecord,
  m: DecodedMessage,
  ctx: DecryptContext,
  now: number,
): Promise<DecryptResult> {
  const op = 'decrypt';
  const init = decodePqxdhInit(m.init ?? fail(ErrorCode.Decode, op));
  const sessions = [record.current, ...record.archived.map((a) => a.session)];
  if (sessions.some((s) => s && equal(s.baseKey, init.ephemeralKey))) {
    const r = await decryptExisting(curves, rng, record, m.ratchet, now, init.ephemeralKey);
    return { ...r, consumedOneTimePrekeyId: null, consumedKemPrekeyId: null, newSession: false };
  }
  if (init.initiatorUserId !== ctx.remote.userId || init.initiatorDeviceId !== ctx.remote.deviceId)
    fail(ErrorCode.SenderMismatch, op, 'init names another sender');
  const identityKey = theirX25519(init.initiatorIdentityKey, op);
  if (!(await ctx.isTrustedIdentity(identityKey))) fail(ErrorCode.UntrustedIdentity, op);
  const { signedPrekeyId, oneTimePrekeyId, kemPrekeyId } = init;
  const keys =
    (await ctx.responderKeys({ signedPrekeyId, oneTimePrekeyId, kemPrekeyId })) ??
    fail(ErrorCode.DecryptionFailed, op, 'unknown prekey');
  // Bob's first DH ratchet step (from DHs = his signed prekey) does not depend on SK: it runs concurrently
  // with PQXDH, which draws no randomness, so the rng is still drawn exactly once, for the fresh ratchet key.
  let step: StartedDhStep | undefined;
  try {
    step = startDhStep(curves, rng, keys.signedPrekey, m.ratchet);
  } catch {
    step = undefined; // a bad header: ratchetDecrypt refuses it below, after PQXDH, as before
  }
  const x = await pqxdhRespond(curves, ctx.ours, keys, init, identityKey);
  const ratchet = initBob(x.sharedSecret, x.associatedData, keys.signedPrekey);
  const r = await ratchetDecrypt(curves, rng, ratchet, m.ratchet, step);
  const session: SessionState = {
    baseKey: init.ephemeralKey,
    localIdentityKey: ctx.ours.identityKey.publicKey,
    remoteIdentityKey: identityKey,
    ratchet: r.state,
    pendingPreKey: null,
    createdAt: now,
  };
  const plaintext = unpad(r.plaintext);
  return {
    record: install(record, session, now),
    plaintext,
    consumedOneTimePrekeyId: oneTimePrekeyId,
    consumedKemPrekeyId: kemPrekeyId,
    newSession: true,
  };
}

/**
 * Decrypt a Message or PreKeyMessage from the remote device of `record`. All-or-nothing: on failure
 * `record` is unchanged and nothing was consumed. Errors are collapsed by publicDecryptError.
 */
export async function decrypt(
  curves: Curve25519,
  rng: Rng,
  record: SessionRecord,
  message: Uint8Array,
  ctx: DecryptContext,
  now: number,
): Promise<DecryptResult> {
  try {
    const m = decodeMessage(message);
    if (m.type === MessageType.PreKey) return await decryptPreKey(curves, rng, record, m, ctx, now);
    const r = await decryptExisting(curves, rng, record, m.ratchet, now, null);
    return { ...r, consumedOneTimePrekeyId: null, consumedKemPrekeyId: null, newSession: false };
  } catch (e) {
    throw publicDecryptError(e, 'decrypt');
  }
}

// ---------------------------------------------------------------------------------------------
// Serialization (the engine stores the result encrypted at rest)
// ---------------------------------------------------------------------------------------------

function writeSession(w: Writer, s: SessionState): void {
  w.fixed(s.baseKey, KEY_LEN)
    .fixed(s.localIdentityKey, KEY_LEN)
    .fixed(s.remoteIdentityKey, KEY_LEN)
    .u64(s.createdAt)
    .bool(s.pendingPreKey !== null);
  if (s.pendingPreKey) w.bytes(s.pendingPreKey);
  writeRatchetState(w, s.ratchet);
}

function readSession(r: Reader): SessionState {
  const op = 'deserializeSessionRecord';
  return {
    baseKey: theirX25519(r.fixed(KEY_LEN), op),
    localIdentityKey: r.fixed(KEY_LEN),
    remoteIdentityKey: theirX25519(r.fixed(KEY_LEN), op),
    createdAt: r.u64(),
    pendingPreKey: r.bool() ? r.bytes(MAX_STATE_PENDING_LEN) : null,
    ratchet: readRatchetState(r),
  };
}

/**
 * STATE_VERSION u8 ‖ u64 sendGeneration ‖ bool hasCurrent [‖ session] ‖ u32 #archived ‖
 * (u64 archivedAt ‖ session)*, with session = baseKey[32] ‖ localIK[32] ‖ remoteIK[32] ‖ u64 createdAt ‖
 * bool hasPending [‖ bytes init] ‖ ratchet state (ratchet.ts writeRatchetState).
 */
export function serializeSessionRecord(record: SessionRecord): Uint8Array {
  const w = new Writer()
    .u8(STATE_VERSION)
    .u64(record.sendGeneration)
    .bool(record.current !== null);
  if (record.current) writeSession(w, record.current);
  w.u32(record.archived.length);
  for (const a of record.archived) {
    w.u64(a.archivedAt);
    writeSession(w, a.session);
  }
  return w.finish();
}

export function deserializeSessionRecord(bytes: Uint8Array): SessionRecord {
  const op = 'deserializeSessionRecord';
  const r = new Reader(bytes, op);
  if (r.u8() !== STATE_VERSION) fail(ErrorCode.Decode, op, 'unknown state version');
  const sendGeneration = r.u64();
  const current = r.bool() ? readSession(r) : null;
  const n = r.u32();
  if (n > MAX_ARCHIVED_SESSIONS) fail(ErrorCode.Decode, op, 'too many archived sessions');
  const archived: ArchivedSession[] = [];
  for (let i = 0; i < n; i++) {
    const archivedAt = r.u64();
    archived.push({ archivedAt, session: readSession(r) });
  }
  r.end();
  return { current, archived, sendGeneration };
}
