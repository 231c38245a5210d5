/**
 * RateLimiter — an exact sliding-window rate limiter, one Durable Object per (bucket, key) so every hit
 * for a key is serialised (the Workers Rate Limiting binding is approximate).
 *
 * Responsibilities: remember the timestamps of recent hits (bounded by the limit), answer allowed or
 * retry-after. Does NOT: know what the key means (callers pass an account id or a hashed client address).
 */
import { DurableObject } from 'cloudflare:workers';
import type { Env } from './env.js';
import { AppError } from './errors.js';
import { type RateBucket, rateLimits } from './limits.js';

export interface HitResult {
  allowed: boolean;
  retryAfterMs: number;
  remaining: number;
}

export class RateLimiter extends DurableObject<Env> {
  private hits: number[] | undefined;

  /** Records one hit at `now` if under `limit` within `windowMs`; a refused hit is not recorded. */
  async hit(limit: number, windowMs: number, now = Date.now()): Promise<HitResult> {
    this.hits ??= (await this.ctx.storage.get<number[]>('hits')) ?? [];
    const fresh = this.hits.filter((t) => t > now - windowMs);
    if (fresh.length >= limit) {
      this.hits = fresh;
      return { allowed: false, retryAfterMs: fresh[0]! + windowMs - now, remaining: 0 };
    }
    fresh.push(now);
    this.hits = fresh;
    await this.ctx.storage.put('hits', fresh);
    return { allowed: true, retryAfterMs: 0, remaining: limit - fresh.length };
  }

  /** Forget every hit (used after a successful login to clear the failure counter). */
  async reset(): Promise<void> {
    this.hits = [];
    await this.ctx.storage.delete('hits');
  }
}

/**
 * Counts one hit against every key given (e.g. the account and the client address) and throws 429
 * `rate_limited` with Retry-After (seconds) if any is over its limit.
 */
export async function enforceRateLimit(env: Env, bucket: RateBucket, keys: string[]): Promise<void> {
  const rule = rateLimits(env.RATE_LIMITS)[bucket];
  const results = await Promise.all(
    keys.map((k) => env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(`${bucket}:${k}`)).hit(rule.limit, rule.windowMs)),
  );
  const refused = results.filter((r) => !r.allowed);
  if (refused.length > 0) {
    const retryAfterSec = Math.max(1, Math.ceil(Math.max(...refused.map((r) => r.retryAfterMs)) / 1000));
    throw new AppError(429, 'rate_limited', 'too many requests; try again later', { retryAfterSec });
  }
}

export async function resetRateLimit(env: Env, bucket: RateBucket, key: string): Promise<void> {
  await env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(`${bucket}:${key}`)).reset();
}
