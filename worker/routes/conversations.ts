import { Hono } from 'hono';
import type { AppBindings } from '../env.js';
import { AppError } from '../errors.js';

const ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Conversation routes. The skeleton forwards WebSocket upgrades to the conversation's Durable Object;
 * ticket-based authentication and membership checks before forwarding come with the delivery issue.
 */
export const conversations = new Hono<AppBindings>().get('/:id/ws', async (c) => {
  const id = c.req.param('id');
  if (!ID.test(id)) throw new AppError(400, 'bad_conversation_id', 'conversation id must be 1-64 of [A-Za-z0-9_-]');
  if (c.req.header('Upgrade')?.toLowerCase() !== 'websocket') {
    throw new AppError(400, 'upgrade_required', 'expected a WebSocket upgrade');
  }
  const stub = c.env.CONVERSATION.get(c.env.CONVERSATION.idFromName(id));
  return stub.fetch(c.req.raw);
});
