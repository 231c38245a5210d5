/**
 * Keys only the user's own devices hold (docs/PROTOCOL.md §"Linking", "Data only your devices read"),
 * derived from the user identity secret that every device of the user has after linking:
 *
 * ```
 * nameKey ‖ syncKey = HKDF-SHA256(ikm = UIK seed[32], salt = 0x00×32, info = LABEL_ACCOUNT_KEYS, L = 64)
 *
 * device name (93 bytes, stored by the server as-is):
 *   u8 0x01 ‖ nonce[12] ‖ AES-256-GCM(nameKey, nonce, pad64(UTF-8(name)),
 *                                    aad = u32 len ‖ LABEL_DEVICE_NAME ‖ id userId ‖ id deviceId)
 *   pad64: the name (≤ 63 bytes) ‖ 0x80 ‖ 0x00… to exactly DEVICE_NAME_PADDED_LEN (64) bytes
 *
 * own sync conversation id:
 *   "self-" ‖ base64url(HMAC-SHA256(syncKey, u32 len ‖ LABEL_SELF_CONVERSATION ‖ id userId)[0,16))
 * ```
 *
 * The name is bound to its (user, device): the server cannot move a name to another device or another
 * account, and it learns neither the name nor its length. The sync conversation id cannot be guessed by
 * anyone without the identity secret, so nobody can create that conversation first.
 *
 * Does NOT: store keys (callers derive them when needed and keep them in memory only), or draw randomness
 * itself (the nonce comes from the caller's rng).
 * @module
 */
import { concat, fromUtf8, toB64u, utf8, Writer } from './bytes.js';
import {
  DEVICE_NAME_PADDED_LEN,
  LABEL_ACCOUNT_KEYS,
  LABEL_DEVICE_NAME,
  LABEL_SELF_CONVERSATION,
  MAX_DEVICE_NAME_LEN,
  PROTOCOL_VERSION,
} from './constants.js';
import { ErrorCode, fail, ProtocolError } from './errors.js';
import { assertId } from './identity.js';
import {
  AES_KEY_LEN,
  aesGcmDecrypt,
  aesGcmEncrypt,
  GCM_NONCE_LEN,
  GCM_TAG_LEN,
  hkdfSha256ZeroSalt,
  hmacSha256,
  KEY_LEN,
  type Rng,
} from './primitives.js';

export interface AccountKeys {
  readonly nameKey: Uint8Array;
  readonly syncKey: Uint8Array;
}

/** Length of an encrypted device name. */
export const DEVICE_NAME_SEALED_LEN = 1 + GCM_NONCE_LEN + DEVICE_NAME_PADDED_LEN + GCM_TAG_LEN;

export function accountKeys(userIdentitySecret: Uint8Array): AccountKeys {
  if (userIdentitySecret.length !== KEY_LEN) fail(ErrorCode.InvalidKey, 'accountKeys', 'secret must be 32 bytes');
  const okm = hkdfSha256ZeroSalt(userIdentitySecret, utf8(LABEL_ACCOUNT_KEYS), 2 * AES_KEY_LEN);
  return { nameKey: okm.slice(0, AES_KEY_LEN), syncKey: okm.slice(AES_KEY_LEN) };
}

function nameAad(userId: string, deviceId: string): Uint8Array {
  return new Writer().str(LABEL_DEVICE_NAME).str(userId).str(deviceId).finish();
}

/** A device name for the server to store; `limit_exceeded` over MAX_DEVICE_NAME_LEN bytes. */
export function sealDeviceName(
  rng: Rng,
  keys: AccountKeys,
  userId: string,
  deviceId: string,
  name: string,
): Uint8Array {
  const op = 'sealDeviceName';
  assertId(userId, 'userId', op);
  assertId(deviceId, 'deviceId', op);
  const raw = utf8(name);
  if (raw.length > MAX_DEVICE_NAME_LEN) fail(ErrorCode.LimitExceeded, op, 'device name too long');
  const padded = new Uint8Array(DEVICE_NAME_PADDED_LEN);
  padded.set(raw);
  padded[raw.length] = 0x80;
  const nonce = rng(GCM_NONCE_LEN);
  if (nonce.length !== GCM_NONCE_LEN) fail(ErrorCode.InvalidKey, op, 'rng returned wrong length');
  return concat(
    Uint8Array.of(PROTOCOL_VERSION),
    nonce,
    aesGcmEncrypt(keys.nameKey, nonce, padded, nameAad(userId, deviceId)),
  );
}

/** The name, or `decryption_failed` (wrong key, moved to another device, tampered, malformed). */
export function openDeviceName(keys: AccountKeys, userId: string, deviceId: string, sealed: Uint8Array): string {
  const op = 'openDeviceName';
  try {
    if (sealed.length !== DEVICE_NAME_SEALED_LEN || sealed[0] !== PROTOCOL_VERSION) fail(ErrorCode.Decode, op);
    const nonce = sealed.subarray(1, 1 + GCM_NONCE_LEN);
    const padded = aesGcmDecrypt(keys.nameKey, nonce, sealed.subarray(1 + GCM_NONCE_LEN), nameAad(userId, deviceId));
    let i = padded.length - 1;
    while (i >= 0 && padded[i] === 0) i--;
    if (i < 0 || padded[i] !== 0x80) fail(ErrorCode.Decode, op);
    return fromUtf8(padded.subarray(0, i));
  } catch {
    throw new ProtocolError(ErrorCode.DecryptionFailed, op);
  }
}

/** The id of the user's own sync conversation (read positions and other state shared by own devices). */
export function selfConversationId(keys: AccountKeys, userId: string): string {
  assertId(userId, 'userId', 'selfConversationId');
  const mac = hmacSha256(keys.syncKey, new Writer().str(LABEL_SELF_CONVERSATION).str(userId).finish());
  return `self-${toB64u(mac.subarray(0, 16))}`;
}
