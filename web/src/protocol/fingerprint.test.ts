import { beforeAll, describe, expect, it } from 'vitest';
import { fromHex, toHex, utf8 } from './bytes.js';
import {
  compareScanned,
  decodeScannable,
  displayableFingerprint,
  encodeScannable,
  fingerprintHash,
  safetyNumber,
} from './fingerprint.js';
import { signDeviceList } from './identity.js';
import { generateEd25519 } from './keys.js';
import { nobleCurves } from './primitives.js';
import { makeTestDevice, makeTestUser, seededRng, type TestUser } from './testing.js';
import libsignal from './vectors/libsignal-fingerprint.json' with { type: 'json' };

describe('libsignal NumericFingerprintGenerator vectors (pitfall 20)', () => {
  const a = fromHex(libsignal.aliceIdentity);
  const b = fromHex(libsignal.bobIdentity);
  const aid = utf8(libsignal.aliceStableId);
  const bid = utf8(libsignal.bobStableId);

  it('displayable fingerprint equals libsignal v1/v2 vector from both sides', () => {
    expect(displayableFingerprint(libsignal.iterations, 0, a, aid, b, bid)).toBe(libsignal.displayable);
    expect(displayableFingerprint(libsignal.iterations, 0, b, bid, a, aid)).toBe(libsignal.displayable);
  });

  it('scannable payload equals libsignal CombinedFingerprints for v1 and v2', () => {
    const ha = fingerprintHash(libsignal.iterations, 0, a, aid);
    const hb = fingerprintHash(libsignal.iterations, 0, b, bid);
    for (const v of libsignal.scannable) {
      expect(toHex(encodeScannable(v.version, ha, hb))).toBe(v.alice);
      expect(toHex(encodeScannable(v.version, hb, ha))).toBe(v.bob);
      expect(compareScanned(fromHex(v.alice), fromHex(v.bob))).toBe(true);
      expect(compareScanned(fromHex(v.alice), fromHex(v.alice))).toBe(false);
    }
  });

  it('scannable encoding matches libsignal fingerprint_encodings', () => {
    const e = libsignal.encoding;
    expect(toHex(encodeScannable(e.version, fromHex(e.local), fromHex(e.remote)))).toBe(e.expected);
  });

  it('a version mismatch or malformed payload is a decode error', () => {
    const [v1, v2] = libsignal.scannable;
    expect(() => compareScanned(fromHex(v1!.alice), fromHex(v2!.bob))).toThrow(/version mismatch/);
    expect(() => decodeScannable(fromHex(v1!.alice).slice(0, 73))).toThrow();
    const bad = fromHex(v1!.alice);
    bad[39] = 0x23;
    expect(() => decodeScannable(bad)).toThrow();
  });
});

describe('safety numbers (pitfall 15)', () => {
  const curves = nobleCurves;
  let alice: TestUser;
  let bob: TestUser;
  beforeAll(async () => {
    const rng = seededRng('fingerprint.test');
    alice = await makeTestUser(curves, rng, 'alice', ['a1']);
    bob = await makeTestUser(curves, rng, 'bob', ['b1']);
  });

  it('both users see the same 60-digit number and their QR payloads match each other', () => {
    const sa = safetyNumber(alice.identity.publicKey, 'alice', bob.identity.publicKey, 'bob');
    const sb = safetyNumber(bob.identity.publicKey, 'bob', alice.identity.publicKey, 'alice');
    expect(sa.digits).toMatch(/^\d{60}$/);
    expect(sa.digits).toBe(sb.digits);
    expect(sa.display.split(' ')).toHaveLength(12);
    expect(compareScanned(sa.scannable, sb.scannable)).toBe(true);
  });

  it('safety number changes when a user identity key changes', async () => {
    const before = safetyNumber(alice.identity.publicKey, 'alice', bob.identity.publicKey, 'bob');
    const newBob = await generateEd25519(curves, seededRng('bob reinstalled'));
    const after = safetyNumber(alice.identity.publicKey, 'alice', newBob.publicKey, 'bob');
    expect(after.digits).not.toBe(before.digits);
    const bobSide = safetyNumber(newBob.publicKey, 'bob', alice.identity.publicKey, 'alice');
    expect(compareScanned(before.scannable, bobSide.scannable)).toBe(false);
  });

  it('safety number does not change when a device is added to the account', async () => {
    const before = safetyNumber(alice.identity.publicKey, 'alice', bob.identity.publicKey, 'bob');
    const b2 = await makeTestDevice(curves, seededRng('b2'), bob.identity, 'bob', 'b2');
    const list = await signDeviceList(curves, bob.identity, {
      userId: 'bob',
      version: 2,
      devices: [...bob.deviceList.devices, b2.certificate],
    });
    // The safety number takes only the user identity key from the (new) list.
    const after = safetyNumber(alice.identity.publicKey, 'alice', list.userIdentityKey, 'bob');
    expect(after.digits).toBe(before.digits);
  });

  it('a different user id changes the safety number', () => {
    const x = safetyNumber(alice.identity.publicKey, 'alice', bob.identity.publicKey, 'bob');
    const y = safetyNumber(alice.identity.publicKey, 'alice', bob.identity.publicKey, 'bobby');
    expect(x.digits).not.toBe(y.digits);
  });
});
