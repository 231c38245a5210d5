/** Bindings and secrets the Worker receives (wrangler.toml + .dev.vars / `wrangler secret put`). */
import type { ConversationDO } from './conversation.js';
import type { KeyLogDO } from './kt-log.js';
import type { RateLimiter } from './limiter.js';
import type { LinkChannelDO } from './link-channel.js';
import type { ProbeDO } from './probe.js';
import type { QueueMessage } from './webhooks/events.js';

export interface Env {
  DB: D1Database;
  CONVERSATION: DurableObjectNamespace<ConversationDO>;
  RATE_LIMITER: DurableObjectNamespace<RateLimiter>;
  /** The realtime health check's echo DO (worker/probe.ts); no storage. */
  PROBE: DurableObjectNamespace<ProbeDO>;
  /** Encrypted attachment blobs (object key = attachment id); worker/domain/attachments.ts. */
  ATTACHMENTS: R2Bucket;
  /** One short-lived relay per provisioning channel while a device is linked (worker/link-channel.ts). */
  LINK_CHANNEL: DurableObjectNamespace<LinkChannelDO>;
  /** Webhook events and delivery attempts (worker/webhooks/); producer and consumer in wrangler.toml. */
  WEBHOOK_QUEUE: Queue<QueueMessage>;
  /** The key-transparency log (worker/kt-log.ts): one object, `idFromName('kt-log')`. */
  KT_LOG: DurableObjectNamespace<KeyLogDO>;
  ASSETS?: Fetcher;
  /** Operator counters (worker/metrics.ts): Workers Analytics Engine; a no-op binding locally. */
  METRICS?: AnalyticsEngineDataset;
  /** "production" in wrangler.toml; "development" from .dev.vars; "test" in the workers test pool. */
  APP_ENV: string;
  /** The app's origin for CORS; empty means "same origin as the request". */
  APP_ORIGIN: string;
  /** JSON overrides for rate limits (see limits.ts); empty for defaults. */
  RATE_LIMITS: string;
  /** JSON overrides for delivery settings (see worker/delivery/config.ts); empty for defaults. */
  DELIVERY_LIMITS?: string;
  /** JSON overrides for attachment quotas and retention (see worker/domain/attachments.ts); empty for defaults. */
  ATTACHMENT_LIMITS?: string;
  /** Devices per account, 1..10 (empty: LIMITS.defaultDeviceLimit = 5). */
  DEVICE_LIMIT?: string;
  /** JSON overrides for webhook delivery settings (worker/webhooks/config.ts); empty for defaults. */
  WEBHOOK_SETTINGS?: string;
  /** Development only: `1` logs every webhook queue message (the e2e plaintext scan reads the log). */
  E2E_CHAT_QUEUE_TAP?: string;
  /** JSON overrides for the key-transparency log (see worker/kt-log.ts KT_DEFAULTS); empty for defaults. */
  KT_CONFIG?: string;
  /** The log key's public half (base64url), also built into the client; checked against the secret. */
  KT_LOG_PUBLIC_KEY?: string;
  /** Development only: a key-transparency tampering server for the browser tests (worker/kt-tamper.ts). */
  E2E_CHAT_KT_TAMPER?: string;
  /** Development only: fault injection for the reliability suites (worker/faults.ts); ignored elsewhere. */
  E2E_CHAT_FAULTS?: string;
  /** Secret: access-token HMAC keys as `kid:base64url` pairs separated by commas, newest (signing) first. */
  JWT_SIGNING_KEYS: string;
  /** Secret: base64url AES-256 key that encrypts TOTP secrets at rest. */
  TOTP_ENCRYPTION_KEY: string;
  /** Secret: base64url HMAC key for stored token/recovery-code hashes and client-address hashes. */
  TOKEN_HASH_KEY: string;
  /** Secret: base64url 32-byte Ed25519 seed of the key-transparency log key (signs tree heads). */
  KT_LOG_SIGNING_KEY: string;
}

export interface AuthContext {
  userId: string;
  deviceId: string;
  familyId: string;
}

export type AppBindings = {
  Bindings: Env;
  /** errorCode: the AppError code onError answered with, for the request's log line (worker/index.ts). */
  Variables: { requestId: string; auth: AuthContext; errorCode: string };
};
