/**
 * The engine's side of the timeline a person sees: membership info lines from the verified log, placed
 * after the message they follow, on every member's device; a removed member keeps the conversation,
 * read-only; failed messages can be retried or deleted; texts over the limit are refused.
 */
import { describe, expect, it } from 'vitest';
import type { EngineEvent } from './context.js';
import { MAX_TEXT_BYTES, Messages } from './messages.js';
import { makeWorld, newClient, texts, until } from './testing/harness.js';

describe('info lines from the verified membership log', () => {
  it('every member sees the group’s changes as lines placed among the messages, in conversation order', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'Trip' });
    for (const c of [alice, bob, carol]) await c.engine.connect([conv]);
    for (const c of [alice, bob, carol])
      await until(async () => (await c.engine.connectionStatus(conv)) === 'online', `${c.userId} online`);
    const seen: EngineEvent[] = [];
    bob.engine.on((e) => seen.push(e));
    await alice.engine.sendText(conv, 'first');
    await until(async () => (await texts(bob.engine, conv)).includes('first'), 'bob has first');
    await alice.engine.changeMembership(conv, { action: 'promote', target: 'bob' });
    await alice.engine.changeMembership(conv, { action: 'rename', title: 'Trip 2' });
    await until(async () => (await bob.engine.infoLines(conv)).length === 5, 'bob applied both');
    await alice.engine.sendText(conv, 'second');
    for (const c of [alice, bob, carol])
      await until(
        async () => (await c.engine.messages(conv)).some((m) => m.body === 'second' && m.seq !== null),
        `${c.userId} has second`,
      );

    for (const c of [alice, bob, carol]) {
      const lines = await c.engine.infoLines(conv);
      expect(
        lines.map((l) =>
          l.event.type === 'membership' ? [l.event.action, l.event.actor, l.event.target, l.event.title] : [],
        ),
      ).toEqual([
        ['create', 'alice', null, 'Trip'],
        ['add', 'alice', 'bob', null],
        ['add', 'alice', 'carol', null],
        ['promote', 'alice', 'bob', null],
        ['rename', 'alice', null, 'Trip 2'],
      ]);
      // The creation lines precede every message; the changes sit between "first" and "second".
      const msgs = await c.engine.messages(conv);
      const first = msgs.find((m) => m.body === 'first')!.seq!;
      const second = msgs.find((m) => m.body === 'second')!.seq!;
      expect(lines.slice(0, 3).every((l) => l.afterSeq < first)).toBe(true);
      for (const l of lines.slice(3)) {
        expect(l.afterSeq).toBeGreaterThanOrEqual(first);
        expect(l.afterSeq).toBeLessThan(second);
      }
    }
    expect(
      seen
        .filter((e) => e.type === 'info_added')
        .map((e) => (e.type === 'info_added' && e.line.event.type === 'membership' ? e.line.event.action : '')),
    ).toEqual(['promote', 'rename']);
    expect((await bob.engine.conversation(conv)).title).toBe('Trip 2');
    // Direct conversations have no membership lines.
    const direct = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    expect(await alice.engine.infoLines(direct)).toEqual([]);
    for (const c of [alice, bob, carol]) c.engine.close();
  });

  it('a removed member keeps the conversation, read-only, also after a reload', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const carol = await newClient(w, 'carol');
    await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'g' });
    await alice.engine.connect([conv]);
    await alice.engine.sendText(conv, 'before');
    // The sender key goes first (pairwise), the message after it (group): wait for the message itself.
    await until(
      async () => w.server.pending(conv, 'carol', 'carol-1').some((e) => e.mode === 'group'),
      'carol has mail',
    );
    await carol.engine.syncMailbox();
    expect(await texts(carol.engine, conv)).toEqual(['before']);
    await alice.engine.removeMember(conv, 'carol');
    const views = await carol.engine.conversations();
    expect(views).toEqual([expect.objectContaining({ id: conv, removed: true, myRole: null })]);
    expect(await texts(carol.engine, conv)).toEqual(['before']);
    expect((await alice.engine.conversations())[0]?.removed).toBe(false);
    carol.engine.close();
    alice.engine.close();
  });
});

describe('failed messages and the length limit', () => {
  it('a text over the limit is refused before it is stored; the limit itself is accepted', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await expect(alice.engine.sendText(conv, 'x'.repeat(MAX_TEXT_BYTES + 1))).rejects.toMatchObject({
      code: 'too_long',
    });
    // UTF-8 bytes count, not characters.
    await expect(alice.engine.sendText(conv, 'é'.repeat(MAX_TEXT_BYTES / 2 + 1))).rejects.toMatchObject({
      code: 'too_long',
    });
    expect(await alice.engine.messages(conv)).toEqual([]);
    await alice.engine.sendText(conv, 'x'.repeat(MAX_TEXT_BYTES));
    expect((await alice.engine.messages(conv)).length).toBe(1);
    alice.engine.close();
  });

  it('a failed message is retried as a new message (the failed one removed) or deleted; others are refused', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    // Two messages that failed earlier (e.g. before a reload), as the engine stores them.
    const failed = (clientId: string, body: string) =>
      new Messages(alice.store).putPending({
        conversationId: conv,
        seq: null,
        clientId,
        from: { userId: 'alice', deviceId: 'alice-1' },
        outgoing: true,
        body,
        status: 'failed',
        sentAt: Date.now(),
        receivedAt: Date.now(),
        error: 'send_failed',
      });
    await failed('f1', 'try me again');
    await failed('f2', 'delete me');
    const events: EngineEvent[] = [];
    alice.engine.on((e) => events.push(e));
    await alice.engine.connect([conv]);
    const retried = await alice.engine.retrySend(conv, 'f1');
    expect(retried).toMatchObject({ body: 'try me again', status: 'sending' });
    expect(retried.clientId).not.toBe('f1');
    await alice.engine.discardFailed(conv, 'f2');
    expect(events).toContainEqual({ type: 'message_removed', conversationId: conv, clientId: 'f1' });
    expect(events).toContainEqual({ type: 'message_removed', conversationId: conv, clientId: 'f2' });
    await until(
      async () => (await alice.engine.messages(conv)).some((m) => m.status === 'sent' || m.status === 'delivered'),
      'retry accepted',
    );
    expect((await alice.engine.messages(conv)).map((m) => m.body)).toEqual(['try me again']);
    await bob.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['try me again']);
    // Only failed messages: a sent one is refused, an unknown id too.
    await expect(alice.engine.retrySend(conv, retried.clientId)).rejects.toMatchObject({ code: 'not_failed' });
    await expect(alice.engine.discardFailed(conv, 'nope')).rejects.toMatchObject({ code: 'not_failed' });
    alice.engine.close();
  });
});
