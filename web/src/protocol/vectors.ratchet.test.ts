/**
 * Published known-answer vectors (web/src/protocol/vectors/{ratchet,sender-keys}.json): regenerated from
 * fixed seeds and compared byte for byte on both curve paths; then the committed messages are decrypted
 * independently from the recorded secrets. `UPDATE_VECTORS=1` rewrites the files.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { fromHex, toHex } from './bytes.js';
import { x25519FromSecret } from './keys.js';
import { type Curve25519, nobleCurves } from './primitives.js';
import { initBob, ratchetDecrypt } from './ratchet.js';
import {
  decodeSenderKeyDistribution,
  emptySenderKeyRecord,
  processSenderKeyDistribution,
  senderDecrypt,
} from './sender-keys.js';
import { replayRng, webCryptoTestCurves } from './testing.js';
import { generateRatchetVectors, type RatchetVectorFiles } from './vectors/generate-ratchet.js';

const dir = fileURLToPath(new URL('./vectors/', import.meta.url));
const serialize = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
// biome-ignore lint/suspicious/noExplicitAny: JSON fixtures
const load = (name: string): any => JSON.parse(readFileSync(dir + name, 'utf8'));

let paths: Curve25519[];
let generated: RatchetVectorFiles;
beforeAll(async () => {
  paths = [nobleCurves, (await webCryptoTestCurves())!];
  generated = await generateRatchetVectors(paths[1]!);
  if (process.env.UPDATE_VECTORS === '1') {
    for (const [name, v] of Object.entries(generated)) writeFileSync(dir + name, serialize(v));
  }
});

describe('ratchet and sender-key known-answer vectors', () => {
  for (const name of ['ratchet.json', 'sender-keys.json'] as const) {
    it(`${name} regenerates byte for byte from its seeds`, () => {
      expect(serialize(generated[name])).toBe(readFileSync(dir + name, 'utf8'));
    });
  }

  it('noble and webcrypto generate identical vectors', async () => {
    expect(serialize(await generateRatchetVectors(nobleCurves))).toBe(serialize(generated));
  });

  it('committed ratchet messages decrypt for Bob from the recorded secrets (both paths)', async () => {
    const v = load('ratchet.json');
    const byLabel = new Map<string, { header: string; ciphertext: string; plaintext: string }>(
      v.messages.map((m: { label: string }) => [m.label, m]),
    );
    for (const curves of paths) {
      const spk = await x25519FromSecret(curves, fromHex(v.bobSignedPrekey.secret));
      expect(toHex(spk.publicKey)).toBe(v.bobSignedPrekey.public);
      const rng = replayRng(v.bobRatchetSecrets);
      let bob = initBob(fromHex(v.sharedSecret), fromHex(v.associatedData), spk);
      for (const label of ['a0', 'a2', 'a1']) {
        const m = byLabel.get(label)!;
        const r = await ratchetDecrypt(curves, rng, bob, {
          header: fromHex(m.header),
          ciphertext: fromHex(m.ciphertext),
        });
        expect(toHex(r.plaintext)).toBe(m.plaintext);
        bob = r.state;
      }
    }
  });

  it('committed sender-key messages decrypt from the committed distribution (both paths)', async () => {
    const v = load('sender-keys.json');
    for (const curves of paths) {
      let rec = processSenderKeyDistribution(
        emptySenderKeyRecord(),
        decodeSenderKeyDistribution(fromHex(v.distribution)),
        v.conversationId,
      );
      for (const m of [...v.messages].reverse()) {
        const r = await senderDecrypt(curves, rec, fromHex(m.message));
        expect(toHex(r.plaintext)).toBe(m.plaintext);
        rec = r.record;
      }
    }
  });
});
