/**
 * The Worker's entry module: the HTTP app (worker/app.ts — routes are mounted there), the Durable Object
 * classes, the cron handler and the webhook queue's consumer.
 */
import { app } from './app.js';
import { makeDb } from './db.js';
import { deliveryConfig } from './delivery/config.js';
import { cleanupExpired, mailboxDepth } from './delivery/mailbox-db.js';
import { cleanupAttachments } from './domain/attachments.js';
import { cleanupLinkingTokens } from './domain/linking.js';
import type { Env } from './env.js';
import { log } from './log.js';
import { count } from './metrics.js';
import { handleWebhookBatch } from './webhooks/consumer.js';
import { sweepOutbox } from './webhooks/outbox.js';

export { ConversationDO } from './conversation.js';
export { KeyLogDO } from './kt-log.js';
export { RateLimiter } from './limiter.js';
export { LinkChannelDO } from './link-channel.js';
export { ProbeDO } from './probe.js';

/**
 * The per-minute cron of wrangler.toml [triggers]; every other schedule is the hourly clean-up. Not exported:
 * every named export of the main module must be an entrypoint class (workerd refuses to start otherwise —
 * scripts/worker-exports.test.ts).
 */
const WEBHOOK_SWEEP_CRON = '* * * * *';

/**
 * Cron (wrangler.toml [triggers]). Every minute: webhook events left in the D1 outbox are sent again
 * (worker/webhooks/outbox.ts). Hourly: expired mailbox envelopes (DELIVERY_LIMITS.mailboxTtlMs), orphaned group
 * envelopes, revoked devices' leftovers, expired WebSocket tickets, login challenges and MFA steps, linking
 * tokens; and
 * attachments past ATTACHMENT_LIMITS.retentionMs (30 days) or never uploaded (blob, then row).
 */
async function scheduled(controller: ScheduledController, env: Env, _ctx: ExecutionContext): Promise<void> {
  try {
    const db = makeDb(env);
    if (controller.cron === WEBHOOK_SWEEP_CRON) {
      const sent = await sweepOutbox(env, db);
      if (sent > 0) log('info', 'webhook_outbox_swept', { sent });
      return;
    }
    const counts = await cleanupExpired(db, deliveryConfig(env.DELIVERY_LIMITS).mailboxTtlMs);
    const attachments = await cleanupAttachments(env);
    const linkingTokens = await cleanupLinkingTokens(db);
    log('info', 'cleanup', { ...counts, ...attachments, linkingTokens });
    count(env, 'mailbox_depth', '', await mailboxDepth(db));
  } catch (err) {
    log('error', 'cleanup_failed', { type: err instanceof Error ? err.name : 'unknown' });
    throw err;
  }
}

/** The webhook queue's consumer (wrangler.toml [[queues.consumers]]): worker/webhooks/consumer.ts. */
async function queue(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  await handleWebhookBatch(batch, env);
}

export default { fetch: app.fetch, scheduled, queue } satisfies ExportedHandler<Env>;
