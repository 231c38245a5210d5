/**
 * `requireAuth`: a valid access token (Authorization: Bearer) whose session family and device are still
 * live — so sign-out, sign-out-everywhere and device revocation take effect at once, not at token expiry.
 * A dead session is 401 `session_revoked` with the `reason` it ended (`sessionRevoked`), so the device
 * that was cut off can say why.
 */
import { and, eq } from 'drizzle-orm';
import { createMiddleware } from 'hono/factory';
import { toB64u } from '../../web/src/protocol/bytes.js';
import { type Db, makeDb, schema } from '../db.js';
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
  const row = await db
    .select({
      familyRevokedAt: schema.tokenFamilies.revokedAt,
      familyRevokeReason: schema.tokenFamilies.revokeReason,
      deviceRevokedAt: schema.devices.revokedAt,
    })
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
      ),
    )
    .get();
  if (!row) throw sessionRevoked(null, false);
  if (row.familyRevokedAt !== null || row.deviceRevokedAt !== null) {
    const ended = sessionRevoked(
      row.familyRevokedAt !== null ? row.familyRevokeReason : null,
      row.deviceRevokedAt !== null,
    );
    throw row.deviceRevokedAt !== null ? await withDeviceList(db, ended, auth.userId) : ended;
  }
  c.set('auth', auth);
  await next();
});

/** Why a session ended, as the device that was cut off is told (never anything about other sessions). */
export type SessionEndReason =
  | 'logout'
  | 'logout_all'
  | 'signed_out_by_user'
  | 'password_changed'
  | 'identity_reset'
  | 'device_revoked'
  | 'refresh_reuse'
  | 'unknown';

const REASONS: ReadonlySet<string> = new Set([
  'logout',
  'logout_all',
  'signed_out_by_user',
  'password_changed',
  'identity_reset',
  'device_revoked',
  'refresh_reuse',
]);

/** 401 `session_revoked` with `reason`: the family's revoke reason, else `device_revoked` if the device was. */
export function sessionRevoked(familyReason: string | null, deviceRevoked: boolean): AppError {
  const reason: SessionEndReason =
    familyReason && REASONS.has(familyReason)
      ? (familyReason as SessionEndReason)
      : deviceRevoked
        ? 'device_revoked'
        : 'unknown';
  return new AppError(401, 'session_revoked', 'this session was signed out or its device revoked', { reason });
}

/**
 * A revoked device's 401 also carries the account's current signed device list (`deviceList`, base64url),
 * so the browser can check for itself — under the identity key it holds — that a list newer than its own
 * no longer contains it before it erases its store (issue 14). The server's word alone never erases
 * anything: it cannot sign such a list. Only the holder of that device's session or cookie gets here.
 */
export async function withDeviceList(db: Db, err: AppError, userId: string): Promise<AppError> {
  const row = await db
    .select({ list: schema.deviceLists.list })
    .from(schema.deviceLists)
    .where(eq(schema.deviceLists.userId, userId))
    .get();
  if (!row) return err;
  return new AppError(err.status, err.code, err.message, {
    ...err.details,
    deviceList: toB64u(new Uint8Array(row.list)),
  });
}
