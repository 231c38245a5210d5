/**
 * Conversation realtime entry points (mounted at /api/conversations, before the REST sub-app):
 *
 *   POST /api/conversations/:id/ticket   (bearer token; bucket `ticket`) → { ticket, expiresAt, path }
 *   GET  /api/conversations/:id/ws?ticket=…   WebSocket upgrade; the ticket is the only credential
 *
 * The upgrade is refused BEFORE reaching the Durable Object unless the ticket is valid, unused, unexpired
 * and bound to this conversation, the user is a current member, the device is not revoked (PITFALLS
 * 21) and the session that minted it has not been signed out. Sockets are tagged with that session, so
 * sign-out / session revocation / password change / refresh-token reuse close them (ConversationDO
 * sessionsEnded, called from routes/auth.ts). The DO then receives a Request built here, carrying only the verified ids in INTERNAL_* headers —
 * nothing from the client's request is forwarded, and the DO has no public route.
 */
import { Hono } from 'hono';
import { requireAuth } from '../auth/middleware.js';
import {
  INTERNAL_CONVERSATION_HEADER,
  INTERNAL_DEVICE_HEADER,
  INTERNAL_FAMILY_HEADER,
  INTERNAL_ROLE_HEADER,
  INTERNAL_USER_HEADER,
} from '../conversation.js';
import { makeDb } from '../db.js';
import { deliveryConfig } from '../delivery/config.js';
import { consumeTicket, liveMemberRole, liveSession, mintTicket } from '../delivery/tickets.js';
import type { AppBindings } from '../env.js';
import { AppError } from '../errors.js';
import { enforceRateLimit } from '../limiter.js';
import { idString } from '../validate.js';

function conversationId(raw: string): string {
  if (!idString.safeParse(raw).success)
    throw new AppError(400, 'bad_conversation_id', 'conversation id must be 1-64 of [A-Za-z0-9_-]');
  return raw;
}

export const realtime = new Hono<AppBindings>()
  .post('/:id/ticket', requireAuth, async (c) => {
    const id = conversationId(c.req.param('id'));
    const auth = c.get('auth');
    await enforceRateLimit(c.env, 'ticket', [`device:${auth.userId}:${auth.deviceId}`]);
    const db = makeDb(c.env);
    if (!(await liveMemberRole(db, id, auth.userId, auth.deviceId))) {
      throw new AppError(403, 'not_member', 'not a member of this conversation');
    }
    const t = await mintTicket(
      c.env,
      db,
      { userId: auth.userId, deviceId: auth.deviceId, familyId: auth.familyId, conversationId: id },
      deliveryConfig(c.env.DELIVERY_LIMITS).ticketTtlMs,
    );
    c.header('Cache-Control', 'no-store');
    return c.json({ ...t, path: `/api/conversations/${id}/ws?ticket=${t.ticket}` }, 201);
  })
  .get('/:id/ws', async (c) => {
    const id = conversationId(c.req.param('id'));
    if (c.req.header('Upgrade')?.toLowerCase() !== 'websocket') {
      throw new AppError(400, 'upgrade_required', 'expected a WebSocket upgrade');
    }
    const ticket = c.req.query('ticket');
    if (!ticket) throw new AppError(401, 'ticket_required', 'a WebSocket ticket is required');
    const db = makeDb(c.env);
    const bound = await consumeTicket(c.env, db, ticket);
    // Unknown, used, expired, or minted for another conversation: all the same answer.
    if (!bound || bound.conversationId !== id) {
      throw new AppError(401, 'invalid_ticket', 'ticket is invalid, used, expired or for another conversation');
    }
    const role = await liveMemberRole(db, id, bound.userId, bound.deviceId);
    if (!role) throw new AppError(403, 'not_member', 'not a member of this conversation, or device revoked');
    if (!(await liveSession(db, bound.familyId, bound.userId, bound.deviceId))) {
      throw new AppError(401, 'session_revoked', 'this session was signed out or its device revoked');
    }
    const stub = c.env.CONVERSATION.get(c.env.CONVERSATION.idFromName(id));
    return stub.fetch(
      new Request('https://conversation.internal/connect', {
        headers: {
          Upgrade: 'websocket',
          [INTERNAL_USER_HEADER]: bound.userId,
          [INTERNAL_DEVICE_HEADER]: bound.deviceId,
          [INTERNAL_FAMILY_HEADER]: bound.familyId,
          [INTERNAL_CONVERSATION_HEADER]: id,
          [INTERNAL_ROLE_HEADER]: role,
        },
      }),
    );
  });
