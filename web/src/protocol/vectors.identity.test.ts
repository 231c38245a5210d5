/**
 * Published known-answer vectors (web/src/protocol/vectors/{pqxdh,device-list,membership,fingerprint}.json):
 * regenerated from fixed seeds and compared byte for byte; then the committed files are decoded and
 * verified independently on both curve paths. `UPDATE_VECTORS=1` rewrites the files.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { fromHex, toHex } from './bytes.js';
import { compareScanned, safetyNumber } from './fingerprint.js';
import {
  decodeDeviceCertificate,
  decodeDeviceList,
  verifyDeviceList,
  verifyDeviceListUpdate,
  verifyLoginChallenge,
} from './identity.js';
import { theirEd25519, theirX25519, x25519FromSecret } from './keys.js';
import { decodeMembershipEntry, entryHash, verifyLog } from './membership.js';
import { decodePqxdhInit, pqxdhRespond } from './pqxdh.js';
import { decodeBundle, verifyBundle } from './prekeys.js';
import { type Curve25519, mlkemKeygen, nobleCurves, sha256 } from './primitives.js';
import { webCryptoTestCurves } from './testing.js';
import { generateIdentityVectors, type VectorFiles } from './vectors/generate-identity.js';

const dir = fileURLToPath(new URL('./vectors/', import.meta.url));
const serialize = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
// biome-ignore lint/suspicious/noExplicitAny: JSON fixtures
const load = (name: string): any => JSON.parse(readFileSync(dir + name, 'utf8'));

let paths: Curve25519[];
let generated: VectorFiles;
beforeAll(async () => {
  paths = [nobleCurves, (await webCryptoTestCurves())!];
  generated = await generateIdentityVectors(paths[1]!);
  if (process.env.UPDATE_VECTORS === '1') {
    for (const [name, v] of Object.entries(generated)) writeFileSync(dir + name, serialize(v));
  }
});

describe('identity known-answer vectors', () => {
  for (const name of ['pqxdh.json', 'device-list.json', 'membership.json', 'fingerprint.json'] as const) {
    it(`${name} regenerates byte for byte from its seeds`, () => {
      expect(serialize(generated[name])).toBe(readFileSync(dir + name, 'utf8'));
    });
  }

  it('noble and webcrypto generate identical vectors', async () => {
    const viaNoble = await generateIdentityVectors(nobleCurves);
    expect(serialize(viaNoble)).toBe(serialize(generated));
  });

  it('committed device lists, certificates and login signature verify on both paths', async () => {
    const v = load('device-list.json');
    for (const curves of paths) {
      const l1 = await verifyDeviceList(curves, decodeDeviceList(fromHex(v.listV1)), fromHex(v.userIdentityPublic));
      const l2 = await verifyDeviceListUpdate(curves, l1, decodeDeviceList(fromHex(v.listV2)));
      expect(l2.devices.map((d) => d.deviceId)).toEqual(['b1', 'b2']);
      for (const d of v.devices) {
        expect(toHex(decodeDeviceCertificate(fromHex(d.certificate)).identityKey)).toBe(d.identityPublic);
        expect(toHex(await curves.ed25519PublicKey(fromHex(d.signingSecret)))).toBe(d.signingPublic);
      }
      const lg = v.login;
      const signer = fromHex(v.devices[0].signingPublic);
      expect(
        await verifyLoginChallenge(
          curves,
          signer,
          fromHex(lg.challenge),
          lg.userId,
          lg.deviceId,
          fromHex(lg.signature),
        ),
      ).toBe(true);
    }
  });

  it('committed PQXDH cases: the responder derives the published SK and AD on both paths', async () => {
    const v = load('pqxdh.json');
    const r = v.responder;
    const kem = mlkemKeygen(fromHex(r.kemPrekey.seed));
    expect(toHex(sha256(kem.publicKey))).toBe(r.kemPrekey.publicKeySha256);
    for (const curves of paths) {
      const ours = {
        userId: 'bob',
        deviceId: r.deviceId,
        identityKey: await x25519FromSecret(curves, fromHex(r.identitySecret)),
      };
      const spk = await x25519FromSecret(curves, fromHex(r.signedPrekey.secret));
      const opk = await x25519FromSecret(curves, fromHex(r.oneTimePrekey.secret));
      for (const c of v.cases) {
        const bundle = await verifyBundle(curves, decodeBundle(fromHex(c.bundle)), fromHex(r.userIdentityPublic));
        expect(bundle.signedPrekey.id).toBe(r.signedPrekey.id);
        const init = decodePqxdhInit(fromHex(c.init));
        expect(toHex(init.ephemeralKey)).toBe(toHex(await curves.x25519PublicKey(fromHex(c.ephemeralSecret))));
        const res = await pqxdhRespond(
          curves,
          ours,
          { signedPrekey: spk, oneTimePrekey: c.oneTimePrekey ? opk : null, kemPrekey: kem },
          init,
          theirX25519(fromHex(v.initiator.identityPublic)),
        );
        expect(toHex(res.sharedSecret)).toBe(c.sharedSecret);
        expect(toHex(res.associatedData)).toBe(c.associatedData);
      }
    }
  });

  it('committed membership log verifies on both paths to the published state', async () => {
    const v = load('membership.json');
    const entries = v.entries.map((e: { encoded: string }) => decodeMembershipEntry(fromHex(e.encoded)));
    for (const [i, e] of entries.entries()) expect(toHex(entryHash(e))).toBe(v.entries[i].hash);
    const keys = new Map<string, string>(
      Object.entries(v.authors).map(([u, d]) => [u, (d as { signingPublic: string }).signingPublic]),
    );
    for (const curves of paths) {
      const state = await verifyLog(curves, entries, (u) =>
        keys.has(u) ? theirEd25519(fromHex(keys.get(u)!)) : undefined,
      );
      expect(state.seq).toBe(v.finalState.seq);
      expect(state.title).toBe(v.finalState.title);
      expect(state.timer).toBe(v.finalState.timer);
      expect(toHex(state.headHash)).toBe(v.finalState.headHash);
      expect(Object.fromEntries([...state.members].sort())).toEqual(v.finalState.members);
    }
  });

  it('the listed inputs (createdAt, lastResort, every membership field) are the ones the encoded outputs carry', () => {
    const dl = load('device-list.json');
    const pq = load('pqxdh.json');
    const mb = load('membership.json');
    for (const d of [...dl.devices, pq.initiator, pq.responder, ...Object.values(mb.authors)] as {
      certificate: string;
      createdAt: number;
    }[]) {
      expect(decodeDeviceCertificate(fromHex(d.certificate)).createdAt).toBe(d.createdAt);
    }
    for (const c of pq.cases) {
      const k = decodeBundle(fromHex(c.bundle)).kemPrekey;
      expect([k.id, k.lastResort]).toEqual([pq.responder.kemPrekey.id, pq.responder.kemPrekey.lastResort]);
    }
    for (const e of mb.entries) {
      const { signature: _s, prevHash: _p, conversationId, ...fields } = decodeMembershipEntry(fromHex(e.encoded));
      expect([conversationId, fields]).toEqual([mb.conversationId, e.inputs]);
    }
  });

  it('committed safety number recomputes and the two QR payloads match each other', () => {
    const v = load('fingerprint.json');
    const sn = safetyNumber(fromHex(v.alice.userIdentityPublic), 'alice', fromHex(v.bob.userIdentityPublic), 'bob');
    expect(sn.digits).toBe(v.digits);
    expect(toHex(sn.scannable)).toBe(v.alice.scannable);
    expect(compareScanned(fromHex(v.alice.scannable), fromHex(v.bob.scannable))).toBe(true);
  });
});
