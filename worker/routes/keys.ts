/**
 * /api/keys — the key directory (domain logic in worker/domain/keys.ts).
 *
 *   POST /api/keys        { upload: b64u(encodePrekeyUpload) } → counts   (caller's own device)
 *   GET  /api/keys/count  → counts                                     (caller's own device)
 *   POST /api/keys/claim  { userId } → bundles for every live device    (rate-limited, bucket `claim`)
 */
import { Hono } from 'hono';
import { z } from 'zod';
import { requireAuth } from '../auth/middleware.js';
import { makeDb } from '../db.js';
import { claimBundles, prekeyCounts, uploadPrekeys } from '../domain/keys.js';
import type { AppBindings } from '../env.js';
import { LIMITS } from '../limits.js';
import { b64uBytes, idString } from '../validate.js';
import { callerOf, readJson, smallBody } from './input.js';

export const uploadBody = z.object({ upload: b64uBytes({ max: LIMITS.maxPrekeyBodyBytes }) });
export const claimBody = z.object({ userId: idString });

export const keys = new Hono<AppBindings>()
  .use('*', requireAuth)
  .post('/', async (c) => {
    const body = await readJson(c, uploadBody);
    return c.json(await uploadPrekeys(callerOf(c), body.upload));
  })
  .get('/count', async (c) => {
    const { userId, deviceId } = c.get('auth');
    return c.json(await prekeyCounts(makeDb(c.env), userId, deviceId));
  })
  .post('/claim', smallBody, async (c) => {
    const body = await readJson(c, claimBody);
    return c.json(await claimBundles(callerOf(c), body.userId));
  });
