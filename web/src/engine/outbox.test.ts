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
