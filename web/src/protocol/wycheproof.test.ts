/**
 * Wycheproof vectors (C2SP/wycheproof, see vectors/wycheproof/README.md) through OUR primitives, on both
 * curve paths. Failures print group, tcId, comment and flags.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { fromHex, isAllZero, toHex } from './bytes.js';
import { is } from './errors.js';
import {
  aesGcmDecrypt,
  aesGcmDecryptOnce,
  aesGcmEncrypt,
  aesGcmKey,
  type Curve25519,
  hkdfSha256,
  mlkemDecapsulate,
  mlkemEncapsulate,
  mlkemKeygen,
  nobleCurves,
} from './primitives.js';
import { seededRng, webCryptoTestCurves } from './testing.js';
import aesGcm from './vectors/wycheproof/aes_gcm_256_96_test.json' with { type: 'json' };
import ed25519 from './vectors/wycheproof/ed25519_test.json' with { type: 'json' };
import hkdf from './vectors/wycheproof/hkdf_sha256_test.json' with { type: 'json' };
import mlkemSemi from './vectors/wycheproof/mlkem_1024_semi_expanded_decaps_test.json' with { type: 'json' };
import mlkem from './vectors/wycheproof/mlkem_1024_test.json' with { type: 'json' };
import x25519 from './vectors/wycheproof/x25519_test.json' with { type: 'json' };

interface Case {
  tcId: number;
  comment?: string;
  flags: string[];
  result: string;
}
const label = (group: number, t: Case) => `group ${group} tcId ${t.tcId} [${t.flags.join(',')}] ${t.comment ?? ''}`;

const P = 2n ** 255n - 19n;
function canonicalX25519(pk: Uint8Array): boolean {
  if (pk.length !== 32 || (pk[31]! & 0x80) !== 0) return false;
  let n = 0n;
  for (let i = 31; i >= 0; i--) n = (n << 8n) | BigInt(pk[i]!);
  return n < P;
}

let paths: Curve25519[];
beforeAll(async () => {
  const wc = await webCryptoTestCurves();
  if (!wc) throw new Error('WebCrypto X25519/Ed25519 expected in Node 20');
  paths = [nobleCurves, wc];
});

describe('Wycheproof x25519 (pitfalls 2, 3)', () => {
  it('every case on both paths: zero shared secrets and non-canonical keys throw, others match', async () => {
    const failures: string[] = [];
    for (const curves of paths) {
      for (const [gi, g] of x25519.testGroups.entries()) {
        for (const t of g.tests as (Case & { public: string; private: string; shared: string })[]) {
          const pub = fromHex(t.public);
          const shared = fromHex(t.shared);
          const mustFail = t.result === 'invalid' || isAllZero(shared) || !canonicalX25519(pub);
          const out = await curves.x25519(fromHex(t.private), pub).catch((e) => e);
          const ok = out instanceof Uint8Array;
          if (mustFail) {
            const code = isAllZero(shared) && canonicalX25519(pub) ? 'zero_shared_secret' : undefined;
            if (ok || !(code ? is(out, code) : is(out))) failures.push(`${curves.name} ${label(gi, t)}`);
          } else if (!ok || toHex(out) !== t.shared) failures.push(`${curves.name} ${label(gi, t)}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it('the vectors do contain zero-shared-secret cases (the check above is not vacuous)', () => {
    const zero = x25519.testGroups.flatMap((g) => g.tests).filter((t) => isAllZero(fromHex(t.shared)));
    expect(zero.length).toBeGreaterThan(5);
  });
});

describe('Wycheproof ed25519 strict verification (pitfall 4)', () => {
  it('every valid case verifies and every invalid case fails, on both paths', async () => {
    const failures: string[] = [];
    for (const curves of paths) {
      for (const [gi, g] of ed25519.testGroups.entries()) {
        const pk = fromHex(g.publicKey.pk);
        for (const t of g.tests as (Case & { msg: string; sig: string })[]) {
          const ok = await curves.ed25519Verify(pk, fromHex(t.msg), fromHex(t.sig));
          if (ok !== (t.result === 'valid')) failures.push(`${curves.name} ${label(gi, t)}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });
});

describe('Wycheproof HKDF-SHA256', () => {
  it('every case', () => {
    const failures: string[] = [];
    for (const [gi, g] of hkdf.testGroups.entries()) {
      for (const t of g.tests as (Case & { ikm: string; salt: string; info: string; size: number; okm: string })[]) {
        let out: string | null = null;
        try {
          out = toHex(hkdfSha256(fromHex(t.ikm), fromHex(t.salt), fromHex(t.info), t.size));
        } catch {
          out = null;
        }
        if (t.result === 'invalid' ? out !== null : out !== t.okm) failures.push(label(gi, t));
      }
    }
    expect(failures).toEqual([]);
  });
});

describe('Wycheproof AES-256-GCM (96-bit IV)', () => {
  it('every case: valid encrypts and decrypts exactly, invalid fails with decryption_failed', () => {
    const failures: string[] = [];
    for (const [gi, g] of aesGcm.testGroups.entries()) {
      for (const t of g.tests as (Case & {
        key: string;
        iv: string;
        aad: string;
        msg: string;
        ct: string;
        tag: string;
      })[]) {
        const [key, iv, aad] = [fromHex(t.key), fromHex(t.iv), fromHex(t.aad)];
        const sealed = fromHex(t.ct + t.tag);
        const dec = (() => {
          try {
            return toHex(aesGcmDecrypt(key, iv, sealed, aad));
          } catch (e) {
            return is(e, 'decryption_failed') ? null : 'unexpected error';
          }
        })();
        if (t.result === 'invalid') {
          if (dec !== null) failures.push(label(gi, t));
        } else if (dec !== t.msg || toHex(aesGcmEncrypt(key, iv, fromHex(t.msg), aad)) !== t.ct + t.tag) {
          failures.push(label(gi, t));
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it('the bulk path (aesGcmKey), the one-shot open (aesGcmDecryptOnce) and Curve25519.aesGcmOpen, WebCrypto and noble, pass every case too', async () => {
    const failures: string[] = [];
    for (const [subtle, curves] of [
      [crypto.subtle, paths[1]!],
      [null, paths[0]!],
    ] as const) {
      for (const [gi, g] of aesGcm.testGroups.entries()) {
        for (const t of g.tests as (Case & {
          key: string;
          iv: string;
          aad: string;
          msg: string;
          ct: string;
          tag: string;
        })[]) {
          const k = await aesGcmKey(fromHex(t.key), subtle);
          const [iv, aad] = [fromHex(t.iv), fromHex(t.aad)];
          const dec = await k.decrypt(iv, fromHex(t.ct + t.tag), aad).then(
            (p) => toHex(p),
            (e: unknown) => (is(e, 'decryption_failed') ? null : 'unexpected error'),
          );
          const once = await aesGcmDecryptOnce(fromHex(t.key), iv, fromHex(t.ct + t.tag), aad, subtle).then(
            (p) => toHex(p),
            (e: unknown) => (is(e, 'decryption_failed') ? null : 'unexpected error'),
          );
          const opened = await curves.aesGcmOpen(fromHex(t.key), iv, fromHex(t.ct + t.tag), aad).then(
            (p) => toHex(p),
            (e: unknown) => (is(e, 'decryption_failed') ? null : 'unexpected error'),
          );
          const ok =
            once === dec &&
            opened === dec &&
            (t.result === 'invalid'
              ? dec === null
              : dec === t.msg && toHex(await k.encrypt(iv, fromHex(t.msg), aad)) === t.ct + t.tag);
          if (!ok) failures.push(`${k.impl}/${curves.name} ${label(gi, t)}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });
});

describe('Wycheproof ML-KEM-1024', () => {
  it('keygen from seed and decapsulation match; wrong seed or ciphertext lengths are refused', () => {
    const failures: string[] = [];
    for (const [gi, g] of mlkem.testGroups.entries()) {
      for (const t of g.tests as (Case & { seed: string; ek?: string; c: string; K?: string })[]) {
        try {
          const kp = mlkemKeygen(fromHex(t.seed));
          if (t.ek && toHex(kp.publicKey) !== t.ek) throw new Error('ek mismatch');
          const k = toHex(mlkemDecapsulate(fromHex(t.c), kp.secretKey));
          if (t.result === 'invalid' || k !== t.K) failures.push(label(gi, t));
        } catch {
          if (t.result !== 'invalid') failures.push(label(gi, t));
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it('semi-expanded decapsulation: valid keys match, malformed keys and ciphertexts are refused', () => {
    const failures: string[] = [];
    for (const [gi, g] of mlkemSemi.testGroups.entries()) {
      for (const t of g.tests as (Case & { dk: string; c: string; K: string })[]) {
        let k: string | null;
        try {
          k = toHex(mlkemDecapsulate(fromHex(t.c), fromHex(t.dk)));
        } catch {
          k = null;
        }
        if (t.result === 'invalid' ? k !== null : k !== t.K) failures.push(label(gi, t));
      }
    }
    expect(failures).toEqual([]);
  });

  it('encapsulation round-trips with our keygen', () => {
    const rng = seededRng('mlkem');
    const kp = mlkemKeygen(rng(64));
    const { ciphertext, sharedSecret } = mlkemEncapsulate(kp.publicKey, rng(32));
    expect(toHex(mlkemDecapsulate(ciphertext, kp.secretKey))).toBe(toHex(sharedSecret));
  });
});

describe('curve paths agree byte for byte', () => {
  it('on random keys: X25519 public keys and DH, Ed25519 public keys, signatures and verification', async () => {
    const [noble, wc] = paths as [Curve25519, Curve25519];
    const rng = seededRng('paths agree');
    for (let i = 0; i < 16; i++) {
      const [a, b, s] = [rng(32), rng(32), rng(32)];
      const msg = rng(i * 7);
      const [pa1, pa2, pb, es1, es2] = await Promise.all([
        noble.x25519PublicKey(a),
        wc.x25519PublicKey(a),
        noble.x25519PublicKey(b),
        noble.ed25519PublicKey(s),
        wc.ed25519PublicKey(s),
      ]);
      expect(toHex(pa2)).toBe(toHex(pa1));
      expect(toHex(es2)).toBe(toHex(es1));
      const [d1, d2] = await Promise.all([noble.x25519(a, pb), wc.x25519(b, pa1)]);
      expect(toHex(d2)).toBe(toHex(d1));
      const [sig1, sig2] = await Promise.all([noble.ed25519Sign(s, msg), wc.ed25519Sign(s, msg)]);
      expect(toHex(sig2)).toBe(toHex(sig1));
      expect(await noble.ed25519Verify(es1, msg, sig2)).toBe(true);
      expect(await wc.ed25519Verify(es1, msg, sig1)).toBe(true);
      const bad = sig1.slice();
      bad[i % 64]! ^= 4;
      expect(await noble.ed25519Verify(es1, msg, bad)).toBe(false);
      expect(await wc.ed25519Verify(es1, msg, bad)).toBe(false);
    }
  });
});
