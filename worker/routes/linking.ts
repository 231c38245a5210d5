/**
 * /api/link — provisioning channels and linking tokens (domain logic in worker/domain/linking.ts; the
 * channel itself is worker/link-channel.ts). Redeeming a token is POST /api/devices (routes/devices.ts).
 *
 *   POST /api/link/channels                         { channelId }            → 201 { channelId, secret, expiresAt }
 *   POST /api/link/channels/:id/new/poll            { secret, after, waitMs } → { messages, peerAcked, linked }
 *   POST /api/link/channels/:id/new/send            { secret, data }         → { seq }
 *   POST /api/link/channels/:id/new/close           { secret }               → { ok }
 *   POST /api/link/token                 (bearer)   { channelId }            → 201 { linkingToken, expiresAt }
 *   POST /api/link/channels/:id/existing/poll (bearer) { after, waitMs }     → { messages, peerAcked, linked }
 *   POST /api/link/channels/:id/existing/send (bearer) { data }              → { seq }
 *   POST /api/link/channels/:id/existing/close (bearer) {}                   → { ok }
 *
 * The new device's routes are unauthenticated: the channel secret (returned once, at opening) is the
 * credential, in the body so it never appears in a URL or a log. Every answer is `Cache-Control: no-store`.
 */
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { z } from 'zod';
import { requireAuth } from '../auth/middleware.js';
import { clientKey } from '../context.js';
import { channelClose, channelPoll, channelSend, issueLinkingToken, openChannel } from '../domain/linking.js';
import type { AppBindings } from '../env.js';
import { AppError } from '../errors.js';
import { LIMITS } from '../limits.js';
import { b64uBytes } from '../validate.js';
import { callerOf, parseInput, readJson, smallBody } from './input.js';

const channelId = z.string().regex(/^[A-Za-z0-9_-]{22}$/);
const secret = z.string().regex(/^[A-Za-z0-9_-]{43}$/);
const cursor = z.number().int().min(0).max(1_000_000);
const wait = z.number().int().min(0).max(LIMITS.linkPollMaxWaitMs).optional();

export const openChannelBody = z.object({ channelId });
export const newPollBody = z.object({ secret, after: cursor, waitMs: wait });
export const newSendBody = z.object({ secret, data: b64uBytes({ max: LIMITS.linkMaxReplyBytes }) });
export const newCloseBody = z.object({ secret });
export const tokenBody = z.object({ channelId });
export const existingPollBody = z.object({ after: cursor, waitMs: wait });
export const existingSendBody = z.object({ data: b64uBytes({ max: LIMITS.linkMaxMessageBytes }) });

/** A sealed history chunk frame is ≈ 197 KB, ≈ 263 KB in base64url. */
const channelBody = bodyLimit({
  maxSize: Math.ceil((LIMITS.linkMaxMessageBytes * 4) / 3) + 1024,
  onError: () => {
    throw new AppError(413, 'payload_too_large', 'request body too large');
  },
});

const id = (p: string | undefined) => parseInput(channelId, p);

export const linking = new Hono<AppBindings>()
  .use('*', async (c, next) => {
    await next();
    c.header('Cache-Control', 'no-store');
  })
  .post('/channels', smallBody, async (c) => {
    const body = await readJson(c, openChannelBody);
    return c.json(await openChannel(c.env, clientKey(c), body.channelId), 201);
  })
  .post('/channels/:id/new/poll', smallBody, async (c) => {
    const body = await readJson(c, newPollBody);
    const ch = id(c.req.param('id'));
    return c.json(await channelPoll(c.env, ch, { side: 'new', secret: body.secret }, body.after, body.waitMs ?? 0));
  })
  .post('/channels/:id/new/send', smallBody, async (c) => {
    const body = await readJson(c, newSendBody);
    const ch = id(c.req.param('id'));
    return c.json(await channelSend(c.env, ch, { side: 'new', secret: body.secret }, body.data));
  })
  .post('/channels/:id/new/close', smallBody, async (c) => {
    const body = await readJson(c, newCloseBody);
    const ch = id(c.req.param('id'));
    return c.json(await channelClose(c.env, ch, { side: 'new', secret: body.secret }));
  })
  .post('/token', smallBody, requireAuth, async (c) => {
    const body = await readJson(c, tokenBody);
    return c.json(await issueLinkingToken(callerOf(c), body.channelId), 201);
  })
  .post('/channels/:id/existing/poll', smallBody, requireAuth, async (c) => {
    const body = await readJson(c, existingPollBody);
    const ch = id(c.req.param('id'));
    const { userId, deviceId } = c.get('auth');
    return c.json(await channelPoll(c.env, ch, { side: 'existing', userId, deviceId }, body.after, body.waitMs ?? 0));
  })
  .post('/channels/:id/existing/send', channelBody, requireAuth, async (c) => {
    const body = await readJson(c, existingSendBody);
    const ch = id(c.req.param('id'));
    const { userId, deviceId } = c.get('auth');
    return c.json(await channelSend(c.env, ch, { side: 'existing', userId, deviceId }, body.data));
  })
  .post('/channels/:id/existing/close', smallBody, requireAuth, async (c) => {
    const ch = id(c.req.param('id'));
    const { userId, deviceId } = c.get('auth');
    return c.json(await channelClose(c.env, ch, { side: 'existing', userId, deviceId }));
  });
