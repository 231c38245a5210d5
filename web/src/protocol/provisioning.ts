/**
 * The provisioning message (docs/PROTOCOL.md §"Linking", step 2; after Signal's device provisioning): the
 * linking device seals to the new device's ephemeral X25519 key everything the new device needs to become
 * one of the user's devices — the user identity secret, user id and username, the single-use linking token
 * the server issued, the current signed device list, the device name the person chose, whether history
 * follows, and the contacts' trust state (identity keys seen, verified marks).
 *
 * ```
 * E_old        = a fresh X25519 key pair from the caller's rng (used for this one message)
 * header       = u8 0x01 ‖ u8 0x01 (provisioning) ‖ channelId[16] ‖ E_old[32] ‖ E_new[32]
 * okm          = HKDF-SHA256(ikm = X25519(e_old, E_new), salt = 0x00×32, info = LABEL_PROVISIONING ‖ header, L = 76)
 * key, nonce   = okm[0,32), okm[32,44)          channelKey = okm[44,76)   (seals every later frame: transfer.ts)
 * sealed       = u8 0x01 ‖ u8 0x01 ‖ E_old[32] ‖ AES-256-GCM(key, nonce, pad(body, LINK_PADDING_BLOCK), aad = header)
 * ```
 *
 * The channel id and both public keys are bound into the key derivation and the AAD: a message the server
 * moves to another channel, or re-encrypts to a key it chose, does not open. Nothing in it is readable by
 * the relay; a change of any byte fails the AES-GCM tag (`decryption_failed`).
 *
 * Opening also checks the content: the user identity key derived from the secret must sign the device list
 * (verifyDeviceList under it), and the list must be for the same user id — so a well-formed message can
 * only make the new device a device of the account whose identity secret it carries.
 *
 * Does NOT: talk to the relay, decide what to put in the message (the engine does), or keep the channel
 * key (the caller holds it for the frames that follow and forgets it when the channel closes).
 * @module
 */
import { concat, Reader, utf8, Writer } from './bytes.js';
import {
  LABEL_LINKING_PROOF,
  LABEL_PROVISIONING,
  LINK_CHANNEL_ID_LEN,
  LINK_PADDING_BLOCK,
  MAX_DEVICE_NAME_LEN,
  MAX_LINK_CONTACTS,
  MAX_LINK_DEVICE_LIST_LEN,
  MAX_LINK_USERNAME_LEN,
  MAX_LINKING_TOKEN_LEN,
  PROTOCOL_VERSION,
} from './constants.js';
import { ErrorCode, fail, is, ProtocolError } from './errors.js';
import { assertId, decodeDeviceList, readId, type VerifiedDeviceList, verifyDeviceList } from './identity.js';
import {
  ed25519FromSecret,
  generateX25519,
  type OurEd25519KeyPair,
  type OurX25519KeyPair,
  type TheirEd25519Key,
  type TheirX25519Key,
  theirEd25519,
  theirX25519,
} from './keys.js';
import { pad, unpad } from './padding.js';
import {
  AES_KEY_LEN,
  aesGcmDecrypt,
  aesGcmEncrypt,
  type Curve25519,
  GCM_NONCE_LEN,
  GCM_TAG_LEN,
  hkdfSha256ZeroSalt,
  KEY_LEN,
  type Rng,
  sha256,
} from './primitives.js';

/** Frame type byte of the provisioning message (transfer.ts frames carry their direction instead). */
export const PROVISIONING_TYPE = 0x01;

/** A contact as the linking device trusts it. */
export interface ProvisioningContact {
  readonly userId: string;
  /** The user identity key the linking device trusts for this contact (trust on first use or accepted). */
  readonly identityKey: Uint8Array;
  /** The person marked this key as verified (compared safety numbers). */
  readonly verified: boolean;
  /** The contact's username as the linking device knows it ('' if unknown). */
  readonly username: string;
}

export interface ProvisioningContent {
  readonly userId: string;
  readonly username: string;
  /** The user identity key's 32-byte Ed25519 seed: the secret every device of the user holds. */
  readonly userIdentitySecret: Uint8Array;
  /** The device that sealed this message. */
  readonly linkedBy: string;
  /** The single-use token the server issued to the linking device for this channel. */
  readonly linkingToken: Uint8Array;
  /** The user's current signed device list (encoded); the new device signs version + 1 with itself added. */
  readonly deviceList: Uint8Array;
  /** The name the person gave the new device (only the user's devices can read it once stored). */
  readonly deviceName: string;
  /** True if the linking device will send history frames next (transfer.ts). */
  readonly history: boolean;
  readonly contacts: readonly ProvisioningContact[];
  /** The linking device's clock in ms (informational). */
  readonly createdAt: number;
}

/** What the new device gets: the content, checked, with the identity key pair and the verified list. */
export interface OpenedProvisioning extends Omit<ProvisioningContent, 'contacts'> {
  readonly userIdentity: OurEd25519KeyPair;
  readonly verifiedList: VerifiedDeviceList;
  readonly contacts: readonly (ProvisioningContact & { readonly identityKey: TheirEd25519Key })[];
}

const OKM_LEN = AES_KEY_LEN + GCM_NONCE_LEN + AES_KEY_LEN;
/** Upper bound of an encoded body (every field at its maximum), used to refuse oversized input before work. */
const MAX_BODY_LEN =
  1 +
  (4 + 64) +
  (4 + MAX_LINK_USERNAME_LEN) +
  KEY_LEN +
  (4 + 64) +
  (4 + MAX_LINKING_TOKEN_LEN) +
  (4 + MAX_LINK_DEVICE_LIST_LEN) +
  (4 + MAX_DEVICE_NAME_LEN) +
  1 +
  4 +
  MAX_LINK_CONTACTS * (4 + 64 + KEY_LEN + 1 + 4 + MAX_LINK_USERNAME_LEN) +
  8;
/** The largest sealed provisioning message a conforming sender produces. */
export const MAX_PROVISIONING_LEN =
  2 + KEY_LEN + (Math.floor(MAX_BODY_LEN / LINK_PADDING_BLOCK) + 1) * LINK_PADDING_BLOCK + GCM_TAG_LEN;

function header(channelId: Uint8Array, oldKey: Uint8Array, newKey: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(PROTOCOL_VERSION, PROVISIONING_TYPE), channelId, oldKey, newKey);
}

function keys(dh: Uint8Array, hdr: Uint8Array) {
  const okm = hkdfSha256ZeroSalt(dh, concat(utf8(LABEL_PROVISIONING), hdr), OKM_LEN);
  return {
    key: okm.slice(0, AES_KEY_LEN),
    nonce: okm.slice(AES_KEY_LEN, AES_KEY_LEN + GCM_NONCE_LEN),
    channelKey: okm.slice(AES_KEY_LEN + GCM_NONCE_LEN),
  };
}

function assertChannelId(channelId: Uint8Array, op: string): void {
  if (!(channelId instanceof Uint8Array) || channelId.length !== LINK_CHANNEL_ID_LEN)
    fail(ErrorCode.InvalidStructure, op, 'channel id must be 16 bytes');
}

function checkedUtf8(s: string, max: number, what: string, op: string): void {
  if (typeof s !== 'string' || utf8(s).length > max) fail(ErrorCode.LimitExceeded, op, `${what} too long`);
}

export function encodeProvisioningBody(c: ProvisioningContent): Uint8Array {
  const op = 'encodeProvisioningBody';
  assertId(c.userId, 'userId', op);
  assertId(c.linkedBy, 'linkedBy', op);
  checkedUtf8(c.username, MAX_LINK_USERNAME_LEN, 'username', op);
  checkedUtf8(c.deviceName, MAX_DEVICE_NAME_LEN, 'device name', op);
  if (c.userIdentitySecret.length !== KEY_LEN) fail(ErrorCode.InvalidKey, op, 'identity secret must be 32 bytes');
  if (c.linkingToken.length === 0 || c.linkingToken.length > MAX_LINKING_TOKEN_LEN)
    fail(ErrorCode.LimitExceeded, op, 'bad linking token length');
  if (c.deviceList.length > MAX_LINK_DEVICE_LIST_LEN) fail(ErrorCode.LimitExceeded, op, 'device list too long');
  if (c.contacts.length > MAX_LINK_CONTACTS) fail(ErrorCode.LimitExceeded, op, 'too many contacts');
  const w = new Writer()
    .u8(PROTOCOL_VERSION)
    .str(c.userId)
    .str(c.username)
    .fixed(c.userIdentitySecret, KEY_LEN)
    .str(c.linkedBy)
    .bytes(c.linkingToken)
    .bytes(c.deviceList)
    .str(c.deviceName)
    .bool(c.history)
    .u32(c.contacts.length);
  for (const k of c.contacts) {
    assertId(k.userId, 'contact userId', op);
    checkedUtf8(k.username, MAX_LINK_USERNAME_LEN, 'contact username', op);
    w.str(k.userId).fixed(theirEd25519(k.identityKey, op), KEY_LEN).bool(k.verified).str(k.username);
  }
  return w.u64(c.createdAt).finish();
}

export function decodeProvisioningBody(bytes: Uint8Array): ProvisioningContent & {
  readonly contacts: readonly (ProvisioningContact & { readonly identityKey: TheirEd25519Key })[];
} {
  const op = 'decodeProvisioningBody';
  const r = new Reader(bytes, op);
  if (r.u8() !== PROTOCOL_VERSION) fail(ErrorCode.Decode, op, 'unknown version');
  const userId = readId(r, op);
  const username = r.str(MAX_LINK_USERNAME_LEN);
  const userIdentitySecret = r.fixed(KEY_LEN);
  const linkedBy = readId(r, op);
  const linkingToken = r.bytes(MAX_LINKING_TOKEN_LEN);
  if (linkingToken.length === 0) fail(ErrorCode.Decode, op, 'empty linking token');
  const deviceList = r.bytes(MAX_LINK_DEVICE_LIST_LEN);
  const deviceName = r.str(MAX_DEVICE_NAME_LEN);
  const history = r.bool();
  const n = r.u32();
  if (n > MAX_LINK_CONTACTS) fail(ErrorCode.LimitExceeded, op, 'too many contacts');
  const contacts: (ProvisioningContact & { identityKey: TheirEd25519Key })[] = [];
  for (let i = 0; i < n; i++) {
    const cu = readId(r, op);
    const identityKey = theirEd25519(r.fixed(KEY_LEN), op);
    contacts.push({ userId: cu, identityKey, verified: r.bool(), username: r.str(MAX_LINK_USERNAME_LEN) });
  }
  const createdAt = r.u64();
  r.end();
  return {
    userId,
    username,
    userIdentitySecret,
    linkedBy,
    linkingToken,
    deviceList,
    deviceName,
    history,
    contacts,
    createdAt,
  };
}

/**
 * Seals `content` to the new device's ephemeral key for the channel. Draws E_old (32 bytes) from `rng`.
 * Returns the sealed message and the channel key for the frames that follow.
 */
export async function sealProvisioning(
  curves: Curve25519,
  rng: Rng,
  to: { readonly channelId: Uint8Array; readonly ephemeralKey: TheirX25519Key },
  content: ProvisioningContent,
): Promise<{ sealed: Uint8Array; channelKey: Uint8Array }> {
  const op = 'sealProvisioning';
  assertChannelId(to.channelId, op);
  theirX25519(to.ephemeralKey, op);
  const body = encodeProvisioningBody(content);
  const eph = await generateX25519(curves, rng);
  const hdr = header(to.channelId, eph.publicKey, to.ephemeralKey);
  const k = keys(await curves.x25519(eph, to.ephemeralKey), hdr);
  const ct = aesGcmEncrypt(k.key, k.nonce, pad(body, LINK_PADDING_BLOCK, MAX_BODY_LEN), hdr);
  return {
    sealed: concat(Uint8Array.of(PROTOCOL_VERSION, PROVISIONING_TYPE), eph.publicKey, ct),
    channelKey: k.channelKey,
  };
}

/**
 * Opens a provisioning message with the new device's ephemeral key pair. Every failure of the envelope or
 * its authentication is `decryption_failed` (one answer, whatever was tampered with); a well-authenticated
 * message whose content breaks a rule is `invalid_structure` / `untrusted_identity` / `decode`.
 */
export async function openProvisioning(
  curves: Curve25519,
  ours: OurX25519KeyPair,
  channelId: Uint8Array,
  sealed: Uint8Array,
): Promise<{ content: OpenedProvisioning; channelKey: Uint8Array }> {
  const op = 'openProvisioning';
  assertChannelId(channelId, op);
  let padded: Uint8Array;
  let channelKey: Uint8Array;
  try {
    if (sealed.length < 2 + KEY_LEN + GCM_TAG_LEN + LINK_PADDING_BLOCK || sealed.length > MAX_PROVISIONING_LEN)
      fail(ErrorCode.Decode, op, 'bad length');
    if (sealed[0] !== PROTOCOL_VERSION || sealed[1] !== PROVISIONING_TYPE) fail(ErrorCode.Decode, op, 'bad version');
    const oldKey = theirX25519(sealed.slice(2, 2 + KEY_LEN), op);
    const hdr = header(channelId, oldKey, ours.publicKey);
    const k = keys(await curves.x25519(ours, oldKey), hdr);
    padded = aesGcmDecrypt(k.key, k.nonce, sealed.subarray(2 + KEY_LEN), hdr);
    channelKey = k.channelKey;
  } catch {
    // One answer for a bad length, version, key or tag: nothing tells a prober which check failed.
    throw new ProtocolError(ErrorCode.DecryptionFailed, op);
  }
  const body = decodeProvisioningBody(unpad(padded, LINK_PADDING_BLOCK, MAX_BODY_LEN));
  const userIdentity = await ed25519FromSecret(curves, body.userIdentitySecret);
  let verifiedList: VerifiedDeviceList;
  try {
    verifiedList = await verifyDeviceList(curves, decodeDeviceList(body.deviceList), userIdentity.publicKey);
  } catch (e) {
    // The list is not signed by the identity key in the message: never adopt either.
    if (is(e, ErrorCode.UntrustedIdentity) || is(e, ErrorCode.Signature)) fail(ErrorCode.UntrustedIdentity, op);
    throw e;
  }
  if (verifiedList.userId !== body.userId) fail(ErrorCode.InvalidStructure, op, 'device list of another user');
  if (!verifiedList.devices.some((d) => d.deviceId === body.linkedBy))
    fail(ErrorCode.InvalidStructure, op, 'the linking device is not in the list');
  return { content: { ...body, userIdentity, verifiedList }, channelKey };
}

/**
 * The challenge the new device signs with `signLoginChallenge` when it redeems the linking token:
 * SHA-256(LABEL_LINKING_PROOF ‖ token). The server verifies it under the new device's certified signing
 * key, so the token is spent on that key and nothing else.
 */
export function linkingChallenge(linkingToken: Uint8Array): Uint8Array {
  if (linkingToken.length === 0 || linkingToken.length > MAX_LINKING_TOKEN_LEN)
    fail(ErrorCode.LimitExceeded, 'linkingChallenge', 'bad linking token length');
  return sha256(concat(utf8(LABEL_LINKING_PROOF), linkingToken));
}
