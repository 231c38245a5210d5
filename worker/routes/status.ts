/**
 * GET /api/status/counters — this isolate's operator counters (worker/metrics.ts) for the local status
 * page, with a fresh `mailbox_depth`. Answered only when APP_ENV is "development" or "test": a deployed
 * Worker's counters are in Workers Analytics Engine (docs/DEPLOY.md §Observability), and a per-isolate
 * share would mislead.
 */
import { Hono } from 'hono';
import { makeDb } from '../db.js';
import { mailboxDepth } from '../delivery/mailbox-db.js';
import type { AppBindings } from '../env.js';
import { AppError } from '../errors.js';
import { count, localCounters } from '../metrics.js';

export const status = new Hono<AppBindings>().get('/counters', async (c) => {
  if (c.env.APP_ENV !== 'development' && c.env.APP_ENV !== 'test') {
    throw new AppError(404, 'not_found', 'counters are in Workers Analytics Engine in deployed environments');
  }
  count(c.env, 'mailbox_depth', '', await mailboxDepth(makeDb(c.env)));
  return c.json({ counters: localCounters() });
});
