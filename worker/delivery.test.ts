import { abortAllDurableObjects, listDurableObjectIds, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { and, eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { type Envelope, WIRE_VERSION } from '../schema/wire.js';
import { schema } from './db.js';
import { deliveryConfig } from './delivery/config.js';
import { compareAddressed, type DeviceSet } from './delivery/device-set.js';
import type { DeliveryStore } from './delivery/store.js';
import {
  addDevice,
  api,
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

const flushAll = flushOutbox;

const seqs = (c: Client) => c.envelopes().map((e) => e.seq);
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const group = (id: string, c = fakeCiphertext()) => ({ v: WIRE_VERSION, type: 'send', id, group: c });

async function mailboxPage(token: string, q = '') {
  const res = await api(`/api/mailbox${q}`, token);
  expect(res.status).toBe(200);
  return (await res.json()) as {
    envelopes: (Envelope & { conversationId: string })[];
    next: { afterConversation: string; afterSeq: number } | null;
  };
}

describe('delivery: ordering', () => {
  it('10 sockets × 50 concurrent sends: every receiver sees the same gap-free order', async () => {
    const users = await Promise.all(range(1, 5).map((i) => makeUser(`p${i}`, 2)));
    const conv = await makeConversation(users);
    const devs = users.flatMap((u) => u.devices);
    const clients = await Promise.all(devs.map((d) => connect(conv, d)));
    // Everyone fires 50 sends at once, half pairwise (one ciphertext per other device), half group.
    for (const [ci, c] of clients.entries()) {
      for (let i = 0; i < 50; i++) {
        const id = `c${ci}m${i}`;
        if (i % 2 === 0) c.send(group(id));
        else {
          const to = devs
            .filter((d) => !(d.userId === c.dev.userId && d.deviceId === c.dev.deviceId))
            .map((d) => ({ u: d.userId, d: d.deviceId, c: fakeCiphertext(32) }));
          c.send({ v: WIRE_VERSION, type: 'send', id, to });
        }
      }
    }
    await Promise.all(
      clients.map((c) =>
        c.until(
          (x) => x.envelopes().length === 450 && x.frames.filter((f) => f.type === 'accepted').length === 50,
          20_000,
        ),
      ),
    );
    const all = range(1, 500);
    for (const c of clients) {
      const got = seqs(c);
      expect(got).toEqual([...got].sort((a, b) => a - b)); // in order
      const own = c.frames.flatMap((f) => (f.type === 'accepted' ? [f.seq] : []));
      expect([...got, ...own].sort((a, b) => a - b)).toEqual(all); // gap-free, nothing twice
      expect(c.frames.some((f) => f.type === 'error')).toBe(false);
    }
    // Same total order everywhere: the same message id has the same seq at every receiver.
    const seqOf = new Map<string, number>();
    for (const c of clients)
      for (const e of c.envelopes()) {
        const k = `${e.from.u}/${e.from.d}/${e.id}`;
        expect(seqOf.get(k) ?? e.seq).toBe(e.seq);
        seqOf.set(k, e.seq);
      }
    // Timestamps are strictly increasing with seq.
    const ts = clients[0]!.envelopes().map((e) => e.ts);
    for (let i = 1; i < ts.length; i++) expect(ts[i]!).toBeGreaterThan(ts[i - 1]!);
    for (const c of clients) c.close();
  });

  it('a DO restarted mid-stream continues the sequence and loses nothing', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    let a = await connect(conv, alice.devices[0]!);
    let b = await connect(conv, bob.devices[0]!);
    for (let i = 1; i <= 20; i++) a.send(group(`m${i}`));
    await b.until((x) => x.envelopes().length === 20);
    b.ack(10); // bob processed 1..10 only
    await a.until((x) => x.frames.filter((f) => f.type === 'accepted').length === 20);
    const lastTs = b.envelopes()[19]!.ts;

    await abortAllDurableObjects();
    await a.waitClosed().catch(() => undefined);
    a = await connect(conv, alice.devices[0]!, 20);
    b = await connect(conv, bob.devices[0]!, 10); // resume from what it processed
    expect(seqs(b)).toEqual(range(11, 20));
    for (let i = 21; i <= 40; i++) a.send(group(`m${i}`));
    await b.until((x) => x.envelopes().length === 30);
    await a.until((x) => x.frames.filter((f) => f.type === 'accepted').length === 20);
    expect(seqs(b)).toEqual(range(11, 40));
    expect(b.envelopes()[10]!.ts).toBeGreaterThan(lastTs);
    const accepted = a.frames.flatMap((f) => (f.type === 'accepted' ? [f.seq] : []));
    expect(accepted).toEqual(range(21, 40));
    a.close();
    b.close();
  });
});

describe('delivery: idempotency and acknowledgements', () => {
  it('the same client message id twice answers the original seq and delivers once', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    const b = await connect(conv, bob.devices[0]!);
    a.send(group('same'));
    a.send(group('same')); // concurrent retry
    await a.until((x) => x.frames.filter((f) => f.type === 'accepted').length === 2);
    const acc = a.frames.filter((f) => f.type === 'accepted');
    expect(acc.map((f) => f.seq)).toEqual([1, 1]);
    expect(acc.filter((f) => f.duplicate).length).toBe(1);
    // A later retry (after reconnecting) too.
    const again = await a.sendAndWait(group('same'));
    expect(again).toMatchObject({ type: 'accepted', seq: 1, duplicate: true });
    await a.sendAndWait(group('next'));
    await b.until((x) => x.envelopes().length === 2);
    expect(seqs(b)).toEqual([1, 2]);
    a.close();
    b.close();
  });

  it('a device that drops before acking gets the envelope again; after an ack it does not', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    let b = await connect(conv, bob.devices[0]!);
    await a.sendAndWait(group('m1'));
    await b.until((x) => x.envelopes().length === 1);
    b.close(); // dropped before acking
    await flushAll(conv);
    b = await connect(conv, bob.devices[0]!, 0);
    expect(seqs(b)).toEqual([1]);
    b.ack(1);
    await a.sendAndWait(group('m2'));
    await b.until((x) => x.envelopes().length === 2);
    b.ack(2);
    await b.resume(2); // round trip: the ack reached the object before the socket closes (else it may not have)
    await waitForCursor(conv, bob.userId, 'd0', 2);
    b.close();
    await flushAll(conv);
    b = await connect(conv, bob.devices[0]!, 0);
    expect(seqs(b)).toEqual([]);
    expect(await mailboxRows(bob.userId, 'd0')).toEqual([]);
    a.close();
    b.close();
  });

  it('envelopes acknowledged before the flush never reach D1', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    const b = await connect(conv, bob.devices[0]!);
    for (let i = 1; i <= 5; i++) await a.sendAndWait(group(`m${i}`));
    await b.until((x) => x.envelopes().length === 5);
    b.ack(5);
    await b.resume(5); // a round trip: the ack was processed
    await flushAll(conv);
    expect(await mailboxRows(bob.userId, 'd0')).toEqual([]);
    expect((await db().select().from(schema.groupEnvelopes).all()).filter((g) => g.conversationId === conv)).toEqual(
      [],
    );
    a.close();
    b.close();
  });
});

describe('delivery: offline devices and resume', () => {
  it('an offline device receives everything via its mailbox, in order, after the alarm flushed', async () => {
    const alice = await makeUser('alice', 2);
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const conv2 = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    const a2 = await connect(conv2, alice.devices[0]!);
    const sent: string[] = [];
    for (let i = 1; i <= 30; i++) {
      if (i % 3 === 0) {
        const c = fakeCiphertext(40);
        const to = [
          { u: bob.userId, d: 'd0', c },
          { u: alice.userId, d: 'd1', c: fakeCiphertext(40) },
        ];
        expect(await a.sendAndWait({ v: WIRE_VERSION, type: 'send', id: `m${i}`, to })).toMatchObject({ seq: i });
        sent.push(c);
      } else {
        const c = fakeCiphertext(40);
        expect(await a.sendAndWait(group(`m${i}`, c))).toMatchObject({ seq: i });
        sent.push(c);
      }
    }
    await a2.sendAndWait({
      v: WIRE_VERSION,
      type: 'receipt',
      id: 'r1',
      status: 'read',
      group: fakeCiphertext(),
    });
    expect(await mailboxRows(bob.userId, 'd0')).toEqual([]); // nothing in D1 before the flush
    await flushAll(conv);
    await flushAll(conv2);

    const token = bob.devices[0]!.token;
    const got: (Envelope & { conversationId: string })[] = [];
    let q = '?limit=7';
    for (let page = 0; page < 10; page++) {
      const p = await mailboxPage(token, q);
      got.push(...p.envelopes);
      if (!p.next) break;
      q = `?limit=7&afterConversation=${p.next.afterConversation}&afterSeq=${p.next.afterSeq}`;
    }
    expect(got.length).toBe(31);
    const keys = got.map((e) => `${e.conversationId}:${String(e.seq).padStart(4, '0')}`);
    expect(keys).toEqual([...keys].sort());
    const inConv = got.filter((e) => e.conversationId === conv);
    expect(inConv.map((e) => e.seq)).toEqual(range(1, 30));
    expect(inConv.map((e) => e.c)).toEqual(sent);
    expect(inConv[2]).toMatchObject({ mode: 'pairwise', kind: 'message', from: { u: alice.userId, d: 'd0' } });
    expect(inConv[0]).toMatchObject({ mode: 'group' });
    expect(got.find((e) => e.conversationId === conv2)).toMatchObject({ kind: 'receipt', status: 'read', seq: 1 });
    // A group ciphertext is stored once, not once per recipient device.
    const groupRows = await db().select().from(schema.groupEnvelopes).all();
    expect(groupRows.filter((g) => g.conversationId === conv).length).toBe(20);

    const ack = await api('/api/mailbox/ack', token, {
      method: 'POST',
      json: {
        acks: [
          { conversationId: conv, upTo: 30 },
          { conversationId: conv2, upTo: 1 },
        ],
      },
    });
    expect(ack.status).toBe(204);
    expect((await mailboxPage(token)).envelopes).toEqual([]);
    // Alice's other device still has its own (pairwise + group) envelopes.
    expect((await mailboxPage(alice.devices[1]!.token)).envelopes.length).toBe(31);
    a.close();
    a2.close();
  });

  it('acking a conversation the caller is not a member of (or that does not exist) creates no conversation DO', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const theirs = await makeConversation([bob]);
    const before = (await listDurableObjectIds(env.CONVERSATION)).map((id) => id.toString());
    const ack = await api('/api/mailbox/ack', alice.devices[0]!.token, {
      method: 'POST',
      json: {
        acks: [
          { conversationId: 'never_created_conversation', upTo: 5 },
          { conversationId: theirs, upTo: 1 },
        ],
      },
    });
    expect(ack.status).toBe(204);
    const after = (await listDurableObjectIds(env.CONVERSATION)).map((id) => id.toString());
    for (const conv of ['never_created_conversation', theirs]) {
      const id = env.CONVERSATION.idFromName(conv).toString();
      expect(before.includes(id) || after.includes(id)).toBe(false);
    }
  });

  it('resume after a disconnect replays exactly the missed envelopes in order, then goes live', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    let b = await connect(conv, bob.devices[0]!);
    for (let i = 1; i <= 3; i++) await a.sendAndWait(group(`m${i}`));
    await b.until((x) => x.envelopes().length === 3);
    b.ack(3);
    b.close();
    for (let i = 4; i <= 8; i++) await a.sendAndWait(group(`m${i}`));
    const res = await connect(conv, bob.devices[0]!, 3);
    b = res;
    expect(seqs(b)).toEqual(range(4, 8));
    expect(b.frames.find((f) => f.type === 'resume')).toMatchObject({ after: 3, through: 8, more: false });
    await a.sendAndWait(group('m9'));
    await b.until((x) => x.envelopes().length === 6);
    expect(seqs(b)).toEqual(range(4, 9));
    a.close();
    b.close();
  });

  it('a socket gets no live envelopes before its first resume (so replay and live never interleave)', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    const { ticket, upgrade, Client: C } = await import('./test/delivery-fixtures.js');
    const res = await upgrade(conv, await ticket(conv, bob.devices[0]!));
    res.webSocket!.accept();
    const b = new C(res.webSocket!, bob.devices[0]!);
    await a.sendAndWait(group('m1'));
    await a.sendAndWait(group('m2'));
    expect(b.envelopes()).toEqual([]);
    await b.resume(0);
    expect(seqs(b)).toEqual([1, 2]);
    await a.sendAndWait(group('m3'));
    await b.until((x) => x.envelopes().length === 3);
    a.close();
    b.close();
  });

  it('resume below the DO retention reads the D1 mailbox, then the DO log', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    for (let i = 1; i <= 4; i++) await a.sendAndWait(group(`m${i}`));
    await flushAll(conv);
    // Prune as if the retention had passed: the DO forgets 1..4 (they are in D1).
    await runInDurableObject(conversationStub(conv), (inst) => {
      (inst as unknown as { store: DeliveryStore }).store.prune(Date.now() + 1);
    });
    for (let i = 5; i <= 6; i++) await a.sendAndWait(group(`m${i}`));
    const b = await connect(conv, bob.devices[0]!, 1);
    expect(seqs(b)).toEqual(range(2, 6));
    a.close();
    b.close();
  });
});

describe('delivery: D1 rows with nothing deliverable', () => {
  it('a mailbox row whose group envelope is gone ends neither a mailbox page nor a resume early', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    for (let i = 1; i <= 4; i++) await a.sendAndWait(group(`m${i}`));
    await flushAll(conv);
    // The group ciphertext of seq 1 is gone, its mailbox row not (e.g. an expiry that stopped half-way).
    await db()
      .delete(schema.groupEnvelopes)
      .where(and(eq(schema.groupEnvelopes.conversationId, conv), eq(schema.groupEnvelopes.seq, 1)));
    const token = bob.devices[0]!.token;
    const page = await mailboxPage(token, '?limit=2');
    expect(page.envelopes.map((e) => e.seq)).toEqual([2, 3]);
    expect(page.next).toEqual({ afterConversation: conv, afterSeq: 3 });
    // Resume below the DO's retention, two envelopes at a time: 3 and 4 are not skipped.
    await runInDurableObject(conversationStub(conv), (inst) => {
      (inst as unknown as { store: DeliveryStore }).store.prune(Date.now() + 1);
      (inst as unknown as { cfg: { resumeMaxEnvelopes: number } }).cfg.resumeMaxEnvelopes = 2;
    });
    for (let i = 5; i <= 6; i++) await a.sendAndWait(group(`m${i}`));
    const b = await connect(conv, bob.devices[0]!, 0);
    for (let i = 0; i < 5; i++) {
      const last = b.frames.filter((f) => f.type === 'resume').at(-1) as { through: number; more: boolean };
      if (!last.more) break;
      await b.resume(last.through);
    }
    expect(seqs(b)).toEqual(range(2, 6));
    a.close();
    b.close();
  });
});

describe('delivery: device set', () => {
  it('a pairwise send matches only when it addresses exactly the live member devices other than the sender', () => {
    // alice (d0 sends, d1), bob (d0, d1 revoked), carol (d0, no longer a member).
    const set: DeviceSet = {
      members: new Map([
        ['alice', 'owner'],
        ['bob', 'member'],
      ]),
      live: new Map([
        ['alice', new Set(['d0', 'd1'])],
        ['bob', new Set(['d0'])],
        ['carol', new Set(['d0'])],
      ]),
      revoked: new Map([
        ['alice', new Set<string>()],
        ['bob', new Set(['d1'])],
      ]),
      loadedAt: 0,
      timerMs: 0,
    };
    const sender = { u: 'alice', d: 'd0' };
    const universe = [
      sender,
      { u: 'alice', d: 'd1' },
      { u: 'bob', d: 'd0' },
      { u: 'bob', d: 'd1' },
      { u: 'carol', d: 'd0' },
    ];
    const key = (r: { u: string; d: string }) => `${r.u}/${r.d}`;
    const expected = ['alice/d1', 'bob/d0'];
    // Every set of distinct devices, in both orders: null exactly for the expected set, else what differs.
    for (let mask = 0; mask < 1 << universe.length; mask++) {
      const picked = universe.filter((_, i) => mask & (1 << i));
      for (const addressed of [picked, [...picked].reverse()]) {
        const got = compareAddressed(set, sender, addressed);
        const keys = addressed.map(key);
        const exact = keys.length === expected.length && expected.every((k) => keys.includes(k));
        if (exact) {
          expect(got).toBeNull();
          continue;
        }
        expect(got).not.toBeNull();
        expect(got!.missing.map(key).sort()).toEqual(expected.filter((k) => !keys.includes(k)).sort());
        expect(got!.stale.map(key)).toEqual(keys.filter((k) => k === 'bob/d1'));
        expect(got!.extra.map(key).sort()).toEqual(keys.filter((k) => !expected.includes(k) && k !== 'bob/d1').sort());
      }
    }
  });

  it('device-set mismatch lists missing, extra and stale (revoked) devices', async () => {
    const alice = await makeUser('alice', 2);
    const bob = await makeUser('bob', 2);
    const carol = await makeUser('carol');
    const conv = await makeConversation([alice, bob]);
    await markDeviceRevoked(bob.userId, 'd1');
    const a = await connect(conv, alice.devices[0]!);
    const to = (refs: [string, string][]) => refs.map(([u, d]) => ({ u, d, c: fakeCiphertext(16) }));
    const r = await a.sendAndWait({
      v: WIRE_VERSION,
      type: 'send',
      id: 'x1',
      to: to([
        [bob.userId, 'd0'],
        [bob.userId, 'd1'],
        [carol.userId, 'd0'],
      ]),
    });
    expect(r).toMatchObject({
      type: 'error',
      code: 'device_mismatch',
      id: 'x1',
      missing: [{ u: alice.userId, d: 'd1' }],
      extra: [{ u: carol.userId, d: 'd0' }],
      stale: [{ u: bob.userId, d: 'd1' }],
    });
    // Addressing the sender's own device is "extra" too.
    const own = await a.sendAndWait({
      v: WIRE_VERSION,
      type: 'send',
      id: 'x2',
      to: to([
        [bob.userId, 'd0'],
        [alice.userId, 'd1'],
        [alice.userId, 'd0'],
      ]),
    });
    expect(own).toMatchObject({
      code: 'device_mismatch',
      extra: [{ u: alice.userId, d: 'd0' }],
      missing: [],
      stale: [],
    });
    const ok = await a.sendAndWait({
      v: WIRE_VERSION,
      type: 'send',
      id: 'x3',
      to: to([
        [bob.userId, 'd0'],
        [alice.userId, 'd1'],
      ]),
    });
    expect(ok).toMatchObject({ type: 'accepted', seq: 1 });
    a.close();
  });

  it('a device added after the cache was filled is accepted after one refresh', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    await a.sendAndWait(group('m1')); // cache filled
    await addDevice(bob.userId, 'd9');
    await conversationStub(conv).devicesChanged(bob.userId);
    const r = await a.sendAndWait({
      v: WIRE_VERSION,
      type: 'send',
      id: 'm2',
      to: [
        { u: bob.userId, d: 'd0', c: fakeCiphertext() },
        { u: bob.userId, d: 'd9', c: fakeCiphertext() },
      ],
    });
    expect(r).toMatchObject({ type: 'accepted', seq: 2 });
    a.close();
  });

  it('per-device send rate limit: a burst over the bucket gets exactly the burst accepted, the rest rate_limited, and a client honouring retryAfterMs sends again on the same socket', async () => {
    const { sendBurst, sendPerSec } = deliveryConfig(env.DELIVERY_LIMITS);
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    // The bucket's refill during the burst is pinned near zero (one token per 100 s), so how many are accepted
    // does not depend on how fast this machine runs the burst: exactly the burst, the rest refused.
    const setRate = (perSec: number) =>
      runInDurableObject(conversationStub(conv), (inst) => {
        const o = inst as unknown as { cfg: { sendPerSec: number } };
        o.cfg = { ...o.cfg, sendPerSec: perSec };
      });
    await setRate(0.01);
    const n = sendBurst + 40;
    for (let i = 0; i < n; i++) a.send(group(`b${i}`));
    await a.until((x) => x.frames.filter((f) => f.type === 'accepted' || f.type === 'error').length === n);
    const accepted = a.frames.filter((f) => f.type === 'accepted');
    const limited = a.frames.filter((f) => f.type === 'error') as {
      code?: string;
      id?: string;
      retryAfterMs?: number;
    }[];
    expect(accepted.length).toBe(sendBurst);
    expect(limited.map((f) => f.code)).toEqual(Array(n - sendBurst).fill('rate_limited'));
    // Every refusal names its frame and says how long to wait (at 0.01/s: most of 100 s).
    expect(new Set(limited.map((f) => f.id)).size).toBe(n - sendBurst);
    expect(limited.every((f) => (f.retryAfterMs ?? 0) > 50_000)).toBe(true);

    // Back at the configured rate, a client that waits what it is told gets its next send accepted, on the
    // same socket, at the latest on its first retry.
    await setRate(sendPerSec);
    let answer = await a.sendAndWait(group('after'));
    if (answer.type === 'error') {
      expect(answer).toMatchObject({ code: 'rate_limited', id: 'after' });
      const wait = (answer as { retryAfterMs: number }).retryAfterMs;
      expect(wait).toBeGreaterThan(0);
      expect(wait).toBeLessThanOrEqual(Math.ceil(1000 / sendPerSec));
      await new Promise((r) => setTimeout(r, wait + 50));
      answer = await a.sendAndWait(group('after'));
    }
    expect(answer).toMatchObject({ type: 'accepted', seq: sendBurst + 1 });
    a.close();
  });

  it('a retry of an accepted message gets its original seq even when a new send would be refused, and costs no token', async () => {
    const { sendBurst } = deliveryConfig(env.DELIVERY_LIMITS);
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    const b = await connect(conv, bob.devices[0]!);
    const toBob = [{ u: bob.userId, d: bob.devices[0]!.deviceId, c: fakeCiphertext() }];
    expect(await a.sendAndWait(group('g1'))).toMatchObject({ type: 'accepted', seq: 1 });
    expect(await a.sendAndWait({ v: WIRE_VERSION, type: 'send', id: 'p2', to: toBob })).toMatchObject({
      type: 'accepted',
      seq: 2,
    });
    await b.until((x) => x.envelopes().length === 2);

    // Retries that pass every check are found by the group commit (one lookup per sender per batch): they
    // are answered with their seq, and each gives its token back.
    const tokens = () =>
      runInDurableObject(conversationStub(conv), (inst) => {
        const buckets = (inst as unknown as { buckets: Map<string, { tokens: number }> }).buckets;
        return [...buckets.values()][0]!.tokens;
      });
    const before = await tokens();
    const retries = 20;
    for (let i = 0; i < retries; i++) a.send(group(i % 2 ? 'g1' : 'g-new'));
    await a.until((x) => x.frames.filter((f) => f.type === 'accepted').length === 2 + retries);
    // Answers carry the client id (their order on the socket is not part of the contract).
    const answers = a.frames.flatMap((f) => (f.type === 'accepted' && f.seq !== 2 ? [f] : [])).slice(1);
    expect(answers.filter((f) => f.id === 'g1').map((f) => f.seq)).toEqual(Array(retries / 2).fill(1));
    expect(answers.filter((f) => f.id === 'g-new').map((f) => f.seq)).toEqual(Array(retries / 2).fill(3));
    expect(answers.filter((f) => f.duplicate).length).toBe(retries - 1);
    // Only 'g-new' spent a token (refill only adds, up to the burst).
    expect(await tokens()).toBeGreaterThanOrEqual(Math.min(sendBurst, before) - 1);

    // Bob has a new device: a retry addressed to the old device set is not a device_mismatch.
    await addDevice(bob.userId, 'd9');
    await conversationStub(conv).devicesChanged(bob.userId);
    expect(await a.sendAndWait({ v: WIRE_VERSION, type: 'send', id: 'p2', to: toBob })).toMatchObject({
      type: 'accepted',
      seq: 2,
      duplicate: true,
    });
    // A new send with that list is refused.
    const fresh = await a.sendAndWait({ v: WIRE_VERSION, type: 'send', id: 'p-new', to: toBob });
    expect(fresh).toMatchObject({ type: 'error' });
    expect((fresh as { code: string }).code).toBe('device_mismatch');

    // Over the rate limit: the retry is still answered with its seq (a new send is refused).
    for (let i = 0; i < sendBurst + 140; i++) a.send(group(`flood${i}`));
    await a.until((x) => x.frames.some((f) => f.type === 'error' && f.code === 'rate_limited'));
    expect(await a.sendAndWait(group('g1'))).toMatchObject({ type: 'accepted', seq: 1, duplicate: true });
    a.close();
    b.close();
  });
});
