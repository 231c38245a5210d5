import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { WIRE_VERSION } from '../schema/wire.js';
import { fromB64u, toB64u } from '../web/src/protocol/bytes.js';
import { type DeviceList, encodeDeviceList, signLoginChallenge } from '../web/src/protocol/identity.js';
import { makeDb } from './db.js';
import { registerDevice, revokeDevice } from './domain/devices.js';
import type { Env } from './env.js';
import { AppError } from './errors.js';
import { DEFAULT_RATE_LIMITS } from './limits.js';
import { connect, fakeCiphertext, makeConversation } from './test/delivery-fixtures.js';
import {
  api,
  auditCount,
  type Fixture,
  fullUpload,
  makeUser,
  newDevice,
  nextList,
  snapshot,
  uploadB64,
} from './test/directory-fixtures.js';

const b = (l: DeviceList) => toB64u(encodeDeviceList(l));
async function challenge(token: string) {
  const r = await api('/api/devices/challenge', token, { method: 'POST' });
  return (await r.json()) as { challengeId: string; challenge: string };
}
async function register(f: Fixture, token: string, list: DeviceList, signWith = list.devices.length - 1) {
  const ch = await challenge(token);
  const dev = f.devices[signWith] ?? (await newDevice(f, 'unused'));
  const newId = list.devices[list.devices.length - 1]!.deviceId;
  const signature = await signLoginChallenge(f.curves, dev.signing, fromB64u(ch.challenge), f.userId, newId);
  return api('/api/devices', token, {
    method: 'POST',
    json: { deviceList: b(list), challengeId: ch.challengeId, signature: toB64u(signature) },
  });
}

describe('device challenges', () => {
  it(`at most ${DEFAULT_RATE_LIMITS.deviceChallenge.limit} per account per minute (each writes a row): then 429, GraphQL aliases included`, async () => {
    const f = await makeUser('dchal');
    const token = await f.token();
    for (let i = 0; i < DEFAULT_RATE_LIMITS.deviceChallenge.limit; i++) {
      const r = await api('/api/devices/challenge', token, { method: 'POST' });
      expect(r.status).toBe(200);
    }
    const over = await api('/api/devices/challenge', token, { method: 'POST' });
    expect(over.status).toBe(429);
    expect(((await over.json()) as { error: { code: string } }).error.code).toBe('rate_limited');
    const gql = await api('/graphql', token, {
      method: 'POST',
      json: { query: 'mutation { a: deviceChallenge { challengeId } b: deviceChallenge { challengeId } }' },
    });
    const g = (await gql.json()) as { data: unknown; errors?: { extensions: { code: string } }[] };
    expect(g.data).toBeNull();
    expect(new Set(g.errors?.map((e) => e.extensions.code))).toEqual(new Set(['RATE_LIMITED']));
  });
});

describe('devices', () => {
  it('a registration that loses the device-list race to a concurrent update is 409 device_list_conflict (not a 500), nothing written', async () => {
    const bob = await makeUser('devregrace');
    const d1 = await newDevice(bob, 'd1');
    const list = await nextList(bob, [...bob.devices, d1]);
    const ch = await challenge(await bob.token());
    const signature = await signLoginChallenge(bob.curves, d1.signing, fromB64u(ch.challenge), bob.userId, 'd1');
    const racingEnv = {
      ...env,
      DB: {
        prepare: (q: string) => env.DB.prepare(q),
        batch: async (stmts: D1PreparedStatement[]) => {
          await env.DB.prepare('UPDATE device_lists SET version = version + 1 WHERE user_id = ?')
            .bind(bob.userId)
            .run();
          return env.DB.batch(stmts);
        },
      },
    } as unknown as Env;
    const caller = {
      env: racingEnv,
      db: makeDb(env),
      auth: { userId: bob.userId, deviceId: 'd0', familyId: 'f' },
      clientHash: 'test',
    };
    const err = await registerDevice(caller, {
      deviceList: encodeDeviceList(list),
      challengeId: ch.challengeId,
      signature,
    }).catch((e) => e);
    expect([(err as AppError).status, (err as AppError).code]).toEqual([409, 'device_list_conflict']);
    const d1row = await env.DB.prepare("SELECT 1 AS x FROM devices WHERE user_id = ? AND device_id = 'd1'")
      .bind(bob.userId)
      .first();
    expect(d1row).toBeNull();
    expect(await auditCount('device.registered')).toBe(0);
  });

  it('a revocation that loses the device-list race to a concurrent update is 409 device_list_conflict (not a 500), nothing written', async () => {
    const bob = await makeUser('devrace', 2);
    const list = await nextList(bob, [bob.devices[0]!]);
    // Another update commits between this request's read of the list and its write batch.
    const racingEnv = {
      ...env,
      DB: {
        prepare: (q: string) => env.DB.prepare(q),
        batch: async (stmts: D1PreparedStatement[]) => {
          await env.DB.prepare('UPDATE device_lists SET version = version + 1 WHERE user_id = ?')
            .bind(bob.userId)
            .run();
          return env.DB.batch(stmts);
        },
      },
    } as unknown as Env;
    const caller = {
      env: racingEnv,
      db: makeDb(env),
      auth: { userId: bob.userId, deviceId: 'd0', familyId: 'f' },
      clientHash: 'test',
    };
    const err = await revokeDevice(caller, { deviceId: 'd1', deviceList: encodeDeviceList(list) }).catch((e) => e);
    expect(err).toBeInstanceOf(AppError);
    expect([(err as AppError).status, (err as AppError).code]).toEqual([409, 'device_list_conflict']);
    const d1 = await env.DB.prepare("SELECT revoked_at FROM devices WHERE user_id = ? AND device_id = 'd1'")
      .bind(bob.userId)
      .first<{ revoked_at: number | null }>();
    expect(d1?.revoked_at).toBeNull();
    expect(await auditCount('device.revoked')).toBe(0);
  });

  it('register an additional device (signed list v+1 + challenge signature), list it, then revoke it: prekeys deleted, sessions revoked', async () => {
    const bob = await makeUser('devbob');
    const token = await bob.token();
    const d1 = await newDevice(bob, 'd1');
    bob.devices.push(d1);
    const list2 = await nextList(bob, bob.devices);
    const res = await register(bob, token, list2);
    expect(res.status).toBe(201);
    bob.list = list2;
    const listed = (await (await api('/api/devices', token)).json()) as {
      devices: { deviceId: string; revoked: boolean }[];
      deviceList: { version: number };
    };
    expect(listed.devices.map((d) => d.deviceId)).toEqual(['d0', 'd1']);
    expect(listed.deviceList.version).toBe(2);
    const t1 = await bob.token(1);
    expect((await api('/api/keys', t1, { method: 'POST', json: { upload: uploadB64(fullUpload(d1)) } })).status).toBe(
      200,
    );
    const list3 = await nextList(bob, [bob.devices[0]!]);
    const rv = await api('/api/devices/d1/revoke', token, { method: 'POST', json: { deviceList: b(list3) } });
    expect(rv.status).toBe(200);
    expect((await api('/api/keys/count', t1)).status).toBe(401);
    const left = await env.DB.prepare(
      "SELECT (SELECT count(*) FROM one_time_prekeys WHERE user_id = ?1 AND device_id = 'd1') + (SELECT count(*) FROM kem_prekeys WHERE user_id = ?1 AND device_id = 'd1') + (SELECT count(*) FROM signed_prekeys WHERE user_id = ?1 AND device_id = 'd1') AS n",
    )
      .bind(bob.userId)
      .first<{ n: number }>();
    expect(left?.n).toBe(0);
    expect(await auditCount('device.registered')).toBe(1);
    expect(await auditCount('device.revoked')).toBe(1);
  });

  it('a device revokes itself with a list without it (a link attempt abandoned after its redeem: link-incoming.ts): 200, its session ends, the other stays', async () => {
    const bob = await makeUser('devself');
    const token = await bob.token();
    const d1 = await newDevice(bob, 'd1');
    bob.devices.push(d1);
    const list2 = await nextList(bob, bob.devices);
    expect((await register(bob, token, list2)).status).toBe(201);
    bob.list = list2;
    const t1 = await bob.token(1);
    const list3 = await nextList(bob, [bob.devices[0]!]);
    const rv = await api('/api/devices/d1/revoke', t1, { method: 'POST', json: { deviceList: b(list3) } });
    expect(rv.status).toBe(200);
    expect((await api('/api/keys/count', t1)).status).toBe(401);
    const listed = (await (await api('/api/devices', token)).json()) as {
      devices: { deviceId: string; revoked: boolean }[];
    };
    expect(listed.devices.filter((d) => !d.revoked).map((d) => d.deviceId)).toEqual(['d0']);
  });

  it('refused, nothing changed: bad proof, reused challenge, rollback, skipped version, bad list signature, over MAX_DEVICES_PER_USER', async () => {
    const bob = await makeUser('devbad');
    const token = await bob.token();
    const d1 = await newDevice(bob, 'd1');
    const good = await nextList(bob, [...bob.devices, d1]);
    const before = await snapshot();
    // Proof signed by the wrong key (an existing device instead of the new one).
    const r1 = await register(bob, token, good, 0);
    expect(r1.status).toBe(422);
    expect(((await r1.json()) as { error: { code: string } }).error.code).toBe('invalid_device_proof');
    bob.devices.push(d1);
    for (const [list, reason] of [
      [await nextList(bob, bob.devices, 1), 'rollback'],
      [await nextList(bob, bob.devices, 3), 'skipped_version'],
      [{ ...good, signature: new Uint8Array(64).fill(1) }, 'bad_signature'],
    ] as const) {
      const r = await register(bob, token, list);
      expect(r.status).toBe(422);
      expect(await r.json()).toMatchObject({ error: { code: 'invalid_device_list', reason } });
    }
    const after = await snapshot();
    for (const s of [before, after]) delete s.login_challenges;
    expect(after).toEqual(before);
    // A challenge is single-use.
    const ch = await challenge(token);
    const sig = toB64u(await signLoginChallenge(bob.curves, d1.signing, fromB64u(ch.challenge), bob.userId, 'd1'));
    expect(
      (
        await api('/api/devices', token, {
          method: 'POST',
          json: { deviceList: b(good), challengeId: ch.challengeId, signature: sig },
        })
      ).status,
    ).toBe(201);
    const d2 = await newDevice(bob, 'd2');
    bob.list = good;
    const l3 = await nextList(bob, [...bob.devices, d2]);
    const replay = await api('/api/devices', token, {
      method: 'POST',
      json: { deviceList: b(l3), challengeId: ch.challengeId, signature: sig },
    });
    expect(replay.status).toBe(422);
    expect(((await replay.json()) as { error: { code: string } }).error.code).toBe('invalid_challenge');
  });
});

describe('bad input on every route → 4xx with a code, no row changed', () => {
  it('malformed JSON, wrong types, oversize bodies, missing auth', async () => {
    const bob = await makeUser('badinput');
    const token = await bob.token();
    const before = await snapshot();
    const routes: [string, string][] = [
      ['POST', '/api/devices'],
      ['POST', '/api/devices/d0/revoke'],
      ['POST', '/api/keys'],
      ['POST', '/api/keys/claim'],
      ['POST', '/api/conversations'],
      ['POST', '/api/conversations/c1/log'],
    ];
    for (const [method, path] of routes) {
      const noAuth = await api(path, null, { method, json: {} });
      // Without a bearer token POST /api/devices is the new device redeeming a linking token (issue 14):
      // an empty body is a 400 there, never a registration.
      expect(noAuth.status, path).toBe(path === '/api/devices' ? 400 : 401);
      const malformed = await api(path, token, {
        method,
        body: '{"x":',
        headers: { 'Content-Type': 'application/json' },
      });
      expect(malformed.status, path).toBe(400);
      expect(((await malformed.json()) as { error: { code: string } }).error.code).toBe('invalid_json');
      const wrong = await api(path, token, {
        method,
        json: {
          deviceList: 5,
          upload: [],
          userId: {},
          kind: 'x',
          entries: 'no',
          entry: 1,
          challengeId: 1,
          signature: null,
        },
      });
      expect(wrong.status, path).toBe(400);
      expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe('invalid_request');
      const huge = await api(path, token, { method, json: { pad: 'x'.repeat(600 * 1024) } });
      expect(huge.status, path).toBe(413);
      const notJson = await api(path, token, {
        method,
        body: 'a=b',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      });
      expect(notJson.status, path).toBe(415);
    }
    for (const path of [
      '/api/devices',
      '/api/keys/count',
      '/api/conversations',
      '/api/conversations/c1',
      '/api/conversations/c1/log',
    ]) {
      expect((await api(path, null)).status, path).toBe(401);
    }
    const after = await snapshot();
    for (const s of [before, after]) delete s.token_families;
    expect(after).toEqual(before);
  });

  it('after a full scenario no D1 column holds private key bytes generated in the test', async () => {
    const bob = await makeUser('scanbob', 2);
    const alice = await makeUser('scanalice');
    const t = await bob.token();
    await api('/api/keys', t, { method: 'POST', json: { upload: uploadB64(fullUpload(bob.devices[0]!)) } });
    await api('/api/keys/claim', await alice.token(), {
      method: 'POST',
      json: { userId: bob.userId },
      ip: '203.0.113.9',
    });
    const secrets: Uint8Array[] = [bob.t.identity.secretKey, alice.t.identity.secretKey];
    for (const d of [...bob.devices, ...alice.devices]) {
      secrets.push(d.signing.secretKey, d.identity.secretKey, d.signedPrekey.keyPair.secretKey);
      // ML-KEM: the seed the record keeps, and the expanded key where the path made one.
      for (const k of [d.kemPrekey.keyPair, d.lastResortKemPrekey.keyPair])
        for (const part of [k.seed, k.secretKey]) if (part) secrets.push(part.subarray(0, 64));
      for (const o of d.oneTimePrekeys) secrets.push(o.keyPair.secretKey);
    }
    const hex = (x: Uint8Array) => Array.from(x, (v) => v.toString(16).padStart(2, '0')).join('');
    const needles = secrets.flatMap((s) => [hex(s.subarray(0, 16)), toB64u(s.subarray(0, 16))]);
    const tables = await env.DB.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'",
    ).all<{ name: string }>();
    let cells = 0;
    for (const { name } of tables.results) {
      // sql-interpolation-ok: table names come from sqlite_master, never from input (test-only scan).
      const rows = await env.DB.prepare(`SELECT * FROM "${name}"`).all<Record<string, unknown>>();
      for (const row of rows.results) {
        for (const v of Object.values(row)) {
          cells++;
          const text =
            v instanceof ArrayBuffer
              ? hex(new Uint8Array(v))
              : Array.isArray(v)
                ? hex(Uint8Array.from(v as number[]))
                : String(v);
          for (const n of needles) expect(text.includes(n)).toBe(false);
        }
      }
    }
    expect(cells).toBeGreaterThan(50);
  });

  it('a newly registered device is addressed at once: the conversation DO drops its cached device set', async () => {
    const alice = await makeUser('dcalice');
    const bob = await makeUser('dcbob');
    const ref = async (f: Fixture) => ({ userId: f.userId, deviceId: 'd0', token: await f.token() });
    const [aliceRef, bobRef] = [await ref(alice), await ref(bob)];
    const conv = await makeConversation([
      { userId: alice.userId, devices: [aliceRef] },
      { userId: bob.userId, devices: [bobRef] },
    ]);
    const a = await connect(conv, aliceRef);
    const send = (id: string) =>
      a.sendAndWait({ v: WIRE_VERSION, type: 'send', id, to: [{ u: bob.userId, d: 'd0', c: fakeCiphertext(16) }] });
    // The DO now holds bob = {d0} in its cache.
    expect(await send('m1')).toMatchObject({ type: 'accepted', seq: 1 });

    const d1 = await newDevice(bob, 'd1');
    bob.devices.push(d1);
    expect((await register(bob, bobRef.token, await nextList(bob, bob.devices))).status).toBe(201);

    // Without the notification the cached set would accept this and bob's new device would never get it.
    expect(await send('m2')).toMatchObject({
      type: 'error',
      code: 'device_mismatch',
      missing: [{ u: bob.userId, d: 'd1' }],
    });
    a.close();
  });
});
