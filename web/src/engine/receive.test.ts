import { describe, expect, it } from 'vitest';
import { deserializeOwnSenderKey, senderEncrypt, toB64u } from './_protocol.js';
import { decodeRecord } from './codec.js';
import type { EngineContext } from './context.js';
import { Directory } from './directory.js';
import { Keystore } from './keystore.js';
import { encodePayload, type Payload } from './messages.js';
import { Sessions } from './sessions.js';
import { memoryStore, type Store, type StoreTx } from './storage.js';
import { type Client, cryptoRng, engineOn, makeWorld, newClient, texts, until, type World } from './testing/harness.js';
import { Transparency } from './transparency.js';

/** A Store that "loses power" once, on the next transaction that writes a message (`msg/...`). */
function crashOnMessageWrite(inner: Store): { store: Store; arm: () => void; crashes: () => number } {
  let armed = false;
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
            if (armed && k.startsWith('msg/')) {
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
  return { store, arm: () => (armed = true), crashes: () => crashes };
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
