/**
 * The Worker: one Hono app, one sub-app per resource, one onError.
 *
 * Routes (walking skeleton):
 *   GET /api/health                       D1 reachability and the latest applied migration
 *   GET /api/conversations/:id/ws         WebSocket upgrade forwarded to the conversation's Durable Object
 */
import { Hono } from 'hono';
import type { AppBindings } from './env.js';
import { AppError } from './errors.js';
import { log } from './log.js';
import { conversations } from './routes/conversations.js';
import { health } from './routes/health.js';

export { ConversationDO } from './conversation.js';

const app = new Hono<AppBindings>();

app.use('*', async (c, next) => {
  const requestId = c.req.header('cf-ray') ?? crypto.randomUUID();
  c.set('requestId', requestId);
  await next();
  c.header('X-Request-Id', requestId);
});

app.route('/api/health', health);
app.route('/api/conversations', conversations);

app.notFound((c) => c.json({ error: { code: 'not_found', message: 'no such route' } }, 404));

app.onError((err, c) => {
  if (err instanceof AppError) {
    return c.json({ error: { code: err.code, message: err.message, ...err.details } }, err.status);
  }
  // Unknown errors: log the type only (never the message or stack, which may hold input), answer generically.
  log('error', 'unhandled_error', { requestId: c.get('requestId'), type: err?.name ?? 'unknown' });
  return c.json({ error: { code: 'internal', message: 'internal error' } }, 500);
});

export default app;
