/**
 * Device-list store: turns a client-signed device list into the D1 statements that make the server's
 * tables agree with it. Used by registration and identity reset (routes/auth.ts) and by the devices API.
 *
 * Rules (all checked with the protocol core, web/src/protocol/identity.ts):
 *  - the list decodes strictly, is for `userId`, and is signed by `currentIdentityKey` — the key stored for
 *    the user, or (identity reset, `allowIdentityChange`) the new key the caller has accepted;
 *  - version = previous version + 1 (1 when there is no previous list); rollback/replay and skipped versions
 *    are refused with distinct reasons;
 *  - every certificate verifies, no duplicates, at most MAX_DEVICES_PER_USER devices;
 *  - a device id already known to the server must carry the exact same certificate and still be live:
 *    a revoked device id is never resurrected, and a live device id never silently changes keys;
 *  - live devices missing from the new list are revoked: `revoked_at` set, their signed / one-time / KEM
 *    prekeys deleted, their token families revoked (so requireAuth refuses them at once).
 *
 * Concurrency: the statements compare-and-swap the device_lists row on the previous version; if another
 * update won the race, a guard INSERT hits the primary key and the whole `db.batch` rolls back.
 *
 * Does NOT: run the statements (callers put them in one `db.batch([...])` with their own), audit, or decide
 * whether an identity change is allowed (the caller passes `allowIdentityChange` after its own checks).
 */
import { and, eq, inArray, isNull, sql } from 'drizzle-orm';
import type { BatchItem } from 'drizzle-orm/batch';
import { equal } from '../web/src/protocol/bytes.js';
import { MAX_DEVICES_PER_USER } from '../web/src/protocol/constants.js';
import { ErrorCode, ProtocolError } from '../web/src/protocol/errors.js';
import {
  decodeDeviceList,
  encodeDeviceCertificate,
  type VerifiedDevice,
  type VerifiedDeviceList,
  verifyDeviceList,
} from '../web/src/protocol/identity.js';
import { defaultCurves } from '../web/src/protocol/primitives.js';
import type { Db } from './db.js';
import { schema } from './db.js';
import { isConstraintError } from './domain/common.js';
import { AppError } from './errors.js';

export type DeviceListRejection =
  | 'decode'
  | 'wrong_user'
  | 'identity_mismatch'
  | 'first_version_not_1'
  | 'rollback'
  | 'skipped_version'
  | 'bad_signature'
  | 'invalid_key'
  | 'too_many_devices'
  | 'invalid_structure'
  | 'device_id_reused';

/**
 * The 409 for a batch carrying applyDeviceList statements that lost a race: the compare-and-swap guard hit
 * device_lists' primary key, or a concurrent update added the same device id first. Null for any other error.
 */
export function deviceListConflict(err: unknown): AppError | null {
  if (!isConstraintError(err, 'device_lists.') && !isConstraintError(err, 'devices.')) return null;
  return new AppError(409, 'device_list_conflict', 'the device list changed concurrently; fetch it and retry');
}

export function invalidDeviceList(reason: DeviceListRejection, message = 'device list refused'): AppError {
  return new AppError(422, 'invalid_device_list', message, { reason });
}

export type Statement = BatchItem<'sqlite'>;

export interface AppliedDeviceList {
  /** The list as the protocol core verified it. */
  verified: VerifiedDeviceList;
  /** The exact bytes the client signed (stored as-is). */
  listBytes: Uint8Array;
  /** Devices inserted by this update. */
  added: VerifiedDevice[];
  /** Device ids revoked by this update. */
  revoked: string[];
  /** Statements for one `db.batch([...yours, ...statements])` (order matters: users row first on register). */
  statements: [Statement, ...Statement[]];
}

function reasonFor(err: unknown): DeviceListRejection {
  if (!(err instanceof ProtocolError)) throw err;
  switch (err.code) {
    case ErrorCode.Decode:
      return 'decode';
    case ErrorCode.Signature:
      return 'bad_signature';
    case ErrorCode.UntrustedIdentity:
      return 'identity_mismatch';
    case ErrorCode.InvalidKey:
      return 'invalid_key';
    case ErrorCode.LimitExceeded:
      return 'too_many_devices';
    default:
      return 'invalid_structure';
  }
}

/**
 * Verifies `newListBytes` as the successor of `prevListBytes` (null: the user's first list) and returns
 * the statements that store it. Throws 422 `invalid_device_list` with a `reason` (see DeviceListRejection).
 * `prevListBytes` comes from our own device_lists row, so it is decoded, not re-verified.
 */
export async function applyDeviceList(
  db: Db,
  userId: string,
  currentIdentityKey: Uint8Array,
  prevListBytes: Uint8Array | null,
  newListBytes: Uint8Array,
  opts: { allowIdentityChange?: boolean; now?: number } = {},
): Promise<AppliedDeviceList> {
  const now = opts.now ?? Date.now();
  let list: ReturnType<typeof decodeDeviceList>;
  try {
    list = decodeDeviceList(newListBytes);
  } catch (err) {
    throw invalidDeviceList(reasonFor(err) === 'too_many_devices' ? 'too_many_devices' : 'decode');
  }
  if (list.userId !== userId) throw invalidDeviceList('wrong_user', 'device list is for another user');
  if (list.devices.length > MAX_DEVICES_PER_USER) throw invalidDeviceList('too_many_devices');

  const prev = prevListBytes ? decodeDeviceList(prevListBytes) : null;
  if (prev && !opts.allowIdentityChange && !equal(prev.userIdentityKey, currentIdentityKey)) {
    // Our own state disagrees with itself: never paper over it.
    throw new Error('stored device list is not signed by the stored identity key');
  }
  if (!equal(list.userIdentityKey, currentIdentityKey)) {
    throw invalidDeviceList('identity_mismatch', 'device list is not signed by the account identity key');
  }
  const expected = prev ? prev.version + 1 : 1;
  if (list.version !== expected) {
    if (!prev) throw invalidDeviceList('first_version_not_1', 'the first device list must be version 1');
    throw list.version < expected
      ? invalidDeviceList('rollback', `device list version must be ${expected} (rollback or replay)`)
      : invalidDeviceList('skipped_version', `device list version must be ${expected} (version skipped)`);
  }

  let verified: VerifiedDeviceList;
  try {
    verified = await verifyDeviceList(await defaultCurves(), list, currentIdentityKey);
  } catch (err) {
    throw invalidDeviceList(reasonFor(err));
  }

  const known = await db
    .select({
      deviceId: schema.devices.deviceId,
      certificate: schema.devices.certificate,
      revokedAt: schema.devices.revokedAt,
    })
    .from(schema.devices)
    .where(eq(schema.devices.userId, userId))
    .all();
  const byId = new Map(known.map((k) => [k.deviceId, k]));

  const added: VerifiedDevice[] = [];
  for (const d of verified.devices) {
    const row = byId.get(d.deviceId);
    if (!row) {
      added.push(d);
      continue;
    }
    if (row.revokedAt !== null || !equal(new Uint8Array(row.certificate), encodeDeviceCertificate(d.certificate))) {
      throw invalidDeviceList(
        'device_id_reused',
        'a device id already used by this account must keep its certificate and cannot be revived',
      );
    }
  }
  const listed = new Set(verified.devices.map((d) => d.deviceId));
  const revoked = known.filter((k) => k.revokedAt === null && !listed.has(k.deviceId)).map((k) => k.deviceId);

  const statements: Statement[] = [];
  if (prev) {
    statements.push(
      db
        .update(schema.deviceLists)
        .set({ version: list.version, list: newListBytes, updatedAt: now })
        .where(and(eq(schema.deviceLists.userId, userId), eq(schema.deviceLists.version, prev.version))),
      // Guard: if the compare-and-swap above matched nothing (a concurrent update won), this INSERT hits
      // the primary key and the batch rolls back. Bound parameters only (pitfall 26).
      db
        .insert(schema.deviceLists)
        .select(
          sql`SELECT ${userId}, ${list.version}, ${newListBytes}, ${now} WHERE NOT EXISTS (SELECT 1 FROM device_lists WHERE user_id = ${userId} AND version = ${list.version} AND list = ${newListBytes})`,
        ),
    );
  } else {
    statements.push(
      db.insert(schema.deviceLists).values({ userId, version: list.version, list: newListBytes, updatedAt: now }),
    );
  }
  if (added.length > 0) {
    statements.push(
      db.insert(schema.devices).values(
        added.map((d) => ({
          userId,
          deviceId: d.deviceId,
          certificate: encodeDeviceCertificate(d.certificate),
          signingKey: new Uint8Array(d.signingKey),
          identityKey: new Uint8Array(d.identityKey),
          createdAt: now,
        })),
      ),
    );
  }
  if (revoked.length > 0) {
    statements.push(
      db
        .update(schema.devices)
        .set({ revokedAt: now })
        .where(
          and(
            eq(schema.devices.userId, userId),
            inArray(schema.devices.deviceId, revoked),
            isNull(schema.devices.revokedAt),
          ),
        ),
      db
        .delete(schema.signedPrekeys)
        .where(and(eq(schema.signedPrekeys.userId, userId), inArray(schema.signedPrekeys.deviceId, revoked))),
      db
        .delete(schema.oneTimePrekeys)
        .where(and(eq(schema.oneTimePrekeys.userId, userId), inArray(schema.oneTimePrekeys.deviceId, revoked))),
      db
        .delete(schema.kemPrekeys)
        .where(and(eq(schema.kemPrekeys.userId, userId), inArray(schema.kemPrekeys.deviceId, revoked))),
      db
        .update(schema.tokenFamilies)
        .set({ revokedAt: now, revokeReason: 'device_revoked' })
        .where(
          and(
            eq(schema.tokenFamilies.userId, userId),
            inArray(schema.tokenFamilies.deviceId, revoked),
            isNull(schema.tokenFamilies.revokedAt),
          ),
        ),
    );
  }
  return {
    verified,
    listBytes: newListBytes,
    added,
    revoked,
    statements: statements as [Statement, ...Statement[]],
  };
}
