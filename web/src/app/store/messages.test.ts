import { describe, expect, it } from 'vitest';
import type { MessageView } from '../../engine/context.js';
import { applyLoaded, order, upsert } from './messages.js';

const m = (clientId: string, seq: number | null, sentAt = 0, status: MessageView['status'] = 'sent'): MessageView => ({
  conversationId: 'c',
  seq,
  clientId,
  from: { userId: 'u', deviceId: 'd' },
  outgoing: true,
  body: clientId,
  status,
  sentAt,
  receivedAt: sentAt,
});

describe('message list ordering', () => {
  it('orders sequenced messages by seq, then pending ones by time', () => {
    const list = [m('p2', null, 20), m('s3', 3), m('p1', null, 10), m('s1', 1)].sort(order);
    expect(list.map((x) => x.clientId)).toEqual(['s1', 's3', 'p1', 'p2']);
  });

  it('upsert replaces by clientId: a pending message moves into place when accepted, then turns delivered', () => {
    let list = upsert([m('s1', 1), m('s2', 2)], m('mine', null, 5, 'sending'));
    expect(list.map((x) => x.clientId)).toEqual(['s1', 's2', 'mine']);
    list = upsert(list, m('s3', 3));
    expect(list.map((x) => x.clientId)).toEqual(['s1', 's2', 's3', 'mine']);
    list = upsert(list, m('mine', 4, 5, 'sent'));
    expect(list.map((x) => [x.clientId, x.status])).toEqual([
      ['s1', 'sent'],
      ['s2', 'sent'],
      ['s3', 'sent'],
      ['mine', 'sent'],
    ]);
    list = upsert(list, m('mine', 4, 5, 'delivered'));
    expect(list).toHaveLength(4);
    expect(list[3]!.status).toBe('delivered');
  });

  it('an update to a message older than the loaded page is not inserted while older pages remain (no paging gap)', () => {
    const page = [m('s51', 51), m('s52', 52), m('s53', 53)];
    // A read receipt for message 10 arrives while only 51..53 are shown and 1..50 are still in the store.
    const after = applyLoaded(page, m('s10', 10, 0, 'read'), true);
    // Inserting it would make seq 10 the loadOlder cursor (beforeSeq 10) and skip 11..50.
    expect(after.map((x) => x.clientId)).toEqual(['s51', 's52', 's53']);
    expect(after.find((x) => x.seq !== null)?.seq).toBe(51);
    // Shown messages are updated in place; newer ones and local ones are added.
    expect(applyLoaded(page, m('s52', 52, 0, 'read'), true).map((x) => [x.clientId, x.status])).toEqual([
      ['s51', 'sent'],
      ['s52', 'read'],
      ['s53', 'sent'],
    ]);
    expect(applyLoaded(page, m('s54', 54), true).map((x) => x.clientId)).toEqual(['s51', 's52', 's53', 's54']);
    expect(applyLoaded(page, m('p', null, 9, 'sending'), true).map((x) => x.clientId)).toEqual([
      's51',
      's52',
      's53',
      'p',
    ]);
    // With the whole history shown, an older message has its place in the list.
    expect(applyLoaded(page, m('s10', 10), false).map((x) => x.clientId)).toEqual(['s10', 's51', 's52', 's53']);
  });
});
