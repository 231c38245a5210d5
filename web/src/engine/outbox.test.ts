/**
 * Outbox: delivery receipts queued while an earlier one is not encrypted yet merge into it (one receipt,
 * one ciphertext per member device, instead of one per received batch), up to MAX_RECEIPT_IDS.
 */
import { describe, expect, it } from 'vitest';
import { nobleCurves } from './_protocol.js';
import { encodeRecord } from './codec.js';
import type { EngineContext } from './context.js';
import { memoryLocks } from './locks.js';
import { decodePayload } from './messages.js';
import { Outbox, type OutboxEntry } from './outbox.js';
import { memoryStore } from './storage.js';
import { cryptoRng } from './testing/harness.js';
import { ApiError } from './transport.js';

function outbox() {
  const ctx: EngineContext = {
    store: memoryStore(),
    api: undefined as unknown as EngineContext['api'],
    curves: nobleCurves,
    rng: cryptoRng,
    now: Date.now,
    locks: memoryLocks(),
    emit: () => {},
  };
  const none = undefined as never;
  return new Outbox(ctx, none, none, none, none, () => false);
}

let n = 0;
const receipt =
  (conversationId: string) =>
  (ids: readonly string[]): OutboxEntry => ({
    clientId: `r${++n}`,
    conversationId,
    kind: 'receipt',
    receiptStatus: 'delivered',
    payload: encodeRecord({ t: 'receipt', conv: conversationId, status: 'delivered', ids }),
    receiptIds: ids,
    mode: 'pairwise',
    items: null,
    group: null,
    state: 'sending',
    seq: null,
    attempts: 0,
    createdAt: 1,
    visible: false,
  });
const ids = (from: number, count: number) => Array.from({ length: count }, (_, i) => `m${from + i}`);
const covered = (e: OutboxEntry) => {
  const p = decodePayload(e.payload);
  return p?.t === 'receipt' ? [...p.ids] : [];
};

describe('delivery receipts', () => {
  it('receipts queued before the first one is encrypted merge into it; each conversation has its own', async () => {
    const o = outbox();
    await o.enqueueReceipt('c1', ids(0, 10), receipt('c1'));
    await o.enqueueReceipt('c1', ids(10, 10), receipt('c1'));
    await o.enqueueReceipt('c2', ids(100, 5), receipt('c2'));
    await o.enqueueReceipt('c1', [...ids(15, 10)], receipt('c1'));
    const all = await o.entries();
    expect(all.map((e) => e.conversationId).sort()).toEqual(['c1', 'c2']);
    const c1 = all.find((e) => e.conversationId === 'c1')!;
    expect(covered(c1)).toEqual(ids(0, 25));
    expect(c1.receiptIds).toEqual(ids(0, 25));
    expect(covered(all.find((e) => e.conversationId === 'c2')!)).toEqual(ids(100, 5));
  });

  it('a receipt never grows past the cap: the overflow starts a new receipt, and no id is lost', async () => {
    const o = outbox();
    for (let i = 0; i < 7; i++) await o.enqueueReceipt('c1', ids(i * 10, 10), receipt('c1'));
    const all = await o.entries();
    expect(all.length).toBe(2);
    expect(all.every((e) => covered(e).length <= 64)).toBe(true);
    expect(all.flatMap(covered).sort()).toEqual(ids(0, 70).sort());
  });
});

describe('order and failures', () => {
  const entry = (clientId: string, body: string): OutboxEntry => ({
    clientId,
    conversationId: 'c1',
    kind: 'message',
    payload: new TextEncoder().encode(body),
    mode: 'pairwise',
    items: null,
    group: null,
    state: 'sending',
    seq: null,
    attempts: 0,
    createdAt: 1,
    visible: false,
  });

  it('an entry refused for good (the key directory answers 403) lets the next one of its conversation go in the same flush', async () => {
    const ctx: EngineContext = {
      store: memoryStore(),
      api: undefined as unknown as EngineContext['api'],
      curves: nobleCurves,
      rng: cryptoRng,
      now: Date.now,
      locks: memoryLocks(),
      emit: () => {},
    };
    const device = { deviceId: 'd1' };
    const groups = { recipients: async () => [{ userId: 'bob', devices: [device] }] };
    const directory = { assertSendable: async () => {} };
    // The first payload's bundle claim is refused; later ones find a session.
    const sessions = {
      encryptFor: async (_u: string, _d: unknown, p: Uint8Array) => {
        if (new TextDecoder().decode(p) === 'refused') throw new ApiError(403, 'forbidden');
        return [{ deviceId: 'd1', ciphertext: p }];
      },
    };
    const sent: string[] = [];
    const failed: string[] = [];
    const o = new Outbox(
      ctx,
      sessions as never,
      groups as never,
      directory as never,
      undefined as never,
      (_c, frame) => {
        sent.push((frame as { id: string }).id);
        return true;
      },
      { failed: async (e) => void failed.push(e.clientId) },
    );
    await o.enqueue(entry('e1', 'refused'));
    await o.enqueue(entry('e2', 'refused'));
    await o.enqueue(entry('e3', 'fine'));
    await o.enqueue(entry('e4', 'fine'));
    await o.flush('c1');
    expect(failed).toEqual(['e1', 'e2']);
    // e3 goes out; e4 waits for e3's answer (one entry in flight per conversation keeps the server's order).
    expect(sent).toEqual(['e3']);
    expect((await o.entries()).map((e) => [e.clientId, e.state])).toEqual([
      ['e1', 'failed'],
      ['e2', 'failed'],
      ['e3', 'sending'],
      ['e4', 'sending'],
    ]);
  });
});
