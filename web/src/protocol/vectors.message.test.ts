/**
 * Published known-answer vector for the padded message layer (web/src/protocol/vectors/message.json):
 * regenerated from its seed and compared byte for byte on both curve paths; then the committed messages are
 * checked layer by layer from the listed inputs alone — the framing, the AEAD over pad(plaintext), and
 * Bob's and Alice's `decrypt` with their recorded random draws. `UPDATE_VECTORS=1` rewrites the file.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { concat, fromHex, toHex } from './bytes.js';
import { decodeDeviceCertificate } from './identity.js';
import { x25519FromSecret } from './keys.js';
import { pad, unpad } from './padding.js';
import { decodeBundle, verifyBundle } from './prekeys.js';
import { aesGcmDecrypt, type Curve25519, mlkemKeygen, nobleCurves } from './primitives.js';
import {
  type DecryptContext,
  decodeMessage,
  decrypt,
  emptySessionRecord,
  encrypt,
  initiateSession,
  MessageType,
} from './session.js';
import { replayRng, webCryptoTestCurves } from './testing.js';
import { generateMessageVector } from './vectors/generate-message.js';

const file = fileURLToPath(new URL('./vectors/message.json', import.meta.url));
const serialize = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

let paths: Curve25519[];
let generated: unknown;
// biome-ignore lint/suspicious/noExplicitAny: JSON fixture
let v: any;
beforeAll(async () => {
  paths = [nobleCurves, (await webCryptoTestCurves())!];
  generated = await generateMessageVector(paths[1]!);
  if (process.env.UPDATE_VECTORS === '1') writeFileSync(file, serialize(generated));
  v = JSON.parse(readFileSync(file, 'utf8'));
});

describe('padded message layer known-answer vector', () => {
  it('message.json regenerates byte for byte from its seed, on both curve paths', async () => {
    expect(serialize(generated)).toBe(readFileSync(file, 'utf8'));
    expect(serialize(await generateMessageVector(nobleCurves))).toBe(serialize(generated));
  });

  it('its inputs are the ones listed: certificates carry createdAt, the bundle the ids and lastResort flag', () => {
    for (const who of [v.alice, v.bob]) {
      expect(decodeDeviceCertificate(fromHex(who.certificate)).createdAt).toBe(who.createdAt);
    }
    const bundle = decodeBundle(fromHex(v.bob.bundle));
    expect([bundle.signedPrekey.id, bundle.oneTimePrekey?.id, bundle.kemPrekey.id]).toEqual([
      v.bob.signedPrekey.id,
      v.bob.oneTimePrekey.id,
      v.bob.kemPrekey.id,
    ]);
    expect(bundle.kemPrekey.lastResort).toBe(v.bob.kemPrekey.lastResort);
    expect(toHex(bundle.kemPrekey.publicKey)).toBe(toHex(mlkemKeygen(fromHex(v.bob.kemPrekey.seed)).publicKey));
  });

  it('each message is version ‖ type [‖ bytes init] ‖ header ‖ AES-256-GCM(key, nonce, pad(plaintext), AD ‖ header)', () => {
    expect(v.messages.map((m: { type: number }) => m.type)).toEqual([
      MessageType.PreKey,
      MessageType.PreKey,
      MessageType.Message,
      MessageType.Message,
    ]);
    for (const m of v.messages) {
      const d = decodeMessage(fromHex(m.message));
      expect([d.type, d.init !== null]).toEqual([m.type, m.type === MessageType.PreKey]);
      expect(m.padded).toBe(toHex(pad(fromHex(m.plaintext))));
      const opened = aesGcmDecrypt(
        fromHex(m.messageKey),
        fromHex(m.nonce),
        d.ratchet.ciphertext,
        concat(fromHex(v.associatedData), d.ratchet.header),
      );
      expect(toHex(opened)).toBe(m.padded);
      expect(toHex(unpad(opened))).toBe(m.plaintext);
    }
    const lengths = v.messages.map((m: { padded: string }) => m.padded.length / 2);
    expect(lengths).toEqual([160, 320, 160, 160]);
  });

  it('Bob and Alice decrypt the committed messages from the listed secrets and random draws (both paths)', async () => {
    const byLabel = new Map<string, { message: string; plaintext: string }>(
      v.messages.map((m: { label: string }) => [m.label, m]),
    );
    for (const curves of paths) {
      const bob = v.bob;
      const keys = {
        signedPrekey: await x25519FromSecret(curves, fromHex(bob.signedPrekey.secret)),
        oneTimePrekey: await x25519FromSecret(curves, fromHex(bob.oneTimePrekey.secret)),
        kemPrekey: mlkemKeygen(fromHex(bob.kemPrekey.seed)),
      };
      const ctxB: DecryptContext = {
        ours: {
          userId: 'bob',
          deviceId: 'b1',
          identityKey: await x25519FromSecret(curves, fromHex(bob.identitySecret)),
        },
        remote: { userId: 'alice', deviceId: 'a1' },
        responderKeys: () => keys,
        isTrustedIdentity: (k) => toHex(k) === v.alice.identityPublic,
      };
      const rngB = replayRng(bob.randomDraws);
      let recB = emptySessionRecord();
      for (const label of ['m0', 'm1', 'm3']) {
        const m = byLabel.get(label)!;
        const r = await decrypt(curves, rngB, recB, fromHex(m.message), ctxB, v.messages[0].now);
        expect(toHex(r.plaintext)).toBe(m.plaintext);
        if (label === 'm0') expect([r.consumedOneTimePrekeyId, r.consumedKemPrekeyId]).toEqual([2, 3]);
        recB = r.record;
      }
      // Alice re-creates her messages byte for byte from the bundle and her draws, and opens Bob's reply.
      const rngA = replayRng(v.alice.randomDraws);
      const ours = {
        userId: 'alice',
        deviceId: 'a1',
        identityKey: await x25519FromSecret(curves, fromHex(v.alice.identitySecret)),
      };
      const now = v.messages[0].now;
      const bundle = await verifyBundle(curves, decodeBundle(fromHex(bob.bundle)), fromHex(bob.userIdentityPublic));
      let recA = await initiateSession(curves, rngA, ours, bundle, now);
      for (const label of ['m0', 'm1']) {
        const m = byLabel.get(label)!;
        const e = encrypt(recA, fromHex(m.plaintext), now);
        expect(toHex(e.message)).toBe(m.message);
        recA = e.record;
      }
      const ctxA: DecryptContext = { ...ctxB, ours, remote: { userId: 'bob', deviceId: 'b1' } };
      const reply = await decrypt(curves, rngA, recA, fromHex(byLabel.get('m2')!.message), ctxA, now);
      expect(toHex(reply.plaintext)).toBe(byLabel.get('m2')!.plaintext);
      expect(toHex(encrypt(reply.record, fromHex(byLabel.get('m3')!.plaintext), now).message)).toBe(
        byLabel.get('m3')!.message,
      );
    }
  });
});
