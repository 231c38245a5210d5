/**
 * /api/kt — the key-transparency log's public face, for clients and for anyone who audits the log
 * (`npm run kt:audit -- https://host`). No authentication: tree heads and proofs are hashes and signatures
 * and name nobody. Rate-limited per client address (bucket `kt`).
 *
 *   GET /api/kt/key                          → { publicKey }  the log key's public half (auditors may pin it;
 *                                              clients use the one built into the app, never this answer)
 *   GET /api/kt/head                         → { head }       the newest signed tree head (≤ headIntervalMs old)
 *   GET /api/kt/heads?after=N&limit=M        → { heads, more } signed heads with size > N, oldest first
 *   GET /api/kt/consistency?from=A&to=B      → { from, to, proof } RFC 9162 consistency proof, 1 ≤ A ≤ B ≤ size
 *
 * Byte values are base64url. A log object that cannot answer is 503 `kt_unavailable`. Entries and inclusion proofs are served with the username lookup and the
 * device-list fetch (worker/routes/users.ts), to signed-in users only.
 */
import { Hono } from 'hono';
import { z } from 'zod';
import { toB64u } from '../../web/src/protocol/bytes.js';
import { clientKey } from '../context.js';
import { ktCall, ktLog } from '../domain/kt.js';
import type { AppBindings } from '../env.js';
import { AppError } from '../errors.js';
import { KT_DEFAULTS, logSigningKey } from '../kt-log.js';
import { enforceRateLimit } from '../limiter.js';
import { parseInput } from './input.js';

const size = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const kt = new Hono<AppBindings>()
  .use('*', async (c, next) => {
    await enforceRateLimit(c.env, 'kt', [`client:${clientKey(c)}`]);
    await next();
    c.header('Cache-Control', 'no-store');
  })
  .get('/key', async (c) => c.json({ publicKey: toB64u((await logSigningKey(c.env)).publicKey) }))
  .get('/head', async (c) => c.json({ head: toB64u(await ktCall('head', () => ktLog(c.env).head())) }))
  .get('/heads', async (c) => {
    const q = parseInput(
      z.object({
        after: size.default(0),
        limit: z.coerce.number().int().min(1).max(KT_DEFAULTS.headsPageMax).default(100),
      }),
      { after: c.req.query('after'), limit: c.req.query('limit') },
    );
    const heads = await ktCall('heads', () => ktLog(c.env).heads(q.after, q.limit + 1));
    return c.json({ heads: heads.slice(0, q.limit).map((h) => toB64u(h)), more: heads.length > q.limit });
  })
  .get('/consistency', async (c) => {
    const q = parseInput(z.object({ from: size, to: size }), { from: c.req.query('from'), to: c.req.query('to') });
    const proof = await ktCall('consistency', () => ktLog(c.env).consistency(q.from, q.to));
    if (!proof) throw new AppError(400, 'kt_out_of_range', 'sizes must satisfy 1 ≤ from ≤ to ≤ the size of the log');
    return c.json({ from: q.from, to: q.to, proof: proof.map((h) => toB64u(h)) });
  });
