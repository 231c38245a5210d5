/**
 * `requireAuth`: a valid access token (Authorization: Bearer) whose session family and device are still
 * live — so sign-out, sign-out-everywhere and device revocation take effect at once, not at token expiry.
 */
import { and, eq, isNull } from 'drizzle-orm';
import { createMiddleware } from 'hono/factory';
import { makeDb, schema } from '../db.js';
import type { AppBindings } from '../env.js';
import { AppError } from '../errors.js';
import { verifyAccessToken } from './tokens.js';

export const requireAuth = createMiddleware<AppBindings>(async (c, next) => {
  const header = c.req.header('authorization') ?? '';
  // The scheme is case-insensitive (RFC 9110 §11.1): `bearer …` works like `Bearer …`.
  const m = /^Bearer +([A-Za-z0-9_.-]{10,4096})$/i.exec(header);
  if (!m) throw new AppError(401, 'invalid_token', 'access token missing, invalid or expired');
  const auth = await verifyAccessToken(c.env, m[1]!);
  const db = makeDb(c.env);
  const live = await db
    .select({ id: schema.tokenFamilies.id })
    .from(schema.tokenFamilies)
    .innerJoin(
      schema.devices,
      and(
        eq(schema.devices.userId, schema.tokenFamilies.userId),
        eq(schema.devices.deviceId, schema.tokenFamilies.deviceId),
      ),
    )
    .where(
      and(
        eq(schema.tokenFamilies.id, auth.familyId),
        eq(schema.tokenFamilies.userId, auth.userId),
        eq(schema.tokenFamilies.deviceId, auth.deviceId),
        isNull(schema.tokenFamilies.revokedAt),
        isNull(schema.devices.revokedAt),
      ),
    )
    .get();
  if (!live) throw new AppError(401, 'session_revoked', 'this session was signed out or its device revoked');
  c.set('auth', auth);
  await next();
});
