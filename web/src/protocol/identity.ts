/**
 * Identity and device model (docs/PROTOCOL.md §"Keys", §"Devices"): a user identity key (Ed25519)
 * certifies each device's Ed25519 signing key and X25519 identity key in a device certificate, and signs
 * a versioned device list. Also the login-challenge signature the server checks.
 *
 * Does NOT: decide trust (trust-on-first-use and key-change prompts belong to the caller), store
 * anything, or talk to the server. A device is "encryptable" only if it appears in a `VerifiedDeviceList`.
 * @module
 */
import { concat, equal, Reader, utf8, Writer } from './bytes.js';
import {
  LOGIN_CHALLENGE_MAX_LEN,
  LOGIN_CHALLENGE_MIN_LEN,
  MAX_DEVICES_PER_USER,
  MAX_ID_LEN,
  PROTOCOL_VERSION,
  SIG_DEVICE_CERT,
  SIG_DEVICE_LIST,
  SIG_LOGIN_CHALLENGE,
} from './constants.js';
import { ErrorCode, fail } from './errors.js';
import {
  type OurEd25519KeyPair,
  type TheirEd25519Key,
  type TheirX25519Key,
  theirEd25519,
  theirX25519,
} from './keys.js';
import { type Curve25519, KEY_LEN, SIG_LEN } from './primitives.js';

// ---- shared helpers (also used by prekeys.ts and membership.ts) -----------------------------------

/** Signature input: u32be(len(label)) ‖ label ‖ body — the label makes every signed structure distinct. */
export function signatureInput(label: string, body: Uint8Array): Uint8Array {
  return concat(new Writer().str(label).finish(), body);
}

/** One-line id check: non-empty, at most MAX_ID_LEN UTF-8 bytes. */
export function assertId(id: string, what: string, op: string): void {
  if (typeof id !== 'string') fail(ErrorCode.InvalidStructure, op, `bad ${what}`);
  const len = utf8(id).length;
  if (len === 0 || len > MAX_ID_LEN) fail(ErrorCode.InvalidStructure, op, `bad ${what}`);
}

/** Reads a non-empty id of at most MAX_ID_LEN bytes. */
export function readId(r: Reader, op: string): string {
  const s = r.str(MAX_ID_LEN);
  if (s.length === 0) fail(ErrorCode.Decode, op, 'empty id');
  return s;
}

function readVersion(r: Reader, op: string): void {
  if (r.u8() !== PROTOCOL_VERSION) fail(ErrorCode.Decode, op, 'unknown version');
}

// ---- device certificates --------------------------------------------------------------------------

export interface DeviceCertificateBody {
  readonly userId: string;
  readonly deviceId: string;
  /** The device's Ed25519 signing public key. */
  readonly signingKey: Uint8Array;
  /** The device's X25519 identity public key (used in PQXDH). */
  readonly identityKey: Uint8Array;
  /** Milliseconds since the epoch, set by the issuing client (informational, not trusted for ordering). */
  readonly createdAt: number;
}

export interface DeviceCertificate extends DeviceCertificateBody {
  /** Ed25519 signature by the USER identity key over signatureInput(SIG_DEVICE_CERT, body). */
  readonly signature: Uint8Array;
}

/** A certificate whose signature was checked against a user identity key. Only produced by this module. */
export interface VerifiedDevice {
  readonly userId: string;
  readonly deviceId: string;
  readonly signingKey: TheirEd25519Key;
  readonly identityKey: TheirX25519Key;
  readonly createdAt: number;
  readonly certificate: DeviceCertificate;
}

/** version u8 ‖ str userId ‖ str deviceId ‖ signingKey[32] ‖ identityKey[32] ‖ u64 createdAt */
export function encodeDeviceCertificateBody(b: DeviceCertificateBody): Uint8Array {
  assertId(b.userId, 'user id', 'encodeDeviceCertificate');
  assertId(b.deviceId, 'device id', 'encodeDeviceCertificate');
  return new Writer()
    .u8(PROTOCOL_VERSION)
    .str(b.userId)
    .str(b.deviceId)
    .fixed(b.signingKey, KEY_LEN)
    .fixed(b.identityKey, KEY_LEN)
    .u64(b.createdAt)
    .finish();
}

/** body ‖ signature[64] */
export function encodeDeviceCertificate(c: DeviceCertificate): Uint8Array {
  return concat(encodeDeviceCertificateBody(c), new Writer().fixed(c.signature, SIG_LEN).finish());
}

function readDeviceCertificate(r: Reader, op: string): DeviceCertificate {
  readVersion(r, op);
  const userId = readId(r, op);
  const deviceId = readId(r, op);
  const signingKey = theirEd25519(r.fixed(KEY_LEN), op);
  const identityKey = theirX25519(r.fixed(KEY_LEN), op);
  const createdAt = r.u64();
  const signature = r.fixed(SIG_LEN);
  return { userId, deviceId, signingKey, identityKey, createdAt, signature };
}

/** Strict decode; keys are validated here (canonical, not small-order), signatures are not. */
export function decodeDeviceCertificate(bytes: Uint8Array): DeviceCertificate {
  const r = new Reader(bytes, 'decodeDeviceCertificate');
  const c = readDeviceCertificate(r, 'decodeDeviceCertificate');
  r.end();
  return c;
}

export async function issueDeviceCertificate(
  curves: Curve25519,
  userIdentity: OurEd25519KeyPair,
  body: DeviceCertificateBody,
): Promise<DeviceCertificate> {
  theirEd25519(body.signingKey, 'issueDeviceCertificate');
  theirX25519(body.identityKey, 'issueDeviceCertificate');
  const msg = signatureInput(SIG_DEVICE_CERT, encodeDeviceCertificateBody(body));
  const signature = await curves.ed25519Sign(userIdentity, msg);
  return { ...body, signature };
}

/** Checks keys, ids and the user identity signature. Throws `invalid_key` / `signature`. */
export async function verifyDeviceCertificate(
  curves: Curve25519,
  cert: DeviceCertificate,
  userIdentityKey: Uint8Array,
): Promise<VerifiedDevice> {
  const op = 'verifyDeviceCertificate';
  const signingKey = theirEd25519(cert.signingKey, op);
  const identityKey = theirX25519(cert.identityKey, op);
  theirEd25519(userIdentityKey, op);
  const msg = signatureInput(SIG_DEVICE_CERT, encodeDeviceCertificateBody(cert));
  if (!(await curves.ed25519Verify(userIdentityKey, msg, cert.signature))) fail(ErrorCode.Signature, op);
  const { userId, deviceId, createdAt } = cert;
  return { userId, deviceId, signingKey, identityKey, createdAt, certificate: cert };
}

// ---- device lists ---------------------------------------------------------------------------------

export interface DeviceListBody {
  readonly userId: string;
  /** u32, starts at 1, +1 on every change. */
  readonly version: number;
  readonly userIdentityKey: Uint8Array;
  readonly devices: readonly DeviceCertificate[];
}

export interface DeviceList extends DeviceListBody {
  /** Ed25519 signature by the user identity key over signatureInput(SIG_DEVICE_LIST, body). */
  readonly signature: Uint8Array;
}

declare const verifiedList: unique symbol;
/** A device list whose signature and every certificate verified. The only source of encryptable devices. */
export interface VerifiedDeviceList {
  readonly [verifiedList]: true;
  readonly userId: string;
  readonly version: number;
  readonly userIdentityKey: TheirEd25519Key;
  readonly devices: readonly VerifiedDevice[];
  readonly list: DeviceList;
}

/** version u8 ‖ str userId ‖ u32 listVersion ‖ userIdentityKey[32] ‖ u32 n ‖ n × bytes(certificate) */
export function encodeDeviceListBody(l: DeviceListBody): Uint8Array {
  assertId(l.userId, 'user id', 'encodeDeviceList');
  if (l.devices.length > MAX_DEVICES_PER_USER) fail(ErrorCode.LimitExceeded, 'encodeDeviceList', 'too many devices');
  const w = new Writer()
    .u8(PROTOCOL_VERSION)
    .str(l.userId)
    .u32(l.version)
    .fixed(l.userIdentityKey, KEY_LEN)
    .u32(l.devices.length);
  for (const d of l.devices) w.bytes(encodeDeviceCertificate(d));
  return w.finish();
}

/** body ‖ signature[64] */
export function encodeDeviceList(l: DeviceList): Uint8Array {
  return concat(encodeDeviceListBody(l), new Writer().fixed(l.signature, SIG_LEN).finish());
}

/** Longest encoded device certificate (273 bytes: both ids at MAX_ID_LEN): the bound of every `bytes(certificate)`. */
export const MAX_CERT_LEN = 1 + 4 + MAX_ID_LEN + 4 + MAX_ID_LEN + KEY_LEN * 2 + 8 + SIG_LEN;

export function decodeDeviceList(bytes: Uint8Array): DeviceList {
  const op = 'decodeDeviceList';
  const r = new Reader(bytes, op);
  readVersion(r, op);
  const userId = readId(r, op);
  const version = r.u32();
  const userIdentityKey = theirEd25519(r.fixed(KEY_LEN), op);
  const n = r.u32();
  if (n > MAX_DEVICES_PER_USER) fail(ErrorCode.LimitExceeded, op, 'too many devices');
  const devices: DeviceCertificate[] = [];
  for (let i = 0; i < n; i++) devices.push(decodeDeviceCertificate(r.bytes(MAX_CERT_LEN)));
  const signature = r.fixed(SIG_LEN);
  r.end();
  return { userId, version, userIdentityKey, devices, signature };
}

export async function signDeviceList(
  curves: Curve25519,
  userIdentity: OurEd25519KeyPair,
  body: Omit<DeviceListBody, 'userIdentityKey'>,
): Promise<DeviceList> {
  const full: DeviceListBody = { ...body, userIdentityKey: userIdentity.publicKey };
  const msg = signatureInput(SIG_DEVICE_LIST, encodeDeviceListBody(full));
  return { ...full, signature: await curves.ed25519Sign(userIdentity, msg) };
}

/**
 * Verifies a list on its own (first sight / TOFU): structure, the list signature, then every
 * certificate (concurrently). Rejects empty lists, more than MAX_DEVICES_PER_USER devices, duplicate
 * device ids or keys, and certificates for another user. If `trustedUserIdentityKey` is given, the list
 * must be signed by it (`untrusted_identity` otherwise).
 */
export async function verifyDeviceList(
  curves: Curve25519,
  list: DeviceList,
  trustedUserIdentityKey?: Uint8Array,
): Promise<VerifiedDeviceList> {
  const op = 'verifyDeviceList';
  const userIdentityKey = theirEd25519(list.userIdentityKey, op);
  if (trustedUserIdentityKey && !equal(trustedUserIdentityKey, userIdentityKey)) fail(ErrorCode.UntrustedIdentity, op);
  if (!Number.isInteger(list.version) || list.version < 1 || list.version > 0xffffffff)
    fail(ErrorCode.InvalidStructure, op, 'bad version');
  if (list.devices.length === 0) fail(ErrorCode.InvalidStructure, op, 'empty device list');
  if (list.devices.length > MAX_DEVICES_PER_USER) fail(ErrorCode.LimitExceeded, op, 'too many devices');
  assertUniqueDevices(list, op);
  const msg = signatureInput(SIG_DEVICE_LIST, encodeDeviceListBody(list));
  if (!(await curves.ed25519Verify(userIdentityKey, msg, list.signature))) fail(ErrorCode.Signature, op);
  const devices = await Promise.all(list.devices.map((c) => verifyDeviceCertificate(curves, c, userIdentityKey)));
  return {
    userId: list.userId,
    version: list.version,
    userIdentityKey,
    devices,
    list,
  } as unknown as VerifiedDeviceList;
}

function assertUniqueDevices(list: DeviceListBody, op: string): void {
  const seen = new Set<string>();
  for (const d of list.devices) {
    if (d.userId !== list.userId) fail(ErrorCode.InvalidStructure, op, 'certificate for another user');
    for (const k of [`d:${d.deviceId}`, `s:${hexKey(d.signingKey)}`, `x:${hexKey(d.identityKey)}`]) {
      if (seen.has(k)) fail(ErrorCode.InvalidStructure, op, 'duplicate device');
      seen.add(k);
    }
  }
}

function hexKey(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * Accepts `next` only as the direct successor of `prev`: same user, same user identity key
 * (`untrusted_identity` otherwise — a key change is the caller's decision), version = prev.version + 1
 * (`invalid_structure`: no rollback, no replay, no skip), then full verification.
 * `prev === null` means first sight: the caller applies its trust-on-first-use policy.
 */
export async function verifyDeviceListUpdate(
  curves: Curve25519,
  prev: VerifiedDeviceList | null,
  next: DeviceList,
): Promise<VerifiedDeviceList> {
  const op = 'verifyDeviceListUpdate';
  if (prev === null) return verifyDeviceList(curves, next);
  if (next.userId !== prev.userId) fail(ErrorCode.InvalidStructure, op, 'different user');
  if (!equal(next.userIdentityKey, prev.userIdentityKey)) fail(ErrorCode.UntrustedIdentity, op);
  if (next.version !== prev.version + 1) fail(ErrorCode.InvalidStructure, op, 'version must be previous + 1');
  return verifyDeviceList(curves, next, prev.userIdentityKey);
}

/** The devices to encrypt to: exactly the verified list's devices (never a bare server-supplied device). */
export function encryptableDevices(list: VerifiedDeviceList): readonly VerifiedDevice[] {
  return list.devices;
}

export function findDevice(list: VerifiedDeviceList, deviceId: string): VerifiedDevice | undefined {
  return list.devices.find((d) => d.deviceId === deviceId);
}

/** Maps (userId, deviceId) to that device's verified Ed25519 signing key, or undefined. */
export type DeviceKeyResolver = (userId: string, deviceId: string) => TheirEd25519Key | undefined;

/** A cached resolver over verified device lists (one map lookup per call). */
export function deviceKeyResolver(lists: Iterable<VerifiedDeviceList>): DeviceKeyResolver {
  const map = new Map<string, TheirEd25519Key>();
  for (const l of lists) for (const d of l.devices) map.set(JSON.stringify([d.userId, d.deviceId]), d.signingKey);
  return (userId, deviceId) => map.get(JSON.stringify([userId, deviceId]));
}

// ---- login challenge ------------------------------------------------------------------------------

function loginInput(challenge: Uint8Array, userId: string, deviceId: string, op: string): Uint8Array {
  if (challenge.length < LOGIN_CHALLENGE_MIN_LEN || challenge.length > LOGIN_CHALLENGE_MAX_LEN)
    fail(ErrorCode.InvalidStructure, op, 'bad challenge length');
  assertId(userId, 'user id', op);
  assertId(deviceId, 'device id', op);
  const body = new Writer().u8(PROTOCOL_VERSION).str(userId).str(deviceId).bytes(challenge).finish();
  return signatureInput(SIG_LOGIN_CHALLENGE, body);
}

/** Device proves possession of its signing key for a server-issued challenge. */
export async function signLoginChallenge(
  curves: Curve25519,
  deviceSigningKey: OurEd25519KeyPair,
  challenge: Uint8Array,
  userId: string,
  deviceId: string,
): Promise<Uint8Array> {
  const msg = loginInput(challenge, userId, deviceId, 'signLoginChallenge');
  return curves.ed25519Sign(deviceSigningKey, msg);
}

/** True iff `signature` is the device's login signature for exactly this challenge, user and device. */
export async function verifyLoginChallenge(
  curves: Curve25519,
  deviceSigningKey: Uint8Array,
  challenge: Uint8Array,
  userId: string,
  deviceId: string,
  signature: Uint8Array,
): Promise<boolean> {
  const msg = loginInput(challenge, userId, deviceId, 'verifyLoginChallenge');
  return curves.ed25519Verify(deviceSigningKey, msg, signature);
}
