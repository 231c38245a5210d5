import { describe, expect, it } from 'vitest';
import { PUBLIC_KEY_IMPORT_CACHE } from './constants.js';
import { ErrorCode, is } from './errors.js';
import {
  assertEd25519Public,
  b64uEncode,
  type Curve25519,
  hkdfSha256,
  hkdfSha256ZeroSalt,
  hmacSha256,
  hmacSha256Prepare,
  hmacSha256Prepared,
  type MlKem1024,
  mlkemEncapsulate,
  mlkemKeygen,
  nobleCurves,
  nobleMlKem,
  platformRng,
  webCryptoCurves,
  webCryptoMlKem,
  X25519_BASE_POINT,
} from './primitives.js';
import { mlkemSubtleShim, seededRng } from './testing.js';

const hex = (u: Uint8Array) => Buffer.from(u).toString('hex');

/** A SubtleCrypto that records the format of every importKey call (to see which import path ran). */
function spySubtle(): { subtle: SubtleCrypto; imports: string[] } {
  const imports: string[] = [];
  const real = crypto.subtle;
  const subtle = new Proxy(real, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (prop === 'importKey')
        return (format: string, ...rest: unknown[]) => {
          imports.push(format);
          return (real.importKey as (...a: unknown[]) => Promise<CryptoKey>).call(real, format, ...rest);
        };
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { subtle, imports };
}

describe('curve paths', () => {
  it('webcrypto and noble derive the same X25519 shared secret', async () => {
    const wc = await webCryptoCurves();
    expect(wc?.name).toBe('webcrypto');
    const a = new Uint8Array(32).fill(1);
    const b = new Uint8Array(32).fill(2);
    const [pa, pb] = await Promise.all([nobleCurves.x25519PublicKey(a), nobleCurves.x25519PublicKey(b)]);
    const s1 = await wc!.x25519(a, pb);
    const s2 = await nobleCurves.x25519(b, pa);
    expect(Buffer.from(s1).toString('hex')).toBe(Buffer.from(s2).toString('hex'));
  });

  it('JWK import, PKCS#8 import and the cache agree with noble byte for byte (X25519, Ed25519)', async () => {
    const jwk = (await webCryptoCurves())!;
    const pkcs8 = (await webCryptoCurves(undefined, { jwkPrivateImport: false }))!;
    const rng = seededRng('primitives jwk vs pkcs8');
    for (let i = 0; i < 8; i++) {
      const xs = rng(32);
      const es = rng(32);
      const peer = await nobleCurves.x25519PublicKey(rng(32));
      const msg = rng(i * 17);
      const xPub = await nobleCurves.x25519PublicKey(xs);
      const ePub = await nobleCurves.ed25519PublicKey(es);
      const refDh = hex(await nobleCurves.x25519(xs, peer));
      const refSig = hex(await nobleCurves.ed25519Sign(es, msg));
      for (const c of [jwk, pkcs8] as Curve25519[]) {
        // fresh arrays each time, so each case really imports (the cache is keyed by array identity)
        const pair = { secretKey: xs.slice(), publicKey: xPub };
        expect(hex(await c.x25519(pair, peer))).toBe(refDh);
        expect(hex(await c.x25519(pair, peer))).toBe(refDh); // cached key
        expect(hex(await c.x25519PublicKey(pair.secretKey))).toBe(hex(xPub)); // public from the cached import
        expect(hex(await c.x25519(pair.secretKey, X25519_BASE_POINT))).toBe(hex(xPub));
        const bare = xs.slice();
        expect(hex(await c.x25519PublicKey(bare))).toBe(hex(xPub));
        expect(hex(await c.x25519(bare, peer))).toBe(refDh);
        const ePair = { secretKey: es.slice(), publicKey: ePub };
        expect(hex(await c.ed25519Sign(ePair, msg))).toBe(refSig);
        expect(hex(await c.ed25519Sign(ePair, msg))).toBe(refSig);
        expect(hex(await c.ed25519PublicKey(ePair.secretKey))).toBe(hex(ePub));
        const eBare = es.slice();
        expect(hex(await c.ed25519PublicKey(eBare))).toBe(hex(ePub));
        expect(hex(await c.ed25519Sign(eBare, msg))).toBe(refSig);
      }
    }
  });

  it('imports a key pair as JWK, a bare secret as PKCS#8, and every secret only once', async () => {
    const { subtle, imports } = spySubtle();
    const wc = (await webCryptoCurves(subtle))!;
    const rng = seededRng('primitives import formats');
    const peer = await nobleCurves.x25519PublicKey(rng(32));
    const xs = rng(32);
    const es = rng(32);
    const pair = { secretKey: xs, publicKey: await nobleCurves.x25519PublicKey(xs) };
    const ePair = { secretKey: es, publicKey: await nobleCurves.ed25519PublicKey(es) };
    imports.length = 0;
    await Promise.all([wc.x25519(pair, peer), wc.x25519(pair, X25519_BASE_POINT), wc.ed25519Sign(ePair, peer)]);
    await wc.x25519PublicKey(xs);
    await wc.ed25519PublicKey(es);
    // peer + base point raw imports, one JWK per secret, no PKCS#8
    expect(imports.filter((f) => f === 'jwk')).toHaveLength(2);
    expect(imports).not.toContain('pkcs8');

    const fresh = rng(32);
    imports.length = 0;
    const [pub, , base] = await Promise.all([
      wc.x25519PublicKey(fresh),
      wc.x25519(fresh, peer),
      wc.x25519(fresh, X25519_BASE_POINT),
    ]);
    expect(hex(base)).toBe(hex(pub));
    expect(imports.filter((f) => f === 'pkcs8')).toHaveLength(1);
    const freshEd = rng(32);
    imports.length = 0;
    await wc.ed25519PublicKey(freshEd);
    await wc.ed25519Sign(freshEd, peer);
    expect(imports).toEqual(['pkcs8']);
  });

  it("a peer's public key arriving in a fresh array each time is imported once (by its bytes), within a bound", async () => {
    const { subtle, imports } = spySubtle();
    const wc = (await webCryptoCurves(subtle))!;
    const rng = seededRng('primitives public cache');
    const ours = rng(32);
    const peer = await nobleCurves.x25519PublicKey(rng(32));
    const es = rng(32);
    const edPub = await nobleCurves.ed25519PublicKey(es);
    const msg = Uint8Array.of(1, 2, 3);
    const sig = await nobleCurves.ed25519Sign(es, msg);
    await wc.x25519(ours, peer.slice());
    imports.length = 0;
    // Decoded again and again (new arrays, same bytes): no further import, the same results.
    const outs = await Promise.all([1, 2, 3].map(() => wc.x25519(ours, peer.slice())));
    for (const o of outs) expect(hex(o)).toBe(hex(await nobleCurves.x25519(ours, peer)));
    expect(await wc.ed25519Verify(edPub.slice(), msg, sig)).toBe(true);
    expect(await wc.ed25519Verify(edPub.slice(), msg, sig)).toBe(true);
    expect(imports).toEqual(['raw']); // the Ed25519 key once; X25519 and Ed25519 bytes are kept apart
    // The same 32 bytes as an X25519 key are another key: imported for X25519, not taken from Ed25519's entry.
    imports.length = 0;
    await wc.x25519(ours, edPub.slice()).catch(() => undefined);
    expect(imports).toEqual(['raw']);
    // Bounded: after PUBLIC_KEY_IMPORT_CACHE other keys, the first is imported again.
    const others = await Promise.all(
      Array.from({ length: PUBLIC_KEY_IMPORT_CACHE }, () => nobleCurves.x25519PublicKey(rng(32))),
    );
    for (const o of others) await wc.x25519(ours, o);
    imports.length = 0;
    await wc.x25519(ours, peer.slice());
    expect(imports).toEqual(['raw']);
  });

  it('refuses a key pair whose public half does not match (invalid_key), on the JWK path', async () => {
    const wc = (await webCryptoCurves())!;
    const rng = seededRng('primitives mismatch');
    const peer = await nobleCurves.x25519PublicKey(rng(32));
    const wrongX = await nobleCurves.x25519PublicKey(rng(32));
    const wrongE = await nobleCurves.ed25519PublicKey(rng(32));
    const x = wc.x25519({ secretKey: rng(32), publicKey: wrongX }, peer);
    await expect(x).rejects.toSatisfy((e: unknown) => is(e, ErrorCode.InvalidKey));
    const s = wc.ed25519Sign({ secretKey: rng(32), publicKey: wrongE }, peer);
    await expect(s).rejects.toSatisfy((e: unknown) => is(e, ErrorCode.InvalidKey));
  });

  it('b64uEncode matches base64url without padding', () => {
    const rng = seededRng('b64u');
    for (const n of [0, 1, 2, 3, 4, 5, 31, 32, 33]) {
      const b = rng(n);
      expect(b64uEncode(b)).toBe(Buffer.from(b).toString('base64url'));
    }
  });
});

describe('prepared HMAC and zero-salt HKDF', () => {
  it('equal plain HMAC-SHA256 and HKDF-SHA256 byte for byte, interleaved and repeated', () => {
    const rng = seededRng('prepared hmac');
    for (const keyLen of [0, 1, 32, 64, 65, 100]) {
      const k1 = rng(keyLen);
      const k2 = rng(32);
      const p1 = hmacSha256Prepare(k1);
      const p2 = hmacSha256Prepare(k2);
      for (const mLen of [0, 1, 31, 55, 56, 64, 65, 200]) {
        const m = rng(mLen);
        expect(hex(hmacSha256Prepared(p1, m))).toBe(hex(hmacSha256(k1, m)));
        expect(hex(hmacSha256Prepared(p2, m))).toBe(hex(hmacSha256(k2, m)));
        expect(hex(hmacSha256Prepared(p1, m))).toBe(hex(hmacSha256(k1, m)));
      }
    }
    for (const len of [1, 32, 44, 64, 100]) {
      const ikm = rng(32);
      const info = rng(len % 40);
      expect(hex(hkdfSha256ZeroSalt(ikm, info, len))).toBe(hex(hkdfSha256(ikm, new Uint8Array(32), info, len)));
    }
  });
});

/**
 * Ed25519 cases for the rules Wycheproof does not reach (docs/PROTOCOL.md §"Encoding conventions" rule 4),
 * made from bare scalars: A = [a]B with a = 0x0123456789abcdef, M = "e2e-chat ed25519 cofactorless probe",
 * S = r + k·a mod L with k = SHA-512(R ‖ A ‖ M) mod L. T8 is a point of order 8.
 */
const ED = {
  A: '4007da55933fc4e347bc451b387cfef6b0dfec7b14da5aab1738f47c52f77b70',
  message: new TextEncoder().encode('e2e-chat ed25519 cofactorless probe'),
  /** R = [r]B, r = 0xfedcba9876543210: an ordinary valid signature (the control). */
  valid:
    '3db0f9f5298629a72b6dfcd3975a47e1ca5c12f2e048a194f1bcd012b36e863f520d98df4d024fb6e35f912528305585201001292affafca80aef8fc18028505',
  /** R = [r]B + T8: [S]B − [k]A = R − T8, so only a cofactored verifier ([8]-multiplied equation) accepts. */
  torsionR:
    '1541e3eac7c3e621230d95d691a5841c71d832a7dff8178a75e3a5ea2db599f2e9437390de0a70c3da5ea63b059b561a15beb25d635a81eab7a04249cd09320c',
  /** R = the neutral point (y = 1), S = k·a: satisfies the cofactorless equation, but R is of small order. */
  smallR:
    '0100000000000000000000000000000000000000000000000000000000000000f66723a466ab8441ffa867d7bf22f782b04ada1e744d8aa8665d795fd7eade00',
  /** A' = A + T8 (mixed order, not small order): signatures with R = [r + j]B, S = r + j + k·a. */
  mixedA: 'd1b73b33ec0b032dae165de0eae0def87438b7abefce1dee39316ce68e224a15',
  /** j = 1: k ≡ 0 (mod 8), so [k]T8 = 0 and the cofactorless equation holds. */
  mixedAk0:
    'f9ffc77750ec47b7a17016c1f13395a402d2167daf483b6f4fef2d89827df4853638dc860cb1fc6780f7c2c093233c74118dff48d38517593d893a3938274b0c',
  /** j = 0: k ≡ 1 (mod 8), so [S]B − [k]A' = R − [k]T8 ≠ R. */
  mixedAk1:
    '3db0f9f5298629a72b6dfcd3975a47e1ca5c12f2e048a194f1bcd012b36e863f488c56dc49abcbbea1672b72cb4b2d64b9280acedd5466cfcadea1fc64696e07',
};
const unhex = (h: string) => Uint8Array.from(Buffer.from(h, 'hex'));

describe('Ed25519 verification rules beyond Wycheproof, identical on both curve paths', () => {
  const both = async () => [nobleCurves, (await webCryptoCurves())!] as const;
  const verify = (c: Curve25519, a: string, sig: string) => c.ed25519Verify(unhex(a), ED.message, unhex(sig));

  it('the cofactorless equation: an R with an order-8 component is refused on both paths (the control verifies)', async () => {
    for (const c of await both()) {
      expect([c.name, await verify(c, ED.A, ED.valid)]).toEqual([c.name, true]);
      expect([c.name, await verify(c, ED.A, ED.torsionR)]).toEqual([c.name, false]);
    }
  });

  it('a small-order R is refused on both paths even where the equation holds', async () => {
    for (const c of await both()) expect([c.name, await verify(c, ED.A, ED.smallR)]).toEqual([c.name, false]);
  });

  it('a mixed-order A is not refused by itself: both paths accept exactly when the cofactorless equation holds', async () => {
    for (const c of await both()) {
      expect([c.name, await verify(c, ED.mixedA, ED.mixedAk0)]).toEqual([c.name, true]);
      expect([c.name, await verify(c, ED.mixedA, ED.mixedAk1)]).toEqual([c.name, false]);
    }
  });

  it('a public key that does not decompress (y = 2) passes the decode-time checks but verifies nothing', async () => {
    const notOnCurve = new Uint8Array(32);
    notOnCurve[0] = 2;
    expect(() => assertEd25519Public(notOnCurve, 'test')).not.toThrow();
    for (const c of await both()) {
      expect([c.name, await c.ed25519Verify(notOnCurve, ED.message, unhex(ED.valid))]).toEqual([c.name, false]);
    }
  });

  it('a platform whose Ed25519 verification is cofactored is not used (webCryptoCurves returns null)', async () => {
    const real = crypto.subtle;
    const torsion = unhex(ED.torsionR);
    const cofactored = new Proxy(real, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target) as unknown;
        if (prop === 'verify')
          return (alg: AlgorithmIdentifier, key: CryptoKey, sig: BufferSource, data: BufferSource) =>
            hex(new Uint8Array(sig as ArrayBuffer)) === hex(torsion)
              ? Promise.resolve(true)
              : real.verify(alg, key, sig, data);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    expect(await webCryptoCurves(cofactored)).toBeNull();
    expect(await webCryptoCurves(real)).not.toBeNull();
  });
});

describe("ML-KEM-1024 paths (noble and WebCrypto: the platform's in Chromium, emulated on Node 20)", () => {
  /** The WebCrypto provider over the platform's ML-KEM where it has one, else over the shim; with call counts. */
  const webcrypto = async (): Promise<{ kem: MlKem1024; calls: Map<string, number> }> => {
    const shim = mlkemSubtleShim();
    const platform = await webCryptoMlKem(crypto.subtle);
    const kem = platform ?? (await webCryptoMlKem(shim.subtle));
    expect(kem?.name).toBe('webcrypto');
    return { kem: kem!, calls: platform ? new Map() : shim.calls };
  };

  it('both paths make the same public key from a 64-byte seed, and keep the seed', async () => {
    const { kem } = await webcrypto();
    const rng = seededRng('mlkem keygen paths');
    for (let i = 0; i < 3; i++) {
      const seed = rng(64);
      const [w, n] = await Promise.all([kem.keygen(seed), nobleMlKem.keygen(seed)]);
      expect(hex(w.publicKey)).toBe(hex(n.publicKey));
      expect(hex(w.publicKey)).toBe(hex(mlkemKeygen(seed).publicKey));
      expect(hex(w.seed!)).toBe(hex(seed));
      expect(hex(n.seed!)).toBe(hex(seed));
      // noble keeps its expanded key too (no re-expansion per decapsulation where the platform has no ML-KEM)
      expect(hex(n.secretKey!)).toBe(hex(mlkemKeygen(seed).secretKey));
      expect(w.secretKey).toBeUndefined();
    }
    await expect(kem.keygen(new Uint8Array(32))).rejects.toSatisfy((e) => is(e, ErrorCode.InvalidKey));
  });

  it('a seeded rng gives byte-identical ciphertexts on both paths; only platformRng lets the platform draw m', async () => {
    const { kem, calls } = await webcrypto();
    const seed = seededRng('mlkem encaps seed')(64);
    const { publicKey } = mlkemKeygen(seed);
    const [w, n] = await Promise.all([
      kem.encapsulate(publicKey, seededRng('m')),
      nobleMlKem.encapsulate(publicKey, seededRng('m')),
    ]);
    expect(hex(w.ciphertext)).toBe(hex(n.ciphertext));
    expect(hex(w.sharedSecret)).toBe(hex(mlkemEncapsulate(publicKey, seededRng('m')(32)).sharedSecret));
    const before = calls.get('encapsulateBits') ?? 0;
    let drawn = 0;
    const counting = (len: number) => {
      drawn++;
      return platformRng(len);
    };
    await kem.encapsulate(publicKey, counting); // a look-alike of platformRng is still an ordinary rng
    expect(drawn).toBe(1);
    const p = await kem.encapsulate(publicKey, platformRng);
    if (calls.size) expect(calls.get('encapsulateBits')).toBe(before + 1);
    // whatever drew m, both paths decapsulate it to the same secret
    for (const path of [kem, nobleMlKem])
      expect(hex(await path.decapsulate(p.ciphertext, { publicKey, seed }))).toBe(hex(p.sharedSecret));
  });

  it("each path decapsulates the other's ciphertexts, from the seed, the expanded key (records written before) or both", async () => {
    const { kem, calls } = await webcrypto();
    const before = calls.get('decapsulateBits') ?? 0; // (the probe's)
    const rng = seededRng('mlkem decaps paths');
    const seed = rng(64);
    const { publicKey, secretKey } = mlkemKeygen(seed);
    const records = [
      { publicKey, seed },
      { publicKey, secretKey },
      { publicKey, seed, secretKey },
    ];
    for (const enc of [kem, nobleMlKem]) {
      const { ciphertext, sharedSecret } = await enc.encapsulate(publicKey, rng);
      for (const dec of [kem, nobleMlKem])
        for (const r of records) expect(hex(await dec.decapsulate(ciphertext, r))).toBe(hex(sharedSecret));
      // implicit rejection: a changed ciphertext gives another secret, the same on both paths
      const bad = ciphertext.slice();
      bad[0]! ^= 1;
      const [a, b] = await Promise.all([
        kem.decapsulate(bad, { publicKey, seed }),
        nobleMlKem.decapsulate(bad, { publicKey, secretKey }),
      ]);
      expect(hex(a)).toBe(hex(b));
      expect(hex(a)).not.toBe(hex(sharedSecret));
    }
    // the WebCrypto path imported the seed for decapsulation; an old record (no seed) went to noble
    // 2 encapsulations × (2 records with a seed + 1 changed ciphertext)
    if (calls.size) expect(calls.get('decapsulateBits')! - before).toBe(6);
    for (const dec of [kem, nobleMlKem]) {
      await expect(dec.decapsulate(new Uint8Array(1568), { publicKey })).rejects.toSatisfy((e) =>
        is(e, ErrorCode.InvalidKey),
      );
      await expect(dec.decapsulate(new Uint8Array(10), { publicKey, seed })).rejects.toSatisfy((e) =>
        is(e, ErrorCode.Decode),
      );
    }
  });

  it('an encapsulation key with a coefficient ≥ q is invalid_key on every path and rng', async () => {
    const { kem } = await webcrypto();
    const bad = new Uint8Array(1568).fill(0xff);
    for (const path of [kem, nobleMlKem])
      for (const rng of [platformRng, seededRng('x')])
        await expect(path.encapsulate(bad, rng)).rejects.toSatisfy((e) => is(e, ErrorCode.InvalidKey));
  });

  it("the curves carry their ML-KEM path: WebCrypto's when it passes the probe, noble when forced or absent", async () => {
    const { subtle } = mlkemSubtleShim();
    expect(nobleCurves.mlkem.name).toBe('noble');
    expect((await webCryptoCurves(subtle))!.mlkem.name).toBe('webcrypto');
    expect((await webCryptoCurves(subtle, { mlkem: 'noble' }))!.mlkem.name).toBe('noble');
    // a platform whose ML-KEM disagrees with noble fails the probe: noble is used
    const wrong = new Proxy(subtle, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target) as unknown;
        if (prop === 'exportKey')
          return async (f: string, k: CryptoKey) => {
            const got = await (v as SubtleCrypto['exportKey'])(f as 'raw', k);
            if (f !== 'raw-public') return got;
            const out = new Uint8Array(got as ArrayBuffer);
            out[0]! ^= 1;
            return out.buffer;
          };
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    expect(await webCryptoMlKem(wrong)).toBeNull();
    expect((await webCryptoCurves(wrong))!.mlkem.name).toBe('noble');
  });
});
