import { describe, expect, it } from 'vitest';
import { concat, utf8, Writer } from './bytes.js';
import {
  LABEL_PROFILE,
  LABEL_PROFILE_AAD,
  MAX_AVATAR_LEN,
  MAX_PROFILE_NAME_LEN,
  PROFILE_BUCKETS,
} from './constants.js';
import { is } from './errors.js';
import { aesGcmEncrypt, hkdfSha256ZeroSalt } from './primitives.js';
import {
  type Avatar,
  decodeProfileContent,
  decodeProfileKeyMessage,
  displayNameProblem,
  encodeProfileContent,
  encodeProfileKeyMessage,
  generateProfileKey,
  isSealedProfileShape,
  openProfile,
  PROFILE_KEY_MESSAGE_LEN,
  SEALED_PROFILE_LENGTHS,
  sealProfile,
} from './profile.js';
import { seededRng } from './testing.js';

const rng = seededRng('profile tests');
const key = generateProfileKey(rng);
const jpeg = (n: number): Avatar => ({
  type: 'jpeg',
  bytes: concat(Uint8Array.of(0xff, 0xd8, 0xff), new Uint8Array(n - 3)),
});
const webp = (n: number): Avatar => {
  const b = new Uint8Array(n);
  b.set(utf8('RIFF'));
  b.set(utf8('WEBP'), 8);
  return { type: 'webp', bytes: b };
};

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (is(e)) return e.code;
    throw e;
  }
  return 'ok';
}

/** Seals arbitrary padded bytes the way sealProfile does, to build profiles the encoder would refuse. */
function sealRaw(k: Uint8Array, userId: string, padded: Uint8Array): Uint8Array {
  const nonce = rng(12);
  const ad = new Writer().str(LABEL_PROFILE_AAD).str(userId).finish();
  return concat(
    Uint8Array.of(1),
    nonce,
    aesGcmEncrypt(hkdfSha256ZeroSalt(k, utf8(LABEL_PROFILE), 32), nonce, padded, ad),
  );
}
function padTo(plain: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  out.set(plain);
  out[plain.length] = 0x80;
  return out;
}

describe('profiles', () => {
  it('a profile opens under its key for its user, with its name and avatar', () => {
    const sealed = sealProfile(rng, key, 'u_alice', {
      updatedAt: 1_700_000_000_000,
      name: 'Alice 🌷',
      avatar: jpeg(500),
    });
    const p = openProfile(key, 'u_alice', sealed);
    expect(p.name).toBe('Alice 🌷');
    expect(p.updatedAt).toBe(1_700_000_000_000);
    expect(p.avatar?.type).toBe('jpeg');
    expect(p.avatar?.bytes.length).toBe(500);
  });

  it('a wrong key, another user or one flipped bit fails as decryption_failed', () => {
    const sealed = sealProfile(rng, key, 'u_alice', { updatedAt: 1, name: 'Alice', avatar: null });
    expect(code(() => openProfile(generateProfileKey(rng), 'u_alice', sealed))).toBe('decryption_failed');
    expect(code(() => openProfile(key, 'u_mallory', sealed))).toBe('decryption_failed');
    for (const i of [1, 13, sealed.length - 1]) {
      const t = sealed.slice();
      t[i]! ^= 1;
      expect(code(() => openProfile(key, 'u_alice', t))).toBe('decryption_failed');
    }
  });

  it('the server sees one of five lengths: the name never changes it, the avatar only by bucket', () => {
    const lengths = new Set<number>();
    for (const name of ['', 'A', 'Alice', 'x'.repeat(MAX_PROFILE_NAME_LEN)])
      lengths.add(sealProfile(rng, key, 'u', { updatedAt: 1, name, avatar: null }).length);
    expect([...lengths]).toEqual([SEALED_PROFILE_LENGTHS[0]]);
    expect(SEALED_PROFILE_LENGTHS).toEqual(PROFILE_BUCKETS.map((b) => b + 29));
    const withAvatar = [100, 900, 3000, 12_000, MAX_AVATAR_LEN].map(
      (n) => sealProfile(rng, key, 'u', { updatedAt: 1, name: 'A', avatar: webp(n) }).length,
    );
    expect(withAvatar).toEqual(SEALED_PROFILE_LENGTHS);
    for (const l of withAvatar) expect(isSealedProfileShape(new Uint8Array(l).fill(1))).toBe(true);
    expect(isSealedProfileShape(new Uint8Array(300).fill(1))).toBe(false);
    expect(isSealedProfileShape(new Uint8Array(SEALED_PROFILE_LENGTHS[0]!))).toBe(false); // version 0
  });

  it('names that disguise text are refused when sealing, and a profile carrying one does not open', () => {
    for (const bad of ['evil\u202Eelif', 'a\u2066b', 'tab\tname', 'line\u2028two', ' padded', 'e\u0301']) {
      expect(displayNameProblem(bad)).not.toBeNull();
      expect(code(() => sealProfile(rng, key, 'u', { updatedAt: 1, name: bad, avatar: null }))).toBe(
        'invalid_structure',
      );
    }
    expect(displayNameProblem('Zoë 👩‍👩‍👧 Ndlovu')).toBeNull(); // joiners in emoji sequences are fine
    const plain = new Writer().u8(1).u64(1).str('live\u202Elive').u8(0).bytes(new Uint8Array(0)).finish();
    expect(code(() => openProfile(key, 'u', sealRaw(key, 'u', padTo(plain, 256))))).toBe('decode');
  });

  it('an avatar must be the type it claims and at most MAX_AVATAR_LEN bytes', () => {
    const png = { type: 'png' as const, bytes: jpeg(100).bytes };
    expect(code(() => sealProfile(rng, key, 'u', { updatedAt: 1, name: '', avatar: png }))).toBe('invalid_structure');
    expect(code(() => sealProfile(rng, key, 'u', { updatedAt: 1, name: '', avatar: jpeg(MAX_AVATAR_LEN + 1) }))).toBe(
      'limit_exceeded',
    );
    expect(code(() => sealProfile(rng, key, 'u', { updatedAt: 1, name: 'x'.repeat(129), avatar: null }))).toBe(
      'limit_exceeded',
    );
    // Bytes with type 0 (none), and an unknown type code, do not decode.
    const none = new Writer().u8(1).u64(1).str('a').u8(0).bytes(Uint8Array.of(1)).finish();
    expect(code(() => decodeProfileContent(none))).toBe('decode');
    const unknown = new Writer().u8(1).u64(1).str('a').u8(9).bytes(jpeg(10).bytes).finish();
    expect(code(() => decodeProfileContent(unknown))).toBe('decode');
  });

  it('padding is strict: exactly the smallest bucket, 0x80 then zeros', () => {
    const plain = encodeProfileContent({ updatedAt: 5, name: 'Bo', avatar: null });
    expect(openProfile(key, 'u', sealRaw(key, 'u', padTo(plain, 256))).name).toBe('Bo');
    expect(code(() => openProfile(key, 'u', sealRaw(key, 'u', padTo(plain, 1024))))).toBe('decode');
    const noMarker = new Uint8Array(256);
    noMarker.set(plain);
    expect(code(() => openProfile(key, 'u', sealRaw(key, 'u', noMarker)))).toBe('decode');
    expect(
      code(() =>
        openProfile(
          key,
          'u',
          sealRaw(key, 'u', concat(plain, Uint8Array.of(0x80, 1), new Uint8Array(256 - plain.length - 2))),
        ),
      ),
    ).toBe('decode');
  });

  it('the profile-key message is 41 bytes and decodes strictly', () => {
    const m = encodeProfileKeyMessage({ profileKey: key, profileUpdatedAt: 1_700_000_000_123 });
    expect(m.length).toBe(PROFILE_KEY_MESSAGE_LEN);
    expect(decodeProfileKeyMessage(m)).toEqual({ profileKey: key, profileUpdatedAt: 1_700_000_000_123 });
    expect(code(() => decodeProfileKeyMessage(concat(m, Uint8Array.of(0))))).toBe('decode');
    expect(code(() => decodeProfileKeyMessage(m.subarray(0, 40)))).toBe('decode');
    const v2 = m.slice();
    v2[0] = 2;
    expect(code(() => decodeProfileKeyMessage(v2))).toBe('decode');
    expect(code(() => encodeProfileKeyMessage({ profileKey: key.subarray(1), profileUpdatedAt: 0 }))).toBe(
      'invalid_key',
    );
    expect(code(() => sealProfile(rng, key.subarray(1), 'u', { updatedAt: 1, name: '', avatar: null }))).toBe(
      'invalid_key',
    );
  });
});
