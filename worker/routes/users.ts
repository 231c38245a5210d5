/**
 * /api/users — other users' public identity, for the client engine's directory (TOFU + verified device
 * lists) without touching the key directory's one-time prekeys:
 *
 *   GET /api/users/by-name/:username      → { userId, username, identityKey, identityVersion, kt }
 *   GET /api/users/:userId/device-list    → { userId, username, identityKey, identityVersion, deviceList: { version,
 *                                           bytes }, kt }
 *   GET /api/users/names?ids=a,b,…        → { users: [{ userId, username }] } (≤ 100 ids; only the caller and
 *                                           users sharing a conversation with the caller — others are absent)
 *   GET /api/users/:userId/profile        → { userId, profile, updatedAt } (the SEALED profile, routes/people.ts;
 *                                           any signed-in caller, bucket `profile`; none → 404 `not_found`)
 *
 * `kt` is the user's latest key-transparency entry with its inclusion proof against a fresh signed tree
 * head (worker/domain/kt.ts); clients verify it before trusting the key.
 *
 * Both need a bearer token. `bytes` is the exact signed encoding (decodeDeviceList + verifyDeviceList on the
 * client — the server's answer is never trusted on its own). Unknown users → 404 `not_found`.
 *
 * Both are rate-limited per account (buckets `lookup` and `deviceList`): each answer may ask the one
 * key-transparency log object for a proof.
 *
 * Enumeration: any signed-in user may look a username up (that is how you start a conversation), so a
 * signed-in attacker can test whether names exist; the by-name lookup is rate-limited per account (bucket
 * `lookup`). Unauthenticated callers learn nothing (401 before any lookup).
 */
import { eq } from 'drizzle-orm';
import { Hono } from 'hono';
import { z } from 'zod';
import { toB64u } from '../../web/src/protocol/bytes.js';
import { requireAuth } from '../auth/middleware.js';
import { makeDb, schema } from '../db.js';
import { asBytes } from '../domain/common.js';
import { proveUser } from '../domain/kt.js';
import { lookupUserByName, MAX_NAME_IDS, usernamesForIds } from '../domain/users.js';
import type { AppBindings, Env } from '../env.js';
import { AppError } from '../errors.js';
import { tamperUserAnswer } from '../kt-tamper.js';
import { enforceRateLimit } from '../limiter.js';
import { idString } from '../validate.js';
import { callerOf, parseInput } from './input.js';
import { userProfile } from './people.js';

const notFound = () => new AppError(404, 'not_found', 'no such user');

/**
 * Vite's mode, a literal at build time ("production" in `vite build`): the key-transparency tampering hook
 * for the browser tests (worker/kt-tamper.ts) exists only in `npm run dev` and the Vitest pool, and is
 * dropped from production builds with this branch.
 */
const MODE = (import.meta as { env?: { MODE?: string } }).env?.MODE;
const TAMPER_COMPILED_IN = MODE === 'development' || MODE === 'test';
const answer = <T extends { userId: string; identityKey: string; deviceList?: { version: number; bytes: string } }>(
  env: Env,
  username: string,
  body: T,
): Promise<T> => (TAMPER_COMPILED_IN ? tamperUserAnswer(env, username, body) : Promise.resolve(body));

export const users = new Hono<AppBindings>()
  .use('*', requireAuth)
  // Registered first: `/by-name/device-list` must be a username lookup, not user "by-name"'s list.
  .get('/by-name/:username', async (c) => {
    const row = await lookupUserByName({ env: c.env, db: makeDb(c.env), auth: c.get('auth') }, c.req.param('username'));
    if (!row) throw notFound();
    const kt = await proveUser(c.env, { userId: row.id, ...row });
    c.header('Cache-Control', 'no-store');
    return c.json(
      await answer(c.env, row.username, {
        userId: row.id,
        username: row.username,
        identityKey: toB64u(row.identityKey),
        identityVersion: row.identityVersion,
        kt,
      }),
    );
  })
  // Member lists show names: the usernames of people the caller shares a conversation with.
  .get('/names', async (c) => {
    const ids = parseInput(z.array(idString).min(1).max(MAX_NAME_IDS), (c.req.query('ids') ?? '').split(','));
    const found = await usernamesForIds(makeDb(c.env), c.get('auth').userId, ids);
    c.header('Cache-Control', 'no-store');
    return c.json({ users: found });
  })
  .get('/:userId/profile', async (c) => {
    c.header('Cache-Control', 'no-store');
    return c.json(await userProfile(callerOf(c), c.req.param('userId')));
  })
  .get('/:userId/device-list', async (c) => {
    const userId = parseInput(idString, c.req.param('userId'));
    // Each answer may cost the single key-transparency object a proof: limited per account.
    await enforceRateLimit(c.env, 'deviceList', [`acct:${c.get('auth').userId}`]);
    const db = makeDb(c.env);
    const [user, list] = await db.batch([
      db
        .select({
          username: schema.users.username,
          identityKey: schema.users.identityKey,
          identityVersion: schema.users.identityVersion,
        })
        .from(schema.users)
        .where(eq(schema.users.id, userId)),
      db
        .select({ version: schema.deviceLists.version, list: schema.deviceLists.list })
        .from(schema.deviceLists)
        .where(eq(schema.deviceLists.userId, userId)),
    ]);
    const u = user[0];
    const l = list[0];
    if (!u || !l) throw notFound();
    const identityKey = asBytes(u.identityKey);
    const kt = await proveUser(c.env, {
      userId,
      username: u.username,
      identityKey,
      identityVersion: u.identityVersion,
    });
    c.header('Cache-Control', 'no-store');
    return c.json(
      await answer(c.env, u.username, {
        userId,
        username: u.username,
        identityKey: toB64u(identityKey),
        identityVersion: u.identityVersion,
        deviceList: { version: l.version, bytes: toB64u(asBytes(l.list)) },
        kt,
      }),
    );
  });
