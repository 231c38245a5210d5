/**
 * The e2e-chat side of `npm run bench:protocol`: the same four workloads as libsignal-side.ts, through the
 * protocol core's public surface (web/src/protocol/index.ts: prekeys, sessions, sender keys) with a real CSPRNG passed in.
 *
 * Parameterised by the `Curve25519` implementation, so one run measures the WebCrypto path
 * (`webCryptoCurves()`) and the pure-JS reference (`nobleCurves`) with identical code.
 * Records are kept in plain variables (the protocol API is functional: every call returns the next
 * record); libsignal's Node API instead forces async store calls, which is part of its cost.
 *
 * Does NOT: assert correctness beyond a cheap plaintext check (the protocol's tests do that).
 * @module
 */
import {
  type Curve25519,
  createSenderKey,
  type DecryptContext,
  type DeviceCertificate,
  decodeBundle,
  decodeSenderKeyDistribution,
  decrypt,
  emptySenderKeyRecord,
  emptySessionRecord,
  encodeBundle,
  encodeSenderKeyDistribution,
  encrypt,
  generateEd25519,
  generateKemPrekey,
  generateOneTimePrekeys,
  generateSignedPrekey,
  generateX25519,
  initiateSession,
  issueDeviceCertificate,
  type KemPrekeyRecord,
  kemPrekeyPublic,
  MessageType,
  type OneTimePrekeyRecord,
  type OurEd25519KeyPair,
  oneTimePrekeyPublic,
  type PqxdhLocalIdentity,
  type PqxdhResponderKeys,
  platformRng,
  processSenderKeyDistribution,
  type Rng,
  type SessionRecord,
  type SignedPrekeyRecord,
  senderDecrypt,
  senderEncrypt,
  senderKeyDistribution,
  signedPrekeyPublic,
  type TheirX25519Key,
  verifyBundle,
} from '../web/src/protocol/index.js';
import type { SideWorkloads } from './libsignal-side.js';
import type { Workload } from './stats.js';

/** The CSPRNG every workload uses (never a seeded test rng): `platformRng`, as the app's engine passes it
 * (so ML-KEM encapsulation goes through WebCrypto where the platform has it, as in the app). */
export const rng: Rng = platformRng;

function payload(size: number): Uint8Array {
  return rng(size);
}

function check(pt: Uint8Array, expected: Uint8Array): void {
  if (pt.length !== expected.length || pt[0] !== expected[0] || pt[pt.length - 1] !== expected[expected.length - 1])
    throw new Error('e2e-chat: plaintext mismatch');
}

// ---- devices and their prekeys -------------------------------------------------------------------

interface Device {
  readonly local: PqxdhLocalIdentity;
  readonly signing: OurEd25519KeyPair;
  readonly userIdentity: OurEd25519KeyPair;
  readonly certificate: DeviceCertificate;
  readonly signedPrekey: SignedPrekeyRecord;
  /** Our unused one-time X25519 and ML-KEM prekeys, by id (the server hands each out once). */
  readonly oneTime: Map<number, OneTimePrekeyRecord>;
  readonly kem: Map<number, KemPrekeyRecord>;
  /** TOFU: the identity key we trust per remote device. */
  readonly trusted: Map<string, Uint8Array>;
}

async function device(curves: Curve25519, userId: string, deviceId: string): Promise<Device> {
  const userIdentity = await generateEd25519(curves, rng);
  const signing = await generateEd25519(curves, rng);
  const identityKey = await generateX25519(curves, rng);
  const certificate = await issueDeviceCertificate(curves, userIdentity, {
    userId,
    deviceId,
    signingKey: signing.publicKey,
    identityKey: identityKey.publicKey,
    createdAt: Date.now(),
  });
  return {
    local: { userId, deviceId, identityKey },
    signing,
    userIdentity,
    certificate,
    signedPrekey: await generateSignedPrekey(curves, rng, signing, 1),
    oneTime: new Map(),
    kem: new Map(),
    trusted: new Map(),
  };
}

/** Bob generates a one-time X25519 prekey and a signed one-time ML-KEM-1024 prekey; returns the bundle bytes. */
async function publishBundle(curves: Curve25519, bob: Device, id: number): Promise<Uint8Array> {
  const [otp] = await generateOneTimePrekeys(curves, rng, id, 1);
  const kem = await generateKemPrekey(curves, rng, bob.signing, id, false);
  bob.oneTime.set(id, otp!);
  bob.kem.set(id, kem);
  return encodeBundle({
    deviceCertificate: bob.certificate,
    signedPrekey: signedPrekeyPublic(bob.signedPrekey),
    oneTimePrekey: oneTimePrekeyPublic(otp!),
    kemPrekey: kemPrekeyPublic(kem),
  });
}

/** What the receiving device passes to `decrypt` for messages from `remote`. */
function context(me: Device, remote: PqxdhLocalIdentity): DecryptContext {
  const key = `${remote.userId}/${remote.deviceId}`;
  return {
    ours: me.local,
    remote: { userId: remote.userId, deviceId: remote.deviceId },
    responderKeys(ids): PqxdhResponderKeys | null {
      if (ids.signedPrekeyId !== me.signedPrekey.id) return null;
      const kem = me.kem.get(ids.kemPrekeyId);
      const otp = ids.oneTimePrekeyId === null ? null : me.oneTime.get(ids.oneTimePrekeyId);
      if (!kem || otp === undefined) return null;
      return {
        signedPrekey: me.signedPrekey.keyPair,
        oneTimePrekey: otp ? otp.keyPair : null,
        kemPrekey: kem.keyPair,
        signedPrekeyId: ids.signedPrekeyId,
        oneTimePrekeyId: ids.oneTimePrekeyId,
        kemPrekeyId: ids.kemPrekeyId,
      };
    },
    isTrustedIdentity(identityKey: TheirX25519Key): boolean {
      const known = me.trusted.get(key);
      if (!known) me.trusted.set(key, identityKey);
      return !known || known.every((b, i) => b === identityKey[i]);
    },
  };
}

/** One side of a pairwise conversation: our record for the peer device and the context for its messages. */
interface End {
  record: SessionRecord;
  readonly ctx: DecryptContext;
}

async function sendAndReceive(
  curves: Curve25519,
  from: End,
  to: End,
  pt: Uint8Array,
): Promise<{ type: MessageType; plaintext: Uint8Array }> {
  const now = Date.now();
  const e = encrypt(from.record, pt, now);
  from.record = e.record;
  const d = await decrypt(curves, rng, to.record, e.message, to.ctx, now);
  to.record = d.record;
  return { type: e.type, plaintext: d.plaintext };
}

/** A fully established session: A→B (PreKey message), B→A, A→B — then A's messages are plain Messages
 * in a chain B already knows (symmetric ratchet only). */
async function establish(curves: Curve25519, size: number): Promise<{ a: End; b: End; pt: Uint8Array }> {
  const alice = await device(curves, 'alice', 'a1');
  const bob = await device(curves, 'bob', 'b1');
  const bundle = await verifyBundle(
    curves,
    decodeBundle(await publishBundle(curves, bob, 10)),
    bob.userIdentity.publicKey,
  );
  const a: End = {
    record: await initiateSession(curves, rng, alice.local, bundle, Date.now(), emptySessionRecord()),
    ctx: context(alice, bob.local),
  };
  const b: End = { record: emptySessionRecord(), ctx: context(bob, alice.local) };
  const pt = payload(size);
  check((await sendAndReceive(curves, a, b, pt)).plaintext, pt);
  check((await sendAndReceive(curves, b, a, pt)).plaintext, pt);
  const third = await sendAndReceive(curves, a, b, pt);
  check(third.plaintext, pt);
  if (third.type !== MessageType.Message) throw new Error('e2e-chat: session not established');
  return { a, b, pt };
}

// ---- the four workloads ------------------------------------------------------------------------

export function oursWorkloads(curves: Curve25519, size: number): SideWorkloads {
  const oneWay: Workload = async (ops) => {
    const { a, b, pt } = await establish(curves, size);
    return {
      ops,
      async run() {
        for (let i = 0; i < ops; i++) check((await sendAndReceive(curves, a, b, pt)).plaintext, pt);
      },
    };
  };

  const pingPong: Workload = async (ops) => {
    const { a, b, pt } = await establish(curves, size);
    return {
      ops,
      async run() {
        for (let i = 0; i < ops; i++) {
          const [from, to] = i % 2 === 0 ? [b, a] : [a, b];
          check((await sendAndReceive(curves, from, to, pt)).plaintext, pt);
        }
      },
    };
  };

  /** One set-up: Bob publishes a fresh bundle (one-time X25519 + signed one-time ML-KEM prekey) as bytes;
   * Alice decodes and verifies it (device certificate + both prekey signatures), initiates and encrypts;
   * Bob decrypts the PreKey message. Each set-up starts from empty records on both sides. */
  const setup: Workload = async (ops) => {
    const alice = await device(curves, 'alice', 'a1');
    const bob = await device(curves, 'bob', 'b1');
    const pt = payload(size);
    return {
      ops,
      async run() {
        for (let i = 0; i < ops; i++) {
          const bytes = await publishBundle(curves, bob, 100 + i);
          const verified = await verifyBundle(curves, decodeBundle(bytes), bob.userIdentity.publicKey);
          const now = Date.now();
          const a: End = {
            record: await initiateSession(curves, rng, alice.local, verified, now),
            ctx: context(alice, bob.local),
          };
          const b: End = { record: emptySessionRecord(), ctx: context(bob, alice.local) };
          const r = await sendAndReceive(curves, a, b, pt);
          if (r.type !== MessageType.PreKey) throw new Error('e2e-chat: expected a PreKey message');
          check(r.plaintext, pt);
          bob.oneTime.delete(100 + i);
          bob.kem.delete(100 + i);
        }
      },
    };
  };

  /** One sender, one receiver: the distribution travels as bytes once (untimed); each message is padded,
   * AES-256-GCM encrypted and Ed25519-signed, then verified and decrypted. */
  const senderKey: Workload = async (ops) => {
    const conversationId = 'conv-1';
    let own = await createSenderKey(curves, rng);
    const distribution = encodeSenderKeyDistribution(senderKeyDistribution(own, conversationId));
    let record = processSenderKeyDistribution(
      emptySenderKeyRecord(),
      decodeSenderKeyDistribution(distribution),
      conversationId,
    );
    const pt = payload(size);
    return {
      ops,
      async run() {
        for (let i = 0; i < ops; i++) {
          const e = await senderEncrypt(curves, own, pt);
          own = e.own;
          const d = await senderDecrypt(curves, record, e.message);
          record = d.record;
          check(d.plaintext, pt);
        }
      },
    };
  };

  return { oneWay, pingPong, setup, senderKey };
}
