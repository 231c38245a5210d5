import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { toHex, utf8 } from './bytes.js';
import { MAX_RECEIVER_CHAINS, MAX_SKIP, MAX_SKIPPED_KEYS } from './constants.js';
import { is } from './errors.js';
import { decodeHeader } from './header.js';
import { generateX25519, theirX25519 } from './keys.js';
import { type Curve25519, nobleCurves, type Rng } from './primitives.js';
import {
  decodeRatchetState,
  encodeRatchetState,
  initAlice,
  initBob,
  type RatchetCiphertext,
  type RatchetState,
  ratchetDecrypt,
  ratchetEncrypt,
} from './ratchet.js';
import { SkippedKeys } from './skipped-keys.js';
import { seededRng, webCryptoTestCurves } from './testing.js';

let wc: Curve25519;
beforeAll(async () => {
  const w = await webCryptoTestCurves();
  if (!w) throw new Error('WebCrypto curves required in Node 20');
  wc = w;
});

async function pair(curves: Curve25519, seed: string) {
  const rng = seededRng(seed);
  const ss = rng(32);
  const ad = rng(24);
  const spk = await generateX25519(curves, rng);
  const alice = await initAlice(curves, rng, ss, ad, theirX25519(spk.publicKey));
  const bob = initBob(ss, ad, spk);
  return { rng, alice, bob, spk };
}

/** Counts curve calls so a test can prove that nothing was derived. */
function counting(curves: Curve25519) {
  const calls = { x25519: 0 };
  const c: Curve25519 = {
    ...curves,
    name: curves.name,
    x25519: (a, b) => {
      calls.x25519++;
      return curves.x25519(a, b);
    },
    x25519PublicKey: (a) => curves.x25519PublicKey(a),
    ed25519PublicKey: (a) => curves.ed25519PublicKey(a),
    ed25519Sign: (a, b) => curves.ed25519Sign(a, b),
    ed25519Verify: (a, b, s) => curves.ed25519Verify(a, b, s),
  };
  return { c, calls };
}

const snap = (s: RatchetState) => toHex(encodeRatchetState(s));

function sendN(s: RatchetState, n: number, tag: string) {
  const out: RatchetCiphertext[] = [];
  let st = s;
  for (let i = 0; i < n; i++) {
    const r = ratchetEncrypt(st, utf8(`${tag}${i}`));
    st = r.state;
    out.push(r.message);
  }
  return { state: st, messages: out };
}

/** `n` exchanges Bob → Alice → Bob, each opening a new chain on both sides (two DH steps). */
async function roundTrips(rng: Rng, alice: RatchetState, bob: RatchetState, n: number) {
  for (let i = 0; i < n; i++) {
    const b = ratchetEncrypt(bob, utf8('b'));
    bob = b.state;
    alice = (await ratchetDecrypt(wc, rng, alice, b.message)).state;
    const a = ratchetEncrypt(alice, utf8('a'));
    alice = a.state;
    bob = (await ratchetDecrypt(wc, rng, bob, a.message)).state;
  }
  return { alice, bob };
}

async function expectCode(p: Promise<unknown>, code: string) {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(is(err), `expected ProtocolError ${code}, got ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
}

describe('double ratchet', () => {
  for (const which of ['noble', 'webcrypto'] as const) {
    it(`messages flow both ways across several DH steps (${which})`, async () => {
      const curves = which === 'noble' ? nobleCurves : wc;
      let { rng, alice, bob } = await pair(curves, `flow-${which}`);
      for (let round = 0; round < 4; round++) {
        const a = sendN(alice, 2, `a${round}-`);
        alice = a.state;
        for (const [i, m] of a.messages.entries()) {
          const r = await ratchetDecrypt(curves, rng, bob, m);
          bob = r.state;
          expect(new TextDecoder().decode(r.plaintext)).toBe(`a${round}-${i}`);
        }
        const b = sendN(bob, 2, `b${round}-`);
        bob = b.state;
        for (const [i, m] of b.messages.entries()) {
          const r = await ratchetDecrypt(curves, rng, alice, m);
          alice = r.state;
          expect(new TextDecoder().decode(r.plaintext)).toBe(`b${round}-${i}`);
        }
      }
    });
  }

  it('noble and webcrypto produce byte-identical ciphertexts and states from the same seeds', async () => {
    const run = async (curves: Curve25519) => {
      let { rng, alice, bob } = await pair(curves, 'same');
      const m1 = ratchetEncrypt(alice, utf8('hi'));
      const r1 = await ratchetDecrypt(curves, rng, bob, m1.message);
      bob = r1.state;
      alice = m1.state;
      const m2 = ratchetEncrypt(bob, utf8('yo'));
      const r2 = await ratchetDecrypt(curves, rng, alice, m2.message);
      return [toHex(m1.message.ciphertext), toHex(m2.message.header), snap(r2.state), snap(m2.state)].join('|');
    };
    expect(await run(nobleCurves)).toBe(await run(wc));
  });

  it("PITFALLS 6: Bob's first reply uses a fresh ratchet key, never his signed prekey", async () => {
    const { rng, alice, bob, spk } = await pair(wc, 'p6');
    const m = ratchetEncrypt(alice, utf8('hello'));
    expect(() => ratchetEncrypt(bob, utf8('too early'))).toThrow(/no sending chain/);
    const r = await ratchetDecrypt(wc, rng, bob, m.message);
    const reply = ratchetEncrypt(r.state, utf8('reply'));
    const key = decodeHeader(reply.message.header).ratchetKey;
    expect(toHex(key)).not.toBe(toHex(spk.publicKey));
    expect(toHex(key)).not.toBe(toHex(decodeHeader(m.message.header).ratchetKey));
  });

  it('PITFALLS 8: a counter more than MAX_SKIP ahead on a new chain is refused before any DH', async () => {
    const { rng, alice, bob } = await pair(wc, 'p8');
    const msgs = sendN(alice, MAX_SKIP + 2, 'm').messages;
    const { c, calls } = counting(wc);
    const before = snap(bob);
    await expectCode(ratchetDecrypt(c, rng, bob, msgs[MAX_SKIP + 1]!), 'too_far_ahead');
    expect(calls.x25519).toBe(0);
    expect(snap(bob)).toBe(before);
    // exactly MAX_SKIP ahead is still accepted
    const ok = await ratchetDecrypt(c, rng, bob, msgs[MAX_SKIP]!);
    expect(new TextDecoder().decode(ok.plaintext)).toBe(`m${MAX_SKIP}`);
  });

  it('PITFALLS 8: within a known chain, N − Nr > MAX_SKIP is refused and the state is unchanged', async () => {
    const { rng, alice, bob } = await pair(wc, 'p8b');
    const msgs = sendN(alice, MAX_SKIP + 3, 'm').messages;
    const b1 = (await ratchetDecrypt(wc, rng, bob, msgs[0]!)).state;
    const before = snap(b1);
    await expectCode(ratchetDecrypt(wc, rng, b1, msgs[MAX_SKIP + 2]!), 'too_far_ahead');
    expect(snap(b1)).toBe(before);
    expect((await ratchetDecrypt(wc, rng, b1, msgs[MAX_SKIP + 1]!)).state.skipped.size).toBe(MAX_SKIP);
  });

  it('PITFALLS 9: the skipped-key store is capped and evicts the oldest keys first', async () => {
    const { rng, alice, bob } = await pair(wc, 'p9');
    // chain 1: skip MAX_SKIP keys (0..MAX_SKIP-1)
    const a1 = sendN(alice, MAX_SKIP + 1, 'x');
    let b = (await ratchetDecrypt(wc, rng, bob, a1.messages[MAX_SKIP]!)).state;
    expect(b.skipped.size).toBe(MAX_SKIP);
    // Bob replies → Alice steps → her new chain; skip 10 more there
    const reply = ratchetEncrypt(b, utf8('r'));
    b = reply.state;
    const a = (await ratchetDecrypt(wc, rng, a1.state, reply.message)).state;
    const a2 = sendN(a, 11, 'y');
    b = (await ratchetDecrypt(wc, rng, b, a2.messages[10]!)).state;
    expect(b.skipped.size).toBe(MAX_SKIPPED_KEYS);
    // the 10 oldest (x0..x9) were evicted; x10 and y0 remain
    await expectCode(ratchetDecrypt(wc, rng, b, a1.messages[0]!), 'duplicate');
    await expectCode(ratchetDecrypt(wc, rng, b, a1.messages[9]!), 'duplicate');
    expect(new TextDecoder().decode((await ratchetDecrypt(wc, rng, b, a1.messages[10]!)).plaintext)).toBe('x10');
    expect(new TextDecoder().decode((await ratchetDecrypt(wc, rng, b, a2.messages[0]!)).plaintext)).toBe('y0');
  });

  it('SkippedKeys: oldest-first eviction at the cap, take() removes and never mutates', () => {
    const id = new Uint8Array(32).fill(1);
    const seed = new Uint8Array(32);
    const s = SkippedKeys.empty(3).add([0, 1, 2, 3, 4].map((index) => ({ chainId: id, index, seed })));
    expect(s.list().map((k) => k.index)).toEqual([2, 3, 4]);
    const t = s.take(id, 3);
    expect(t?.rest.list().map((k) => k.index)).toEqual([2, 4]);
    expect(s.size).toBe(3);
    expect(t?.rest.take(id, 3)).toBeNull();
  });

  it('PITFALLS 10: a message delivered twice is a duplicate; a skipped key works once', async () => {
    const { rng, alice, bob } = await pair(wc, 'p10');
    const { messages } = sendN(alice, 3, 'm');
    let b = (await ratchetDecrypt(wc, rng, bob, messages[2]!)).state; // skips 0, 1
    await expectCode(ratchetDecrypt(wc, rng, b, messages[2]!), 'duplicate');
    b = (await ratchetDecrypt(wc, rng, b, messages[0]!)).state;
    await expectCode(ratchetDecrypt(wc, rng, b, messages[0]!), 'duplicate');
    b = (await ratchetDecrypt(wc, rng, b, messages[1]!)).state;
    expect(b.skipped.size).toBe(0);
  });

  for (const which of ['noble', 'webcrypto'] as const) {
    it(`PITFALLS 11: bad tag, bad header and wrong session leave the state byte-for-byte unchanged (${which})`, async () => {
      const curves = which === 'noble' ? nobleCurves : wc;
      const { rng, alice, bob } = await pair(curves, 'p11');
      const other = await pair(curves, 'p11-other');
      const { messages } = sendN(alice, 2, 'm');
      const b1 = (await ratchetDecrypt(curves, rng, bob, messages[0]!)).state;
      const m = messages[1]!;
      const badTag = { ...m, ciphertext: m.ciphertext.map((x, i) => (i === m.ciphertext.length - 1 ? x ^ 1 : x)) };
      const badHeader = { ...m, header: m.header.map((x, i) => (i === 39 ? x ^ 4 : x)) };
      const foreign = ratchetEncrypt(other.alice, utf8('x')).message;
      for (const [state, bad] of [
        [bob, badTag],
        [b1, badTag],
        [b1, badHeader],
        [b1, foreign],
        [bob, foreign],
      ] as const) {
        const before = snap(state);
        await expectCode(ratchetDecrypt(curves, rng, state, bad), 'decryption_failed');
        expect(snap(state)).toBe(before);
      }
      expect(new TextDecoder().decode((await ratchetDecrypt(curves, rng, b1, m)).plaintext)).toBe('m1');
    });
  }

  it("every open is the curves' aesGcmOpen (new chain, known chain, skipped key); one that fails commits nothing", async () => {
    const { rng, alice, bob } = await pair(wc, 'open');
    const { messages } = sendN(alice, 3, 'm');
    let opens = 0;
    let refuse = false;
    const curves: Curve25519 = {
      ...wc,
      aesGcmOpen: (...a) => {
        opens++;
        return refuse ? Promise.reject(new Error('the platform failed')) : wc.aesGcmOpen(...a);
      },
    };
    const text = (p: Uint8Array) => new TextDecoder().decode(p);
    const r0 = await ratchetDecrypt(curves, rng, bob, messages[0]!);
    expect([text(r0.plaintext), opens]).toEqual(['m0', 1]);
    refuse = true;
    const before = snap(r0.state);
    await expect(ratchetDecrypt(curves, rng, r0.state, messages[2]!)).rejects.toThrow('the platform failed');
    expect(snap(r0.state)).toBe(before);
    refuse = false;
    const r2 = await ratchetDecrypt(curves, rng, r0.state, messages[2]!);
    expect([text(r2.plaintext), r2.state.skipped.size]).toEqual(['m2', 1]);
    refuse = true;
    const skipped = snap(r2.state);
    await expect(ratchetDecrypt(curves, rng, r2.state, messages[1]!)).rejects.toThrow('the platform failed');
    expect(snap(r2.state)).toBe(skipped);
    refuse = false;
    const r1 = await ratchetDecrypt(curves, rng, r2.state, messages[1]!);
    expect([text(r1.plaintext), r1.state.skipped.size, opens]).toEqual(['m1', 0, 5]);
  });

  it('late messages of an old chain decrypt after several DH steps (and beyond the chain window)', async () => {
    let { rng, alice, bob } = await pair(wc, 'late');
    const early = sendN(alice, 3, 'early');
    alice = early.state;
    bob = (await ratchetDecrypt(wc, rng, bob, early.messages[0]!)).state;
    ({ alice, bob } = await roundTrips(rng, alice, bob, MAX_RECEIVER_CHAINS + 2));
    expect(bob.receivingChains).toHaveLength(MAX_RECEIVER_CHAINS);
    for (const i of [2, 1]) {
      const r = await ratchetDecrypt(wc, rng, bob, early.messages[i]!);
      expect(new TextDecoder().decode(r.plaintext)).toBe(`early${i}`);
      bob = r.state;
    }
  });

  it('a message at or past the authenticated end of an older chain is beyond_chain_end and changes nothing', async () => {
    let { rng, alice, bob } = await pair(wc, 'chain end');
    const a0 = ratchetEncrypt(alice, utf8('a0'));
    const cloned = a0.state; // a copy of Alice's state that still holds chain 1 after index 0
    alice = a0.state;
    bob = (await ratchetDecrypt(wc, rng, bob, a0.message)).state;
    const b0 = ratchetEncrypt(bob, utf8('b0'));
    bob = b0.state;
    alice = (await ratchetDecrypt(wc, rng, alice, b0.message)).state;
    const a1 = ratchetEncrypt(alice, utf8('a1')); // chain 2, PN = 1: chain 1 ends at 1
    expect(decodeHeader(a1.message.header).previousChainLength).toBe(1);
    bob = (await ratchetDecrypt(wc, rng, bob, a1.message)).state;
    expect(bob.receivingChains[1]!.end).toBe(1);
    const late = ratchetEncrypt(cloned, utf8('never sent')).message; // chain 1, N = 1: a valid AEAD
    const before = snap(bob);
    await expectCode(ratchetDecrypt(wc, rng, bob, late), 'beyond_chain_end');
    expect(snap(bob)).toBe(before);
  });

  it('a used message replayed after its chain left the window is decryption_failed (not duplicate) and changes nothing', async () => {
    let { rng, alice, bob } = await pair(wc, 'replay after window');
    const first = ratchetEncrypt(alice, utf8('first'));
    alice = first.state;
    bob = (await ratchetDecrypt(wc, rng, bob, first.message)).state;
    ({ alice, bob } = await roundTrips(rng, alice, bob, MAX_RECEIVER_CHAINS - 1));
    // Chain 1 is the oldest of the MAX_RECEIVER_CHAINS kept: the replay is recognised.
    expect(bob.receivingChains.at(-1)!.ratchetKey).toEqual(decodeHeader(first.message.header).ratchetKey);
    await expectCode(ratchetDecrypt(wc, rng, bob, first.message), 'duplicate');
    ({ alice, bob } = await roundTrips(rng, alice, bob, 1)); // chain 1 leaves the window, nothing of it kept
    const before = snap(bob);
    await expectCode(ratchetDecrypt(wc, rng, bob, first.message), 'decryption_failed');
    expect(snap(bob)).toBe(before);
  });
});

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

type Action = { kind: 'send' | 'deliver' | 'drop'; from: 0 | 1; pick: number };
const actionArb: fc.Arbitrary<Action> = fc.record({
  kind: fc.constantFrom('send', 'send', 'deliver', 'deliver', 'drop'),
  from: fc.constantFrom(0 as const, 1 as const),
  pick: fc.nat(1000),
});

interface InFlight {
  id: string;
  message: RatchetCiphertext;
}

describe('double ratchet properties', () => {
  for (const which of ['noble', 'webcrypto'] as const) {
    it(`(a) random delivery orders and drops: every kept message arrives exactly once, intact (${which})`, async () => {
      const curves = which === 'noble' ? nobleCurves : wc;
      const runs = which === 'noble' ? 8 : 30;
      await fc.assert(
        fc.asyncProperty(fc.array(actionArb, { minLength: 1, maxLength: 40 }), async (actions) => {
          const p = await pair(curves, 'prop-a');
          const states: RatchetState[] = [p.alice, p.bob];
          const pools: InFlight[][] = [[], []];
          const delivered = new Set<string>();
          const sent: InFlight[] = [];
          const dropped = new Set<string>();
          let seq = 0;
          const deliver = async (from: 0 | 1, idx: number) => {
            const [m] = pools[from]!.splice(idx, 1);
            if (!m) return;
            const to = 1 - from;
            const r = await ratchetDecrypt(curves, p.rng, states[to]!, m.message);
            expect(new TextDecoder().decode(r.plaintext)).toBe(m.id);
            expect(delivered.has(m.id)).toBe(false);
            delivered.add(m.id);
            states[to] = r.state;
          };
          for (const a of actions) {
            const pool = pools[a.from]!;
            if (a.kind === 'send') {
              if (states[a.from]!.sendingChain === null) continue;
              const r = ratchetEncrypt(states[a.from]!, utf8(`${a.from}:${seq++}`));
              states[a.from] = r.state;
              const f = { id: `${a.from}:${seq - 1}`, message: r.message };
              pool.push(f);
              sent.push(f);
            } else if (pool.length > 0 && a.kind === 'deliver') await deliver(a.from, a.pick % pool.length);
            else if (pool.length > 0) dropped.add(pool.splice(a.pick % pool.length, 1)[0]!.id);
          }
          for (const from of [0, 1] as const) while (pools[from]!.length > 0) await deliver(from, 0);
          for (const s of states) expect(s.skipped.size).toBeLessThanOrEqual(MAX_SKIPPED_KEYS);
          for (const f of sent) expect(delivered.has(f.id)).toBe(!dropped.has(f.id));
          // any replay of a delivered message is refused and changes nothing
          const again = sent.find((f) => delivered.has(f.id));
          if (again) {
            const to = again.id.startsWith('0') ? 1 : 0;
            const before = snap(states[to]!);
            await expect(ratchetDecrypt(curves, p.rng, states[to]!, again.message)).rejects.toThrow();
            expect(snap(states[to]!)).toBe(before);
          }
        }),
        { numRuns: runs },
      );
    });
  }

  it('(b) any single bit flip in header or ciphertext fails and leaves the state unchanged', async () => {
    const { rng, alice, bob } = await pair(wc, 'prop-b');
    const { messages } = sendN(alice, 2, 'm');
    const b1 = (await ratchetDecrypt(wc, rng, bob, messages[0]!)).state;
    const m = messages[1]!;
    const total = (m.header.length + m.ciphertext.length) * 8;
    const before = snap(b1);
    await fc.assert(
      fc.asyncProperty(fc.nat(total - 1), async (bit) => {
        const byte = bit >> 3;
        const flip = (b: Uint8Array, at: number) => b.map((x, i) => (i === at ? x ^ (1 << (bit & 7)) : x));
        const bad =
          byte < m.header.length
            ? { ...m, header: flip(m.header, byte) }
            : { ...m, ciphertext: flip(m.ciphertext, byte - m.header.length) };
        await expect(ratchetDecrypt(wc, rng, b1, bad)).rejects.toThrow();
        expect(snap(b1)).toBe(before);
      }),
      { numRuns: 60 },
    );
  });

  it('(c) serialize → restore → continue gives the same results as not serializing', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom(0, 1), { minLength: 1, maxLength: 12 }),
        fc.nat(11),
        async (turns, cut) => {
          const run = async (restoreAt: number | null) => {
            const p = await pair(wc, 'prop-c');
            const st: RatchetState[] = [p.alice, p.bob];
            const out: string[] = [];
            for (const [i, from] of [0, ...turns].entries()) {
              if (i === restoreAt) for (const k of [0, 1]) st[k] = decodeRatchetState(encodeRatchetState(st[k]!));
              const r = ratchetEncrypt(st[from]!, utf8(`t${i}`));
              st[from] = r.state;
              const d = await ratchetDecrypt(wc, p.rng, st[1 - from]!, r.message);
              st[1 - from] = d.state;
              out.push(toHex(r.message.header) + toHex(r.message.ciphertext));
            }
            return out.join() + snap(st[0]!) + snap(st[1]!);
          };
          expect(await run(cut % (turns.length + 1))).toBe(await run(null));
        },
      ),
      { numRuns: 15 },
    );
  });
});
