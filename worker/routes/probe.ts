/**
 * GET /api/probe/ws?room=<id> — the status page's realtime health check: a WebSocket to a storage-less
 * echo DO (worker/probe.ts). Unauthenticated on purpose (operators and the status page use it before
 * sign-in), so it is rate-limited per client address and reaches nothing but the probe room.
 */
import { Hono } from 'hono';
import { clientKey } from '../context.js';
import type { AppBindings } from '../env.js';
import { AppError } from '../errors.js';
import { enforceRateLimit } from '../limiter.js';

const ROOM = /^[A-Za-z0-9_-]{8,64}$/;

export const probe = new Hono<AppBindings>().get('/ws', async (c) => {
  const room = c.req.query('room') ?? '';
  if (!ROOM.test(room)) throw new AppError(400, 'bad_room', 'room must be 8-64 of [A-Za-z0-9_-]');
  if (c.req.header('Upgrade')?.toLowerCase() !== 'websocket') {
    throw new AppError(400, 'upgrade_required', 'expected a WebSocket upgrade');
  }
  await enforceRateLimit(c.env, 'probe', [clientKey(c)]);
  const stub = c.env.PROBE.get(c.env.PROBE.idFromName(room));
  return stub.fetch(new Request('https://probe.internal/ws', { headers: { Upgrade: 'websocket' } }));
});
