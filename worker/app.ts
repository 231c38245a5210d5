/**
 * The Worker's HTTP app: one Hono app, one sub-app per resource, one onError (worker/index.ts exports it
 * with the Durable Objects and the cron handler). Importable outside workerd (the bad-input suite walks
 * `app.routes` to find every route): nothing here may run workerd-only code at import time.
 *
 * Every response carries the security headers; every JSON body is size-limited; every request gets an
 * id that appears in its log line and the X-Request-Id header. Logs never hold bodies, tokens or keys.
 */
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { drainUnreadBody } from './body-drain.js';
import type { AppBindings } from './env.js';
import { AppError } from './errors.js';
import { LIMITS } from './limits.js';
import { log } from './log.js';
import { attachments, isAttachmentUpload } from './routes/attachments.js';
import { auth } from './routes/auth.js';
import { conversations } from './routes/conversations.js';
import { devices } from './routes/devices.js';
import { graphql } from './routes/graphql.js';
import { health } from './routes/health.js';
import { keys } from './routes/keys.js';
import { kt } from './routes/kt.js';
import { mailbox } from './routes/mailbox.js';
import { profile, settings } from './routes/people.js';
import { probe } from './routes/probe.js';
import { realtime } from './routes/realtime.js';
import { users } from './routes/users.js';
import { ConfigError } from './secrets.js';
import { corsPolicy, cspHeader, securityHeaders } from './security.js';

export const app = new Hono<AppBindings>();

app.use('*', async (c, next) => {
  const requestId = crypto.randomUUID();
  c.set('requestId', requestId);
  const started = Date.now();
  await next();
  c.header('X-Request-Id', requestId);
  // Path only: query strings can carry single-use tickets.
  log('info', 'request', {
    requestId,
    method: c.req.method,
    path: new URL(c.req.url).pathname,
    status: c.res.status,
    ms: Date.now() - started,
  });
});
app.use('*', drainUnreadBody, securityHeaders, cspHeader, corsPolicy);
const globalBodyLimit = bodyLimit({
  maxSize: LIMITS.maxPrekeyBodyBytes,
  onError: () => {
    throw new AppError(413, 'payload_too_large', 'request body too large');
  },
});
// Attachment uploads stream up to their reserved size and count every byte themselves (routes/attachments.ts).
app.use('*', (c, next) => (isAttachmentUpload(c) ? next() : globalBodyLimit(c, next)));

app.route('/api/health', health);
// Realtime (ticket, WebSocket) first: it owns /api/conversations/:id/ws.
app.route('/api/conversations', realtime);
app.route('/api/conversations', conversations);
app.route('/api/mailbox', mailbox);
app.route('/api/probe', probe);
app.route('/api/devices', devices);
app.route('/api/keys', keys);
app.route('/graphql', graphql);
app.route('/api/auth', auth);
app.route('/api/users', users);
app.route('/api/attachments', attachments);
app.route('/api/profile', profile);
app.route('/api/settings', settings);
app.route('/api/kt', kt);
// ROUTES: sub-apps are mounted above this line.

app.notFound((c) => c.json({ error: { code: 'not_found', message: 'no such route' } }, 404));

app.onError((err, c) => {
  if (err instanceof AppError) {
    if (err.status === 429 && typeof err.details?.retryAfterSec === 'number') {
      c.header('Retry-After', String(err.details.retryAfterSec));
    }
    return c.json({ error: { code: err.code, message: err.message, ...err.details } }, err.status);
  }
  // Unknown errors: log the type only (never the message or stack, which may hold input), answer generically.
  const type = err instanceof ConfigError ? `ConfigError: ${err.message}` : (err?.name ?? 'unknown');
  log('error', 'unhandled_error', { requestId: c.get('requestId'), type });
  return c.json({ error: { code: 'internal', message: 'internal error' } }, 500);
});
