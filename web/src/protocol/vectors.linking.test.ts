/**
 * Published known-answer vectors for linking (web/src/protocol/vectors/linking.json): regenerated from fixed
 * seeds and compared byte for byte on both curve paths; then the committed link code, provisioning message,
 * channel frames and device name are opened from the recorded inputs alone. `UPDATE_VECTORS=1` rewrites it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { accountKeys, openDeviceName, selfConversationId } from './account-keys.js';
import { fromHex, toHex } from './bytes.js';
import { decodeHistoryRecords } from './history.js';
import { x25519FromSecret } from './keys.js';
import { decodeLinkCode } from './link-code.js';
import { type Curve25519, nobleCurves } from './primitives.js';
import { openProvisioning } from './provisioning.js';
import { webCryptoTestCurves } from './testing.js';
import { Direction, openTransferFrame, transferKeys } from './transfer.js';
import { generateLinkingVectors, type LinkingVectorFiles } from './vectors/generate-linking.js';

const dir = fileURLToPath(new URL('./vectors/', import.meta.url));
const serialize = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
// biome-ignore lint/suspicious/noExplicitAny: JSON fixture
const load = (): any => JSON.parse(readFileSync(`${dir}linking.json`, 'utf8'));

let paths: Curve25519[];
let generated: LinkingVectorFiles;
beforeAll(async () => {
  paths = [nobleCurves, (await webCryptoTestCurves())!];
  generated = await generateLinkingVectors(paths[1]!);
  if (process.env.UPDATE_VECTORS === '1') writeFileSync(`${dir}linking.json`, serialize(generated['linking.json']));
});

describe('linking known-answer vectors', () => {
  it('linking.json regenerates byte for byte from its seeds', () => {
    expect(serialize(generated['linking.json'])).toBe(readFileSync(`${dir}linking.json`, 'utf8'));
  });

  it('noble and webcrypto generate identical vectors', async () => {
    expect(serialize(await generateLinkingVectors(nobleCurves))).toBe(serialize(generated));
  });

  it('the committed link code decodes to its inputs', () => {
    const v = load().linkCode;
    const c = decodeLinkCode(v.text);
    expect(c.origin).toBe(v.origin);
    expect(toHex(c.channelId)).toBe(v.channelId);
    expect(toHex(c.ephemeralKey)).toBe(v.ephemeralPublic);
  });

  it('the committed provisioning message opens with the recorded new-device secret (both paths)', async () => {
    const v = load().provisioning;
    for (const curves of paths) {
      const eph = await x25519FromSecret(curves, fromHex(v.newDeviceSecret));
      const { content, channelKey } = await openProvisioning(curves, eph, fromHex(v.channelId), fromHex(v.sealed));
      expect(toHex(channelKey)).toBe(v.channelKey);
      expect(toHex(channelKey)).toBe(v.okm.slice(88));
      expect(toHex(content.userIdentity.publicKey)).toBe(v.content.userIdentityPublic);
      expect(toHex(content.linkingToken)).toBe(v.content.linkingToken);
      expect(content.deviceName).toBe(v.content.deviceName);
      expect(content.contacts.map((c) => toHex(c.identityKey))).toEqual(
        v.content.contacts.map((c: { identityKey: string }) => c.identityKey),
      );
    }
  });

  it('the committed frames open in order with keys derived from the channel key', () => {
    const v = load().transfer;
    const keys = transferKeys(fromHex(v.channelKey), fromHex(v.channelId));
    expect(toHex(keys.toNew)).toBe(v.keyToNew);
    expect(toHex(keys.toExisting)).toBe(v.keyToExisting);
    for (const f of v.toNew) {
      const frame = openTransferFrame(keys, Direction.ToNew, f.seq, fromHex(f.sealed));
      if (frame.type === 'history_chunk') {
        expect(toHex(frame.records)).toBe(v.chunk);
        expect(decodeHistoryRecords(frame.records).records.length).toBe(v.records.length);
      } else expect(frame).toEqual(f.frame);
    }
    for (const f of v.toExisting)
      expect(openTransferFrame(keys, Direction.ToExisting, f.seq, fromHex(f.sealed))).toEqual(f.frame);
  });

  it('the committed device name and sync conversation id follow from the identity secret', () => {
    const v = load().accountKeys;
    const ak = accountKeys(fromHex(v.userIdentitySecret));
    expect(toHex(ak.nameKey)).toBe(v.nameKey);
    expect(toHex(ak.syncKey)).toBe(v.syncKey);
    const n = v.deviceName;
    expect(openDeviceName(ak, n.userId, n.deviceId, fromHex(n.sealed))).toBe(n.name);
    expect(selfConversationId(ak, 'alice')).toBe(v.selfConversationId);
  });
});
