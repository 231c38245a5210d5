/**
 * Profiles and private settings on the server (routes/people.ts, domain/people.ts): the server stores and
 * serves exactly the sealed bytes, checks only what it can see (version, size class, revision), and never
 * holds a name, an avatar, a profile key or a blocked user id in clear — in D1 or in its logs.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fromB64u, toB64u, utf8 } from '../web/src/protocol/bytes.js';
import { privateSettingsKey, SETTING_KIND, sealPrivateSettings } from '../web/src/protocol/private-settings.js';
import {
  generateProfileKey,
  MAX_SEALED_PROFILE_LEN,
  openProfile,
  SEALED_PROFILE_LENGTHS,
  sealProfile,
} from '../web/src/protocol/profile.js';
import { seededRng } from '../web/src/protocol/testing.js';
import { findInD1 } from './test/d1.js';
import { api, makeUser, snapshot } from './test/directory-fixtures.js';

type Err = { error: { code: string; revision?: number } };
type Gql = {
  data?: Record<string, unknown> | null;
  errors?: { message: string; extensions: { code: string; reason?: string; revision?: number } }[];
};

const rng = seededRng(`people worker tests ${Math.random()}`);
const put = (path: string, token: string | null, json: unknown, ip?: string) =>
  api(path, token, { method: 'PUT', json, ...(ip ? { ip } : {}) });
const gql = async (token: string, query: string, variables?: Record<string, unknown>) => {
  const res = await api('/graphql', token, { method: 'POST', json: { query, variables } });
  return { status: res.status, body: (await res.json()) as Gql };
};
const seal = (userId: string, key: Uint8Array, revision: number, blocked: string) =>
  sealPrivateSettings(rng, key, userId, revision, {
    profileKey: null,
    entries: [{ kind: SETTING_KIND.blockUser, target: blocked, at: Date.now(), value: 0 }],
  });
/** A JPEG-looking avatar whose bytes carry a marker we can search for. */
const avatarWith = (marker: string) => ({
  type: 'jpeg' as const,
  bytes: Uint8Array.from([0xff, 0xd8, 0xff, ...utf8(marker), ...new Uint8Array(2000)]),
});

/** Console output of the Worker while `fn` runs (the request log lines). */
async function logsOf(fn: () => Promise<void>): Promise<string> {
  const lines: string[] = [];
  const spies = (['log', 'warn', 'error', 'info'] as const).map((k) =>
    vi.spyOn(console, k).mockImplementation((...a: unknown[]) => void lines.push(a.map(String).join(' '))),
  );
  try {
    await fn();
  } finally {
    for (const s of spies) s.mockRestore();
  }
  return lines.join('\n');
}

afterEach(() => vi.restoreAllMocks());

describe('profiles', () => {
  it('the server stores and serves exactly the sealed profile; no name, avatar or profile key reaches D1 or the logs', async () => {
    const alice = await makeUser('profa');
    const bob = await makeUser('profb');
    const key = generateProfileKey(rng);
    const name = `Alice Liddell ${crypto.randomUUID().slice(0, 8)}`;
    const marker = `avatar-marker-${crypto.randomUUID()}`;
    const sealed = sealProfile(rng, key, alice.userId, { updatedAt: Date.now(), name, avatar: avatarWith(marker) });
    const aliceToken = await alice.token();
    const bobToken = await bob.token();
    let served = '';
    const logs = await logsOf(async () => {
      const res = await put('/api/profile', aliceToken, { profile: toB64u(sealed) });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { updatedAt: number }).updatedAt).toBeGreaterThan(0);
      // Anyone signed in gets the same ciphertext; only the key opens it.
      const got = await api(`/api/users/${alice.userId}/profile`, bobToken);
      expect(got.status).toBe(200);
      expect(got.headers.get('cache-control')).toBe('no-store');
      const body = (await got.json()) as { userId: string; profile: string };
      expect(body.userId).toBe(alice.userId);
      served = body.profile;
      const own = (await (await api('/api/profile', aliceToken)).json()) as { profile: string };
      expect(own.profile).toBe(served);
    });
    expect(served).toBe(toB64u(sealed));
    expect(openProfile(key, alice.userId, fromB64u(served)).name).toBe(name);
    expect(await findInD1([name, marker, key, toB64u(key)])).toEqual([]);
    expect(await findInD1([sealed])).toEqual(['profiles.sealed']);
    expect(logs).toContain('"route":"/api/profile"'); // the request lines were captured
    for (const needle of [name, marker, toB64u(key), served.slice(0, 40)]) expect(logs).not.toContain(needle);
  });

  it('a new profile replaces the old one; only the owner writes their own', async () => {
    const alice = await makeUser('profc');
    const token = await alice.token();
    const key = generateProfileKey(rng);
    const first = sealProfile(rng, key, alice.userId, { updatedAt: 1, name: 'A', avatar: null });
    const second = sealProfile(rng, key, alice.userId, { updatedAt: 2, name: 'B', avatar: avatarWith('x') });
    expect((await put('/api/profile', token, { profile: toB64u(first) })).status).toBe(200);
    expect((await put('/api/profile', token, { profile: toB64u(second) })).status).toBe(200);
    const got = (await (await api(`/api/users/${alice.userId}/profile`, token)).json()) as { profile: string };
    expect(openProfile(key, alice.userId, fromB64u(got.profile)).name).toBe('B');
    // There is no route that writes someone else's profile: PUT on a user's profile path is not one.
    expect((await put(`/api/users/${alice.userId}/profile`, token, { profile: toB64u(first) })).status).toBe(404);
  });

  it('a profile of another shape is refused with a code and changes nothing', async () => {
    const alice = await makeUser('profd');
    const token = await alice.token();
    const before = await snapshot();
    const ok = sealProfile(rng, generateProfileKey(rng), alice.userId, { updatedAt: 1, name: 'A', avatar: null });
    const v2 = ok.slice();
    v2[0] = 2;
    const cases: [unknown, number, string][] = [
      [{ profile: toB64u(ok.subarray(1)) }, 422, 'invalid_profile'], // 284 bytes: not a sealed length
      [{ profile: toB64u(v2) }, 422, 'invalid_profile'],
      [{ profile: toB64u(new Uint8Array(300)) }, 422, 'invalid_profile'],
      [{ profile: '' }, 422, 'invalid_profile'],
      [{ profile: toB64u(new Uint8Array(MAX_SEALED_PROFILE_LEN + 1).fill(1)) }, 400, 'invalid_request'],
      [{ profile: 'not base64url!' }, 400, 'invalid_request'],
      [{ profile: 5 }, 400, 'invalid_request'],
      [{}, 400, 'invalid_request'],
    ];
    for (const [body, status, code] of cases) {
      const res = await put('/api/profile', token, body);
      expect([res.status, ((await res.json()) as Err).error.code]).toEqual([status, code]);
    }
    const big = await api('/api/profile', token, {
      method: 'PUT',
      body: JSON.stringify({ profile: 'A'.repeat(70 * 1024) }),
      headers: { 'content-type': 'application/json' },
    });
    expect(big.status).toBe(413);
    const text = await api('/api/profile', token, {
      method: 'PUT',
      body: '{}',
      headers: { 'content-type': 'text/plain' },
    });
    expect(text.status).toBe(415);
    expect(await snapshot()).toEqual(before);
  });

  it('no profile and no such user answer the same 404; no token is 401; a malformed id is 400', async () => {
    const alice = await makeUser('profe');
    const bob = await makeUser('proff');
    const token = await alice.token();
    const none = await api(`/api/users/${bob.userId}/profile`, token);
    const unknown = await api('/api/users/u_nobody_at_all/profile', token);
    expect([none.status, unknown.status]).toEqual([404, 404]);
    expect(await none.json()).toEqual(await unknown.json());
    expect((await api(`/api/users/${bob.userId}/profile`, null)).status).toBe(401);
    expect((await api('/api/profile', null)).status).toBe(401);
    expect((await api(`/api/users/${'x'.repeat(65)}/profile`, token)).status).toBe(400);
    expect(await (await api('/api/profile', token)).json()).toEqual({ profile: null, updatedAt: null });
  });

  it('every sealed size is accepted, and writes are rate-limited per account (bucket people)', async () => {
    const alice = await makeUser('profg');
    const token = await alice.token();
    let accepted = 0;
    let limited: Response | null = null;
    for (let i = 0; i < 70 && !limited; i++) {
      const len = SEALED_PROFILE_LENGTHS[i % SEALED_PROFILE_LENGTHS.length]!;
      const sealed = new Uint8Array(len).fill(7);
      sealed[0] = 1;
      const res = await put('/api/profile', token, { profile: toB64u(sealed) }, `192.0.2.${i + 10}`);
      if (res.status === 200) accepted++;
      else limited = res;
    }
    expect(accepted).toBe(60);
    expect(limited?.status).toBe(429);
    expect(Number(limited?.headers.get('retry-after'))).toBeGreaterThan(0);
  });
});

describe('private settings', () => {
  it('compare-and-swap: revision 1 first, then exactly one more; a stale or skipped revision is 409 with the stored one', async () => {
    const alice = await makeUser('setta');
    const token = await alice.token();
    const key = privateSettingsKey(rng(32));
    const blocked = `u_blocked_${crypto.randomUUID().replaceAll('-', '')}`;
    expect(await (await api('/api/settings', token)).json()).toEqual({ revision: 0, settings: null });
    const r2 = await put('/api/settings', token, { settings: toB64u(seal(alice.userId, key, 2, blocked)) });
    expect([r2.status, ((await r2.json()) as Err).error]).toEqual([
      409,
      expect.objectContaining({ code: 'revision_conflict', revision: 0 }),
    ]);
    const r1 = await put('/api/settings', token, { settings: toB64u(seal(alice.userId, key, 1, blocked)) });
    expect(await r1.json()).toEqual({ revision: 1 });
    const again = await put('/api/settings', token, { settings: toB64u(seal(alice.userId, key, 1, blocked)) });
    expect([again.status, ((await again.json()) as Err).error.revision]).toEqual([409, 1]);
    const skip = await put('/api/settings', token, { settings: toB64u(seal(alice.userId, key, 3, blocked)) });
    expect([skip.status, ((await skip.json()) as Err).error.revision]).toEqual([409, 1]);
    const latest = seal(alice.userId, key, 2, blocked);
    expect(await (await put('/api/settings', token, { settings: toB64u(latest) })).json()).toEqual({ revision: 2 });
    expect(await (await api('/api/settings', token)).json()).toEqual({ revision: 2, settings: toB64u(latest) });
    // The blocked user id, the key: nowhere in clear.
    expect(await findInD1([blocked, key])).toEqual([]);
  });

  it('two devices writing the same revision at once: exactly one wins, the other is told the new revision', async () => {
    const alice = await makeUser('settb', 2);
    const key = privateSettingsKey(rng(32));
    const [t0, t1] = [await alice.token(0), await alice.token(1)];
    await put('/api/settings', t0, { settings: toB64u(seal(alice.userId, key, 1, 'u_x')) });
    const [a, b] = await Promise.all([
      put('/api/settings', t0, { settings: toB64u(seal(alice.userId, key, 2, 'u_from_d0')) }),
      put('/api/settings', t1, { settings: toB64u(seal(alice.userId, key, 2, 'u_from_d1')) }),
    ]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    const loser = a.status === 409 ? a : b;
    expect(((await loser.json()) as Err).error).toEqual(
      expect.objectContaining({ code: 'revision_conflict', revision: 2 }),
    );
  });

  it('each user reads only their own settings', async () => {
    const alice = await makeUser('settc');
    const bob = await makeUser('settd');
    const key = privateSettingsKey(rng(32));
    await put('/api/settings', await alice.token(), { settings: toB64u(seal(alice.userId, key, 1, 'u_y')) });
    expect(await (await api('/api/settings', await bob.token())).json()).toEqual({ revision: 0, settings: null });
    expect((await api('/api/settings', null)).status).toBe(401);
  });

  it('settings of another shape are refused with a code and change nothing; the largest bucket fits the body limit', async () => {
    const alice = await makeUser('sette');
    const token = await alice.token();
    const key = privateSettingsKey(rng(32));
    const before = await snapshot();
    const ok = seal(alice.userId, key, 1, 'u_z');
    const zero = ok.slice();
    zero.fill(0, 1, 9);
    for (const [body, status, code] of [
      [{ settings: toB64u(ok.subarray(1)) }, 422, 'invalid_settings'],
      [{ settings: toB64u(zero) }, 422, 'invalid_settings'],
      [{ settings: toB64u(new Uint8Array(2000)) }, 422, 'invalid_settings'],
      [{ settings: 'bad!' }, 400, 'invalid_request'],
      [{ settings: null }, 400, 'invalid_request'],
    ] as const) {
      const res = await put('/api/settings', token, body);
      expect([res.status, ((await res.json()) as Err).error.code]).toEqual([status, code]);
    }
    expect(await snapshot()).toEqual(before);
    // The largest sealed settings (131,109 bytes, ≈ 175 KB of base64url) are accepted.
    const many = Array.from({ length: 2048 }, (_, i) => ({
      kind: SETTING_KIND.acceptUser,
      target: `u_${i.toString().padStart(40, '0')}`,
      at: 1,
      value: 0,
    }));
    const largest = sealPrivateSettings(rng, key, alice.userId, 1, { profileKey: null, entries: many });
    expect(largest.length).toBe(131_109);
    expect((await put('/api/settings', token, { settings: toB64u(largest) })).status).toBe(200);
    const tooBig = await api('/api/settings', token, {
      method: 'PUT',
      body: JSON.stringify({ settings: 'A'.repeat(200 * 1024) }),
      headers: { 'content-type': 'application/json' },
    });
    expect(tooBig.status).toBe(413);
  });
});

describe('people over GraphQL', () => {
  it('setProfile, profile, viewerProfile, sealedSettings and putSealedSettings follow the REST rules', async () => {
    const alice = await makeUser('gqlpa');
    const bob = await makeUser('gqlpb');
    const [ta, tb] = [await alice.token(), await bob.token()];
    const key = generateProfileKey(rng);
    const sealed = toB64u(sealProfile(rng, key, alice.userId, { updatedAt: 5, name: 'Al', avatar: null }));
    const set = await gql(ta, 'mutation($p: String!) { setProfile(profile: $p) { updatedAt } }', { p: sealed });
    expect(set.body.errors).toBeUndefined();
    const read = await gql(tb, 'query($u: ID!) { profile(userId: $u) { userId profile } }', { u: alice.userId });
    expect(read.body.data?.profile).toEqual({ userId: alice.userId, profile: sealed });
    const mine = await gql(ta, '{ viewerProfile { profile } sealedSettings { revision settings } }');
    expect(mine.body.data).toEqual({
      viewerProfile: { profile: sealed },
      sealedSettings: { revision: 0, settings: null },
    });
    const none = await gql(ta, 'query($u: ID!) { profile(userId: $u) { profile } }', { u: bob.userId });
    expect(none.body.data?.profile).toBeNull();
    const bad = await gql(ta, 'mutation { setProfile(profile: "AAAA") { updatedAt } }');
    expect(bad.body.errors?.[0]?.extensions).toEqual(expect.objectContaining({ reason: 'invalid_profile' }));

    const skey = privateSettingsKey(rng(32));
    const s1 = toB64u(seal(alice.userId, skey, 1, 'u_q'));
    const put1 = await gql(ta, 'mutation($s: String!) { putSealedSettings(settings: $s) { revision } }', { s: s1 });
    expect(put1.body.data?.putSealedSettings).toEqual({ revision: 1 });
    const conflict = await gql(ta, 'mutation($s: String!) { putSealedSettings(settings: $s) { revision } }', {
      s: s1,
    });
    expect(conflict.body.errors?.[0]?.extensions).toEqual(
      expect.objectContaining({ code: 'CONFLICT', reason: 'revision_conflict', revision: 1 }),
    );
    const back = await gql(ta, '{ sealedSettings { revision settings } }');
    expect(back.body.data?.sealedSettings).toEqual({ revision: 1, settings: s1 });
  });
});
