/**
 * Key directory: prekey uploads (every signature verified under the uploading device's certified signing
 * key before anything is stored — PITFALLS 1), atomic one-time prekey claims (PITFALLS 5) and counts.
 *
 * Upload format: the protocol's binary `encodePrekeyUpload` (web/src/protocol/prekeys.ts), base64url in
 * JSON. A signed prekey replaces the device's previous one; a last-resort ML-KEM prekey replaces the
 * previous last-resort one; one-time EC and ML-KEM prekeys accumulate up to LIMITS.maxStoredPrekeys each.
 *
 * Claims take ONE one-time EC prekey and ONE one-time ML-KEM prekey per device with a single
 * `DELETE … WHERE key_id = (SELECT … LIMIT 1) RETURNING …` each, so two concurrent claims never get the
 * same key; without a one-time ML-KEM prekey the last-resort one is served (flagged), without a one-time
 * EC prekey the bundle has none.
 */
import { and, count, desc, eq, sql } from 'drizzle-orm';
import { toB64u } from '../../web/src/protocol/bytes.js';
import { ErrorCode, ProtocolError } from '../../web/src/protocol/errors.js';
import { decodeDeviceCertificate } from '../../web/src/protocol/identity.js';
import {
  decodePrekeyUpload,
  encodeBundle,
  type PrekeyUpload,
  verifyPrekeyUpload,
} from '../../web/src/protocol/prekeys.js';
import type { Db } from '../db.js';
import { schema } from '../db.js';
import { AppError } from '../errors.js';
import { enforceRateLimit } from '../limiter.js';
import { LIMITS } from '../limits.js';
import { asBytes, auditStmt, type Caller, chunkRows, curves, isConstraintError, writeBatch } from './common.js';
import { notifyConversations } from './devices.js';

const otp = schema.oneTimePrekeys;
const kem = schema.kemPrekeys;
const spk = schema.signedPrekeys;

export interface PrekeyCounts {
  /** One-time X25519 prekeys left. */
  oneTime: number;
  /** One-time ML-KEM prekeys left (the last-resort one is not counted). */
  kem: number;
  signedPrekey: boolean;
  lastResortKem: boolean;
  /** True if either one-time count is below LIMITS.prekeysLowWatermark: the owner should upload more. */
  low: boolean;
}

export async function prekeyCounts(db: Db, userId: string, deviceId: string): Promise<PrekeyCounts> {
  const [o, k, lr, s] = await db.batch([
    db
      .select({ n: count() })
      .from(otp)
      .where(and(eq(otp.userId, userId), eq(otp.deviceId, deviceId))),
    db
      .select({ n: count() })
      .from(kem)
      .where(and(eq(kem.userId, userId), eq(kem.deviceId, deviceId), eq(kem.lastResort, false))),
    db
      .select({ n: count() })
      .from(kem)
      .where(and(eq(kem.userId, userId), eq(kem.deviceId, deviceId), eq(kem.lastResort, true))),
    db
      .select({ n: count() })
      .from(spk)
      .where(and(eq(spk.userId, userId), eq(spk.deviceId, deviceId))),
  ]);
  const oneTime = o[0]?.n ?? 0;
  const kemLeft = k[0]?.n ?? 0;
  return {
    oneTime,
    kem: kemLeft,
    signedPrekey: (s[0]?.n ?? 0) > 0,
    lastResortKem: (lr[0]?.n ?? 0) > 0,
    low: oneTime < LIMITS.prekeysLowWatermark || kemLeft < LIMITS.prekeysLowWatermark,
  };
}

function uploadError(err: unknown): AppError {
  if (!(err instanceof ProtocolError)) throw err;
  switch (err.code) {
    case ErrorCode.Signature:
      return new AppError(422, 'invalid_prekey_signature', 'a prekey signature does not verify under the device key');
    case ErrorCode.LimitExceeded:
      return tooMany('batch');
    case ErrorCode.InvalidKey:
      return new AppError(422, 'invalid_prekey', 'a prekey public key is malformed');
    case ErrorCode.InvalidStructure:
      return new AppError(409, 'duplicate_prekey_id', 'prekey ids must be unique');
    default:
      return new AppError(400, 'invalid_prekey_upload', 'prekey upload does not decode');
  }
}

const tooMany = (reason: 'batch' | 'stored') =>
  new AppError(reason === 'batch' ? 422 : 409, 'too_many_prekeys', 'too many prekeys', {
    reason,
    limit: reason === 'batch' ? LIMITS.maxPrekeysPerBatch : LIMITS.maxStoredPrekeys,
  });

/** Verifies and stores one upload for the caller's own device. */
export async function uploadPrekeys(caller: Caller, uploadBytes: Uint8Array): Promise<PrekeyCounts> {
  const { db, auth } = caller;
  const { userId, deviceId } = auth;
  let u: PrekeyUpload;
  try {
    u = decodePrekeyUpload(uploadBytes);
  } catch (err) {
    throw uploadError(err);
  }
  const lastResorts = u.kemPrekeys.filter((k) => k.lastResort);
  const kemOneTime = u.kemPrekeys.filter((k) => !k.lastResort);
  if (u.oneTimePrekeys.length > LIMITS.maxPrekeysPerBatch || u.kemPrekeys.length > LIMITS.maxPrekeysPerBatch)
    throw tooMany('batch');
  if (lastResorts.length > 1) throw new AppError(422, 'invalid_prekey_upload', 'at most one last-resort KEM prekey');
  if (!u.signedPrekey && u.oneTimePrekeys.length === 0 && u.kemPrekeys.length === 0)
    throw new AppError(400, 'invalid_prekey_upload', 'empty upload');

  const device = await db
    .select({ signingKey: schema.devices.signingKey, certificate: schema.devices.certificate })
    .from(schema.devices)
    .where(and(eq(schema.devices.userId, userId), eq(schema.devices.deviceId, deviceId), sql`revoked_at IS NULL`))
    .get();
  if (!device) throw new AppError(401, 'session_revoked', 'this session was signed out or its device revoked');
  // The key comes from the certificate the user identity key signed (stored verbatim by device-store.ts).
  const signingKey = decodeDeviceCertificate(asBytes(device.certificate)).signingKey;
  try {
    await verifyPrekeyUpload(await curves(), u, signingKey);
  } catch (err) {
    throw uploadError(err);
  }

  // Ids already stored (at most maxStoredPrekeys + 1 per table: read them all, compare in memory).
  const [otpIds, kemRows] = await db.batch([
    db
      .select({ id: otp.keyId })
      .from(otp)
      .where(and(eq(otp.userId, userId), eq(otp.deviceId, deviceId))),
    db
      .select({ id: kem.keyId, lastResort: kem.lastResort })
      .from(kem)
      .where(and(eq(kem.userId, userId), eq(kem.deviceId, deviceId))),
  ]);
  const haveOtp = new Set(otpIds.map((r) => r.id));
  // A new last-resort key replaces the old one, so the old one's id becomes free.
  const haveKem = new Set(kemRows.filter((r) => !(r.lastResort && lastResorts.length > 0)).map((r) => r.id));
  if (u.oneTimePrekeys.some((k) => haveOtp.has(k.id)) || u.kemPrekeys.some((k) => haveKem.has(k.id)))
    throw new AppError(409, 'duplicate_prekey_id', 'a prekey with this id is already stored');
  const kemStored = kemRows.filter((r) => !r.lastResort).length;
  if (haveOtp.size + u.oneTimePrekeys.length > LIMITS.maxStoredPrekeys) throw tooMany('stored');
  if (kemStored + kemOneTime.length > LIMITS.maxStoredPrekeys) throw tooMany('stored');

  const now = Date.now();
  const mine = <T extends typeof otp | typeof kem | typeof spk>(t: T) =>
    and(eq(t.userId, userId), eq(t.deviceId, deviceId));
  // A device's first signed prekey: it can be encrypted to from now on (a device linked a moment ago).
  const firstKeys = u.signedPrekey !== null && !(await db.select({ id: spk.keyId }).from(spk).where(mine(spk)).get());
  const stmts = [];
  if (u.signedPrekey) {
    stmts.push(db.delete(spk).where(mine(spk)));
    stmts.push(
      db.insert(spk).values({
        userId,
        deviceId,
        keyId: u.signedPrekey.id,
        publicKey: u.signedPrekey.publicKey,
        signature: u.signedPrekey.signature,
        createdAt: now,
      }),
    );
  }
  if (lastResorts.length > 0) stmts.push(db.delete(kem).where(and(mine(kem), eq(kem.lastResort, true))));
  for (const part of chunkRows([...u.oneTimePrekeys], 4)) {
    stmts.push(db.insert(otp).values(part.map((k) => ({ userId, deviceId, keyId: k.id, publicKey: k.publicKey }))));
  }
  for (const part of chunkRows([...u.kemPrekeys], 7)) {
    stmts.push(
      db.insert(kem).values(
        part.map((k) => ({
          userId,
          deviceId,
          keyId: k.id,
          publicKey: k.publicKey,
          signature: k.signature,
          lastResort: k.lastResort,
          createdAt: now,
        })),
      ),
    );
  }
  // Guards against a concurrent upload: if the stored count is now over the limit, re-insert an existing
  // row, which hits the primary key and rolls the whole batch back.
  const max = LIMITS.maxStoredPrekeys;
  stmts.push(
    db.run(
      sql`INSERT INTO one_time_prekeys (user_id, device_id, key_id, public_key) SELECT user_id, device_id, key_id, public_key FROM one_time_prekeys WHERE user_id = ${userId} AND device_id = ${deviceId} AND (SELECT count(*) FROM one_time_prekeys WHERE user_id = ${userId} AND device_id = ${deviceId}) > ${max} LIMIT 1`,
    ),
    db.run(
      sql`INSERT INTO kem_prekeys (user_id, device_id, key_id, public_key, signature, last_resort, created_at) SELECT user_id, device_id, key_id, public_key, signature, last_resort, created_at FROM kem_prekeys WHERE user_id = ${userId} AND device_id = ${deviceId} AND last_resort = 0 AND (SELECT count(*) FROM kem_prekeys WHERE user_id = ${userId} AND device_id = ${deviceId} AND last_resort = 0) > ${max} LIMIT 1`,
    ),
  );
  stmts.push(
    auditStmt(caller, 'prekeys.uploaded', {
      signedPrekey: u.signedPrekey !== null,
      oneTime: u.oneTimePrekeys.length,
      kemOneTime: kemOneTime.length,
      lastResort: lastResorts.length > 0,
    }),
  );
  try {
    await writeBatch(caller.env, stmts);
  } catch (err) {
    if (!isConstraintError(err)) throw err;
    throw new AppError(409, 'prekey_conflict', 'a concurrent upload changed the stored prekeys; retry');
  }
  // Tell the user's conversations again (the first time was at registration, before it had keys): members
  // who gave it WITHHELD for their sender key retry now (engine.ts onDevicesHint).
  if (firstKeys) await notifyConversations(caller.env, db, userId, (stub) => stub.devicesChanged(userId));
  return prekeyCounts(db, userId, deviceId);
}

export interface DeviceBundle {
  deviceId: string;
  /** base64url of `encodeBundle` (decodeBundle + verifyBundle on the client). */
  bundle: string;
  signedPrekeyId: number;
  oneTimePrekeyId: number | null;
  kemPrekeyId: number;
  kemLastResort: boolean;
  remaining: { oneTime: number; kem: number };
  low: boolean;
}

export interface ClaimResult {
  userId: string;
  identityKey: string;
  deviceList: { version: number; bytes: string };
  devices: DeviceBundle[];
  /** Live devices that have not uploaded a signed prekey and an ML-KEM prekey yet. */
  unavailable: string[];
}

/** Atomically takes one one-time EC prekey (or none). */
async function takeOneTime(db: Db, userId: string, deviceId: string) {
  const pick = db
    .select({ k: otp.keyId })
    .from(otp)
    .where(and(eq(otp.userId, userId), eq(otp.deviceId, deviceId)))
    .limit(1);
  const rows = await db
    .delete(otp)
    .where(and(eq(otp.userId, userId), eq(otp.deviceId, deviceId), eq(otp.keyId, pick)))
    .returning({ id: otp.keyId, publicKey: otp.publicKey });
  return rows[0] ?? null;
}

/** Atomically takes one one-time ML-KEM prekey, else returns the last-resort one (not deleted). */
async function takeKem(db: Db, userId: string, deviceId: string) {
  const cols = { id: kem.keyId, publicKey: kem.publicKey, signature: kem.signature, lastResort: kem.lastResort };
  const pick = db
    .select({ k: kem.keyId })
    .from(kem)
    .where(and(eq(kem.userId, userId), eq(kem.deviceId, deviceId), eq(kem.lastResort, false)))
    .limit(1);
  const taken = await db
    .delete(kem)
    .where(and(eq(kem.userId, userId), eq(kem.deviceId, deviceId), eq(kem.lastResort, false), eq(kem.keyId, pick)))
    .returning(cols);
  if (taken[0]) return taken[0];
  const lastResort = await db
    .select(cols)
    .from(kem)
    .where(and(eq(kem.userId, userId), eq(kem.deviceId, deviceId), eq(kem.lastResort, true)))
    .get();
  return lastResort ?? null;
}

/** Bundles for every live device of `targetUserId` (the caller's own device is skipped). */
export async function claimBundles(caller: Caller, targetUserId: string): Promise<ClaimResult> {
  const { db, env, auth } = caller;
  await enforceRateLimit(env, 'claim', [`acct:${auth.userId}`, `client:${caller.clientHash}`]);
  const user = await db
    .select({
      identityKey: schema.users.identityKey,
      version: schema.deviceLists.version,
      list: schema.deviceLists.list,
    })
    .from(schema.users)
    .innerJoin(schema.deviceLists, eq(schema.deviceLists.userId, schema.users.id))
    .where(eq(schema.users.id, targetUserId))
    .get();
  if (!user) throw new AppError(404, 'not_found', 'no such user');
  // Per (claimer, target) pair, as Signal does: one stranger cannot drain one user's one-time prekeys.
  if (targetUserId !== auth.userId) await enforceRateLimit(env, 'claimPair', [`pair:${auth.userId}:${targetUserId}`]);
  const live = await db
    .select({ deviceId: schema.devices.deviceId, certificate: schema.devices.certificate })
    .from(schema.devices)
    .where(and(eq(schema.devices.userId, targetUserId), sql`revoked_at IS NULL`))
    .orderBy(schema.devices.deviceId)
    .all();
  const targets = live.filter((d) => !(targetUserId === auth.userId && d.deviceId === auth.deviceId));

  const results = await Promise.all(
    targets.map(async (d): Promise<DeviceBundle | string> => {
      const signed = await db
        .select({ id: spk.keyId, publicKey: spk.publicKey, signature: spk.signature })
        .from(spk)
        .where(and(eq(spk.userId, targetUserId), eq(spk.deviceId, d.deviceId)))
        .orderBy(desc(spk.createdAt), desc(spk.keyId))
        .get();
      if (!signed) return d.deviceId;
      const k = await takeKem(db, targetUserId, d.deviceId);
      if (!k) return d.deviceId;
      const o = await takeOneTime(db, targetUserId, d.deviceId);
      const counts = await prekeyCounts(db, targetUserId, d.deviceId);
      const bundle = encodeBundle({
        deviceCertificate: decodeDeviceCertificate(asBytes(d.certificate)),
        signedPrekey: { id: signed.id, publicKey: asBytes(signed.publicKey), signature: asBytes(signed.signature) },
        oneTimePrekey: o ? { id: o.id, publicKey: asBytes(o.publicKey) } : null,
        kemPrekey: {
          id: k.id,
          publicKey: asBytes(k.publicKey),
          signature: asBytes(k.signature),
          lastResort: k.lastResort,
        },
      });
      return {
        deviceId: d.deviceId,
        bundle: toB64u(bundle),
        signedPrekeyId: signed.id,
        oneTimePrekeyId: o ? o.id : null,
        kemPrekeyId: k.id,
        kemLastResort: k.lastResort,
        remaining: { oneTime: counts.oneTime, kem: counts.kem },
        low: counts.low,
      };
    }),
  );
  const devices = results.filter((r): r is DeviceBundle => typeof r !== 'string');
  const unavailable = results.filter((r): r is string => typeof r === 'string');
  await writeBatch(env, [
    auditStmt(caller, 'prekeys.claimed', {
      targetUserId,
      bundles: devices.length,
      oneTimeTaken: devices.filter((d) => d.oneTimePrekeyId !== null).length,
      lastResortServed: devices.filter((d) => d.kemLastResort).length,
    }),
  ]);
  return {
    userId: targetUserId,
    identityKey: toB64u(asBytes(user.identityKey)),
    deviceList: { version: user.version, bytes: toB64u(asBytes(user.list)) },
    devices,
    unavailable,
  };
}
