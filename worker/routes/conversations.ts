import { Hono } from 'hono';
import { z } from 'zod';
import { requireAuth } from '../auth/middleware.js';
import { makeDb } from '../db.js';
import {
  appendEntry,
  createConversation,
  getConversation,
  listConversations,
  MAX_CREATE_ENTRIES,
  MAX_LOG_PAGE,
  membershipLogPage,
} from '../domain/conversations.js';
import type { AppBindings } from '../env.js';
import { b64uBytes } from '../validate.js';
import { callerOf, parseInput, readJson, smallBody } from './input.js';

/** A signed membership entry is < 500 bytes (ids ≤ 64 B, title ≤ 256 B, 64 B signature). */
const ENTRY_MAX = 1024;
export const createConversationBody = z.object({
  kind: z.enum(['direct', 'group']),
  entries: z
    .array(b64uBytes({ max: ENTRY_MAX }))
    .min(1)
    .max(MAX_CREATE_ENTRIES),
});
export const appendEntryBody = z.object({ entry: b64uBytes({ max: ENTRY_MAX }) });
const logQuery = z.object({
  afterSeq: z.coerce.number().int().min(-1).max(0xffffffff).default(-1),
  limit: z.coerce.number().int().min(1).max(MAX_LOG_PAGE).default(MAX_LOG_PAGE),
});

/**
 * Conversations with a signed membership log (domain logic in worker/domain/conversations.ts):
 *
 *   GET  /api/conversations                 → { conversations: [{ id, kind, role, headSeq, createdAt }] }
 *   POST /api/conversations                 { kind, entries: [b64u] } → 201 conversation
 *   GET  /api/conversations/:id             → conversation { id, kind, headSeq, headHash, members }
 *   GET  /api/conversations/:id/log         ?afterSeq&limit → { entries: [{ seq, entry, author… }] }
 *   POST /api/conversations/:id/log         { entry: b64u } → conversation
 *
 * Non-members get 404 `not_found` on every :id route.
 *
 * The conversation WebSocket (ticket, upgrade) lives in routes/realtime.ts, mounted before this sub-app.
 */
export const conversations = new Hono<AppBindings>()
  .get('/', requireAuth, async (c) => {
    const rows = await listConversations(makeDb(c.env), c.get('auth').userId);
    return c.json({ conversations: rows.map(({ headHash: _, ...r }) => r) });
  })
  .post('/', smallBody, requireAuth, async (c) => {
    const body = await readJson(c, createConversationBody);
    return c.json(await createConversation(callerOf(c), body), 201);
  })
  .get('/:id', requireAuth, async (c) =>
    c.json(await getConversation(makeDb(c.env), c.get('auth').userId, c.req.param('id'))),
  )
  .get('/:id/log', requireAuth, async (c) => {
    const q = parseInput(logQuery, c.req.query());
    const entries = await membershipLogPage(
      makeDb(c.env),
      c.get('auth').userId,
      c.req.param('id'),
      q.afterSeq,
      q.limit,
    );
    return c.json({ entries });
  })
  .post('/:id/log', smallBody, requireAuth, async (c) => {
    const body = await readJson(c, appendEntryBody);
    return c.json(await appendEntry(callerOf(c), c.req.param('id'), body.entry));
  });
