import { describe, expect, it } from 'vitest';
import { toHex } from '../web/src/protocol/bytes.js';
import { defaultCurves, nobleCurves, webCryptoCurves } from '../web/src/protocol/primitives.js';
import { seededRng } from '../web/src/protocol/testing.js';

describe('curve paths inside workerd', () => {
  it("workerd's WebCrypto passes every start-up probe (cofactorless Ed25519 included) and is the Worker's curve path", async () => {
    expect((await webCryptoCurves())?.name).toBe('webcrypto');
    expect((await defaultCurves()).name).toBe('webcrypto');
  });

  it('signatures made and verified by workerd match noble byte for byte', async () => {
    const wc = (await webCryptoCurves())!;
    const rng = seededRng('workerd curves');
    for (let i = 0; i < 4; i++) {
      const [seed, msg] = [rng(32), rng(40 + i)];
      const [pk, sig] = await Promise.all([wc.ed25519PublicKey(seed), wc.ed25519Sign(seed, msg)]);
      expect(toHex(sig)).toBe(toHex(await nobleCurves.ed25519Sign(seed, msg)));
      expect([await wc.ed25519Verify(pk, msg, sig), await nobleCurves.ed25519Verify(pk, msg, sig)]).toEqual([
        true,
        true,
      ]);
    }
  });
});
