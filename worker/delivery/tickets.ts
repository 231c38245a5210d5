/**
 * WebSocket tickets: how a browser authenticates a conversation WebSocket without putting an access
 * token in a URL (URLs end up in logs and history). POST …/ticket (with the bearer token) mints 32
 * random bytes bound to user + device + session (token family) + conversation for DELIVERY_LIMITS.ticketTtlMs (30 s); only
 * HMAC(TOKEN_HASH_KEY, "ticket:" ‖ ticket) is stored. The upgrade consumes it atomically with
 * DELETE … RETURNING, so a ticket works at most once even under concurrent upgrades.
 *
 * Does NOT: check membership (routes/realtime.ts does, both when minting and when consuming).
 */
import { and, eq, isNull } from 'drizzle-orm';
import { toB64u } from '../../web/src/protocol/bytes.js';
import { hmacSha256 } from '../../web/src/protocol/primitives.js';
import type { Db } from '../db.js';
import { schema } from '../db.js';
import type { Env } from '../env.js';
import { secretBytes } from '../secrets.js';
import type { Role } from './device-set.js';

export const TICKET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function ticketHash(env: Env, ticket: string): Uint8Array {
  return hmacSha256(secretBytes(env, 'TOKEN_HASH_KEY'), new TextEncoder().encode(`ticket:${ticket}`));
}

export async function mintTicket(
  env: Env,
  db: Db,
  who: { userId: string; deviceId: string; familyId: string; conversationId: string },
  ttlMs: number,
  now = Date.now(),
): Promise<{ ticket: string; expiresAt: number }> {
  const ticket = toB64u(crypto.getRandomValues(new Uint8Array(32)));
  const expiresAt = now + ttlMs;
  await db.insert(schema.wsTickets).values({ ticketHash: ticketHash(env, ticket), ...who, expiresAt });
  return { ticket, expiresAt };
}

/** Consumes a ticket: returns what it was bound to, or null if unknown, used or expired. */
export async function consumeTicket(
  env: Env,
  db: Db,
  ticket: string,
  now = Date.now(),
): Promise<{ userId: string; deviceId: string; familyId: string; conversationId: string } | null> {
  if (!TICKET_PATTERN.test(ticket)) return null;
  const rows = await db
    .delete(schema.wsTickets)
    .where(eq(schema.wsTickets.ticketHash, ticketHash(env, ticket)))
    .returning({
      userId: schema.wsTickets.userId,
      deviceId: schema.wsTickets.deviceId,
      familyId: schema.wsTickets.familyId,
      conversationId: schema.wsTickets.conversationId,
      expiresAt: schema.wsTickets.expiresAt,
    });
  const row = rows[0];
  if (!row || row.expiresAt <= now) return null;
  return { userId: row.userId, deviceId: row.deviceId, familyId: row.familyId, conversationId: row.conversationId };
}

/** True if the session (token family) is the user's device's and has not been signed out / revoked. */
export async function liveSession(db: Db, familyId: string, userId: string, deviceId: string): Promise<boolean> {
  const row = await db
    .select({ id: schema.tokenFamilies.id })
    .from(schema.tokenFamilies)
    .where(
      and(
        eq(schema.tokenFamilies.id, familyId),
        eq(schema.tokenFamilies.userId, userId),
        eq(schema.tokenFamilies.deviceId, deviceId),
        isNull(schema.tokenFamilies.revokedAt),
      ),
    )
    .get();
  return row !== undefined;
}

/** The caller's role if the user is a current member and the device is live; null otherwise. */
export async function liveMemberRole(
  db: Db,
  conversationId: string,
  userId: string,
  deviceId: string,
): Promise<Role | null> {
  const row = await db
    .select({ role: schema.members.role })
    .from(schema.members)
    .innerJoin(
      schema.devices,
      and(eq(schema.devices.userId, schema.members.userId), eq(schema.devices.deviceId, deviceId)),
    )
    .where(
      and(
        eq(schema.members.conversationId, conversationId),
        eq(schema.members.userId, userId),
        isNull(schema.devices.revokedAt),
      ),
    )
    .get();
  return row?.role ?? null;
}
