/**
 * The Worker's entry module: the HTTP app (worker/app.ts — routes are mounted there), the Durable Object
 * classes and the cron handler.
 */
import { app } from './app.js';
import { makeDb } from './db.js';
import { deliveryConfig } from './delivery/config.js';
import { cleanupExpired } from './delivery/mailbox-db.js';
import { cleanupAttachments } from './domain/attachments.js';
import type { Env } from './env.js';
import { log } from './log.js';

export { ConversationDO } from './conversation.js';
export { KeyLogDO } from './kt-log.js';
export { RateLimiter } from './limiter.js';
export { ProbeDO } from './probe.js';

/**
 * Cron (wrangler.toml [triggers]): expired mailbox envelopes (DELIVERY_LIMITS.mailboxTtlMs), orphaned group
 * envelopes, revoked devices' leftovers, expired WebSocket tickets, login challenges and MFA steps; and
 * attachments past ATTACHMENT_LIMITS.retentionMs (30 days) or never uploaded (blob, then row).
 */
async function scheduled(_controller: ScheduledController, env: Env, _ctx: ExecutionContext): Promise<void> {
  try {
    const counts = await cleanupExpired(makeDb(env), deliveryConfig(env.DELIVERY_LIMITS).mailboxTtlMs);
    const attachments = await cleanupAttachments(env);
    log('info', 'cleanup', { ...counts, ...attachments });
  } catch (err) {
    log('error', 'cleanup_failed', { type: err instanceof Error ? err.name : 'unknown' });
    throw err;
  }
}

export default { fetch: app.fetch, scheduled } satisfies ExportedHandler<Env>;
