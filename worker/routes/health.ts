import { Hono } from 'hono';
import { d1 } from '../db.js';
import type { AppBindings } from '../env.js';
import { AppError } from '../errors.js';

/** GET /api/health — D1 is reachable and which migration (wrangler's d1_migrations table) is the latest. */
export const health = new Hono<AppBindings>().get('/', async (c) => {
  let migration: string | null;
  try {
    const row = await d1(c.env).prepare('SELECT name FROM d1_migrations ORDER BY id DESC LIMIT 1').first<{
      name: string;
    }>();
    migration = row?.name ?? null;
  } catch {
    throw new AppError(503, 'db_unavailable', 'database unreachable or not migrated');
  }
  return c.json({ ok: true, db: 'ok', migration });
});
