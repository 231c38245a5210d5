/**
 * Group (sender-key) messages cost one row: the log row plus its recipient-set epoch, with per-device ack
 * cursors (worker/delivery/store.ts). These scenarios pin the derived delivery state down: who gets a
 * group message, what survives a restart, and what the D1 flush writes.
 */
import { abortAllDurableObjects, runInDurableObject } from 'cloudflare:test';
import { and, eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { clientFrame, MAX_PAIRWISE_RECIPIENTS, WIRE_VERSION } from '../schema/wire.js';
import { toB64u } from '../web/src/protocol/bytes.js';
import { fastFrame } from './conversation.js';
import { schema } from './db.js';
import type { DeviceSet } from './delivery/device-set.js';
import type { DeliveryStore } from './delivery/store.js';
import type { Env } from './env.js';
import {
  addDevice,
  type Client,
  connect,
  conversationStub,
  db,
  fakeCiphertext,
  flushOutbox,
  mailboxRows,
  makeConversation,
  makeUser,
  markDeviceRevoked,
  waitForCursor,
} from './test/delivery-fixtures.js';

const group = (id: string, c = fakeCiphertext()) => ({ v: WIRE_VERSION, type: 'send', id, group: c });
const seqs = (c: Client) => c.envelopes().map((e) => e.seq);
/** A pairwise send to one device (a direct row in the DO). */
const direct = (id: string, to: { userId: string }, c: string) => ({
  v: WIRE_VERSION,
  type: 'send',
  id,
  to: [{ u: to.userId, d: 'd0', c }],
});

const TABLES = ['log', 'pairwise', 'epochs', 'epoch_devices', 'cursors', 'pending_acks'] as const;

/** Row count of every table of the conversation DO's SQLite store. */
function rowCounts(conv: string): Promise<Record<(typeof TABLES)[number], number>> {
  return runInDurableObject(conversationStub(conv), (_inst, state) => {
    const out = {} as Record<(typeof TABLES)[number], number>;
    // sql-interpolation-ok: table names from the constant list above.
    for (const t of TABLES) out[t] = state.storage.sql.exec<{ n: number }>(`SELECT count(*) AS n FROM ${t}`).one().n;
    return out;
  });
}

/** The envelopes the DO holds for a device (what a resume from 0 would replay), by seq. */
function pendingSeqs(conv: string, u: string, d: string): Promise<number[]> {
  return runInDurableObject(conversationStub(conv), (inst) =>
    (inst as unknown as { store: DeliveryStore }).store.pendingFor(u, d, 0, 1000).map((r) => r.seq),
  );
}

describe('group messages: one row per message', () => {
  it('a group send to 10 devices adds 1 log row and 0 per-device rows, and reaches every current device', async () => {
    const users = await Promise.all([1, 2, 3, 4, 5].map((i) => makeUser(`g${i}`, 2)));
    const conv = await makeConversation(users);
    const devs = users.flatMap((u) => u.devices);
    const clients = await Promise.all(devs.map((d) => connect(conv, d)));
    const [a, ...others] = clients as [Client, ...Client[]];
    await a.sendAndWait(group('warm')); // the first group message writes the epoch (1 + 10 rows)
    await Promise.all(others.map((c) => c.until((x) => x.envelopes().length === 1)));
    const before = await rowCounts(conv);
    expect(before).toMatchObject({ log: 1, pairwise: 0, epochs: 1, epoch_devices: 10 });

    const c = fakeCiphertext(256);
    expect(await a.sendAndWait(group('one', c))).toMatchObject({ type: 'accepted', seq: 2 });
    const after = await rowCounts(conv);
    expect(after).toEqual({ ...before, log: before.log + 1 });

    await Promise.all(others.map((o) => o.until((x) => x.envelopes().length === 2)));
    for (const o of others) {
      expect(o.envelopes()[1]).toMatchObject({ seq: 2, id: 'one', mode: 'group', c, from: { u: a.dev.userId } });
    }
    expect(a.envelopes()).toEqual([]); // not to the sender's own device
    // The same set is pending for each of them in the DO until they ack; none for the sender.
    for (const d of devs.slice(1)) expect(await pendingSeqs(conv, d.userId, d.deviceId)).toEqual([1, 2]);
    expect(await pendingSeqs(conv, devs[0]!.userId, devs[0]!.deviceId)).toEqual([]);
    // An ack is one cursor row per device, no per-message rows.
    for (const o of others) o.ack(2);
    await Promise.all(others.map((o) => o.resume(2))); // a round trip per socket: the acks are applied
    const acked = await rowCounts(conv);
    expect(acked).toMatchObject({ log: 2, pairwise: 0, cursors: 9 });
    for (const d of devs.slice(1)) expect(await pendingSeqs(conv, d.userId, d.deviceId)).toEqual([]);
    for (const x of clients) x.close();
  });

  it('a device added after a group message does not get it, and gets the ones after', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    await a.sendAndWait(group('before'));
    const bob1 = await addDevice(bob.userId, 'd1');
    await conversationStub(conv).devicesChanged(bob.userId); // what device registration does
    const b1 = await connect(conv, bob1, 0);
    expect(seqs(b1)).toEqual([]);
    await a.sendAndWait(group('after'));
    await b1.until((x) => x.envelopes().length === 1);
    expect(seqs(b1)).toEqual([2]);
    const b0 = await connect(conv, bob.devices[0]!, 0);
    expect(seqs(b0)).toEqual([1, 2]);
    b1.close();
    b0.close();
    await flushOutbox(conv);
    expect((await mailboxRows(bob.userId, 'd1')).map((r) => r.seq)).toEqual([2]);
    expect((await mailboxRows(bob.userId, 'd0')).map((r) => r.seq)).toEqual([1, 2]);
    a.close();
  });

  it('a removed member gets no group message sent after its removal and keeps the ones before', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob', 2);
    const carol = await makeUser('carol');
    const conv = await makeConversation([alice, bob, carol]);
    const a = await connect(conv, alice.devices[0]!);
    const c = await connect(conv, carol.devices[0]!);
    await a.sendAndWait(group('before')); // bob is offline
    await db()
      .delete(schema.members)
      .where(and(eq(schema.members.conversationId, conv), eq(schema.members.userId, bob.userId)));
    await conversationStub(conv).membershipChanged('c2lnbmVkLWVudHJ5', [bob.userId]);
    await a.sendAndWait(group('after'));
    await c.until((x) => x.envelopes().length === 2);
    for (const d of bob.devices) expect(await pendingSeqs(conv, bob.userId, d.deviceId)).toEqual([1]);
    expect(await pendingSeqs(conv, carol.userId, 'd0')).toEqual([1, 2]);
    await flushOutbox(conv);
    // Addressed to them while they were members: still in their mailbox (docs/ARCHITECTURE.md).
    expect((await mailboxRows(bob.userId, 'd0')).map((r) => r.seq)).toEqual([1]);
    expect((await mailboxRows(bob.userId, 'd1')).map((r) => r.seq)).toEqual([1]);
    a.close();
    c.close();
  });

  it('a device-set read that started before a membership change is neither joined nor installed over it', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const carol = await makeUser('carol');
    const conv = await makeConversation([alice, bob, carol]);
    const a = await connect(conv, alice.devices[0]!);
    const c = await connect(conv, carol.devices[0]!);
    const members = await runInDurableObject(conversationStub(conv), async (instance) => {
      const inst = instance as unknown as { env: Env; deviceSet: DeviceSet | null; devices(): Promise<DeviceSet> };
      const realEnv = inst.env;
      // The first D1 read of the set runs (bob still a member), then its answer is held back.
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let read!: () => void;
      const wasRead = new Promise<void>((r) => (read = r));
      let first = true;
      const DB = {
        prepare: (q: string) => realEnv.DB.prepare(q),
        batch: async (stmts: D1PreparedStatement[]) => {
          const out = await realEnv.DB.batch(stmts);
          if (first) {
            first = false;
            read();
            await held;
          }
          return out;
        },
      };
      inst.env = { ...realEnv, DB } as unknown as Env;
      try {
        inst.deviceSet = null;
        const early = inst.devices();
        await wasRead;
        await db()
          .delete(schema.members)
          .where(and(eq(schema.members.conversationId, conv), eq(schema.members.userId, bob.userId)));
        const changed = instance.membershipChanged('c2lnbmVkLWVudHJ5', [bob.userId]); // its refresh starts now
        release();
        const [set] = await Promise.all([early, changed]);
        return { returned: [...set.members.keys()], installed: [...inst.deviceSet!.members.keys()] };
      } finally {
        inst.env = realEnv;
      }
    });
    expect(members.returned.sort()).toEqual([alice.userId, carol.userId].sort());
    expect(members.installed.sort()).toEqual([alice.userId, carol.userId].sort());
    // The next group message's epoch leaves bob out.
    await a.sendAndWait(group('after'));
    await c.until((x) => x.envelopes().length === 1);
    expect(await pendingSeqs(conv, bob.userId, 'd0')).toEqual([]);
    expect(await pendingSeqs(conv, carol.userId, 'd0')).toEqual([1]);
    a.close();
    c.close();
  });

  it('the ack cursor survives a DO restart', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    let a = await connect(conv, alice.devices[0]!);
    let b = await connect(conv, bob.devices[0]!);
    for (let i = 1; i <= 6; i++) a.send(group(`m${i}`));
    await b.until((x) => x.envelopes().length === 6);
    b.ack(4);
    await b.resume(6); // round trip: the ack is applied to storage before the replay
    await waitForCursor(conv, bob.userId, 'd0', 4);
    await abortAllDurableObjects();
    await a.waitClosed().catch(() => undefined);
    await b.waitClosed().catch(() => undefined);
    b = await connect(conv, bob.devices[0]!, 0); // even a client that lost its own position
    expect(seqs(b)).toEqual([5, 6]);
    a = await connect(conv, alice.devices[0]!, 6);
    await a.sendAndWait(group('m7'));
    await b.until((x) => x.envelopes().length === 3);
    expect(seqs(b)).toEqual([5, 6, 7]);
    a.close();
    b.close();
  });

  it('a device that drops before acking gets its group envelopes again on resume; its acked sibling does not', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob', 2);
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    let b0 = await connect(conv, bob.devices[0]!);
    let b1 = await connect(conv, bob.devices[1]!);
    for (let i = 1; i <= 3; i++) await a.sendAndWait(group(`m${i}`));
    await b0.until((x) => x.envelopes().length === 3);
    await b1.until((x) => x.envelopes().length === 3);
    b0.ack(3);
    await b0.resume(3);
    b0.close();
    b1.close(); // dropped before acking
    b0 = await connect(conv, bob.devices[0]!, 0);
    b1 = await connect(conv, bob.devices[1]!, 0);
    expect(seqs(b0)).toEqual([]);
    expect(seqs(b1)).toEqual([1, 2, 3]);
    expect(b1.envelopes().every((e) => e.mode === 'group')).toBe(true);
    a.close();
    b0.close();
    b1.close();
  });
});

describe('group messages: the D1 flush', () => {
  it('writes mailbox rows only for the devices still behind their cursor, and the ciphertext once', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const carol = await makeUser('carol');
    const dave = await makeUser('dave');
    const conv = await makeConversation([alice, bob, carol, dave]);
    const a = await connect(conv, alice.devices[0]!);
    const b = await connect(conv, bob.devices[0]!); // online, acks
    const c = await connect(conv, carol.devices[0]!); // online, does not ack (yet)
    // dave is offline
    for (let i = 1; i <= 3; i++) await a.sendAndWait(group(`m${i}`));
    await b.until((x) => x.envelopes().length === 3);
    await c.until((x) => x.envelopes().length === 3);
    b.ack(3);
    await b.resume(3);
    await waitForCursor(conv, bob.userId, 'd0', 3);
    await flushOutbox(conv);
    expect(await mailboxRows(bob.userId, 'd0')).toEqual([]);
    expect(await mailboxRows(alice.userId, 'd0')).toEqual([]);
    expect((await mailboxRows(carol.userId, 'd0')).map((r) => r.seq)).toEqual([1, 2, 3]);
    expect((await mailboxRows(dave.userId, 'd0')).map((r) => r.seq)).toEqual([1, 2, 3]);
    const groups = (await db().select().from(schema.groupEnvelopes).all()).filter((g) => g.conversationId === conv);
    expect(groups.map((g) => g.seq).sort()).toEqual([1, 2, 3]);
    // carol acks 2 later: the D1 rows it covers go too (pending ack), 3 stays.
    c.ack(2);
    await c.resume(2);
    await waitForCursor(conv, carol.userId, 'd0', 2);
    await flushOutbox(conv);
    expect((await mailboxRows(carol.userId, 'd0')).map((r) => r.seq)).toEqual([3]);
    // A later group message that everyone online acks in time adds nothing for them in D1.
    await a.sendAndWait(group('m4'));
    await b.until((x) => x.envelopes().length === 4);
    await c.until((x) => seqs(x).includes(4)); // (3 was replayed once more by its resume(2))
    b.ack(4);
    c.ack(4);
    await Promise.all([b.resume(4), c.resume(4)]);
    await waitForCursor(conv, bob.userId, 'd0', 4);
    await waitForCursor(conv, carol.userId, 'd0', 4);
    await flushOutbox(conv);
    expect(await mailboxRows(bob.userId, 'd0')).toEqual([]);
    expect(await mailboxRows(carol.userId, 'd0')).toEqual([]);
    expect((await mailboxRows(dave.userId, 'd0')).map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    a.close();
    b.close();
    c.close();
  });

  it('pruning drops flushed group messages and unused epochs; resume below the retention reads D1', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    for (let i = 1; i <= 3; i++) await a.sendAndWait(group(`m${i}`));
    const bob1 = await addDevice(bob.userId, 'd1');
    await conversationStub(conv).devicesChanged(bob.userId);
    await a.sendAndWait(group('m4')); // a second epoch
    await flushOutbox(conv);
    await runInDurableObject(conversationStub(conv), (inst) => {
      (inst as unknown as { store: DeliveryStore }).store.prune(Date.now() + 1);
    });
    expect(await rowCounts(conv)).toMatchObject({ log: 0, pairwise: 0, epochs: 1 });
    await a.sendAndWait(group('m5'));
    const b0 = await connect(conv, bob.devices[0]!, 1);
    expect(seqs(b0)).toEqual([2, 3, 4, 5]);
    const b1 = await connect(conv, bob1, 0);
    expect(seqs(b1)).toEqual([4, 5]);
    a.close();
    b0.close();
    b1.close();
  });
});

describe('direct messages: a pairwise message to one device is one row', () => {
  it('pending for its device until acked, replayed and flushed as pairwise, a retry after a restart answered once, gone with a revoked device', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    let a = await connect(conv, alice.devices[0]!);
    let b = await connect(conv, bob.devices[0]!);
    const cs = [1, 2, 3].map(() => fakeCiphertext(64));
    const before = await rowCounts(conv);
    for (let i = 1; i <= 3; i++) {
      expect(await a.sendAndWait(direct(`p${i}`, bob, cs[i - 1]!))).toMatchObject({ type: 'accepted', seq: i });
    }
    expect(await rowCounts(conv)).toEqual({ ...before, log: before.log + 3 }); // no pairwise row
    await b.until((x) => x.envelopes().length === 3);
    expect(b.envelopes().map((e) => [e.seq, e.mode, e.c])).toEqual(cs.map((c, i) => [i + 1, 'pairwise', c]));
    expect(await pendingSeqs(conv, bob.userId, 'd0')).toEqual([1, 2, 3]);
    expect(await pendingSeqs(conv, alice.userId, 'd0')).toEqual([]);
    b.ack(1);
    await b.resume(3); // round trip: the ack is applied
    await waitForCursor(conv, bob.userId, 'd0', 1);
    expect(await pendingSeqs(conv, bob.userId, 'd0')).toEqual([2, 3]);
    // Dropped before acking 2 and 3: replayed from the cursor with the same ciphertexts.
    b.close();
    b = await connect(conv, bob.devices[0]!, 0);
    expect(b.envelopes().map((e) => [e.seq, e.mode, e.c])).toEqual([
      [2, 'pairwise', cs[1]],
      [3, 'pairwise', cs[2]],
    ]);
    // The D1 flush writes the un-acked ones as pairwise mailbox rows (their own ciphertext), nothing else.
    await flushOutbox(conv);
    const rows = await mailboxRows(bob.userId, 'd0');
    expect(rows.map((r) => [r.seq, toB64u(new Uint8Array(r.ciphertext!))])).toEqual([
      [2, cs[1]],
      [3, cs[2]],
    ]);
    expect(await mailboxRows(alice.userId, 'd0')).toEqual([]);
    const groups = (await db().select().from(schema.groupEnvelopes).all()).filter((g) => g.conversationId === conv);
    expect(groups).toEqual([]);
    // A restarted object knows no ids in memory: a retry of p2 is found in the log and delivered nowhere.
    await abortAllDurableObjects();
    await a.waitClosed().catch(() => undefined);
    await b.waitClosed().catch(() => undefined);
    a = await connect(conv, alice.devices[0]!, 3);
    b = await connect(conv, bob.devices[0]!, 3);
    expect(await a.sendAndWait(direct('p2', bob, cs[1]!))).toMatchObject({ seq: 2, duplicate: true });
    expect(await a.sendAndWait(direct('p4', bob, cs[0]!))).toMatchObject({ seq: 4 });
    await b.until((x) => x.envelopes().length === 1);
    expect(seqs(b)).toEqual([4]);
    // A revoked device: its direct ciphertexts leave the DO; nothing is pending or flushed for it.
    await markDeviceRevoked(bob.userId, 'd0');
    expect(await conversationStub(conv).deviceRevoked(bob.userId, 'd0')).toBe(1);
    expect(await pendingSeqs(conv, bob.userId, 'd0')).toEqual([]);
    const kept = await runInDurableObject(conversationStub(conv), (_i, state) =>
      state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM log WHERE group_c IS NOT NULL').one(),
    );
    expect(kept.n).toBe(0);
    await flushOutbox(conv);
    expect(await mailboxRows(bob.userId, 'd0')).toEqual([]);
    a.close();
  });
});

describe('hot-path frame check', () => {
  it('the hand-checked group send and ack accept exactly what the wire schema accepts', () => {
    const ok = { v: 1, type: 'send', id: 'm-1', group: 'AbC_-9' };
    expect(fastFrame(ok)).toEqual(ok);
    expect(fastFrame({ v: 1, type: 'ack', upTo: 7 })).toEqual({ v: 1, type: 'ack', upTo: 7 });
    // Anything unusual is left to the zod schema (null here), which then refuses or accepts it.
    for (const bad of [
      { ...ok, id: 'bad id' },
      { ...ok, id: 'x'.repeat(65) },
      { ...ok, group: '' },
      { ...ok, group: 'a+b/' },
      { ...ok, group: 'A'.repeat(87_383) },
      { ...ok, group: 5 },
      { v: 1, type: 'send', id: 'm', to: 'x', extra: 1 },
      { v: 1, type: 'ack', upTo: -1 },
      { v: 1, type: 'ack', upTo: 1.5 },
      { v: 1, type: 'ack', upTo: '3' },
      { v: 1, type: 'ack', upTo: 2 ** 53 },
      { v: 1, type: 'resume', after: 0 },
    ]) {
      expect(fastFrame(bad as Record<string, unknown>)).toBeNull();
    }
  });

  it('the hand-checked pairwise send accepts exactly what the wire schema accepts, and nothing it refuses', () => {
    const item = { u: 'alice', d: 'd-1', c: 'AbC_-9' };
    const ok = { v: 1, type: 'send', id: 'm-1', to: [item, { u: 'bob', d: 'd2', c: 'Zz' }] };
    expect(fastFrame(ok)).toEqual(ok);
    const cases: unknown[] = [
      ok,
      { ...ok, to: [item] },
      { ...ok, to: Array.from({ length: MAX_PAIRWISE_RECIPIENTS }, (_, i) => ({ ...item, d: `d${i}` })) },
      { ...ok, to: Array.from({ length: MAX_PAIRWISE_RECIPIENTS + 1 }, (_, i) => ({ ...item, d: `d${i}` })) },
      { ...ok, to: [] },
      { ...ok, to: 'x' },
      { ...ok, to: { 0: item, length: 1 } },
      { ...ok, to: [null] },
      { ...ok, to: [[item.u, item.d, item.c]] },
      { ...ok, to: [{ ...item, extra: 1 }] },
      { ...ok, to: [{ u: item.u, d: item.d }] },
      { ...ok, to: [{ ...item, u: 'bad id' }] },
      { ...ok, to: [{ ...item, d: 'x'.repeat(65) }] },
      { ...ok, to: [{ ...item, c: '' }] },
      { ...ok, to: [{ ...item, c: 'a+b/' }] },
      { ...ok, to: [{ ...item, c: 'A'.repeat(87_383) }] },
      { ...ok, to: [{ ...item, c: 5 }] },
      { ...ok, id: 'bad id' },
      { v: 1, type: 'send', id: 'm', extra: [item] },
    ];
    for (const frame of cases) {
      const fast = fastFrame(frame as Record<string, unknown>);
      const zod = clientFrame.safeParse(frame);
      // Either left to zod (null), or exactly zod's result; never accepted when zod refuses.
      if (fast !== null) expect(zod.success && fast).toEqual(zod.data);
      if (!zod.success) expect(fast).toBeNull();
    }
    // The well-formed ones do take the fast path.
    expect(fastFrame(cases[1] as Record<string, unknown>)).not.toBeNull();
    expect(fastFrame(cases[2] as Record<string, unknown>)).not.toBeNull();
  });
});
