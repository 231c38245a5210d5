import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { concat, toHex, u32be, utf8 } from './bytes.js';
import { MAX_PLAINTEXT_LEN, MAX_SENDER_KEY_STATES, MAX_SENDER_SKIP, SIG_SENDER_MESSAGE } from './constants.js';
import { is } from './errors.js';
import { signatureInput } from './identity.js';
import { MAX_PADDED_LEN, pad } from './padding.js';
import { aesGcmEncrypt, type Curve25519, nobleCurves } from './primitives.js';
import {
  createSenderKey,
  decodeSenderKeyDistribution,
  deserializeOwnSenderKey,
  deserializeSenderKeyRecord,
  emptySenderKeyRecord,
  encodeSenderKeyDistribution,
  type OwnSenderKey,
  processSenderKeyDistribution,
  type SenderKeyRecord,
  senderDecrypt,
  senderEncrypt,
  senderKeyDistribution,
  serializeOwnSenderKey,
  serializeSenderKeyRecord,
} from './sender-keys.js';
import { seededRng, webCryptoTestCurves } from './testing.js';

const CONV = 'conv-1';
let wc: Curve25519;
beforeAll(async () => {
  const w = await webCryptoTestCurves();
  if (!w) throw new Error('WebCrypto curves required in Node 20');
  wc = w;
});

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const snap = (r: SenderKeyRecord) => toHex(serializeSenderKeyRecord(r));
/** What a member does with a distribution message received over the pairwise session. */
const receive = (r: SenderKeyRecord, own: OwnSenderKey) =>
  processSenderKeyDistribution(
    r,
    decodeSenderKeyDistribution(encodeSenderKeyDistribution(senderKeyDistribution(own, CONV))),
    CONV,
  );

async function sendN(curves: Curve25519, own: OwnSenderKey, n: number, tag: string) {
  const out: Uint8Array[] = [];
  let o = own;
  for (let i = 0; i < n; i++) {
    const r = await senderEncrypt(curves, o, utf8(`${tag}${i}`));
    o = r.own;
    out.push(r.message);
  }
  return { own: o, messages: out };
}

async function expectCode(p: Promise<unknown>, code: string) {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(is(err), `expected ProtocolError ${code}, got ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
}

describe('sender keys', () => {
  for (const which of ['noble', 'webcrypto'] as const) {
    it(`members decrypt in order and out of order (${which})`, async () => {
      const curves = which === 'noble' ? nobleCurves : wc;
      const own = await createSenderKey(curves, seededRng(`sk-${which}`));
      let bob = receive(emptySenderKeyRecord(), own);
      const { messages } = await sendN(curves, own, 4, 'm');
      for (const i of [0, 3, 1, 2]) {
        const r = await senderDecrypt(curves, bob, messages[i]!);
        expect(text(r.plaintext)).toBe(`m${i}`);
        bob = r.record;
      }
    });
  }

  it('PITFALLS 18: a replayed (sender, chain, index) is rejected, also after a replayed distribution', async () => {
    const own = await createSenderKey(wc, seededRng('p18'));
    let bob = receive(emptySenderKeyRecord(), own);
    const { messages } = await sendN(wc, own, 3, 'm');
    bob = (await senderDecrypt(wc, bob, messages[2]!)).record; // skips 0 and 1
    bob = (await senderDecrypt(wc, bob, messages[0]!)).record;
    for (const i of [0, 2]) await expectCode(senderDecrypt(wc, bob, messages[i]!), 'duplicate');
    // the distribution (iteration 0) replayed: the chain is not rewound
    const again = receive(bob, own);
    expect(snap(again)).toBe(snap(bob));
    await expectCode(senderDecrypt(wc, again, messages[2]!), 'duplicate');
    expect(text((await senderDecrypt(wc, again, messages[1]!)).plaintext)).toBe('m1');
  });

  it('an unknown chain is no_session; too far ahead is refused without changing state', async () => {
    const own = await createSenderKey(wc, seededRng('far'));
    const other = await createSenderKey(wc, seededRng('other'));
    const bob = receive(emptySenderKeyRecord(), own);
    await expectCode(senderDecrypt(wc, bob, (await senderEncrypt(wc, other, utf8('x'))).message), 'no_session');
    const far = { ...own, chain: own.chain };
    let o = far;
    for (let i = 0; i <= MAX_SENDER_SKIP; i++) o = { ...o, chain: o.chain.next() };
    const before = snap(bob);
    await expectCode(senderDecrypt(wc, bob, (await senderEncrypt(wc, o, utf8('x'))).message), 'decryption_failed');
    expect(snap(bob)).toBe(before);
  });

  it('a validly signed sender-key message carrying 65,537 plaintext bytes is refused and changes nothing', async () => {
    const own = await createSenderKey(wc, seededRng('sender limit'));
    const bob = receive(emptySenderKeyRecord(), own);
    const sealed = async (padded: Uint8Array) => {
      const mk = own.chain.messageKeys();
      const prefix = concat(Uint8Array.of(1), u32be(own.chainId), u32be(own.chain.index));
      const body = concat(prefix, aesGcmEncrypt(mk.cipherKey, mk.nonce, padded, prefix));
      return concat(body, await wc.ed25519Sign(own.signingKey, signatureInput(SIG_SENDER_MESSAGE, body)));
    };
    const over = new Uint8Array(MAX_PADDED_LEN);
    over[MAX_PLAINTEXT_LEN + 1] = 0x80;
    const before = snap(bob);
    await expectCode(senderDecrypt(wc, bob, await sealed(over)), 'decryption_failed');
    expect(snap(bob)).toBe(before);
    const max = await sealed(pad(new Uint8Array(MAX_PLAINTEXT_LEN)));
    expect((await senderDecrypt(wc, bob, max)).plaintext.length).toBe(MAX_PLAINTEXT_LEN);
    // One byte longer than the largest message there can be: refused before the signature is checked.
    let verifies = 0;
    const counting: Curve25519 = {
      ...wc,
      ed25519Verify: (...a) => {
        verifies++;
        return wc.ed25519Verify(...a);
      },
    };
    await expectCode(senderDecrypt(counting, bob, concat(max, Uint8Array.of(0))), 'decryption_failed');
    expect(verifies).toBe(0);
  });

  it('a message signed by another key fails before any key derivation and changes nothing', async () => {
    const own = await createSenderKey(wc, seededRng('forge'));
    const mallory = await createSenderKey(wc, seededRng('mallory'));
    const bob = receive(emptySenderKeyRecord(), own);
    // same chain id and chain key, but Mallory's signing key: the receiver must refuse
    const forged = { ...own, signingKey: mallory.signingKey };
    const before = snap(bob);
    await expectCode(senderDecrypt(wc, bob, (await senderEncrypt(wc, forged, utf8('x'))).message), 'decryption_failed');
    expect(snap(bob)).toBe(before);
  });

  for (const which of ['noble', 'webcrypto'] as const) {
    it(`a bad signature returns nothing and consumes nothing, whether the keys were opened on the side or not (${which})`, async () => {
      const curves = which === 'noble' ? nobleCurves : wc;
      const own = await createSenderKey(curves, seededRng('overlap'));
      const mallory = await createSenderKey(curves, seededRng('overlap mallory'));
      const forged = { ...own, signingKey: mallory.signingKey };
      let bob = receive(emptySenderKeyRecord(), own);
      const sent = await sendN(curves, own, 3, 'm');
      const forgedNext = (await senderEncrypt(curves, forged, utf8('evil'))).message; // iteration 0: opened on the side
      const forgedAhead = (await senderEncrypt(curves, { ...forged, chain: sent.own.chain }, utf8('evil'))).message;
      for (const bad of [forgedNext, forgedAhead]) {
        const before = snap(bob);
        await expectCode(senderDecrypt(curves, bob, bad), 'decryption_failed');
        expect(snap(bob)).toBe(before);
      }
      // the genuine messages still decrypt: nothing was consumed
      bob = (await senderDecrypt(curves, bob, sent.messages[0]!)).record;
      // a forged copy of a used iteration is a signature failure, not `duplicate` (signature checked first)
      await expectCode(senderDecrypt(curves, bob, forgedNext), 'decryption_failed');
      await expectCode(senderDecrypt(curves, bob, sent.messages[0]!), 'duplicate');
      const r2 = await senderDecrypt(curves, bob, sent.messages[2]!);
      // a forged message for the skipped iteration 1 (a stored seed) changes nothing either
      const forged1 = (await senderEncrypt(curves, { ...forged, chain: own.chain.next() }, utf8('evil'))).message;
      const before = snap(r2.record);
      await expectCode(senderDecrypt(curves, r2.record, forged1), 'decryption_failed');
      expect(snap(r2.record)).toBe(before);
      expect(text((await senderDecrypt(curves, r2.record, sent.messages[1]!)).plaintext)).toBe('m1');
    });
  }

  it('(b) any single bit flip of a SenderKeyMessage fails and leaves the record unchanged', async () => {
    const own = await createSenderKey(wc, seededRng('flip'));
    const bob = receive(emptySenderKeyRecord(), own);
    const m = (await senderEncrypt(wc, own, utf8('flip me'))).message;
    const before = snap(bob);
    await fc.assert(
      fc.asyncProperty(fc.nat(m.length * 8 - 1), async (bit) => {
        const bad = m.slice();
        bad[bit >> 3]! ^= 1 << (bit & 7);
        await expect(senderDecrypt(wc, bob, bad)).rejects.toThrow();
        expect(snap(bob)).toBe(before);
      }),
      { numRuns: 150 },
    );
  });

  it('PITFALLS 19: after a removal the remaining members rotate; the removed member decrypts nothing new', async () => {
    const rng = seededRng('p19');
    const names = ['alice', 'bob', 'carol', 'dave'] as const;
    const own: Record<string, OwnSenderKey> = {};
    for (const n of names) own[n] = await createSenderKey(wc, rng);
    // records[receiver][sender]
    const records: Record<string, Record<string, SenderKeyRecord>> = {};
    for (const r of names) {
      records[r] = {};
      for (const s of names) if (s !== r) records[r]![s] = receive(emptySenderKeyRecord(), own[s]!);
    }
    const before = await senderEncrypt(wc, own.alice!, utf8('before'));
    own.alice = before.own;
    expect(text((await senderDecrypt(wc, records.carol!.alice!, before.message)).plaintext)).toBe('before');
    // carol is removed: every remaining member rotates and distributes only to the remaining members
    const remaining = ['alice', 'bob', 'dave'] as const;
    for (const s of remaining) {
      own[s] = await createSenderKey(wc, rng);
      for (const r of remaining) if (r !== s) records[r]![s] = receive(records[r]![s]!, own[s]!);
    }
    for (const s of remaining) {
      const sent = await senderEncrypt(wc, own[s]!, utf8(`after from ${s}`));
      own[s] = sent.own;
      for (const r of remaining)
        if (r !== s)
          expect(text((await senderDecrypt(wc, records[r]![s]!, sent.message)).plaintext)).toBe(`after from ${s}`);
      // carol tries every sender record she holds
      for (const held of Object.values(records.carol!))
        await expect(senderDecrypt(wc, held, sent.message)).rejects.toThrow();
    }
    // late messages from the old chain still decrypt for the remaining members
    expect(records.bob!.alice!.states).toHaveLength(2);
    expect(text((await senderDecrypt(wc, records.bob!.alice!, before.message)).plaintext)).toBe('before');
  });

  it('receivers keep at most MAX_SENDER_KEY_STATES chains per sender', async () => {
    const rng = seededRng('cap');
    let rec = emptySenderKeyRecord();
    for (let i = 0; i < MAX_SENDER_KEY_STATES + 2; i++) rec = receive(rec, await createSenderKey(wc, rng));
    expect(rec.states).toHaveLength(MAX_SENDER_KEY_STATES);
  });

  it('a distribution for another conversation is refused', async () => {
    const own = await createSenderKey(wc, seededRng('conv'));
    expect(() =>
      processSenderKeyDistribution(emptySenderKeyRecord(), senderKeyDistribution(own, 'other'), CONV),
    ).toThrow();
  });

  it('serialize → restore → continue equals not serializing (own key and receiver record)', async () => {
    const own = await createSenderKey(wc, seededRng('ser'));
    const { own: o2, messages } = await sendN(wc, own, 3, 'm');
    let bob = (await senderDecrypt(wc, receive(emptySenderKeyRecord(), own), messages[2]!)).record;
    const restored = deserializeSenderKeyRecord(serializeSenderKeyRecord(bob));
    expect(snap(restored)).toBe(snap(bob));
    const a = await senderDecrypt(wc, restored, messages[0]!);
    const b = await senderDecrypt(wc, bob, messages[0]!);
    expect(snap(a.record)).toBe(snap(b.record));
    bob = b.record;
    const o3 = deserializeOwnSenderKey(serializeOwnSenderKey(o2));
    const m1 = await senderEncrypt(wc, o3, utf8('next'));
    const m2 = await senderEncrypt(wc, o2, utf8('next'));
    expect(toHex(m1.message)).toBe(toHex(m2.message));
    expect(text((await senderDecrypt(wc, bob, m1.message)).plaintext)).toBe('next');
    expect(() => deserializeSenderKeyRecord(Uint8Array.of(...serializeSenderKeyRecord(bob), 0))).toThrow();
  });
});
