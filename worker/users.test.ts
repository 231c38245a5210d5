import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { fromB64u, toB64u } from '../web/src/protocol/bytes.js';
import { decodeDeviceList, encodeDeviceList, verifyDeviceList } from '../web/src/protocol/identity.js';
import { limiterFor } from './limiter.js';
import { DEFAULT_RATE_LIMITS } from './limits.js';
import { api, makeUser, newDevice, nextList } from './test/directory-fixtures.js';

type Err = { error: { code: string; message?: string; fields?: string[] } };

describe('GET /api/users/:userId/device-list', () => {
  it('returns the exact signed list, its version, the identity key and identity version (no prekey consumed)', async () => {
    const alice = await makeUser('ulista');
    const bob = await makeUser('ulistb', 2);
    const token = await alice.token();
    const res = await api(`/api/users/${bob.userId}/device-list`, token);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = (await res.json()) as {
      userId: string;
      identityKey: string;
      identityVersion: number;
      deviceList: { version: number; bytes: string };
    };
    expect(body.userId).toBe(bob.userId);
    expect(body.identityKey).toBe(toB64u(bob.t.identity.publicKey));
    expect(body.identityVersion).toBe(1);
    expect(body.deviceList.version).toBe(1);
    expect(body.deviceList.bytes).toBe(toB64u(encodeDeviceList(bob.list)));
    const verified = await verifyDeviceList(
      bob.curves,
      decodeDeviceList(fromB64u(body.deviceList.bytes)),
      fromB64u(body.identityKey),
    );
    expect(verified.devices.map((d) => d.deviceId)).toEqual(['d0', 'd1']);

    // After a device registration the newer version is served.
    const d2 = await newDevice(bob, 'd2');
    const list2 = await nextList(bob, [...bob.devices, d2]);
    await env.DB.prepare('UPDATE device_lists SET version = ?1, list = ?2 WHERE user_id = ?3')
      .bind(2, encodeDeviceList(list2), bob.userId)
      .run();
    const again = (await (await api(`/api/users/${bob.userId}/device-list`, token)).json()) as {
      deviceList: { version: number };
    };
    expect(again.deviceList.version).toBe(2);
  });

  it('401 without or with a bad token; 404 for an unknown user; 400 for a malformed id', async () => {
    const alice = await makeUser('ulistc');
    expect((await api(`/api/users/${alice.userId}/device-list`, null)).status).toBe(401);
    const bad = await api(`/api/users/${alice.userId}/device-list`, 'not.a.real.token.at.all');
    expect(bad.status).toBe(401);
    expect(((await bad.json()) as Err).error.code).toBe('invalid_token');
    const token = await alice.token();
    const missing = await api('/api/users/u_nobody_here/device-list', token);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as Err).error.code).toBe('not_found');
    const malformed = await api(`/api/users/${'x'.repeat(65)}/device-list`, token);
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as Err).error.code).toBe('invalid_request');
    const odd = await api('/api/users/a%20b/device-list', token);
    expect(odd.status).toBe(400);
  });
});

describe('GET /api/users/by-name/:username', () => {
  it('resolves a username (normalised: case and full-width forms) to the user id and identity key', async () => {
    const alice = await makeUser('unamea');
    const bob = await makeUser('unameb');
    const token = await alice.token();
    for (const raw of [bob.username, bob.username.toUpperCase()]) {
      const res = await api(`/api/users/by-name/${encodeURIComponent(raw)}`, token);
      expect(res.status).toBe(200);
      const body = (await res.json()) as Record<string, unknown>;
      expect(body).toEqual({
        userId: bob.userId,
        username: bob.username,
        identityKey: toB64u(bob.t.identity.publicKey),
        identityVersion: 1,
        kt: expect.objectContaining({ entry: expect.any(String), index: expect.any(Number), head: expect.any(String) }),
      });
    }
  });

  it('401 without a token (nothing revealed); 404 unknown; 400 invalid username; "device-list" is a username', async () => {
    const alice = await makeUser('unamec');
    const anon = await api(`/api/users/by-name/${alice.username}`, null);
    expect(anon.status).toBe(401);
    expect(((await anon.json()) as Err).error.code).toBe('invalid_token');
    const token = await alice.token();
    const missing = await api('/api/users/by-name/nobody-by-that-name', token);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as Err).error.code).toBe('not_found');
    for (const bad of ['ab', '1abc', 'has%20space', encodeURIComponent('ali\u0441e'), 'x'.repeat(40)]) {
      const res = await api(`/api/users/by-name/${bad}`, token);
      expect(res.status, bad).toBe(400);
      expect(((await res.json()) as Err).error.code).toBe('invalid_username');
    }
    // Route order: this is a lookup of the (unknown) username "device-list", not user "by-name"'s list.
    const edge = await api('/api/users/by-name/device-list', token);
    expect(edge.status).toBe(404);
    expect(((await edge.json()) as Err).error.message).toBe('no such user');
  });
});

describe('GET /api/users/:userId/device-list rate limit', () => {
  it(`is limited per account (bucket deviceList, ${DEFAULT_RATE_LIMITS.deviceList.limit} / min): then 429 with Retry-After`, async () => {
    const alice = await makeUser('ulimita');
    const bob = await makeUser('ulimitb');
    const token = await alice.token();
    expect((await api(`/api/users/${bob.userId}/device-list`, token)).status).toBe(200);
    // Spend the rest of the window's budget directly in the limiter (600 requests would be slow).
    const { stub } = limiterFor(env, 'deviceList', `acct:${alice.userId}`);
    const rule = DEFAULT_RATE_LIMITS.deviceList;
    await stub.hit(`acct:${alice.userId}`, rule.limit, rule.windowMs, rule.limit - 1);
    const res = await api(`/api/users/${bob.userId}/device-list`, token);
    expect(res.status).toBe(429);
    expect(((await res.json()) as Err).error.code).toBe('rate_limited');
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    // Another account is not affected.
    expect((await api(`/api/users/${alice.userId}/device-list`, await bob.token())).status).toBe(200);
  });
});

describe('GET /api/users/names', () => {
  const share = async (conv: string, ...userIds: string[]) => {
    await env.DB.prepare("INSERT INTO conversations (id, kind, head_seq, head_hash) VALUES (?1, 'group', 0, x'00')")
      .bind(conv)
      .run();
    for (const u of userIds)
      await env.DB.prepare(
        "INSERT INTO members (conversation_id, user_id, role, joined_seq) VALUES (?1, ?2, 'member', 0)",
      )
        .bind(conv, u)
        .run();
  };

  it('names the caller and the people sharing a conversation with the caller; nobody else', async () => {
    const alice = await makeUser('unamesa');
    const bob = await makeUser('unamesb');
    const carol = await makeUser('unamesc');
    const dave = await makeUser('unamesd');
    await share(`c_names_${Date.now()}`, alice.userId, bob.userId);
    await share(`c_names_other_${Date.now()}`, carol.userId, dave.userId);
    const token = await alice.token();
    const ids = [bob.userId, carol.userId, alice.userId, bob.userId, 'u_nobody_here'].join(',');
    const res = await api(`/api/users/names?ids=${ids}`, token);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = (await res.json()) as { users: { userId: string; username: string }[] };
    const byId = Object.fromEntries(body.users.map((u) => [u.userId, u.username]));
    // Carol exists but shares nothing with Alice: absent, exactly like an unknown id.
    expect(byId).toEqual({ [alice.userId]: alice.username, [bob.userId]: bob.username });
  });

  it('GraphQL usernames(ids) answers the same, through the same rule', async () => {
    const alice = await makeUser('unamesf');
    const bob = await makeUser('unamesg');
    const carol = await makeUser('unamesh');
    await share(`c_names_gql_${Date.now()}`, alice.userId, bob.userId);
    const res = await api('/graphql', await alice.token(), {
      method: 'POST',
      json: {
        query: 'query($ids: [ID!]!) { usernames(ids: $ids) { userId username } }',
        variables: { ids: [bob.userId, carol.userId] },
      },
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: { usernames: { userId: string; username: string }[] } };
    expect(body.data.usernames).toEqual([{ userId: bob.userId, username: bob.username }]);
  });

  it('the most ids one request may name (100 distinct) are answered, over REST and GraphQL — not a 500', async () => {
    const alice = await makeUser('unamesi');
    const bob = await makeUser('unamesj');
    await share(`c_names_max_${Date.now()}`, alice.userId, bob.userId);
    const token = await alice.token();
    const ids = [bob.userId, ...Array.from({ length: 98 }, (_, i) => `u_nobody_${i}`), alice.userId];
    const res = await api(`/api/users/names?ids=${ids.join(',')}`, token);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { users: { userId: string; username: string }[] };
    expect(body.users.map((u) => u.userId)).toEqual([alice.userId, bob.userId].sort());
    const gql = await api('/graphql', token, {
      method: 'POST',
      json: { query: 'query($ids: [ID!]!) { usernames(ids: $ids) { userId } }', variables: { ids } },
    });
    expect(gql.status).toBe(200);
    const g = (await gql.json()) as { data: { usernames: { userId: string }[] } };
    expect(g.data.usernames.map((u) => u.userId)).toEqual([alice.userId, bob.userId].sort());
  });

  it('401 without a token; 400 for no ids, a malformed id or more than 100 ids', async () => {
    const alice = await makeUser('unamese');
    expect((await api(`/api/users/names?ids=${alice.userId}`, null)).status).toBe(401);
    const token = await alice.token();
    for (const q of [
      '',
      '?ids=',
      `?ids=${alice.userId},a%20b`,
      `?ids=${Array.from({ length: 101 }, (_, i) => `u${i}`).join(',')}`,
    ]) {
      const res = await api(`/api/users/names${q}`, token);
      expect(res.status, q).toBe(400);
      expect(((await res.json()) as Err).error.code).toBe('invalid_request');
    }
  });
});
