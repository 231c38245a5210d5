/**
 * The Worker's HTTP app: one Hono app, one sub-app per resource, one onError (worker/index.ts exports it
 * with the Durable Objects and the cron handler). Importable outside workerd (the bad-input suite walks
 * `app.routes` to find every route): nothing here may run workerd-only code at import time.
 *
 * Every response carries the security headers; every JSON body is size-limited; every request gets an
 * id that appears in its log line and the X-Request-Id header. Logs never hold bodies, tokens or keys.
 */
import { type Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { matchedRoutes } from 'hono/route';
import { drainUnreadBody } from './body-drain.js';
import type { AppBindings } from './env.js';
import { AppError } from './errors.js';
import { LIMITS } from './limits.js';
import { log, logId } from './log.js';
import { count } from './metrics.js';
import { account } from './routes/account.js';
import { attachments, isAttachmentUpload } from './routes/attachments.js';
import { auth } from './routes/auth.js';
import { conversations } from './routes/conversations.js';
import { devices } from './routes/devices.js';
import { graphql } from './routes/graphql.js';
import { health } from './routes/health.js';
import { keys } from './routes/keys.js';
import { kt } from './routes/kt.js';
import { linking } from './routes/linking.js';
import { mailbox } from './routes/mailbox.js';
import { profile, settings } from './routes/people.js';
import { probe } from './routes/probe.js';
import { realtime } from './routes/realtime.js';
import { status } from './routes/status.js';
import { users } from './routes/users.js';
import { webhooks } from './routes/webhooks.js';
import { ConfigError } from './secrets.js';
import { corsPolicy, cspHeader, securityHeaders } from './security.js';

export const app = new Hono<AppBindings>();

/**
 * The route pattern that handled (or would have handled) the request — `/api/conversations/:id/log`,
 * never the raw path, which can hold usernames and ids. Global middleware (`/*`) is skipped; a request no
 * route matched is `unmatched`.
 */
export function routePattern(c: Context<AppBindings>): string {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) {
    const p = routes[i]!.path;
    if (p !== '/*' && p !== '*') return p;
  }
  return 'unmatched';
}

/**
 * The stable code of an error answered without onError (GraphQL's `errors[0].extensions.code`, a Durable
 * Object's `{error:{code}}`), read from a copy of the (small) error body; only a lowercase identifier is kept.
 */
async function bodyErrorCode(res: Response): Promise<string> {
  try {
    const b = (await res.clone().json()) as {
      error?: { code?: unknown };
      errors?: { extensions?: { code?: unknown } }[];
    };
    const code = b.error?.code ?? b.errors?.[0]?.extensions?.code;
    return typeof code === 'string' && /^[a-z_]{1,48}$/.test(code) ? code : 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * One log line per request (docs/DEPLOY.md §Observability): request id (also the X-Request-Id header),
 * method, route pattern, status, duration, the error code if any, and the account as a keyed hash.
 */
app.use('*', async (c, next) => {
  const requestId = crypto.randomUUID();
  c.set('requestId', requestId);
  const started = Date.now();
  await next();
  c.header('X-Request-Id', requestId);
  const auth = c.get('auth');
  let code = c.get('errorCode');
  if (code === undefined && c.res.status >= 400) code = await bodyErrorCode(c.res);
  log(c.res.status >= 500 ? 'error' : 'info', 'request', {
    requestId,
    method: c.req.method,
    route: routePattern(c),
    status: c.res.status,
    ms: Date.now() - started,
    code,
    user: auth ? logId(c.env, 'u', auth.userId) : undefined,
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
app.route('/api/link', linking);
app.route('/graphql', graphql);
app.route('/api/auth', auth);
app.route('/api/users', users);
app.route('/api/attachments', attachments);
app.route('/api/profile', profile);
app.route('/api/settings', settings);
app.route('/api/status', status);
app.route('/api/account', account);
app.route('/api/webhooks', webhooks);
app.route('/api/kt', kt);
// ROUTES: sub-apps are mounted above this line.

app.notFound((c) => {
  c.set('errorCode', 'not_found');
  return c.json({ error: { code: 'not_found', message: 'no such route' } }, 404);
});

app.onError((err, c) => {
  const code = err instanceof AppError ? err.code : 'internal';
  c.set('errorCode', code);
  count(c.env, 'errors', code);
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
