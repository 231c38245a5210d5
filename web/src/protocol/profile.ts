/**
 * Profiles (docs/PROTOCOL.md §"Profiles"): a display name and an avatar, sealed under a profile key that
 * its owner shares only inside end-to-end encrypted messages with the people they talk to (Signal's
 * model). The server stores the sealed profile and serves it to anyone who asks; without the key it is
 * noise of one of five sizes.
 *
 * ```
 * k      = HKDF-SHA256(ikm = profileKey[32], salt = 0x00×32, info = LABEL_PROFILE, L = 32)
 * content = u8 0x01 ‖ u64 updatedAt ‖ str name ‖ u8 avatarType ‖ bytes avatar
 * sealed  = u8 0x01 ‖ nonce[12] ‖ AES-256-GCM(k, nonce, padB(content), aad = str LABEL_PROFILE_AAD ‖ id userId)
 * padB(x) = x ‖ 0x80 ‖ 0x00… to B = the smallest PROFILE_BUCKETS entry ≥ len(x) + 1
 *
 * profile-key message (inside a pairwise message): u8 0x01 ‖ profileKey[32] ‖ u64 profileUpdatedAt   (41 bytes)
 * ```
 *
 * Names: NFC, no leading or trailing white space, ≤ MAX_PROFILE_NAME_LEN bytes, and none of the characters
 * that disguise text (C0/C1 controls, bidirectional overrides and isolates, line and paragraph separators);
 * a profile breaking a rule does not open. Avatars: JPEG, PNG or WebP by their leading bytes, ≤
 * MAX_AVATAR_LEN; the image itself is never parsed here (the client decodes it in the browser's sandboxed
 * image decoder and re-encodes it before upload).
 *
 * Does NOT: decide who gets the key (the engine), decode images, keep state, or draw randomness itself
 * (callers pass `rng`; the nonce and a new key are its only draws).
 * @module
 */
import { concat, Reader, utf8, Writer } from './bytes.js';
import {
  LABEL_PROFILE,
  LABEL_PROFILE_AAD,
  MAX_AVATAR_LEN,
  MAX_PROFILE_NAME_LEN,
  PROFILE_BUCKETS,
  PROFILE_KEY_LEN,
  PROTOCOL_VERSION,
} from './constants.js';
import { ErrorCode, fail, is, ProtocolError } from './errors.js';
import { assertId } from './identity.js';
import {
  aesGcmDecrypt,
  aesGcmEncrypt,
  GCM_NONCE_LEN,
  GCM_TAG_LEN,
  hkdfSha256ZeroSalt,
  type Rng,
} from './primitives.js';

export type AvatarType = 'jpeg' | 'png' | 'webp';

export interface Avatar {
  readonly type: AvatarType;
  readonly bytes: Uint8Array;
}

export interface ProfileContent {
  /** The owner's clock when this profile was written (ms); receivers never go back to an older one. */
  readonly updatedAt: number;
  /** May be empty: the app then shows the username alone. */
  readonly name: string;
  readonly avatar: Avatar | null;
}

export interface ProfileKeyMessage {
  readonly profileKey: Uint8Array;
  /** `updatedAt` of the profile sealed under this key when the message was sent (0: none yet). */
  readonly profileUpdatedAt: number;
}

/** Avatar type codes on the wire (0 = no avatar). */
export const AVATAR_TYPE_CODE: Readonly<Record<AvatarType, number>> = { jpeg: 1, png: 2, webp: 3 };
const TYPE_BY_CODE: readonly (AvatarType | null)[] = [null, 'jpeg', 'png', 'webp'];

/** Every length a sealed profile can have: version + nonce + bucket + tag. */
export const SEALED_PROFILE_LENGTHS: readonly number[] = PROFILE_BUCKETS.map(
  (b) => 1 + GCM_NONCE_LEN + b + GCM_TAG_LEN,
);
/** Largest sealed profile (the server's size limit). */
export const MAX_SEALED_PROFILE_LEN = Math.max(...SEALED_PROFILE_LENGTHS);
/** Length of an encoded profile-key message. */
export const PROFILE_KEY_MESSAGE_LEN = 1 + PROFILE_KEY_LEN + 8;

/**
 * Characters a display name may not contain: C0 and C1 controls, the bidirectional marks, embeddings,
 * overrides and isolates (they can make "evil" render as "live"), line and paragraph separators.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: the point is to find them
const FORBIDDEN = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/u;

/** Why `name` cannot be a display name, or null if it can. */
export function displayNameProblem(name: string): 'too_long' | 'not_normalized' | 'forbidden_character' | null {
  if (utf8(name).length > MAX_PROFILE_NAME_LEN) return 'too_long';
  if (name.normalize('NFC') !== name || name.trim() !== name) return 'not_normalized';
  if (FORBIDDEN.test(name)) return 'forbidden_character';
  return null;
}

/** True if `bytes` start like an image of `type` (the leading bytes only; nothing is decoded). */
export function avatarMagicMatches(type: AvatarType, b: Uint8Array): boolean {
  const at = (i: number, ...v: number[]) => v.every((x, j) => b[i + j] === x);
  switch (type) {
    case 'jpeg':
      return b.length >= 3 && at(0, 0xff, 0xd8, 0xff);
    case 'png':
      return b.length >= 8 && at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);
    case 'webp':
      return b.length >= 12 && at(0, 0x52, 0x49, 0x46, 0x46) && at(8, 0x57, 0x45, 0x42, 0x50);
  }
}

/** A fresh profile key (PROFILE_KEY_LEN bytes from `rng`). */
export function generateProfileKey(rng: Rng): Uint8Array {
  const k = rng(PROFILE_KEY_LEN);
  if (k.length !== PROFILE_KEY_LEN) fail(ErrorCode.InvalidKey, 'generateProfileKey', 'rng returned wrong length');
  return k;
}

function cipherKey(profileKey: Uint8Array, op: string): Uint8Array {
  if (!(profileKey instanceof Uint8Array) || profileKey.length !== PROFILE_KEY_LEN)
    fail(ErrorCode.InvalidKey, op, 'profile key must be 32 bytes');
  return hkdfSha256ZeroSalt(profileKey, utf8(LABEL_PROFILE), 32);
}

const aad = (userId: string) => new Writer().str(LABEL_PROFILE_AAD).str(userId).finish();

function checkContent(c: ProfileContent, op: string, code: ErrorCode): void {
  if (!Number.isSafeInteger(c.updatedAt) || c.updatedAt <= 0) fail(code, op, 'bad updatedAt');
  if (typeof c.name !== 'string') fail(code, op, 'bad name');
  const problem = displayNameProblem(c.name);
  if (problem === 'too_long') fail(code === ErrorCode.Decode ? code : ErrorCode.LimitExceeded, op, 'name too long');
  if (problem) fail(code, op, `name ${problem.replace('_', ' ')}`);
  if (c.avatar) {
    if (!(c.avatar.type in AVATAR_TYPE_CODE)) fail(code, op, 'bad avatar type');
    const n = c.avatar.bytes.length;
    if (n > MAX_AVATAR_LEN) fail(code === ErrorCode.Decode ? code : ErrorCode.LimitExceeded, op, 'avatar too large');
    if (n === 0 || !avatarMagicMatches(c.avatar.type, c.avatar.bytes)) fail(code, op, 'avatar is not that type');
  }
}

/** The unpadded content encoding (docs/PROTOCOL.md §"Profiles"). */
export function encodeProfileContent(c: ProfileContent): Uint8Array {
  checkContent(c, 'encodeProfileContent', ErrorCode.InvalidStructure);
  return new Writer()
    .u8(PROTOCOL_VERSION)
    .u64(c.updatedAt)
    .str(c.name)
    .u8(c.avatar ? AVATAR_TYPE_CODE[c.avatar.type] : 0)
    .bytes(c.avatar?.bytes ?? new Uint8Array(0))
    .finish();
}

export function decodeProfileContent(bytes: Uint8Array): ProfileContent {
  const op = 'decodeProfileContent';
  const r = new Reader(bytes, op);
  if (r.u8() !== PROTOCOL_VERSION) fail(ErrorCode.Decode, op, 'unknown version');
  const updatedAt = r.u64();
  const name = r.str(MAX_PROFILE_NAME_LEN);
  const code = r.u8();
  const type = TYPE_BY_CODE[code];
  if (type === undefined) fail(ErrorCode.Decode, op, 'unknown avatar type');
  const raw = r.bytes(MAX_AVATAR_LEN);
  r.end();
  if (type === null && raw.length !== 0) fail(ErrorCode.Decode, op, 'avatar bytes without a type');
  const c: ProfileContent = { updatedAt, name, avatar: type ? { type, bytes: raw } : null };
  checkContent(c, op, ErrorCode.Decode);
  return c;
}

/** The bucket a content of `len` bytes is padded to (`limit_exceeded` if none fits). */
export function profileBucket(len: number): number {
  const b = PROFILE_BUCKETS.find((x) => x >= len + 1);
  if (b === undefined) fail(ErrorCode.LimitExceeded, 'profileBucket', 'profile too large');
  return b;
}

/** Seals `content` for `userId` under `profileKey`: one of SEALED_PROFILE_LENGTHS bytes. Draws the nonce (12). */
export function sealProfile(rng: Rng, profileKey: Uint8Array, userId: string, content: ProfileContent): Uint8Array {
  const op = 'sealProfile';
  assertId(userId, 'userId', op);
  const k = cipherKey(profileKey, op);
  const plain = encodeProfileContent(content);
  const padded = new Uint8Array(profileBucket(plain.length));
  padded.set(plain);
  padded[plain.length] = 0x80;
  const nonce = rng(GCM_NONCE_LEN);
  if (nonce.length !== GCM_NONCE_LEN) fail(ErrorCode.InvalidKey, op, 'rng returned wrong length');
  return concat(Uint8Array.of(PROTOCOL_VERSION), nonce, aesGcmEncrypt(k, nonce, padded, aad(userId)));
}

/** What the server checks of a profile it cannot read: the version byte and one of the five lengths. */
export function isSealedProfileShape(sealed: Uint8Array): boolean {
  return sealed.length > 0 && sealed[0] === PROTOCOL_VERSION && SEALED_PROFILE_LENGTHS.includes(sealed.length);
}

/**
 * Opens a sealed profile: `decode` for a wrong shape or a content that breaks a rule, `decryption_failed`
 * for a wrong key, another user's profile, or tampering.
 */
export function openProfile(profileKey: Uint8Array, userId: string, sealed: Uint8Array): ProfileContent {
  const op = 'openProfile';
  assertId(userId, 'userId', op);
  const k = cipherKey(profileKey, op);
  if (!isSealedProfileShape(sealed)) fail(ErrorCode.Decode, op, 'not a sealed profile');
  let padded: Uint8Array;
  try {
    padded = aesGcmDecrypt(k, sealed.subarray(1, 1 + GCM_NONCE_LEN), sealed.subarray(1 + GCM_NONCE_LEN), aad(userId));
  } catch {
    throw new ProtocolError(ErrorCode.DecryptionFailed, op);
  }
  let i = padded.length - 1;
  while (i >= 0 && padded[i] === 0) i--;
  if (i < 0 || padded[i] !== 0x80) fail(ErrorCode.Decode, op, 'bad padding');
  // The bucket must be the smallest that fits (one encoding per profile).
  if (profileBucket(i) !== padded.length) fail(ErrorCode.Decode, op, 'padded beyond the bucket');
  try {
    return decodeProfileContent(padded.subarray(0, i));
  } catch (e) {
    if (is(e)) throw new ProtocolError(ErrorCode.Decode, op, e.message);
    throw e;
  }
}

export function encodeProfileKeyMessage(m: ProfileKeyMessage): Uint8Array {
  const op = 'encodeProfileKeyMessage';
  if (!(m.profileKey instanceof Uint8Array) || m.profileKey.length !== PROFILE_KEY_LEN)
    fail(ErrorCode.InvalidKey, op, 'profile key must be 32 bytes');
  if (!Number.isSafeInteger(m.profileUpdatedAt) || m.profileUpdatedAt < 0) fail(ErrorCode.InvalidStructure, op);
  return new Writer().u8(PROTOCOL_VERSION).fixed(m.profileKey, PROFILE_KEY_LEN).u64(m.profileUpdatedAt).finish();
}

export function decodeProfileKeyMessage(bytes: Uint8Array): ProfileKeyMessage {
  const op = 'decodeProfileKeyMessage';
  const r = new Reader(bytes, op);
  if (r.u8() !== PROTOCOL_VERSION) fail(ErrorCode.Decode, op, 'unknown version');
  const profileKey = r.fixed(PROFILE_KEY_LEN);
  const profileUpdatedAt = r.u64();
  r.end();
  return { profileKey, profileUpdatedAt };
}
