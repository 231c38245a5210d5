import { beforeAll, describe, expect, it } from 'vitest';
import { fromHex, toB64u, toHex, utf8 } from './bytes.js';
import {
  compareScanned,
  compareScannedText,
  decodeScannable,
  decodeScannableText,
  displayableFingerprint,
  encodeScannable,
  encodeScannableText,
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

describe('safety-number QR text form (docs/PROTOCOL.md §"Safety numbers")', () => {
  const vectorPath = new URL('./vectors/safety-qr.json', import.meta.url);
  const inputs = { aliceUserId: 'u_alice', bobUserId: 'u_bob' };
  /** Two real Ed25519 public keys from a fixed seed (listed in the vector). */
  const keys = async () => {
    const rng = seededRng('safety-qr vector');
    const a = await generateEd25519(nobleCurves, rng);
    const b = await generateEd25519(nobleCurves, rng);
    return { a: a.publicKey, b: b.publicKey };
  };

  it('carries the binary payload as text a QR reader returns, and compares like the bytes (published vector)', async () => {
    const { a, b } = await keys();
    const sa = safetyNumber(a, inputs.aliceUserId, b, inputs.bobUserId);
    const sb = safetyNumber(b, inputs.bobUserId, a, inputs.aliceUserId);
    const textA = encodeScannableText(sa.scannable);
    const textB = encodeScannableText(sb.scannable);
    expect(textA).toMatch(/^e2echat-sn:1:[A-Za-z0-9_-]{99}$/);
    expect(toHex(decodeScannableText(textA))).toBe(toHex(sa.scannable));
    expect(compareScannedText(sa.scannable, textB)).toBe(true);
    expect(compareScannedText(sb.scannable, textA)).toBe(true);
    expect(compareScannedText(sa.scannable, textA)).toBe(false); // our own code is not theirs
    const vector = {
      _note:
        'e2e-chat safety-number QR text form: the libsignal CombinedFingerprints payload (version 1) of two users, as the QR text "e2echat-sn:1:" + base64url(payload). Keys: Ed25519 public keys from seededRng("safety-qr vector") (generateEd25519 twice, noble path). Layer: docs/PROTOCOL.md §"Safety numbers" (QR text form) only.',
      aliceIdentityPublic: toHex(a),
      aliceUserId: inputs.aliceUserId,
      bobIdentityPublic: toHex(b),
      bobUserId: inputs.bobUserId,
      digits: sa.digits,
      aliceScannable: toHex(sa.scannable),
      aliceText: textA,
      bobScannable: toHex(sb.scannable),
      bobText: textB,
    };
    const { existsSync, readFileSync, writeFileSync } = await import('node:fs');
    if (process.env.UPDATE_VECTORS || !existsSync(vectorPath)) {
      writeFileSync(vectorPath, `${JSON.stringify(vector, null, 2)}\n`);
    }
    const committed = JSON.parse(readFileSync(vectorPath, 'utf8')) as typeof vector;
    expect(committed).toEqual(vector);
    // From the committed inputs alone (keys as listed): the same texts.
    const fromFile = safetyNumber(
      fromHex(committed.aliceIdentityPublic),
      committed.aliceUserId,
      fromHex(committed.bobIdentityPublic),
      committed.bobUserId,
    );
    expect(encodeScannableText(fromFile.scannable)).toBe(committed.aliceText);
  });

  const B64U = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  it('refuses a code that is not a safety-number code, another text version, non-canonical or malformed base64url', async () => {
    const { a, b } = await keys();
    const text = encodeScannableText(safetyNumber(a, 'u_alice', b, 'u_bob').scannable);
    const body = text.slice('e2echat-sn:1:'.length);
    for (const bad of [
      '',
      'hello',
      'e2echat-link:1:AAAA',
      `e2echat-sn:2:${body}`,
      `e2echat-sn:1:${body}A`,
      `e2echat-sn:1:${body.slice(0, -1)}`,
      `e2echat-sn:1:${body.slice(0, -1)}${B64U[B64U.indexOf(body.at(-1)!) | 1]}`, // a set unused low bit
      `e2echat-sn:1:${body.replace(/^./, '+')}`,
      `e2echat-sn:1:${toB64u(new Uint8Array(74))}`,
    ]) {
      expect(() => decodeScannableText(bad), bad).toThrow();
    }
    expect(toHex(decodeScannableText(` ${text}\n`))).toBe(toHex(decodeScannableText(text))); // pasted with spaces
  });
});
