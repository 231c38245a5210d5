import {
  createExecutionContext,
  createScheduledController,
  runInDurableObject,
  waitOnExecutionContext,
} from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { and, eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { CLOSE, WIRE_VERSION } from '../schema/wire.js';
import { schema } from './db.js';
import { ticketHash } from './delivery/tickets.js';
import worker from './index.js';
import {
  addDevice,
  api,
  connect,
  conversationStub,
  db,
  fakeCiphertext,
  flushOutbox,
  mailboxRows,
  makeConversation,
  makeUser,
  markDeviceRevoked,
  ticket,
  upgrade,
} from './test/delivery-fixtures.js';

const group = (id: string) => ({ v: WIRE_VERSION, type: 'send', id, group: fakeCiphertext() });
const errCode = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;
const sockets = (conv: string) =>
  runInDurableObject(conversationStub(conv), (_i, state) => state.getWebSockets().length);

const flush = flushOutbox;

describe('pitfall 21: a conversation WebSocket only for an authenticated device of a current member', () => {
  it('no, malformed, unknown, expired, reused and other-conversation tickets are refused before the DO', async () => {
    const alice = await makeUser('alice');
    const conv = await makeConversation([alice]);
    const other = await makeConversation([alice]);
    const dev = alice.devices[0]!;

    const none = await upgrade(conv, null);
    expect([none.status, await errCode(none)]).toEqual([401, 'ticket_required']);
    const junk = await upgrade(conv, 'not-a-ticket');
    expect([junk.status, await errCode(junk)]).toEqual([401, 'invalid_ticket']);
    const unknown = await upgrade(conv, 'A'.repeat(43));
    expect(unknown.status).toBe(401);

    // Expired: a real ticket row whose expiry has passed.
    const expired = 'E'.repeat(43);
    await db()
      .insert(schema.wsTickets)
      .values({
        ticketHash: ticketHash(env, expired),
        userId: alice.userId,
        deviceId: dev.deviceId,
        familyId: 'fam_expired',
        conversationId: conv,
        expiresAt: Date.now() - 1,
      });
    const exp = await upgrade(conv, expired);
    expect([exp.status, await errCode(exp)]).toEqual([401, 'invalid_ticket']);

    // Reused: the first upgrade consumes it.
    const t = await ticket(conv, dev);
    const first = await upgrade(conv, t);
    expect(first.status).toBe(101);
    first.webSocket!.accept();
    const again = await upgrade(conv, t);
    expect([again.status, await errCode(again)]).toEqual([401, 'invalid_ticket']);
    first.webSocket!.close(1000);

    // Minted for another conversation (and consumed by the attempt).
    const t2 = await ticket(other, dev);
    const wrong = await upgrade(conv, t2);
    expect([wrong.status, await errCode(wrong)]).toEqual([401, 'invalid_ticket']);
    expect((await upgrade(other, t2)).status).toBe(401);
    expect(await sockets(other)).toBe(0);

    // A JWT is never accepted on the upgrade.
    const jwt = await upgrade(conv, dev.token);
    expect(jwt.status).toBe(401);
    // Only the hash is stored.
    const t3 = await ticket(conv, dev);
    const rows = JSON.stringify(await db().select().from(schema.wsTickets).all());
    expect(rows.includes(t3)).toBe(false);
  });

  it('a ticket authenticates only the device that minted it', async () => {
    const alice = await makeUser('alice', 2);
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a1 = await connect(conv, alice.devices[1]!);
    const b = await connect(conv, bob.devices[0]!);
    await a1.sendAndWait(group('m1'));
    await b.until((x) => x.envelopes().length === 1);
    expect(b.envelopes()[0]!.from).toEqual({ u: alice.userId, d: 'd1' });
    a1.close();
    b.close();
  });

  it('non-members cannot mint tickets; a member removed or a device revoked after minting is refused', async () => {
    const alice = await makeUser('alice', 2);
    const bob = await makeUser('bob');
    const mallory = await makeUser('mallory');
    const conv = await makeConversation([alice, bob]);
    const noAuth = await api(`/api/conversations/${conv}/ticket`, null, { method: 'POST' });
    expect(noAuth.status).toBe(401);
    const m = await api(`/api/conversations/${conv}/ticket`, mallory.devices[0]!.token, { method: 'POST' });
    expect([m.status, await errCode(m)]).toEqual([403, 'not_member']);

    const tb = await ticket(conv, bob.devices[0]!);
    await db()
      .delete(schema.members)
      .where(and(eq(schema.members.conversationId, conv), eq(schema.members.userId, bob.userId)));
    const removed = await upgrade(conv, tb);
    expect([removed.status, await errCode(removed)]).toEqual([403, 'not_member']);

    const ta = await ticket(conv, alice.devices[1]!);
    await markDeviceRevoked(alice.userId, 'd1');
    const revoked = await upgrade(conv, ta);
    expect([revoked.status, await errCode(revoked)]).toEqual([403, 'not_member']);
    expect(await sockets(conv)).toBe(0);
  });
});

describe('sign-out ends conversation WebSockets', () => {
  it('sign-out closes the session open sockets (4403) and a ticket minted before it is refused at the upgrade', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const bobOther = await addDevice(bob.userId, 'd1');
    const a = await connect(conv, alice.devices[0]!);
    const b1 = await connect(conv, bobOther);
    const early = await ticket(conv, alice.devices[0]!);

    const out = await api('/api/auth/logout', alice.devices[0]!.token, { method: 'POST' });
    expect(out.status).toBe(200);
    expect((await a.waitClosed()).code).toBe(CLOSE.forbidden);
    const up = await upgrade(conv, early);
    expect([up.status, await errCode(up)]).toEqual([401, 'session_revoked']);
    expect(b1.closed).toBeNull(); // another user's socket is untouched

    // sessions/revoke of bob's other device closes that device's socket.
    const rv = await api('/api/auth/sessions/revoke', bob.devices[0]!.token, {
      method: 'POST',
      json: { deviceId: 'd1' },
    });
    expect(rv.status).toBe(200);
    expect((await b1.waitClosed()).code).toBe(CLOSE.forbidden);
    expect(await sockets(conv)).toBe(0);
  });
});

describe('membership changes and revocation', () => {
  it('a removed member is closed with 4403, receives nothing afterwards, and the rest get the membership frame', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const carol = await makeUser('carol');
    const conv = await makeConversation([alice, bob, carol]);
    const a = await connect(conv, alice.devices[0]!);
    const b = await connect(conv, bob.devices[0]!);
    const c = await connect(conv, carol.devices[0]!);
    await a.sendAndWait(group('before'));
    await b.until((x) => x.envelopes().length === 1);

    await db()
      .delete(schema.members)
      .where(and(eq(schema.members.conversationId, conv), eq(schema.members.userId, bob.userId)));
    const closed = await conversationStub(conv).membershipChanged('c2lnbmVkLWVudHJ5', [bob.userId]);
    expect(closed).toBe(1);
    expect((await b.waitClosed()).code).toBe(CLOSE.forbidden);
    const mf = await c.next('membership');
    expect(mf).toMatchObject({ entry: 'c2lnbmVkLWVudHJ5', removed: [bob.userId], afterSeq: 1 });
    expect(b.frames.some((f) => f.type === 'membership')).toBe(false);

    await a.sendAndWait(group('after'));
    await c.until((x) => x.envelopes().length === 2);
    expect(b.envelopes().length).toBe(1);
    await flush(conv);
    expect((await mailboxRows(bob.userId, 'd0')).map((r) => r.seq)).toEqual([1]); // unacked from before only
    // A pairwise send still addressing bob is refused: bob is no longer a recipient.
    const r = await a.sendAndWait({
      v: WIRE_VERSION,
      type: 'send',
      id: 'pw',
      to: [
        { u: bob.userId, d: 'd0', c: fakeCiphertext() },
        { u: carol.userId, d: 'd0', c: fakeCiphertext() },
      ],
    });
    expect(r).toMatchObject({ code: 'device_mismatch', extra: [{ u: bob.userId, d: 'd0' }] });
    a.close();
    c.close();
  });

  it('a member removed while the membershipChanged notification was lost stops sending and receiving once the cached set is older than deviceSetTtlMs', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    const b = await connect(conv, bob.devices[0]!);
    await a.sendAndWait(group('warm')); // the DO caches the member/device set
    await b.until((x) => x.envelopes().length === 1);

    // Bob is removed in D1 but the RPC never reaches the DO (best-effort notification failed).
    await db()
      .delete(schema.members)
      .where(and(eq(schema.members.conversationId, conv), eq(schema.members.userId, bob.userId)));
    // The cached set ages past the TTL.
    await runInDurableObject(conversationStub(conv), (inst) => {
      const i = inst as unknown as { deviceSet: { loadedAt: number } | null; cfg: { deviceSetTtlMs: number } };
      if (i.deviceSet) i.deviceSet.loadedAt = Date.now() - i.cfg.deviceSetTtlMs - 1;
    });

    await a.sendAndWait(group('after-removal'));
    expect((await b.waitClosed()).code).toBe(CLOSE.forbidden);
    expect(b.envelopes().map((e) => e.id)).toEqual(['warm']);
    await flush(conv);
    expect((await mailboxRows(bob.userId, 'd0')).map((r) => r.seq)).toEqual([1]);
    a.close();
  });

  it('a removed member whose notification was lost is refused on resume once the cached set is older than deviceSetTtlMs', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    const b = await connect(conv, bob.devices[0]!);
    await a.sendAndWait(group('warm'));
    await b.until((x) => x.envelopes().length === 1);
    await db()
      .delete(schema.members)
      .where(and(eq(schema.members.conversationId, conv), eq(schema.members.userId, bob.userId)));
    await runInDurableObject(conversationStub(conv), (inst) => {
      const i = inst as unknown as { deviceSet: { loadedAt: number } | null; cfg: { deviceSetTtlMs: number } };
      if (i.deviceSet) i.deviceSet.loadedAt = Date.now() - i.cfg.deviceSetTtlMs - 1;
    });
    b.send({ v: WIRE_VERSION, type: 'resume', after: 0 });
    expect((await b.waitClosed()).code).toBe(CLOSE.forbidden);
    expect(b.frames.filter((f) => f.type === 'resume')).toHaveLength(1); // only the one from connect
    a.close();
  });

  it('a revoked device is closed with 4403, receives nothing more, and its mailbox is deleted', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob', 2);
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    const b1 = await connect(conv, bob.devices[1]!);
    for (let i = 1; i <= 3; i++) await a.sendAndWait(group(`m${i}`));
    await flush(conv);
    expect((await mailboxRows(bob.userId, 'd1')).length).toBe(3);
    expect((await mailboxRows(bob.userId, 'd0')).length).toBe(3);

    await markDeviceRevoked(bob.userId, 'd1');
    expect(await conversationStub(conv).deviceRevoked(bob.userId, 'd1')).toBe(1);
    expect((await b1.waitClosed()).code).toBe(CLOSE.forbidden);
    expect(await mailboxRows(bob.userId, 'd1')).toEqual([]);
    expect((await mailboxRows(bob.userId, 'd0')).length).toBe(3);

    await a.sendAndWait(group('m4'));
    await flush(conv);
    expect(await mailboxRows(bob.userId, 'd1')).toEqual([]);
    expect((await mailboxRows(bob.userId, 'd0')).length).toBe(4);
    const stale = await a.sendAndWait({
      v: WIRE_VERSION,
      type: 'send',
      id: 'pw',
      to: [
        { u: bob.userId, d: 'd0', c: fakeCiphertext() },
        { u: bob.userId, d: 'd1', c: fakeCiphertext() },
      ],
    });
    expect(stale).toMatchObject({ code: 'device_mismatch', stale: [{ u: bob.userId, d: 'd1' }] });
    a.close();
  });

  it('the scheduled clean-up deletes expired envelopes, tickets and login challenges', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    await a.sendAndWait(group('m1'));
    await flush(conv);
    expect((await mailboxRows(bob.userId, 'd0')).length).toBe(1);
    await db()
      .update(schema.mailbox)
      .set({ expiresAt: Date.now() - 1 })
      .where(eq(schema.mailbox.conversationId, conv));
    await db()
      .update(schema.groupEnvelopes)
      .set({ expiresAt: Date.now() - 1 })
      .where(eq(schema.groupEnvelopes.conversationId, conv));
    await ticket(conv, alice.devices[0]!);
    await db()
      .update(schema.wsTickets)
      .set({ expiresAt: Date.now() - 1 });
    await db()
      .insert(schema.loginChallenges)
      .values({ idHash: crypto.getRandomValues(new Uint8Array(32)), expiresAt: Date.now() - 1 });

    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ cron: '17 * * * *' }), env, ctx);
    await waitOnExecutionContext(ctx);
    expect(await mailboxRows(bob.userId, 'd0')).toEqual([]);
    expect((await db().select().from(schema.groupEnvelopes).all()).filter((g) => g.conversationId === conv)).toEqual(
      [],
    );
    expect(await db().select().from(schema.wsTickets).all()).toEqual([]);
    expect(await db().select().from(schema.loginChallenges).all()).toEqual([]);
    a.close();
  });
});
