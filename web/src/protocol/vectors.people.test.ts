/**
 * Published known-answer vectors for profiles and private settings (web/src/protocol/vectors/people.json):
 * regenerated from the seed and compared byte for byte, then every sealed value is opened from the listed
 * inputs alone — the profile cipher key by HKDF, the AEAD by hand (nonce, AAD, padding) — and by the
 * module's own open functions. `UPDATE_VECTORS=1` rewrites the file.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex, utf8, Writer } from './bytes.js';
import { LABEL_PRIVATE_SETTINGS_AAD, LABEL_PROFILE, LABEL_PROFILE_AAD } from './constants.js';
import { aesGcmDecrypt, hkdfSha256ZeroSalt } from './primitives.js';
import { openPrivateSettings, privateSettingsKey } from './private-settings.js';
import { decodeProfileKeyMessage, openProfile } from './profile.js';
import { generatePeopleVector } from './vectors/generate-people.js';

const file = fileURLToPath(new URL('./vectors/people.json', import.meta.url));
const serialize = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
const generated = generatePeopleVector();
if (process.env.UPDATE_VECTORS === '1') writeFileSync(file, serialize(generated));
// biome-ignore lint/suspicious/noExplicitAny: JSON fixture
const v: any = JSON.parse(readFileSync(file, 'utf8'));

describe('profile and private-settings known-answer vectors', () => {
  it('people.json regenerates byte for byte from its seed', () => {
    expect(serialize(generated)).toBe(readFileSync(file, 'utf8'));
  });

  it('each sealed profile opens by hand from the listed key, nonce and user id', () => {
    const k = hkdfSha256ZeroSalt(fromHex(v.profileKey), utf8(LABEL_PROFILE), 32);
    expect(toHex(k)).toBe(v.profileCipherKey);
    for (const p of v.profiles) {
      const sealed = fromHex(p.sealed);
      expect(sealed[0]).toBe(1);
      const ad = new Writer().str(LABEL_PROFILE_AAD).str(v.userId).finish();
      const padded = aesGcmDecrypt(k, sealed.subarray(1, 13), sealed.subarray(13), ad);
      expect(padded.length).toBe(p.paddedLength);
      const content = fromHex(p.content);
      expect(toHex(padded.subarray(0, content.length))).toBe(p.content);
      expect(padded[content.length]).toBe(0x80);
      expect(padded.subarray(content.length + 1).every((b) => b === 0)).toBe(true);
      const opened = openProfile(fromHex(v.profileKey), v.userId, sealed);
      expect(opened.name).toBe(p.inputs.name);
      expect(opened.updatedAt).toBe(p.inputs.updatedAt);
      expect(opened.avatar ? toHex(opened.avatar.bytes) : null).toBe(p.inputs.avatar);
    }
    const m = decodeProfileKeyMessage(fromHex(v.profileKeyMessage.bytes));
    expect(toHex(m.profileKey)).toBe(v.profileKey);
    expect(m.profileUpdatedAt).toBe(v.profileKeyMessage.profileUpdatedAt);
  });

  it('the sealed settings open by hand from the user identity seed and the revision in clear', () => {
    const s = v.settings;
    const k = privateSettingsKey(fromHex(s.userIdentitySeed));
    expect(toHex(k)).toBe(s.key);
    const sealed = fromHex(s.sealed);
    const ad = new Writer().str(LABEL_PRIVATE_SETTINGS_AAD).str(v.userId).u64(s.revision).finish();
    expect(toHex(sealed.subarray(1, 9))).toBe(s.revision.toString(16).padStart(16, '0'));
    const padded = aesGcmDecrypt(k, sealed.subarray(9, 21), sealed.subarray(21), ad);
    expect(toHex(padded.subarray(0, s.content.length / 2))).toBe(s.content);
    const { revision, settings } = openPrivateSettings(k, v.userId, sealed);
    expect(revision).toBe(s.revision);
    expect(toHex(settings.profileKey!)).toBe(v.profileKey);
    expect(settings.entries.map((e) => e.target).sort()).toEqual(
      s.entries.map((e: { target: string }) => e.target).sort(),
    );
  });
});
