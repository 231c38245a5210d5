import { describe, expect, it, vi } from 'vitest';
import {
  decodeMessage,
  encodeDeviceList,
  encodeMessage,
  fromB64u,
  MessageType,
  signDeviceList,
  toB64u,
  toHex,
} from './_protocol.js';
import type { EngineEvent } from './context.js';
import { memoryLocks } from './locks.js';
import { memoryStore, type Store } from './storage.js';
import { engineOn, makeWorld, newClient, online, ownIdentity, texts, until, type World } from './testing/harness.js';
import type { ServerApi, SocketFactory } from './transport.js';

/** (ratchet public key, N) of a pairwise ciphertext: must never repeat for one sender (PITFALLS 12). */
function headerId(c: string): string {
  const m = decodeMessage(fromB64u(c));
  return `${toHex(m.ratchet.header.slice(0, 32))}:${toHex(m.ratchet.header.slice(36, 40))}`;
}

function itemsTo(w: World, u: string, d: string, from?: string): string[] {
  return w.server.sentFrames
    .filter((f) => (!from || f.user === from) && f.frame.type === 'send' && 'to' in f.frame)
    .flatMap((f) => ('to' in f.frame ? f.frame.to : []).filter((t) => t.u === u && t.d === d).map((t) => t.c));
}

async function pair(w: World) {
  const alice = await newClient(w, 'alice');
  const bob = await newClient(w, 'bob');
  const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
  return { alice, bob, conv };
}

describe('engine over the fake server', () => {
  it('two users exchange messages both ways; the sender sees sent then delivered', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await pair(w);
    await alice.engine.connect();
    await bob.engine.connect();
    await until(async () => (await bob.engine.connectionStatus(conv)) === 'online', 'bob online');
    const sent = await alice.engine.sendText(conv, 'hello bob');
    expect(sent.status).toBe('sending');
    await until(async () => (await texts(bob.engine, conv)).includes('hello bob'), 'bob receives');
    await bob.engine.sendText(conv, 'hi alice');
    await until(async () => (await texts(alice.engine, conv)).includes('hi alice'), 'alice receives');
    await until(
      async () => (await alice.engine.messages(conv)).find((m) => m.clientId === sent.clientId)?.status === 'delivered',
      'delivered receipt',
    );
    const mine = (await alice.engine.messages(conv)).find((m) => m.clientId === sent.clientId)!;
    expect(mine.seq).toBeGreaterThan(0);
    expect(await texts(alice.engine, conv)).toEqual(['hello bob', 'hi alice']);
    expect(w.server.pending(conv, 'bob', 'bob-1').filter((e) => e.kind === 'message')).toEqual([]);
    alice.engine.close();
    bob.engine.close();
  });

  it('offline catch-up through the mailbox: in order, acknowledged after storing', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await pair(w);
    await alice.engine.connect();
    for (const t of ['one', 'two', 'three']) await alice.engine.sendText(conv, t);
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 3, 'three queued for bob');
    expect(await bob.engine.syncMailbox()).toBe(3);
    expect(await texts(bob.engine, conv)).toEqual(['one', 'two', 'three']);
    expect(w.server.pending(conv, 'bob', 'bob-1')).toEqual([]);
    expect(await bob.engine.syncMailbox()).toBe(0);
    alice.engine.close();
  });

  it('mailbox catch-up over several pages (the next page fetched while one is stored): in order, each ack after its commit', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const store = memoryStore();
    let conv = '';
    const cursorAt = () => {
      const e = store.dump().find((r) => r.key === `cur/${conv}`);
      return e ? Number(new TextDecoder().decode(e.value)) : 0;
    };
    const api = w.server.api('bob', 'bob-1');
    const acked: { upTo: number; stored: number }[] = [];
    let fetches = 0;
    const bob = await newClient(w, 'bob', 'bob-1', {
      store,
      engine: {
        api: {
          ...api,
          fetchMailbox: (c) => {
            fetches++;
            return api.fetchMailbox(c);
          },
          // What the store held when each ack left: never less than the ack names.
          ackMailbox: async (acks) => {
            for (const a of acks) if (a.conversationId === conv) acked.push({ upTo: a.upTo, stored: cursorAt() });
            return api.ackMailbox(acks);
          },
        },
      },
    });
    conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect();
    const sent = Array.from({ length: 120 }, (_, i) => `m${i}`); // the fake server's pages hold 50
    for (const t of sent) await alice.engine.sendText(conv, t);
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 120, 'all queued for bob');
    expect(await bob.engine.syncMailbox()).toBe(120);
    expect(await texts(bob.engine, conv)).toEqual(sent);
    expect(fetches).toBe(3);
    expect(acked.length).toBe(3);
    for (const a of acked) expect(a.stored).toBeGreaterThanOrEqual(a.upTo);
    expect(acked.map((a) => a.upTo)).toEqual([...acked.map((a) => a.upTo)].sort((a, b) => a - b));
    expect(w.server.pending(conv, 'bob', 'bob-1')).toEqual([]);
    alice.engine.close();
    bob.engine.close();
  });

  it('coming online: the backlog comes through the mailbox, then each socket resumes after it', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await pair(w);
    await alice.engine.connect();
    const sent = ['a', 'b', 'c', 'd', 'e'];
    for (const t of sent) await alice.engine.sendText(conv, t);
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 5, 'queued for bob');
    await bob.engine.connect([conv]);
    await until(async () => (await bob.engine.connectionStatus(conv)) === 'online', 'bob online');
    expect(await texts(bob.engine, conv)).toEqual(sent);
    const last = (await bob.engine.messages(conv)).at(-1)!.seq!;
    const resumes = w.server.sentFrames.filter((f) => f.user === 'bob' && f.frame.type === 'resume');
    expect(resumes.map((f) => (f.frame.type === 'resume' ? f.frame.after : -1))).toEqual([last]);
    expect(w.server.pending(conv, 'bob', 'bob-1')).toEqual([]);
    // Live again: a new message comes over the socket.
    await alice.engine.sendText(conv, 'live');
    await until(async () => (await texts(bob.engine, conv)).includes('live'), 'live message');
    alice.engine.close();
    bob.engine.close();
  });

  it('a deliver whose processing fails is not skipped by the next one: the socket resumes from the durable cursor; the failure is logged by name only', async () => {
    const w = await makeWorld();
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    // Bob's store fails once, when armed: the transaction that stores a message and moves the cursor. The
    // failure is reported only once `release` is called, so the next frame waits behind it meanwhile.
    const inner = memoryStore();
    let armed = false;
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const store: Store = {
      get: (k) => inner.get(k),
      list: (d) => inner.list(d),
      put: (k, v) => inner.put(k, v),
      delete: (k) => inner.delete(k),
      transaction: async (fn) => {
        let hit = false;
        try {
          return await inner.transaction(async (tx) => {
            const keys: string[] = [];
            const r = await fn({
              get: (k) => tx.get(k),
              list: (d) => tx.list(d),
              put: (k, v) => {
                keys.push(k);
                tx.put(k, v);
              },
              delete: (k) => {
                keys.push(k);
                tx.delete(k);
              },
            });
            if (armed && keys.some((k) => k.startsWith('msg/')) && keys.some((k) => k.startsWith('cur/'))) {
              armed = false;
              hit = true;
              throw new Error('simulated store failure');
            }
            return r;
          });
        } catch (e) {
          if (hit) await held;
          throw e;
        }
      },
    };
    let delivers = 0;
    const sockets = w.server.sockets('bob', 'bob-1');
    const realtime: SocketFactory = (id, h) =>
      sockets(id, {
        ...h,
        onMessage: (data) => {
          if (JSON.parse(data).type === 'deliver') delivers++;
          h.onMessage(data);
        },
      });
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob', 'bob-1', { store, engine: { realtime } });
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await online([alice, bob], conv);
    await alice.engine.sendText(conv, 'warm-up');
    await until(async () => (await texts(bob.engine, conv)).includes('warm-up'), 'warm-up');
    armed = true;
    await alice.engine.sendText(conv, 'one');
    await until(() => !armed, "storing 'one' fails");
    const n = delivers;
    await alice.engine.sendText(conv, 'two');
    await until(() => delivers > n, "'two' reaches bob behind the failure");
    release();
    // 'two' does not move the cursor past 'one' (and its ack does not let the server drop it): the socket
    // resumes from the cursor and both come again, in order.
    await until(async () => (await texts(bob.engine, conv)).length === 3, 'bob has all three');
    expect(await texts(bob.engine, conv)).toEqual(['warm-up', 'one', 'two']);
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 0, 'everything acked');
    // Logged, but never its message or stack (rule 2): an Error object would print both.
    const args = logged.mock.calls.flat();
    logged.mockRestore();
    expect(args.map(String)).toContain('Error');
    expect(args.some((a) => a instanceof Error || String(a).includes('simulated'))).toBe(false);
    alice.engine.close();
    bob.engine.close();
  });

  it('a conversation whose processing keeps failing spends a bounded number of socket tickets: after one restart it is retried through the mailbox; the envelope is processed once when storage recovers', async () => {
    const w = await makeWorld();
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    // Bob's store refuses every transaction that stores a message and moves the cursor while `failing`.
    const inner = memoryStore();
    let failing = false;
    let failures = 0;
    const store: Store = {
      get: (k) => inner.get(k),
      list: (d) => inner.list(d),
      put: (k, v) => inner.put(k, v),
      delete: (k) => inner.delete(k),
      transaction: (fn) =>
        inner.transaction(async (tx) => {
          const keys: string[] = [];
          const r = await fn({
            get: (k) => tx.get(k),
            list: (d) => tx.list(d),
            put: (k, v) => {
              keys.push(k);
              tx.put(k, v);
            },
            delete: (k) => {
              keys.push(k);
              tx.delete(k);
            },
          });
          if (failing && keys.some((k) => k.startsWith('msg/')) && keys.some((k) => k.startsWith('cur/'))) {
            failures++;
            throw new Error('simulated store failure');
          }
          return r;
        }),
    };
    // Every socket open spends one server ticket.
    let tickets = 0;
    const sockets = w.server.sockets('bob', 'bob-1');
    const realtime: SocketFactory = (id, h) => {
      tickets++;
      return sockets(id, h);
    };
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob', 'bob-1', { store, engine: { realtime } });
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await online([alice, bob], conv);
    await alice.engine.sendText(conv, 'warm-up');
    await until(async () => (await texts(bob.engine, conv)).includes('warm-up'), 'warm-up');
    const before = tickets;
    failing = true;
    await alice.engine.sendText(conv, 'one');
    await until(() => failures >= 10, 'ten failed attempts');
    // One restart of the socket (PROCESS_FAILURE_SOCKET_RESTARTS); the other nine came through the mailbox.
    expect(tickets - before).toBe(1);
    expect(await bob.engine.connectionStatus(conv)).toBe('offline');
    failing = false;
    await until(async () => (await texts(bob.engine, conv)).includes('one'), "'one' once storage recovers");
    await until(async () => (await bob.engine.connectionStatus(conv)) === 'online', 'bob online again');
    expect(tickets - before).toBe(2); // ... and one to connect again
    await alice.engine.sendText(conv, 'two');
    await until(async () => (await texts(bob.engine, conv)).includes('two'), "'two' on the socket");
    expect(await texts(bob.engine, conv)).toEqual(['warm-up', 'one', 'two']);
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 0, 'everything acked');
    logged.mockRestore();
    alice.engine.close();
    bob.engine.close();
  });

  it('mailbox catch-up past a conversation whose envelopes keep failing: the others are processed and acked; the failing one keeps its cursor, nothing of it acked past the failure, and is retried with back-off', async () => {
    const w = await makeWorld();
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    // Bob's store refuses every transaction that moves the cursor of `failingConv` while `failing`.
    const inner = memoryStore();
    let failingConv = '';
    let failing = true;
    let failures = 0;
    const store: Store = {
      get: (k) => inner.get(k),
      list: (d) => inner.list(d),
      put: (k, v) => inner.put(k, v),
      delete: (k) => inner.delete(k),
      transaction: (fn) =>
        inner.transaction(async (tx) => {
          let moves = false;
          const r = await fn({
            get: (k) => tx.get(k),
            list: (d) => tx.list(d),
            put: (k, v) => {
              if (k === `cur/${failingConv}`) moves = true;
              tx.put(k, v);
            },
            delete: (k) => tx.delete(k),
          });
          if (failing && moves) {
            failures++;
            throw new Error('simulated store failure');
          }
          return r;
        }),
    };
    const alice = await newClient(w, 'alice');
    const carol = await newClient(w, 'carol');
    const bob = await newClient(w, 'bob', 'bob-1', { store });
    const withAlice = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    const withCarol = await carol.engine.createConversation({ kind: 'direct', members: ['bob'] });
    // The mailbox is read in (conversation, seq) order: the failing conversation comes first, with more
    // envelopes than a page holds (50), so the other one is only on a later page.
    const [first, second] = [withAlice, withCarol].sort();
    failingConv = first!;
    const sender = (c: string) => (c === withAlice ? alice : carol);
    await alice.engine.connect();
    await carol.engine.connect();
    const many = Array.from({ length: 60 }, (_, i) => `f${i}`);
    for (const t of many) await sender(first!).engine.sendText(first!, t);
    for (const t of ['x', 'y', 'z']) await sender(second!).engine.sendText(second!, t);
    await until(() => w.server.pending(first!, 'bob', 'bob-1').length === 60, 'the first conversation queued');
    await until(() => w.server.pending(second!, 'bob', 'bob-1').length === 3, 'the second conversation queued');
    await expect(bob.engine.syncMailbox()).rejects.toThrow();
    // The other conversation went through, and was acknowledged.
    expect(await texts(bob.engine, second!)).toEqual(['x', 'y', 'z']);
    expect(w.server.pending(second!, 'bob', 'bob-1')).toEqual([]);
    // The failing one: nothing stored, nothing acknowledged; it is retried by itself (back-off), not once.
    expect(await texts(bob.engine, first!)).toEqual([]);
    expect(w.server.pending(first!, 'bob', 'bob-1').length).toBe(60);
    const after = failures;
    await until(() => failures > after + 2, 'retried with back-off');
    expect(w.server.pending(first!, 'bob', 'bob-1').length).toBe(60);
    failing = false;
    await until(async () => (await texts(bob.engine, first!)).length === 60, 'processed once storage recovers');
    expect(await texts(bob.engine, first!)).toEqual(many);
    await until(() => w.server.pending(first!, 'bob', 'bob-1').length === 0, 'then acknowledged');
    // Bob never connected: the recovery opened no socket for it.
    expect(await bob.engine.connectionStatus(first!)).toBe('offline');
    logged.mockRestore();
    for (const c of [alice, bob, carol]) c.engine.close();
  });

  it('the request poll goes on past a conversation whose envelopes keep failing: a request accepted in another tab gets its socket', async () => {
    const w = await makeWorld();
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    // Alice's store refuses every transaction that moves the cursor of `failingConv` while `failing`.
    const inner = memoryStore();
    let failingConv = '';
    let failures = 0;
    const store: Store = {
      get: (k) => inner.get(k),
      list: (d) => inner.list(d),
      put: (k, v) => inner.put(k, v),
      delete: (k) => inner.delete(k),
      transaction: (fn) =>
        inner.transaction(async (tx) => {
          let moves = false;
          const r = await fn({
            get: (k) => tx.get(k),
            list: (d) => tx.list(d),
            put: (k, v) => {
              if (k === `cur/${failingConv}`) moves = true;
              tx.put(k, v);
            },
            delete: (k) => tx.delete(k),
          });
          if (moves) {
            failures++;
            throw new Error('simulated store failure');
          }
          return r;
        }),
    };
    const requests = { messageRequests: true, requestPollMs: 20 };
    const alice = await newClient(w, 'alice', 'alice-1', { store, engine: requests });
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const fromBob = await bob.engine.createConversation({ kind: 'direct', members: ['alice'] });
    const fromCarol = await carol.engine.createConversation({ kind: 'direct', members: ['alice'] });
    await alice.engine.acceptRequest(fromBob);
    failingConv = fromBob; // every envelope of it fails from now on: it stays in the mailbox, unacked
    await bob.engine.connect();
    await carol.engine.connect();
    await bob.engine.sendText(fromBob, 'never stored');
    await carol.engine.sendText(fromCarol, 'a request');
    await alice.engine.connect();
    await until(async () => (await texts(alice.engine, fromCarol)).includes('a request'), 'the request (by poll)');
    await until(() => failures > 2, 'the other conversation failing');
    expect(await alice.engine.connectionStatus(fromCarol)).toBe('offline'); // a request: no socket
    // Another tab of Alice's accepts the request (the settings are shared through the server).
    const tab = engineOn(w, 'alice', 'alice-1', store, alice.locks, { ...requests });
    await tab.acceptRequest(fromCarol);
    await until(async () => (await alice.engine.connectionStatus(fromCarol)) === 'online', 'its socket opens');
    expect(await texts(alice.engine, fromBob)).toEqual([]);
    logged.mockRestore();
    for (const e of [alice.engine, tab, bob.engine, carol.engine]) e.close();
  });

  it('mailbox pages are checked against the wire schema: a malformed envelope is left out (no cursor jump), a malformed page refused', async () => {
    const w = await makeWorld();
    const base = w.server.api('bob', 'bob-1');
    let edit: ((page: { envelopes: unknown[]; next: unknown }) => unknown) | null = null;
    const api: ServerApi = {
      ...base,
      fetchMailbox: async (cursor) => {
        const page = await base.fetchMailbox(cursor);
        return (edit ? edit(page) : page) as typeof page;
      },
    };
    const store = memoryStore();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob', 'bob-1', { store, engine: { api } });
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect();
    await alice.engine.sendText(conv, 'one');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'one queued');
    const cursor = () => store.get(`cur/${conv}`).then((v) => (v ? Number(new TextDecoder().decode(v)) : 0));
    // A page of the wrong shape: refused with a clear error, nothing processed or acked.
    edit = (page) => ({ ...page, envelopes: 'none' });
    await expect(bob.engine.syncMailbox()).rejects.toMatchObject({ code: 'invalid_server_response' });
    edit = (page) => ({ ...page, next: { afterConversation: '', afterSeq: -1 } });
    await expect(bob.engine.syncMailbox()).rejects.toMatchObject({ code: 'invalid_server_response' });
    expect(await cursor()).toBe(0);
    expect(w.server.pending(conv, 'bob', 'bob-1')).toHaveLength(1);
    // Malformed envelopes beside good ones: left out; the good ones are processed and acked.
    const [good] = (await base.fetchMailbox(null)).envelopes;
    edit = (page) => ({
      ...page,
      envelopes: [
        { ...good, seq: 2 ** 60 },
        { ...good, seq: good!.seq + 1, from: null },
        { ...good, seq: '7' },
        ...page.envelopes,
      ],
    });
    expect(await bob.engine.syncMailbox()).toBe(1);
    expect(await texts(bob.engine, conv)).toEqual(['one']);
    expect(await cursor()).toBe(good!.seq);
    edit = null;
    await alice.engine.sendText(conv, 'two');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'two queued');
    await bob.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['one', 'two']);
    alice.engine.close();
    bob.engine.close();
  });

  it('the outbox survives a reload and resends with the same client id; delivered once', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await pair(w);
    await alice.engine.connect();
    await until(async () => (await alice.engine.connectionStatus(conv)) === 'online', 'alice online');
    w.server.muteReplies('alice', 'alice-1', true);
    const m = await alice.engine.sendText(conv, 'survive me');
    // The frame reaches the server, but the tab dies before the `accepted` answer is processed.
    await until(() => w.server.sentFrames.some((f) => f.frame.type === 'send' && f.frame.id === m.clientId), 'sent');
    await alice.engine.idle();
    alice.engine.close();
    w.server.muteReplies('alice', 'alice-1', false);
    const reloaded = engineOn(w, 'alice', 'alice-1', alice.store, alice.locks);
    expect((await reloaded.messages(conv)).find((x) => x.clientId === m.clientId)?.status).toBe('sending');
    await reloaded.connect([conv]);
    await until(
      async () => (await reloaded.messages(conv)).find((x) => x.clientId === m.clientId)?.status === 'sent',
      'accepted after reload',
    );
    const frames = w.server.sentFrames.filter((f) => f.frame.type === 'send' && f.frame.id === m.clientId);
    expect(frames.length).toBe(2);
    expect(JSON.stringify(frames[0]!.frame)).toBe(JSON.stringify(frames[1]!.frame)); // same ciphertexts
    await bob.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['survive me']);
    reloaded.close();
  });

  it('device_mismatch: fetches the new device list and bundle, re-encrypts only for the new device', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await pair(w);
    await alice.engine.connect();
    await alice.engine.sendText(conv, 'before');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'first message');
    // Bob links a second device; Alice's cached list is now one version behind.
    const bobSecret = (await ownIdentity(bob.store)).userIdentity.secretKey;
    const bob2 = engineOn(w, 'bob', 'bob-2', memoryStore(), bob.locks);
    const id2 = await bob2.bootstrap({ userId: 'bob', deviceId: 'bob-2', userIdentitySecret: bobSecret });
    // The server's `devices` hint to Alice is lost here, so the send itself must find and repair the gap.
    w.server.muteReplies('alice', 'alice-1', true);
    await w.server.updateDeviceList(await bob.engine.addDeviceToList(id2.deviceCertificate));
    await bob2.publishPrekeys();
    await new Promise((r) => setTimeout(r, 20));
    w.server.muteReplies('alice', 'alice-1', false);
    const before = await alice.engine.safetyNumber('bob');
    const m = await alice.engine.sendText(conv, 'after');
    await until(
      async () => (await alice.engine.messages(conv)).find((x) => x.clientId === m.clientId)?.status === 'sent',
      'accepted after mismatch',
    );
    const frames = w.server.sentFrames.filter((f) => f.frame.type === 'send' && f.frame.id === m.clientId);
    expect(frames.length).toBe(2);
    const [first, second] = frames.map((f) => ('to' in f.frame ? f.frame.to : []));
    expect(first!.map((t) => t.d)).toEqual(['bob-1']);
    expect(second!.map((t) => t.d).sort()).toEqual(['bob-1', 'bob-2']);
    expect(second!.find((t) => t.d === 'bob-1')!.c).toBe(first![0]!.c); // not re-encrypted
    await bob.engine.syncMailbox();
    await bob2.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['before', 'after']);
    expect(await texts(bob2, conv)).toEqual(['after']);
    // PITFALLS 15: adding a device changes neither trust nor the safety number.
    expect((await alice.engine.contact('bob')).blocked).toBe(false);
    expect((await alice.engine.safetyNumber('bob'))?.digits).toBe(before?.digits);
    alice.engine.close();
  });

  it('a message that fails to decrypt is stored and surfaced, acknowledged, and the session is repaired', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await pair(w);
    await alice.engine.connect();
    await alice.engine.sendText(conv, 'fine');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'queued');
    await bob.engine.syncMailbox();
    // A forged frame from Alice's device: a well-formed message that does not authenticate.
    const [good] = itemsTo(w, 'bob', 'bob-1', 'alice');
    const parsed = decodeMessage(fromB64u(good!));
    const header = parsed.ratchet.header.slice();
    header[39]! += 3; // an unused counter, so not a duplicate: the tag cannot verify
    const forged = encodeMessage({ ...parsed, ratchet: { ...parsed.ratchet, header } });
    const sock = await w.server.sockets('alice', 'alice-1')(conv, { onMessage: () => {}, onClose: () => {} });
    sock.send(
      JSON.stringify({ v: 1, type: 'send', id: 'forged-1', to: [{ u: 'bob', d: 'bob-1', c: toB64u(forged) }] }),
    );
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'forged queued');
    const events: EngineEvent[] = [];
    bob.engine.on((e) => events.push(e));
    await bob.engine.syncMailbox();
    const failed = (await bob.engine.messages(conv)).find((m) => m.clientId === 'forged-1')!;
    expect(failed.status).toBe('undecryptable');
    expect(failed.error).toBe('decryption_failed');
    expect(events.some((e) => e.type === 'message_added' && e.message.status === 'undecryptable')).toBe(true);
    expect(w.server.pending(conv, 'bob', 'bob-1')).toEqual([]);
    // Repair: Bob's next message to Alice starts a new session (a prekey message), which Alice accepts.
    await bob.engine.connect();
    await bob.engine.sendText(conv, 'still friends?');
    await until(() => itemsTo(w, 'alice', 'alice-1', 'bob').length > 0, 'bob sends');
    const reply = itemsTo(w, 'alice', 'alice-1', 'bob').at(-1)!;
    expect(decodeMessage(fromB64u(reply)).type).toBe(MessageType.PreKey);
    await until(async () => (await texts(alice.engine, conv)).includes('still friends?'), 'alice decrypts');
    alice.engine.close();
    bob.engine.close();
  });
});

describe('PITFALLS 12: one writer per session, no (key, nonce) reuse', () => {
  it('restoring an older copy of a session record: the engine refuses to send from it and re-establishes', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await pair(w);
    await alice.engine.connect();
    await alice.engine.sendText(conv, 'm1');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'm1');
    const old = await alice.store.get('sess/bob/bob-1');
    await alice.engine.sendText(conv, 'm2');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 2, 'm2');
    await alice.store.put('sess/bob/bob-1', old!); // e.g. a backup restore or a stale tab's write
    await alice.engine.sendText(conv, 'm3');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 3, 'm3');
    const cts = itemsTo(w, 'bob', 'bob-1', 'alice');
    const inits = cts.map((c) => toHex(decodeMessage(fromB64u(c)).init ?? new Uint8Array()));
    expect(inits[2]).not.toBe(inits[0]); // a new session (new PQXDH init), not the restored one
    expect(new Set(cts.map(headerId)).size).toBe(cts.length);
    await bob.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['m1', 'm2', 'm3']);
    alice.engine.close();
  });

  it('two tabs sharing one Store and lock manager never reuse a (ratchet key, N); the receiver decrypts all', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await pair(w);
    const tabB = engineOn(w, 'alice', 'alice-1', alice.store, alice.locks);
    await alice.engine.connect([conv]);
    await tabB.connect([conv]);
    await until(async () => (await tabB.connectionStatus(conv)) === 'online', 'tab B online');
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < 5; i++) sends.push(alice.engine.sendText(conv, `a${i}`), tabB.sendText(conv, `b${i}`));
    await Promise.all(sends);
    await until(
      () => new Set(w.server.pending(conv, 'bob', 'bob-1').map((e) => e.id)).size === 10,
      'ten messages accepted',
    );
    const cts = itemsTo(w, 'bob', 'bob-1', 'alice');
    expect(new Set(cts.map(headerId)).size).toBe(cts.length);
    await bob.engine.syncMailbox();
    const got = await bob.engine.messages(conv, { limit: 100 });
    expect(got.filter((m) => m.status === 'undecryptable')).toEqual([]);
    expect(got.map((m) => m.body).sort()).toEqual(['a0', 'a1', 'a2', 'a3', 'a4', 'b0', 'b1', 'b2', 'b3', 'b4']);
    alice.engine.close();
    tabB.close();
  });
});

describe('PITFALLS 15: identity key changes', () => {
  it('blocks sending until accepted, and the safety number changes', async () => {
    const w = await makeWorld();
    const { alice, conv } = await pair(w);
    const before = await alice.engine.safetyNumber('bob');
    // Bob lost every device and resets his identity: new user identity key, list version 2.
    const nbStore = memoryStore();
    const newBob = engineOn(w, 'bob', 'bob-9', nbStore, memoryLocks());
    await newBob.bootstrap({ userId: 'bob', deviceId: 'bob-9' });
    const nb = await ownIdentity(nbStore);
    const list = await signDeviceList(w.curves, nb.userIdentity, {
      userId: 'bob',
      version: 2,
      devices: [nb.certificate],
    });
    await w.server.resetIdentity(encodeDeviceList(list));
    await newBob.publishPrekeys();
    const events: EngineEvent[] = [];
    alice.engine.on((e) => events.push(e));
    expect((await alice.engine.refreshContact('bob')).blocked).toBe(true);
    expect(events).toContainEqual({ type: 'key_change', userId: 'bob', blocked: true });
    await expect(alice.engine.sendText(conv, 'to whom?')).rejects.toMatchObject({ code: 'identity_changed' });
    expect((await alice.engine.safetyNumber('bob'))?.digits).toBe(before?.digits); // still the trusted key
    // The number to compare before accepting: under the NEW key, and the one Bob's new device shows.
    const pending = await alice.engine.safetyNumber('bob', 'pending');
    expect(pending?.digits).not.toBe(before?.digits);
    expect((await newBob.safetyNumber('alice'))?.digits).toBe(pending?.digits);
    expect((await alice.engine.contact('bob')).pendingIdentityKey).toEqual(nb.userIdentity.publicKey);
    await alice.engine.acceptIdentityChange('bob');
    expect((await alice.engine.safetyNumber('bob'))?.digits).toBe(pending?.digits);
    expect(await alice.engine.safetyNumber('bob', 'pending')).toBeNull();
    expect((await alice.engine.contact('bob')).pendingIdentityKey).toBeNull();
    await alice.engine.connect([conv]);
    await alice.engine.sendText(conv, 'welcome back');
    await until(() => w.server.pending(conv, 'bob', 'bob-9').length === 1, 'sent to the new device');
    await newBob.syncMailbox();
    expect(await texts(newBob, conv)).toEqual(['welcome back']);
    alice.engine.close();
  });
});
