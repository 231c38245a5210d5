/**
 * Every server-side limit, with the reason for its value. Rate limits can be overridden per deployment
 * with the RATE_LIMITS variable (JSON), so local load tests can raise them.
 */
import { z } from 'zod';

export const LIMITS = {
  /** Largest JSON body on any route except prekey uploads (a device list of 10 certificates is ~3 KB). */
  maxBodyBytes: 64 * 1024,
  /** Prekey uploads carry ML-KEM-1024 public keys (1,568 B each, ~2.2 KB base64url with signature). */
  maxPrekeyBodyBytes: 512 * 1024,
  /** One-time EC / ML-KEM prekeys per upload batch. */
  maxPrekeysPerBatch: 100,
  /** Stored one-time prekeys per device and kind (Signal keeps ~100; clients replenish below 20). */
  maxStoredPrekeys: 200,
  /** Below this remaining count, claims report "low" so the owner replenishes. */
  prekeysLowWatermark: 20,
  /** Access-token lifetime (≤ 15 min by design: revocation lag is bounded by it). */
  accessTokenTtlSec: 10 * 60,
  /** Refresh-token lifetime; rotated on every use. */
  refreshTokenTtlMs: 30 * 24 * 3600 * 1000,
  /** A rotated refresh token presented again within this window is a concurrent refresh, not theft. */
  refreshGraceMs: 10 * 1000,
  /** Login challenges are single-use and short-lived. */
  loginChallengeTtlMs: 2 * 60 * 1000,
  /** Pending MFA step after a correct password + device signature. */
  mfaPendingTtlMs: 5 * 60 * 1000,
  /** GraphQL document size, depth, aliases and cost. */
  graphqlMaxQueryBytes: 8 * 1024,
  graphqlMaxDepth: 8,
  graphqlMaxAliases: 15,
  graphqlMaxCost: 5000,
  graphqlMaxTokens: 1000,
} as const;

const rate = z.object({ limit: z.number().int().positive(), windowMs: z.number().int().positive() });
export type RateRule = z.infer<typeof rate>;

/** Exact sliding-window limits, enforced per account and per client address by the RateLimiter DO. */
export const DEFAULT_RATE_LIMITS = {
  register: { limit: 5, windowMs: 60 * 60 * 1000 },
  login: { limit: 10, windowMs: 15 * 60 * 1000 },
  totp: { limit: 5, windowMs: 5 * 60 * 1000 },
  refresh: { limit: 60, windowMs: 60 * 1000 },
  /** Bundle claims: stops one client draining another user's one-time prekeys. */
  claim: { limit: 60, windowMs: 60 * 1000 },
  ticket: { limit: 120, windowMs: 60 * 1000 },
  /** Username lookups (GET /api/users/by-name/:username) per signed-in account: slows enumeration. */
  lookup: { limit: 120, windowMs: 60 * 1000 },
  /** Profile reads (GET /api/users/:id/profile, GraphQL `profile`) per account: chat lists fetch a few dozen. */
  profile: { limit: 600, windowMs: 60 * 1000 },
  /** Profile and private-settings writes per account (a person edits rarely; devices retry a conflict). */
  people: { limit: 60, windowMs: 60 * 1000 },
  /** Unauthenticated realtime health check (/api/probe/ws), per client address: 2 sockets per check. */
  probe: { limit: 30, windowMs: 60 * 1000 },
} satisfies Record<string, RateRule>;
export type RateBucket = keyof typeof DEFAULT_RATE_LIMITS;

export function rateLimits(json: string | undefined): Record<RateBucket, RateRule> {
  if (!json) return DEFAULT_RATE_LIMITS;
  const parsed = z.record(z.string(), rate).safeParse(JSON.parse(json));
  if (!parsed.success) throw new Error('RATE_LIMITS is not valid JSON of {bucket: {limit, windowMs}}');
  return { ...DEFAULT_RATE_LIMITS, ...parsed.data } as Record<RateBucket, RateRule>;
}
