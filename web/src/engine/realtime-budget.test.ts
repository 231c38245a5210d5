/**
 * The realtime layer's ticket budget (issue 12 item 3): every socket open spends one server ticket (120 a
 * minute per device), so an account with hundreds of conversations must not have its opens refused, and the
 * conversation on screen must not wait behind the rest.
 */
import { describe, expect, it } from 'vitest';
import { createRealtime, type FrameSocket, type SocketHandlers } from './transport.js';

/** A manual clock and timer queue, and a socket factory that records every open (ticket) in order. */
function harness(budget = { burst: 3, perMinute: 60 }) {
  let t = 0;
  const timers: { at: number; fn: () => void; id: number }[] = [];
  let nextId = 1;
  const opened: string[] = [];
  const rt = createRealtime({
    connect: async (id: string, _h: SocketHandlers): Promise<FrameSocket> => {
      opened.push(id);
      return { send: () => undefined, close: () => undefined };
    },
    lastSeq: async () => 0,
    now: () => t,
    setTimer: (fn, ms) => {
      const id = nextId++;
      timers.push({ at: t + ms, fn, id });
      return id;
    },
    clearTimer: (h) => {
      const i = timers.findIndex((x) => x.id === h);
      if (i >= 0) timers.splice(i, 1);
    },
    ticketBudget: budget,
  });
  const advance = async (ms: number) => {
    t += ms;
    for (;;) {
      timers.sort((a, b) => a.at - b.at);
      const due = timers[0];
      if (!due || due.at > t) break;
      timers.shift();
      due.fn();
      await Promise.resolve();
    }
    await new Promise((r) => setTimeout(r, 0));
  };
  return { rt, opened, advance };
}

describe('realtime ticket budget', () => {
  it('opens at most the burst at once; the rest open one per 60000 / perMinute ms, in order', async () => {
    const { rt, opened, advance } = harness();
    for (const id of ['a', 'b', 'c', 'd', 'e']) rt.open(id);
    await advance(0);
    expect(opened).toEqual(['a', 'b', 'c']);
    expect(rt.status('d')).toBe('connecting');
    await advance(999);
    expect(opened).toEqual(['a', 'b', 'c']);
    await advance(1);
    expect(opened).toEqual(['a', 'b', 'c', 'd']);
    await advance(1000);
    expect(opened).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('the conversation on screen jumps the queue; a closed one leaves it and spends nothing', async () => {
    const { rt, opened, advance } = harness();
    for (const id of ['a', 'b', 'c', 'd', 'e', 'f']) rt.open(id);
    await advance(0);
    rt.prioritize('f');
    rt.close('e');
    rt.prioritize('a'); // already open: nothing changes
    await advance(1000);
    expect(opened).toEqual(['a', 'b', 'c', 'f']);
    await advance(1000);
    expect(opened).toEqual(['a', 'b', 'c', 'f', 'd']);
    await advance(5000);
    expect(opened).toEqual(['a', 'b', 'c', 'f', 'd']);
  });

  it('the default budget stays under the server limit of 120 tickets a minute', async () => {
    const { rt, opened, advance } = harness({ burst: 100, perMinute: 100 });
    for (let i = 0; i < 500; i++) rt.open(`c${i}`);
    await advance(0);
    expect(opened.length).toBe(100);
    await advance(60_000);
    expect(opened.length).toBe(200);
    expect(new Set(opened).size).toBe(200);
    rt.closeAll();
    await advance(60_000);
    expect(opened.length).toBe(200);
  });
});
