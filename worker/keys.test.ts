import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { fromB64u, toB64u } from '../web/src/protocol/bytes.js';
import { decodeDeviceList, verifyDeviceList } from '../web/src/protocol/identity.js';
import { decodeBundle, kemPrekeyPublic, signedPrekeyPublic, verifyBundle } from '../web/src/protocol/prekeys.js';
import { LIMITS } from './limits.js';
import {
  api,
  auditCount,
  fullUpload,
  kemBatch,
  makeUser,
  oneTimeBatch,
  snapshot,
  uploadB64,
} from './test/directory-fixtures.js';

type Claim = {
  deviceList: { bytes: string; version: number };
  devices: {
    deviceId: string;
    bundle: string;
    oneTimePrekeyId: number | null;
    kemPrekeyId: number;
    kemLastResort: boolean;
    low: boolean;
    remaining: { oneTime: number; kem: number };
  }[];
  unavailable: string[];
};
const flip = (b: Uint8Array) => {
  const c = b.slice();
  c[5]! ^= 1;
  return c;
};
let ipn = 0;
const ip = () => `198.51.100.${++ipn}`;

describe('key directory: uploads', () => {
  it('upload then claim: the bundle verifies under the user identity key and the served device list', async () => {
    const bob = await makeUser('bob');
    const alice = await makeUser('alice');
    const up = await api('/api/keys', await bob.token(), {
      method: 'POST',
      json: { upload: uploadB64(fullUpload(bob.devices[0]!)) },
    });
    expect(up.status).toBe(200);
    expect(await up.json()).toMatchObject({ oneTime: 2, kem: 1, signedPrekey: true, lastResortKem: true, low: true });
    expect(await auditCount('prekeys.uploaded')).toBeGreaterThan(0);

    const res = await api('/api/keys/claim', await alice.token(), {
      method: 'POST',
      json: { userId: bob.userId },
      ip: ip(),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Claim;
    const list = await verifyDeviceList(
      bob.curves,
      decodeDeviceList(fromB64u(body.deviceList.bytes)),
      bob.t.identity.publicKey,
    );
    expect(body.devices).toHaveLength(1);
    const verified = await verifyBundle(
      bob.curves,
      decodeBundle(fromB64u(body.devices[0]!.bundle)),
      bob.t.identity.publicKey,
      list,
    );
    expect(verified.oneTimePrekey?.id).toBe(100);
    expect(verified.kemPrekey.lastResort).toBe(false);
    expect(body.devices[0]!.remaining).toEqual({ oneTime: 1, kem: 0 });
    expect(body.devices[0]!.low).toBe(true);
  });

  it('GET /api/keys/count reports the caller device counts and the low flag', async () => {
    const bob = await makeUser('counter');
    const token = await bob.token();
    expect(await (await api('/api/keys/count', token)).json()).toEqual({
      oneTime: 0,
      kem: 0,
      signedPrekey: false,
      lastResortKem: false,
      low: true,
    });
    const u = {
      signedPrekey: null,
      oneTimePrekeys: await oneTimeBatch(bob, 1000, LIMITS.prekeysLowWatermark),
      kemPrekeys: await kemBatch(bob, bob.devices[0]!, 5000, LIMITS.prekeysLowWatermark),
    };
    expect((await api('/api/keys', token, { method: 'POST', json: { upload: uploadB64(u) } })).status).toBe(200);
    expect(await (await api('/api/keys/count', token)).json()).toEqual({
      oneTime: 20,
      kem: 20,
      signedPrekey: false,
      lastResortKem: false,
      low: false,
    });
  });

  it('pitfall 1: a signed prekey with a bad signature is refused with 422 and nothing is stored', async () => {
    const bob = await makeUser('badspk');
    const good = fullUpload(bob.devices[0]!);
    const before = await snapshot();
    const bad = { ...good, signedPrekey: { ...good.signedPrekey!, signature: flip(good.signedPrekey!.signature) } };
    const res = await api('/api/keys', await bob.token(), { method: 'POST', json: { upload: uploadB64(bad) } });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_prekey_signature');
    const after = await snapshot();
    delete after.token_families;
    delete before.token_families;
    expect(after).toEqual(before);
  });

  it('pitfall 1: an ML-KEM prekey signed by another device, or with its last-resort flag flipped, is refused', async () => {
    const bob = await makeUser('badkem', 2);
    const token = await bob.token();
    const other = kemPrekeyPublic(bob.devices[1]!.kemPrekey);
    const flipped = { ...kemPrekeyPublic(bob.devices[0]!.kemPrekey), lastResort: true };
    for (const k of [other, flipped]) {
      const res = await api('/api/keys', token, {
        method: 'POST',
        json: { upload: uploadB64({ signedPrekey: null, oneTimePrekeys: [], kemPrekeys: [k] }) },
      });
      expect(res.status).toBe(422);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_prekey_signature');
    }
    expect(await (await api('/api/keys/count', token)).json()).toMatchObject({ kem: 0, lastResortKem: false });
  });

  it('a new last-resort KEM prekey replaces the previous one; a new signed prekey replaces the old', async () => {
    const bob = await makeUser('replace');
    const token = await bob.token();
    const dev = bob.devices[0]!;
    expect(
      (await api('/api/keys', token, { method: 'POST', json: { upload: uploadB64(fullUpload(dev)) } })).status,
    ).toBe(200);
    const [lr2] = await kemBatch(bob, dev, 777, 1, true);
    expect(
      (
        await api('/api/keys', token, {
          method: 'POST',
          json: { upload: uploadB64({ signedPrekey: null, oneTimePrekeys: [], kemPrekeys: [lr2!] }) },
        })
      ).status,
    ).toBe(200);
    const rows = await env.DB.prepare('SELECT key_id FROM kem_prekeys WHERE user_id = ? AND last_resort = 1')
      .bind(bob.userId)
      .all<{ key_id: number }>();
    expect(rows.results.map((r) => r.key_id)).toEqual([777]);
    const spk = signedPrekeyPublic(dev.signedPrekey);
    expect(
      (
        await api('/api/keys', token, {
          method: 'POST',
          json: { upload: uploadB64({ signedPrekey: spk, oneTimePrekeys: [], kemPrekeys: [] }) },
        })
      ).status,
    ).toBe(200);
    const spks = await env.DB.prepare('SELECT count(*) AS n FROM signed_prekeys WHERE user_id = ?')
      .bind(bob.userId)
      .first<{ n: number }>();
    expect(spks?.n).toBe(1);
  });

  it('duplicate key ids are refused (within an upload and against stored keys), nothing stored', async () => {
    const bob = await makeUser('dup');
    const token = await bob.token();
    const batch = await oneTimeBatch(bob, 1, 3);
    const inUpload = {
      signedPrekey: null,
      oneTimePrekeys: [batch[0]!, { ...batch[1]!, id: batch[0]!.id }],
      kemPrekeys: [],
    };
    const r1 = await api('/api/keys', token, { method: 'POST', json: { upload: uploadB64(inUpload) } });
    expect(r1.status).toBe(409);
    expect(((await r1.json()) as { error: { code: string } }).error.code).toBe('duplicate_prekey_id');
    expect(
      (
        await api('/api/keys', token, {
          method: 'POST',
          json: { upload: uploadB64({ signedPrekey: null, oneTimePrekeys: batch, kemPrekeys: [] }) },
        })
      ).status,
    ).toBe(200);
    const again = await oneTimeBatch(bob, 3, 2); // id 3 already stored
    const r2 = await api('/api/keys', token, {
      method: 'POST',
      json: { upload: uploadB64({ signedPrekey: null, oneTimePrekeys: again, kemPrekeys: [] }) },
    });
    expect(r2.status).toBe(409);
    expect(await (await api('/api/keys/count', token)).json()).toMatchObject({ oneTime: 3 });
  });

  it('batch and stored-count limits: more than maxPrekeysPerBatch → 422, beyond maxStoredPrekeys → 409 too_many_prekeys', async () => {
    const bob = await makeUser('many');
    const token = await bob.token();
    // Over the batch limit: the protocol decoder refuses it before any signature work.
    const tooMany = await oneTimeBatch(bob, 1, LIMITS.maxPrekeysPerBatch + 1);
    const w = new Uint8Array([1, 0, 0, 0, 0, tooMany.length]);
    const parts = [
      w.subarray(0, 2),
      new Uint8Array([0, 0, 0, tooMany.length]),
      ...tooMany.flatMap((k) => [new Uint8Array([0, 0, (k.id >> 8) & 255, k.id & 255]), k.publicKey]),
      new Uint8Array(4),
    ];
    const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      bytes.set(p, o);
      o += p.length;
    }
    const r1 = await api('/api/keys', token, {
      method: 'POST',
      json: { upload: toB64u(bytes) },
    });
    expect(r1.status).toBe(422);
    expect(await r1.json()).toMatchObject({ error: { code: 'too_many_prekeys', reason: 'batch' } });
    for (let i = 0; i < LIMITS.maxStoredPrekeys / LIMITS.maxPrekeysPerBatch; i++) {
      const b = await oneTimeBatch(bob, 10_000 + i * 1000, LIMITS.maxPrekeysPerBatch);
      expect(
        (
          await api('/api/keys', token, {
            method: 'POST',
            json: { upload: uploadB64({ signedPrekey: null, oneTimePrekeys: b, kemPrekeys: [] }) },
          })
        ).status,
      ).toBe(200);
    }
    const extra = await oneTimeBatch(bob, 90_000, 1);
    const r2 = await api('/api/keys', token, {
      method: 'POST',
      json: { upload: uploadB64({ signedPrekey: null, oneTimePrekeys: extra, kemPrekeys: [] }) },
    });
    expect(r2.status).toBe(409);
    expect(await r2.json()).toMatchObject({ error: { code: 'too_many_prekeys', reason: 'stored' } });
    expect(await (await api('/api/keys/count', token)).json()).toMatchObject({ oneTime: LIMITS.maxStoredPrekeys });
  });
});

describe('key directory: claims', () => {
  it('pitfall 5: 20 concurrent claims with ≥ 20 one-time prekeys get 20 distinct ones', async () => {
    const bob = await makeUser('popular');
    const dev = bob.devices[0]!;
    const u = {
      ...fullUpload(dev),
      oneTimePrekeys: await oneTimeBatch(bob, 1, 25),
      kemPrekeys: [...(await kemBatch(bob, dev, 300, 25)), kemPrekeyPublic(dev.lastResortKemPrekey)],
    };
    expect((await api('/api/keys', await bob.token(), { method: 'POST', json: { upload: uploadB64(u) } })).status).toBe(
      200,
    );
    const claimers = await Promise.all(Array.from({ length: 4 }, (_, i) => makeUser(`claimer${i}`)));
    const tokens = await Promise.all(claimers.map((c) => c.token()));
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        api('/api/keys/claim', tokens[i % 4]!, { method: 'POST', json: { userId: bob.userId }, ip: ip() }).then(
          (r) => r.json() as Promise<Claim>,
        ),
      ),
    );
    const otpIds = results.map((r) => r.devices[0]!.oneTimePrekeyId);
    const kemIds = results.map((r) => r.devices[0]!.kemPrekeyId);
    expect(otpIds.every((x) => x !== null)).toBe(true);
    expect(new Set(otpIds).size).toBe(20);
    expect(new Set(kemIds).size).toBe(20);
    expect(results.every((r) => !r.devices[0]!.kemLastResort)).toBe(true);
  });

  it('pitfall 5: with fewer one-time prekeys than claims, the rest get none and the last-resort KEM key — never a repeat', async () => {
    const bob = await makeUser('scarce');
    const dev = bob.devices[0]!;
    const u = {
      ...fullUpload(dev),
      oneTimePrekeys: await oneTimeBatch(bob, 1, 5),
      kemPrekeys: [...(await kemBatch(bob, dev, 300, 3)), kemPrekeyPublic(dev.lastResortKemPrekey)],
    };
    expect((await api('/api/keys', await bob.token(), { method: 'POST', json: { upload: uploadB64(u) } })).status).toBe(
      200,
    );
    // Four claimers, five claims each (one claimer may claim a given user 10 times an hour: bucket claimPair).
    const claimers = await Promise.all([0, 1, 2, 3].map(async (i) => (await makeUser(`drainer${i}`)).token()));
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        api('/api/keys/claim', claimers[i % 4]!, { method: 'POST', json: { userId: bob.userId }, ip: ip() }).then(
          (r) => r.json() as Promise<Claim>,
        ),
      ),
    );
    const otpIds = results.map((r) => r.devices[0]!.oneTimePrekeyId).filter((x) => x !== null);
    expect(otpIds.sort()).toEqual([1, 2, 3, 4, 5]);
    const oneTimeKem = results.filter((r) => !r.devices[0]!.kemLastResort).map((r) => r.devices[0]!.kemPrekeyId);
    expect(oneTimeKem.sort()).toEqual([300, 301, 302]);
    const lastResort = results.filter((r) => r.devices[0]!.kemLastResort);
    expect(lastResort).toHaveLength(17);
    expect(new Set(lastResort.map((r) => r.devices[0]!.kemPrekeyId))).toEqual(new Set([201]));
    expect(await auditCount('prekeys.claimed')).toBeGreaterThanOrEqual(20);
  });

  it('claims cover every live device; a device without prekeys is listed as unavailable; the caller device is skipped', async () => {
    const bob = await makeUser('multi', 3);
    await api('/api/keys', await bob.token(0), {
      method: 'POST',
      json: { upload: uploadB64(fullUpload(bob.devices[0]!)) },
    });
    await api('/api/keys', await bob.token(1), {
      method: 'POST',
      json: { upload: uploadB64(fullUpload(bob.devices[1]!)) },
    });
    const res = await api('/api/keys/claim', await bob.token(0), {
      method: 'POST',
      json: { userId: bob.userId },
      ip: ip(),
    });
    const body = (await res.json()) as Claim;
    expect(body.devices.map((d) => d.deviceId)).toEqual(['d1']);
    expect(body.unavailable).toEqual(['d2']);
  });

  it('claims are POST-only, need auth, 404 for an unknown user, and are rate-limited per claimer (bucket claim)', async () => {
    const alice = await makeUser('ratelimited');
    const token = await alice.token();
    expect((await api(`/api/keys/claim?userId=${alice.userId}`, token)).status).toBe(404);
    expect((await api('/api/keys/claim', null, { method: 'POST', json: { userId: alice.userId } })).status).toBe(401);
    const missing = await api('/api/keys/claim', token, { method: 'POST', json: { userId: 'nobody' }, ip: ip() });
    expect(missing.status).toBe(404);
    let last = 0;
    for (let i = 0; i < 61; i++) {
      last = (await api('/api/keys/claim', token, { method: 'POST', json: { userId: 'nobody' }, ip: ip() })).status;
    }
    expect(last).toBe(429);
  });
});
