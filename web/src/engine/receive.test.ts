import { describe, expect, it } from 'vitest';
import { deserializeOwnSenderKey, senderEncrypt, toB64u } from './_protocol.js';
import { decodeRecord, encodeRecord } from './codec.js';
import type { EngineContext } from './context.js';
import { Directory } from './directory.js';
import { Keystore } from './keystore.js';
import { type EngineLocks, memoryLocks } from './locks.js';
import { encodePayload, type Payload } from './messages.js';
import { Sessions } from './sessions.js';
import { memoryStore, type Store, type StoreTx, TxOverlay } from './storage.js';
import {
  type Client,
  cryptoRng,
  engineOn,
  makeWorld,
  newClient,
  online,
  texts,
  until,
  type World,
} from './testing/harness.js';
import { Transparency } from './transparency.js';
import type { BundleClaim } from './transport.js';

/**
 * A Store that "loses power" once, on the next transaction that writes a message (`msg/...`) — or, armed with
 * `after`, on the message write after that many more.
 */
function crashOnMessageWrite(inner: Store): { store: Store; arm: (after?: number) => void; crashes: () => number } {
  let armed = false;
  let skip = 0;
  let crashes = 0;
  const store: Store = {
    get: (k) => inner.get(k),
    list: (d) => inner.list(d),
    put: (k, v) => inner.put(k, v),
    delete: (k) => inner.delete(k),
    transaction: (fn) =>
      inner.transaction((tx) => {
        const wrapped: StoreTx = {
          get: (k) => tx.get(k),
          list: (d) => tx.list(d),
          delete: (k) => tx.delete(k),
          put: (k, v) => {
            if (armed && k.startsWith('msg/') && skip-- <= 0) {
              armed = false;
              crashes++;
              throw new Error('injected crash: power lost before the message was stored');
            }
            tx.put(k, v);
          },
        };
        return fn(wrapped);
      }),
  };
  return {
    store,
    arm: (after = 0) => {
      armed = true;
      skip = after;
    },
    crashes: () => crashes,
  };
}

/** A raw socket of (u, d) into `conv` (the server sequences whatever it sends). */
async function rawSocket(w: World, u: string, d: string, conv: string) {
  return w.server.sockets(u, d)(conv, { onMessage: () => {}, onClose: () => {} });
}

/** Sends an arbitrary payload from `from` to every device of `to` over a pairwise session (a raw frame). */
async function sendRawPairwise(w: World, from: Client, to: string, conv: string, id: string, p: Payload) {
  const ctx: EngineContext = {
    store: from.store,
    api: w.server.api(from.userId, from.deviceId),
    curves: w.curves,
    rng: cryptoRng,
    now: Date.now,
    locks: from.locks,
    emit: () => {},
  };
  const keys = new Keystore(ctx, { batch: 4, watermark: 2 });
  const directory = new Directory(ctx, keys, new Transparency(ctx, { logKey: w.server.ktLogKey }));
  const sessions = new Sessions(ctx, keys, directory);
  const items = await sessions.encryptFor(to, await directory.devices(to), encodePayload(p));
  const sock = await rawSocket(w, from.userId, from.deviceId, conv);
  const toItems = items.map((i) => ({ u: to, d: i.deviceId, c: toB64u(i.ciphertext) }));
  sock.send(JSON.stringify({ v: 1, type: 'send', id, to: toItems }));
  return sock;
}

describe('receive path: decryption and storage are all-or-nothing', () => {
  it('crash between decrypting and storing a pairwise message: redelivered, decrypted and stored exactly once', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const crash = crashOnMessageWrite(memoryStore());
    const bob = await newClient(w, 'bob', 'bob-1', { store: crash.store });
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect();
    await alice.engine.sendText(conv, 'survive the crash');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'queued for bob');
    crash.arm();
    await expect(bob.engine.syncMailbox()).rejects.toThrow(/injected crash/);
    expect(crash.crashes()).toBe(1);
    expect(w.server.pending(conv, 'bob', 'bob-1').length).toBe(1); // never acked
    // The tab restarts on the same storage; the server redelivers.
    const reloaded = engineOn(w, 'bob', 'bob-1', crash.store, bob.locks);
    await reloaded.syncMailbox();
    const got = await reloaded.messages(conv);
    expect(got.map((m) => [m.body, m.status])).toEqual([['survive the crash', 'received']]);
    expect(w.server.pending(conv, 'bob', 'bob-1')).toEqual([]);
    alice.engine.close();
  });

  it('crash between decrypting and storing a group message: redelivered, decrypted and stored exactly once', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const crash = crashOnMessageWrite(memoryStore());
    const bob = await newClient(w, 'bob', 'bob-1', { store: crash.store });
    await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'g' });
    await alice.engine.connect();
    await alice.engine.sendText(conv, 'group survives');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 2, 'distribution + message for bob');
    crash.arm();
    await expect(bob.engine.syncMailbox()).rejects.toThrow(/injected crash/);
    const reloaded = engineOn(w, 'bob', 'bob-1', crash.store, bob.locks);
    await reloaded.syncMailbox();
    const got = await reloaded.messages(conv);
    expect(got.map((m) => [m.body, m.status])).toEqual([['group survives', 'received']]);
    expect(w.server.pending(conv, 'bob', 'bob-1')).toEqual([]);
    alice.engine.close();
  });

  it('a malformed sender-key distribution is stored as a failed message with the session state; later messages decrypt', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect();
    await alice.engine.sendText(conv, 'first');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'first queued');
    await bob.engine.syncMailbox();
    const skd: Payload = { t: 'skd', conv, d: new Uint8Array([1, 2, 3]) };
    const sock = await sendRawPairwise(w, alice, 'bob', conv, 'bad-skd', skd);
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'bad distribution queued');
    await bob.engine.syncMailbox(); // does not throw, acknowledges
    expect(w.server.pending(conv, 'bob', 'bob-1')).toEqual([]);
    const bad = (await bob.engine.messages(conv)).find((m) => m.clientId === 'bad-skd')!;
    expect(bad).toMatchObject({ body: null, status: 'undecryptable' });
    expect(bad.error).toBeTruthy();
    await alice.engine.sendText(conv, 'second');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'second queued');
    await bob.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['first', 'second']);
    expect((await bob.engine.messages(conv)).filter((m) => m.error === 'duplicate')).toEqual([]);
    sock.close();
    alice.engine.close();
  });

  it('a replayed ciphertext (duplicate) at a seq not in the local store is surfaced as failed, not skipped', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect();
    await alice.engine.sendText(conv, 'once');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'queued');
    const [first] = w.server.pending(conv, 'bob', 'bob-1');
    await bob.engine.syncMailbox();
    // The server sequences the same ciphertext again under a new seq.
    const sock = await rawSocket(w, 'alice', 'alice-1', conv);
    sock.send(JSON.stringify({ v: 1, type: 'send', id: 'replay-1', to: [{ u: 'bob', d: 'bob-1', c: first!.c }] }));
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'replay queued');
    await bob.engine.syncMailbox();
    const got = await bob.engine.messages(conv);
    expect(got.map((m) => m.body)).toEqual(['once', null]);
    expect(got.find((m) => m.clientId === 'replay-1')).toMatchObject({ status: 'undecryptable', error: 'duplicate' });
    expect(w.server.pending(conv, 'bob', 'bob-1')).toEqual([]);
    sock.close();
    alice.engine.close();
  });
});

describe('PITFALLS 6: a one-time prekey seeds one session', () => {
  it('one bundle handed to two initiators: their first messages, decrypted side by side, start one session; the other is undecryptable (prekey_consumed)', async () => {
    const w = await makeWorld();
    // Bob's store: the first read of a one-time prekey (outside any transaction) waits, bounded, for a second
    // one — the interleaving a mailbox page's conversations, processed side by side, can take.
    const inner = memoryStore();
    let otpReads = 0;
    const store: Store = {
      ...inner,
      get: async (k) => {
        if (k.startsWith('ks/otp/') && ++otpReads === 1)
          await until(() => otpReads >= 2, 'a second prekey read', 3000).catch(() => undefined);
        return inner.get(k);
      },
    };
    const bob = await newClient(w, 'bob', 'bob-1', { store });
    // The server (hostile or broken) hands the bundle it gave carol to dave as well.
    let handed: BundleClaim | null = null;
    const carolApi = w.server.api('carol', 'carol-1');
    const carol = await newClient(w, 'carol', 'carol-1', {
      engine: {
        api: {
          ...carolApi,
          claimBundles: async (u) => {
            const c = await carolApi.claimBundles(u);
            if (u === 'bob') handed = c;
            return c;
          },
        },
      },
    });
    const daveApi = w.server.api('dave', 'dave-1');
    const dave = await newClient(w, 'dave', 'dave-1', {
      engine: {
        api: { ...daveApi, claimBundles: async (u) => (u === 'bob' && handed ? handed : daveApi.claimBundles(u)) },
      },
    });
    const c1 = await carol.engine.createConversation({ kind: 'direct', members: ['bob'] });
    const c2 = await dave.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await online([carol], c1);
    await carol.engine.sendText(c1, 'from carol');
    await until(() => w.server.pending(c1, 'bob', 'bob-1').length === 1, 'carol queued');
    expect(handed).not.toBeNull();
    await online([dave], c2);
    await dave.engine.sendText(c2, 'from dave');
    await until(() => w.server.pending(c2, 'bob', 'bob-1').length === 1, 'dave queued');
    otpReads = 0;
    await bob.engine.syncMailbox();
    const got = [...(await bob.engine.messages(c1)), ...(await bob.engine.messages(c2))];
    expect(got).toHaveLength(2);
    const read = got.filter((m) => m.body !== null);
    const failed = got.filter((m) => m.status === 'undecryptable');
    expect(read).toHaveLength(1);
    expect(failed).toHaveLength(1);
    expect(['prekey_consumed', 'decryption_failed']).toContain(failed[0]!.error);
    for (const c of [bob, carol, dave]) c.engine.close();
  });
});

describe('receive path: only verified members on verified devices', () => {
  it('a removed member who still holds their sender key posts through a stale server: not shown as a message', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'g' });
    for (const c of [alice, bob, carol]) await c.engine.connect([conv]);
    for (const c of [alice, bob, carol])
      await until(async () => (await c.engine.connectionStatus(conv)) === 'online', `${c.userId} online`);
    await carol.engine.sendText(conv, 'hi from carol');
    await until(async () => (await texts(bob.engine, conv)).includes('hi from carol'), 'bob has carol’s key');
    await until(async () => (await texts(alice.engine, conv)).includes('hi from carol'), 'alice has carol’s key');
    expect((await bob.store.list(`skr/${conv}/carol/`)).length).toBe(1);

    await alice.engine.removeMember(conv, 'carol');
    await until(async () => !(await bob.engine.members(conv)).includes('carol'), 'bob applied the removal');
    expect(await bob.store.list(`skr/${conv}/carol/`)).toEqual([]); // her chain is forgotten
    expect(await alice.store.list(`skr/${conv}/carol/`)).toEqual([]);

    // Carol encrypts with the chain she still holds; the (stale or malicious) server still fans it out.
    w.server.insertMemberWithoutEntry(conv, 'carol');
    const own = decodeRecord<{ key: Uint8Array }>((await carol.store.get(`sk/${conv}/own`))!);
    const body = encodePayload({ t: 'text', conv, id: 'evil-1', body: 'still here', sentAt: Date.now() });
    const evil = await senderEncrypt(w.curves, deserializeOwnSenderKey(own.key), body);
    const sock = await rawSocket(w, 'carol', 'carol-1', conv);
    sock.send(JSON.stringify({ v: 1, type: 'send', id: 'evil-1', group: toB64u(evil.message) }));
    for (const c of [alice, bob])
      await until(
        async () => (await c.engine.messages(conv)).some((m) => m.clientId === 'evil-1'),
        `${c.userId} processed it`,
      );
    for (const c of [alice, bob]) {
      expect(await texts(c.engine, conv)).not.toContain('still here');
      const m = (await c.engine.messages(conv)).find((x) => x.clientId === 'evil-1')!;
      expect(m).toMatchObject({ body: null, status: 'undecryptable', error: 'not_member' });
    }
    // The remaining members still talk.
    await alice.engine.sendText(conv, 'after carol');
    await until(async () => (await texts(bob.engine, conv)).includes('after carol'), 'bob receives');
    sock.close();
    for (const c of [alice, bob, carol]) c.engine.close();
  });
});

describe('receive path: two tabs of one device (one store, one lock manager)', () => {
  it('a tab that found a new member unknown (a stale log answer) and stores that late neither moves the cursor back nor writes over what the other tab stored', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob'], title: 'g' });
    await online([alice], conv);
    await alice.engine.sendText(conv, 'hello');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length > 0, 'queued for bob');
    await bob.engine.syncMailbox();
    // Tab B: the server answers its log fetches from before Carol was added, and its transaction that stores
    // Carol's envelope as failed (not a member, by that stale log) waits until tab A has processed everything.
    let stale = false;
    let held = false;
    let release: () => void = () => undefined;
    const late = new Promise<void>((r) => {
      release = r;
    });
    const base = w.server.api('bob', 'bob-1');
    const store: Store = {
      get: (k) => bob.store.get(k),
      list: (d) => bob.store.list(d),
      put: (k, v) => bob.store.put(k, v),
      delete: (k) => bob.store.delete(k),
      transaction: async (fn) => {
        if (stale && !held) {
          // Which transaction is it? A dry run over a throwaway overlay: the one that stores a failure waits.
          const probe = new TxOverlay(bob.store);
          await fn(probe);
          const failure = [...probe.writes].some(
            ([k, v]) => k.startsWith('msg/') && v && decodeRecord<{ status?: string }>(v).status === 'undecryptable',
          );
          if (failure) {
            held = true;
            await late;
          }
        }
        return bob.store.transaction(fn);
      },
    };
    const tabB = engineOn(w, 'bob', 'bob-1', store, bob.locks, {
      api: { ...base, fetchMembershipLog: async (id, after) => (stale ? [] : base.fetchMembershipLog(id, after)) },
    });
    await alice.engine.addMember(conv, 'carol');
    await online([carol], conv);
    await carol.engine.sendText(conv, 'from carol');
    await alice.engine.sendText(conv, 'after');
    await until(async () => (await texts(carol.engine, conv)).includes('after'), 'both sent');
    stale = true;
    const b = tabB.syncMailbox();
    await until(() => held, 'tab B found carol unknown and stores that');
    await bob.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['hello', 'from carol', 'after']);
    const cursor = async () => Number(new TextDecoder().decode((await bob.store.get(`cur/${conv}`))!));
    const last = await cursor();
    stale = false;
    release();
    await b;
    expect(await cursor()).toBe(last);
    expect((await bob.engine.messages(conv)).filter((m) => m.status === 'undecryptable')).toEqual([]);
    expect(await texts(bob.engine, conv)).toEqual(['hello', 'from carol', 'after']);
    for (const c of [alice, bob, carol]) c.engine.close();
    tabB.close();
  });
});

describe('receive path: a run of envelopes is one batch (one transaction), all-or-nothing', () => {
  /** alice and bob in a direct chat, bob's session established (alice's first message received). */
  async function directChat(store: Store = memoryStore()) {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob', 'bob-1', { store });
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect();
    await alice.engine.sendText(conv, 'hello');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'first queued');
    await bob.engine.syncMailbox();
    return { w, alice, bob, conv };
  }
  const sendAll = async (w: World, from: Client, conv: string, bodies: string[]) => {
    const before = w.server.pending(conv, 'bob', 'bob-1').length;
    for (const b of bodies) await from.engine.sendText(conv, b);
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === before + bodies.length, 'all queued');
  };

  it('a crash inside a batch stores none of it and acks nothing; redelivered, every message is stored once, in order', async () => {
    const crash = crashOnMessageWrite(memoryStore());
    const { w, alice, bob, conv } = await directChat(crash.store);
    const session = await crash.store.get('sess/alice/alice-1');
    const cursor = await crash.store.get(`cur/${conv}`);
    const bodies = ['one', 'two', 'three', 'four', 'five'];
    await sendAll(w, alice, conv, bodies);
    crash.arm(2); // the third message's write, in the middle of the batch
    await expect(bob.engine.syncMailbox()).rejects.toThrow(/injected crash/);
    expect(crash.crashes()).toBe(1);
    expect(w.server.pending(conv, 'bob', 'bob-1').length).toBe(5); // nothing acked
    expect(await texts(bob.engine, conv)).toEqual(['hello']); // nothing stored
    expect(await crash.store.get(`cur/${conv}`)).toEqual(cursor); // cursor as it was
    expect(await crash.store.get('sess/alice/alice-1')).toEqual(session); // the session not advanced
    const reloaded = engineOn(w, 'bob', 'bob-1', crash.store, bob.locks);
    await reloaded.syncMailbox();
    expect(await texts(reloaded, conv)).toEqual(['hello', ...bodies]);
    expect((await reloaded.messages(conv)).every((m) => m.status === 'received')).toBe(true);
    expect(w.server.pending(conv, 'bob', 'bob-1')).toEqual([]);
    alice.engine.close();
  });

  it('the batch decrypts ahead of its transaction; a cursor that moved in between makes the transaction decide again from what it read', async () => {
    const inner = memoryStore();
    let conv = '';
    let moveTo: number | null = null;
    let armed = false;
    let moved = 0;
    const store: Store = {
      get: (k) => {
        // The batch's read ahead of its transaction (outside it): arm the move for its transaction.
        if (moveTo !== null && k === `cur/${conv}`) armed = true;
        return inner.get(k);
      },
      list: (d) => inner.list(d),
      put: (k, v) => inner.put(k, v),
      delete: (k) => inner.delete(k),
      transaction: async (fn) => {
        if (armed && moveTo !== null) {
          // Another writer stored the cursor past the first three envelopes meanwhile.
          await inner.put(`cur/${conv}`, encodeRecord(moveTo));
          [armed, moveTo] = [false, null];
          moved++;
        }
        return inner.transaction(fn);
      },
    };
    const chat = await directChat(store);
    const { w, alice, bob } = chat;
    conv = chat.conv;
    await sendAll(w, alice, conv, ['one', 'two', 'three', 'four', 'five']);
    moveTo = w.server.pending(conv, 'bob', 'bob-1')[2]!.seq;
    await bob.engine.syncMailbox();
    expect(moved).toBe(1);
    // Decided from the moved cursor: the first three are taken as processed, the last two stored once.
    expect(await texts(bob.engine, conv)).toEqual(['hello', 'four', 'five']);
    expect(w.server.pending(conv, 'bob', 'bob-1')).toEqual([]);
    // The session was saved as the last two left it: the next message decrypts.
    await sendAll(w, alice, conv, ['six']);
    await bob.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['hello', 'four', 'five', 'six']);
    alice.engine.close();
  });

  it('a failure after the batch committed and before the ack: redelivered, skipped by the cursor, nothing twice', async () => {
    const { w, alice, bob, conv } = await directChat();
    const api = w.server.api('bob', 'bob-1');
    let failAck = true;
    const flaky = {
      ...api,
      ackMailbox: async (acks: Parameters<typeof api.ackMailbox>[0]) => {
        if (failAck) {
          failAck = false;
          throw new Error('connection lost before the ack');
        }
        return api.ackMailbox(acks);
      },
    };
    bob.engine.close();
    const bob2 = engineOn(w, 'bob', 'bob-1', bob.store, bob.locks, { api: flaky });
    await sendAll(w, alice, conv, ['a', 'b', 'c']);
    await expect(bob2.syncMailbox()).rejects.toThrow(/connection lost/);
    expect(w.server.pending(conv, 'bob', 'bob-1').length).toBe(3); // stored, not acked
    expect(await texts(bob2, conv)).toEqual(['hello', 'a', 'b', 'c']);
    await bob2.syncMailbox(); // the same envelopes again
    expect(await texts(bob2, conv)).toEqual(['hello', 'a', 'b', 'c']);
    expect((await bob2.messages(conv)).filter((m) => m.status !== 'received')).toEqual([]);
    expect(w.server.pending(conv, 'bob', 'bob-1')).toEqual([]);
    // The session is in step: the next message decrypts.
    await sendAll(w, alice, conv, ['d']);
    await bob2.syncMailbox();
    expect(await texts(bob2, conv)).toEqual(['hello', 'a', 'b', 'c', 'd']);
    alice.engine.close();
  });

  it('envelopes the batch does not take (a reaction, garbage) end its run: they are handled alone, the good ones around them are stored, the session stays in step', async () => {
    const { w, alice, bob, conv } = await directChat();
    await sendAll(w, alice, conv, ['t1']);
    const t1 = (await alice.engine.messages(conv)).find((m) => m.body === 't1')!;
    await alice.engine.react(conv, t1.clientId, '👍'); // decrypts, but is not a text: ends the run
    await sendAll(w, alice, conv, ['t2']);
    const sock = await rawSocket(w, 'alice', 'alice-1', conv);
    const garbage = toB64u(new Uint8Array(64).fill(7)); // does not decrypt
    sock.send(JSON.stringify({ v: 1, type: 'send', id: 'garbage-1', to: [{ u: 'bob', d: 'bob-1', c: garbage }] }));
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 4, 'garbage queued');
    await sendAll(w, alice, conv, ['t3', 't4']);
    await bob.engine.syncMailbox(); // one page: t1, reaction, t2, garbage, t3, t4
    const got = await bob.engine.messages(conv);
    expect(got.filter((m) => m.body !== null).map((m) => m.body)).toEqual(['hello', 't1', 't2', 't3', 't4']);
    expect(got.find((m) => m.body === 't1')!.reactions).toEqual([
      expect.objectContaining({ userId: 'alice', emoji: '👍' }),
    ]);
    expect(got.find((m) => m.clientId === 'garbage-1')).toMatchObject({ body: null, status: 'undecryptable' });
    expect(got.filter((m) => m.error === 'duplicate')).toEqual([]);
    expect(w.server.pending(conv, 'bob', 'bob-1')).toEqual([]);
    await sendAll(w, alice, conv, ['t5']);
    await bob.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['hello', 't1', 't2', 't3', 't4', 't5']);
    sock.close();
    alice.engine.close();
  });

  it('a batch holds the lock of every chain it decrypts from until its transaction committed, sessions before sender keys, each in name order', async () => {
    const w = await makeWorld();
    const log: string[] = [];
    const inner = memoryLocks();
    const locks: EngineLocks = {
      request: (name, fn) =>
        inner.request(name, async () => {
          log.push(`+${name}`);
          try {
            return await fn();
          } finally {
            log.push(`-${name}`);
          }
        }),
    };
    const base = memoryStore();
    const store: Store = {
      ...base,
      transaction: async (fn) => {
        const r = await base.transaction(fn);
        log.push('commit');
        return r;
      },
    };
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob', 'bob-1', { store, locks });
    const carol = await newClient(w, 'carol');
    const conv = await bob.engine.createConversation({ kind: 'group', members: ['alice', 'carol'], title: 'g' });
    for (const c of [alice, bob, carol]) await c.engine.connect([conv]);
    for (const c of [alice, bob, carol])
      await until(async () => (await c.engine.connectionStatus(conv)) === 'online', `${c.userId} online`);
    for (const c of [alice, carol]) await c.engine.sendText(conv, `hi from ${c.userId}`);
    await until(async () => (await texts(bob.engine, conv)).length === 2, 'bob has both sender keys');
    // Bob's message reaches alice and carol only after he went away, so their delivery receipts for it
    // (pairwise, to its author) wait for him, with group texts from both.
    for (const c of [alice, carol]) {
      await c.engine.idle();
      await c.engine.disconnect();
    }
    const { clientId } = await bob.engine.sendText(conv, 'from bob');
    await until(
      async () => (await bob.engine.messages(conv)).find((m) => m.clientId === clientId)?.seq != null,
      'bob’s message accepted',
    );
    await bob.engine.idle();
    bob.engine.disconnect();
    await online([alice, carol], conv);
    for (const c of [alice, carol])
      await until(async () => (await texts(c.engine, conv)).includes('from bob'), `${c.userId} received it`);
    for (const c of [alice, carol]) await c.engine.idle();
    for (const c of [alice, carol]) await c.engine.sendText(conv, `later from ${c.userId}`);
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length >= 4, 'queued for bob');
    log.length = 0;
    await bob.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(expect.arrayContaining(['later from alice', 'later from carol']));
    // The batch: its locks taken in order, the commit inside all of them, then released.
    const first = log.findIndex((l) => l.startsWith('+'));
    const commit = log.indexOf('commit', first);
    const taken = log
      .slice(first, commit)
      .filter((l) => l.startsWith('+'))
      .map((l) => l.slice(1));
    const released = log.slice(first, commit).filter((l) => l.startsWith('-'));
    expect(released).toEqual([]);
    expect(taken).toEqual([
      'session:alice:alice-1',
      'session:carol:carol-1',
      `senderkey-recv:${conv}:alice:alice-1`,
      `senderkey-recv:${conv}:carol:carol-1`,
    ]);
    expect(log.slice(commit + 1, commit + 1 + taken.length)).toEqual(taken.map((n) => `-${n}`).reverse());
    for (const c of [alice, bob, carol]) c.engine.close();
  });
});

describe('receive path: an accepted identity change drops the sessions for good', () => {
  it('a decryption that holds a device’s session lock and commits after the change was accepted does not write the old session back', async () => {
    const store = memoryStore();
    const locks = memoryLocks();
    const ctx = { store, locks } as unknown as EngineContext;
    const sessions = new Sessions(ctx, {} as Keystore, {} as Directory);
    const old = new Uint8Array([1, 2, 3]);
    await store.put('sess/carol/d1', old);
    await store.put('sess/carol/d2', old);
    // Stands in for a decryption of carol's d1: it holds the session lock and commits the advanced record
    // in its own transaction once the message is stored.
    let release: () => void = () => {};
    const held = new Promise<void>((r) => (release = r));
    let decrypting: () => void = () => {};
    const started = new Promise<void>((r) => (decrypting = r));
    const decryption = locks.request('session:carol:d1', async () => {
      decrypting();
      await held;
      await store.transaction(async (tx) => tx.put('sess/carol/d1', new Uint8Array([4, 5, 6])));
    });
    await started;
    let dropped = false;
    const drop = sessions.dropUser('carol').then(() => (dropped = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(dropped).toBe(false); // waits for the decryption's commit
    release();
    await decryption;
    await drop;
    expect(await store.get('sess/carol/d1')).toBeUndefined();
    expect(await store.get('sess/carol/d2')).toBeUndefined();
  });
});
