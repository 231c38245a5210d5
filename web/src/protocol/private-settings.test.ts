import { describe, expect, it } from 'vitest';
import { concat, Writer } from './bytes.js';
import { LABEL_PRIVATE_SETTINGS_AAD, MAX_SETTINGS_ENTRIES, SETTINGS_BUCKETS } from './constants.js';
import { is } from './errors.js';
import { aesGcmEncrypt } from './primitives.js';
import {
  decodeSettingsContent,
  encodeSettingsContent,
  openPrivateSettings,
  type PrivateSettings,
  privateSettingsKey,
  SEALED_SETTINGS_LENGTHS,
  SETTING_KIND,
  sealedSettingsRevision,
  sealPrivateSettings,
} from './private-settings.js';
import { seededRng } from './testing.js';

const rng = seededRng('private settings tests');
const key = privateSettingsKey(rng(32));

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (is(e)) return e.code;
    throw e;
  }
  return 'ok';
}

const sample: PrivateSettings = {
  profileKey: rng(32),
  entries: [
    { kind: SETTING_KIND.muteConversation, target: 'c1', at: 3, value: 1_800_000_000_000 },
    { kind: SETTING_KIND.blockUser, target: 'u_mallory', at: 2, value: 0 },
    { kind: SETTING_KIND.acceptUser, target: 'u_bob', at: 1, value: 0 },
    { kind: SETTING_KIND.blockUser, target: 'u_eve', at: 2, value: 0 },
  ],
};

describe('private settings', () => {
  it('settings open for their user at their revision, entries in canonical order', () => {
    const sealed = sealPrivateSettings(rng, key, 'u_alice', 7, sample);
    expect(sealedSettingsRevision(sealed)).toBe(7);
    const { revision, settings } = openPrivateSettings(key, 'u_alice', sealed);
    expect(revision).toBe(7);
    expect(settings.profileKey).toEqual(sample.profileKey);
    expect(settings.entries.map((e) => `${e.kind}:${e.target}`)).toEqual(['1:u_eve', '1:u_mallory', '4:c1', '5:u_bob']);
  });

  it('another user, another key, a rewritten revision or a flipped bit fail as decryption_failed', () => {
    const sealed = sealPrivateSettings(rng, key, 'u_alice', 3, sample);
    expect(code(() => openPrivateSettings(key, 'u_bob', sealed))).toBe('decryption_failed');
    expect(code(() => openPrivateSettings(privateSettingsKey(rng(32)), 'u_alice', sealed))).toBe('decryption_failed');
    const bumped = sealed.slice();
    bumped[8] = 4; // revision 3 → 4 in clear: the AAD no longer matches
    expect(sealedSettingsRevision(bumped)).toBe(4);
    expect(code(() => openPrivateSettings(key, 'u_alice', bumped))).toBe('decryption_failed');
    const t = sealed.slice();
    t[t.length - 1]! ^= 1;
    expect(code(() => openPrivateSettings(key, 'u_alice', t))).toBe('decryption_failed');
  });

  it('the server sees the revision and a size class, and refuses every other shape', () => {
    const small = sealPrivateSettings(rng, key, 'u', 1, { profileKey: null, entries: [] });
    expect(small.length).toBe(SEALED_SETTINGS_LENGTHS[0]);
    const many = Array.from({ length: MAX_SETTINGS_ENTRIES }, (_, i) => ({
      kind: SETTING_KIND.acceptUser,
      target: `user-${i.toString().padStart(17, '0')}`,
      at: i,
      value: 0,
    }));
    expect(SEALED_SETTINGS_LENGTHS).toContain(
      sealPrivateSettings(rng, key, 'u', 2, { profileKey: null, entries: many }).length,
    );
    expect(SEALED_SETTINGS_LENGTHS).toEqual(SETTINGS_BUCKETS.map((b) => b + 37));
    expect(sealedSettingsRevision(new Uint8Array(100))).toBeNull();
    const zeroRev = small.slice();
    zeroRev.fill(0, 1, 9);
    expect(sealedSettingsRevision(zeroRev)).toBeNull();
    const v2 = small.slice();
    v2[0] = 2;
    expect(sealedSettingsRevision(v2)).toBeNull();
    expect(code(() => openPrivateSettings(key, 'u', v2))).toBe('decode');
    expect(code(() => sealPrivateSettings(rng, key, 'u', 0, sample))).toBe('invalid_structure');
  });

  it('entries: at most MAX_SETTINGS_ENTRIES, no duplicates, ids of 1-64 bytes', () => {
    const entry = (target: string) => ({ kind: 1, target, at: 0, value: 0 });
    const tooMany = Array.from({ length: MAX_SETTINGS_ENTRIES + 1 }, (_, i) => entry(`u${i}`));
    expect(code(() => encodeSettingsContent({ profileKey: null, entries: tooMany }))).toBe('limit_exceeded');
    expect(code(() => encodeSettingsContent({ profileKey: null, entries: [entry('a'), entry('a')] }))).toBe(
      'invalid_structure',
    );
    expect(code(() => encodeSettingsContent({ profileKey: null, entries: [entry('')] }))).toBe('invalid_structure');
    expect(code(() => encodeSettingsContent({ profileKey: null, entries: [entry('x'.repeat(65))] }))).toBe(
      'invalid_structure',
    );
    // Decoding refuses an out-of-order list and a count beyond the maximum before reading entries.
    const outOfOrder = new Writer().u8(1).bool(false).u32(2);
    outOfOrder.u8(1).str('b').u64(0).u64(0).u8(1).str('a').u64(0).u64(0);
    expect(code(() => decodeSettingsContent(outOfOrder.finish()))).toBe('decode');
    expect(
      code(() =>
        decodeSettingsContent(
          new Writer()
            .u8(1)
            .bool(false)
            .u32(MAX_SETTINGS_ENTRIES + 1)
            .finish(),
        ),
      ),
    ).toBe('decode');
  });

  it('entry kinds this client does not know survive a read and a write', () => {
    const future = { profileKey: null, entries: [{ kind: 200, target: 'something', at: 9, value: 42 }] };
    const back = decodeSettingsContent(encodeSettingsContent(future));
    expect(back.entries).toEqual(future.entries);
  });

  it('padding is strict: the smallest bucket, 0x80 then zeros', () => {
    const plain = encodeSettingsContent({ profileKey: null, entries: [] });
    const seal = (padded: Uint8Array) => {
      const nonce = rng(12);
      const ad = new Writer().str(LABEL_PRIVATE_SETTINGS_AAD).str('u').u64(1).finish();
      return concat(new Writer().u8(1).u64(1).finish(), nonce, aesGcmEncrypt(key, nonce, padded, ad));
    };
    const big = new Uint8Array(4096);
    big.set(plain);
    big[plain.length] = 0x80;
    expect(code(() => openPrivateSettings(key, 'u', seal(big)))).toBe('decode');
    const ok = big.slice(0, 1024);
    expect(openPrivateSettings(key, 'u', seal(ok)).settings.entries).toEqual([]);
  });
});
