/**
 * backoff.ts: the engine's retry delays double from base to the cap and are jittered into [½, 1) by the
 * injected rng; the engine's retries (outbox, socket reconnects, mailbox recovery) never use Math.random.
 */
import { describe, expect, it, vi } from 'vitest';
import { backoffDelay, unitInterval } from './backoff.js';
import { makeWorld, newClient, online, texts, until } from './testing/harness.js';

const fill = (byte: number) => (n: number) => new Uint8Array(n).fill(byte);

describe('backoffDelay', () => {
  const b = { baseMs: 100, maxMs: 1_000 };
  it('doubles from baseMs per attempt up to maxMs; the lowest draw waits half, the highest almost all of it', () => {
    expect([0, 1, 2, 3, 4, 5, 40].map((a) => backoffDelay(b, a, fill(0)))).toEqual([50, 100, 200, 400, 500, 500, 500]);
    const high = [0, 1, 2, 3, 4].map((a) => backoffDelay(b, a, fill(0xff)));
    expect(high.map((ms) => Math.round(ms))).toEqual([100, 200, 400, 800, 1000]);
    for (const [i, ms] of high.entries()) expect(ms).toBeLessThan(Math.min(1_000, 100 * 2 ** i));
  });

  it('draws its jitter from the rng it is given (four bytes per delay), never from Math.random', () => {
    const random = vi.spyOn(Math, 'random');
    const asked: number[] = [];
    const rng = (n: number) => {
      asked.push(n);
      return new Uint8Array([0x80, 0, 0, 0]);
    };
    expect(unitInterval(rng)).toBe(0.5);
    expect(backoffDelay(b, 1, rng)).toBe(150);
    expect(asked).toEqual([4, 4]);
    expect(random).not.toHaveBeenCalled();
    random.mockRestore();
  });
});

describe('the engine takes no global randomness for its retries', () => {
  it('an offline send retried many times and sockets reconnecting after the network came back draw on the injected rng only', async () => {
    const random = vi.spyOn(Math, 'random');
    const w = await makeWorld();
    const alice = await newClient(w, 'alice', 'alice-1', { engine: { outboxRetry: { baseMs: 2, maxMs: 10 } } });
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await online([alice, bob], conv);
    await alice.engine.idle();
    w.server.setReachable('alice', 'alice-1', false); // her socket drops and reconnects with back-off
    await alice.engine.sendText(conv, 'typed offline'); // Bob's bundle is not held: its claim is retried
    await until(() => w.server.refused.filter((r) => r.user === 'alice').length > 5, 'several retries');
    w.server.setReachable('alice', 'alice-1', true);
    await until(async () => (await texts(bob.engine, conv)).length === 1, 'delivered once back');
    expect(random).not.toHaveBeenCalled();
    random.mockRestore();
    alice.engine.close();
    bob.engine.close();
  });
});
