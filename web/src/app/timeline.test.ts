import { describe, expect, it } from 'vitest';
import type { MessageView } from '../engine/context.js';
import { deviceLinkedLine, type InfoLine, membershipLine, shownLine } from '../engine/info.js';
import { buildTimeline, dayLabel, infoText, linkify, relativeTime, sortMessages } from './timeline.js';

const T0 = new Date(2026, 5, 10, 12, 0, 0).getTime();
const msg = (clientId: string, seq: number | null, sentAt: number, status: MessageView['status'] = 'received') =>
  ({
    conversationId: 'c',
    seq,
    clientId,
    from: { userId: 'u', deviceId: 'd' },
    outgoing: status !== 'received',
    body: clientId,
    status,
    sentAt,
    receivedAt: sentAt,
  }) satisfies MessageView;
const line = (logSeq: number, afterSeq: number, action: InfoLine['event']['action'] = 'add'): InfoLine =>
  membershipLine(
    'c',
    { seq: logSeq, action, authorUserId: 'alice', target: 'bob', role: 'member', title: null, timestamp: T0 },
    afterSeq,
  );

describe('timeline order', () => {
  it('a failed message keeps its place after a reload instead of sinking below newer messages', () => {
    const list = [
      msg('a', 1, T0),
      msg('failed', null, T0 + 1000, 'failed'),
      msg('b', 2, T0 + 2000),
      msg('c', 3, T0 + 3000),
    ];
    // The engine's page puts local messages last; the timeline puts the failed one where it was written.
    const shuffled = [list[0]!, list[2]!, list[3]!, list[1]!];
    expect(sortMessages(shuffled).map((m) => m.clientId)).toEqual(['a', 'failed', 'b', 'c']);
    // A message being sent right now (newest) stays last.
    expect(
      sortMessages([...shuffled, msg('now', null, T0 + 9000, 'sending')])
        .map((m) => m.clientId)
        .at(-1),
    ).toBe('now');
  });

  it('info lines sit after the message seq they follow; lines before the loaded page wait for it', () => {
    const messages = [msg('m5', 5, T0), msg('m6', 6, T0), msg('m7', 7, T0)];
    const info = [line(3, 6, 'remove'), line(0, 0, 'create'), line(1, 0, 'add'), line(4, 9, 'leave')];
    const all = buildTimeline(messages, info, { now: T0 })
      .filter((e) => e.kind !== 'date')
      .map((e) => e.key);
    expect(all).toEqual(['membership:0', 'membership:1', 'm5', 'm6', 'membership:3', 'm7', 'membership:4']);
    const paged = buildTimeline(messages, info, { hasOlder: true, now: T0 })
      .filter((e) => e.kind !== 'date')
      .map((e) => e.key);
    expect(paged).toEqual(['m5', 'm6', 'membership:3', 'm7', 'membership:4']);
  });

  it('date separators start each day; the new-messages divider precedes the first unread message', () => {
    const day2 = T0 + 86_400_000;
    const entries = buildTimeline([msg('a', 1, T0), msg('b', 2, day2), msg('c', 3, day2)], [], {
      unreadFrom: 'c',
      now: day2,
    });
    expect(entries.map((e) => (e.kind === 'date' ? `date:${e.label}` : e.key))).toEqual([
      'date:Yesterday',
      'a',
      'date:Today',
      'b',
      'unread',
      'c',
    ]);
    expect(dayLabel(T0 - 30 * 86_400_000, T0)).toMatch(/2026/);
  });
});

describe('a contact’s linked device reads as a quiet sentence', () => {
  it('names who linked a device, "You" for us', () => {
    const l = deviceLinkedLine('c', 'alice', 'd2', 4, T0);
    expect(infoText(l, (u) => (u === 'alice' ? 'Alice' : u), 'bob')).toBe('Alice linked a new device');
    expect(infoText(l, (u) => u, 'alice')).toBe('You linked a new device');
    expect(l.id).toBe('device:alice:d2');
  });
});

describe('membership lines read as sentences', () => {
  const names: Record<string, string> = { alice: 'alice', bob: 'bob' };
  const name = (u: string) => names[u] ?? u;
  it('names the actor and the target, and says "you" for us', () => {
    expect(infoText(line(1, 0, 'add'), name, 'carol')).toBe('alice added bob');
    expect(infoText(line(1, 0, 'add'), name, 'bob')).toBe('alice added you');
    expect(infoText(line(1, 0, 'remove'), name, 'alice')).toBe('You removed bob');
    expect(infoText(line(1, 0, 'promote'), name, undefined)).toBe('alice made bob an admin');
    expect(infoText(line(1, 0, 'transfer_ownership'), name, undefined)).toBe('alice made bob the owner');
    const rename = membershipLine(
      'c',
      { seq: 2, action: 'rename', authorUserId: 'alice', target: null, role: null, title: 'Trip 2', timestamp: T0 },
      0,
    );
    expect(infoText(rename, name, undefined)).toBe('alice renamed the group to “Trip 2”');
    const leave = membershipLine(
      'c',
      { seq: 3, action: 'leave', authorUserId: 'bob', target: null, role: null, title: null, timestamp: T0 },
      0,
    );
    expect(infoText(leave, name, undefined)).toBe('bob left');
  });

  it('a leave in a direct chat says the account was deleted; the handover before it is not shown', () => {
    const entry = (seq: number, action: 'leave' | 'transfer_ownership' | 'set_timer') =>
      membershipLine(
        'd',
        {
          seq,
          action,
          authorUserId: 'bob',
          target: action === 'transfer_ownership' ? 'alice' : null,
          role: null,
          title: null,
          timer: action === 'set_timer' ? 3600 : null,
          timestamp: T0,
        },
        0,
      );
    expect(shownLine('direct', entry(2, 'transfer_ownership'))).toBeNull();
    expect(infoText(shownLine('direct', entry(3, 'leave'))!, name, 'alice')).toBe('bob deleted their account');
    expect(infoText(shownLine('group', entry(3, 'leave'))!, name, 'alice')).toBe('bob left');
    expect(shownLine('direct', entry(4, 'set_timer'))?.event.accountDeleted).toBeUndefined();
  });
});

describe('chat list times', () => {
  it('say how long ago, the time today, then the day', () => {
    expect(relativeTime(T0 - 10_000, T0)).toBe('now');
    expect(relativeTime(T0 - 5 * 60_000, T0)).toBe('5 min');
    expect(relativeTime(T0 - 3 * 3_600_000, T0)).toMatch(/09/);
    expect(relativeTime(T0 - 86_400_000, T0)).toBe('Yesterday');
    expect(relativeTime(T0 - 30 * 86_400_000, T0)).not.toBe('Yesterday');
  });
});

describe('links', () => {
  it('http(s) URLs become links; trailing punctuation and other schemes stay text', () => {
    expect(linkify('see https://example.com/a?b=1, and http://x.org.')).toEqual([
      { text: 'see ' },
      { text: 'https://example.com/a?b=1', href: 'https://example.com/a?b=1' },
      { text: ', and ' },
      { text: 'http://x.org', href: 'http://x.org' },
      { text: '.' },
    ]);
    expect(linkify('javascript:alert(1) ftp://x')).toEqual([{ text: 'javascript:alert(1) ftp://x' }]);
    expect(linkify('no links')).toEqual([{ text: 'no links' }]);
  });
});
