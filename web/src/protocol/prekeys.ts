/**
 * Prekeys (docs/PROTOCOL.md §"Prekeys"; Signal PQXDH rev. 3 §3.2): a signed X25519 prekey, unsigned
 * one-time X25519 prekeys, and signed ML-KEM-1024 prekeys (one-time or last-resort), all per device and
 * signed by the DEVICE signing key. A bundle is what the server hands out; `verifyBundle` checks the device
 * certificate against the user identity key and every signature before any Diffie-Hellman (PITFALLS 1).
 *
 * Does NOT: pick or consume prekeys (the server takes one-time prekeys atomically), store private halves,
 * or perform key agreement (pqxdh.ts).
 * @module
 */
import { equal, Reader, Writer } from './bytes.js';
import {
  MAX_KEM_PREKEYS_PER_UPLOAD,
  MAX_ONE_TIME_PREKEYS_PER_UPLOAD,
  PROTOCOL_VERSION,
  SIG_KEM_PREKEY,
  SIG_SIGNED_PREKEY,
} from './constants.js';
import { ErrorCode, fail } from './errors.js';
import {
  type DeviceCertificate,
  decodeDeviceCertificate,
  encodeDeviceCertificate,
  findDevice,
  MAX_CERT_LEN,
  signatureInput,
  type VerifiedDevice,
  type VerifiedDeviceList,
  verifyDeviceCertificate,
} from './identity.js';
import {
  generateX25519,
  type OurEd25519KeyPair,
  type OurX25519KeyPair,
  type TheirX25519Key,
  theirEd25519,
  theirX25519,
} from './keys.js';
import {
  type Curve25519,
  KEY_LEN,
  MLKEM_PUBLIC_LEN,
  MLKEM_SEED_LEN,
  type OurMlKemKey,
  type Rng,
  SIG_LEN,
} from './primitives.js';

// ---- public halves (what is uploaded and served) ---------------------------------------------------

export interface SignedPrekeyPublic {
  readonly id: number;
  readonly publicKey: Uint8Array;
  readonly signature: Uint8Array;
}
export interface OneTimePrekeyPublic {
  readonly id: number;
  readonly publicKey: Uint8Array;
}
export interface KemPrekeyPublic {
  readonly id: number;
  readonly publicKey: Uint8Array;
  readonly lastResort: boolean;
  readonly signature: Uint8Array;
}

// ---- private records (kept by the device) ----------------------------------------------------------

export interface SignedPrekeyRecord {
  readonly id: number;
  readonly keyPair: OurX25519KeyPair;
  readonly signature: Uint8Array;
}
export interface OneTimePrekeyRecord {
  readonly id: number;
  readonly keyPair: OurX25519KeyPair;
}
/**
 * Local state only. `keyPair.seed` (64 bytes) is kept for every key generated since 2026-12-04; records
 * written before hold only the expanded `secretKey` (3,168 bytes) and still decapsulate (through noble).
 */
export interface KemPrekeyRecord {
  readonly id: number;
  readonly keyPair: OurMlKemKey;
  readonly lastResort: boolean;
  readonly signature: Uint8Array;
}

function assertPrekeyId(id: number, op: string): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) fail(ErrorCode.InvalidStructure, op, 'bad prekey id');
}

/** version u8 ‖ u32 id ‖ publicKey[32] */
function signedPrekeyBody(id: number, publicKey: Uint8Array): Uint8Array {
  return new Writer().u8(PROTOCOL_VERSION).u32(id).fixed(publicKey, KEY_LEN).finish();
}

/** version u8 ‖ u32 id ‖ u8 lastResort ‖ publicKey[1568] */
function kemPrekeyBody(id: number, lastResort: boolean, publicKey: Uint8Array): Uint8Array {
  return new Writer().u8(PROTOCOL_VERSION).u32(id).bool(lastResort).fixed(publicKey, MLKEM_PUBLIC_LEN).finish();
}

export async function generateSignedPrekey(
  curves: Curve25519,
  rng: Rng,
  deviceSigningKey: OurEd25519KeyPair,
  id: number,
): Promise<SignedPrekeyRecord> {
  assertPrekeyId(id, 'generateSignedPrekey');
  const keyPair = await generateX25519(curves, rng);
  const msg = signatureInput(SIG_SIGNED_PREKEY, signedPrekeyBody(id, keyPair.publicKey));
  return { id, keyPair, signature: await curves.ed25519Sign(deviceSigningKey, msg) };
}

/** `count` one-time prekeys with ids startId, startId + 1, … (key generation runs concurrently). */
export async function generateOneTimePrekeys(
  curves: Curve25519,
  rng: Rng,
  startId: number,
  count: number,
): Promise<OneTimePrekeyRecord[]> {
  assertPrekeyId(startId, 'generateOneTimePrekeys');
  assertPrekeyId(startId + count, 'generateOneTimePrekeys');
  const pairs = await Promise.all(Array.from({ length: count }, () => generateX25519(curves, rng)));
  return pairs.map((keyPair, i) => ({ id: startId + i, keyPair }));
}

/**
 * ML-KEM-1024 key pair from a 64-byte rng seed (FIPS 203 d ‖ z) on `curves.mlkem` (the same public key on
 * every path), signed by the device signing key. The record keeps the seed.
 */
export async function generateKemPrekey(
  curves: Curve25519,
  rng: Rng,
  deviceSigningKey: OurEd25519KeyPair,
  id: number,
  lastResort: boolean,
): Promise<KemPrekeyRecord> {
  assertPrekeyId(id, 'generateKemPrekey');
  const keyPair = await curves.mlkem.keygen(rng(MLKEM_SEED_LEN));
  const msg = signatureInput(SIG_KEM_PREKEY, kemPrekeyBody(id, lastResort, keyPair.publicKey));
  return { id, keyPair, lastResort, signature: await curves.ed25519Sign(deviceSigningKey, msg) };
}

export const signedPrekeyPublic = (r: SignedPrekeyRecord): SignedPrekeyPublic => ({
  id: r.id,
  publicKey: r.keyPair.publicKey,
  signature: r.signature,
});
export const oneTimePrekeyPublic = (r: OneTimePrekeyRecord): OneTimePrekeyPublic => ({
  id: r.id,
  publicKey: r.keyPair.publicKey,
});
export const kemPrekeyPublic = (r: KemPrekeyRecord): KemPrekeyPublic => ({
  id: r.id,
  publicKey: r.keyPair.publicKey,
  lastResort: r.lastResort,
  signature: r.signature,
});

/** Verifies a signed prekey under a device signing key (client before DH, server before storing). */
export async function verifySignedPrekey(
  curves: Curve25519,
  spk: SignedPrekeyPublic,
  deviceSigningKey: Uint8Array,
): Promise<TheirX25519Key> {
  const op = 'verifySignedPrekey';
  assertPrekeyId(spk.id, op);
  const publicKey = theirX25519(spk.publicKey, op);
  const msg = signatureInput(SIG_SIGNED_PREKEY, signedPrekeyBody(spk.id, publicKey));
  if (!(await curves.ed25519Verify(deviceSigningKey, msg, spk.signature))) fail(ErrorCode.Signature, op);
  return publicKey;
}

/** Verifies an ML-KEM prekey signature (binds id, last-resort flag and key). */
export async function verifyKemPrekey(
  curves: Curve25519,
  kpk: KemPrekeyPublic,
  deviceSigningKey: Uint8Array,
): Promise<void> {
  const op = 'verifyKemPrekey';
  assertPrekeyId(kpk.id, op);
  if (kpk.publicKey.length !== MLKEM_PUBLIC_LEN) fail(ErrorCode.InvalidKey, op, 'bad ML-KEM key length');
  const msg = signatureInput(SIG_KEM_PREKEY, kemPrekeyBody(kpk.id, kpk.lastResort, kpk.publicKey));
  if (!(await curves.ed25519Verify(deviceSigningKey, msg, kpk.signature))) fail(ErrorCode.Signature, op);
}

// ---- bundles ---------------------------------------------------------------------------------------

/** A prekey bundle as the server returns it for one device. Untrusted until `verifyBundle`. */
export interface PrekeyBundle {
  readonly deviceCertificate: DeviceCertificate;
  readonly signedPrekey: SignedPrekeyPublic;
  readonly oneTimePrekey: OneTimePrekeyPublic | null;
  readonly kemPrekey: KemPrekeyPublic;
}

declare const verifiedBundle: unique symbol;
/** A bundle whose certificate and signatures all verified. Only `verifyBundle` produces one. */
export interface VerifiedBundle {
  readonly [verifiedBundle]: true;
  readonly device: VerifiedDevice;
  readonly signedPrekey: { readonly id: number; readonly publicKey: TheirX25519Key };
  readonly oneTimePrekey: { readonly id: number; readonly publicKey: TheirX25519Key } | null;
  readonly kemPrekey: { readonly id: number; readonly publicKey: Uint8Array; readonly lastResort: boolean };
}

/**
 * Checks: decode-level key checks, then — all required, verified concurrently — the device certificate
 * under `trustedUserIdentityKey` and the signed-prekey and KEM-prekey signatures under the certificate's
 * device signing key (`signature`). If `deviceList` is given, the certified device must also be in it
 * with the same keys (`untrusted_identity`). No DH happens here; the result is the only input
 * pqxdhInitiate accepts.
 */
export async function verifyBundle(
  curves: Curve25519,
  bundle: PrekeyBundle,
  trustedUserIdentityKey: Uint8Array,
  deviceList?: VerifiedDeviceList,
): Promise<VerifiedBundle> {
  const op = 'verifyBundle';
  const otp = bundle.oneTimePrekey;
  if (otp) assertPrekeyId(otp.id, op);
  const oneTimePrekey = otp ? { id: otp.id, publicKey: theirX25519(otp.publicKey, op) } : null;
  // All three signatures are checked concurrently: the prekey signatures are checked under the DSK bytes
  // from the certificate, and the result is used only if the certificate itself verifies too.
  const dsk = theirEd25519(bundle.deviceCertificate.signingKey, op);
  const [device, spk] = await Promise.all([
    verifyDeviceCertificate(curves, bundle.deviceCertificate, trustedUserIdentityKey),
    verifySignedPrekey(curves, bundle.signedPrekey, dsk),
    verifyKemPrekey(curves, bundle.kemPrekey, dsk),
  ]);
  if (deviceList) assertListed(device, deviceList, op);
  const k = bundle.kemPrekey;
  return {
    device,
    signedPrekey: { id: bundle.signedPrekey.id, publicKey: spk },
    oneTimePrekey,
    kemPrekey: { id: k.id, publicKey: k.publicKey, lastResort: k.lastResort },
  } as VerifiedBundle;
}

function assertListed(device: VerifiedDevice, list: VerifiedDeviceList, op: string): void {
  const listed = findDevice(list, device.deviceId);
  const same =
    listed !== undefined &&
    listed.userId === device.userId &&
    equal(listed.signingKey, device.signingKey) &&
    equal(listed.identityKey, device.identityKey);
  if (!same) fail(ErrorCode.UntrustedIdentity, op, 'device not in verified device list');
}

// ---- encodings -------------------------------------------------------------------------------------

function writeSpk(w: Writer, s: SignedPrekeyPublic): void {
  w.u32(s.id).fixed(s.publicKey, KEY_LEN).fixed(s.signature, SIG_LEN);
}
function readSpk(r: Reader, op: string): SignedPrekeyPublic {
  const id = r.u32();
  return { id, publicKey: theirX25519(r.fixed(KEY_LEN), op), signature: r.fixed(SIG_LEN) };
}
function writeOtp(w: Writer, o: OneTimePrekeyPublic): void {
  w.u32(o.id).fixed(o.publicKey, KEY_LEN);
}
function readOtp(r: Reader, op: string): OneTimePrekeyPublic {
  const id = r.u32();
  return { id, publicKey: theirX25519(r.fixed(KEY_LEN), op) };
}
function writeKpk(w: Writer, k: KemPrekeyPublic): void {
  w.u32(k.id).bool(k.lastResort).fixed(k.publicKey, MLKEM_PUBLIC_LEN).fixed(k.signature, SIG_LEN);
}
function readKpk(r: Reader): KemPrekeyPublic {
  const id = r.u32();
  const lastResort = r.bool();
  return { id, lastResort, publicKey: r.fixed(MLKEM_PUBLIC_LEN), signature: r.fixed(SIG_LEN) };
}
function readVersion(r: Reader, op: string): void {
  if (r.u8() !== PROTOCOL_VERSION) fail(ErrorCode.Decode, op, 'unknown version');
}

/** version u8 ‖ bytes(certificate) ‖ spk ‖ u8 hasOtp [‖ otp] ‖ kpk */
export function encodeBundle(b: PrekeyBundle): Uint8Array {
  const w = new Writer().u8(PROTOCOL_VERSION).bytes(encodeDeviceCertificate(b.deviceCertificate));
  writeSpk(w, b.signedPrekey);
  w.bool(b.oneTimePrekey !== null);
  if (b.oneTimePrekey) writeOtp(w, b.oneTimePrekey);
  writeKpk(w, b.kemPrekey);
  return w.finish();
}

export function decodeBundle(bytes: Uint8Array): PrekeyBundle {
  const op = 'decodeBundle';
  const r = new Reader(bytes, op);
  readVersion(r, op);
  const deviceCertificate = decodeDeviceCertificate(r.bytes(MAX_CERT_LEN));
  const signedPrekey = readSpk(r, op);
  const oneTimePrekey = r.bool() ? readOtp(r, op) : null;
  const kemPrekey = readKpk(r);
  r.end();
  return { deviceCertificate, signedPrekey, oneTimePrekey, kemPrekey };
}

/** What a device uploads: optionally a new signed prekey, plus batches of one-time and KEM prekeys. */
export interface PrekeyUpload {
  readonly signedPrekey: SignedPrekeyPublic | null;
  readonly oneTimePrekeys: readonly OneTimePrekeyPublic[];
  readonly kemPrekeys: readonly KemPrekeyPublic[];
}

/** version u8 ‖ u8 hasSpk [‖ spk] ‖ u32 n ‖ n × otp ‖ u32 m ‖ m × kpk */
export function encodePrekeyUpload(u: PrekeyUpload): Uint8Array {
  const op = 'encodePrekeyUpload';
  if (u.oneTimePrekeys.length > MAX_ONE_TIME_PREKEYS_PER_UPLOAD) fail(ErrorCode.LimitExceeded, op);
  if (u.kemPrekeys.length > MAX_KEM_PREKEYS_PER_UPLOAD) fail(ErrorCode.LimitExceeded, op);
  const w = new Writer().u8(PROTOCOL_VERSION).bool(u.signedPrekey !== null);
  if (u.signedPrekey) writeSpk(w, u.signedPrekey);
  w.u32(u.oneTimePrekeys.length);
  for (const o of u.oneTimePrekeys) writeOtp(w, o);
  w.u32(u.kemPrekeys.length);
  for (const k of u.kemPrekeys) writeKpk(w, k);
  return w.finish();
}

export function decodePrekeyUpload(bytes: Uint8Array): PrekeyUpload {
  const op = 'decodePrekeyUpload';
  const r = new Reader(bytes, op);
  readVersion(r, op);
  const signedPrekey = r.bool() ? readSpk(r, op) : null;
  const n = r.u32();
  if (n > MAX_ONE_TIME_PREKEYS_PER_UPLOAD) fail(ErrorCode.LimitExceeded, op);
  const oneTimePrekeys = Array.from({ length: n }, () => readOtp(r, op));
  const m = r.u32();
  if (m > MAX_KEM_PREKEYS_PER_UPLOAD) fail(ErrorCode.LimitExceeded, op);
  const kemPrekeys = Array.from({ length: m }, () => readKpk(r));
  r.end();
  return { signedPrekey, oneTimePrekeys, kemPrekeys };
}

/**
 * Server side (PITFALLS 1): every signature in an upload must verify under the uploading device's
 * certified signing key before anything is stored. Duplicate ids within the upload are refused.
 */
export async function verifyPrekeyUpload(
  curves: Curve25519,
  u: PrekeyUpload,
  deviceSigningKey: Uint8Array,
): Promise<void> {
  const op = 'verifyPrekeyUpload';
  theirEd25519(deviceSigningKey, op);
  assertUniqueIds(u.oneTimePrekeys, op);
  assertUniqueIds(u.kemPrekeys, op);
  for (const o of u.oneTimePrekeys) {
    assertPrekeyId(o.id, op);
    theirX25519(o.publicKey, op);
  }
  await Promise.all([
    u.signedPrekey ? verifySignedPrekey(curves, u.signedPrekey, deviceSigningKey) : null,
    ...u.kemPrekeys.map((k) => verifyKemPrekey(curves, k, deviceSigningKey)),
  ]);
}

function assertUniqueIds(items: readonly { id: number }[], op: string): void {
  if (new Set(items.map((i) => i.id)).size !== items.length) fail(ErrorCode.InvalidStructure, op, 'duplicate id');
}

/** Exposed for the docs/vectors: the exact bytes signed for a signed prekey / KEM prekey. */
export const prekeySignatureInputs = {
  signed: (id: number, publicKey: Uint8Array) => signatureInput(SIG_SIGNED_PREKEY, signedPrekeyBody(id, publicKey)),
  kem: (id: number, lastResort: boolean, publicKey: Uint8Array) =>
    signatureInput(SIG_KEM_PREKEY, kemPrekeyBody(id, lastResort, publicKey)),
};
