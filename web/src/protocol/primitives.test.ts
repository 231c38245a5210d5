import { describe, expect, it } from 'vitest';
import { nobleCurves, webCryptoCurves } from './primitives.js';

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
});
