/**
 * Devices of the signed-in user: list, register an additional device, revoke one. Every change is a new
 * device list signed by the user identity key (verified by device-store.ts through the protocol core);
 * the server never adds or drops a device on its own.
 *
 * Registering: the list must be the stored version + 1 with exactly one new device and none removed, and
 * the new device proves possession of its signing key by signing a server challenge
 * (`signLoginChallenge(challenge, userId, newDeviceId)`, single-use, LIMITS.loginChallengeTtlMs).
 * Revoking: the list must be version + 1 with exactly the named device removed and none added; the
 * device's prekeys are deleted and its sessions revoked in the same batch, then every conversation DO
 * the user is in is told to close that device's sockets (close code 4403).
 */
import { eq } from 'drizzle-orm';
import { toB64u } from '../../web/src/protocol/bytes.js';
import { verifyLoginChallenge } from '../../web/src/protocol/identity.js';
import { consumeChallenge, issueChallenge } from '../auth/challenges.js';
import type { ConversationDO } from '../conversation.js';
import type { Db } from '../db.js';
import { schema } from '../db.js';
import { applyDeviceList, deviceListConflict } from '../device-store.js';
import type { Env } from '../env.js';
import { AppError } from '../errors.js';
import { enforceRateLimit } from '../limiter.js';
import { deviceLimit } from '../limits.js';
import { log } from '../log.js';
import { deviceEvent, outboxEvents } from '../webhooks/outbox.js';
import { asBytes, auditStmt, type Caller, curves, writeBatch } from './common.js';

export interface DeviceView {
  deviceId: string;
  createdAt: number;
  lastSeenAt: number | null;
  revoked: boolean;
  revokedAt: number | null;
  /** base64url of the encrypted name (account-keys.ts), or null if the device has none yet. */
  name: string | null;
}

export async function listDevices(db: Db, userId: string): Promise<DeviceView[]> {
  const rows = await db
    .select({
      deviceId: schema.devices.deviceId,
      createdAt: schema.devices.createdAt,
      lastSeenAt: schema.devices.lastSeenAt,
      revokedAt: schema.devices.revokedAt,
      nameEnc: schema.devices.nameEnc,
    })
    .from(schema.devices)
    .where(eq(schema.devices.userId, userId))
    .orderBy(schema.devices.createdAt, schema.devices.deviceId)
    .all();
  return rows.map(({ nameEnc, ...r }) => ({
    ...r,
    revoked: r.revokedAt !== null,
    name: nameEnc ? toB64u(asBytes(nameEnc)) : null,
  }));
}

export interface DeviceListView {
  version: number;
  /** base64url of the exact signed encoding (decodeDeviceList + verifyDeviceList on the client). */
  bytes: string;
}

export async function currentDeviceList(db: Db, userId: string): Promise<DeviceListView | null> {
  const row = await db
    .select({ version: schema.deviceLists.version, list: schema.deviceLists.list })
    .from(schema.deviceLists)
    .where(eq(schema.deviceLists.userId, userId))
    .get();
  return row ? { version: row.version, bytes: toB64u(asBytes(row.list)) } : null;
}

async function userKeyAndList(db: Db, userId: string) {
  const user = await db
    .select({ identityKey: schema.users.identityKey })
    .from(schema.users)
    .where(eq(schema.users.id, userId))
    .get();
  if (!user) throw new AppError(401, 'session_revoked', 'this session was signed out or its device revoked');
  const list = await db
    .select({ list: schema.deviceLists.list })
    .from(schema.deviceLists)
    .where(eq(schema.deviceLists.userId, userId))
    .get();
  return { identityKey: asBytes(user.identityKey), prev: list ? asBytes(list.list) : null };
}

/** A single-use challenge (purpose 'device') the NEW device signs to prove it holds its signing key. */
export async function issueDeviceChallenge(caller: Caller): Promise<{ challengeId: string; challenge: string }> {
  // Each challenge writes a row: limited per account (GraphQL aliases count one by one).
  await enforceRateLimit(caller.env, 'deviceChallenge', [`acct:${caller.auth.userId}`]);
  const { challengeId, challenge } = await issueChallenge(caller.env, caller.db, 'device');
  return { challengeId, challenge: toB64u(challenge) };
}

export interface RegisterDeviceInput {
  deviceList: Uint8Array;
  challengeId: string;
  signature: Uint8Array;
}

export async function registerDevice(caller: Caller, input: RegisterDeviceInput): Promise<DeviceListView> {
  const { db, auth, env } = caller;
  const { identityKey, prev } = await userKeyAndList(db, auth.userId);
  const applied = await applyDeviceList(db, auth.userId, identityKey, prev, input.deviceList);
  if (applied.revoked.length > 0 || applied.added.length !== 1) {
    throw new AppError(422, 'unexpected_device_change', 'registration must add exactly one device and remove none');
  }
  const limit = deviceLimit(env.DEVICE_LIMIT);
  if (applied.verified.devices.length > limit) throw deviceLimitError(limit);
  const device = applied.added[0]!;
  // Single use: the challenge is burned by this attempt whether or not the signature verifies.
  const challenge = await consumeChallenge(caller.env, db, 'device', input.challengeId);
  if (!challenge) throw badChallenge();
  let ok = false;
  try {
    ok = await verifyLoginChallenge(
      await curves(),
      device.signingKey,
      challenge,
      auth.userId,
      device.deviceId,
      input.signature,
    );
  } catch {
    ok = false;
  }
  if (!ok) throw new AppError(422, 'invalid_device_proof', 'the new device did not sign the challenge');
  const events = outboxEvents(db, [
    deviceEvent('device.added', {
      userId: auth.userId,
      deviceId: device.deviceId,
      listVersion: applied.verified.version,
      at: Date.now(),
    }),
  ]);
  await writeBatch(caller.env, [
    ...applied.statements,
    auditStmt(caller, 'device.registered', { newDeviceId: device.deviceId, listVersion: applied.verified.version }),
    ...events.statements,
  ]).catch(rethrowDeviceListRace);
  await events.release(env, db);
  await notifyConversations(env, db, auth.userId, (stub) => stub.devicesChanged(auth.userId));
  return { version: applied.verified.version, bytes: toB64u(input.deviceList) };
}

/** 409 `device_limit`: the account already has DEVICE_LIMIT live devices. */
export function deviceLimitError(limit: number): AppError {
  return new AppError(409, 'device_limit', `an account can have at most ${limit} devices; remove one first`, { limit });
}

/** A concurrent device-list update won (device-store.ts guard): 409 device_list_conflict, not a 500. */
function rethrowDeviceListRace(err: unknown): never {
  throw deviceListConflict(err) ?? err;
}

function badChallenge(): AppError {
  return new AppError(422, 'invalid_challenge', 'challenge unknown, used or expired');
}

export async function revokeDevice(
  caller: Caller,
  input: { deviceId: string; deviceList: Uint8Array },
): Promise<DeviceListView> {
  const { db, auth, env } = caller;
  const { identityKey, prev } = await userKeyAndList(db, auth.userId);
  const applied = await applyDeviceList(db, auth.userId, identityKey, prev, input.deviceList);
  if (applied.added.length > 0 || applied.revoked.length !== 1 || applied.revoked[0] !== input.deviceId) {
    throw new AppError(422, 'unexpected_device_change', 'revocation must remove exactly the named device and add none');
  }
  const events = outboxEvents(db, [
    deviceEvent('device.removed', {
      userId: auth.userId,
      deviceId: input.deviceId,
      listVersion: applied.verified.version,
      at: Date.now(),
    }),
  ]);
  await writeBatch(env, [
    ...applied.statements,
    auditStmt(caller, 'device.revoked', { revokedDeviceId: input.deviceId, listVersion: applied.verified.version }),
    ...events.statements,
  ]).catch(rethrowDeviceListRace);
  await events.release(env, db);
  await notifyConversations(env, db, auth.userId, (stub) => stub.deviceRevoked(auth.userId, input.deviceId));
  return { version: applied.verified.version, bytes: toB64u(input.deviceList) };
}

/**
 * Tells every conversation DO the user is in about a device change (best effort, after the D1 commit):
 * revocation closes the device's sockets and drops its mailbox; registration and identity resets drop the
 * DO's cached device set so the next send must address the new device.
 */
export async function notifyConversations(
  env: Env,
  db: Db,
  userId: string,
  call: (stub: DurableObjectStub<ConversationDO>) => Promise<unknown>,
): Promise<void> {
  const convs = await db
    .select({ id: schema.members.conversationId })
    .from(schema.members)
    .where(eq(schema.members.userId, userId))
    .all();
  const notify = (ids: string[]) =>
    Promise.allSettled(ids.map((id) => call(env.CONVERSATION.get(env.CONVERSATION.idFromName(id)))));
  const first = await notify(convs.map((c) => c.id));
  // The calls are idempotent: the ones that failed (e.g. a DO being reset) are retried once.
  const retry = convs.filter((_c, i) => first[i]!.status === 'rejected').map((c) => c.id);
  if (retry.length === 0) return;
  const failed = (await notify(retry)).filter((r) => r.status === 'rejected').length;
  // The change is committed; a DO that still missed the call re-reads D1 once its cached device set is
  // older than DELIVERY_LIMITS.deviceSetTtlMs (or on its next mismatch).
  if (failed > 0) log('warn', 'device_change_notify_failed', { failed });
}
