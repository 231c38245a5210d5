/**
 * The key-transparency log (worker/kt-log.ts, worker/kt/store.ts) and what the Worker serves from it:
 * appends from registration and identity reset, the group commit, a restart, proofs that verify with the
 * protocol core against heads signed by the log key, version rules, deletion tombstones, self-healing of a
 * lost append, and the public /api/kt routes.
 */
import { abortAllDurableObjects, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { fromB64u, toB64u } from '../web/src/protocol/bytes.js';
import { ed25519FromSecret, generateEd25519 } from '../web/src/protocol/keys.js';
import { verifyConsistency } from '../web/src/protocol/merkle.js';
import { defaultCurves } from '../web/src/protocol/primitives.js';
import {
  decodeKtEntry,
  type VerifiedTreeHead,
  verifyEntryInclusion,
  verifyHeadConsistency,
  verifyTreeHead,
} from '../web/src/protocol/transparency.js';
import { KtStore } from './kt/store.js';
import { type KtAppend, logSigningKey } from './kt-log.js';
import { ConfigError } from './secrets.js';
import { makeUser } from './test/directory-fixtures.js';
import { api, freshIp, newIdentity, registerUser, rng, signedChallenge } from './test/fixtures.js';

const logPublic = async () =>
  (await ed25519FromSecret(await defaultCurves(), fromB64u(env.KT_LOG_SIGNING_KEY))).publicKey;
const verifyHead = async (bytes: Uint8Array) => verifyTreeHead(await defaultCurves(), await logPublic(), bytes);
/** A log object of its own (the app's log is `kt-log`; tests that count entries use a private one). */
const privateLog = () => env.KT_LOG.get(env.KT_LOG.idFromName(`kt-test-${crypto.randomUUID()}`));
const appLog = () => env.KT_LOG.get(env.KT_LOG.idFromName('kt-log'));

async function keyAppend(
  userId = `u_${crypto.randomUUID().slice(0, 8)}`,
  version = 1,
): Promise<KtAppend & { kind: 'key' }> {
  const k = await generateEd25519(await defaultCurves(), rng);
  return { kind: 'key', userId, version, username: `n${userId.slice(2, 10)}`, identityKey: k.publicKey };
}

interface KtJson {
  entry: string;
  index: number;
  head: string;
  proof: string[];
}

/** Verifies a `kt` answer like a client does; returns the entry and the verified head. */
async function verifyKt(kt: KtJson) {
  const head = await verifyHead(fromB64u(kt.head));
  const entry = verifyEntryInclusion(head, kt.index, fromB64u(kt.entry), kt.proof.map(fromB64u));
  return { entry, head };
}

const json = async <T>(res: Response) => (await res.json()) as T;

describe('the log records registrations and identity resets', () => {
  it('a registration is in the log: the lookup proves (username, user id, key, version 1) under a head signed by the log key', async () => {
    const alice = await registerUser();
    const bob = await registerUser();
    const res = await api(`/api/users/by-name/${alice.username}`, { method: 'GET', token: bob.accessToken });
    expect(res.status).toBe(200);
    const body = await json<{ identityKey: string; kt: KtJson }>(res);
    const { entry } = await verifyKt(body.kt);
    expect(entry).toMatchObject({ kind: 'key', userId: alice.userId, username: alice.username, version: 1 });
    expect(entry.kind === 'key' && toB64u(entry.identityKey)).toBe(toB64u(alice.keys.identity.publicKey));
    expect(body.identityKey).toBe(toB64u(alice.keys.identity.publicKey));
  });

  it('an identity reset appends version 2 with the new key; the device-list fetch proves it and the old head is consistent with the new one', async () => {
    const u = await registerUser();
    const viewer = await registerUser();
    const before = await json<{ kt: KtJson }>(
      await api(`/api/users/${u.userId}/device-list`, { method: 'GET', token: viewer.accessToken }),
    );
    const old = await verifyKt(before.kt);
    expect(old.entry.version).toBe(1);

    const fresh = await newIdentity(u.userId, 2);
    const ip = freshIp();
    const reset = await api('/api/auth/reset-identity', {
      ip,
      body: {
        username: u.username,
        passwordPrehash: u.prehash,
        userIdentityKey: toB64u(fresh.identity.publicKey),
        deviceList: toB64u(fresh.listBytes),
        deviceId: fresh.deviceId,
        ...(await signedChallenge(fresh.device, u.userId, ip)),
      },
    });
    expect(reset.status).toBe(200);
    const after = await json<{ identityKey: string; kt: KtJson }>(
      await api(`/api/users/${u.userId}/device-list`, { method: 'GET', token: viewer.accessToken }),
    );
    const now = await verifyKt(after.kt);
    expect(now.entry).toMatchObject({ kind: 'key', userId: u.userId, username: u.username, version: 2 });
    expect(now.entry.kind === 'key' && toB64u(now.entry.identityKey)).toBe(toB64u(fresh.identity.publicKey));
    expect(after.kt.index).toBeGreaterThan(before.kt.index);

    const proof = await json<{ proof: string[] }>(
      await api(`/api/kt/consistency?from=${old.head.size}&to=${now.head.size}`, { method: 'GET' }),
    );
    verifyHeadConsistency(old.head, now.head, proof.proof.map(fromB64u));
  });

  it('a lost append heals: a user D1 knows but the log never recorded gets its entry on the first lookup', async () => {
    const viewer = await registerUser();
    const ghost = await makeUser('ktghost'); // written straight to D1, never through the log
    expect(await appLog().proveLatest(ghost.userId)).toBeNull();
    const res = await api(`/api/users/${ghost.userId}/device-list`, { method: 'GET', token: viewer.accessToken });
    const { entry } = await verifyKt((await json<{ kt: KtJson }>(res)).kt);
    expect(entry).toMatchObject({ kind: 'key', userId: ghost.userId, version: 1 });
    expect(entry.kind === 'key' && toB64u(entry.identityKey)).toBe(toB64u(ghost.t.identity.publicKey));
  });
});

describe('the log object', () => {
  it('batches: one call of 40 entries is one commit in call order; 40 concurrent calls share commits and get distinct consecutive indices', async () => {
    const log = privateLog();
    const specs = await Promise.all(Array.from({ length: 40 }, () => keyAppend()));
    const results = await log.append(specs);
    expect(results.map((r) => r.ok && r.index)).toEqual(specs.map((_, i) => i));
    expect(await log.stats()).toMatchObject({ size: 40, commits: 1 });
    // Every entry is provable against the head signed for them.
    for (const [i, s] of specs.entries()) {
      const p = (await log.proveLatest(s.userId))!;
      expect(p.index).toBe(i);
      const head = await verifyHead(p.head);
      expect(head.size).toBe(40);
      expect(verifyEntryInclusion(head, p.index, p.entry, p.proof).userId).toBe(s.userId);
    }
    const burst = await Promise.all(Array.from({ length: 40 }, () => keyAppend()));
    const got = await Promise.all(burst.map((s) => log.append([s])));
    expect(got.map((r) => (r[0]!.ok ? r[0]!.index : -1)).sort((a, b) => a - b)).toEqual(burst.map((_, i) => 40 + i));
    const { commits } = await log.stats();
    expect(commits - 1).toBeLessThan(40); // calls that arrived together were committed together
  });

  it('version rules: a retry is a duplicate with the same index, a different key at a version is a conflict, older versions are stale, nothing follows a deletion', async () => {
    const log = privateLog();
    const v1 = await keyAppend('u_rules');
    const [a] = await log.append([v1]);
    const [again] = await log.append([{ ...v1 }]);
    expect(again).toEqual({ ok: true, index: (a as { index: number }).index, version: 1, duplicate: true });
    const other = await keyAppend('u_rules');
    expect((await log.append([other]))[0]).toEqual({ ok: false, reason: 'conflict' });
    const v3 = await keyAppend('u_rules', 3); // a gap is allowed (an append lost between two resets)
    expect((await log.append([v3]))[0]).toMatchObject({ ok: true, version: 3, duplicate: false });
    expect((await log.append([await keyAppend('u_rules', 2)]))[0]).toEqual({ ok: false, reason: 'stale_version' });
    expect((await log.append([v1]))[0]).toMatchObject({ ok: true, duplicate: true, version: 1 });
    const del = await log.recordDeletion('u_rules');
    expect(del).toMatchObject({ ok: true, version: 4, duplicate: false });
    expect(await log.recordDeletion('u_rules')).toMatchObject({ ok: true, version: 4, duplicate: true });
    expect((await log.append([await keyAppend('u_rules', 5)]))[0]).toEqual({ ok: false, reason: 'deleted' });
    // Two entries for one user in the same batch (one call): the second sees the first.
    const pair = await log.append([await keyAppend('u_pair', 1), await keyAppend('u_pair', 2)]);
    expect(pair).toMatchObject([
      { ok: true, version: 1 },
      { ok: true, version: 2 },
    ]);
    expect((await log.append([{ ...v1, userId: '' }]))[0]).toEqual({ ok: false, reason: 'invalid' });
  });

  it('a deletion appends a tombstone naming neither username nor key, erases the earlier entries, and every earlier head stays consistent', async () => {
    const log = privateLog();
    const alice = await keyAppend('u_del');
    await log.append([alice, await keyAppend()]);
    const before = await verifyHead((await log.proveLatest('u_del'))!.head);
    await log.append([{ ...(await keyAppend('u_del', 2)) }]);
    await log.recordDeletion('u_del');
    const p = (await log.proveLatest('u_del'))!;
    const head = await verifyHead(p.head);
    const tomb = verifyEntryInclusion(head, p.index, p.entry, p.proof);
    expect(tomb).toEqual({ kind: 'deleted', userId: 'u_del', version: 3, time: tomb.time });
    const stored = await runInDurableObject(log, (_i, state) => {
      const s = new KtStore(state.storage);
      s.init();
      return [s.entryFor('u_del', 1), s.entryFor('u_del', 2)];
    });
    expect(stored.map((e) => e?.entry)).toEqual([null, null]);
    const proof = (await log.consistency(before.size, head.size))!;
    verifyConsistency(before.size, head.size, proof, before.root, head.root);
  });

  it('restart: after every object is aborted the log rebuilds its tree from storage — old proofs, consistency and new appends all hold', async () => {
    const log = privateLog();
    const first = await Promise.all(Array.from({ length: 13 }, () => keyAppend()));
    await log.append(first);
    const headBefore = await verifyHead(await log.head());
    expect(headBefore.size).toBe(13);
    await abortAllDurableObjects();
    const restarted = env.KT_LOG.get((log as unknown as { id: DurableObjectId }).id);
    expect((await restarted.stats()).size).toBe(13);
    const more = await Promise.all(Array.from({ length: 7 }, () => keyAppend()));
    await restarted.append(more);
    const p = (await restarted.proveLatest(more[6]!.userId))!;
    const head = await verifyHead(p.head);
    expect(head.size).toBe(20);
    expect(verifyEntryInclusion(head, 19, p.entry, p.proof).userId).toBe(more[6]!.userId);
    const c = (await restarted.consistency(13, 20))!;
    verifyConsistency(13, 20, c, headBefore.root, head.root);
    const old = (await restarted.proveLatest(first[0]!.userId))!;
    expect(verifyEntryInclusion(await verifyHead(old.head), 0, old.entry, old.proof).userId).toBe(first[0]!.userId);
  });

  it('heads: the alarm publishes one after appends, a reader never gets one older than headIntervalMs, and every head is signed by the log key', async () => {
    const log = privateLog();
    await log.append([await keyAppend()]);
    // The append scheduled the alarm (50 ms here); on a loaded machine it may have fired by itself already,
    // so run it only if it is still pending. No reader asked for a head: the alarm alone published it.
    await runDurableObjectAlarm(log);
    expect((await log.stats()).latestHeadSize).toBe(1);
    const h1 = await verifyHead(await log.head());
    await new Promise((r) => setTimeout(r, 60)); // KT_CONFIG headIntervalMs = 50 in the test pool
    const h2 = await verifyHead(await log.head());
    expect(h2.size).toBe(1);
    expect(h2.time).toBeGreaterThan(h1.time);
    expect(h2.root).toEqual(h1.root);
    // One row per size: the re-signed head replaced the older one.
    expect((await log.heads(0, 10)).length).toBe(1);
  });
});

describe('the log key', () => {
  it('a missing, malformed or mismatched key is a configuration error, never a silent default', async () => {
    await expect(logSigningKey({ KT_LOG_SIGNING_KEY: '' })).rejects.toThrow(ConfigError);
    await expect(logSigningKey({ KT_LOG_SIGNING_KEY: 'not base64url!' })).rejects.toThrow(/base64url/);
    await expect(logSigningKey({ KT_LOG_SIGNING_KEY: toB64u(rng(16)) })).rejects.toThrow(/32-byte/);
    const seed = toB64u(rng(32));
    const key = await logSigningKey({ KT_LOG_SIGNING_KEY: seed });
    expect(
      (await logSigningKey({ KT_LOG_SIGNING_KEY: seed, KT_LOG_PUBLIC_KEY: toB64u(key.publicKey) })).publicKey,
    ).toEqual(key.publicKey);
    await expect(
      logSigningKey({ KT_LOG_SIGNING_KEY: seed, KT_LOG_PUBLIC_KEY: toB64u(await logPublic()) }),
    ).rejects.toThrow(/does not belong/);
  });
});

describe('/api/kt (public)', () => {
  it('head, heads and consistency: every published head verifies and is consistent with the next', async () => {
    await registerUser();
    await registerUser();
    const head = await verifyHead(
      fromB64u((await json<{ head: string }>(await api('/api/kt/head', { method: 'GET' }))).head),
    );
    expect(head.size).toBeGreaterThanOrEqual(2);
    await registerUser();
    await api(`/api/kt/head`, { method: 'GET' });
    await new Promise((r) => setTimeout(r, 60));
    await api(`/api/kt/head`, { method: 'GET' });
    const page = await json<{ heads: string[]; more: boolean }>(
      await api('/api/kt/heads?after=0&limit=1000', { method: 'GET' }),
    );
    const heads: VerifiedTreeHead[] = [];
    for (const h of page.heads) heads.push(await verifyHead(fromB64u(h)));
    expect(heads.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < heads.length; i++) {
      expect(heads[i]!.size).toBeGreaterThan(heads[i - 1]!.size);
      const c = await json<{ proof: string[] }>(
        await api(`/api/kt/consistency?from=${heads[i - 1]!.size}&to=${heads[i]!.size}`, { method: 'GET' }),
      );
      verifyHeadConsistency(heads[i - 1]!, heads[i]!, c.proof.map(fromB64u));
    }
    const key = await json<{ publicKey: string }>(await api('/api/kt/key', { method: 'GET' }));
    expect(key.publicKey).toBe(toB64u(await logPublic()));
  });

  it('bad sizes are 400 with a stable code, never a 500', async () => {
    const size = (
      await verifyHead(fromB64u((await json<{ head: string }>(await api('/api/kt/head', { method: 'GET' }))).head))
    ).size;
    for (const [q, code] of [
      ['from=0&to=1', 'kt_out_of_range'],
      [`from=2&to=1`, 'kt_out_of_range'],
      [`from=1&to=${size + 1000}`, 'kt_out_of_range'],
      ['from=a&to=1', 'invalid_request'],
      ['from=1', 'invalid_request'],
      ['from=-1&to=2', 'invalid_request'],
      ['from=1.5&to=2', 'invalid_request'],
      [`from=1&to=${'9'.repeat(40)}`, 'invalid_request'],
    ] as const) {
      const res = await api(`/api/kt/consistency?${q}`, { method: 'GET' });
      expect(res.status, q).toBe(400);
      expect((await json<{ error: { code: string } }>(res)).error.code, q).toBe(code);
    }
    expect((await api('/api/kt/heads?limit=0', { method: 'GET' })).status).toBe(400);
    expect((await api('/api/kt/heads?after=x', { method: 'GET' })).status).toBe(400);
  });

  it('an entry decodes to exactly the fields the issue names: username, user id, key, version (and the log time)', async () => {
    const u = await registerUser();
    const p = (await appLog().proveLatest(u.userId))!;
    const e = decodeKtEntry(p.entry);
    expect(Object.keys(e).sort()).toEqual(['identityKey', 'kind', 'time', 'userId', 'username', 'version']);
  });
});
