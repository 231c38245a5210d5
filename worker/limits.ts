/**
 * Every server-side limit, with the reason for its value. Rate limits can be overridden per deployment
 * with the RATE_LIMITS variable (JSON), so local load tests can raise them.
 */
import { z } from 'zod';
import { MAX_DEVICES_PER_USER } from '../web/src/protocol/constants.js';

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
  /** A deleted account's username stays blocked this long (issue 18: no instant takeover of a name). */
  usernameCooldownMs: 30 * 24 * 3600 * 1000,
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
  /** Wall time one GraphQL request may take before it is cut off (503 QUERY_TIMEOUT). */
  graphqlMaxWallMs: 5000,
  /** Conversations one account may be a member of (create and add refuse past it). */
  maxConversationsPerAccount: 500,
  /** Devices per account unless DEVICE_LIMIT says otherwise (Signal: a phone + 5 linked devices). */
  defaultDeviceLimit: 5,
  /** A provisioning channel (and its linking token) lives this long, then is deleted. */
  linkChannelTtlMs: 10 * 60 * 1000,
  /** Longest a channel poll waits for a message before answering empty. */
  linkPollMaxWaitMs: 25 * 1000,
  /** Largest sealed message to the new device (a provisioning message or a history chunk frame ≈ 197 KB). */
  linkMaxMessageBytes: 200 * 1024,
  /** Largest sealed message from the new device (status and cancel frames are ≈ 1 KB). */
  linkMaxReplyBytes: 4 * 1024,
  /** Bytes waiting for the receiver per direction before a sender must pause (429 channel_full). */
  linkMaxQueuedBytes: 4 * 1024 * 1024,
  /** Everything one channel may carry to the new device (50 MB of history, sealed, retried once, plus the rest). */
  linkMaxTotalBytes: 128 * 1024 * 1024,
  /** Messages one channel may carry per direction. */
  linkMaxMessagesToNew: 2048,
  linkMaxMessagesToExisting: 256,
} as const;

/** Devices per account: DEVICE_LIMIT (1..MAX_DEVICES_PER_USER = 10) or the default of 5. */
export function deviceLimit(raw: string | undefined): number {
  if (!raw) return LIMITS.defaultDeviceLimit;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_DEVICES_PER_USER)
    throw new Error(`DEVICE_LIMIT must be an integer from 1 to ${MAX_DEVICES_PER_USER}`);
  return n;
}

const rate = z.object({
  limit: z.number().int().positive(),
  windowMs: z.number().int().positive(),
  /** Limiter objects the bucket's keys are spread over (worker/limiter.ts); default 16. */
  shards: z.number().int().positive().max(256).optional(),
});
export type RateRule = z.infer<typeof rate>;

const MIN = 60 * 1000;
const HOUR = 60 * MIN;

/**
 * Exact sliding-window limits, enforced by the RateLimiter DO (worker/limiter.ts). "Failures" buckets
 * reserve a hit before the check and release it when the attempt succeeds, so only failures count — a
 * household or office behind one address is not one attacker, and a stranger cannot lock anyone out with
 * requests that never reach a password check (issue 12 items 2 and 4, issue 13 item 6). Account-keyed
 * buckets use one shard: known and never-seen names touch the same object (item 7).
 */
export const DEFAULT_RATE_LIMITS = {
  /** Failed registrations per client address (409 username_taken is the one enumeration answer). */
  register: { limit: 10, windowMs: HOUR },
  /** Successful registrations per client address: a ceiling on mass sign-up, high enough for an office. */
  registerAddress: { limit: 50, windowMs: HOUR },
  /**
   * Public username availability checks (GET /api/auth/username/:username) per client address: what
   * registration's 409 reveals, without key generation. Counted apart from registrations; a household or an
   * office signing up behind one address checks a few names each.
   */
  usernameCheck: { limit: 100, windowMs: HOUR },
  /** Failed password checks per account from a device that did NOT prove its key (new browsers). */
  login: { limit: 10, windowMs: 15 * MIN, shards: 1 },
  /** Failed sign-in attempts per client address, any account (a higher ceiling: one router, many people). */
  loginAddress: { limit: 100, windowMs: 15 * MIN },
  /**
   * Failed password checks per device that proved its key (login challenge signature) or is signed in
   * (password change, TOTP enrolment): such a device is never blocked by strangers' failures.
   */
  loginDevice: { limit: 10, windowMs: 15 * MIN },
  /** Failed identity resets per account (the password is the only proof a reset has). */
  reset: { limit: 10, windowMs: HOUR, shards: 1 },
  /** Failed TOTP / recovery codes per account (sign-in, identity reset, confirm, disable). */
  totp: { limit: 5, windowMs: 5 * MIN, shards: 1 },
  /** Failed TOTP / recovery codes per client address. */
  totpAddress: { limit: 50, windowMs: 5 * MIN },
  /** Login challenges per client address (each one writes a row). */
  challenge: { limit: 60, windowMs: MIN },
  refresh: { limit: 60, windowMs: MIN },
  /** Bundle claims per claiming account and per client address. */
  claim: { limit: 60, windowMs: MIN },
  /** Bundle claims per (claimer, target) pair, as Signal does: one stranger cannot drain one user's prekeys. */
  claimPair: { limit: 10, windowMs: HOUR },
  ticket: { limit: 120, windowMs: MIN },
  /** Username lookups (GET /api/users/by-name/:username) per signed-in account: slows enumeration. */
  lookup: { limit: 120, windowMs: MIN },
  /**
   * Device-list fetches (GET /api/users/:id/device-list) per account: each may ask the one key-transparency
   * log object for a proof (and a fresh head), so it must not be free to repeat; directory refreshes fetch a
   * few dozen.
   */
  deviceList: { limit: 600, windowMs: MIN },
  /** Profile reads (GET /api/users/:id/profile, GraphQL `profile`) per account: chat lists fetch a few dozen. */
  profile: { limit: 600, windowMs: MIN },
  /** Profile and private-settings writes per account (a person edits rarely; devices retry a conflict). */
  people: { limit: 60, windowMs: MIN },
  /** Key-transparency heads and proofs (/api/kt/*), per client address: clients need a few per minute. */
  kt: { limit: 300, windowMs: MIN },
  /** Unauthenticated realtime health check (/api/probe/ws), per client address: 2 sockets per check. */
  probe: { limit: 30, windowMs: MIN },
  /** Conversations (direct or group) created per account. */
  conversationCreate: { limit: 30, windowMs: HOUR },
  /** Members added per account, in creations and later entries (a 64-member group is 63). */
  memberAdd: { limit: 300, windowMs: HOUR },
  /**
   * Test events per account (POST /api/webhooks/:id/test, GraphQL testWebhook): each one is a signed POST the
   * Worker makes to a URL the account chose (retried when it fails), so it must not be free to repeat.
   */
  webhookTest: { limit: 10, windowMs: MIN },
  /** Device challenges per account (POST /api/devices/challenge, GraphQL deviceChallenge): each writes a row. */
  deviceChallenge: { limit: 30, windowMs: MIN },
  /** Provisioning channels opened per client address (unauthenticated): a flood of opens gets 429. */
  link_channel: { limit: 10, windowMs: 10 * 60 * 1000 },
  /** Linking tokens issued per account. */
  link_token: { limit: 10, windowMs: 60 * 60 * 1000 },
  /** Linking-token redemptions per client address (each costs a signature check and a channel lookup). */
  link_redeem: { limit: 20, windowMs: 10 * 60 * 1000 },
} satisfies Record<string, RateRule>;
export type RateBucket = keyof typeof DEFAULT_RATE_LIMITS;

export function rateLimits(json: string | undefined): Record<RateBucket, RateRule> {
  if (!json) return DEFAULT_RATE_LIMITS;
  const parsed = z.record(z.string(), rate).safeParse(JSON.parse(json));
  if (!parsed.success) throw new Error('RATE_LIMITS is not valid JSON of {bucket: {limit, windowMs}}');
  const out: Record<string, RateRule> = { ...DEFAULT_RATE_LIMITS };
  for (const [k, v] of Object.entries(parsed.data)) out[k] = { ...out[k], ...v };
  return out as Record<RateBucket, RateRule>;
}
