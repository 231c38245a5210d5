/**
 * Delivery settings (ConversationDO, tickets, mailbox), with the reason for each default. A deployment can
 * override any of them with the DELIVERY_LIMITS variable (JSON), e.g. `{"sendBurst": 10000}` for a load
 * test. Frame and ciphertext size limits are part of the wire protocol and live in schema/wire.ts.
 */
import { z } from 'zod';

export const DELIVERY_DEFAULTS = {
  /** A WebSocket ticket is single-use and only needs to survive one connect round trip. */
  ticketTtlMs: 30_000,
  /** Unacknowledged envelopes stay in a device's D1 mailbox this long (a device offline longer re-syncs). */
  mailboxTtlMs: 30 * 24 * 3600 * 1000,
  /**
   * How long the DO keeps its own log (message metadata, sender-key ciphertexts and the unacked per-device
   * envelopes already copied to D1) for fast resume and idempotency. 24 h covers deploys, flaky networks and
   * a laptop closed overnight; older gaps are served from the D1 mailbox. Envelopes not yet flushed to D1
   * are never pruned.
   */
  logRetentionMs: 24 * 3600 * 1000,
  /**
   * Outbox → D1 flush delay. Envelopes acknowledged within it never touch D1 (the common case: the
   * recipient is online); everything else reaches D1 within ~this delay, in batched statements. While
   * writes keep coming, alarm runs are at least a quarter of it apart (so within 1.25× this delay).
   */
  flushDelayMs: 2_000,
  /** Rows per alarm run (≤ 250 D1 statements of 8 rows); more is picked up by an immediate re-run. */
  flushMaxRows: 2_000,
  /**
   * Most sends one group commit persists (ConversationDO.drainSends): a burst from many devices shares one
   * SQLite commit and one `deliver` frame per recipient; the cap bounds the commit and the first send's wait.
   */
  commitBatchMax: 64,
  /** Per-device send token bucket: burst and sustained rate (messages and receipts both count). */
  sendBurst: 60,
  sendPerSec: 10,
  /**
   * Longest the ConversationDO trusts its cached member/device set. The membership / revocation / new-device
   * RPCs drop the cache at once, but they are best effort (a failed notification must not let a removed
   * member or revoked device keep sending and receiving): past this age the next send or resume re-reads
   * D1 (one indexed query per conversation per TTL while active).
   */
  deviceSetTtlMs: 30_000,
  /** A socket whose last ping is older than this is closed (clients ping every 30 s). */
  staleSocketMs: 90_000,
  /** How often the alarm looks for stale sockets while any are connected. */
  reapIntervalMs: 60_000,
  /** Envelopes replayed per `resume` before the client is told `more: true`. */
  resumeMaxEnvelopes: 1_000,
  /** GET /api/mailbox page size cap. */
  mailboxPageMax: 200,
} as const;

export type DeliveryConfig = { -readonly [K in keyof typeof DELIVERY_DEFAULTS]: number };

const overrides = z.strictObject(
  Object.fromEntries(Object.keys(DELIVERY_DEFAULTS).map((k) => [k, z.number().int().positive().optional()])) as Record<
    keyof DeliveryConfig,
    z.ZodOptional<z.ZodNumber>
  >,
);

let cached: { json: string; config: DeliveryConfig } | undefined;

/** Defaults merged with the DELIVERY_LIMITS JSON (empty/undefined: defaults). Throws on invalid JSON. */
export function deliveryConfig(json: string | undefined): DeliveryConfig {
  if (!json) return { ...DELIVERY_DEFAULTS };
  if (cached?.json === json) return cached.config;
  const parsed = overrides.safeParse(JSON.parse(json));
  if (!parsed.success) throw new Error('DELIVERY_LIMITS is not valid JSON of known numeric settings');
  const config = { ...DELIVERY_DEFAULTS } as DeliveryConfig;
  for (const [k, val] of Object.entries(parsed.data)) if (val !== undefined) config[k as keyof DeliveryConfig] = val;
  cached = { json, config };
  return config;
}
