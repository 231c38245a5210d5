/**
 * The @signalapp/libsignal-client 0.103.0 side of `npm run bench:protocol`: the same four workloads as
 * ours-side.ts, through libsignal's public Node API with minimal in-memory stores (Maps, no extra copies).
 *
 * libsignal-client is AGPL-3.0 and ≈150 MB, so it is NOT an app dependency: it lives in the separate
 * package bench/libsignal/ (git-ignored node_modules), is installed there on first use, and is imported
 * from that absolute path. The types below describe only the parts this file calls (the app's typecheck
 * must pass without the package installed).
 *
 * Does NOT: add the package to the root package.json / lockfile, or touch the app bundle.
 * @module
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Prepared, Workload } from './stats.js';

// ---- the minimal slice of libsignal's API that the workloads use ----------------------------------

type Bytes = Uint8Array<ArrayBuffer>;

interface PublicKey {
  serialize(): Bytes;
  equals(other: PublicKey): boolean;
}
interface PrivateKey {
  getPublicKey(): PublicKey;
  sign(msg: Bytes): Bytes;
}
interface IdentityKeyPair {
  readonly publicKey: PublicKey;
  readonly privateKey: PrivateKey;
}
interface KEMPublicKey {
  serialize(): Bytes;
}
interface KEMKeyPair {
  getPublicKey(): KEMPublicKey;
}
interface ProtocolAddress {
  toString(): string;
}
interface SessionRecord {
  serialize(): Bytes;
}
interface SenderKeyRecord {
  serialize(): Bytes;
}
interface PreKeyRecord {
  id(): number;
}
interface SignedPreKeyRecord {
  id(): number;
}
interface KyberPreKeyRecord {
  id(): number;
}
type PreKeyBundle = object;
type SignalMessage = object;
type PreKeySignalMessage = object;
interface CiphertextMessage {
  serialize(): Bytes;
  type(): number;
}
type SenderKeyDistributionMessage = object;

interface SessionStore {
  saveSession(name: ProtocolAddress, record: SessionRecord): Promise<void>;
  getSession(name: ProtocolAddress): Promise<SessionRecord | null>;
  getExistingSessions(addresses: ProtocolAddress[]): Promise<SessionRecord[]>;
}
interface IdentityKeyStore {
  getIdentityKey(): Promise<PrivateKey>;
  getIdentityKeyPair(): Promise<IdentityKeyPair>;
  getLocalRegistrationId(): Promise<number>;
  saveIdentity(name: ProtocolAddress, key: PublicKey): Promise<number>;
  isTrustedIdentity(name: ProtocolAddress, key: PublicKey, direction: number): Promise<boolean>;
  getIdentity(name: ProtocolAddress): Promise<PublicKey | null>;
}
interface PreKeyStore {
  savePreKey(id: number, record: PreKeyRecord): Promise<void>;
  getPreKey(id: number): Promise<PreKeyRecord>;
  removePreKey(id: number): Promise<void>;
}
interface SignedPreKeyStore {
  saveSignedPreKey(id: number, record: SignedPreKeyRecord): Promise<void>;
  getSignedPreKey(id: number): Promise<SignedPreKeyRecord>;
}
interface KyberPreKeyStore {
  saveKyberPreKey(id: number, record: KyberPreKeyRecord): Promise<void>;
  getKyberPreKey(id: number): Promise<KyberPreKeyRecord>;
  markKyberPreKeyUsed(id: number, signedPreKeyId: number, baseKey: PublicKey): Promise<void>;
}
interface SenderKeyStore {
  saveSenderKey(sender: ProtocolAddress, distributionId: string, record: SenderKeyRecord): Promise<void>;
  getSenderKey(sender: ProtocolAddress, distributionId: string): Promise<SenderKeyRecord | null>;
}

/** The libsignal-client module, as far as this benchmark uses it. */
export interface Libsignal {
  PrivateKey: { generate(): PrivateKey };
  IdentityKeyPair: { generate(): IdentityKeyPair };
  KEMKeyPair: { generate(): KEMKeyPair };
  ProtocolAddress: { new: (name: string, deviceId: number) => ProtocolAddress };
  PreKeyRecord: { new: (id: number, pub: PublicKey, priv: PrivateKey) => PreKeyRecord };
  SignedPreKeyRecord: {
    new: (id: number, timestamp: number, pub: PublicKey, priv: PrivateKey, signature: Bytes) => SignedPreKeyRecord;
  };
  KyberPreKeyRecord: {
    new: (id: number, timestamp: number, keyPair: KEMKeyPair, signature: Bytes) => KyberPreKeyRecord;
  };
  PreKeyBundle: {
    new: (
      registrationId: number,
      deviceId: number,
      prekeyId: number | null,
      prekey: PublicKey | null,
      signedPrekeyId: number,
      signedPrekey: PublicKey,
      signedPrekeySignature: Bytes,
      identityKey: PublicKey,
      kyberPrekeyId: number,
      kyberPrekey: KEMPublicKey,
      kyberPrekeySignature: Bytes,
    ) => PreKeyBundle;
  };
  SignalMessage: { deserialize(b: Bytes): SignalMessage };
  PreKeySignalMessage: { deserialize(b: Bytes): PreKeySignalMessage };
  SenderKeyDistributionMessage: {
    create(
      sender: ProtocolAddress,
      distributionId: string,
      store: SenderKeyStore,
    ): Promise<SenderKeyDistributionMessage>;
    deserialize(b: Bytes): SenderKeyDistributionMessage;
  };
  CiphertextMessageType: { Whisper: number; PreKey: number; SenderKey: number };
  processPreKeyBundle(
    bundle: PreKeyBundle,
    address: ProtocolAddress,
    localAddress: ProtocolAddress,
    sessionStore: SessionStore,
    identityStore: IdentityKeyStore,
  ): Promise<void>;
  signalEncrypt(
    message: Bytes,
    address: ProtocolAddress,
    localAddress: ProtocolAddress,
    sessionStore: SessionStore,
    identityStore: IdentityKeyStore,
  ): Promise<CiphertextMessage>;
  signalDecrypt(
    message: SignalMessage,
    address: ProtocolAddress,
    localAddress: ProtocolAddress,
    sessionStore: SessionStore,
    identityStore: IdentityKeyStore,
  ): Promise<Bytes>;
  signalDecryptPreKey(
    message: PreKeySignalMessage,
    address: ProtocolAddress,
    localAddress: ProtocolAddress,
    sessionStore: SessionStore,
    identityStore: IdentityKeyStore,
    prekeyStore: PreKeyStore,
    signedPrekeyStore: SignedPreKeyStore,
    kyberPrekeyStore: KyberPreKeyStore,
  ): Promise<Bytes>;
  processSenderKeyDistributionMessage(
    sender: ProtocolAddress,
    message: SenderKeyDistributionMessage,
    store: SenderKeyStore,
  ): Promise<void>;
  groupEncrypt(
    sender: ProtocolAddress,
    distributionId: string,
    store: SenderKeyStore,
    message: Bytes,
  ): Promise<CiphertextMessage>;
  groupDecrypt(sender: ProtocolAddress, store: SenderKeyStore, message: Bytes): Promise<Bytes>;
}

// ---- install on first use, import from bench/libsignal ---------------------------------------------

const PACKAGE = '@signalapp/libsignal-client';
const prefix = join(dirname(fileURLToPath(import.meta.url)), 'libsignal');

/** Installs bench/libsignal on first use and imports libsignal-client from there (never from the app). */
export async function loadLibsignal(
  log: (s: string) => void = console.error,
): Promise<{ lib: Libsignal; version: string }> {
  if (!existsSync(join(prefix, 'node_modules', PACKAGE))) {
    log(`installing ${PACKAGE} into bench/libsignal (first use, ≈150 MB)…`);
    execFileSync('npm', ['install', '--prefix', prefix, '--no-audit', '--no-fund'], { stdio: 'inherit' });
  }
  const require = createRequire(join(prefix, 'package.json'));
  const entry = require.resolve(PACKAGE);
  const { version } = require(`${PACKAGE}/package.json`) as { version: string };
  const lib = (await import(pathToFileURL(entry).href)) as Libsignal;
  return { lib, version };
}

// ---- minimal in-memory stores ------------------------------------------------------------------

class MemSessionStore implements SessionStore {
  private readonly m = new Map<string, SessionRecord>();
  async saveSession(name: ProtocolAddress, record: SessionRecord): Promise<void> {
    this.m.set(name.toString(), record);
  }
  async getSession(name: ProtocolAddress): Promise<SessionRecord | null> {
    return this.m.get(name.toString()) ?? null;
  }
  async getExistingSessions(addresses: ProtocolAddress[]): Promise<SessionRecord[]> {
    return addresses.map((a) => this.m.get(a.toString())).filter((r): r is SessionRecord => r !== undefined);
  }
}

/** Trust on first use, as a client would; refuses a changed key. */
class MemIdentityStore implements IdentityKeyStore {
  private readonly m = new Map<string, PublicKey>();
  constructor(
    private readonly pair: IdentityKeyPair,
    private readonly registrationId: number,
  ) {}
  async getIdentityKey(): Promise<PrivateKey> {
    return this.pair.privateKey;
  }
  async getIdentityKeyPair(): Promise<IdentityKeyPair> {
    return this.pair;
  }
  async getLocalRegistrationId(): Promise<number> {
    return this.registrationId;
  }
  async saveIdentity(name: ProtocolAddress, key: PublicKey): Promise<number> {
    const k = name.toString();
    const old = this.m.get(k);
    this.m.set(k, key);
    return old && !old.equals(key) ? 1 : 0;
  }
  async isTrustedIdentity(name: ProtocolAddress, key: PublicKey): Promise<boolean> {
    const old = this.m.get(name.toString());
    return old === undefined || old.equals(key);
  }
  async getIdentity(name: ProtocolAddress): Promise<PublicKey | null> {
    return this.m.get(name.toString()) ?? null;
  }
}

class MemPreKeyStore implements PreKeyStore, SignedPreKeyStore, KyberPreKeyStore {
  private readonly pre = new Map<number, PreKeyRecord>();
  private readonly signed = new Map<number, SignedPreKeyRecord>();
  private readonly kyber = new Map<number, KyberPreKeyRecord>();
  private static need<T>(v: T | undefined, what: string): T {
    if (v === undefined) throw new Error(`no ${what}`);
    return v;
  }
  async savePreKey(id: number, record: PreKeyRecord): Promise<void> {
    this.pre.set(id, record);
  }
  async getPreKey(id: number): Promise<PreKeyRecord> {
    return MemPreKeyStore.need(this.pre.get(id), 'prekey');
  }
  async removePreKey(id: number): Promise<void> {
    this.pre.delete(id);
  }
  async saveSignedPreKey(id: number, record: SignedPreKeyRecord): Promise<void> {
    this.signed.set(id, record);
  }
  async getSignedPreKey(id: number): Promise<SignedPreKeyRecord> {
    return MemPreKeyStore.need(this.signed.get(id), 'signed prekey');
  }
  async saveKyberPreKey(id: number, record: KyberPreKeyRecord): Promise<void> {
    this.kyber.set(id, record);
  }
  async getKyberPreKey(id: number): Promise<KyberPreKeyRecord> {
    return MemPreKeyStore.need(this.kyber.get(id), 'kyber prekey');
  }
  /** One-time Kyber prekeys are single-use: drop it (as removePreKey does for EC one-time prekeys). */
  async markKyberPreKeyUsed(id: number): Promise<void> {
    this.kyber.delete(id);
  }
}

class MemSenderKeyStore implements SenderKeyStore {
  private readonly m = new Map<string, SenderKeyRecord>();
  async saveSenderKey(sender: ProtocolAddress, distributionId: string, record: SenderKeyRecord): Promise<void> {
    this.m.set(`${sender.toString()}/${distributionId}`, record);
  }
  async getSenderKey(sender: ProtocolAddress, distributionId: string): Promise<SenderKeyRecord | null> {
    return this.m.get(`${sender.toString()}/${distributionId}`) ?? null;
  }
}

// ---- parties and sessions ----------------------------------------------------------------------

interface Party {
  readonly address: ProtocolAddress;
  readonly identity: IdentityKeyPair;
  readonly sessions: MemSessionStore;
  readonly identities: MemIdentityStore;
  readonly prekeys: MemPreKeyStore;
}

function party(lib: Libsignal, name: string, registrationId: number): Party {
  const identity = lib.IdentityKeyPair.generate();
  return {
    address: lib.ProtocolAddress.new(name, 1),
    identity,
    sessions: new MemSessionStore(),
    identities: new MemIdentityStore(identity, registrationId),
    prekeys: new MemPreKeyStore(),
  };
}

const SIGNED_PREKEY_ID = 1;

/** Bob's medium-term signed prekey (rotated rarely; not part of a set-up). */
async function publishSignedPrekey(lib: Libsignal, bob: Party): Promise<{ pub: PublicKey; sig: Bytes }> {
  const priv = lib.PrivateKey.generate();
  const pub = priv.getPublicKey();
  const sig = bob.identity.privateKey.sign(pub.serialize());
  await bob.prekeys.saveSignedPreKey(
    SIGNED_PREKEY_ID,
    lib.SignedPreKeyRecord.new(SIGNED_PREKEY_ID, Date.now(), pub, priv, sig),
  );
  return { pub, sig };
}

/** Bob generates and stores a one-time EC prekey and a signed one-time ML-KEM-1024 prekey, and returns his bundle. */
async function publishBundle(
  lib: Libsignal,
  bob: Party,
  spk: { pub: PublicKey; sig: Bytes },
  id: number,
): Promise<PreKeyBundle> {
  const otpPriv = lib.PrivateKey.generate();
  const otpPub = otpPriv.getPublicKey();
  await bob.prekeys.savePreKey(id, lib.PreKeyRecord.new(id, otpPub, otpPriv));
  const kem = lib.KEMKeyPair.generate();
  const kemPub = kem.getPublicKey();
  const kemSig = bob.identity.privateKey.sign(kemPub.serialize());
  await bob.prekeys.saveKyberPreKey(id, lib.KyberPreKeyRecord.new(id, Date.now(), kem, kemSig));
  return lib.PreKeyBundle.new(
    2,
    1,
    id,
    otpPub,
    SIGNED_PREKEY_ID,
    spk.pub,
    spk.sig,
    bob.identity.publicKey,
    id,
    kemPub,
    kemSig,
  );
}

function payload(size: number): Bytes {
  return crypto.getRandomValues(new Uint8Array(size));
}

async function send(lib: Libsignal, from: Party, to: Party, pt: Bytes): Promise<{ bytes: Bytes; type: number }> {
  const ct = await lib.signalEncrypt(pt, to.address, from.address, from.sessions, from.identities);
  return { bytes: ct.serialize(), type: ct.type() };
}

async function receive(lib: Libsignal, from: Party, to: Party, msg: { bytes: Bytes; type: number }): Promise<Bytes> {
  if (msg.type === lib.CiphertextMessageType.PreKey) {
    const m = lib.PreKeySignalMessage.deserialize(msg.bytes);
    return lib.signalDecryptPreKey(
      m,
      from.address,
      to.address,
      to.sessions,
      to.identities,
      to.prekeys,
      to.prekeys,
      to.prekeys,
    );
  }
  return lib.signalDecrypt(
    lib.SignalMessage.deserialize(msg.bytes),
    from.address,
    to.address,
    to.sessions,
    to.identities,
  );
}

function check(pt: Uint8Array, expected: Uint8Array): void {
  if (pt.length !== expected.length || pt[0] !== expected[0] || pt[pt.length - 1] !== expected[expected.length - 1])
    throw new Error('libsignal: plaintext mismatch');
}

/**
 * A fully established session: A→B (prekey message), B→A, A→B. After this, Alice's next messages are in a
 * chain Bob already knows (symmetric ratchet only) and are no longer prekey messages.
 */
async function establish(lib: Libsignal, size: number): Promise<{ alice: Party; bob: Party; pt: Bytes }> {
  const alice = party(lib, 'alice', 1);
  const bob = party(lib, 'bob', 2);
  const spk = await publishSignedPrekey(lib, bob);
  const bundle = await publishBundle(lib, bob, spk, 10);
  await lib.processPreKeyBundle(bundle, bob.address, alice.address, alice.sessions, alice.identities);
  const pt = payload(size);
  check(await receive(lib, alice, bob, await send(lib, alice, bob, pt)), pt);
  check(await receive(lib, bob, alice, await send(lib, bob, alice, pt)), pt);
  check(await receive(lib, alice, bob, await send(lib, alice, bob, pt)), pt);
  return { alice, bob, pt };
}

// ---- the four workloads ------------------------------------------------------------------------

export interface SideWorkloads {
  readonly oneWay: Workload;
  readonly pingPong: Workload;
  readonly setup: Workload;
  readonly senderKey: Workload;
}

export function libsignalWorkloads(lib: Libsignal, size: number): SideWorkloads {
  const oneWay: Workload = async (ops) => {
    const { alice, bob, pt } = await establish(lib, size);
    return {
      ops,
      async run() {
        for (let i = 0; i < ops; i++) check(await receive(lib, alice, bob, await send(lib, alice, bob, pt)), pt);
      },
    } satisfies Prepared;
  };

  const pingPong: Workload = async (ops) => {
    const { alice, bob, pt } = await establish(lib, size);
    return {
      ops,
      async run() {
        for (let i = 0; i < ops; i++) {
          const [from, to] = i % 2 === 0 ? [bob, alice] : [alice, bob];
          check(await receive(lib, from, to, await send(lib, from, to, pt)), pt);
        }
      },
    };
  };

  /** One set-up: Bob publishes a fresh bundle (one-time EC + signed one-time ML-KEM prekey); Alice
   * processes it (verifies both signatures) and encrypts; Bob decrypts the prekey message. Each set-up is
   * between a distinct pair of addresses so no session record accumulates archived states. */
  const setup: Workload = async (ops) => {
    const alice = party(lib, 'alice', 1);
    const bob = party(lib, 'bob', 2);
    const spk = await publishSignedPrekey(lib, bob);
    const pt = payload(size);
    const aliceAddrs = Array.from({ length: ops }, (_, i) => lib.ProtocolAddress.new(`alice-${i}`, 1));
    const bobAddrs = Array.from({ length: ops }, (_, i) => lib.ProtocolAddress.new(`bob-${i}`, 1));
    return {
      ops,
      async run() {
        for (let i = 0; i < ops; i++) {
          const a: Party = { ...alice, address: aliceAddrs[i]! };
          const b: Party = { ...bob, address: bobAddrs[i]! };
          const bundle = await publishBundle(lib, b, spk, 100 + i);
          await lib.processPreKeyBundle(bundle, b.address, a.address, a.sessions, a.identities);
          const msg = await send(lib, a, b, pt);
          if (msg.type !== lib.CiphertextMessageType.PreKey) throw new Error('libsignal: expected a prekey message');
          check(await receive(lib, a, b, msg), pt);
        }
      },
    };
  };

  const senderKey: Workload = async (ops) => {
    const alice = party(lib, 'alice', 1);
    const aliceKeys = new MemSenderKeyStore();
    const bobKeys = new MemSenderKeyStore();
    const distributionId = crypto.randomUUID();
    const skdm = await lib.SenderKeyDistributionMessage.create(alice.address, distributionId, aliceKeys);
    await lib.processSenderKeyDistributionMessage(alice.address, skdm, bobKeys);
    const pt = payload(size);
    return {
      ops,
      async run() {
        for (let i = 0; i < ops; i++) {
          const ct = await lib.groupEncrypt(alice.address, distributionId, aliceKeys, pt);
          check(await lib.groupDecrypt(alice.address, bobKeys, ct.serialize()), pt);
        }
      },
    };
  };

  return { oneWay, pingPong, setup, senderKey };
}
