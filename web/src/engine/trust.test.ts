import { describe, expect, it } from 'vitest';
import { mlkemKeygen } from '../protocol/primitives.js';
import { makeTestDevice } from '../protocol/testing.js';
import {
  constants,
  decodePrekeyUpload,
  fromB64u,
  generateEd25519,
  kemPrekeyPublic,
  nobleCurves,
  oneTimePrekeyPublic,
  signedPrekeyPublic,
} from './_protocol.js';
import type { EngineContext } from './context.js';
import { DEFAULT_KEYSTORE_CONFIG, Keystore } from './keystore.js';
import { memoryLocks } from './locks.js';
import { WITHHELD } from './messages.js';
import { memoryStore, putJson, readJson } from './storage.js';
import { cryptoRng, makeWorld, newClient, texts, until } from './testing/harness.js';

describe('PITFALLS 16: only devices in a verified signed list are encrypted to', () => {
  it('a device the server adds to a user without the user identity key signing it gets nothing', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    // The server injects "bob-evil": certified by a key that is not Bob's identity key, with prekeys.
    const evil = await makeTestDevice(
      w.curves,
      cryptoRng,
      await generateEd25519(w.curves, cryptoRng),
      'bob',
      'bob-evil',
    );
    w.server.addUnlistedDevice('bob', evil.certificate, {
      spk: signedPrekeyPublic(evil.signedPrekey),
      otp: oneTimePrekeyPublic(evil.oneTimePrekeys[0]!),
      kem: kemPrekeyPublic(evil.lastResortKemPrekey),
    });
    await alice.engine.connect([conv]);
    const m = await alice.engine.sendText(conv, 'for bob only');
    await until(
      async () => (await alice.engine.messages(conv)).find((x) => x.clientId === m.clientId)?.status === 'sent',
      'accepted',
    );
    const toEvil = w.server.pending(conv, 'bob', 'bob-evil');
    expect(toEvil.map((e) => e.c)).toEqual([WITHHELD]);
    expect(fromB64u(toEvil[0]!.c)).toEqual(Uint8Array.of(0));
    await bob.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['for bob only']);
    expect((await alice.engine.contact('bob')).deviceIds).toEqual(['bob-1']);
    alice.engine.close();
  });
});

describe('PITFALLS 17 and 19: sender keys follow the verified membership log', () => {
  it('a member added by the server alone receives no sender key; removal rotates the key', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const mallory = await newClient(w, 'mallory');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'g' });
    w.server.insertMemberWithoutEntry(conv, 'mallory');
    expect(await alice.engine.members(conv)).toEqual(['alice', 'bob', 'carol']);
    await alice.engine.connect([conv]);
    await alice.engine.sendText(conv, 'group hello');
    await until(() => w.server.pending(conv, 'mallory', 'mallory-1').length === 2, 'skd + group message');
    const [skd, group] = w.server.pending(conv, 'mallory', 'mallory-1');
    expect(skd!.mode).toBe('pairwise');
    expect(skd!.c).toBe(WITHHELD);
    expect(group!.mode).toBe('group');
    await mallory.engine.syncMailbox();
    const seen = await mallory.engine.messages(conv);
    expect(seen.map((m) => [m.status, m.error])).toEqual([['undecryptable', 'no_session']]);
    expect(await mallory.store.list(`skr/${conv}/alice/`)).toEqual([]);
    await bob.engine.syncMailbox();
    await carol.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['group hello']);
    expect(await texts(carol.engine, conv)).toEqual(['group hello']);

    // Carol is removed with a signed entry: Alice's next group message uses a fresh chain, sent to Bob only.
    const chainOf = (c: string) => new DataView(fromB64u(c).buffer).getUint32(1);
    const firstChain = chainOf(group!.c);
    await alice.engine.removeMember(conv, 'carol');
    await alice.engine.sendText(conv, 'without carol');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 2, 'bob gets skd + message');
    const [skd2, group2] = w.server.pending(conv, 'bob', 'bob-1');
    expect(skd2!.c).not.toBe(WITHHELD);
    expect(chainOf(group2!.c)).not.toBe(firstChain);
    expect(w.server.pending(conv, 'carol', 'carol-1')).toEqual([]);
    await bob.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['group hello', 'without carol']);
    alice.engine.close();
  });
});

describe('keystore', () => {
  it('deletes a one-time prekey private half after use and tops up below the watermark', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const held = async () => ({ oneTime: (await bob.store.list('ks/otp/')).map((e) => e.key) });
    const before = (await held()).oneTime;
    expect(before.length).toBe(4);
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect([conv]);
    await alice.engine.sendText(conv, 'x');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'sent');
    await bob.engine.syncMailbox();
    const after = (await held()).oneTime;
    expect(after.length).toBe(3);
    expect(before.filter((id) => !after.includes(id)).length).toBe(1);
    // Server count 3 ≥ watermark 2: nothing to do; after two more claims it tops up to the batch size.
    expect((await bob.engine.publishPrekeys()).oneTime).toBe(3);
    await w.server.api('alice', 'alice-1').claimBundles('bob');
    await w.server.api('alice', 'alice-1').claimBundles('bob');
    expect((await bob.engine.publishPrekeys()).oneTime).toBe(4);
    alice.engine.close();
  });

  it('a new session deletes the one-time ML-KEM prekey it used and keeps the last-resort one', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const carol = await newClient(w, 'carol');
    const bob = await newClient(w, 'bob');
    const kems = async () => {
      const out = new Map<number, boolean>();
      for (const e of await bob.store.list('ks/kem/')) {
        const rec = (await readJson<{ id: number; lastResort: boolean }>(bob.store, e.key))!;
        out.set(rec.id, rec.lastResort);
      }
      return out;
    };
    const before = await kems();
    const lastResort = [...before].filter(([, lr]) => lr).map(([id]) => id);
    expect([before.size, lastResort.length]).toEqual([5, 1]);

    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect([conv]);
    await alice.engine.sendText(conv, 'x');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'sent');
    await bob.engine.syncMailbox();
    const after = await kems();
    const gone = [...before.keys()].filter((id) => !after.has(id));
    expect(gone).toHaveLength(1);
    expect(before.get(gone[0]!)).toBe(false);

    // The server's one-time ML-KEM keys run out (Bob's top-up after the first session has finished:
    // 3 left ≥ watermark 2, nothing uploaded): Carol's session uses the last-resort key, which Bob keeps.
    await bob.engine.publishPrekeys();
    for (let i = 0; i < 3; i++) await w.server.api('alice', 'alice-1').claimBundles('bob');
    const conv2 = await carol.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await carol.engine.connect([conv2]);
    await carol.engine.sendText(conv2, 'y');
    await until(() => w.server.pending(conv2, 'bob', 'bob-1').length === 1, 'sent');
    await bob.engine.syncMailbox();
    expect(await texts(bob.engine, conv2)).toEqual(['y']);
    const afterCarol = await kems();
    expect([...after.keys()].filter((id) => !afterCarol.has(id))).toEqual([]);
    expect(afterCarol.get(lastResort[0]!)).toBe(true);
    alice.engine.close();
    carol.engine.close();
  });

  it('KEM prekey records keep the seed; a record written before (expanded key only) still opens its session', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const carol = await newClient(w, 'carol');
    const bob = await newClient(w, 'bob');
    type Rec = { id: number; keyPair: { publicKey: Uint8Array; seed?: Uint8Array; secretKey?: Uint8Array } };
    const records = async () =>
      Promise.all(
        (await bob.store.list('ks/kem/')).map(async (e) => ({
          key: e.key,
          rec: (await readJson<Rec>(bob.store, e.key))!,
        })),
      );
    for (const { rec } of await records()) expect(rec.keyPair.seed).toHaveLength(64);
    // Bob's records as an older version wrote them (no seed, the 3,168-byte expanded key), then as the
    // WebCrypto path writes them (seed only): each opens a session on this platform's path.
    const original = new Map((await records()).map(({ key, rec }) => [key, rec.keyPair]));
    const rewrite = async (keep: 'secretKey' | 'seed') => {
      for (const { key, rec } of await records()) {
        const { seed, secretKey, publicKey } = original.get(key)!;
        const keyPair =
          keep === 'seed' ? { publicKey, seed } : { publicKey, secretKey: secretKey ?? mlkemKeygen(seed!).secretKey };
        await putJson(bob.store, key, { ...rec, keyPair });
      }
    };
    let n = 0;
    for (const [who, keep] of [
      [alice, 'secretKey'],
      [carol, 'seed'],
    ] as const) {
      await rewrite(keep);
      const conv = await who.engine.createConversation({ kind: 'direct', members: ['bob'] });
      await who.engine.connect([conv]);
      await who.engine.sendText(conv, `from ${who.userId}`);
      await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'sent');
      await bob.engine.syncMailbox();
      expect(await texts(bob.engine, conv)).toEqual([`from ${who.userId}`]);
      n++;
    }
    expect(n).toBe(2);
    alice.engine.close();
    carol.engine.close();
  });

  it('the default top-up fits one upload: 100 KEM keys including the last-resort one, never 101', async () => {
    const ctx: EngineContext = {
      store: memoryStore(),
      api: undefined as unknown as EngineContext['api'],
      curves: nobleCurves,
      rng: cryptoRng,
      now: Date.now,
      locks: memoryLocks(),
      emit: () => {},
    };
    const keys = new Keystore(ctx, DEFAULT_KEYSTORE_CONFIG);
    await keys.create({ userId: 'u1', deviceId: 'd1' });
    const bytes = await keys.prepareUpload({ oneTime: 0, kem: 0, signedPrekey: false });
    const upload = decodePrekeyUpload(bytes!);
    expect(upload.oneTimePrekeys.length).toBe(DEFAULT_KEYSTORE_CONFIG.batch);
    expect(upload.kemPrekeys.length).toBe(constants.MAX_KEM_PREKEYS_PER_UPLOAD);
    expect(upload.kemPrekeys.filter((k) => k.lastResort).length).toBe(1);
  }, 60_000);
});
