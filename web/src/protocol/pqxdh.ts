/**
 * PQXDH key agreement between two DEVICES (Signal PQXDH spec rev. 3; docs/PROTOCOL.md §"PQXDH"):
 *   DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B), DH4 = DH(EK_A, OPK_B) if present,
 *   (CT, SS) = ML-KEM-1024.Encaps(PQPK_B),
 *   SK = HKDF-SHA256(ikm = 0xFF×32 ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4] ‖ SS, salt = 0×32, info = LABEL_PQXDH, L = 32).
 * The independent X25519 operations run concurrently. AD binds both device identity keys and both
 * (user id, device id) pairs, initiator first (PITFALLS 7).
 *
 * Does NOT: verify bundles (prekeys.ts `verifyBundle` must have produced the input), look up or delete
 * prekeys (the caller consumes one-time prekeys), decide identity trust, or run the ratchet.
 * @module
 */
import { concat, equal, Reader, Writer } from './bytes.js';
import { LABEL_PQXDH, PQXDH_F_LEN, PROTOCOL_VERSION } from './constants.js';
import { ErrorCode, fail } from './errors.js';
import { assertId, readId } from './identity.js';
import { type OurX25519KeyPair, type TheirX25519Key, theirX25519 } from './keys.js';
import type { VerifiedBundle } from './prekeys.js';
import {
  type Curve25519,
  hkdfSha256,
  KEY_LEN,
  MLKEM_CIPHERTEXT_LEN,
  type OurMlKemKey,
  type Rng,
} from './primitives.js';

export interface PqxdhLocalIdentity {
  userId: string;
  deviceId: string;
  identityKey: OurX25519KeyPair;
}

/** Carried in the first (prekey) message. Encoded with encodePqxdhInit / decodePqxdhInit. */
export interface PqxdhInitMessage {
  initiatorUserId: string;
  initiatorDeviceId: string;
  initiatorIdentityKey: Uint8Array;
  ephemeralKey: Uint8Array;
  signedPrekeyId: number;
  oneTimePrekeyId: number | null;
  kemPrekeyId: number;
  kemCiphertext: Uint8Array;
}

export interface PqxdhResult {
  /** SK, 32 bytes: the initial root key material for the Double Ratchet. */
  sharedSecret: Uint8Array;
  /** AD = pqxdhAssociatedData(initiator, responder). */
  associatedData: Uint8Array;
}

export interface PqxdhResponderKeys {
  signedPrekey: OurX25519KeyPair;
  oneTimePrekey: OurX25519KeyPair | null;
  /** As the KEM prekey record keeps it: the seed, or (records written before seeds) the expanded key. */
  kemPrekey: OurMlKemKey;
  /** Optional: the ids under which the caller found these keys; checked against the init message. */
  signedPrekeyId?: number;
  oneTimePrekeyId?: number | null;
  kemPrekeyId?: number;
}

const F = new Uint8Array(PQXDH_F_LEN).fill(0xff);
const SALT = new Uint8Array(32);
const INFO = new TextEncoder().encode(LABEL_PQXDH);

interface Party {
  readonly userId: string;
  readonly deviceId: string;
  readonly identityKey: Uint8Array;
}

/**
 * AD = version u8 ‖ str A.userId ‖ str A.deviceId ‖ IK_A[32] ‖ str B.userId ‖ str B.deviceId ‖ IK_B[32]
 * with A the initiator. Every field is length-prefixed or fixed-length, so the encoding is injective.
 */
export function pqxdhAssociatedData(initiator: Party, responder: Party): Uint8Array {
  const w = new Writer().u8(PROTOCOL_VERSION);
  for (const p of [initiator, responder]) {
    assertId(p.userId, 'user id', 'pqxdhAssociatedData');
    assertId(p.deviceId, 'device id', 'pqxdhAssociatedData');
    w.str(p.userId).str(p.deviceId).fixed(p.identityKey, KEY_LEN);
  }
  return w.finish();
}

function deriveSk(dhs: Uint8Array[], ss: Uint8Array): Uint8Array {
  return hkdfSha256(concat(F, ...dhs, ss), SALT, INFO, 32);
}

export async function pqxdhInitiate(
  curves: Curve25519,
  rng: Rng,
  ours: PqxdhLocalIdentity,
  bundle: VerifiedBundle,
): Promise<
  PqxdhResult & { init: PqxdhInitMessage; theirSignedPrekey: TheirX25519Key; theirIdentityKey: TheirX25519Key }
> {
  const ik = ours.identityKey;
  const spkB = bundle.signedPrekey.publicKey;
  const ikB = bundle.device.identityKey;
  const opkB = bundle.oneTimePrekey;
  const ek = rng(KEY_LEN);
  if (!(ek instanceof Uint8Array) || ek.length !== KEY_LEN) fail(ErrorCode.InvalidKey, 'pqxdhInitiate', 'bad rng');
  // EK_A's public key comes from the same cached import as the three DHs with ek (one import per secret;
  // reading it back is cheaper than X25519(ek, 9) as another job). All curve operations run concurrently.
  const pending = Promise.all([
    curves.x25519PublicKey(ek),
    curves.x25519(ik, spkB),
    curves.x25519(ek, ikB),
    curves.x25519(ek, spkB),
    ...(opkB ? [curves.x25519(ek, opkB.publicKey)] : []),
  ]);
  // m is drawn from rng now, after EK_A (vectors depend on the order), unless WebCrypto draws it itself
  // (`platformRng`, see `MlKem1024.encapsulate`); noble's encapsulation runs while the DHs are in flight.
  const encaps = curves.mlkem.encapsulate(bundle.kemPrekey.publicKey, rng);
  const [kem, [ekPub, ...dhs]] = await settleBoth(encaps, pending);
  const associatedData = pqxdhAssociatedData(
    { userId: ours.userId, deviceId: ours.deviceId, identityKey: ik.publicKey },
    bundle.device,
  );
  const init: PqxdhInitMessage = {
    initiatorUserId: ours.userId,
    initiatorDeviceId: ours.deviceId,
    initiatorIdentityKey: ik.publicKey,
    ephemeralKey: ekPub!,
    signedPrekeyId: bundle.signedPrekey.id,
    oneTimePrekeyId: opkB ? opkB.id : null,
    kemPrekeyId: bundle.kemPrekey.id,
    kemCiphertext: kem.ciphertext,
  };
  return {
    sharedSecret: deriveSk(dhs, kem.sharedSecret),
    associatedData,
    init,
    theirSignedPrekey: spkB,
    theirIdentityKey: ikB,
  };
}

/**
 * Responder side. Checks, before any DH: the init's identity key equals the certified one
 * (`untrusted_identity`), the one-time prekey presence and any supplied ids match (`invalid_structure`),
 * and the init's keys are canonical (`invalid_key`).
 */
export async function pqxdhRespond(
  curves: Curve25519,
  ours: PqxdhLocalIdentity,
  keys: PqxdhResponderKeys,
  init: PqxdhInitMessage,
  initiatorIdentityKey: TheirX25519Key,
): Promise<PqxdhResult> {
  const op = 'pqxdhRespond';
  if (!equal(init.initiatorIdentityKey, initiatorIdentityKey)) fail(ErrorCode.UntrustedIdentity, op);
  assertKeysMatch(keys, init, op);
  const ikA = theirX25519(initiatorIdentityKey, op);
  const ekA = theirX25519(init.ephemeralKey, op);
  const pending = Promise.all([
    curves.x25519(keys.signedPrekey, ikA),
    curves.x25519(ours.identityKey, ekA),
    curves.x25519(keys.signedPrekey, ekA),
    ...(keys.oneTimePrekey ? [curves.x25519(keys.oneTimePrekey, ekA)] : []),
  ]);
  const [ss, dhs] = await settleBoth(curves.mlkem.decapsulate(init.kemCiphertext, keys.kemPrekey), pending);
  const associatedData = pqxdhAssociatedData(
    { userId: init.initiatorUserId, deviceId: init.initiatorDeviceId, identityKey: ikA },
    { userId: ours.userId, deviceId: ours.deviceId, identityKey: ours.identityKey.publicKey },
  );
  return { sharedSecret: deriveSk(dhs, ss), associatedData };
}

/** Both results, or the first failure once neither is still running (no rejection left unhandled). */
async function settleBoth<A, B>(a: Promise<A>, b: Promise<B>): Promise<[A, B]> {
  const [ra, rb] = await Promise.allSettled([a, b]);
  if (ra.status === 'rejected') throw ra.reason;
  if (rb.status === 'rejected') throw rb.reason;
  return [ra.value, rb.value];
}

function assertKeysMatch(keys: PqxdhResponderKeys, init: PqxdhInitMessage, op: string): void {
  if ((init.oneTimePrekeyId === null) !== (keys.oneTimePrekey === null))
    fail(ErrorCode.InvalidStructure, op, 'one-time prekey mismatch');
  if (keys.signedPrekeyId !== undefined && keys.signedPrekeyId !== init.signedPrekeyId)
    fail(ErrorCode.InvalidStructure, op, 'signed prekey id mismatch');
  if (keys.kemPrekeyId !== undefined && keys.kemPrekeyId !== init.kemPrekeyId)
    fail(ErrorCode.InvalidStructure, op, 'KEM prekey id mismatch');
  if (keys.oneTimePrekeyId !== undefined && keys.oneTimePrekeyId !== init.oneTimePrekeyId)
    fail(ErrorCode.InvalidStructure, op, 'one-time prekey id mismatch');
}

/**
 * version u8 ‖ str initiatorUserId ‖ str initiatorDeviceId ‖ IK_A[32] ‖ EK_A[32] ‖ u32 spkId ‖
 * u8 hasOpk [‖ u32 opkId] ‖ u32 kemId ‖ CT[1568]
 */
export function encodePqxdhInit(m: PqxdhInitMessage): Uint8Array {
  assertId(m.initiatorUserId, 'user id', 'encodePqxdhInit');
  assertId(m.initiatorDeviceId, 'device id', 'encodePqxdhInit');
  const w = new Writer()
    .u8(PROTOCOL_VERSION)
    .str(m.initiatorUserId)
    .str(m.initiatorDeviceId)
    .fixed(m.initiatorIdentityKey, KEY_LEN)
    .fixed(m.ephemeralKey, KEY_LEN)
    .u32(m.signedPrekeyId)
    .bool(m.oneTimePrekeyId !== null);
  if (m.oneTimePrekeyId !== null) w.u32(m.oneTimePrekeyId);
  return w.u32(m.kemPrekeyId).fixed(m.kemCiphertext, MLKEM_CIPHERTEXT_LEN).finish();
}

/** Strict decode; X25519 keys are validated (canonical) here. */
export function decodePqxdhInit(bytes: Uint8Array): PqxdhInitMessage {
  const op = 'decodePqxdhInit';
  const r = new Reader(bytes, op);
  if (r.u8() !== PROTOCOL_VERSION) fail(ErrorCode.Decode, op, 'unknown version');
  const m: PqxdhInitMessage = {
    initiatorUserId: readId(r, op),
    initiatorDeviceId: readId(r, op),
    initiatorIdentityKey: theirX25519(r.fixed(KEY_LEN), op),
    ephemeralKey: theirX25519(r.fixed(KEY_LEN), op),
    signedPrekeyId: r.u32(),
    oneTimePrekeyId: r.bool() ? r.u32() : null,
    kemPrekeyId: r.u32(),
    kemCiphertext: r.fixed(MLKEM_CIPHERTEXT_LEN),
  };
  r.end();
  return m;
}
