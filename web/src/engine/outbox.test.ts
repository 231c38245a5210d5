/**
 * Outbox: delivery receipts queued while an earlier one is not encrypted yet merge into it (one receipt,
 * one ciphertext per member device, instead of one per received batch), up to MAX_RECEIPT_IDS; an entry
 * refused for good lets the next one go; a frame whose answer is lost is sent again. Preparing an entry through
 * transient failures (no network, 5xx, 429) keeps it `sending` until its lifespan, in order; a permanent
 * refusal fails it at once; close() stops the retries.
 */
import { describe, expect, it, vi } from 'vitest';
import { constants, deserializeSenderKeyRecord, fromB64u, nobleCurves, senderDecrypt } from './_protocol.js';
import { encodeRecord } from './codec.js';
import type { EngineContext, EngineEvent } from './context.js';
import type { EngineOptions } from './engine.js';
import { memoryLocks } from './locks.js';
import { decodePayload, Messages, WITHHELD } from './messages.js';
import { DEFAULT_OUTBOX_RETRY, Outbox, type OutboxEntry } from './outbox.js';
import { memoryStore, type Store } from './storage.js';
import { type Client, cryptoRng, makeWorld, newClient, online, texts, until, type World } from './testing/harness.js';
import { ApiError, type ServerFrame, type SocketFactory } from './transport.js';

/** An engine context on `store` with no server: what an Outbox alone needs. */
function contextOn(store: Store): EngineContext {
  return {
    store,
    api: undefined as unknown as EngineContext['api'],
    curves: nobleCurves,
    rng: cryptoRng,
    now: Date.now,
    locks: memoryLocks(),
    emit: () => {},
  };
}

function outbox() {
  const none = undefined as never;
  return new Outbox(contextOn(memoryStore()), none, none, none, none, () => false);
}

let n = 0;
const receipt =
  (conversationId: string) =>
  (ids: readonly string[], to?: readonly string[]): OutboxEntry => ({
    clientId: `r${++n}`,
    conversationId,
    kind: 'receipt',
    receiptStatus: 'delivered',
    payload: encodeRecord({ t: 'receipt', conv: conversationId, status: 'delivered', ids }),
    receiptIds: ids,
    ...(to ? { receiptTo: to } : {}),
    mode: 'pairwise',
    items: null,
    group: null,
    state: 'sending',
    seq: null,
    attempts: 0,
    createdAt: 1,
    visible: false,
  });
const ids = (from: number, count: number) => Array.from({ length: count }, (_, i) => `m${from + i}`);
const covered = (e: OutboxEntry) => {
  const p = decodePayload(e.payload);
  return p?.t === 'receipt' ? [...p.ids] : [];
};

describe('delivery receipts', () => {
  it('receipts queued before the first one is encrypted merge into it; each conversation has its own', async () => {
    const o = outbox();
    await o.enqueueReceipt('c1', ids(0, 10), receipt('c1'));
    await o.enqueueReceipt('c1', ids(10, 10), receipt('c1'));
    await o.enqueueReceipt('c2', ids(100, 5), receipt('c2'));
    await o.enqueueReceipt('c1', [...ids(15, 10)], receipt('c1'));
    const all = await o.entries();
    expect(all.map((e) => e.conversationId).sort()).toEqual(['c1', 'c2']);
    const c1 = all.find((e) => e.conversationId === 'c1')!;
    expect(covered(c1)).toEqual(ids(0, 25));
    expect(c1.receiptIds).toEqual(ids(0, 25));
    expect(covered(all.find((e) => e.conversationId === 'c2')!)).toEqual(ids(100, 5));
  });

  it('merged receipts are for every author of the ids they cover; one for every member keeps a merge for every member', async () => {
    const o = outbox();
    await o.enqueueReceipt('c1', ids(0, 2), receipt('c1'), ['ann']);
    await o.enqueueReceipt('c1', ids(2, 2), receipt('c1'), ['bea', 'ann']);
    await o.enqueueReceipt('c2', ids(10, 2), receipt('c2'), ['ann']);
    await o.enqueueReceipt('c2', ids(12, 2), receipt('c2'));
    const all = await o.entries();
    expect(all.find((e) => e.conversationId === 'c1')?.receiptTo).toEqual(['ann', 'bea']);
    expect(all.find((e) => e.conversationId === 'c2')?.receiptTo).toBeUndefined();
  });

  it("a group member's delivery receipt is encrypted only to the author's devices: every other member's slot is WITHHELD", async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'g' });
    await online([alice, bob, carol], conv);
    const { clientId } = await alice.engine.sendText(conv, 'hi');
    await until(
      async () => (await alice.engine.messages(conv)).find((m) => m.clientId === clientId)?.status === 'delivered',
      "a member's receipt",
    );
    await bob.engine.idle();
    await carol.engine.idle();
    const fromBob = w.server.sentFrames.filter((x) => x.user === 'bob' && x.frame.type === 'receipt');
    expect(fromBob.length).toBeGreaterThan(0);
    for (const { frame } of fromBob) {
      const to = 'to' in frame ? frame.to : [];
      expect(to.filter((t) => t.u === 'alice').map((t) => t.c.length > 2)).toEqual([true]);
      expect(to.filter((t) => t.u === 'carol').map((t) => t.c)).toEqual([WITHHELD]);
    }
    // Carol stores nothing for it and shows no failure; Alice's message is delivered.
    expect((await carol.engine.messages(conv)).map((m) => [m.body, m.status])).toEqual([['hi', 'received']]);
    for (const c of [alice, bob, carol]) c.engine.close();
  });

  it('a receipt never grows past the cap: the overflow starts a new receipt, and no id is lost', async () => {
    const o = outbox();
    for (let i = 0; i < 7; i++) await o.enqueueReceipt('c1', ids(i * 10, 10), receipt('c1'));
    const all = await o.entries();
    expect(all.length).toBe(2);
    expect(all.every((e) => covered(e).length <= 64)).toBe(true);
    expect(all.flatMap(covered).sort()).toEqual(ids(0, 70).sort());
  });
});

describe('receipts naming messages we never sent', () => {
  /** One store shared by two outboxes (two tabs); counts the outbox records read inside transactions. */
  function tabs() {
    const base = memoryStore();
    const reads: string[] = [];
    const store: Store = {
      ...base,
      transaction: (fn) =>
        base.transaction((tx) =>
          fn({
            ...tx,
            get: (k) => {
              if (k.startsWith('out/')) reads.push(k);
              return tx.get(k);
            },
            list: (d) => tx.list(d),
            put: (k, v) => tx.put(k, v),
            delete: (k) => tx.delete(k),
          }),
        ),
    };
    const ctx = contextOn(store);
    const none = undefined as never;
    const tab = () => new Outbox(ctx, none, none, none, new Messages(store), () => false);
    return { store, reads, tab };
  }
  const message = (clientId: string): OutboxEntry => ({
    clientId,
    conversationId: 'c1',
    kind: 'message',
    payload: new TextEncoder().encode(clientId),
    mode: 'group',
    items: null,
    group: null,
    state: 'sent',
    seq: 7,
    attempts: 1,
    createdAt: 1,
    visible: true,
  });
  const receiptFor = (store: Store, o: Outbox, ids: readonly string[]) =>
    store.transaction((tx) => o.markDeliveredInTx(tx, 'c1', ids));
  const settled = async (store: Store) => {
    await store.transaction(async () => undefined);
    await new Promise((r) => setTimeout(r, 0));
  };

  it('once our sent ids are known, a receipt naming only other members’ messages reads no outbox record; ours are still found', async () => {
    const { store, reads, tab } = tabs();
    const o = tab();
    await o.enqueue(message('mine-1'));
    await receiptFor(store, o, ids(0, 5)); // the first receipt looks every id up, and learns our sent ids
    await settled(store);
    reads.length = 0;
    await receiptFor(store, o, ids(100, 60));
    expect(reads).toEqual([]);
    await o.enqueue(message('mine-2'));
    await receiptFor(store, o, [...ids(200, 60), 'mine-2']);
    expect(reads).toEqual(['out/mine-2']);
    // `sent` → delivered: the entry is done with.
    expect((await o.entries()).map((e) => e.clientId)).toEqual(['mine-1']);
  });

  it('a message another tab queued meanwhile is still marked delivered by the first receipt that names it', async () => {
    const { store, tab } = tabs();
    const [a, b] = [tab(), tab()];
    await a.enqueue(message('from-a'));
    await receiptFor(store, a, ids(0, 5));
    await settled(store); // a knows its sent ids as of now
    await b.enqueue(message('from-b')); // … which b's entry makes incomplete
    await receiptFor(store, a, [...ids(10, 20), 'from-b']);
    expect((await a.entries()).map((e) => e.clientId)).toEqual(['from-a']);
    await settled(store);
    await receiptFor(store, a, ['from-a']);
    expect(await a.entries()).toEqual([]);
  });
});

describe('order and failures', () => {
  const entry = (clientId: string, body: string): OutboxEntry => ({
    clientId,
    conversationId: 'c1',
    kind: 'message',
    payload: new TextEncoder().encode(body),
    mode: 'pairwise',
    items: null,
    group: null,
    state: 'sending',
    seq: null,
    attempts: 0,
    createdAt: 1,
    visible: false,
  });

  it('an entry refused for good (the key directory answers 403) lets the next one of its conversation go in the same flush', async () => {
    const ctx: EngineContext = {
      store: memoryStore(),
      api: undefined as unknown as EngineContext['api'],
      curves: nobleCurves,
      rng: cryptoRng,
      now: Date.now,
      locks: memoryLocks(),
      emit: () => {},
    };
    const device = { deviceId: 'd1' };
    const groups = { recipients: async () => [{ userId: 'bob', devices: [device] }], inGap: () => false };
    const directory = { assertSendable: async () => {} };
    // The first payload's bundle claim is refused; later ones find a session.
    const sessions = {
      encryptFor: async (_u: string, _d: unknown, p: Uint8Array) => {
        if (new TextDecoder().decode(p) === 'refused') throw new ApiError(403, 'forbidden');
        return [{ deviceId: 'd1', ciphertext: p }];
      },
    };
    const sent: string[] = [];
    const failed: string[] = [];
    const o = new Outbox(
      ctx,
      sessions as never,
      groups as never,
      directory as never,
      undefined as never,
      (_c, frame) => {
        sent.push((frame as { id: string }).id);
        return true;
      },
      { failed: async (e) => void failed.push(e.clientId) },
    );
    await o.enqueue(entry('e1', 'refused'));
    await o.enqueue(entry('e2', 'refused'));
    await o.enqueue(entry('e3', 'fine'));
    await o.enqueue(entry('e4', 'fine'));
    await o.flush('c1');
    expect(failed).toEqual(['e1', 'e2']);
    // e3 goes out; e4 waits for e3's answer (one entry in flight per conversation keeps the server's order).
    expect(sent).toEqual(['e3']);
    expect((await o.entries()).map((e) => [e.clientId, e.state])).toEqual([
      ['e1', 'failed'],
      ['e2', 'failed'],
      ['e3', 'sending'],
      ['e4', 'sending'],
    ]);
  });
});

/** Alice and Bob online in a group, Alice's engine with `engine` options. */
async function group(engine: Partial<EngineOptions> = {}) {
  const w = await makeWorld();
  const alice = await newClient(w, 'alice', 'alice-1', { engine });
  const bob = await newClient(w, 'bob');
  const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob'], title: 'g' });
  await online([alice, bob], conv);
  // The fake server's socket internals, to lose frames on the way.
  const server = w.server as unknown as {
    push: (s: { user: string }, f: ServerFrame) => void;
    onFrame: (c: unknown, s: { user: string }, data: string) => void;
  };
  return { w, alice, bob, conv, server };
}

const groupSend = (w: World, id: string) =>
  w.server.sentFrames.some((x) => x.frame.type === 'send' && 'group' in x.frame && x.frame.id === id);
const sendsOf = (w: World, id: string) =>
  w.server.sentFrames.filter((x) => x.frame.type === 'send' && x.frame.id === id).length;
const accepted = async (c: Client, conv: string, ids: string[]) =>
  (await c.engine.messages(conv)).filter((m) => ids.includes(m.clientId) && m.seq !== null).length === ids.length;

describe('lost answers', () => {
  it("a group message whose `accepted` was lost with its socket, and which a member's receipt marked delivered first, is sent again after the reconnect and gets its seq", async () => {
    const { w, alice, bob, conv, server } = await group();
    const push = server.push.bind(w.server);
    let lost: string | null = null;
    server.push = (s, f) => {
      if (lost === null && s.user === 'alice' && f.type === 'accepted' && groupSend(w, f.id)) {
        lost = f.id; // stored and delivered to Bob; Alice never hears of it
        return;
      }
      push(s, f);
    };
    const sent: string[] = [];
    for (const body of ['one', 'two', 'three']) sent.push((await alice.engine.sendText(conv, body)).clientId);
    // Bob's receipt for it arrives while Alice still waits for its answer.
    await until(
      async () => (await alice.engine.messages(conv)).find((m) => m.clientId === sent[0])?.status === 'delivered',
      'the receipt for the first message',
    );
    expect(lost).toBe(sent[0]);
    // The socket drops (as in the reliability faults suite's drop phase) and comes back.
    w.server.setOnline('alice', 'alice-1', false);
    w.server.setOnline('alice', 'alice-1', true);
    await until(() => accepted(alice, conv, sent), 'every message accepted');
    await until(async () => (await texts(bob.engine, conv)).length === 3, 'Bob has all three');
    expect(await texts(bob.engine, conv)).toEqual(['one', 'two', 'three']); // each once, in order
    expect((await alice.engine.messages(conv)).find((m) => m.clientId === sent[0])).toMatchObject({
      status: 'delivered',
      seq: expect.any(Number),
    });
    alice.engine.close();
    bob.engine.close();
  });

  it('rv11: a message a receipt marked delivered before its (lost) `accepted` leaves the outbox once the resend is accepted', async () => {
    const { w, alice, bob, conv, server } = await group();
    const push = server.push.bind(w.server);
    let lost: string | null = null;
    server.push = (s, f) => {
      if (lost === null && s.user === 'alice' && f.type === 'accepted' && groupSend(w, f.id)) {
        lost = f.id;
        return;
      }
      push(s, f);
    };
    const { clientId } = await alice.engine.sendText(conv, 'one');
    await until(
      async () => (await alice.engine.messages(conv)).find((m) => m.clientId === clientId)?.status === 'delivered',
      'the receipt before the answer',
    );
    expect(lost).toBe(clientId);
    w.server.setOnline('alice', 'alice-1', false);
    w.server.setOnline('alice', 'alice-1', true);
    await until(() => accepted(alice, conv, [clientId]), 'accepted after the resend');
    await alice.engine.flushOutbox();
    // Nothing is left to send or to wait for: it is not kept in the outbox for good.
    expect(await alice.store.get(`out/${clientId}`)).toBeUndefined();
    expect(await texts(bob.engine, conv)).toEqual(['one']);
    alice.engine.close();
    bob.engine.close();
  });

  it('an accepted_batch settles every send it lists (each answer comes as a batch behind the previous answer again)', async () => {
    const { w, alice, bob, conv, server } = await group();
    const push = server.push.bind(w.server);
    let last: { id: string; seq: number; ts: number } | null = null;
    let batches = 0;
    server.push = (s, f) => {
      if (s.user === 'alice' && f.type === 'accepted' && !f.duplicate) {
        const entry = { id: f.id, seq: f.seq, ts: f.ts };
        // The send in flight is the batch's LAST entry: the engine must apply every entry, not the first.
        if (last) {
          push(s, { v: f.v, type: 'accepted_batch', accepted: [{ ...last, duplicate: true }, entry] });
          batches++;
        } else push(s, f);
        last = entry;
        return;
      }
      push(s, f);
    };
    const sent: string[] = [];
    for (const body of ['one', 'two', 'three']) sent.push((await alice.engine.sendText(conv, body)).clientId);
    await until(() => accepted(alice, conv, sent), 'every message accepted');
    expect(batches).toBeGreaterThanOrEqual(3);
    await until(async () => (await texts(bob.engine, conv)).length === 3, 'Bob has all three');
    expect(await texts(bob.engine, conv)).toEqual(['one', 'two', 'three']);
    // Each message has the seq it was stored with: the one Bob's copy carries.
    const seqOf = async (c: Client) =>
      new Map((await c.engine.messages(conv)).filter((m) => sent.includes(m.clientId)).map((m) => [m.clientId, m.seq]));
    expect(await seqOf(alice)).toEqual(await seqOf(bob));
    alice.engine.close();
    bob.engine.close();
  });

  it('a frame the server never answers, on a socket that stays open, is sent again with its id after the answer timeout; the messages behind it follow', async () => {
    const { w, alice, bob, conv, server } = await group({ sendAnswerTimeoutMs: 300 });
    const onFrame = server.onFrame.bind(w.server);
    let swallowed: string | null = null;
    server.onFrame = (c, s, data) => {
      const f = JSON.parse(data) as { type: string; id?: string; group?: string };
      if (swallowed === null && s.user === 'alice' && f.type === 'send' && f.group && f.id) {
        swallowed = f.id; // lost on the way (or answered with an error the client cannot match)
        return;
      }
      onFrame(c, s, data);
    };
    const sent: string[] = [];
    for (const body of ['one', 'two', 'three']) sent.push((await alice.engine.sendText(conv, body)).clientId);
    await until(() => accepted(alice, conv, sent), 'every message accepted');
    expect(swallowed).toBe(sent[0]);
    expect(await alice.engine.connectionStatus(conv)).toBe('online'); // no reconnect did it
    expect(sent.map((id) => sendsOf(w, id))).toEqual([1, 1, 1]); // the server saw the resend only
    await until(async () => (await texts(bob.engine, conv)).length === 3, 'Bob has all three');
    expect(await texts(bob.engine, conv)).toEqual(['one', 'two', 'three']);
    alice.engine.close();
    bob.engine.close();
  });
});

describe("a send never answered, past the server's retry window", () => {
  it('a message whose `accepted` was lost is not sent again once older than the lifespan: it fails as unreachable, Retry refuses it, delivered once', async () => {
    // The server knows a retried id for logRetentionMs (24 h) after storing it; the lifespan is shorter.
    expect(DEFAULT_OUTBOX_RETRY.lifespanMs).toBeLessThanOrEqual(24 * 3600 * 1000 - 4 * 3600 * 1000);
    let skew = 0;
    const w = await makeWorld({ now: () => Date.now() + skew });
    const retry = { baseMs: 2, maxMs: 10, lifespanMs: 60_000 };
    const alice = await newClient(w, 'alice', 'alice-1', { engine: { outboxRetry: retry } });
    const bob = await newClient(w, 'bob'); // offline: no receipt marks it delivered
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob'], title: 'g' });
    await online([alice], conv);
    const server = w.server as unknown as { push: (s: { user: string }, f: ServerFrame) => void };
    const push = server.push.bind(w.server);
    let lost: string | null = null;
    server.push = (s, f) => {
      if (lost === null && s.user === 'alice' && f.type === 'accepted' && groupSend(w, f.id)) {
        lost = f.id; // stored; the socket drops before Alice hears of it
        return;
      }
      push(s, f);
    };
    const m = await alice.engine.sendText(conv, 'one');
    await until(() => lost === m.clientId, 'stored, its answer lost');
    w.server.setOnline('alice', 'alice-1', false);
    skew = 61_000; // offline past the lifespan
    w.server.setOnline('alice', 'alice-1', true);
    const status = async () => (await alice.engine.messages(conv)).find((x) => x.clientId === m.clientId);
    await until(async () => (await status())?.status === 'failed', 'failed past the lifespan');
    expect((await status())?.error).toBe('unreachable');
    await alice.engine.idle();
    expect(sendsOf(w, m.clientId)).toBe(1); // never resent
    // Nor under a new id: Retry is refused with a reason; the failed message stays until it is deleted.
    await expect(alice.engine.retrySend(conv, m.clientId)).rejects.toMatchObject({ code: 'may_have_been_sent' });
    await alice.engine.idle();
    expect((await status())?.status).toBe('failed');
    await bob.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['one']);
    await alice.engine.discardFailed(conv, m.clientId);
    expect(await status()).toBeUndefined();
    alice.engine.close();
    bob.engine.close();
  });
  it('one a receipt already marked delivered is not sent again either: it stays delivered, stored once', async () => {
    let skew = 0;
    const w = await makeWorld({ now: () => Date.now() + skew });
    const retry = { baseMs: 2, maxMs: 10, lifespanMs: 60_000 };
    const alice = await newClient(w, 'alice', 'alice-1', { engine: { outboxRetry: retry } });
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob'], title: 'g' });
    await online([alice, bob], conv);
    const server = w.server as unknown as { push: (s: { user: string }, f: ServerFrame) => void };
    const push = server.push.bind(w.server);
    let lost: string | null = null;
    server.push = (s, f) => {
      if (lost === null && s.user === 'alice' && f.type === 'accepted' && groupSend(w, f.id)) {
        lost = f.id;
        return;
      }
      push(s, f);
    };
    const m = await alice.engine.sendText(conv, 'one');
    const status = async () => (await alice.engine.messages(conv)).find((x) => x.clientId === m.clientId);
    await until(async () => (await status())?.status === 'delivered', "Bob's receipt");
    w.server.setOnline('alice', 'alice-1', false);
    skew = 61_000;
    w.server.setOnline('alice', 'alice-1', true);
    const two = await alice.engine.sendText(conv, 'two'); // the conversation's next entry is not held behind it
    await until(async () => (await texts(bob.engine, conv)).length === 2, 'Bob has both');
    expect(await texts(bob.engine, conv)).toEqual(['one', 'two']);
    expect(sendsOf(w, m.clientId)).toBe(1);
    expect(sendsOf(w, two.clientId)).toBe(1);
    expect((await status())?.status).toBe('delivered');
    alice.engine.close();
    bob.engine.close();
  });
});

describe('the network drops', () => {
  it('a member who has not sent yet writes in a group after the network dropped: the message waits as sending and goes out, once, when it is back', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'g' });
    await online([alice, bob, carol], conv);
    // Online, Bob's engine takes what a send needs (the log, every member's device list) without being asked.
    await until(async () => !!(await bob.store.get('dir/user/carol')), "Bob holds Carol's device list");
    w.server.setReachable('bob', 'bob-1', false);
    const m = await bob.engine.sendText(conv, 'typed offline');
    expect(m.status).toBe('sending');
    expect((await bob.engine.messages(conv)).find((x) => x.clientId === m.clientId)?.status).toBe('sending');
    w.server.setReachable('bob', 'bob-1', true);
    await until(() => accepted(bob, conv, [m.clientId]), 'accepted after the network came back', 15_000);
    for (const c of [alice, carol])
      await until(async () => (await texts(c.engine, conv)).includes('typed offline'), `${c.deviceId} has it`, 15_000);
    for (const c of [alice, carol]) expect(await texts(c.engine, conv)).toEqual(['typed offline']);
  });
});

describe('a conversation whose member list this device never stored, while the server is unreachable', () => {
  /** Bob's outbox retries after 2 ms doubling to 10 ms: many failed preparations in a fraction of a second. */
  const retry = { baseMs: 2, maxMs: 10 };
  /** Failed fetches of what a send needs: the conversation and its log. */
  const refusedLogs = (w: World, user: string) =>
    w.server.refused.filter((r) => r.user === user && r.call === 'getConversation').length;
  const statusOf = async (c: Client, conv: string, clientId: string) =>
    (await c.engine.messages(conv)).find((m) => m.clientId === clientId)?.status;

  for (const kind of ['group', 'direct'] as const) {
    it(`a ${kind} just joined: the first message waits as sending (nothing encrypted) and goes out once, to the verified members, when the server is back`, async () => {
      const w = await makeWorld();
      const alice = await newClient(w, 'alice');
      const bob = await newClient(w, 'bob', 'bob-1', { engine: { outboxRetry: retry } });
      const members = kind === 'group' ? ['bob', 'carol'] : ['bob'];
      const carol = kind === 'group' ? await newClient(w, 'carol') : null;
      const others = carol ? [alice, carol] : [alice];
      const conv = await alice.engine.createConversation(
        kind === 'group' ? { kind, members, title: 'g' } : { kind, members },
      );
      await online(others, conv);
      // Bob has never loaded this conversation: no log, no member's device list.
      expect(await bob.store.get(`conv/${conv}/log`)).toBeUndefined();
      w.server.setReachable('bob', 'bob-1', false);
      await bob.engine.connect([conv]);
      const m = await bob.engine.sendText(conv, 'first words');
      expect(m.status).toBe('sending');
      await until(() => refusedLogs(w, 'bob') > 5, 'several failed log fetches (retried with back-off)');
      expect(await statusOf(bob, conv, m.clientId)).toBe('sending');
      expect(sendsOf(w, m.clientId)).toBe(0);
      expect(await bob.store.get(`conv/${conv}/log`)).toBeUndefined();
      w.server.setReachable('bob', 'bob-1', true);
      await until(() => accepted(bob, conv, [m.clientId]), 'accepted once the server is back', 15_000);
      for (const c of others) {
        await until(async () => (await texts(c.engine, conv)).length > 0, `${c.deviceId} has it`, 15_000);
        expect(await texts(c.engine, conv)).toEqual(['first words']);
        expect((await c.engine.messages(conv)).filter((x) => x.status === 'undecryptable')).toEqual([]);
      }
      expect(sendsOf(w, m.clientId)).toBe(1);
      expect(await statusOf(bob, conv, m.clientId)).not.toBe('failed');
      for (const c of [...others, bob]) c.engine.close();
    });
  }
});

describe('a message queued unprepared, then another sent once the log could be fetched', () => {
  it('rv11: the sender-key distribution the later send queued goes before the first message — no member stores it undecryptable', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const carol = await newClient(w, 'carol');
    // Bob's outbox does not retry by itself within the test: the later send's flush prepares the first one.
    const hour = 3_600_000;
    const bob = await newClient(w, 'bob', 'bob-1', { engine: { outboxRetry: { baseMs: hour, maxMs: hour } } });
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'g' });
    await online([alice, carol], conv);
    const unreadable: string[] = [];
    for (const c of [alice, carol])
      c.engine.on((e: EngineEvent) => {
        if ((e.type === 'message_added' || e.type === 'message_updated') && e.message.status === 'undecryptable')
          unreadable.push(`${c.deviceId}: ${e.message.clientId}`);
      });
    // Bob has never loaded the group (no socket either): the first message is queued unprepared.
    w.server.setReachable('bob', 'bob-1', false);
    const first = await bob.engine.sendText(conv, 'first');
    w.server.setReachable('bob', 'bob-1', true);
    // The second finds the log at hand: it queues our sender key for the members (and marks them as having it).
    const second = await bob.engine.sendText(conv, 'second');
    await bob.engine.connect([conv]);
    await until(() => accepted(bob, conv, [first.clientId, second.clientId]), 'both accepted', 15_000);
    for (const c of [alice, carol])
      await until(async () => (await texts(c.engine, conv)).length === 2, `${c.deviceId} has both`, 15_000);
    for (const c of [alice, carol]) expect(await texts(c.engine, conv)).toEqual(['first', 'second']);
    expect(unreadable).toEqual([]);
    expect(sendsOf(w, first.clientId)).toBe(1);
    for (const c of [alice, bob, carol]) c.engine.close();
  });
});

describe('a failed sender-key distribution', () => {
  it('is distributed again with the next group message (it was marked distributed: every later message stayed undecryptable)', async () => {
    const w = await makeWorld();
    const api = w.server.api('alice', 'alice-1');
    let refuse = 1; // the distribution's bundle claim is refused for good
    const alice = await newClient(w, 'alice', 'alice-1', {
      engine: {
        api: {
          ...api,
          claimBundles: async (u) => {
            if (refuse-- > 0) throw new ApiError(403, 'forbidden');
            return api.claimBundles(u);
          },
        },
      },
    });
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob'], title: 'g' });
    await online([alice, bob], conv);
    await alice.engine.sendText(conv, 'one');
    await until(async () => (await bob.engine.messages(conv)).length === 1, 'Bob holds the first message');
    expect((await bob.engine.messages(conv))[0]).toMatchObject({ status: 'undecryptable', body: null });
    await alice.engine.sendText(conv, 'two');
    await until(async () => (await texts(bob.engine, conv)).includes('two'), 'Bob reads the second message');
    alice.engine.close();
    bob.engine.close();
  });
});

describe('a removal while group messages wait (PITFALLS 19)', () => {
  it('a message queued before it and encrypted after it uses a fresh chain, distributed first to the members left: the removed one cannot open it', async () => {
    const w = await makeWorld();
    const frames: { type: string; id?: string; group?: string }[] = [];
    const sockets = w.server.sockets('alice', 'alice-1');
    const realtime: SocketFactory = async (id, handlers) => {
      const s = await sockets(id, handlers);
      return {
        send: (data) => {
          frames.push(JSON.parse(data));
          s.send(data);
        },
        close: (code) => s.close(code),
      };
    };
    const alice = await newClient(w, 'alice', 'alice-1', { engine: { realtime } });
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'g' });
    await online([alice, bob, carol], conv);
    await alice.engine.sendText(conv, 'hello all');
    await until(async () => (await texts(carol.engine, conv)).includes('hello all'), 'carol has hello');
    // Offline, alice writes twice, then removes carol. m1 is encrypted at once (the flush after the send, with the
    // chain carol holds: she was a member then) and its frame is kept as it is — a frame is never re-encrypted;
    // m2 waits behind it, not encrypted yet.
    await alice.engine.disconnect();
    await alice.engine.sendText(conv, 'm1');
    const m2 = await alice.engine.sendText(conv, 'm2');
    await alice.engine.removeMember(conv, 'carol');
    await alice.engine.connect([conv]);
    await until(async () => (await texts(bob.engine, conv)).includes('m2'), 'bob has m2');
    // Bob reads both, in order, never as undecryptable: the new chain's distribution went out before them.
    expect(await texts(bob.engine, conv)).toEqual(['hello all', 'm1', 'm2']);
    expect((await bob.engine.messages(conv)).filter((m) => m.status === 'undecryptable')).toEqual([]);
    // m2 was encrypted after the removal: with a new chain, which carol's copy of alice's chain does not open.
    const held = await carol.store.get(`skr/${conv}/alice/alice-1`);
    expect(held).toBeDefined();
    const f = frames.find((x) => x.type === 'send' && x.id === m2.clientId && x.group);
    expect(f).toBeDefined();
    await expect(senderDecrypt(w.curves, deserializeSenderKeyRecord(held!), fromB64u(f!.group!))).rejects.toThrow();
    alice.engine.close();
    bob.engine.close();
    carol.engine.close();
  });
});

describe('the server is unreachable for longer than the old retry budget (8 transient failures, ≈ 30 s)', () => {
  /** Alice's outbox retries after 2 ms doubling to 10 ms: many transient failures in a fraction of a second. */
  const retry = { baseMs: 2, maxMs: 10 };
  const OLD_BUDGET = 8;
  const refusedClaims = (w: World, user: string) =>
    w.server.refused.filter((r) => r.user === user && r.call === 'claimBundles').length;
  const statusOf = async (c: Client, conv: string, clientId: string) =>
    (await c.engine.messages(conv)).find((m) => m.clientId === clientId)?.status;

  it('a message to a contact whose bundle was never fetched stays sending through many failed claims, and is delivered once when the server is back', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice', 'alice-1', { engine: { outboxRetry: retry } });
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await online([alice, bob], conv);
    await alice.engine.idle(); // online, she took the device lists a send needs (not Bob's bundle)
    w.server.setReachable('alice', 'alice-1', false);
    const m = await alice.engine.sendText(conv, 'typed offline');
    // Her first message to Bob needs his bundle: every claim fails like a dropped network.
    await until(() => refusedClaims(w, 'alice') > 3 * OLD_BUDGET, 'more failed claims than the old budget');
    expect(await statusOf(alice, conv, m.clientId)).toBe('sending');
    expect(sendsOf(w, m.clientId)).toBe(0);
    w.server.setReachable('alice', 'alice-1', true);
    await until(() => accepted(alice, conv, [m.clientId]), 'accepted once the server is back');
    await until(async () => (await texts(bob.engine, conv)).length > 0, 'Bob has it');
    expect(await texts(bob.engine, conv)).toEqual(['typed offline']);
    expect(sendsOf(w, m.clientId)).toBe(1);
    expect(await statusOf(alice, conv, m.clientId)).not.toBe('failed');
    alice.engine.close();
    bob.engine.close();
  });

  it("several group messages (Alice's sender key not distributed yet) wait in order behind the distribution and arrive in order, each once", async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice', 'alice-1', { engine: { outboxRetry: retry } });
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'g' });
    await online([alice, bob, carol], conv);
    await alice.engine.idle(); // online, she took the device lists a send needs (not the bundles)
    w.server.setReachable('alice', 'alice-1', false);
    const sent: string[] = [];
    for (const body of ['one', 'two', 'three']) sent.push((await alice.engine.sendText(conv, body)).clientId);
    await until(() => refusedClaims(w, 'alice') > 3 * OLD_BUDGET, 'more failed claims than the old budget');
    for (const id of sent) expect(await statusOf(alice, conv, id)).toBe('sending');
    w.server.setReachable('alice', 'alice-1', true);
    await until(() => accepted(alice, conv, sent), 'all three accepted once the server is back');
    for (const c of [bob, carol]) {
      await until(async () => (await texts(c.engine, conv)).length === 3, `${c.deviceId} has all three`);
      expect(await texts(c.engine, conv)).toEqual(['one', 'two', 'three']);
      expect((await c.engine.messages(conv)).filter((m) => m.status === 'undecryptable')).toEqual([]);
    }
    expect(sent.map((id) => sendsOf(w, id))).toEqual([1, 1, 1]);
    const seqs = (await alice.engine.messages(conv)).filter((m) => sent.includes(m.clientId)).map((m) => m.seq!);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    for (const c of [alice, bob, carol]) c.engine.close();
  });

  it('a permanent refusal fails the waiting message at once, and the next one goes', async () => {
    const w = await makeWorld();
    const api = w.server.api('alice', 'alice-1');
    let mode: 'down' | 'refuse' | 'up' = 'up';
    let failedClaims = 0;
    const alice = await newClient(w, 'alice', 'alice-1', {
      engine: {
        outboxRetry: retry,
        api: {
          ...api,
          claimBundles: async (u) => {
            if (mode === 'down') {
              failedClaims++;
              throw failedClaims % 3 === 0 ? new ApiError(503, 'unavailable') : new TypeError('fetch failed');
            }
            if (mode === 'refuse') throw new ApiError(403, 'forbidden');
            return api.claimBundles(u);
          },
        },
      },
    });
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await online([alice, bob], conv);
    await alice.engine.idle();
    mode = 'down';
    const one = await alice.engine.sendText(conv, 'one');
    const two = await alice.engine.sendText(conv, 'two');
    await until(() => failedClaims > 3 * OLD_BUDGET, 'more failed claims (network, 503) than the old budget');
    expect([await statusOf(alice, conv, one.clientId), await statusOf(alice, conv, two.clientId)]).toEqual([
      'sending',
      'sending',
    ]);
    // The key directory now refuses the first entry's claim for good: no waiting out the lifespan.
    mode = 'refuse';
    await until(async () => (await statusOf(alice, conv, one.clientId)) === 'failed', 'the first message failed');
    mode = 'up';
    await alice.engine.sendText(conv, 'three');
    await until(async () => (await texts(bob.engine, conv)).length === 1, 'Bob has the one that went');
    expect(await texts(bob.engine, conv)).toEqual(['three']);
    alice.engine.close();
    bob.engine.close();
  });

  it('an entry older than the lifespan fails at its next transient failure', async () => {
    let skew = 0;
    const w = await makeWorld({ now: () => Date.now() + skew });
    const alice = await newClient(w, 'alice', 'alice-1', { engine: { outboxRetry: { ...retry, lifespanMs: 60_000 } } });
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await online([alice, bob], conv);
    await alice.engine.idle(); // online, she took the device lists a send needs (not Bob's bundle)
    w.server.setReachable('alice', 'alice-1', false);
    const m = await alice.engine.sendText(conv, 'typed offline');
    await until(() => refusedClaims(w, 'alice') > OLD_BUDGET, 'more failed claims than the old budget');
    expect(await statusOf(alice, conv, m.clientId)).toBe('sending');
    skew = 61_000; // the entry is now older than its lifespan
    await until(async () => (await statusOf(alice, conv, m.clientId)) === 'failed', 'failed past the lifespan');
    expect((await alice.engine.messages(conv)).find((x) => x.clientId === m.clientId)?.error).toBe('unreachable');
    alice.engine.close();
    bob.engine.close();
  });

  it('close() stops the retries', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice', 'alice-1', { engine: { outboxRetry: retry } });
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await online([alice, bob], conv);
    await alice.engine.idle(); // online, she took the device lists a send needs (not Bob's bundle)
    w.server.setReachable('alice', 'alice-1', false);
    await alice.engine.sendText(conv, 'typed offline');
    await until(() => refusedClaims(w, 'alice') > OLD_BUDGET, 'failed claims');
    alice.engine.close();
    await alice.engine.idle();
    const after = refusedClaims(w, 'alice');
    await new Promise((r) => setTimeout(r, 200)); // ≥ 20 retry periods
    expect(refusedClaims(w, 'alice')).toBe(after);
    bob.engine.close();
  });
});

describe("a server error's retryAfterMs", () => {
  it('is kept within the outbox bounds: 0 does not resend at once, 2^31 and more do not overflow into one', async () => {
    vi.useFakeTimers();
    const none = undefined as never;
    const frames: string[] = [];
    const box = new Outbox(
      contextOn(memoryStore()),
      none,
      none,
      none,
      none,
      (_c, f) => {
        if (f.type === 'receipt') frames.push(f.id);
        return true;
      },
      {},
      3600_000, // no answer timeout in this test's time
    );
    try {
      const e = { ...receipt('c1')(['m1']), items: [{ u: 'bob', d: 'bob-1', c: 'AA' }], createdAt: Date.now() };
      await box.enqueue(e);
      await box.flush('c1');
      expect(frames).toEqual([e.clientId]);
      for (const retryAfterMs of [0, 2 ** 31, 2 ** 40]) {
        frames.length = 0;
        await box.onError('c1', {
          v: 1,
          type: 'error',
          code: 'rate_limited',
          message: 'slow down',
          id: e.clientId,
          retryAfterMs,
        });
        await vi.advanceTimersByTimeAsync(constants.OUTBOX_RETRY_BASE_MS - 1);
        expect(frames).toEqual([]); // not at once, nor ~1 ms later
        await vi.advanceTimersByTimeAsync(constants.OUTBOX_RETRY_MAX_MS);
        expect(frames).toEqual([e.clientId]); // once, by the ceiling
      }
    } finally {
      box.close();
      vi.useRealTimers();
    }
  });
});
