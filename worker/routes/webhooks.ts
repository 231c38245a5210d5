/**
 * /api/webhooks — the signed-in account's webhook endpoints (domain logic in worker/domain/webhooks.ts,
 * delivery in worker/webhooks/). Bodies are JSON of at most 16 KiB.
 *
 *   GET    /api/webhooks                    → { endpoints: [endpoint] }
 *   POST   /api/webhooks                    { url, events?, conversationId?, description? } → 201 { endpoint, secret }
 *   GET    /api/webhooks/:id                → { endpoint }
 *   PATCH  /api/webhooks/:id                { url?, events?, conversationId?, description?, enabled? } → { endpoint }
 *   DELETE /api/webhooks/:id                → 204
 *   POST   /api/webhooks/:id/rotate         → { endpoint, secret }   (the previous secret signs for 24 h more)
 *   POST   /api/webhooks/:id/test           → 202 { eventId }
 *   GET    /api/webhooks/:id/deliveries     ?limit → { deliveries: [attempt] }   (newest first, ≤ 100)
 *
 * The secret appears only in the create and rotate answers. A refused URL is a 400 with its code
 * (`webhook_url_*`); another account's endpoint is 404 `not_found`.
 */
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { z } from 'zod';
import { createWebhookBody, updateWebhookBody } from '../../schema/webhooks.js';
import { requireAuth } from '../auth/middleware.js';
import {
  createWebhook,
  deleteWebhook,
  getWebhook,
  listWebhooks,
  rotateWebhookSecret,
  testWebhook,
  updateWebhook,
  webhookDeliveries,
} from '../domain/webhooks.js';
import type { AppBindings } from '../env.js';
import { AppError } from '../errors.js';
import { callerOf, parseInput, readJson } from './input.js';

/** Management bodies are small: a URL (≤ 2 KiB), a description and a list of types. */
export const WEBHOOK_BODY_LIMIT = 16 * 1024;
const webhookBody = bodyLimit({
  maxSize: WEBHOOK_BODY_LIMIT,
  onError: () => {
    throw new AppError(413, 'payload_too_large', 'request body too large');
  },
});
const deliveriesQuery = z.object({ limit: z.coerce.number().int().min(1).max(100).default(100) });

export const webhooks = new Hono<AppBindings>()
  .use('*', webhookBody, requireAuth)
  .get('/', async (c) => c.json({ endpoints: await listWebhooks(callerOf(c)) }))
  .post('/', async (c) => {
    const body = await readJson(c, createWebhookBody);
    return c.json(await createWebhook(callerOf(c), body), 201);
  })
  .get('/:id', async (c) => c.json({ endpoint: await getWebhook(callerOf(c), c.req.param('id')) }))
  .patch('/:id', async (c) => {
    const body = await readJson(c, updateWebhookBody);
    return c.json({ endpoint: await updateWebhook(callerOf(c), c.req.param('id'), body) });
  })
  .delete('/:id', async (c) => {
    await deleteWebhook(callerOf(c), c.req.param('id'));
    return c.body(null, 204);
  })
  .post('/:id/rotate', async (c) => c.json(await rotateWebhookSecret(callerOf(c), c.req.param('id'))))
  .post('/:id/test', async (c) => c.json(await testWebhook(callerOf(c), c.req.param('id')), 202))
  .get('/:id/deliveries', async (c) => {
    const q = parseInput(deliveriesQuery, c.req.query());
    return c.json({ deliveries: await webhookDeliveries(callerOf(c), c.req.param('id'), q.limit) });
  });
