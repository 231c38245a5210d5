/**
 * Everyday messaging in the engine (issue 17, docs/PROTOCOL.md §"Content types", PITFALLS 30): replies,
 * reactions, edits, deletes for everyone, unsupported content from the future, and bad input of each type
 * — on real engines over the fake server, with several devices per person where order matters.
 */
import { describe, expect, it } from 'vitest';
import { deserializeOwnSenderKey, encodeSenderKeyDistribution, senderKeyDistribution } from './_protocol.js';
import { decodeRecord } from './codec.js';
import type { EngineEvent, MessageView } from './context.js';
import { type OutboxEntry, RECEIPT_WAIT_MS } from './outbox.js';
import {
  type Client,
  linkDevice,
  makeWorld,
  newClient,
  online,
  sendRaw,
  sendRawGroup,
  texts,
  until,
  type World,
} from './testing/harness.js';

async function direct(w: World) {
  const alice = await newClient(w, 'alice');
  const bob = await newClient(w, 'bob');
  const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
  await online([alice, bob], conv);
  return { alice, bob, conv };
}

/** The message with `body` (or matching `pick`) once `c` has it sequenced. */
async function has(c: Client, conv: string, pick: (m: MessageView) => boolean, what: string): Promise<MessageView> {
  let found: MessageView | undefined;
  await until(async () => {
    found = (await c.engine.messages(conv, { limit: 1000 })).find((m) => m.seq !== null && pick(m));
    return !!found;
  }, `${c.deviceId}: ${what}`);
  return found!;
}
const byBody = (body: string) => (m: MessageView) => m.body === body;
const byId = (id: string) => (m: MessageView) => m.clientId === id;

function refusals(c: Client): { id: string; code: string }[] {
  const out: { id: string; code: string }[] = [];
  c.engine.on((e: EngineEvent) => {
    if (e.type === 'content_refused') out.push({ id: e.id, code: e.code });
  });
  return out;
}

/** Every record in a client's store, as text (the memory store holds JSON records). */
const rawText = (c: Client) =>
  (c.store as unknown as { dump(): { key: string; value: Uint8Array }[] })
    .dump()
    .map((e) => `${e.key} ${new TextDecoder().decode(e.value)}`)
    .join('\n');

describe('content types: the unknown and the malformed', () => {
  it('a type from the future shows as an unsupported message, a future signal is ignored, and nothing crashes', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await direct(w);
    const socks = [
      await sendRaw(w, alice, conv, 'poll-1', {
        t: 'poll',
        conv,
        id: 'poll-1',
        question: 'Lunch?',
        options: ['a', 'b'],
      }),
      await sendRaw(w, alice, conv, 'text-v2', { t: 'text', v: 2, conv, id: 'text-v2', rich: [{ b: 'hi' }] }),
      await sendRaw(w, alice, conv, 'presence-1', { t: 'presence', conv, state: 'away' }),
    ];
    await alice.engine.sendText(conv, 'still talking');
    await has(bob, conv, byBody('still talking'), 'the text after them');
    const poll = await has(bob, conv, byId('poll-1'), 'the poll');
    expect(poll).toMatchObject({ body: null, unsupported: 'poll', status: 'received' });
    expect(await has(bob, conv, byId('text-v2'), 'text v2')).toMatchObject({ body: null, unsupported: 'text' });
    // The signal without an id leaves no trace; the conversation's order moved past it.
    expect((await bob.engine.messages(conv)).some((m) => m.clientId === 'presence-1')).toBe(false);
    expect(await texts(bob.engine, conv)).toEqual(['still talking']);
    for (const s of socks) s.close();
    alice.engine.close();
    bob.engine.close();
  });

  it('malformed content of each type is refused with a code and changes nothing', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await direct(w);
    const refused = refusals(bob);
    await alice.engine.sendText(conv, 'target');
    const target = await has(bob, conv, byBody('target'), 'target');
    const bad: [string, Record<string, unknown>][] = [
      ['text-long', { t: 'text', conv, id: 'text-long', body: 'x'.repeat(32 * 1024 + 1), sentAt: 1 }],
      ['text-noid', { t: 'text', conv, body: 'no id', sentAt: 1 }],
      ['text-otherid', { t: 'text', conv, id: 'not-the-envelope', body: 'wrong id', sentAt: 1 }],
      ['react-word', { t: 'react', conv, target: target.clientId, emoji: 'LOL' }],
      ['react-two', { t: 'react', conv, target: target.clientId, emoji: '👍👍' }],
      ['edit-long', { t: 'edit', conv, target: target.clientId, body: 'y'.repeat(32 * 1024 + 1), sentAt: 1 }],
      ['delete-notarget', { t: 'delete', conv }],
      ['typing-str', { t: 'typing', conv, on: 'yes' }],
      ['receipt-many', { t: 'receipt', conv, status: 'delivered', ids: Array.from({ length: 65 }, (_, i) => `i${i}`) }],
      ['skd-str', { t: 'skd', conv, d: 'not bytes' }],
      ['other-conv', { t: 'react', conv: 'someone-else', target: target.clientId, emoji: '👍' }],
      ['not-object', [1, 2, 3] as unknown as Record<string, unknown>],
    ];
    const socks = [];
    for (const [id, p] of bad) socks.push(await sendRaw(w, alice, conv, id, p));
    await alice.engine.sendText(conv, 'after the junk');
    await has(bob, conv, byBody('after the junk'), 'the text after the junk');
    // Broken messages are visible as failed; broken signals and actions are refused with their code.
    const msgs = await bob.engine.messages(conv);
    for (const id of ['text-long', 'text-noid', 'text-otherid', 'not-object'])
      expect(
        msgs.find((m) => m.clientId === id),
        id,
      ).toMatchObject({ body: null, status: 'undecryptable' });
    expect(msgs.find((m) => m.clientId === 'text-otherid')?.error).toBe('malformed_payload');
    expect(refused).toEqual(
      expect.arrayContaining([
        { id: 'react-word', code: 'malformed_payload' },
        { id: 'react-two', code: 'malformed_payload' },
        { id: 'edit-long', code: 'malformed_payload' },
        { id: 'delete-notarget', code: 'malformed_payload' },
        { id: 'typing-str', code: 'malformed_payload' },
        { id: 'receipt-many', code: 'malformed_payload' },
        { id: 'skd-str', code: 'malformed_payload' },
        { id: 'other-conv', code: 'wrong_conversation' },
      ]),
    );
    // The target is untouched: no reaction, no edit, not deleted.
    const after = (await bob.engine.messages(conv)).find((m) => m.clientId === target.clientId)!;
    expect(after).toMatchObject({ body: 'target' });
    expect(after.reactions ?? []).toEqual([]);
    expect(after.edited).toBeUndefined();
    expect(after.deleted).toBeUndefined();
    for (const s of socks) s.close();
    alice.engine.close();
    bob.engine.close();
  });
});

describe('sender-key distributions come pairwise only', () => {
  it('a distribution inside a group message is refused (malformed_payload) and the conversation goes on', async () => {
    // A hostile member's group (sender-key) message whose payload is an `skd`: it used to wedge the receiver's
    // conversation for good (the decryption held the chain's lock that applying the distribution asked for).
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob'], title: 'g' });
    await online([alice, bob], conv);
    const refused = refusals(bob);
    await alice.engine.sendText(conv, 'hello');
    await has(bob, conv, byBody('hello'), 'hello');
    // A well-formed distribution of alice's own chain: refused for the mode it came in, not for its bytes.
    const own = decodeRecord<{ key: Uint8Array }>((await alice.store.get(`sk/${conv}/own`))!);
    const d = encodeSenderKeyDistribution(senderKeyDistribution(deserializeOwnSenderKey(own.key), conv));
    const sock = await sendRawGroup(w, alice, conv, 'evil-skd', { t: 'skd', conv, d });
    await until(() => refused.some((r) => r.id === 'evil-skd'), 'the group-mode skd refused');
    expect(refused).toContainEqual({ id: 'evil-skd', code: 'malformed_payload' });
    await alice.engine.sendText(conv, 'after');
    await has(bob, conv, byBody('after'), 'the text after it');
    expect(await texts(bob.engine, conv)).toEqual(['hello', 'after']);
    sock.close();
    alice.engine.close();
    bob.engine.close();
  });
});

describe('replies', () => {
  it('a reply carries the quoted text and author; the receiver trusts its own copy over the quote it was sent', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await direct(w);
    await alice.engine.sendText(conv, 'Dinner at 8?');
    const original = await has(bob, conv, byBody('Dinner at 8?'), 'the question');
    const reply = await bob.engine.sendText(conv, 'Yes!', { replyTo: original.clientId });
    expect(reply.quote).toEqual({ id: original.clientId, author: 'alice', text: 'Dinner at 8?' });
    const got = await has(alice, conv, byBody('Yes!'), 'the reply');
    expect(got.quote).toEqual({ id: original.clientId, author: 'alice', text: 'Dinner at 8?' });
    expect(await alice.engine.locate(conv, got.quote!.id)).toBe(original.seq);

    // A forged quote (wrong author, wrong words) of a message alice has: her copy wins.
    const sock = await sendRaw(w, bob, conv, 'forged-1', {
      t: 'text',
      conv,
      id: 'forged-1',
      body: 'as you said',
      sentAt: 1,
      reply: { id: original.clientId, author: 'bob', text: 'I will pay for everything' },
    });
    const forged = await has(alice, conv, byId('forged-1'), 'the forged reply');
    expect(forged.quote).toEqual({ id: original.clientId, author: 'alice', text: 'Dinner at 8?' });
    // A quote of a message alice never had is shown as sent (nothing to check it against).
    await expect(bob.engine.sendText(conv, 'x', { replyTo: 'no-such-message' })).rejects.toMatchObject({
      code: 'unknown_message',
    });
    sock.close();
    alice.engine.close();
    bob.engine.close();
  });
});

describe('reactions', () => {
  it('one reaction per person per message, changed and removed, the same on every device', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const alice2 = await linkDevice(w, alice, 'alice-2');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'Trip' });
    await online([alice, alice2, bob, carol], conv);
    await alice.engine.sendText(conv, 'Beach or mountains?');
    const m = await has(bob, conv, byBody('Beach or mountains?'), 'question');
    await has(carol, conv, byBody('Beach or mountains?'), 'question');

    await bob.engine.react(conv, m.clientId, '🏖️');
    await carol.engine.react(conv, m.clientId, '🏖️');
    await alice2.engine.react(conv, m.clientId, '⛰️');
    const settled = (want: string) => async () => {
      for (const c of [alice, alice2, bob, carol]) {
        const x = (await c.engine.messages(conv)).find((y) => y.clientId === m.clientId);
        const got = (x?.reactions ?? [])
          .map((r) => `${r.userId}:${r.emoji}`)
          .sort()
          .join(',');
        if (got !== want || x?.pending) return false;
      }
      return true;
    };
    await until(settled('alice:⛰️,bob:🏖️,carol:🏖️'), 'three reactions everywhere');
    await bob.engine.react(conv, m.clientId, '⛰️'); // changed
    await carol.engine.react(conv, m.clientId, ''); // removed
    await until(settled('alice:⛰️,bob:⛰️'), 'changed and removed everywhere');
    // Alice reacts from her first device too: still one reaction of hers.
    await alice.engine.react(conv, m.clientId, '👍');
    await until(settled('alice:👍,bob:⛰️'), 'alice’s newest reaction replaces her other one');

    await expect(bob.engine.react(conv, m.clientId, 'no')).rejects.toMatchObject({ code: 'invalid_input' });
    await expect(bob.engine.react(conv, 'nope', '👍')).rejects.toMatchObject({ code: 'unknown_message' });
    for (const c of [alice, alice2, bob, carol]) c.engine.close();
  });

  it('a reaction to an unknown message or to a deleted one is ignored with its code', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await direct(w);
    const refused = refusals(bob);
    await alice.engine.sendText(conv, 'soon gone');
    const m = await has(bob, conv, byBody('soon gone'), 'message');
    await alice.engine.deleteForEveryone(conv, m.clientId);
    await has(bob, conv, (x) => x.clientId === m.clientId && !!x.deleted, 'the delete');
    const socks = [
      await sendRaw(w, alice, conv, 'r-unknown', { t: 'react', conv, target: 'never-sent', emoji: '👍' }),
      await sendRaw(w, alice, conv, 'r-deleted', { t: 'react', conv, target: m.clientId, emoji: '👍' }),
    ];
    await until(() => refused.length === 2, 'both refused');
    expect(refused).toEqual([
      { id: 'r-unknown', code: 'unknown_message' },
      { id: 'r-deleted', code: 'deleted' },
    ]);
    expect((await bob.engine.messages(conv)).find((x) => x.clientId === m.clientId)?.reactions ?? []).toEqual([]);
    for (const s of socks) s.close();
    alice.engine.close();
    bob.engine.close();
  });
});

describe('edits', () => {
  it('an edit shows as edited on every device, and the last edit by the conversation’s order wins', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await direct(w);
    await alice.engine.sendText(conv, 'See you at 7');
    const m = await has(bob, conv, byBody('See you at 7'), 'message');
    await has(alice, conv, (x) => x.clientId === m.clientId, 'accepted');
    await alice.engine.editMessage(conv, m.clientId, 'See you at 8');
    await alice.engine.editMessage(conv, m.clientId, 'See you at 9');
    for (const c of [alice, bob]) {
      const e = await has(c, conv, (x) => x.clientId === m.clientId && x.body === 'See you at 9' && !x.pending, 'edit');
      expect(e.edited?.seq).toBeGreaterThan(m.seq!);
    }
    // An older edit delivered late (a replay of the first edit's payload under a new id) cannot win:
    // it is sequenced after, so it is the newest — but only the sender can send one, and what bob sees
    // is always the highest-seq edit alice made.
    expect(await texts(bob.engine, conv)).toEqual(['See you at 9']);
    await expect(bob.engine.editMessage(conv, m.clientId, 'hacked')).rejects.toMatchObject({ code: 'not_allowed' });
    alice.engine.close();
    bob.engine.close();
  });

  it('two devices edit one message: every device ends with the edit sequenced last, even one that learns its own edit’s seq late', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const alice2 = await linkDevice(w, alice, 'alice-2');
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await online([alice, alice2, bob], conv);
    await alice.engine.sendText(conv, 'v0');
    const m = await has(alice2, conv, byBody('v0'), 'alice-2 has it');
    await has(alice, conv, byId(m.clientId), 'accepted');
    // alice-1's edit is sequenced, but the answer never reaches her; alice-2's edit is sequenced after it.
    w.server.muteReplies('alice', 'alice-1', true);
    await alice.engine.editMessage(conv, m.clientId, 'v1 from alice-1');
    // Sequenced means delivered: the conversation's seq alone also moves with bob's and alice-2's receipts.
    await has(bob, conv, (x) => x.body === 'v1 from alice-1', 'alice-1’s edit sequenced');
    w.server.setOnline('alice', 'alice-1', false);
    await alice2.engine.editMessage(conv, m.clientId, 'v2 from alice-2');
    await has(bob, conv, (x) => x.body === 'v2 from alice-2', 'bob applied both, in order');
    // alice-1 catches up through the mailbox first (alice-2's later edit), then her resend is answered
    // with her own edit's earlier seq: it must not win.
    await alice.engine.syncMailbox();
    expect((await alice.engine.messages(conv)).find((y) => y.clientId === m.clientId)?.body).toBe('v2 from alice-2');
    w.server.muteReplies('alice', 'alice-1', false);
    w.server.setOnline('alice', 'alice-1', true);
    // Settled: nothing left in anyone's outbox or mailbox.
    await until(async () => {
      for (const c of [alice, alice2, bob]) {
        if ((await c.store.list('out/')).length) return false;
        if (w.server.pending(conv, c.userId, c.deviceId).length) return false;
      }
      return true;
    }, 'everything sent and processed');
    for (const c of [alice, alice2, bob]) {
      const x = (await c.engine.messages(conv)).find((y) => y.clientId === m.clientId)!;
      expect(x.body, c.deviceId).toBe('v2 from alice-2');
      expect(x.pending).toBeUndefined();
    }
    for (const c of [alice, alice2, bob]) c.engine.close();
  });

  it('only the sender may edit: another member’s edit is ignored with not_allowed', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await direct(w);
    const refused = refusals(alice);
    await alice.engine.sendText(conv, 'my words');
    const m = await has(bob, conv, byBody('my words'), 'message');
    const sock = await sendRaw(w, bob, conv, 'evil-edit', {
      t: 'edit',
      conv,
      target: m.clientId,
      body: 'your words',
      sentAt: 1,
    });
    await until(() => refused.some((r) => r.id === 'evil-edit'), 'refused');
    expect(refused).toContainEqual({ id: 'evil-edit', code: 'not_allowed' });
    expect(await texts(alice.engine, conv)).toEqual(['my words']);
    sock.close();
    alice.engine.close();
    bob.engine.close();
  });

  it('an edit after 24 hours is refused by the sender and ignored by every receiver (edit_window)', async () => {
    let clock = 1_800_000_000_000;
    const w = await makeWorld({ now: () => clock });
    const { alice, bob, conv } = await direct(w);
    const refused = refusals(bob);
    await alice.engine.sendText(conv, 'typo hree');
    const m = await has(bob, conv, byBody('typo hree'), 'message');
    await has(alice, conv, (x) => x.clientId === m.clientId, 'accepted');
    clock += 24 * 3600 * 1000 - 1000;
    await alice.engine.editMessage(conv, m.clientId, 'typo here');
    await has(bob, conv, (x) => x.body === 'typo here', 'an edit inside the window');
    clock += 2000;
    await expect(alice.engine.editMessage(conv, m.clientId, 'too late')).rejects.toMatchObject({ code: 'edit_window' });
    const sock = await sendRaw(w, alice, conv, 'late-edit', {
      t: 'edit',
      conv,
      target: m.clientId,
      body: 'too late',
      sentAt: 1,
    });
    await until(() => refused.some((r) => r.id === 'late-edit'), 'refused');
    expect(refused).toContainEqual({ id: 'late-edit', code: 'edit_window' });
    expect(await texts(bob.engine, conv)).toEqual(['typo here']);
    sock.close();
    alice.engine.close();
    bob.engine.close();
  });
});

describe('deletes for everyone', () => {
  it('the text is erased from every device’s store, replies lose their excerpt, and a placeholder remains', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await direct(w);
    await alice.engine.sendText(conv, 'my secret plan');
    const m = await has(bob, conv, byBody('my secret plan'), 'message');
    await bob.engine.react(conv, m.clientId, '😮');
    await bob.engine.sendText(conv, 'wow', { replyTo: m.clientId });
    await has(alice, conv, byBody('wow'), 'the reply');
    await alice.engine.deleteForEveryone(conv, m.clientId);
    for (const c of [alice, bob]) {
      const gone = await has(c, conv, (x) => x.clientId === m.clientId && !!x.deleted && !x.pending, 'deleted');
      expect(gone).toMatchObject({ body: null, deleted: { by: 'alice' } });
      expect(gone.reactions).toBeUndefined();
      const reply = (await c.engine.messages(conv)).find((x) => x.body === 'wow')!;
      expect(reply.quote).toMatchObject({ id: m.clientId, text: null });
      expect(rawText(c)).not.toContain('secret plan');
    }
    await expect(bob.engine.editMessage(conv, m.clientId, 'x')).rejects.toMatchObject({ code: 'not_allowed' });
    alice.engine.close();
    bob.engine.close();
  });

  it('a member cannot delete someone else’s message; a group admin can', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'g' });
    await online([alice, bob, carol], conv);
    const refused = refusals(alice);
    await bob.engine.sendText(conv, 'spam link');
    const m = await has(alice, conv, byBody('spam link'), 'spam');
    await has(carol, conv, byBody('spam link'), 'spam');
    await expect(carol.engine.deleteForEveryone(conv, m.clientId)).rejects.toMatchObject({ code: 'not_allowed' });
    const sock = await sendRaw(w, carol, conv, 'carol-del', { t: 'delete', conv, target: m.clientId });
    await until(() => refused.some((r) => r.id === 'carol-del'), 'carol’s delete refused');
    expect(refused).toContainEqual({ id: 'carol-del', code: 'not_allowed' });
    expect(await texts(alice.engine, conv)).toEqual(['spam link']);
    await alice.engine.deleteForEveryone(conv, m.clientId); // the owner moderates
    for (const c of [alice, bob, carol])
      await has(c, conv, (x) => x.clientId === m.clientId && x.deleted?.by === 'alice', 'deleted by the owner');
    sock.close();
    for (const c of [alice, bob, carol]) c.engine.close();
  });

  it('an edit and a delete racing from two devices converge on “deleted” on every device', async () => {
    for (const order of ['edit first', 'delete first'] as const) {
      const w = await makeWorld();
      const alice = await newClient(w, 'alice');
      const alice2 = await linkDevice(w, alice, 'alice-2');
      const bob = await newClient(w, 'bob');
      const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
      await online([alice, alice2, bob], conv);
      await alice.engine.sendText(conv, 'original words');
      const m = await has(alice2, conv, byBody('original words'), 'alice-2 has it');
      await has(bob, conv, byBody('original words'), 'bob has it');
      // Neither device hears of the other's action before sending its own.
      w.server.setOnline('alice', 'alice-1', false);
      w.server.setOnline('alice', 'alice-2', false);
      await alice.engine.editMessage(conv, m.clientId, 'edited words');
      await alice2.engine.deleteForEveryone(conv, m.clientId);
      const [first, second] = order === 'edit first' ? ['alice-1', 'alice-2'] : ['alice-2', 'alice-1'];
      const known = new Set(w.server.conversations.get(conv)!.ids.keys());
      const sequenced = (d: string) => () =>
        [...w.server.conversations.get(conv)!.ids.keys()].some((k) => !known.has(k) && k.startsWith(`alice\n${d}\n`));
      w.server.setOnline('alice', first as string, true);
      await until(sequenced(first as string), `${first}'s action sequenced first`);
      w.server.setOnline('alice', second as string, true);
      await until(sequenced(second as string), `${second}'s action sequenced second`);
      for (const c of [alice, alice2, bob]) {
        const x = await has(
          c,
          conv,
          (y) => y.clientId === m.clientId && !!y.deleted && !y.pending,
          `${order}: deleted`,
        );
        expect(x.body, `${order} ${c.deviceId}`).toBeNull();
        expect(rawText(c)).not.toContain('edited words');
        expect(rawText(c)).not.toContain('original words');
      }
      for (const c of [alice, alice2, bob]) c.engine.close();
    }
  });
});

describe('delivery in groups', () => {
  it('R8: a group message shows delivered only once every other member has it — "1 of 2" after the first receipt', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'Plans' });
    await online([alice, bob], conv); // Carol is away
    const events: EngineEvent[] = [];
    alice.engine.on((e) => events.push(e));
    const sent = await alice.engine.sendText(conv, 'dinner at eight?');
    await has(bob, conv, byBody('dinner at eight?'), 'bob has it');
    const mine = async () => (await alice.engine.messages(conv)).find((m) => m.clientId === sent.clientId);
    await until(async () => (await mine())?.delivery?.to === 1, "bob's receipt counted");
    await alice.engine.flushOutbox();
    expect(await mine()).toMatchObject({ status: 'sent', delivery: { to: 1, of: 2 } });
    expect(events.some((e) => e.type === 'message_updated' && e.message.status === 'delivered')).toBe(false);
    // Carol comes online: her receipt completes it.
    await online([carol], conv);
    await has(carol, conv, byBody('dinner at eight?'), 'carol has it');
    await until(async () => (await mine())?.status === 'delivered', "carol's receipt");
    expect((await mine())?.delivery).toEqual({ to: 2, of: 2 });
    for (const c of [alice, bob, carol]) c.engine.close();
  });
});

describe('a group message waiting for receipts in the outbox', () => {
  it('rv11 (R8): a member who never answers leaves one slim outbox entry, gone after RECEIPT_WAIT_MS', async () => {
    let skew = 0;
    const w = await makeWorld({ now: () => Date.now() + skew });
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    await newClient(w, 'carol'); // never comes online: no receipt from her, ever
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'Plans' });
    await online([alice, bob], conv);
    const sent = await alice.engine.sendText(conv, 'dinner at eight?');
    await has(bob, conv, byBody('dinner at eight?'), 'bob has it');
    const mine = async () => (await alice.engine.messages(conv)).find((m) => m.clientId === sent.clientId);
    await until(async () => (await mine())?.delivery?.to === 1, "bob's receipt counted");
    const entry = async () => {
      const raw = await alice.store.get(`out/${sent.clientId}`);
      return raw === undefined ? undefined : decodeRecord<OutboxEntry>(raw);
    };
    // Kept to count Carol's receipt, but never sent again: no payload, no ciphertext.
    expect(await entry()).toMatchObject({ state: 'sent', deliveredTo: [bob.userId], items: null, group: null });
    expect((await entry())?.payload.length).toBe(0);
    // Past the wait no receipt can come: the entry leaves at the next flush, the message still shows 1 of 2.
    skew = RECEIPT_WAIT_MS + 1000;
    await alice.engine.flushOutbox();
    expect(await entry()).toBeUndefined();
    expect(await mine()).toMatchObject({ status: 'sent', delivery: { to: 1, of: 2 } });
    for (const c of [alice, bob]) c.engine.close();
  });

  it('R8: a member added after the send is not waited for — the members it was sent to make it delivered', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const dave = await newClient(w, 'dave');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'Plans' });
    await online([alice, bob], conv);
    const sent = await alice.engine.sendText(conv, 'before dave');
    const mine = async () => (await alice.engine.messages(conv)).find((m) => m.clientId === sent.clientId);
    await until(async () => (await mine())?.delivery?.to === 1, "bob's receipt counted");
    await alice.engine.addMember(conv, 'dave');
    await online([carol], conv);
    await until(async () => (await mine())?.status === 'delivered', "carol's receipt completes it");
    expect((await mine())?.delivery).toEqual({ to: 2, of: 2 });
    for (const c of [alice, bob, carol, dave]) c.engine.close();
  });

  it('R8: when the only member still lacking it is removed, the message is delivered (no receipt will come)', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'Plans' });
    await online([alice, bob], conv); // Carol never comes back
    const sent = await alice.engine.sendText(conv, 'last call');
    const mine = async () => (await alice.engine.messages(conv)).find((m) => m.clientId === sent.clientId);
    await until(async () => (await mine())?.delivery?.to === 1, "bob's receipt counted");
    expect((await mine())?.status).toBe('sent');
    await alice.engine.removeMember(conv, 'carol');
    await until(async () => (await mine())?.status === 'delivered', 'delivered to every member left');
    expect((await mine())?.delivery).toEqual({ to: 1, of: 1 });
    for (const c of [alice, bob, carol]) c.engine.close();
  });
});
