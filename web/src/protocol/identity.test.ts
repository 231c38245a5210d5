import { beforeAll, describe, expect, it } from 'vitest';
import { toHex } from './bytes.js';
import { MAX_DEVICES_PER_USER } from './constants.js';
import { is } from './errors.js';
import {
  type DeviceList,
  decodeDeviceCertificate,
  decodeDeviceList,
  encodeDeviceCertificate,
  encodeDeviceList,
  encryptableDevices,
  issueDeviceCertificate,
  signDeviceList,
  signLoginChallenge,
  type VerifiedDeviceList,
  verifyDeviceCertificate,
  verifyDeviceList,
  verifyDeviceListUpdate,
  verifyLoginChallenge,
} from './identity.js';
import { generateEd25519 } from './keys.js';
import {
  decodePrekeyUpload,
  encodePrekeyUpload,
  generateOneTimePrekeys,
  kemPrekeyPublic,
  oneTimePrekeyPublic,
  signedPrekeyPublic,
  verifyBundle,
  verifyPrekeyUpload,
} from './prekeys.js';
import type { Curve25519 } from './primitives.js';
import {
  makeTestDevice,
  makeTestUser,
  seededRng,
  type TestDevice,
  type TestUser,
  testBundle,
  webCryptoTestCurves,
} from './testing.js';

let curves: Curve25519;
let bob: TestUser;
let mallory: TestUser;
let v1: VerifiedDeviceList;
let b2: TestDevice;
let v2list: DeviceList;

beforeAll(async () => {
  curves = (await webCryptoTestCurves())!;
  const rng = seededRng('identity.test');
  bob = await makeTestUser(curves, rng, 'bob', ['b1']);
  mallory = await makeTestUser(curves, rng, 'mallory', ['m1']);
  v1 = await verifyDeviceList(curves, bob.deviceList);
  b2 = await makeTestDevice(curves, rng, bob.identity, 'bob', 'b2');
  v2list = await signDeviceList(curves, bob.identity, {
    userId: 'bob',
    version: 2,
    devices: [...bob.deviceList.devices, b2.certificate],
  });
});

const flip = (b: Uint8Array, i = 0) => {
  const c = b.slice();
  c[i]! ^= 1;
  return c;
};
const codeOf = (p: Promise<unknown>) => p.then(() => 'ok').catch((e) => (is(e) ? e.code : String(e)));

describe('device certificates', () => {
  it('round-trips through its encoding and verifies under the user identity key', async () => {
    const c = decodeDeviceCertificate(encodeDeviceCertificate(bob.devices[0]!.certificate));
    const v = await verifyDeviceCertificate(curves, c, bob.identity.publicKey);
    expect(v.deviceId).toBe('b1');
    expect(toHex(v.identityKey)).toBe(toHex(bob.devices[0]!.identity.publicKey));
  });

  it('a certificate signed by another key, or with any field changed, is refused', async () => {
    const c = bob.devices[0]!.certificate;
    const forged = await issueDeviceCertificate(curves, mallory.identity, c);
    expect(await codeOf(verifyDeviceCertificate(curves, forged, bob.identity.publicKey))).toBe('signature');
    for (const t of [
      { ...c, deviceId: 'b9' },
      { ...c, createdAt: c.createdAt + 1 },
      { ...c, signature: flip(c.signature) },
    ]) {
      expect(await codeOf(verifyDeviceCertificate(curves, t, bob.identity.publicKey))).toBe('signature');
    }
  });

  it('decoding is strict: truncated, trailing, wrong version, non-canonical or small-order keys (pitfall 3)', () => {
    const enc = encodeDeviceCertificate(bob.devices[0]!.certificate);
    expect(() => decodeDeviceCertificate(enc.slice(0, -1))).toThrow();
    expect(() => decodeDeviceCertificate(new Uint8Array([...enc, 0]))).toThrow();
    expect(() => decodeDeviceCertificate(new Uint8Array([9, ...enc.slice(1)]))).toThrow();
    const sOff = 1 + 4 + 3 + 4 + 2; // version, "bob", "b1"
    const smallOrder = enc.slice();
    smallOrder.set(new Uint8Array(32), sOff);
    smallOrder[sOff] = 1; // Ed25519 identity point (order 1)
    expect(() => decodeDeviceCertificate(smallOrder)).toThrow(/invalid Ed25519 key/);
    const nonCanonicalX = enc.slice();
    nonCanonicalX.set(new Uint8Array(32).fill(0xff), sOff + 32);
    expect(() => decodeDeviceCertificate(nonCanonicalX)).toThrow(/X25519/);
  });
});

describe('device lists', () => {
  it('a valid list round-trips and every device is encryptable', async () => {
    const l = decodeDeviceList(encodeDeviceList(v2list));
    const v = await verifyDeviceListUpdate(curves, v1, l);
    expect(encryptableDevices(v).map((d) => d.deviceId)).toEqual(['b1', 'b2']);
  });

  it('device list rollback, replay and version skip are refused', async () => {
    const v2 = await verifyDeviceListUpdate(curves, v1, v2list);
    const v3skip = await signDeviceList(curves, bob.identity, { userId: 'bob', version: 4, devices: v2list.devices });
    expect(await codeOf(verifyDeviceListUpdate(curves, v2, bob.deviceList))).toBe('invalid_structure');
    expect(await codeOf(verifyDeviceListUpdate(curves, v2, v2list))).toBe('invalid_structure');
    expect(await codeOf(verifyDeviceListUpdate(curves, v2, v3skip))).toBe('invalid_structure');
  });

  it('a list signed by a different identity key is untrusted_identity; a bad signature is refused', async () => {
    const byMallory = await signDeviceList(curves, mallory.identity, {
      userId: 'bob',
      version: 2,
      devices: v2list.devices,
    });
    expect(await codeOf(verifyDeviceListUpdate(curves, v1, byMallory))).toBe('untrusted_identity');
    expect(await codeOf(verifyDeviceListUpdate(curves, v1, { ...v2list, signature: flip(v2list.signature, 3) }))).toBe(
      'signature',
    );
  });

  it('a device not signed by the user identity key is never returned as encryptable (pitfall 16)', async () => {
    // The server slips Mallory's device (certified by Mallory's key, relabelled as Bob's) into Bob's list.
    const rogue = await makeTestDevice(curves, seededRng('rogue'), mallory.identity, 'bob', 'evil');
    const tampered: DeviceList = { ...v2list, devices: [...v2list.devices, rogue.certificate] };
    expect(await codeOf(verifyDeviceListUpdate(curves, v1, tampered))).toBe('signature');
    // Even if the list signature were re-made by Mallory, the identity key would not match.
    const resigned = await signDeviceList(curves, mallory.identity, {
      userId: 'bob',
      version: 2,
      devices: tampered.devices,
    });
    expect(await codeOf(verifyDeviceListUpdate(curves, v1, resigned))).toBe('untrusted_identity');
    // And a bundle for the rogue device does not verify under Bob's identity key.
    expect(await codeOf(verifyBundle(curves, testBundle(rogue), bob.identity.publicKey))).toBe('signature');
    // A correctly certified device that is not in the verified list is refused when the list is supplied.
    expect(await codeOf(verifyBundle(curves, testBundle(b2), bob.identity.publicKey, v1))).toBe('untrusted_identity');
    expect(
      await codeOf(
        verifyBundle(curves, testBundle(b2), bob.identity.publicKey, await verifyDeviceList(curves, v2list)),
      ),
    ).toBe('ok');
  });

  it('duplicates, foreign-user certificates, empty and oversized lists are refused', async () => {
    const dup = await signDeviceList(curves, bob.identity, {
      userId: 'bob',
      version: 2,
      devices: [...bob.deviceList.devices, ...bob.deviceList.devices],
    });
    expect(await codeOf(verifyDeviceList(curves, dup))).toBe('invalid_structure');
    const sameKeysOtherId = await issueDeviceCertificate(curves, bob.identity, {
      ...bob.devices[0]!.certificate,
      deviceId: 'b1-copy',
    });
    const dupKeys = await signDeviceList(curves, bob.identity, {
      userId: 'bob',
      version: 2,
      devices: [...bob.deviceList.devices, sameKeysOtherId],
    });
    expect(await codeOf(verifyDeviceList(curves, dupKeys))).toBe('invalid_structure');
    const foreign = await issueDeviceCertificate(curves, bob.identity, { ...b2.certificate, userId: 'carol' });
    const withForeign = await signDeviceList(curves, bob.identity, {
      userId: 'bob',
      version: 2,
      devices: [...bob.deviceList.devices, foreign],
    });
    expect(await codeOf(verifyDeviceList(curves, withForeign))).toBe('invalid_structure');
    const empty = await signDeviceList(curves, bob.identity, { userId: 'bob', version: 2, devices: [] });
    expect(await codeOf(verifyDeviceList(curves, empty))).toBe('invalid_structure');
    const many = Array.from({ length: MAX_DEVICES_PER_USER + 1 }, (_, i) => ({ ...b2.certificate, deviceId: `d${i}` }));
    await expect(signDeviceList(curves, bob.identity, { userId: 'bob', version: 2, devices: many })).rejects.toThrow(
      /too many/,
    );
  });
});

describe('login challenge', () => {
  it('verifies only for the same challenge, user, device and key', async () => {
    const d = bob.devices[0]!;
    const ch = seededRng('challenge')(32);
    const sig = await signLoginChallenge(curves, d.signing, ch, 'bob', 'b1');
    expect(await verifyLoginChallenge(curves, d.signing.publicKey, ch, 'bob', 'b1', sig)).toBe(true);
    expect(await verifyLoginChallenge(curves, d.signing.publicKey, flip(ch), 'bob', 'b1', sig)).toBe(false);
    expect(await verifyLoginChallenge(curves, d.signing.publicKey, ch, 'bob', 'b2', sig)).toBe(false);
    expect(await verifyLoginChallenge(curves, d.signing.publicKey, ch, 'bobby', 'b1', sig)).toBe(false);
    expect(await verifyLoginChallenge(curves, b2.signing.publicKey, ch, 'bob', 'b1', sig)).toBe(false);
    await expect(signLoginChallenge(curves, d.signing, new Uint8Array(8), 'bob', 'b1')).rejects.toThrow(
      /challenge length/,
    );
  });

  it('a login signature cannot be replayed as a device-certificate or prekey signature (domain separation)', async () => {
    const k = await generateEd25519(curves, seededRng('k'));
    const cert = bob.devices[0]!.certificate;
    const sig = await signLoginChallenge(curves, k, new Uint8Array(32), 'bob', 'b1');
    expect(await codeOf(verifyDeviceCertificate(curves, { ...cert, signature: sig }, k.publicKey))).toBe('signature');
  });
});

describe('prekey upload (server side of pitfall 1)', () => {
  it('an upload with a bad signed-prekey or KEM signature is refused before storing', async () => {
    const d = bob.devices[0]!;
    const upload = {
      signedPrekey: signedPrekeyPublic(d.signedPrekey),
      oneTimePrekeys: (await generateOneTimePrekeys(curves, seededRng('otp'), 500, 3)).map(oneTimePrekeyPublic),
      kemPrekeys: [kemPrekeyPublic(d.kemPrekey), kemPrekeyPublic(d.lastResortKemPrekey)],
    };
    const decoded = decodePrekeyUpload(encodePrekeyUpload(upload));
    expect(await codeOf(verifyPrekeyUpload(curves, decoded, d.signing.publicKey))).toBe('ok');
    expect(await codeOf(verifyPrekeyUpload(curves, decoded, b2.signing.publicKey))).toBe('signature');
    const badKem = { ...decoded, kemPrekeys: [{ ...decoded.kemPrekeys[0]!, lastResort: true }] };
    expect(await codeOf(verifyPrekeyUpload(curves, badKem, d.signing.publicKey))).toBe('signature');
    const dupIds = { ...decoded, oneTimePrekeys: [decoded.oneTimePrekeys[0]!, decoded.oneTimePrekeys[0]!] };
    expect(await codeOf(verifyPrekeyUpload(curves, dupIds, d.signing.publicKey))).toBe('invalid_structure');
  });
});
