/**
 * Message pages: a small page (the newest, a list preview, an older one) is read seq by seq down from the
 * conversation's `top` instead of listing it — with exactly the messages the whole list gives, also in a
 * store whose `top` did not bound every message (history imported before it did).
 */
import { describe, expect, it } from 'vitest';
import type { MessageView } from './context.js';
import { Messages } from './messages.js';
import { memoryStore, type Store, writeJson } from './storage.js';

const C = 'conv1';
const NOW = 1_000_000;

function message(seq: number | null, extra: Partial<MessageView> = {}): MessageView {
  return {
    conversationId: C,
    seq,
    clientId: `id${seq ?? `p${extra.sentAt}`}`,
    from: { userId: 'u', deviceId: 'd' },
    outgoing: false,
    body: `m${seq}`,
    status: 'received',
    sentAt: seq ?? 0,
    receivedAt: seq ?? 0,
    ...extra,
  };
}

/** The store, and how often it listed a conversation's messages. */
function counted() {
  const base = memoryStore();
  const lists = { n: 0 };
  const store: Store = {
    ...base,
    list: (dir) => {
      if (dir.startsWith('msg/')) lists.n++;
      return base.list(dir);
    },
  };
  return { store, lists };
}

/** What `page` returns, from the whole list (the reference). */
async function reference(m: Messages, beforeSeq: number | undefined, limit: number) {
  const all = (await m.all(C)).filter((x) => beforeSeq === undefined || (x.seq ?? 0) < beforeSeq);
  return all.slice(Math.max(0, all.length - limit));
}

describe('message pages read newest first', () => {
  it('give what the whole list gives — gaps, expired messages, older pages, pending ones — without listing', async () => {
    const { store, lists } = counted();
    const m = new Messages(store, () => NOW);
    // Seqs 1..400 with gaps (receipts, reactions take seqs too); every 7th message expired.
    let x = 7;
    for (let seq = 1; seq <= 400; seq++) {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      if (x % 3 === 0) continue;
      const expired = seq % 7 === 0;
      await store.transaction((tx) => m.putInTx(tx, message(seq, expired ? { expiresAt: NOW - 1 } : {})));
    }
    // A long run of seqs without a message below the top one (a burst of receipts), and a pending message.
    await store.transaction((tx) => m.putInTx(tx, message(460)));
    await m.putPending(message(null, { sentAt: 5 }));
    await m.page(C, { limit: 1 }); // the first page checks that `top` bounds the conversation (a list)
    lists.n = 0;
    for (const limit of [1, 3, 50, 200]) {
      for (const beforeSeq of [undefined, 460, 300, 57, 2, 1]) {
        const got = await m.page(C, { limit, ...(beforeSeq === undefined ? {} : { beforeSeq }) });
        const want = await reference(m, beforeSeq, limit);
        if (beforeSeq === undefined) want.push(message(null, { sentAt: 5 }));
        expect(got).toEqual(want);
      }
    }
    expect(lists.n).toBe(4 * 6); // only the reference listed
  });

  it('a store whose messages lie above `top` (a history import before it raised `top`) still shows the newest', async () => {
    const { store } = counted();
    const m = new Messages(store, () => NOW);
    await store.transaction((tx) => m.putInTx(tx, message(10)));
    // As an older import wrote them: message records only, `top` left at 10.
    await store.transaction(async (tx) => {
      for (const seq of [11, 30]) writeJson(tx, `msg/${C}/${seq.toString().padStart(16, '0')}`, message(seq));
    });
    expect((await m.page(C, { limit: 1 })).map((x) => x.seq)).toEqual([30]);
    expect((await m.page(C, { limit: 1 })).map((x) => x.seq)).toEqual([30]); // read down from the raised `top`
    expect((await m.page(C, { limit: 5 })).map((x) => x.seq)).toEqual([10, 11, 30]);
    await store.transaction((tx) => m.putInTx(tx, message(31)));
    expect((await m.page(C, { limit: 2 })).map((x) => x.seq)).toEqual([30, 31]);
  });
});
