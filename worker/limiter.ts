/**
 * RateLimiter — exact sliding-window rate limits (the Workers Rate Limiting binding is approximate).
 *
 * One Durable Object per (bucket, shard); a key (an account hash, a hashed client address, a device) lives
 * in shard `fnv1a(key) mod rule.shards`, so every hit for a key is serialised in one object. Buckets keyed by
 * account names use ONE shard (`shards: 1`): every sign-in attempt, for a known name or a never-seen one,
 * touches the same object, so a warm object tells nothing about which names were used (issue 12 item 7).
 *
 * Responsibilities: remember the timestamps of each key's recent hits (bounded by its limit), answer allowed
 * or retry-after, take back a reserved hit (`release`: the "count failures, not successes" buckets reserve
 * a hit before the check and release it when the attempt succeeds), and forget keys whose hits have all
 * expired (an alarm prunes memory and storage, so state for never-seen usernames does not pile up).
 * Does NOT: know what a key means (callers pass an account hash, a hashed client address or a device).
 */
import { DurableObject } from 'cloudflare:workers';
import type { Env } from './env.js';
import { AppError } from './errors.js';
import { type RateBucket, type RateRule, rateLimits } from './limits.js';
import { count } from './metrics.js';

export interface HitResult {
  allowed: boolean;
  retryAfterMs: number;
  remaining: number;
  /** The timestamp recorded for an allowed hit (pass it to `release`). */
  at: number;
}

const KEY_PREFIX = 'k:';

/** One key's state: its rule's window and the timestamps of its hits in it, oldest first. */
interface KeyState {
  w: number;
  h: number[];
}

export class RateLimiter extends DurableObject<Env> {
  private readonly keys = new Map<string, KeyState>();

  private async load(key: string, windowMs: number): Promise<KeyState> {
    let s = this.keys.get(key);
    if (!s) {
      s = (await this.ctx.storage.get<KeyState>(KEY_PREFIX + key)) ?? { w: windowMs, h: [] };
      this.keys.set(key, s);
    }
    s.w = windowMs || s.w;
    return s;
  }

  private async save(key: string, s: KeyState): Promise<void> {
    if (s.h.length === 0) {
      this.keys.delete(key);
      await this.ctx.storage.delete(KEY_PREFIX + key);
      return;
    }
    this.keys.set(key, s);
    await this.ctx.storage.put(KEY_PREFIX + key, s);
    // Clean-up: once the newest hit has left its window the key is deleted (alarm below).
    const due = s.h[s.h.length - 1]! + s.w + 1000;
    const alarm = await this.ctx.storage.getAlarm();
    if (alarm === null || alarm > due) await this.ctx.storage.setAlarm(due);
  }

  /**
   * Records `n` hits for `key` at `now` if that keeps it within `limit` per `windowMs`; a refused hit is not
   * recorded. Retry-after is when enough of the oldest hits have left the window.
   */
  async hit(key: string, limit: number, windowMs: number, n = 1, now = Date.now()): Promise<HitResult> {
    const s = await this.load(key, windowMs);
    const fresh = s.h.filter((t) => t > now - windowMs);
    if (fresh.length + n > limit) {
      s.h = fresh;
      const oldestToGo = fresh[Math.max(0, fresh.length + n - limit - 1)] ?? now;
      return { allowed: false, retryAfterMs: Math.max(1, oldestToGo + windowMs - now), remaining: 0, at: now };
    }
    for (let i = 0; i < n; i++) fresh.push(now);
    await this.save(key, { w: windowMs, h: fresh });
    return { allowed: true, retryAfterMs: 0, remaining: limit - fresh.length, at: now };
  }

  /** Takes back `n` hits recorded at `at` (a reservation the caller no longer counts). */
  async release(key: string, at: number, n = 1): Promise<void> {
    const s = await this.load(key, 0);
    const h = [...s.h];
    for (let i = 0; i < n; i++) {
      const j = h.lastIndexOf(at);
      if (j < 0) break;
      h.splice(j, 1);
    }
    await this.save(key, { w: s.w, h });
  }

  /** Forgets every hit of `key`. */
  async reset(key: string): Promise<void> {
    await this.save(key, { w: 0, h: [] });
  }

  /** How many hits `key` has in its window (tests and diagnostics). */
  async count(key: string, now = Date.now()): Promise<number> {
    const s = await this.load(key, 0);
    return s.h.filter((t) => t > now - s.w).length;
  }

  /** How many keys have stored state (tests: state for never-seen names does not pile up). */
  async storedKeys(): Promise<number> {
    return (await this.ctx.storage.list({ prefix: KEY_PREFIX })).size;
  }

  /** Deletes every key whose hits have all left its window; re-arms for the next one due. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    for (const [k, s] of await this.ctx.storage.list<KeyState>({ prefix: KEY_PREFIX })) {
      const newest = s.h[s.h.length - 1] ?? 0;
      if (newest <= now - s.w) {
        await this.ctx.storage.delete(k);
        this.keys.delete(k.slice(KEY_PREFIX.length));
      } else next = Math.min(next, newest + s.w + 1000);
    }
    if (next < Number.POSITIVE_INFINITY) await this.ctx.storage.setAlarm(next);
  }
}

/** FNV-1a over the key's UTF-16 code units: a stable shard number. */
function shardOf(key: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % shards;
}

function stub(env: Env, bucket: RateBucket, rule: RateRule, key: string) {
  const shard = shardOf(key, rule.shards ?? 16);
  return env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(`${bucket}#${shard}`));
}

/** A recorded hit that can be taken back (e.g. the attempt succeeded and only failures count). */
export interface Reservation {
  release(): Promise<void>;
}

export function rateLimitError(retryAfterMs: number): AppError {
  const retryAfterSec = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return new AppError(429, 'rate_limited', 'too many requests; try again later', { retryAfterSec });
}

/**
 * Counts `n` hits against every key given (e.g. the account and the client address) and throws 429
 * `rate_limited` with `retryAfterSec` (→ Retry-After) if any is over its limit — then none of the keys keeps
 * the hit. The returned reservation takes the hits back (for buckets that count only failures).
 */
export async function enforceRateLimit(env: Env, bucket: RateBucket, keys: string[], n = 1): Promise<Reservation> {
  const rule = rateLimits(env.RATE_LIMITS)[bucket];
  const results = await Promise.all(keys.map((k) => stub(env, bucket, rule, k).hit(k, rule.limit, rule.windowMs, n)));
  const held = results.map((r, i) => ({ r, key: keys[i]! })).filter(({ r }) => r.allowed);
  const release = async () => {
    await Promise.all(held.map(({ r, key }) => stub(env, bucket, rule, key).release(key, r.at, n)));
  };
  const refused = results.filter((r) => !r.allowed);
  if (refused.length > 0) {
    await release();
    count(env, 'rate_limited', bucket);
    throw rateLimitError(Math.max(...refused.map((r) => r.retryAfterMs)));
  }
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      await release();
    },
  };
}

export async function resetRateLimit(env: Env, bucket: RateBucket, key: string): Promise<void> {
  const rule = rateLimits(env.RATE_LIMITS)[bucket];
  await stub(env, bucket, rule, key).reset(key);
}

/** The limiter object and rule of `key` in `bucket` (tests and diagnostics). */
export function limiterFor(env: Env, bucket: RateBucket, key: string) {
  const rule = rateLimits(env.RATE_LIMITS)[bucket];
  return { stub: stub(env, bucket, rule, key), rule };
}
