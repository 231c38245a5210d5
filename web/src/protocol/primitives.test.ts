import { describe, expect, it } from 'vitest';
import { ErrorCode, is } from './errors.js';
import {
  b64uEncode,
  type Curve25519,
  hkdfSha256,
  hkdfSha256ZeroSalt,
  hmacSha256,
  hmacSha256Prepare,
  hmacSha256Prepared,
  nobleCurves,
  webCryptoCurves,
  X25519_BASE_POINT,
} from './primitives.js';
import { seededRng } from './testing.js';

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
