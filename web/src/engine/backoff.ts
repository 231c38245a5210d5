/**
 * The engine's retry delays: capped doubling with jitter. Retry `attempt` (0 for the first) waits
 * `min(maxMs, baseMs · 2^attempt)` scaled into [½, 1) of that by the injected randomness, so clients that
 * failed together (a server restart) do not all come back in the same instant. The engine takes no global
 * randomness or clock: the draw comes from the caller's `Rng` (EngineContext.rng), never Math.random.
 *
 * Used by the outbox's transient retries, the membership-log gap back-off (groups.ts), a failing
 * conversation's mailbox retries (engine.ts) and — through `unitInterval` — the sockets' reconnects.
 *
 * Does NOT: schedule anything (callers own their timers) or count attempts.
 * @module
 */
import type { Rng } from './_protocol.js';

export interface Backoff {
  readonly baseMs: number;
  readonly maxMs: number;
}

/** A number in [0, 1) from four bytes of `rng`. */
export function unitInterval(rng: Rng): number {
  const b = rng(4);
  return (((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0) / 2 ** 32;
}

/** The delay (ms) before retry `attempt` (0-based): capped doubling, jittered into [½, 1) of it by `rng`. */
export function backoffDelay(b: Backoff, attempt: number, rng: Rng): number {
  const full = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return full * (0.5 + unitInterval(rng) / 2);
}
