import { beforeAll, describe, expect, it, vi } from 'vitest';
import { toHex } from './bytes.js';
import { is } from './errors.js';
import { type TheirX25519Key, theirX25519 } from './keys.js';
import {
  decodePqxdhInit,
  encodePqxdhInit,
  type PqxdhInitMessage,
  type PqxdhResponderKeys,
  pqxdhInitiate,
  pqxdhRespond,
} from './pqxdh.js';
import { decodeBundle, encodeBundle, type PrekeyBundle, verifyBundle } from './prekeys.js';
import { type Curve25519, mlkemKeygen, nobleCurves, platformRng } from './primitives.js';
import {
  makeTestUser,
  seededRng,
  type TestDevice,
  type TestUser,
  testBundle,
  testLocalIdentity,
  webCryptoTestCurves,
} from './testing.js';

let wc: Curve25519;
let alice: TestUser;
let bob: TestUser;
let carol: TestUser;

beforeAll(async () => {
  const w = await webCryptoTestCurves();
  if (!w) throw new Error('WebCrypto curves required in Node 20');
  wc = w;
  const rng = seededRng('pqxdh.test');
  alice = await makeTestUser(wc, rng, 'alice', ['a1']);
  bob = await makeTestUser(wc, rng, 'bob', ['b1', 'b2']);
  carol = await makeTestUser(wc, rng, 'carol', ['c1']);
});

const dev = (u: TestUser, i = 0): TestDevice => u.devices[i]!;
const responderKeys = (d: TestDevice, withOtp = true): PqxdhResponderKeys => ({
  signedPrekey: d.signedPrekey.keyPair,
  oneTimePrekey: withOtp ? d.oneTimePrekeys[0]!.keyPair : null,
  kemPrekey: d.kemPrekey.keyPair,
  signedPrekeyId: d.signedPrekey.id,
  oneTimePrekeyId: withOtp ? d.oneTimePrekeys[0]!.id : null,
  kemPrekeyId: d.kemPrekey.id,
});
const certifiedIk = (d: TestDevice): TheirX25519Key => theirX25519(d.identity.publicKey);

async function handshake(curves: Curve25519, from: TestDevice, to: TestUser, toIdx = 0, withOtp = true) {
  const bundle = await verifyBundle(curves, testBundle(to.devices[toIdx]!, withOtp), to.identity.publicKey);
  const a = await pqxdhInitiate(curves, seededRng('eph'), testLocalIdentity(from), bundle);
  const wire = decodePqxdhInit(encodePqxdhInit(a.init));
  const b = await pqxdhRespond(
    curves,
    testLocalIdentity(to.devices[toIdx]!),
    responderKeys(to.devices[toIdx]!, withOtp),
    wire,
    certifiedIk(from),
  );
  return { a, b };
}

describe('PQXDH', () => {
  it('with platformRng (WebCrypto draws m) and with an old KEM record (expanded key only), every path pair agrees', async () => {
    const to = dev(bob);
    const bundle = await verifyBundle(wc, testBundle(to), bob.identity.publicKey);
    // the record the test device keeps has the seed only (made on the WebCrypto path); an old one has dk only
    expect(to.kemPrekey.keyPair.seed).toHaveLength(64);
    expect(to.kemPrekey.keyPair.secretKey).toBeUndefined();
    const old = {
      publicKey: to.kemPrekey.keyPair.publicKey,
      secretKey: mlkemKeygen(to.kemPrekey.keyPair.seed!).secretKey,
    };
    for (const initiator of [wc, nobleCurves])
      for (const rng of [platformRng, seededRng('eph')]) {
        const a = await pqxdhInitiate(initiator, rng, testLocalIdentity(dev(alice)), bundle);
        for (const responder of [wc, nobleCurves])
          for (const kemPrekey of [to.kemPrekey.keyPair, old]) {
            const keys = { ...responderKeys(to), kemPrekey };
            const b = await pqxdhRespond(responder, testLocalIdentity(to), keys, a.init, certifiedIk(dev(alice)));
            expect(toHex(b.sharedSecret)).toBe(toHex(a.sharedSecret));
          }
      }
  });

  for (const which of ['noble', 'webcrypto'] as const) {
    it(`initiator and responder derive the same SK and AD (${which}, with and without one-time prekey)`, async () => {
      const curves = which === 'noble' ? nobleCurves : wc;
      for (const withOtp of [true, false]) {
        const { a, b } = await handshake(curves, dev(alice), bob, 0, withOtp);
        expect(a.sharedSecret).toHaveLength(32);
        expect(toHex(a.sharedSecret)).toBe(toHex(b.sharedSecret));
        expect(toHex(a.associatedData)).toBe(toHex(b.associatedData));
        expect(a.init.oneTimePrekeyId).toBe(withOtp ? 100 : null);
      }
    });
  }

  it('noble and webcrypto paths produce byte-identical SK, AD and init for the same seeds', async () => {
    const x = await handshake(nobleCurves, dev(alice), bob);
    const y = await handshake(wc, dev(alice), bob);
    expect(toHex(x.a.sharedSecret)).toBe(toHex(y.a.sharedSecret));
    expect(toHex(encodePqxdhInit(x.a.init))).toBe(toHex(encodePqxdhInit(y.a.init)));
  });

  it('the one-time prekey changes the shared secret', async () => {
    const withOtp = await handshake(wc, dev(alice), bob, 0, true);
    const without = await handshake(wc, dev(alice), bob, 0, false);
    expect(toHex(withOtp.a.sharedSecret)).not.toBe(toHex(without.a.sharedSecret));
  });

  it('swapping roles or presenting the handshake to a third device yields different SK and AD (pitfall 7)', async () => {
    const ab = await handshake(wc, dev(alice), bob);
    const ba = await handshake(wc, dev(bob), alice);
    expect(toHex(ab.a.sharedSecret)).not.toBe(toHex(ba.a.sharedSecret));
    expect(toHex(ab.a.associatedData)).not.toBe(toHex(ba.a.associatedData));
    // the same init message delivered to Bob's second device or to Carol
    for (const [victim, idx] of [
      [bob, 1],
      [carol, 0],
    ] as const) {
      const d = victim.devices[idx]!;
      const r = await pqxdhRespond(wc, testLocalIdentity(d), responderKeys(d), ab.a.init, certifiedIk(dev(alice)));
      expect(toHex(r.sharedSecret)).not.toBe(toHex(ab.a.sharedSecret));
      expect(toHex(r.associatedData)).not.toBe(toHex(ab.a.associatedData));
    }
  });

  it('associated data binds both user ids and device ids, initiator first', async () => {
    const { a } = await handshake(wc, dev(alice), bob);
    const ad = new TextDecoder('latin1').decode(a.associatedData);
    expect(ad.indexOf('alice')).toBeGreaterThan(0);
    expect(ad.indexOf('a1')).toBeGreaterThan(ad.indexOf('alice'));
    expect(ad.indexOf('bob')).toBeGreaterThan(ad.indexOf('a1'));
    expect(ad.indexOf('b1')).toBeGreaterThan(ad.indexOf('bob'));
  });

  it('responder refuses an init whose identity key differs from the certified one (untrusted_identity)', async () => {
    const { a } = await handshake(wc, dev(alice), bob);
    const d = dev(bob);
    const err = await pqxdhRespond(wc, testLocalIdentity(d), responderKeys(d), a.init, certifiedIk(dev(carol))).catch(
      (e) => e,
    );
    expect(is(err, 'untrusted_identity')).toBe(true);
  });

  it('responder refuses prekey ids that do not match the supplied keys', async () => {
    const { a } = await handshake(wc, dev(alice), bob);
    const d = dev(bob);
    const cases: [Partial<PqxdhInitMessage>, Partial<PqxdhResponderKeys>][] = [
      [{ signedPrekeyId: 2 }, {}],
      [{ kemPrekeyId: 201 }, {}],
      [{ oneTimePrekeyId: 101 }, {}],
      [{ oneTimePrekeyId: null }, {}],
      [{}, { oneTimePrekey: null, oneTimePrekeyId: null }],
    ];
    for (const [initPatch, keyPatch] of cases) {
      const err = await pqxdhRespond(
        wc,
        testLocalIdentity(d),
        { ...responderKeys(d), ...keyPatch },
        { ...a.init, ...initPatch },
        certifiedIk(dev(alice)),
      ).catch((e) => e);
      expect(is(err, 'invalid_structure'), JSON.stringify(initPatch)).toBe(true);
    }
  });

  it('a low-order ephemeral key is rejected (zero shared secret or invalid key)', async () => {
    const { a } = await handshake(wc, dev(alice), bob);
    const d = dev(bob);
    const zero = new Uint8Array(32);
    for (const curves of [nobleCurves, wc]) {
      const err = await pqxdhRespond(
        curves,
        testLocalIdentity(d),
        responderKeys(d),
        { ...a.init, ephemeralKey: zero },
        certifiedIk(dev(alice)),
      ).catch((e) => e);
      expect(is(err, 'zero_shared_secret') || is(err, 'invalid_key')).toBe(true);
    }
  });

  it('a tampered KEM ciphertext yields a different SK (implicit rejection)', async () => {
    const { a } = await handshake(wc, dev(alice), bob);
    const d = dev(bob);
    const ct = a.init.kemCiphertext.slice();
    ct[0]! ^= 1;
    const r = await pqxdhRespond(
      wc,
      testLocalIdentity(d),
      responderKeys(d),
      { ...a.init, kemCiphertext: ct },
      certifiedIk(dev(alice)),
    );
    expect(toHex(r.sharedSecret)).not.toBe(toHex(a.sharedSecret));
  });

  it('init message decoding is strict: truncation, trailing byte, wrong version, non-canonical key', async () => {
    const { a } = await handshake(wc, dev(alice), bob);
    const enc = encodePqxdhInit(a.init);
    const bad = [enc.slice(0, -1), new Uint8Array([...enc, 0]), new Uint8Array([2, ...enc.slice(1)])];
    for (const b of bad) expect(() => decodePqxdhInit(b)).toThrow();
    const nonCanonical = enc.slice();
    // ephemeral key starts after version, two length-prefixed ids and IK_A
    const ekOff = 1 + 4 + 5 + 4 + 2 + 32;
    nonCanonical.set(new Uint8Array(32).fill(0xff), ekOff);
    nonCanonical[ekOff + 31] = 0x7f;
    expect(() => decodePqxdhInit(nonCanonical)).toThrow(/non-canonical/);
  });

  it('prekey bundle with bad signed-prekey signature is rejected before any DH (pitfall 1)', async () => {
    const good = testBundle(dev(bob));
    const sig = good.signedPrekey.signature.slice();
    sig[5]! ^= 0x10;
    const kemSig = good.kemPrekey.signature.slice();
    kemSig[7]! ^= 0x01;
    const bad: PrekeyBundle[] = [
      { ...good, signedPrekey: { ...good.signedPrekey, signature: sig } },
      { ...good, signedPrekey: { ...good.signedPrekey, id: 2 } },
      { ...good, kemPrekey: { ...good.kemPrekey, signature: kemSig } },
      { ...good, kemPrekey: { ...good.kemPrekey, lastResort: true } },
      { ...good, deviceCertificate: dev(carol).certificate },
    ];
    for (const curves of [nobleCurves, wc]) {
      const spy = vi.spyOn(curves, 'x25519');
      for (const b of bad) {
        const err = await verifyBundle(curves, b, bob.identity.publicKey)
          .then((vb) => pqxdhInitiate(curves, seededRng('e'), testLocalIdentity(dev(alice)), vb))
          .catch((e) => e);
        expect(is(err, 'signature')).toBe(true);
      }
      expect(spy).not.toHaveBeenCalled();
      spy.mockRestore();
    }
  });

  it('bundle round-trips through its encoding and still verifies', async () => {
    const b = decodeBundle(encodeBundle(testBundle(dev(bob))));
    const vb = await verifyBundle(wc, b, bob.identity.publicKey);
    expect(vb.device.deviceId).toBe('b1');
    expect(vb.oneTimePrekey?.id).toBe(100);
  });
});
