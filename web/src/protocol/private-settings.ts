/**
 * Private settings (docs/PROTOCOL.md §"Private settings"): what only the user's own devices may read — the
 * profile key, who is blocked or muted, which people and conversations were accepted, which requests were
 * deleted — as one blob the server stores and cannot open, under a key derived from the user identity
 * seed that every device of the user holds (the same root and HKDF pattern as linking's device-name key,
 * with its own label):
 *
 * ```
 * k       = HKDF-SHA256(ikm = UIK seed[32], salt = 0x00×32, info = LABEL_PRIVATE_SETTINGS, L = 32)
 * content = u8 0x01 ‖ bool hasProfileKey ‖ [profileKey[32]] ‖ u32 n ‖ n × (u8 kind ‖ id target ‖ u64 at ‖ u64 value)
 *           entries strictly increasing by (kind, UTF-8 bytes of target): one encoding per set
 * sealed  = u8 0x01 ‖ u64 revision ‖ nonce[12]
 *           ‖ AES-256-GCM(k, nonce, padB(content), aad = str LABEL_PRIVATE_SETTINGS_AAD ‖ id userId ‖ u64 revision)
 * padB    = as profiles, with SETTINGS_BUCKETS
 * ```
 *
 * The revision is in clear so the server can refuse a write that does not extend the one it holds
 * (exactly current + 1: compare-and-swap, so two devices never overwrite each other unseen), and in the
 * AAD so it cannot be changed without the key. A device never accepts a revision lower than one it has
 * seen (no rollback). Entry kinds a client does not know are kept as they are (a newer client's entries
 * survive an older client's write); an unknown content version is refused (`decode`), and a client that
 * cannot read the settings must not write them.
 *
 * Does NOT: merge (writers re-apply their own changes on top of the latest revision), talk to the server,
 * or draw randomness itself (the nonce is the only draw).
 * @module
 */
import { compare, concat, Reader, utf8, Writer } from './bytes.js';
import {
  LABEL_PRIVATE_SETTINGS,
  LABEL_PRIVATE_SETTINGS_AAD,
  MAX_ID_LEN,
  MAX_SETTINGS_ENTRIES,
  PROFILE_KEY_LEN,
  PROTOCOL_VERSION,
  SETTINGS_BUCKETS,
} from './constants.js';
import { ErrorCode, fail, is, ProtocolError } from './errors.js';
import { assertId, readId } from './identity.js';
import {
  aesGcmDecrypt,
  aesGcmEncrypt,
  GCM_NONCE_LEN,
  GCM_TAG_LEN,
  hkdfSha256ZeroSalt,
  KEY_LEN,
  type Rng,
} from './primitives.js';

/** Entry kinds (u8 on the wire). Others are preserved unread. */
export const SETTING_KIND = {
  /** target: a user id. Their messages are dropped on every own device; value 0. */
  blockUser: 1,
  /** target: a conversation id (a group we left when blocking it). value 0. */
  blockConversation: 2,
  /** target: a user id. value: muted until (ms), 0 = until unmuted. */
  muteUser: 3,
  /** target: a conversation id. value: muted until (ms), 0 = until unmuted. */
  muteConversation: 4,
  /** target: a user id we talk to: conversations they start or add us to are not requests. value 0. */
  acceptUser: 5,
  /** target: a conversation id accepted as a whole (a group request). value 0. */
  acceptConversation: 6,
  /** target: a conversation id of a deleted request; value: the last message seq it covered. */
  hideConversation: 7,
} as const;

export interface SettingEntry {
  readonly kind: number;
  readonly target: string;
  /** When the entry was set (ms, the writer's clock). */
  readonly at: number;
  readonly value: number;
}

export interface PrivateSettings {
  readonly profileKey: Uint8Array | null;
  readonly entries: readonly SettingEntry[];
}

/** Bytes before the ciphertext: version, revision, nonce. */
const HEADER_LEN = 1 + 8 + GCM_NONCE_LEN;
/** Every length sealed settings can have. */
export const SEALED_SETTINGS_LENGTHS: readonly number[] = SETTINGS_BUCKETS.map((b) => HEADER_LEN + b + GCM_TAG_LEN);
export const MAX_SEALED_SETTINGS_LEN = Math.max(...SEALED_SETTINGS_LENGTHS);

/** The private-settings key from the user identity key's 32-byte seed. */
export function privateSettingsKey(userIdentitySeed: Uint8Array): Uint8Array {
  if (!(userIdentitySeed instanceof Uint8Array) || userIdentitySeed.length !== KEY_LEN)
    fail(ErrorCode.InvalidKey, 'privateSettingsKey', 'seed must be 32 bytes');
  return hkdfSha256ZeroSalt(userIdentitySeed, utf8(LABEL_PRIVATE_SETTINGS), 32);
}

const order = (a: SettingEntry, b: SettingEntry) => a.kind - b.kind || compare(utf8(a.target), utf8(b.target));

function checkEntry(e: SettingEntry, op: string, code: ErrorCode): void {
  if (!Number.isInteger(e.kind) || e.kind < 1 || e.kind > 255) fail(code, op, 'bad kind');
  if (typeof e.target !== 'string') fail(code, op, 'bad target');
  const len = utf8(e.target).length;
  if (len === 0 || len > MAX_ID_LEN) fail(code, op, 'bad target');
  if (!Number.isSafeInteger(e.at) || e.at < 0) fail(code, op, 'bad at');
  if (!Number.isSafeInteger(e.value) || e.value < 0) fail(code, op, 'bad value');
}

export function encodeSettingsContent(s: PrivateSettings): Uint8Array {
  const op = 'encodeSettingsContent';
  if (s.profileKey !== null && s.profileKey.length !== PROFILE_KEY_LEN) fail(ErrorCode.InvalidKey, op);
  if (s.entries.length > MAX_SETTINGS_ENTRIES) fail(ErrorCode.LimitExceeded, op, 'too many entries');
  const sorted = [...s.entries].sort(order);
  for (let i = 0; i < sorted.length; i++) {
    checkEntry(sorted[i]!, op, ErrorCode.InvalidStructure);
    if (i > 0 && order(sorted[i - 1]!, sorted[i]!) === 0) fail(ErrorCode.InvalidStructure, op, 'duplicate entry');
  }
  const w = new Writer().u8(PROTOCOL_VERSION).bool(s.profileKey !== null);
  if (s.profileKey) w.fixed(s.profileKey, PROFILE_KEY_LEN);
  w.u32(sorted.length);
  for (const e of sorted) w.u8(e.kind).str(e.target).u64(e.at).u64(e.value);
  return w.finish();
}

export function decodeSettingsContent(bytes: Uint8Array): PrivateSettings {
  const op = 'decodeSettingsContent';
  const r = new Reader(bytes, op);
  if (r.u8() !== PROTOCOL_VERSION) fail(ErrorCode.Decode, op, 'unknown version');
  const profileKey = r.bool() ? r.fixed(PROFILE_KEY_LEN) : null;
  const n = r.u32();
  if (n > MAX_SETTINGS_ENTRIES) fail(ErrorCode.Decode, op, 'too many entries');
  const entries: SettingEntry[] = [];
  for (let i = 0; i < n; i++) {
    const e = { kind: r.u8(), target: readId(r, op), at: r.u64(), value: r.u64() };
    checkEntry(e, op, ErrorCode.Decode);
    if (i > 0 && order(entries[i - 1]!, e) >= 0) fail(ErrorCode.Decode, op, 'entries not strictly increasing');
    entries.push(e);
  }
  r.end();
  return { profileKey, entries };
}

/** The bucket a content of `len` bytes is padded to (`limit_exceeded` if none fits). */
export function settingsBucket(len: number): number {
  const b = SETTINGS_BUCKETS.find((x) => x >= len + 1);
  if (b === undefined) fail(ErrorCode.LimitExceeded, 'settingsBucket', 'settings too large');
  return b;
}

const aad = (userId: string, revision: number) =>
  new Writer().str(LABEL_PRIVATE_SETTINGS_AAD).str(userId).u64(revision).finish();

function checkRevision(revision: number, op: string): void {
  if (!Number.isSafeInteger(revision) || revision < 1) fail(ErrorCode.InvalidStructure, op, 'bad revision');
}

/** Seals `settings` as `revision` (≥ 1) of `userId`'s private settings. Draws the nonce (12). */
export function sealPrivateSettings(
  rng: Rng,
  key: Uint8Array,
  userId: string,
  revision: number,
  settings: PrivateSettings,
): Uint8Array {
  const op = 'sealPrivateSettings';
  assertId(userId, 'userId', op);
  checkRevision(revision, op);
  if (key.length !== 32) fail(ErrorCode.InvalidKey, op);
  const plain = encodeSettingsContent(settings);
  const padded = new Uint8Array(settingsBucket(plain.length));
  padded.set(plain);
  padded[plain.length] = 0x80;
  const nonce = rng(GCM_NONCE_LEN);
  if (nonce.length !== GCM_NONCE_LEN) fail(ErrorCode.InvalidKey, op, 'rng returned wrong length');
  const head = new Writer().u8(PROTOCOL_VERSION).u64(revision).finish();
  return concat(head, nonce, aesGcmEncrypt(key, nonce, padded, aad(userId, revision)));
}

/**
 * What the server reads of sealed settings it cannot open: the revision, if the version byte and the
 * length are right (null otherwise).
 */
export function sealedSettingsRevision(sealed: Uint8Array): number | null {
  if (sealed.length < HEADER_LEN || sealed[0] !== PROTOCOL_VERSION || !SEALED_SETTINGS_LENGTHS.includes(sealed.length))
    return null;
  try {
    const revision = new Reader(sealed.subarray(1, 9)).u64();
    return revision >= 1 ? revision : null;
  } catch {
    return null;
  }
}

/**
 * Opens sealed settings: `decode` for a wrong shape or content, `decryption_failed` for a wrong key,
 * another user's blob, a changed revision or tampering.
 */
export function openPrivateSettings(
  key: Uint8Array,
  userId: string,
  sealed: Uint8Array,
): { revision: number; settings: PrivateSettings } {
  const op = 'openPrivateSettings';
  assertId(userId, 'userId', op);
  if (key.length !== 32) fail(ErrorCode.InvalidKey, op);
  const revision = sealedSettingsRevision(sealed);
  if (revision === null) fail(ErrorCode.Decode, op, 'not sealed settings');
  let padded: Uint8Array;
  try {
    padded = aesGcmDecrypt(key, sealed.subarray(9, HEADER_LEN), sealed.subarray(HEADER_LEN), aad(userId, revision));
  } catch {
    throw new ProtocolError(ErrorCode.DecryptionFailed, op);
  }
  let i = padded.length - 1;
  while (i >= 0 && padded[i] === 0) i--;
  if (i < 0 || padded[i] !== 0x80) fail(ErrorCode.Decode, op, 'bad padding');
  if (settingsBucket(i) !== padded.length) fail(ErrorCode.Decode, op, 'padded beyond the bucket');
  try {
    return { revision, settings: decodeSettingsContent(padded.subarray(0, i)) };
  } catch (e) {
    if (is(e)) throw new ProtocolError(ErrorCode.Decode, op, e.message);
    throw e;
  }
}
