/**
 * Test helpers shared by protocol tests and the known-answer vector generator: a deterministic `Rng`
 * (counter-mode SHA-256 over a seed) so fixed seeds reproduce the published vectors.
 *
 * Does NOT: provide randomness for production — never pass `seededRng` outside tests and vectors.
 * @module
 */
import { concat, fromHex, toHex, u32be, utf8 } from './bytes.js';
import { type DeviceCertificate, type DeviceList, issueDeviceCertificate, signDeviceList } from './identity.js';
import { generateEd25519, generateX25519, type OurEd25519KeyPair, type OurX25519KeyPair } from './keys.js';
import type { PqxdhLocalIdentity } from './pqxdh.js';
import {
  generateKemPrekey,
  generateOneTimePrekeys,
  generateSignedPrekey,
  type KemPrekeyRecord,
  kemPrekeyPublic,
  type OneTimePrekeyRecord,
  oneTimePrekeyPublic,
  type PrekeyBundle,
  type SignedPrekeyRecord,
  signedPrekeyPublic,
} from './prekeys.js';
import {
  type Curve25519,
  mlkemDecapsulate,
  mlkemEncapsulate,
  mlkemKeygen,
  type Rng,
  sha256,
  webCryptoCurves,
} from './primitives.js';

/**
 * Block i of the stream is SHA-256(u32be(len(seed)) ‖ seed ‖ u32be(i)); `rng(n)` returns the next n bytes.
 * Deterministic and documented so other implementations can reproduce our vectors.
 */
export function seededRng(seed: string | Uint8Array): Rng {
  const s = typeof seed === 'string' ? utf8(seed) : seed;
  const prefix = concat(u32be(s.length), s);
  let counter = 0;
  let buf: Uint8Array = new Uint8Array(0);
  return (length: number) => {
    while (buf.length < length) buf = concat(buf, sha256(concat(prefix, u32be(counter++))));
    const out = buf.slice(0, length);
    buf = buf.slice(length);
    return out;
  };
}

/** An Rng that records every output (hex), so a vector can list the values it consumed, in order. */
export function recordingRng(rng: Rng): { rng: Rng; drawn: string[] } {
  const drawn: string[] = [];
  return {
    drawn,
    rng: (n) => {
      const out = rng(n);
      drawn.push(toHex(out));
      return out;
    },
  };
}

/** An Rng that replays recorded draws (hex) and throws on any request of another length or beyond them. */
export function replayRng(hexes: readonly string[]): Rng {
  const queue = [...hexes];
  return (n) => {
    const next = fromHex(queue.shift() ?? '');
    if (next.length !== n) throw new Error('replay rng: unexpected request');
    return next;
  };
}

export interface TestDevice {
  readonly userId: string;
  readonly deviceId: string;
  readonly signing: OurEd25519KeyPair;
  readonly identity: OurX25519KeyPair;
  readonly certificate: DeviceCertificate;
  readonly signedPrekey: SignedPrekeyRecord;
  readonly oneTimePrekeys: OneTimePrekeyRecord[];
  readonly kemPrekey: KemPrekeyRecord;
  readonly lastResortKemPrekey: KemPrekeyRecord;
}

export interface TestUser {
  readonly userId: string;
  readonly identity: OurEd25519KeyPair;
  readonly devices: TestDevice[];
  readonly deviceList: DeviceList;
}

/** A device with its certificate and a full set of prekeys (ids: spk 1, otp 100.., kem 200, last-resort 201). */
export async function makeTestDevice(
  curves: Curve25519,
  rng: Rng,
  userIdentity: OurEd25519KeyPair,
  userId: string,
  deviceId: string,
  oneTimeCount = 2,
): Promise<TestDevice> {
  const signing = await generateEd25519(curves, rng);
  const identity = await generateX25519(curves, rng);
  const certificate = await issueDeviceCertificate(curves, userIdentity, {
    userId,
    deviceId,
    signingKey: signing.publicKey,
    identityKey: identity.publicKey,
    createdAt: 1_700_000_000_000,
  });
  const signedPrekey = await generateSignedPrekey(curves, rng, signing, 1);
  const oneTimePrekeys = await generateOneTimePrekeys(curves, rng, 100, oneTimeCount);
  const kemPrekey = await generateKemPrekey(curves, rng, signing, 200, false);
  const lastResortKemPrekey = await generateKemPrekey(curves, rng, signing, 201, true);
  return {
    userId,
    deviceId,
    signing,
    identity,
    certificate,
    signedPrekey,
    oneTimePrekeys,
    kemPrekey,
    lastResortKemPrekey,
  };
}

/** A user with an identity key, `deviceIds.length` devices and a signed device list (version 1). */
export async function makeTestUser(
  curves: Curve25519,
  rng: Rng,
  userId: string,
  deviceIds: string[],
): Promise<TestUser> {
  const identity = await generateEd25519(curves, rng);
  const devices: TestDevice[] = [];
  for (const d of deviceIds) devices.push(await makeTestDevice(curves, rng, identity, userId, d));
  const deviceList = await signDeviceList(curves, identity, {
    userId,
    version: 1,
    devices: devices.map((d) => d.certificate),
  });
  return { userId, identity, devices, deviceList };
}

/** The bundle the server would return for `device` (first one-time prekey, or none). */
export function testBundle(device: TestDevice, withOneTime = true): PrekeyBundle {
  const otp = device.oneTimePrekeys[0];
  return {
    deviceCertificate: device.certificate,
    signedPrekey: signedPrekeyPublic(device.signedPrekey),
    oneTimePrekey: withOneTime && otp ? oneTimePrekeyPublic(otp) : null,
    kemPrekey: kemPrekeyPublic(device.kemPrekey),
  };
}

/** The PQXDH local identity of a test device. */
export function testLocalIdentity(device: TestDevice): PqxdhLocalIdentity {
  return { userId: device.userId, deviceId: device.deviceId, identityKey: device.identity };
}

/**
 * A SubtleCrypto with WebCrypto's ML-KEM-1024 members (`raw-seed` / `raw-public` import, `getPublicKey`,
 * `raw-public` export, `encapsulateBits`, `decapsulateBits`, as Chromium ships them) emulated with the noble
 * functions, for platforms without them (Node 20): lets the unit tests run `webCryptoMlKem`'s code path.
 * Everything else goes to `real`. `calls` counts each ML-KEM member used. Tests only.
 */
export function mlkemSubtleShim(real: SubtleCrypto = crypto.subtle): {
  subtle: SubtleCrypto;
  calls: Map<string, number>;
} {
  const calls = new Map<string, number>();
  const count = (name: string) => calls.set(name, (calls.get(name) ?? 0) + 1);
  interface FakeKey {
    readonly mlkem: true;
    readonly type: 'private' | 'public';
    readonly bytes: Uint8Array;
  }
  const isMlKem = (alg: unknown) => (alg as { name?: string } | undefined)?.name === 'ML-KEM-1024';
  const fake = (k: unknown): FakeKey => {
    if (!(k as FakeKey | undefined)?.mlkem) throw new DOMException('not an ML-KEM key', 'InvalidAccessError');
    return k as FakeKey;
  };
  const u8 = (b: BufferSource) =>
    b instanceof Uint8Array ? b.slice() : new Uint8Array(ArrayBuffer.isView(b) ? b.buffer : b).slice();
  const ab = (u: Uint8Array) => u.slice().buffer;
  const shim = {
    async importKey(format: string, data: BufferSource, alg: unknown, ...rest: unknown[]) {
      if (!isMlKem(alg))
        return (real.importKey as (...a: unknown[]) => Promise<CryptoKey>).call(real, format, data, alg, ...rest);
      count(`importKey:${format}`);
      const bytes = u8(data);
      if (format === 'raw-seed' && bytes.length === 64) return { mlkem: true, type: 'private', bytes };
      if (format === 'raw-public') {
        try {
          mlkemEncapsulate(bytes, new Uint8Array(32)); // the modulus check of FIPS 203 §7.2
        } catch {
          throw new DOMException('invalid key', 'DataError');
        }
        return { mlkem: true, type: 'public', bytes };
      }
      throw new DOMException('unsupported', 'NotSupportedError');
    },
    async exportKey(format: string, key: CryptoKey) {
      if (!(key as unknown as FakeKey).mlkem) return real.exportKey(format as 'raw', key);
      count(`exportKey:${format}`);
      const k = fake(key);
      if (format !== 'raw-public' || k.type !== 'public') throw new DOMException('wrong type', 'InvalidAccessError');
      return ab(k.bytes);
    },
    async getPublicKey(key: unknown) {
      count('getPublicKey');
      const k = fake(key);
      return { mlkem: true, type: 'public', bytes: mlkemKeygen(k.bytes).publicKey };
    },
    async encapsulateBits(_alg: unknown, key: unknown) {
      count('encapsulateBits');
      const { ciphertext, sharedSecret } = mlkemEncapsulate(
        fake(key).bytes,
        crypto.getRandomValues(new Uint8Array(32)),
      );
      return { ciphertext: ab(ciphertext), sharedKey: ab(sharedSecret) };
    },
    async decapsulateBits(_alg: unknown, key: unknown, ct: BufferSource) {
      count('decapsulateBits');
      const k = fake(key);
      if (k.type !== 'private') throw new DOMException('wrong type', 'InvalidAccessError');
      return ab(mlkemDecapsulate(u8(ct), mlkemKeygen(k.bytes).secretKey));
    },
  };
  const subtle = new Proxy(real, {
    get(target, prop) {
      if (typeof prop === 'string' && prop in shim) return shim[prop as keyof typeof shim];
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { subtle, calls };
}

/**
 * `webCryptoCurves()` with its WebCrypto ML-KEM path: the platform's where it has ML-KEM-1024 (Chromium),
 * else the same code over `mlkemSubtleShim` (Node 20), so the protocol tests run both ML-KEM paths anywhere.
 */
export async function webCryptoTestCurves(): Promise<Curve25519 | null> {
  const subtle = 'encapsulateBits' in crypto.subtle ? crypto.subtle : mlkemSubtleShim().subtle;
  const curves = await webCryptoCurves(subtle);
  if (curves && curves.mlkem.name !== 'webcrypto') throw new Error('the WebCrypto ML-KEM path failed its probe');
  return curves;
}
