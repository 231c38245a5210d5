import { describe, expect, it } from 'vitest';
import type { MessageView } from '../../engine/context.js';
import { order, upsert } from './messages.js';

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
});
