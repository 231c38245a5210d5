/**
 * Webhook delivery settings, with the reason for each default. A deployment (or the test pool) overrides any
 * of them with the WEBHOOK_SETTINGS variable (JSON), e.g. `{"retryScheduleSec": [0, 1, 1], "timeoutMs": 500}`
 * to exercise retries and disabling in seconds.
 */
import { z } from 'zod';

export const WEBHOOK_DEFAULTS = {
  /**
   * Delay before each attempt of one event, from the Standard Webhooks spec's example schedule: immediately,
   * 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h (≈ 75 h in all, within a queue's 4-day retention).
   * Each delay but the first gets ±10 % jitter. After the last attempt fails the event is dropped, and the
   * endpoint is disabled if nothing reached it since that event's first attempt.
   */
  retryScheduleSec: [0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400],
  /** An attempt that has no response headers after this is a failure (`timeout`). */
  timeoutMs: 10_000,
  /**
   * First attempts made inline by the fan-out (one queue hop from event to endpoint); the rest of a batch,
   * and every retry, become one queue message per attempt (isolated, individually delayed).
   */
  inlineAttempts: 50,
  /** Most parallel requests one consumer invocation makes (Workers allow 6 open connections at once). */
  concurrency: 6,
  /** Longest delay one queue message may carry (Cloudflare Queues: 12 h); longer waits hop. */
  maxQueueDelaySec: 43_200,
  /** Outbox rows older than this are re-sent by the per-minute cron (the inline send must have failed). */
  outboxSweepAfterMs: 60_000,
};

export type WebhookConfig = typeof WEBHOOK_DEFAULTS;

const overrides = z.strictObject({
  retryScheduleSec: z
    .array(
      z
        .number()
        .int()
        .min(0)
        .max(7 * 86400),
    )
    .min(1)
    .max(20)
    .optional(),
  timeoutMs: z.number().int().positive().max(60_000).optional(),
  inlineAttempts: z.number().int().min(0).max(1000).optional(),
  concurrency: z.number().int().positive().max(100).optional(),
  maxQueueDelaySec: z.number().int().positive().max(86_400).optional(),
  outboxSweepAfterMs: z.number().int().positive().optional(),
});

let cached: { json: string; config: WebhookConfig } | undefined;

/** Defaults merged with the WEBHOOK_SETTINGS JSON (empty/undefined: defaults). Throws on invalid JSON. */
export function webhookConfig(json: string | undefined): WebhookConfig {
  if (!json) return WEBHOOK_DEFAULTS;
  if (cached?.json === json) return cached.config;
  const parsed = overrides.safeParse(JSON.parse(json));
  if (!parsed.success) throw new Error('WEBHOOK_SETTINGS is not valid JSON of known settings');
  const config: WebhookConfig = { ...WEBHOOK_DEFAULTS };
  for (const [k, v] of Object.entries(parsed.data)) if (v !== undefined) (config as Record<string, unknown>)[k] = v;
  cached = { json, config };
  return config;
}
