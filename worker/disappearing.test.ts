/**
 * Disappearing messages on the server (issue 17): the mailbox TTL never outlives the conversation's timer.
 * Envelopes older than the timer leave the ConversationDO's store and the D1 mailbox (rows and group
 * envelopes) — by the DO's alarm, and by the hourly clean-up as the net behind it — and are never served.
 * Ages are made by moving stored timestamps back (the timer's minimum is 5 minutes).
 */
import {
  createExecutionContext,
  createScheduledController,
  runDurableObjectAlarm,
  runInDurableObject,
  waitOnExecutionContext,
} from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { eq, sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { type Envelope, WIRE_VERSION } from '../schema/wire.js';
import { schema } from './db.js';
import { DELIVERY_DEFAULTS } from './delivery/config.js';
import worker from './index.js';
import {
  api,
  connect,
  conversationStub,
  db,
  fakeCiphertext,
  flushOutbox,
  mailboxRows,
  makeConversation,
  makeUser,
  type TestMember,
} from './test/delivery-fixtures.js';

const TIMER_S = 300;
const TEN_MIN = 10 * 60_000;
const group = (id: string) => ({ v: WIRE_VERSION, type: 'send', id, group: fakeCiphertext() });
const pairwise = (id: string, to: TestMember) => ({
  v: WIRE_VERSION,
  type: 'send',
  id,
  to: [{ u: to.userId, d: to.devices[0]!.deviceId, c: fakeCiphertext() }],
});

const setTimer = (conv: string, seconds: number) =>
  db().update(schema.conversations).set({ timerSeconds: seconds }).where(eq(schema.conversations.id, conv));

/** Moves every stored timestamp of the conversation `ms` into the past: the DO log and the D1 mailbox. */
async function age(conv: string, ms: number, { inDo = true } = {}) {
  if (inDo) {
    await runInDurableObject(conversationStub(conv), (_i, state) => {
      state.storage.sql.exec('UPDATE log SET ts = ts - ?', ms);
    });
  }
  await db()
    .update(schema.mailbox)
    .set({ ts: sql`${schema.mailbox.ts} - ${ms}`, expiresAt: sql`${schema.mailbox.expiresAt} - ${ms}` })
    .where(eq(schema.mailbox.conversationId, conv));
  await db()
    .update(schema.groupEnvelopes)
    .set({ expiresAt: sql`${schema.groupEnvelopes.expiresAt} - ${ms}` })
    .where(eq(schema.groupEnvelopes.conversationId, conv));
}

const groupEnvelopeSeqs = async (conv: string) =>
  (await db().select().from(schema.groupEnvelopes).where(eq(schema.groupEnvelopes.conversationId, conv)).all()).map(
    (g) => g.seq,
  );

const doCiphertexts = (conv: string) =>
  runInDurableObject(conversationStub(conv), (_i, state) => ({
    pairwise: state.storage.sql
      .exec<{ seq: number }>('SELECT seq FROM pairwise ORDER BY seq')
      .toArray()
      .map((r) => r.seq),
    group: state.storage.sql
      .exec<{ seq: number }>('SELECT seq FROM log WHERE group_c IS NOT NULL ORDER BY seq')
      .toArray()
      .map((r) => r.seq),
  }));

/**
 * Runs the object's alarm until `done()` holds (an alarm due now may also run on its own meanwhile; the
 * sweep finishes within either), at most 50 rounds.
 */
async function alarmsUntil(conv: string, done: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 50 && !(await done()); i++) {
    if (!(await runDurableObjectAlarm(conversationStub(conv)))) await new Promise((r) => setTimeout(r, 50));
  }
}

async function mailboxSeqs(member: TestMember, conv: string): Promise<number[]> {
  const res = await api('/api/mailbox', member.devices[0]!.token);
  expect(res.status).toBe(200);
  const body = (await res.json()) as { envelopes: (Envelope & { conversationId: string })[] };
  return body.envelopes.filter((e) => e.conversationId === conv).map((e) => e.seq);
}

describe('disappearing messages: the server keeps no envelope past the timer (issue 17)', () => {
  it('envelopes older than the timer leave the DO store and the D1 mailbox; newer ones stay and are delivered', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    await setTimer(conv, TIMER_S);
    const a = await connect(conv, alice.devices[0]!);
    expect(await a.sendAndWait(group('m1'))).toMatchObject({ type: 'accepted', seq: 1 });
    expect(await a.sendAndWait(pairwise('m2', bob))).toMatchObject({ type: 'accepted', seq: 2 });
    await flushOutbox(conv);
    // Written to D1 with the timer as their lifetime, not the 30-day TTL.
    const rows = await mailboxRows(bob.userId, 'd0');
    expect(rows.map((r) => r.seq)).toEqual([1, 2]);
    for (const r of rows) expect(r.expiresAt - r.ts).toBe(TIMER_S * 1000);

    await age(conv, TEN_MIN);
    expect(await a.sendAndWait(group('m3'))).toMatchObject({ type: 'accepted', seq: 3 });
    await alarmsUntil(conv, async () => (await doCiphertexts(conv)).group[0] === 3);

    expect(await doCiphertexts(conv)).toEqual({ pairwise: [], group: [3] });
    await flushOutbox(conv);
    expect((await mailboxRows(bob.userId, 'd0')).map((r) => r.seq)).toEqual([3]);
    expect(await groupEnvelopeSeqs(conv)).toEqual([3]);
    expect(await mailboxSeqs(bob, conv)).toEqual([3]);
    const b = await connect(conv, bob.devices[0]!);
    expect(b.envelopes().map((e) => e.seq)).toEqual([3]);
    // A retry of an expired message is still recognised (the log row stays without its ciphertext).
    expect(await a.sendAndWait(group('m1'))).toMatchObject({ type: 'accepted', seq: 1, duplicate: true });
    a.close();
    b.close();
  });

  it('a timer set later sweeps what D1 already holds with the 30-day TTL once the conversation object learns it', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    await a.sendAndWait(group('m1'));
    await a.sendAndWait(pairwise('m2', bob));
    await flushOutbox(conv);
    const rows = await mailboxRows(bob.userId, 'd0');
    expect(rows.map((r) => r.expiresAt - r.ts)).toEqual([
      DELIVERY_DEFAULTS.mailboxTtlMs,
      DELIVERY_DEFAULTS.mailboxTtlMs,
    ]);
    await age(conv, TEN_MIN);
    // The set_timer entry's route writes the timer and tells the object (membershipChanged reloads the set).
    await setTimer(conv, TIMER_S);
    await conversationStub(conv).membershipChanged('', []);
    await alarmsUntil(conv, async () => (await mailboxRows(bob.userId, 'd0')).length === 0);
    expect(await mailboxRows(bob.userId, 'd0')).toEqual([]);
    expect(await groupEnvelopeSeqs(conv)).toEqual([]);
    expect(await doCiphertexts(conv)).toEqual({ pairwise: [], group: [] });
    a.close();
  });

  it('the hourly clean-up deletes envelopes older than their conversation timer even if the object never ran', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const other = await makeConversation([alice, bob]);
    for (const c of [conv, other]) {
      const a = await connect(c, alice.devices[0]!);
      await a.sendAndWait(group('m1'));
      await a.sendAndWait(pairwise('m2', bob));
      await flushOutbox(c);
      a.close();
      await age(c, TEN_MIN, { inDo: false });
    }
    await setTimer(conv, TIMER_S); // D1 only: the object is not told
    // Expired rows are never served, even before any clean-up ran.
    expect(await mailboxSeqs(bob, conv)).toEqual([]);
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ cron: '17 * * * *' }), env, ctx);
    await waitOnExecutionContext(ctx);
    const left = await mailboxRows(bob.userId, 'd0');
    expect(left.filter((r) => r.conversationId === conv)).toEqual([]);
    expect(await groupEnvelopeSeqs(conv)).toEqual([]);
    // A conversation without a timer keeps its envelopes for the mailbox TTL.
    expect(left.filter((r) => r.conversationId === other).map((r) => r.seq)).toEqual([1, 2]);
    expect(await groupEnvelopeSeqs(other)).toEqual([1]);
    expect(await mailboxSeqs(bob, other)).toEqual([1, 2]);
  });
});
