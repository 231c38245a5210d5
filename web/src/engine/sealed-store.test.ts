import { describe, expect, it } from 'vitest';
import { utf8 } from './codec.js';
import { memoryLocks } from './locks.js';
import { EPOCH_ID, memoryRawKv, openSealedStore, StoreLockedError } from './sealed-store.js';
import { readJson } from './storage.js';
import { engineOn, makeWorld, newClient, ownIdentity, texts, until } from './testing/harness.js';

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

describe('sealed store (the IndexedDB sealing layer)', () => {
  it('raw contents hold no plaintext, no private key bytes and no readable record names', async () => {
    const w = await makeWorld();
    const raw = memoryRawKv();
    const store = await openSealedStore(raw);
    const alice = await newClient(w, 'alice');
    const bobEngine = engineOn(w, 'bob', 'bob-1', store, memoryLocks());
    const id = await bobEngine.bootstrap({ userId: 'bob', deviceId: 'bob-1' });
    await w.server.register(id.deviceList);
    await bobEngine.publishPrekeys();
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect([conv]);
    const marker = 'PLAINTEXT-MARKER-7f3a';
    await alice.engine.sendText(conv, marker);
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'sent');
    await bobEngine.syncMailbox();
    await bobEngine.connect([conv]);
    await bobEngine.sendText(conv, `${marker} reply`);
    await until(async () => (await texts(alice.engine, conv)).length === 2, 'reply');
    expect(await texts(bobEngine, conv)).toContain(marker);

    const own = await ownIdentity(store);
    const otp = await store.list('ks/otp/');
    const secrets = [own.userIdentity.secretKey, own.signing.secretKey, own.identity.secretKey];
    const otpSecret = (await readJson<{ keyPair: { secretKey: Uint8Array } }>(store, otp[0]!.key))!.keyPair.secretKey;
    secrets.push(otpSecret);
    const dump = raw.dump();
    expect(dump.length).toBeGreaterThan(10);
    for (const r of dump) {
      expect(contains(r.value, utf8(marker))).toBe(false);
      for (const s of secrets) expect(contains(r.value, s)).toBe(false);
      // Record names are opaque HMAC ids: none of the plain names' path separators or user/device ids
      // survive (short substrings like "ks" can occur by chance in random base64url, so they prove nothing).
      expect(r.id).not.toMatch(/\/|bob-1|alice-1/);
    }
    // The keys are non-extractable CryptoKeys.
    const meta = raw.meta()!;
    expect(meta.mode).toBe('device');
    if (meta.mode === 'device') expect(meta.dataKey.extractable).toBe(false);
    alice.engine.close();
    bobEngine.close();
  });

  it('a record moved to another slot does not open; transactions detect a concurrent writer', async () => {
    const raw = memoryRawKv();
    const a = await openSealedStore(raw);
    await a.put('x/1', utf8('one'));
    await a.put('x/2', utf8('two'));
    const [r1, r2] = raw.dump();
    await raw.commit([], [{ id: r1!.id, value: r2!.value }]);
    await expect(a.list('x/')).rejects.toThrow();
    // Two handles on the same backend ("tabs"): a write between read and commit forces a retry.
    const raw2 = memoryRawKv();
    const t1 = await openSealedStore(raw2);
    await t1.put('n/c', utf8('0'));
    let runs = 0;
    await t1
      .transaction(async (tx) => {
        runs++;
        const v = await tx.get('n/c');
        if (runs === 1) {
          const other = raw2.dump()[0]!;
          await raw2.commit([], [{ id: other.id, value: other.value.slice().reverse() }]);
        }
        tx.put('n/c', v ?? utf8('?'));
      })
      .catch(() => undefined);
    expect(runs).toBeGreaterThan(1);
  });

  it('reads asked for in one turn reach the backend as one getMany; each answer as alone; a batched read is still checked at commit', async () => {
    const base = memoryRawKv();
    const calls: number[] = [];
    const lone: string[] = [];
    const raw = {
      ...base,
      get: (id: string) => {
        if (id !== EPOCH_ID) lone.push(id);
        return base.get(id);
      },
      getMany: (ids: readonly string[]) => {
        calls.push(ids.length);
        return base.getMany(ids);
      },
    };
    const s = await openSealedStore(raw);
    await s.transaction(async (tx) => {
      tx.put('b/1', utf8('one'));
      tx.put('b/3', utf8('three'));
    });
    calls.length = 0;
    const keys = ['b/1', 'b/2', 'b/3', 'c/4', 'b/1'];
    expect(await Promise.all(keys.map((k) => s.get(k)))).toEqual([
      utf8('one'),
      undefined,
      utf8('three'),
      undefined,
      utf8('one'),
    ]);
    expect(calls).toEqual([5]);
    // Inside a transaction: one getMany for the lookups made together; a write between read and commit by
    // another tab (here, straight into the backend) still forces the transaction to run again.
    calls.length = 0;
    let runs = 0;
    await s
      .transaction(async (tx) => {
        runs++;
        const [one, two] = await Promise.all([tx.get('b/1'), tx.get('b/2')]);
        if (runs === 1) {
          const other = base.dump().find((r) => r.value.length > 0)!;
          await base.commit([], [{ id: other.id, value: other.value.slice().reverse() }]);
        }
        tx.put('b/2', one ?? two ?? utf8('?'));
      })
      .catch(() => undefined);
    expect(runs).toBeGreaterThan(1);
    expect(calls[0]).toBe(2);
    expect(lone).toEqual([]); // records are only ever read through getMany
  });

  it('a record another tab rewrote is read as it is now, never as this instance opened or wrote it before', async () => {
    const raw = memoryRawKv();
    const a = await openSealedStore(raw);
    const b = await openSealedStore(raw); // a second tab: same keys, its own memory
    await a.put('s/r', utf8('one'));
    expect(await a.get('s/r')).toEqual(utf8('one')); // opened (and remembered) by a
    await b.put('s/r', utf8('two'));
    expect(await a.get('s/r')).toEqual(utf8('two'));
    expect(await a.list('s/')).toEqual([{ key: 's/r', value: utf8('two') }]);
    await a.transaction(async (tx) => {
      expect(await tx.get('s/r')).toEqual(utf8('two'));
      tx.put('s/r', utf8('three'));
    });
    await b.delete('s/r');
    expect(await a.get('s/r')).toBeUndefined();
    // The same bytes written back under the same slot open again (and a record's value is a copy).
    await b.put('s/q', utf8('four'));
    const got = (await a.get('s/q'))!;
    got.fill(0);
    expect(await a.get('s/q')).toEqual(utf8('four'));
    // A re-key in one tab: the other's remembered ids and records are worthless; it fails, then re-opens.
    await b.setPassphrase(null);
    await expect(a.put('s/q', utf8('five'))).rejects.toThrow(StoreLockedError);
    const a2 = await openSealedStore(raw);
    expect(await a2.get('s/q')).toEqual(utf8('four'));
  });

  it('transactions waiting together commit in one backend write, each as if alone: one that throws leaves no write and the others stand', async () => {
    const raw = memoryRawKv();
    const store = await openSealedStore(raw);
    let commits = 0;
    const counted = {
      ...raw,
      commit: (...a: Parameters<typeof raw.commit>) => {
        commits++;
        return raw.commit(...a);
      },
    };
    const s = await openSealedStore(counted);
    await s.put('c/n', utf8('0'));
    commits = 0;
    const bump = () =>
      s.transaction(async (tx) => {
        const n = Number(new TextDecoder().decode(await tx.get('c/n')));
        tx.put('c/n', utf8(String(n + 1)));
        return n + 1;
      });
    const results = await Promise.allSettled([
      bump(),
      s.transaction(async (tx) => {
        tx.put('c/half', utf8('written before the throw'));
        tx.put('c/n', utf8('999'));
        throw new Error('crash between decrypt and commit');
      }),
      bump(),
      bump(),
    ]);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : 'rejected'))).toEqual([1, 'rejected', 2, 3]);
    expect(commits).toBeLessThanOrEqual(2); // the first runs alone (the store was free), the rest together
    expect(await store.get('c/n')).toEqual(utf8('3'));
    expect(await store.get('c/half')).toBeUndefined();
    // Another tab writes while a group runs: the whole group runs again and still counts from what is there.
    let runs = 0;
    const again = await Promise.all([
      s.transaction(async (tx) => {
        runs++;
        const v = await tx.get('c/n');
        if (runs === 1) await store.put('c/n', utf8('10'));
        tx.put('c/n', utf8(String(Number(new TextDecoder().decode(v)) + 1)));
      }),
      bump(),
    ]);
    expect(runs).toBe(2);
    expect(again[1]).toBe(12);
    expect(await store.get('c/n')).toEqual(utf8('12'));
    // A member that refuses what an earlier member wrote is not told so from writes that never committed: on
    // the conflict it runs again over what the rerun wrote, and its answer follows the commit.
    let first = 0;
    let seenByRefuser: string[] = [];
    const settled = await Promise.allSettled([
      s.transaction(async (tx) => {
        first++;
        await tx.get('c/n'); // read, so another tab's write to it is a conflict
        if (first === 1) {
          tx.put('c/flag', utf8('bad'));
          await store.put('c/n', utf8('20')); // another tab: this group's commit conflicts
        } else tx.put('c/flag', utf8('good'));
      }),
      s.transaction(async (tx) => {
        const flag = new TextDecoder().decode(await tx.get('c/flag'));
        seenByRefuser = [...seenByRefuser, flag];
        if (flag === 'bad') throw new Error('refused what it read');
        return flag;
      }),
    ]);
    expect(seenByRefuser).toEqual(['bad', 'good']);
    expect(settled.map((r) => (r.status === 'fulfilled' ? r.value : 'rejected'))).toEqual([undefined, 'good']);
    expect(await store.get('c/flag')).toEqual(utf8('good'));
  });

  it('with a passphrase the store is unusable until unlocked; a wrong passphrase fails', async () => {
    const raw = memoryRawKv();
    const s = await openSealedStore(raw);
    await s.put('a/b', utf8('secret value'));
    await s.setPassphrase('correct horse');
    expect(raw.meta()!.mode).toBe('passphrase');
    await expect(openSealedStore(raw)).rejects.toBeInstanceOf(StoreLockedError);
    await expect(openSealedStore(raw, { passphrase: 'wrong' })).rejects.toMatchObject({ code: 'bad_passphrase' });
    const unlocked = await openSealedStore(raw, { passphrase: 'correct horse' });
    expect(new TextDecoder().decode(await unlocked.get('a/b'))).toBe('secret value');
    unlocked.lock();
    await expect(unlocked.get('a/b')).rejects.toBeInstanceOf(StoreLockedError);
  }, 20_000);
});
