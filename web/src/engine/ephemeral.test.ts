/**
 * What does not last (issue 17, PITFALLS 30): typing signals (relayed, never stored, rate-limited, off by a
 * privacy setting, never spending prekeys or keys) and disappearing messages (a timer only from a signed
 * membership entry; every device deletes expired messages, also those that expired while it was closed),
 * and local search.
 */
import { describe, expect, it } from 'vitest';
import type { EngineEvent, MessageView } from './context.js';
import { type Client, makeWorld, newClient, sendRaw, texts, until, type World } from './testing/harness.js';

async function online(clients: Client[], conv: string) {
  for (const c of clients) await c.engine.connect([conv]);
  for (const c of clients)
    await until(async () => (await c.engine.connectionStatus(conv)) === 'online', `${c.deviceId} online`);
}

function typingEvents(c: Client): { userId: string; on: boolean }[] {
  const out: { userId: string; on: boolean }[] = [];
  c.engine.on((e: EngineEvent) => {
    if (e.type === 'typing') out.push({ userId: e.userId, on: e.on });
  });
  return out;
}

async function has(c: Client, conv: string, pick: (m: MessageView) => boolean, what: string): Promise<MessageView> {
  let found: MessageView | undefined;
  await until(async () => {
    found = (await c.engine.messages(conv, { limit: 1000 })).find((m) => m.seq !== null && pick(m));
    return !!found;
  }, `${c.deviceId}: ${what}`);
  return found!;
}

const rawText = (c: Client) =>
  (c.store as unknown as { dump(): { key: string; value: Uint8Array }[] })
    .dump()
    .map((e) => `${e.key} ${new TextDecoder().decode(e.value)}`)
    .join('\n');

const mailboxTotal = (w: World, conv: string) =>
  [...w.server.conversations.get(conv)!.mailbox.values()].reduce((n, l) => n + l.length, 0);

describe('typing indicators', () => {
  it('reach the other person’s live socket and nothing else: no seq, no mailbox, no prekey spent', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await online([alice, bob], conv);
    const seen = typingEvents(bob);
    // No session yet: nothing is sent, and no bundle is claimed for a signal.
    const prekeys = w.server.users.get('bob')!.devices.get('bob-1')!.otps.length;
    expect(await alice.engine.typing(conv, true)).toBe(false);
    expect(w.server.users.get('bob')!.devices.get('bob-1')!.otps.length).toBe(prekeys);
    await alice.engine.sendText(conv, 'hi');
    await until(async () => (await texts(bob.engine, conv)).includes('hi'), 'bob has hi');
    // Bob's delivery receipt is a sequenced message too: wait for it before taking the seq.
    await until(
      async () => (await alice.engine.messages(conv)).some((m) => m.body === 'hi' && m.status === 'delivered'),
      'the receipt came back',
    );
    await until(() => mailboxTotal(w, conv) === 0, 'everything acknowledged');
    const seq = w.server.conversations.get(conv)!.seq;
    expect(await alice.engine.typing(conv, true)).toBe(true);
    await until(() => seen.length === 1, 'bob sees alice typing');
    expect(await alice.engine.typing(conv, false)).toBe(true);
    await until(() => seen.length === 2, 'and stopping');
    expect(seen).toEqual([
      { userId: 'alice', on: true },
      { userId: 'alice', on: false },
    ]);
    expect(w.server.typingRelayed).toBe(2);
    expect(w.server.conversations.get(conv)!.seq).toBe(seq); // never sequenced
    expect(mailboxTotal(w, conv)).toBe(0); // never stored
    // A device that was not connected gets nothing later.
    bob.engine.close();
    expect(await alice.engine.typing(conv, true)).toBe(true);
    expect(mailboxTotal(w, conv)).toBe(0);
    alice.engine.close();
  });

  it('in a group they use the current sender key only: none before it is distributed or after a removal', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'g' });
    await online([alice, bob, carol], conv);
    const bobSees = typingEvents(bob);
    const carolSees = typingEvents(carol);
    expect(await alice.engine.typing(conv, true)).toBe(false); // no sender key yet: not created for a signal
    await alice.engine.sendText(conv, 'hello group');
    for (const c of [bob, carol])
      await until(async () => (await texts(c.engine, conv)).includes('hello group'), 'got it');
    expect(await alice.engine.typing(conv, true)).toBe(true);
    await until(() => bobSees.length === 1 && carolSees.length === 1, 'both see it');
    await alice.engine.removeMember(conv, 'carol');
    await until(async () => !(await bob.engine.members(conv)).includes('carol'), 'bob applied the removal');
    expect(await alice.engine.typing(conv, true)).toBe(false); // the key must rotate first (a message does it)
    await alice.engine.sendText(conv, 'without carol');
    await until(async () => (await texts(bob.engine, conv)).includes('without carol'), 'bob has it');
    expect(await alice.engine.typing(conv, false)).toBe(true);
    await until(() => bobSees.length === 2, 'bob sees the new signal');
    expect(carolSees.length).toBe(1);
    for (const c of [alice, bob, carol]) c.engine.close();
  });

  it('the privacy setting turns them off both ways', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await online([alice, bob], conv);
    await alice.engine.sendText(conv, 'hi');
    await until(async () => (await texts(bob.engine, conv)).includes('hi'), 'bob has hi');
    await bob.engine.sendText(conv, 'hey');
    await until(async () => (await texts(alice.engine, conv)).includes('hey'), 'alice has hey');
    const bobSees = typingEvents(bob);
    await alice.engine.setPref('typingIndicators', false);
    expect(await alice.engine.typing(conv, true)).toBe(false);
    await bob.engine.setPref('typingIndicators', false);
    await alice.engine.setPref('typingIndicators', true);
    expect(await alice.engine.typing(conv, true)).toBe(true);
    await until(() => w.server.typingRelayed === 1, 'relayed');
    await bob.engine.idle();
    expect(bobSees).toEqual([]); // bob turned them off: not shown (nor decrypted)
    alice.engine.close();
    bob.engine.close();
  });

  it('a flood of typing signals is cut by the receiver’s rate limit; garbage is dropped without a trace', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await online([alice, bob], conv);
    await alice.engine.sendText(conv, 'hi');
    await until(async () => (await texts(bob.engine, conv)).includes('hi'), 'bob has hi');
    const seen = typingEvents(bob);
    const started = Date.now();
    for (let i = 0; i < 40; i++) await alice.engine.typing(conv, i % 2 === 0);
    await until(() => w.server.typingRelayed === 40, 'all relayed by the fake server');
    await bob.engine.idle();
    const seconds = (Date.now() - started) / 1000;
    expect(seen.length).toBeLessThanOrEqual(5 + Math.ceil(seconds) + 1);
    expect(seen.length).toBeGreaterThan(0);
    // Garbage from a member's socket: not base64 of a message, or a message of the wrong session.
    const sock = await w.server.sockets('alice', 'alice-1')(conv, { onMessage: () => {}, onClose: () => {} });
    sock.send(JSON.stringify({ v: 1, type: 'typing', to: [{ u: 'bob', d: 'bob-1', c: 'AAAAAAAAAAAAAAAA' }] }));
    sock.send(JSON.stringify({ v: 1, type: 'typing', group: 'AAAA' }));
    await bob.engine.idle();
    await alice.engine.sendText(conv, 'still fine');
    await until(async () => (await texts(bob.engine, conv)).includes('still fine'), 'bob still receives');
    sock.close();
    alice.engine.close();
    bob.engine.close();
  });
});

describe('disappearing messages', () => {
  it('either person sets the timer in a direct chat; both agree; later messages vanish from every device', async () => {
    let clock = 1_800_000_000_000;
    const w = await makeWorld({ now: () => clock });
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await online([alice, bob], conv);
    await alice.engine.sendText(conv, 'kept forever');
    await has(bob, conv, (m) => m.body === 'kept forever', 'first');
    await bob.engine.setTimer(conv, 300); // bob is a member: allowed in a two-person chat
    await until(async () => (await alice.engine.conversation(conv)).timer === 300, 'alice applied the timer');
    for (const c of [alice, bob]) {
      const lines = await c.engine.infoLines(conv);
      expect(
        lines.map((l) => (l.event.type === 'membership' ? [l.event.action, l.event.actor, l.event.timer] : [])),
      ).toEqual([['set_timer', 'bob', 300]]);
    }
    await alice.engine.sendText(conv, 'burn after reading');
    const got = await has(bob, conv, (m) => m.body === 'burn after reading', 'second');
    const mine = await has(alice, conv, (m) => m.body === 'burn after reading', 'accepted');
    expect(got.expiresAt).toBe(got.ts! + 300_000);
    expect(mine.expiresAt).toBe(got.expiresAt);
    const removed: string[] = [];
    bob.engine.on((e) => e.type === 'message_removed' && removed.push(e.clientId));
    clock += 299_000;
    expect(await bob.engine.sweepExpired()).toBe(0);
    clock += 2000;
    expect(await bob.engine.sweepExpired()).toBe(1);
    expect(await alice.engine.sweepExpired()).toBe(1);
    expect(removed).toEqual([got.clientId]);
    for (const c of [alice, bob]) {
      expect(await texts(c.engine, conv)).toEqual(['kept forever']);
      expect(rawText(c)).not.toContain('burn after reading');
    }
    alice.engine.close();
    bob.engine.close();
  });

  it('messages that expire while the app is closed are gone on the next start, before anything is shown', async () => {
    let clock = 1_800_000_000_000;
    const w = await makeWorld({ now: () => clock });
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await online([alice, bob], conv);
    await alice.engine.setTimer(conv, 3600);
    await until(async () => (await bob.engine.conversation(conv)).timer === 3600, 'bob applied the timer');
    await alice.engine.sendText(conv, 'one hour only');
    await bob.engine.sendText(conv, 'reply that quotes nothing');
    await has(bob, conv, (m) => m.body === 'one hour only', 'received');
    await bob.engine.idle();
    bob.engine.close(); // the tab is closed
    clock += 3600_000 + 1;
    const { engineOn } = await import('./testing/harness.js');
    const again = engineOn(w, 'bob', 'bob-1', bob.store, bob.locks);
    // Not shown even before the sweep ran …
    expect(await texts(again, conv)).toEqual([]);
    // … and deleted from the store when the engine starts.
    await again.connect([conv]);
    expect(rawText(bob)).not.toContain('one hour only');
    expect(rawText(bob)).not.toContain('reply that quotes nothing');
    again.close();
    alice.engine.close();
  });

  it('in a group only owners and admins set the timer: a member is refused by the engine and by the server', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'g' });
    await expect(bob.engine.setTimer(conv, 300)).rejects.toMatchObject({ code: 'not_allowed' });
    await expect(alice.engine.setTimer(conv, 60)).rejects.toMatchObject({ code: 'invalid_input' });
    // A member's entry signed anyway is refused by the server's verification.
    const { nextEntry, encodeMembershipEntry } = await import('./_protocol.js');
    const { ownIdentity } = await import('./testing/harness.js');
    const id = await ownIdentity(bob.store);
    const log = w.server.conversations.get(conv)!;
    const entry = await nextEntry(w.curves, id.signing, log.state, conv, {
      action: 'set_timer',
      timer: 300,
      authorUserId: 'bob',
      authorDeviceId: 'bob-1',
      timestamp: Date.now(),
    });
    await expect(
      w.server.api('bob', 'bob-1').appendMembershipEntry(conv, encodeMembershipEntry(entry)),
    ).rejects.toMatchObject({ code: 'invalid_entry' });
    expect(log.state.timer ?? 0).toBe(0);
    await alice.engine.changeMembership(conv, { action: 'promote', target: 'bob' });
    await bob.engine.setTimer(conv, 300); // an admin may
    expect(w.server.conversations.get(conv)!.state.timer).toBe(300);
    expect((await bob.engine.conversation(conv)).timer).toBe(300);
    alice.engine.close();
    bob.engine.close();
  });

  it('a message naming an unseen timer makes the device verify the log first; a timer no entry set is ignored', async () => {
    const clock = 1_800_000_000_000;
    const w = await makeWorld({ now: () => clock });
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await bob.engine.syncMailbox();
    expect((await bob.engine.conversation(conv)).timer).toBe(0);
    // Bob is offline when alice sets the timer and writes: he learns both from his mailbox.
    await alice.engine.connect([conv]);
    await until(async () => (await alice.engine.connectionStatus(conv)) === 'online', 'alice online');
    await alice.engine.setTimer(conv, 300);
    await alice.engine.sendText(conv, 'short-lived');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'queued for bob');
    await bob.engine.syncMailbox();
    const m = (await bob.engine.messages(conv)).find((x) => x.body === 'short-lived')!;
    expect(m.expiresAt).toBe(m.ts! + 300_000);
    expect((await bob.engine.conversation(conv)).timer).toBe(300);
    // A sender claiming a timer that no signed entry set changes nothing.
    // Bob is online when alice turns it off: the membership frame brings him the verified entry.
    await bob.engine.connect([conv]);
    await until(async () => (await bob.engine.connectionStatus(conv)) === 'online', 'bob online');
    await alice.engine.setTimer(conv, 0);
    await until(async () => (await bob.engine.conversation(conv)).timer === 0, 'off');
    await bob.engine.disconnect();
    const sock = await sendRaw(w, alice, conv, 'claims-timer', {
      t: 'text',
      conv,
      id: 'claims-timer',
      body: 'I say it disappears',
      sentAt: 1,
      exp: 300,
    });
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'queued');
    await bob.engine.syncMailbox();
    const claimed = (await bob.engine.messages(conv)).find((x) => x.clientId === 'claims-timer')!;
    expect(claimed.body).toBe('I say it disappears');
    expect(claimed.expiresAt).toBeUndefined();
    sock.close();
    alice.engine.close();
  });
  it('a removed member’s message naming the new timer does not stall the catch-up (the log sync runs after the decryption’s lock)', async () => {
    // Bob is away while alice sets a timer, carol writes under it and alice removes carol. Carol's message
    // names a timer bob's log does not have yet: bringing the log up to date applies the removal, which forgets
    // carol's chain — under the lock that decrypting her message held (locks are not re-entrant).
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'g' });
    await online([alice, bob, carol], conv);
    await carol.engine.sendText(conv, 'carol warm-up');
    await until(async () => (await texts(bob.engine, conv)).includes('carol warm-up'), 'bob has the warm-up');
    await bob.engine.disconnect();
    await alice.engine.setTimer(conv, 300);
    await until(async () => (await carol.engine.conversation(conv)).timer === 300, 'carol sees the timer');
    const sent = await carol.engine.sendText(conv, 'carol with exp');
    await until(async () => (await texts(alice.engine, conv)).includes('carol with exp'), 'alice has it');
    await alice.engine.removeMember(conv, 'carol');
    await alice.engine.sendText(conv, 'later');
    await bob.engine.connect([conv]);
    await until(async () => (await texts(bob.engine, conv)).includes('later'), 'bob has the text after it');
    // The log decides: carol was removed by the time bob processed it (the known limit of inbox.ts).
    const m = (await bob.engine.messages(conv)).find((x) => x.clientId === sent.clientId);
    expect(m).toMatchObject({ body: null, status: 'undecryptable', error: 'not_member' });
    expect((await bob.engine.conversation(conv)).timer).toBe(300);
    expect(await bob.store.get(`skr/${conv}/carol/carol-1`)).toBeUndefined();
    alice.engine.close();
    bob.engine.close();
    carol.engine.close();
  });
});

describe('search', () => {
  it('finds words across conversations in this device’s store, ignoring case and accents, newest first', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const one = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    const two = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'Trip' });
    await online([alice, bob], one);
    await online([alice, bob, carol], two);
    await bob.engine.sendText(one, 'The Café opens at nine');
    await alice.engine.sendText(two, 'cafe or beach?');
    await alice.engine.sendText(two, 'nothing to see');
    await until(async () => (await texts(alice.engine, one)).length === 1, 'alice has bob’s');
    await until(async () => (await alice.engine.messages(two)).every((m) => m.seq !== null), 'accepted');
    const hits = await alice.engine.search('CAFÉ');
    expect(hits.map((m) => [m.conversationId, m.body])).toEqual([
      [two, 'cafe or beach?'],
      [one, 'The Café opens at nine'],
    ]);
    expect((await alice.engine.search('cafe', { conversationId: one })).map((m) => m.body)).toEqual([
      'The Café opens at nine',
    ]);
    expect(await alice.engine.search('   ')).toEqual([]);
    // A deleted message is no longer found.
    const own = hits[0]!;
    await alice.engine.deleteForEveryone(two, own.clientId);
    await until(async () => (await alice.engine.search('beach')).length === 0, 'deleted from search');
    for (const c of [alice, bob, carol]) c.engine.close();
  });
});
