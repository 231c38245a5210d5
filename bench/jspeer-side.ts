/**
 * The JavaScript-peer side of `npm run bench:protocol`: `@privacyresearch/libsignal-protocol-typescript`
 * 0.0.16 (a TypeScript port of libsignal-protocol-javascript that web apps use today) doing the same
 * workloads as ours-side.ts and libsignal-side.ts, with minimal in-memory stores. It runs in Chromium, in
 * its own dedicated Web Worker (bench/browser.ts bundles it).
 *
 * What the peer does NOT do, so its figures are not the same work as ours:
 *  - set-up is **X3DH, no post-quantum KEM** (no ML-KEM prekey, no KEM encapsulation), and Alice checks one
 *    signature (the signed prekey), where ours checks three (device certificate and both prekeys);
 *  - it has **no sender keys** (no group cipher in 0.0.16), so that workload is absent here;
 *  - messages are not padded (ours pads 200 B to 320 B).
 * Its own costs stay in: session records are JSON strings in the store (its API), ciphertexts are binary strings.
 *
 * The package is GPL-3.0 and NOT an app dependency: bench/jspeer/package.json installs it on first use, and
 * the library is passed in (this file never imports it, so the app's typecheck passes without it).
 * @module
 */
import type { SideWorkloads } from './libsignal-side.js';
import type { Workload } from './stats.js';

// ---- the slice of the peer's API the workloads use -------------------------------------------------

interface KeyPair {
  pubKey: ArrayBuffer;
  privKey: ArrayBuffer;
}
interface PreKeyPair {
  keyId: number;
  keyPair: KeyPair;
}
interface SignedPreKeyPair extends PreKeyPair {
  signature: ArrayBuffer;
}
interface Address {
  readonly name: string;
  readonly deviceId: number;
  toString(): string;
}
interface Ciphertext {
  type: number;
  body?: string;
}
interface Storage {
  getIdentityKeyPair(): Promise<KeyPair | undefined>;
  getLocalRegistrationId(): Promise<number | undefined>;
  isTrustedIdentity(identifier: string, identityKey: ArrayBuffer, direction: number): Promise<boolean>;
  saveIdentity(encodedAddress: string, publicKey: ArrayBuffer): Promise<boolean>;
  loadPreKey(keyId: string | number): Promise<KeyPair | undefined>;
  storePreKey(keyId: number | string, keyPair: KeyPair): Promise<void>;
  removePreKey(keyId: number | string): Promise<void>;
  storeSession(encodedAddress: string, record: string): Promise<void>;
  loadSession(encodedAddress: string): Promise<string | undefined>;
  loadSignedPreKey(keyId: number | string): Promise<KeyPair | undefined>;
  storeSignedPreKey(keyId: number | string, keyPair: KeyPair): Promise<void>;
  removeSignedPreKey(keyId: number | string): Promise<void>;
}
interface Bundle {
  identityKey: ArrayBuffer;
  signedPreKey: { keyId: number; publicKey: ArrayBuffer; signature: ArrayBuffer };
  preKey?: { keyId: number; publicKey: ArrayBuffer };
  registrationId: number;
}

/** The module object of @privacyresearch/libsignal-protocol-typescript (what the worker entry imports). */
export interface JsPeerLib {
  KeyHelper: {
    generateIdentityKeyPair(): Promise<KeyPair>;
    generateRegistrationId(): number;
    generateSignedPreKey(identity: KeyPair, keyId: number): Promise<SignedPreKeyPair>;
    generatePreKey(keyId: number): Promise<PreKeyPair>;
  };
  SignalProtocolAddress: new (name: string, deviceId: number) => Address;
  SessionBuilder: new (
    storage: Storage,
    remote: Address,
  ) => {
    processPreKey(device: Bundle): Promise<unknown>;
  };
  SessionCipher: new (
    storage: Storage,
    remote: Address,
  ) => {
    encrypt(buffer: ArrayBuffer): Promise<Ciphertext>;
    decryptPreKeyWhisperMessage(body: string, encoding: 'binary'): Promise<ArrayBuffer>;
    decryptWhisperMessage(body: string, encoding: 'binary'): Promise<ArrayBuffer>;
  };
}

// ---- a minimal in-memory store ---------------------------------------------------------------------

const sameBytes = (a: ArrayBuffer, b: ArrayBuffer) => {
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  return x.every((v, i) => v === y[i]);
};

class MemStore implements Storage {
  readonly preKeys = new Map<string, KeyPair>();
  readonly signedPreKeys = new Map<string, KeyPair>();
  readonly sessions = new Map<string, string>();
  readonly identities = new Map<string, ArrayBuffer>();
  constructor(
    readonly identity: KeyPair,
    readonly registrationId: number,
  ) {}
  async getIdentityKeyPair() {
    return this.identity;
  }
  async getLocalRegistrationId() {
    return this.registrationId;
  }
  /** Trust on first use, as a client would; refuses a changed key. */
  async isTrustedIdentity(identifier: string, identityKey: ArrayBuffer) {
    const known = this.identities.get(identifier);
    return !known || sameBytes(known, identityKey);
  }
  async saveIdentity(encodedAddress: string, publicKey: ArrayBuffer) {
    const name = encodedAddress.split('.')[0]!;
    const known = this.identities.get(name);
    this.identities.set(name, publicKey);
    return !!known && !sameBytes(known, publicKey);
  }
  async loadPreKey(keyId: string | number) {
    return this.preKeys.get(String(keyId));
  }
  async storePreKey(keyId: string | number, keyPair: KeyPair) {
    this.preKeys.set(String(keyId), keyPair);
  }
  async removePreKey(keyId: string | number) {
    this.preKeys.delete(String(keyId));
  }
  async storeSession(encodedAddress: string, record: string) {
    this.sessions.set(encodedAddress, record);
  }
  async loadSession(encodedAddress: string) {
    return this.sessions.get(encodedAddress);
  }
  async loadSignedPreKey(keyId: string | number) {
    return this.signedPreKeys.get(String(keyId));
  }
  async storeSignedPreKey(keyId: string | number, keyPair: KeyPair) {
    this.signedPreKeys.set(String(keyId), keyPair);
  }
  async removeSignedPreKey(keyId: string | number) {
    this.signedPreKeys.delete(String(keyId));
  }
}

interface Device {
  readonly name: string;
  readonly store: MemStore;
  readonly signed: SignedPreKeyPair;
}

async function device(lib: JsPeerLib, name: string): Promise<Device> {
  const identity = await lib.KeyHelper.generateIdentityKeyPair();
  const store = new MemStore(identity, lib.KeyHelper.generateRegistrationId());
  const signed = await lib.KeyHelper.generateSignedPreKey(identity, 1);
  await store.storeSignedPreKey(signed.keyId, signed.keyPair);
  return { name, store, signed };
}

/** Bob generates and stores a one-time prekey; returns his bundle with it. */
async function bundle(lib: JsPeerLib, bob: Device, id: number): Promise<Bundle> {
  const otp = await lib.KeyHelper.generatePreKey(id);
  await bob.store.storePreKey(otp.keyId, otp.keyPair);
  return {
    identityKey: bob.store.identity.pubKey,
    signedPreKey: { keyId: bob.signed.keyId, publicKey: bob.signed.keyPair.pubKey, signature: bob.signed.signature },
    preKey: { keyId: otp.keyId, publicKey: otp.keyPair.pubKey },
    registrationId: bob.store.registrationId,
  };
}

function check(pt: ArrayBuffer, expected: Uint8Array): void {
  const got = new Uint8Array(pt);
  if (got.length !== expected.length || got[0] !== expected[0] || got[got.length - 1] !== expected[got.length - 1])
    throw new Error('jspeer: plaintext mismatch');
}

type Cipher = InstanceType<JsPeerLib['SessionCipher']>;
interface End {
  readonly cipher: Cipher;
}

async function sendAndReceive(from: End, to: End, pt: Uint8Array): Promise<number> {
  const c = await from.cipher.encrypt(pt.slice().buffer);
  const out =
    c.type === 3
      ? await to.cipher.decryptPreKeyWhisperMessage(c.body!, 'binary')
      : await to.cipher.decryptWhisperMessage(c.body!, 'binary');
  check(out, pt);
  return c.type;
}

/** A session used both ways, then A→B once more: A's messages are then plain WhisperMessages. */
async function establish(lib: JsPeerLib, size: number, id = 1): Promise<{ a: End; b: End; pt: Uint8Array }> {
  const alice = await device(lib, 'alice');
  const bob = await device(lib, 'bob');
  const bobAddr = new lib.SignalProtocolAddress('bob', id);
  const aliceAddr = new lib.SignalProtocolAddress('alice', id);
  await new lib.SessionBuilder(alice.store, bobAddr).processPreKey(await bundle(lib, bob, id));
  const a = { cipher: new lib.SessionCipher(alice.store, bobAddr) };
  const b = { cipher: new lib.SessionCipher(bob.store, aliceAddr) };
  const pt = crypto.getRandomValues(new Uint8Array(size));
  await sendAndReceive(a, b, pt);
  await sendAndReceive(b, a, pt);
  if ((await sendAndReceive(a, b, pt)) !== 1) throw new Error('jspeer: session not established');
  return { a, b, pt };
}

export function jsPeerWorkloads(lib: JsPeerLib, size: number): Partial<SideWorkloads> {
  const oneWay: Workload = async (ops) => {
    const { a, b, pt } = await establish(lib, size);
    return {
      ops,
      async run() {
        for (let i = 0; i < ops; i++) await sendAndReceive(a, b, pt);
      },
    };
  };

  const pingPong: Workload = async (ops) => {
    const { a, b, pt } = await establish(lib, size);
    return {
      ops,
      async run() {
        for (let i = 0; i < ops; i++) await (i % 2 === 0 ? sendAndReceive(b, a, pt) : sendAndReceive(a, b, pt));
      },
    };
  };

  /** One X3DH set-up: Bob publishes a fresh one-time prekey, Alice processes his bundle (checks the signed
   * prekey's signature), encrypts; Bob decrypts the PreKeyWhisperMessage. Fresh addresses each time, so no
   * session record grows. */
  const setup: Workload = async (ops) => {
    const alice = await device(lib, 'alice');
    const bob = await device(lib, 'bob');
    const pt = crypto.getRandomValues(new Uint8Array(size));
    return {
      ops,
      async run() {
        for (let i = 0; i < ops; i++) {
          const id = 100 + i;
          const bobAddr = new lib.SignalProtocolAddress('bob', id);
          await new lib.SessionBuilder(alice.store, bobAddr).processPreKey(await bundle(lib, bob, id));
          const a = { cipher: new lib.SessionCipher(alice.store, bobAddr) };
          const b = { cipher: new lib.SessionCipher(bob.store, new lib.SignalProtocolAddress('alice', id)) };
          if ((await sendAndReceive(a, b, pt)) !== 3) throw new Error('jspeer: expected a PreKeyWhisperMessage');
        }
      },
    };
  };

  return { oneWay, pingPong, setup };
}
