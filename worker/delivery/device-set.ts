/**
 * A conversation's recipient set as the ConversationDO caches it: current members (with roles) and, for
 * each, their live and revoked devices, plus the conversation's disappearing-message timer, read from D1 in
 * one batch.
 *
 * Responsibilities: load the set, list the devices a send must reach, and explain a pairwise send that
 * does not address exactly them (missing / extra / stale). Does NOT: decide when to refresh (the DO
 * refreshes once on a mismatch, after the membership / revocation / device RPCs, and once `loadedAt` is
 * older than DELIVERY_LIMITS.deviceSetTtlMs) or verify signatures (clients
 * verify device lists; the server only routes).
 */
import { eq } from 'drizzle-orm';
import type { DeviceRef } from '../../schema/wire.js';
import type { Db } from '../db.js';
import { schema } from '../db.js';

export type Role = 'owner' | 'admin' | 'member';

export interface DeviceSet {
  members: Map<string, Role>;
  live: Map<string, Set<string>>;
  revoked: Map<string, Set<string>>;
  /** When it was read from D1 (ms): the DO re-reads it once it is older than deviceSetTtlMs. */
  loadedAt: number;
  /** The conversation's disappearing-message timer in ms (conversations.timer_seconds; 0 = off). */
  timerMs: number;
}

export const deviceKey = (u: string, d: string) => `${u}\n${d}`;

export async function loadDeviceSet(db: Db, conversationId: string, now = Date.now()): Promise<DeviceSet> {
  const [rows, conv] = await db.batch([
    db
      .select({
        userId: schema.members.userId,
        role: schema.members.role,
        deviceId: schema.devices.deviceId,
        revokedAt: schema.devices.revokedAt,
      })
      .from(schema.members)
      .leftJoin(schema.devices, eq(schema.devices.userId, schema.members.userId))
      .where(eq(schema.members.conversationId, conversationId)),
    db
      .select({ timerSeconds: schema.conversations.timerSeconds })
      .from(schema.conversations)
      .where(eq(schema.conversations.id, conversationId)),
  ]);
  const timerMs = (conv[0]?.timerSeconds ?? 0) * 1000;
  const set: DeviceSet = { members: new Map(), live: new Map(), revoked: new Map(), loadedAt: now, timerMs };
  for (const r of rows) {
    set.members.set(r.userId, r.role);
    if (!set.live.has(r.userId)) set.live.set(r.userId, new Set());
    if (!set.revoked.has(r.userId)) set.revoked.set(r.userId, new Set());
    if (r.deviceId === null) continue;
    (r.revokedAt === null ? set.live : set.revoked).get(r.userId)!.add(r.deviceId);
  }
  return set;
}

/** True if the user is a current member and the device is one of their live devices. */
export function isLiveMemberDevice(set: DeviceSet, u: string, d: string): boolean {
  return set.members.has(u) && (set.live.get(u)?.has(d) ?? false);
}

/** Every live device of every current member (a group message's recipient-set epoch, sender included). */
export function liveDevicesOf(set: DeviceSet): DeviceRef[] {
  const out: DeviceRef[] = [];
  for (const [u, devices] of set.live) {
    if (!set.members.has(u)) continue;
    for (const d of devices) out.push({ u, d });
  }
  return out;
}

/** Every live device of every current member, except the sender's own device (its other devices included). */
export function recipientsOf(set: DeviceSet, sender: DeviceRef): DeviceRef[] {
  const out: DeviceRef[] = [];
  for (const [u, devices] of set.live) {
    if (!set.members.has(u)) continue;
    for (const d of devices) if (!(u === sender.u && d === sender.d)) out.push({ u, d });
  }
  return out;
}

export interface Mismatch {
  missing: DeviceRef[];
  extra: DeviceRef[];
  stale: DeviceRef[];
}

/** Compares a pairwise send's addressed devices (no duplicates) with the expected recipients. */
export function compareAddressed(set: DeviceSet, sender: DeviceRef, addressed: DeviceRef[]): Mismatch | null {
  // The common case — exactly the expected devices — is told without building that list (a pairwise send
  // is checked on the hot path): distinct addressed devices, each a live member device other than the
  // sender, as many as there are such devices, are exactly them.
  let expectedCount = isLiveMemberDevice(set, sender.u, sender.d) ? -1 : 0;
  for (const [u, devices] of set.live) if (set.members.has(u)) expectedCount += devices.size;
  if (addressed.length === expectedCount) {
    let all = true;
    for (const a of addressed) {
      if ((a.u === sender.u && a.d === sender.d) || !isLiveMemberDevice(set, a.u, a.d)) {
        all = false;
        break;
      }
    }
    if (all) return null;
  }
  const expected = new Map(recipientsOf(set, sender).map((r) => [deviceKey(r.u, r.d), r]));
  const extra: DeviceRef[] = [];
  const stale: DeviceRef[] = [];
  for (const a of addressed) {
    const k = deviceKey(a.u, a.d);
    if (expected.delete(k)) continue;
    if (set.members.has(a.u) && set.revoked.get(a.u)?.has(a.d)) stale.push({ u: a.u, d: a.d });
    else extra.push({ u: a.u, d: a.d });
  }
  const missing = [...expected.values()];
  return missing.length || extra.length || stale.length ? { missing, extra, stale } : null;
}
