import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { equal, toHex, utf8 } from './bytes.js';
import { ARCHIVED_SESSION_MAX_AGE_MS, MAX_PLAINTEXT_LEN, SESSION_UNACKED_MAX_AGE_MS } from './constants.js';
import { is } from './errors.js';
import { decodeHeader } from './header.js';
import { MAX_PADDED_LEN } from './padding.js';
import { kemPrekeyPublic, verifyBundle } from './prekeys.js';
import { type Curve25519, nobleCurves, type Rng, webCryptoCurves } from './primitives.js';
import { ratchetEncrypt } from './ratchet.js';
import {
  assertNotStale,
  type DecryptContext,
  type DecryptResult,
  decodeMessage,
  decrypt,
  deserializeSessionRecord,
  emptySessionRecord,
  encodeMessage,
  encrypt,
  initiateSession,
  MessageType,
  type SessionRecord,
  serializeSessionRecord,
} from './session.js';
import {
  makeTestUser,
  seededRng,
  type TestDevice,
  type TestUser,
  testBundle,
  testLocalIdentity,
  webCryptoTestCurves,
} from './testing.js';

const T0 = 1_700_000_000_000;
const DAY = 24 * 3600 * 1000;
let wc: Curve25519;
let alice: TestUser;
let bob: TestUser;
let carol: TestUser;

beforeAll(async () => {
  const w = await webCryptoTestCurves();
  if (!w) throw new Error('WebCrypto curves required in Node 20');
  wc = w;
  const rng = seededRng('session.test');
  alice = await makeTestUser(wc, rng, 'alice', ['a1']);
  bob = await makeTestUser(wc, rng, 'bob', ['b1', 'b2']);
  carol = await makeTestUser(wc, rng, 'carol', ['c1']);
});

const dev = (u: TestUser, i = 0): TestDevice => u.devices[i]!;
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const snap = (r: SessionRecord) => toHex(serializeSessionRecord(r));

/** Decrypt context of `me` receiving from `remote`; one-time prekeys in `used` are gone (deleted). */
function ctxFor(me: TestDevice, remote: TestDevice, used: Set<number> = new Set()): DecryptContext {
  return {
    ours: testLocalIdentity(me),
    remote: { userId: remote.userId, deviceId: remote.deviceId },
    responderKeys: (ids) => {
      const kem = [me.kemPrekey, me.lastResortKemPrekey].find((k) => k.id === ids.kemPrekeyId);
      if (ids.signedPrekeyId !== me.signedPrekey.id || !kem) return null;
      const otp = me.oneTimePrekeys.find((o) => o.id === ids.oneTimePrekeyId && !used.has(o.id));
      if (ids.oneTimePrekeyId !== null && !otp) return null;
      return { signedPrekey: me.signedPrekey.keyPair, oneTimePrekey: otp?.keyPair ?? null, kemPrekey: kem.keyPair };
    },
    isTrustedIdentity: (k) => equal(k, remote.identity.publicKey),
  };
}

async function start(curves: Curve25519, rng: Rng, from: TestDevice, to: TestUser, toIdx = 0, withOtp = true) {
  const bundle = await verifyBundle(curves, testBundle(dev(to, toIdx), withOtp), to.identity.publicKey);
  return initiateSession(curves, rng, testLocalIdentity(from), bundle, T0);
}

function expectThrowCode(f: () => unknown, code: string) {
  let err: unknown = null;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(is(err) && err.code).toBe(code);
}

async function expectCode(p: Promise<unknown>, code: string) {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(is(err), `expected ProtocolError ${code}, got ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
}

/** Alice → Bob established, Bob replied, Alice acknowledged. */
async function established(curves: Curve25519, seed: string) {
  const rng = seededRng(seed);
  const a0 = await start(curves, rng, dev(alice), bob);
  const m1 = encrypt(a0, utf8('hello bob'), T0);
  const b = await decrypt(curves, rng, emptySessionRecord(), m1.message, ctxFor(dev(bob), dev(alice)), T0);
  const reply = encrypt(b.record, utf8('hello alice'), T0);
  const a = await decrypt(curves, rng, m1.record, reply.message, ctxFor(dev(alice), dev(bob)), T0);
  return { rng, alice: a.record, bob: reply.record };
}

describe('sessions', () => {
  for (const which of ['noble', 'webcrypto'] as const) {
    it(`prekey messages until the first reply, then normal messages (${which})`, async () => {
      const curves = which === 'noble' ? nobleCurves : wc;
      const rng = seededRng(`basic-${which}`);
      let a = await start(curves, rng, dev(alice), bob);
      const m1 = encrypt(a, utf8('one'), T0);
      const m2 = encrypt(m1.record, utf8('two'), T0);
      a = m2.record;
      expect([m1.type, m2.type]).toEqual([MessageType.PreKey, MessageType.PreKey]);
      const ctxB = ctxFor(dev(bob), dev(alice));
      const r1 = await decrypt(curves, rng, emptySessionRecord(), m1.message, ctxB, T0);
      const used = (r: DecryptResult) => [r.consumedOneTimePrekeyId, r.consumedKemPrekeyId, r.newSession];
      expect([text(r1.plaintext), ...used(r1)]).toEqual(['one', 100, 200, true]);
      const r2 = await decrypt(curves, rng, r1.record, m2.message, ctxB, T0);
      expect([text(r2.plaintext), ...used(r2)]).toEqual(['two', null, null, false]);
      const reply = encrypt(r2.record, utf8('three'), T0);
      expect(reply.type).toBe(MessageType.Message);
      const r3 = await decrypt(curves, rng, a, reply.message, ctxFor(dev(alice), dev(bob)), T0);
      expect(text(r3.plaintext)).toBe('three');
      expect(encrypt(r3.record, utf8('four'), T0).type).toBe(MessageType.Message);
    });
  }

  for (const which of ['noble', 'webcrypto'] as const) {
    it(`initiateSession draws randomness in the order EK_A, ML-KEM message, first ratchet key (${which})`, async () => {
      const curves = which === 'noble' ? nobleCurves : wc;
      const ref = seededRng('session rng order');
      const ek = ref(32);
      ref(32); // the ML-KEM encapsulation message
      const ratchetSecret = ref(32);
      const record = await start(curves, seededRng('session rng order'), dev(alice), bob);
      expect(toHex(record.current!.baseKey)).toBe(toHex(await nobleCurves.x25519PublicKey(ek)));
      const rk = record.current!.ratchet.sendingRatchetKey;
      expect(toHex(rk.secretKey)).toBe(toHex(ratchetSecret));
      expect(toHex(rk.publicKey)).toBe(toHex(await nobleCurves.x25519PublicKey(ratchetSecret)));
    });
  }

  for (const which of ['noble', 'webcrypto'] as const) {
    it(`the responder's first ratchet step runs while ML-KEM decapsulates, and draws only its fresh key (${which})`, async () => {
      const base = which === 'noble' ? nobleCurves : wc;
      const m = encrypt(await start(base, seededRng(`overlap-${which}`), dev(alice), bob), utf8('hi'), T0);
      // Decapsulation is held until released; count the X25519 work issued meanwhile.
      let release!: () => void;
      const held = new Promise<void>((r) => {
        release = r;
      });
      let dhs = 0;
      let pubs = 0;
      const curves: Curve25519 = {
        ...base,
        mlkem: {
          ...base.mlkem,
          decapsulate: async (ct, key) => {
            await held;
            return base.mlkem.decapsulate(ct, key);
          },
        },
        x25519: (o, p) => {
          dhs++;
          return base.x25519(o, p);
        },
        x25519PublicKey: (sk) => {
          pubs++;
          return base.x25519PublicKey(sk);
        },
      };
      const draws: number[] = [];
      const inner = seededRng(`overlap-rng-${which}`);
      const rng: Rng = (n) => {
        draws.push(n);
        return inner(n);
      };
      const done = decrypt(curves, rng, emptySessionRecord(), m.message, ctxFor(dev(bob), dev(alice)), T0);
      await new Promise((r) => setTimeout(r, 20));
      // PQXDH's four DHs and the ratchet step's two DHs and fresh public key, all before decapsulation ends.
      expect([dhs, pubs]).toEqual([6, 1]);
      release();
      const r = await done;
      expect(text(r.plaintext)).toBe('hi');
      expect(draws).toEqual([32]);
      // The same state as the sequential order gives: the fresh ratchet key is the rng's first 32 bytes.
      const fresh = seededRng(`overlap-rng-${which}`)(32);
      expect(toHex(r.record.current!.ratchet.sendingRatchetKey.secretKey)).toBe(toHex(fresh));
      const again = await decrypt(
        base,
        seededRng(`overlap-rng-${which}`),
        emptySessionRecord(),
        m.message,
        ctxFor(dev(bob), dev(alice)),
        T0,
      );
      expect(snap(again.record)).toBe(snap(r.record));
    });
  }

  it('a restored session imports its stored ratchet secret as JWK (public half known) and only the fresh one as PKCS#8', async () => {
    const imports: string[] = [];
    const subtle = new Proxy(crypto.subtle, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target) as unknown;
        if (prop === 'importKey')
          return (format: string, ...rest: unknown[]) => {
            imports.push(format);
            return (target.importKey as (...a: unknown[]) => Promise<CryptoKey>).call(target, format, ...rest);
          };
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const spied = (await webCryptoCurves(subtle))!;
    const rng = seededRng('restore-jwk');
    const a = await start(wc, rng, dev(alice), bob);
    const m1 = encrypt(a, utf8('one'), T0);
    const r1 = await decrypt(wc, rng, emptySessionRecord(), m1.message, ctxFor(dev(bob), dev(alice)), T0);
    const reply = encrypt(r1.record, utf8('two'), T0);
    const restored = deserializeSessionRecord(serializeSessionRecord(m1.record));
    imports.length = 0;
    const r2 = await decrypt(spied, rng, restored, reply.message, ctxFor(dev(alice), dev(bob)), T0);
    expect(text(r2.plaintext)).toBe('two');
    expect(imports.filter((f) => f === 'jwk')).toHaveLength(1); // the restored ratchet secret
    expect(imports.filter((f) => f === 'pkcs8')).toHaveLength(1); // the fresh one (public half unknown)
  });

  it('a message with no session for its sender is no_session', async () => {
    const { bob: b } = await established(wc, 'nosession');
    const m = encrypt(b, utf8('x'), T0);
    await expectCode(
      decrypt(wc, seededRng('x'), emptySessionRecord(), m.message, ctxFor(dev(alice), dev(bob)), T0),
      'no_session',
    );
    expectThrowCode(() => encrypt(emptySessionRecord(), utf8('x'), T0), 'no_session');
  });

  it('PITFALLS 6: a replayed prekey message is a duplicate; no re-derivation, no new session, no reused key', async () => {
    const rng = seededRng('p6');
    const a = await start(wc, rng, dev(alice), bob);
    const m1 = encrypt(a, utf8('hi'), T0);
    const used = new Set<number>();
    const ctxB = ctxFor(dev(bob), dev(alice), used);
    const r1 = await decrypt(wc, rng, emptySessionRecord(), m1.message, ctxB, T0);
    if (r1.consumedOneTimePrekeyId !== null) used.add(r1.consumedOneTimePrekeyId); // caller deletes it
    const before = snap(r1.record);
    await expectCode(decrypt(wc, rng, r1.record, m1.message, ctxB, T0), 'duplicate');
    expect(snap(r1.record)).toBe(before);
    // Bob's first reply: a fresh ratchet key, not his signed prekey
    const reply = encrypt(r1.record, utf8('re'), T0);
    const rk = decodeHeader(decodeMessage(reply.message).ratchet.header).ratchetKey;
    expect(toHex(rk)).not.toBe(toHex(dev(bob).signedPrekey.keyPair.publicKey));
    // Bob lost the session: the one-time prekey's private half is gone, so the replay cannot re-derive it
    await expectCode(decrypt(wc, rng, emptySessionRecord(), m1.message, ctxB, T0), 'decryption_failed');
  });

  it('PITFALLS 6: without a one-time prekey a replay to a lost session never reuses a sending key', async () => {
    const rng = seededRng('p6-lr');
    const a = await start(wc, rng, dev(alice), bob, 0, false);
    const m1 = encrypt(a, utf8('hi'), T0);
    const ctxB = ctxFor(dev(bob), dev(alice));
    const x = await decrypt(wc, rng, emptySessionRecord(), m1.message, ctxB, T0);
    const y = await decrypt(wc, rng, emptySessionRecord(), m1.message, ctxB, T0);
    expect(x.consumedOneTimePrekeyId).toBeNull();
    const kx = decodeMessage(encrypt(x.record, utf8('same'), T0).message);
    const ky = decodeMessage(encrypt(y.record, utf8('same'), T0).message);
    expect(toHex(kx.ratchet.header)).not.toBe(toHex(ky.ratchet.header));
    expect(toHex(kx.ratchet.ciphertext)).not.toBe(toHex(ky.ratchet.ciphertext));
  });

  it('PITFALLS 7: a message presented to a third device, or with sender and receiver swapped, fails', async () => {
    const rng = seededRng('p7');
    const a = await start(wc, rng, dev(alice), bob);
    const m1 = encrypt(a, utf8('for bob'), T0);
    // Carol and Bob's other device have prekeys with the same ids: the derivation still differs
    for (const other of [dev(carol), dev(bob, 1)]) {
      await expectCode(
        decrypt(wc, rng, emptySessionRecord(), m1.message, ctxFor(other, dev(alice)), T0),
        'decryption_failed',
      );
    }
    // the transport claims another sender than the init names
    await expectCode(
      decrypt(wc, rng, emptySessionRecord(), m1.message, ctxFor(dev(bob), dev(carol)), T0),
      'decryption_failed',
    );
    // swapped: Alice's own message reflected back to her, and Bob's reply reflected back to Bob
    const est = await established(wc, 'p7-est');
    const fromAlice = encrypt(est.alice, utf8('x'), T0);
    await expectCode(
      decrypt(wc, rng, est.alice, fromAlice.message, ctxFor(dev(alice), dev(bob)), T0),
      'decryption_failed',
    );
    const fromBob = encrypt(est.bob, utf8('y'), T0);
    await expectCode(decrypt(wc, rng, est.bob, fromBob.message, ctxFor(dev(bob), dev(alice)), T0), 'decryption_failed');
  });

  it('a new session on a last-resort ML-KEM key without a one-time prekey reports that KEM id and no one-time id', async () => {
    const rng = seededRng('last resort');
    const b = dev(bob);
    const bundle = await verifyBundle(
      wc,
      { ...testBundle(b, false), kemPrekey: kemPrekeyPublic(b.lastResortKemPrekey) },
      bob.identity.publicKey,
    );
    const a = await initiateSession(wc, rng, testLocalIdentity(dev(alice)), bundle, T0);
    const r = await decrypt(
      wc,
      rng,
      emptySessionRecord(),
      encrypt(a, utf8('x'), T0).message,
      ctxFor(b, dev(alice)),
      T0,
    );
    expect([r.consumedOneTimePrekeyId, r.consumedKemPrekeyId]).toEqual([null, b.lastResortKemPrekey.id]);
    expect(b.lastResortKemPrekey.lastResort).toBe(true); // the caller keeps it: it is its last-resort key
  });

  it('a PreKeyMessage naming another device than the authenticated sender is refused before trust or prekey lookup', async () => {
    const rng = seededRng('sender mismatch');
    const m1 = encrypt(await start(wc, rng, dev(alice), bob), utf8('x'), T0);
    const calls: string[] = [];
    const base = ctxFor(dev(bob), dev(carol));
    const ctx: DecryptContext = {
      ...base,
      responderKeys: (ids) => {
        calls.push('responderKeys');
        return base.responderKeys(ids);
      },
      isTrustedIdentity: (k) => {
        calls.push('isTrustedIdentity');
        return base.isTrustedIdentity(k);
      },
    };
    const { bob: rec } = await established(wc, 'sender mismatch est');
    const before = snap(rec);
    await expectCode(decrypt(wc, rng, rec, m1.message, ctx, T0), 'decryption_failed');
    expect([calls, snap(rec)]).toEqual([[], before]);
  });

  it('a 65,537-byte plaintext from a peer is refused and the record is unchanged; 65,536 bytes decrypt', async () => {
    const est = await established(wc, 'plaintext limit');
    const over = new Uint8Array(MAX_PADDED_LEN);
    over[MAX_PLAINTEXT_LEN + 1] = 0x80; // 65,537 bytes of zeros, then valid padding: only the length is wrong
    const forged = ratchetEncrypt(est.alice.current!.ratchet, over).message;
    const message = encodeMessage({ type: MessageType.Message, init: null, ratchet: forged });
    const ctx = ctxFor(dev(bob), dev(alice));
    const before = snap(est.bob);
    await expectCode(decrypt(wc, est.rng, est.bob, message, ctx, T0), 'decryption_failed');
    expect(snap(est.bob)).toBe(before);
    const max = encrypt(est.alice, new Uint8Array(MAX_PLAINTEXT_LEN).fill(7), T0);
    const r = await decrypt(wc, est.rng, est.bob, max.message, ctx, T0);
    expect(r.plaintext.length).toBe(MAX_PLAINTEXT_LEN);
  });

  it('an untrusted initiator identity is refused before any prekey is used', async () => {
    const rng = seededRng('untrusted');
    const m1 = encrypt(await start(wc, rng, dev(alice), bob), utf8('x'), T0);
    const ctx = { ...ctxFor(dev(bob), dev(alice)), isTrustedIdentity: () => false };
    await expectCode(decrypt(wc, rng, emptySessionRecord(), m1.message, ctx, T0), 'untrusted_identity');
  });

  it('PITFALLS 11: failed prekey and normal decryptions leave the record byte-for-byte unchanged', async () => {
    const rng = seededRng('p11');
    const a = await start(wc, rng, dev(alice), bob);
    const m1 = encrypt(a, utf8('x'), T0);
    const tampered = m1.message.map((x, i) => (i === m1.message.length - 3 ? x ^ 0x10 : x));
    const est = await established(wc, 'p11-est');
    for (const rec of [emptySessionRecord(), est.bob]) {
      const before = snap(rec);
      await expectCode(decrypt(wc, rng, rec, tampered, ctxFor(dev(bob), dev(alice)), T0), 'decryption_failed');
      expect(snap(rec)).toBe(before);
    }
    const n = encrypt(est.alice, utf8('y'), T0).message;
    const before = snap(est.bob);
    await expectCode(
      decrypt(
        wc,
        rng,
        est.bob,
        n.map((x, i) => (i === 10 ? x ^ 1 : x)),
        ctxFor(dev(bob), dev(alice)),
        T0,
      ),
      'decryption_failed',
    );
    expect(snap(est.bob)).toBe(before);
  });

  it('PITFALLS 12: restoring an older serialized record and sending again is stale_state', async () => {
    const { alice: a0 } = await established(wc, 'p12');
    const persisted = serializeSessionRecord(a0);
    let highWater = a0.sendGeneration;
    assertNotStale(a0, highWater);
    const s1 = encrypt(a0, utf8('first'), T0);
    highWater = s1.record.sendGeneration; // engine: persist, raise the mark, then send
    assertNotStale(s1.record, highWater);
    const restored = deserializeSessionRecord(persisted);
    expectThrowCode(() => assertNotStale(restored, highWater), 'stale_state');
    // the promoted/archived dance never lowers the generation
    expect(s1.record.sendGeneration).toBe(a0.sendGeneration + 1);
  });

  it('PITFALLS 13: an unacknowledged session refuses to send after SESSION_UNACKED_MAX_AGE_MS', async () => {
    const rng = seededRng('p13');
    const a = await start(wc, rng, dev(alice), bob);
    expect(encrypt(a, utf8('ok'), T0 + SESSION_UNACKED_MAX_AGE_MS).type).toBe(MessageType.PreKey);
    expectThrowCode(() => encrypt(a, utf8('late'), T0 + SESSION_UNACKED_MAX_AGE_MS + 1), 'session_expired');
    const { alice: acked } = await established(wc, 'p13-acked');
    expect(encrypt(acked, utf8('fine'), T0 + 365 * DAY).type).toBe(MessageType.Message);
  });

  it('PITFALLS 14: flipping any single bit of a Message fails and leaves the record unchanged', async () => {
    const { rng, alice: a, bob: b } = await established(wc, 'p14');
    const m = encrypt(a, utf8('bit flips'), T0).message;
    const ctx = ctxFor(dev(bob), dev(alice));
    const before = snap(b);
    for (let bit = 0; bit < m.length * 8; bit++) {
      const bad = m.slice();
      bad[bit >> 3]! ^= 1 << (bit & 7);
      const err = await decrypt(wc, rng, b, bad, ctx, T0).then(
        () => null,
        (e: unknown) => e,
      );
      expect(is(err), `bit ${bit}`).toBe(true);
    }
    expect(snap(b)).toBe(before);
    expect(text((await decrypt(wc, rng, b, m, ctx, T0)).plaintext)).toBe('bit flips');
  });

  it('(b) PITFALLS 14: any single bit flip of a PreKeyMessage fails and consumes nothing', async () => {
    const rng = seededRng('p14-prekey');
    const m = encrypt(await start(wc, rng, dev(alice), bob), utf8('x'), T0).message;
    const ctx = ctxFor(dev(bob), dev(alice));
    const empty = emptySessionRecord();
    await fc.assert(
      fc.asyncProperty(fc.nat(m.length * 8 - 1), async (bit) => {
        const bad = m.slice();
        bad[bit >> 3]! ^= 1 << (bit & 7);
        await expect(decrypt(wc, rng, empty, bad, ctx, T0)).rejects.toThrow();
      }),
      { numRuns: 120 },
    );
    expect(snap(empty)).toBe(snap(emptySessionRecord()));
  });

  it('simultaneous initiation: both sides converge on one session and messages keep flowing', async () => {
    const rng = seededRng('simul');
    const ctxA = ctxFor(dev(alice), dev(bob));
    const ctxB = ctxFor(dev(bob), dev(alice));
    const pa = encrypt(await start(wc, rng, dev(alice), bob), utf8('from alice'), T0);
    const pb = encrypt(await start(wc, rng, dev(bob), alice), utf8('from bob'), T0);
    // both prekey messages cross in flight
    const ra = await decrypt(wc, rng, pa.record, pb.message, ctxA, T0);
    const rb = await decrypt(wc, rng, pb.record, pa.message, ctxB, T0);
    expect([text(ra.plaintext), text(rb.plaintext)]).toEqual(['from bob', 'from alice']);
    let a = ra.record;
    let b = rb.record;
    expect(a.archived).toHaveLength(1);
    // they may even cross again: both still decrypt
    const xa = encrypt(a, utf8('a1'), T0);
    const xb = encrypt(b, utf8('b1'), T0);
    const ya = await decrypt(wc, rng, xa.record, xb.message, ctxA, T0);
    const yb = await decrypt(wc, rng, xb.record, xa.message, ctxB, T0);
    expect([text(ya.plaintext), text(yb.plaintext)]).toEqual(['b1', 'a1']);
    a = ya.record;
    b = yb.record;
    // the first non-crossing exchange converges both on the same session
    for (let i = 0; i < 3; i++) {
      const s = encrypt(a, utf8(`ping${i}`), T0);
      const r = await decrypt(wc, rng, b, s.message, ctxB, T0);
      expect(text(r.plaintext)).toBe(`ping${i}`);
      const t = encrypt(r.record, utf8(`pong${i}`), T0);
      const u = await decrypt(wc, rng, s.record, t.message, ctxA, T0);
      expect(text(u.plaintext)).toBe(`pong${i}`);
      a = u.record;
      b = t.record;
      expect(toHex(a.current!.baseKey)).toBe(toHex(b.current!.baseKey));
      expect(a.current!.pendingPreKey).toBeNull();
      expect(b.current!.pendingPreKey).toBeNull();
    }
  });

  it('archived sessions decrypt late messages (promote on decrypt) until ARCHIVED_SESSION_MAX_AGE_MS', async () => {
    const { rng, alice: a0, bob: b0 } = await established(wc, 'archive');
    const late = encrypt(b0, utf8('late'), T0);
    // Alice starts a new session with Bob's second prekey set; the first is archived
    const a1 = await start(wc, rng, dev(alice), bob, 0, false).then((s) => ({
      ...s,
      archived: [{ session: a0.current!, archivedAt: T0 }],
    }));
    const ctxA = ctxFor(dev(alice), dev(bob));
    const r = await decrypt(wc, rng, a1, late.message, ctxA, T0 + DAY);
    expect(text(r.plaintext)).toBe('late');
    expect(toHex(r.record.current!.baseKey)).toBe(toHex(a0.current!.baseKey));
    // past the archive age the old session is gone: the same late message no longer decrypts
    await expectCode(
      decrypt(wc, rng, a1, late.message, ctxA, T0 + ARCHIVED_SESSION_MAX_AGE_MS + 1),
      'decryption_failed',
    );
  });

  it('serialize → deserialize is lossless and strict', async () => {
    const { rng, alice: a, bob: b } = await established(wc, 'serial');
    const bytes = serializeSessionRecord(a);
    const back = deserializeSessionRecord(bytes);
    expect(toHex(serializeSessionRecord(back))).toBe(toHex(bytes));
    const m1 = encrypt(a, utf8('same'), T0);
    const m2 = encrypt(back, utf8('same'), T0);
    expect(toHex(m2.message)).toBe(toHex(m1.message));
    expect(text((await decrypt(wc, rng, b, m2.message, ctxFor(dev(bob), dev(alice)), T0)).plaintext)).toBe('same');
    expectThrowCode(() => deserializeSessionRecord(Uint8Array.of(...bytes, 0)), 'decode');
    expectThrowCode(() => deserializeSessionRecord(Uint8Array.of(99, ...bytes.subarray(1))), 'decode');
    expectThrowCode(() => deserializeSessionRecord(bytes.subarray(0, bytes.length - 1)), 'decode');
  });
});
