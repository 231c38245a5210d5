/**
 * Typing signals (issue 17, docs/PROTOCOL.md §"Content types"): the ConversationDO relays an encrypted
 * `typing` frame to the addressed live member sockets and forgets it — no seq, no DO row, no D1 mailbox row;
 * a device that was not connected never learns of it; a flood is cut by its own bucket (sends still pass).
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { WIRE_VERSION } from '../schema/wire.js';
import { TYPING_BURST } from './conversation.js';
import {
  connect,
  conversationStub,
  fakeCiphertext,
  flushOutbox,
  makeConversation,
  makeUser,
} from './test/delivery-fixtures.js';

/** Every row of every table of the DO's SQLite, as JSON (what a typing signal must never add to). */
async function doRows(conv: string): Promise<string[]> {
  return runInDurableObject(conversationStub(conv), (_i, state) => {
    const out: string[] = [];
    const names = state.storage.sql
      .exec<{ name: string }>(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%' AND name NOT LIKE 'sqlite_%'",
      )
      .toArray();
    for (const { name } of names) {
      // sql-interpolation-ok: table names come from sqlite_master, never from input.
      for (const row of state.storage.sql.exec(`SELECT * FROM "${name}"`)) out.push(`${name} ${JSON.stringify(row)}`);
    }
    return out;
  });
}

const mailboxCount = async () =>
  (await env.DB.prepare('SELECT count(*) AS n FROM mailbox').first<{ n: number }>())?.n ?? 0;

describe('typing frames are relayed, never stored', () => {
  it('a pairwise typing signal reaches only the addressed live device; nothing lands in DO storage or D1', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob', 2);
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    const b0 = await connect(conv, bob.devices[0]!);
    const b1 = await connect(conv, bob.devices[1]!);
    await a.sendAndWait({ v: WIRE_VERSION, type: 'send', id: 'm1', group: fakeCiphertext() });
    await flushOutbox(conv);
    const rowsBefore = await doRows(conv);
    const mailboxBefore = await mailboxCount();
    const c = fakeCiphertext(80);
    a.send({ v: WIRE_VERSION, type: 'typing', to: [{ u: bob.userId, d: bob.devices[0]!.deviceId, c }] });
    const got = await b0.next('typing');
    expect(got).toEqual({ v: WIRE_VERSION, type: 'typing', from: { u: alice.userId, d: 'd0' }, mode: 'pairwise', c });
    // A sender-key signal goes to every other live member device.
    const g = fakeCiphertext(90);
    a.send({ v: WIRE_VERSION, type: 'typing', group: g });
    expect((await b1.next('typing')).c).toBe(g);
    expect((await b0.next('typing', (f) => f.c === g)).mode).toBe('group');
    // Bob's second device was not addressed by the pairwise signal; alice gets her own signals back never.
    expect(b1.frames.filter((f) => f.type === 'typing').length).toBe(1);
    expect(a.frames.some((f) => f.type === 'typing')).toBe(false);
    await flushOutbox(conv);
    expect(await doRows(conv)).toEqual(rowsBefore);
    expect(await mailboxCount()).toBe(mailboxBefore);
    // No seq was spent: the next message follows the first directly.
    const next = await a.sendAndWait({ v: WIRE_VERSION, type: 'send', id: 'm2', group: fakeCiphertext() });
    expect(next).toMatchObject({ type: 'accepted', seq: 2 });
    for (const s of [a, b0, b1]) s.close();
  });

  it('a device that was not connected never receives it later, and a non-member address is dropped', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const carol = await makeUser('carol');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    a.send({
      v: WIRE_VERSION,
      type: 'typing',
      to: [
        { u: bob.userId, d: 'd0', c: fakeCiphertext() },
        { u: carol.userId, d: 'd0', c: fakeCiphertext() },
      ],
    });
    // The socket stays usable and nothing was queued for bob.
    expect(await a.sendAndWait({ v: WIRE_VERSION, type: 'send', id: 'm1', group: fakeCiphertext() })).toMatchObject({
      type: 'accepted',
      seq: 1,
    });
    const b = await connect(conv, bob.devices[0]!);
    await b.until((x) => x.envelopes().length === 1);
    expect(b.frames.some((f) => f.type === 'typing')).toBe(false);
    a.close();
    b.close();
  });

  it('a typing flood is cut with rate_limited and does not spend the send bucket', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    const b = await connect(conv, bob.devices[0]!);
    for (let i = 0; i < TYPING_BURST + 20; i++) a.send({ v: WIRE_VERSION, type: 'typing', group: fakeCiphertext(32) });
    await a.until((x) => x.frames.some((f) => f.type === 'error'), 10_000, 'rate_limited');
    expect(a.frames.find((f) => f.type === 'error')).toMatchObject({ code: 'rate_limited' });
    const relayed = () => b.frames.filter((f) => f.type === 'typing').length;
    await b.until(() => relayed() >= TYPING_BURST, 10_000, 'the burst');
    expect(relayed()).toBeLessThan(TYPING_BURST + 20);
    expect(await a.sendAndWait({ v: WIRE_VERSION, type: 'send', id: 'm1', group: fakeCiphertext() })).toMatchObject({
      type: 'accepted',
    });
    a.close();
    b.close();
  });

  it('malformed typing frames get bad_frame and the socket stays usable', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    const bad = [
      { v: WIRE_VERSION, type: 'typing' },
      { v: WIRE_VERSION, type: 'typing', group: 'not base64!' },
      { v: WIRE_VERSION, type: 'typing', group: 'A'.repeat(8000) },
      { v: WIRE_VERSION, type: 'typing', to: [] },
      { v: WIRE_VERSION, type: 'typing', group: 'AAAA', to: [{ u: bob.userId, d: 'd0', c: 'AAAA' }] },
      { v: WIRE_VERSION, type: 'typing', group: 'AAAA', id: 'x' },
    ];
    for (const f of bad) {
      const before = a.frames.length;
      a.send(f);
      await a.until((x) => x.frames.slice(before).some((g) => g.type === 'error'), 10_000, 'error');
      expect(a.frames.slice(before).find((g) => g.type === 'error')).toMatchObject({ code: 'bad_frame' });
    }
    expect(await a.resume(0)).toMatchObject({ type: 'resume' });
    a.close();
  });
});
