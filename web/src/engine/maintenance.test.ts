/**
 * Prekey maintenance in the engine: the signed prekey rotates on schedule (issue 6: "rotate the signed
 * prekey on a schedule"), the retired one keeps answering late prekey messages for the grace period and is
 * then deleted, and a session started from a bundle fetched before a rotation still completes.
 * The clock is injected, so nothing here waits for real time.
 */
import { describe, expect, it } from 'vitest';
import { nobleCurves } from './_protocol.js';
import type { EngineContext } from './context.js';
import { createEngine } from './engine.js';
import { DEFAULT_KEYSTORE_CONFIG, Keystore } from './keystore.js';
import { memoryLocks } from './locks.js';
import { memoryStore } from './storage.js';
import { cryptoRng, ktOptions, makeWorld, newClient, texts, until } from './testing/harness.js';

const DAY = 24 * 3600 * 1000;
const FULL = { oneTime: 100, kem: 100, signedPrekey: true };

function keystoreAt(clock: { t: number }) {
  const ctx: EngineContext = {
    store: memoryStore(),
    api: undefined as unknown as EngineContext['api'],
    curves: nobleCurves,
    rng: cryptoRng,
    now: () => clock.t,
    locks: memoryLocks(),
    emit: () => {},
  };
  const keys = new Keystore(ctx, { ...DEFAULT_KEYSTORE_CONFIG, spkRotationMs: 7 * DAY, spkGraceMs: 30 * DAY });
  return { ctx, keys };
}

describe('signed prekey rotation', () => {
  it('rotates only when due; the retired key answers for the grace period, then it is deleted', async () => {
    const clock = { t: 1_000 * DAY };
    const { ctx, keys } = keystoreAt(clock);
    await keys.create({ userId: 'u1', deviceId: 'd1' });
    expect(await keys.prepareUpload({ oneTime: 0, kem: 0, signedPrekey: false })).not.toBeNull();
    const first = (await keys.held()).signed;
    expect(first).toHaveLength(1);
    const kemId = (await keys.held()).kem[0]!;
    const ids = (spk: number) => ({ signedPrekeyId: spk, oneTimePrekeyId: null, kemPrekeyId: kemId });

    clock.t += 7 * DAY - 1;
    expect(await keys.prepareUpload(FULL)).toBeNull();
    expect((await keys.held()).signed).toEqual(first);

    clock.t += 1;
    expect(await keys.prepareUpload(FULL)).not.toBeNull();
    const second = (await keys.held()).signed;
    expect(second).toHaveLength(2);
    expect(second).toContain(first[0]);
    // A late prekey message that names the retired key still finds it.
    expect(await keys.responderKeys(ctx.store, ids(first[0]!))).not.toBeNull();

    // Weekly rotations: the first key (retired at day 7) is kept while ≤ 30 days retired, then deleted.
    for (let week = 2; week <= 5; week++) {
      clock.t += 7 * DAY;
      expect(await keys.prepareUpload(FULL)).not.toBeNull();
      expect(await keys.responderKeys(ctx.store, ids(first[0]!))).not.toBeNull();
    }
    clock.t += 7 * DAY;
    expect(await keys.prepareUpload(FULL)).not.toBeNull();
    expect(await keys.responderKeys(ctx.store, ids(first[0]!))).toBeNull();
    expect((await keys.held()).signed).not.toContain(first[0]);
  }, 60_000);

  it('the server having lost our signed prekey triggers a new one even before it is due', async () => {
    const clock = { t: 50 * DAY };
    const { keys } = keystoreAt(clock);
    await keys.create({ userId: 'u1', deviceId: 'd1' });
    await keys.prepareUpload({ oneTime: 0, kem: 0, signedPrekey: false });
    const before = (await keys.held()).signed;
    clock.t += DAY;
    expect(await keys.prepareUpload({ ...FULL, signedPrekey: false })).not.toBeNull();
    expect((await keys.held()).signed).toHaveLength(before.length + 1);
  }, 60_000);

  it('a prekey message encrypted to the previous signed prekey decrypts after the recipient rotated', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    // Bob's engine runs on a clock the test moves.
    const clock = { t: Date.now() };
    const bobStore = memoryStore();
    const bob = createEngine({
      store: bobStore,
      api: w.server.api('bob', 'bob-1'),
      realtime: w.server.sockets('bob', 'bob-1'),
      curves: w.curves,
      rng: cryptoRng,
      now: () => clock.t,
      locks: memoryLocks(),
      keystore: { batch: 4, watermark: 2, spkRotationMs: 7 * DAY, spkGraceMs: 30 * DAY },
      backoff: { baseMs: 5, maxMs: 40 },
      // The server's log signs heads on the real clock; Bob's runs weeks ahead (no freshness bound here).
      kt: { ...ktOptions(w), maxHeadAgeMs: Number.POSITIVE_INFINITY },
    });
    const id = await bob.bootstrap({ userId: 'bob', deviceId: 'bob-1' });
    await w.server.register(id.deviceList);
    await bob.publishPrekeys();

    // Alice encrypts with Bob's current bundle (signed prekey #1) while Bob is offline.
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect([conv]);
    await alice.engine.sendText(conv, 'sent before the rotation');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'envelope queued for bob');

    // A week later Bob's maintenance rotates the signed prekey, then he syncs.
    clock.t += 7 * DAY;
    await bob.publishPrekeys();
    expect((await bobStore.list('ks/spk/')).length).toBe(2);
    await bob.syncMailbox();
    expect(await texts(bob, conv)).toEqual(['sent before the rotation']);
    alice.engine.close();
    bob.close();
  }, 60_000);
});

describe('one-time prekey replenishment', () => {
  it('new sessions that use our one-time prekeys make the engine top them up without being asked', async () => {
    const w = await makeWorld();
    const bob = await newClient(w, 'bob');
    const bobApi = w.server.api('bob', 'bob-1');
    expect((await bobApi.prekeyCounts()).oneTime).toBe(4);
    // Three people start sessions: each claim takes one of Bob's one-time prekeys (4 → 1, below 2).
    for (const name of ['alice', 'carol', 'dave']) {
      const c = await newClient(w, name);
      const conv = await c.engine.createConversation({ kind: 'direct', members: ['bob'] });
      await c.engine.connect([conv]);
      await c.engine.sendText(conv, `hi from ${name}`);
      await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, `${name}'s envelope`);
      c.engine.close();
    }
    expect((await bobApi.prekeyCounts()).oneTime).toBe(1);
    // Bob only syncs; the engine notices the consumed prekeys and replenishes to the batch size.
    await bob.engine.syncMailbox();
    await bob.engine.idle();
    expect((await bobApi.prekeyCounts()).oneTime).toBe(4);
    expect((await bob.engine.publishPrekeys()).oneTime).toBe(4);
    bob.engine.close();
  }, 60_000);

  it('two tabs maintaining at once mint each prekey id once (one maintenance run at a time)', async () => {
    const w = await makeWorld();
    const store = memoryStore();
    const locks = memoryLocks();
    const tab1 = await newClient(w, 'bob', 'bob-1', { store, locks });
    const api = w.server.api('bob', 'bob-1');
    await newClient(w, 'alice');
    const alice = w.server.api('alice', 'alice-1');
    for (let i = 0; i < 3; i++) await alice.claimBundles('bob');
    expect((await api.prekeyCounts()).oneTime).toBe(1);
    const tab2 = createEngine({
      store,
      api,
      realtime: w.server.sockets('bob', 'bob-1'),
      curves: w.curves,
      rng: cryptoRng,
      locks,
      keystore: { batch: 4, watermark: 2 },
      kt: ktOptions(w),
    });
    await Promise.all([tab1.engine.publishPrekeys(), tab2.publishPrekeys()]);
    // Exactly one top-up of 3: the second run saw the first one's upload.
    expect((await api.prekeyCounts()).oneTime).toBe(4);
    const held = (await store.list('ks/otp/')).map((e) => e.key);
    expect(new Set(held).size).toBe(held.length);
    expect(held.length).toBe(4 + 3); // the batch, plus the three claimed ones still held until used
    tab1.engine.close();
    tab2.close();
  }, 60_000);
});
