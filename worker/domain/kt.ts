/**
 * Key transparency from the Worker's side: what registration, identity reset and account deletion record
 * in the log (KeyLogDO, worker/kt-log.ts), and the proof the username lookup and the device-list fetch
 * attach to their answer (`kt`: the user's latest entry, its leaf index, a signed tree head and the
 * inclusion proof — clients verify all of it before trusting the key, docs/PROTOCOL.md §"Key transparency").
 *
 * Recording is best effort at the moment it happens (a registration that committed in D1 is not undone
 * because the log was unreachable): `proveUser` passes what D1 says the user's current key is, and the log
 * appends it first if it is missing, so a lost append heals on the next lookup.
 *
 * Does NOT: decide anything a client trusts — a server that lies here is caught by the clients' checks.
 */
import { toB64u } from '../../web/src/protocol/bytes.js';
import type { Env } from '../env.js';
import { AppError } from '../errors.js';
import type { KtAppend, KtAppendResult, KtProof } from '../kt-log.js';
import { log } from '../log.js';
import { onAccountDeletion } from './account.js';

/** The one log object (docs/ARCHITECTURE.md §"Key transparency log" says how it would shard). */
export const ktLog = (env: Pick<Env, 'KT_LOG'>) => env.KT_LOG.get(env.KT_LOG.idFromName('kt-log'));

export interface KtProofJson {
  /** base64url of the encoded log entry. */
  entry: string;
  index: number;
  /** base64url of the signed tree head. */
  head: string;
  /** base64url hashes, RFC 9162 order. */
  proof: string[];
}

export const ktProofJson = (p: KtProof): KtProofJson => ({
  entry: toB64u(p.entry),
  index: p.index,
  head: toB64u(p.head),
  proof: p.proof.map((h) => toB64u(h)),
});

export interface UserKey {
  userId: string;
  username: string;
  identityKey: Uint8Array;
  identityVersion: number;
}

const keyEntry = (u: UserKey): KtAppend => ({
  kind: 'key',
  userId: u.userId,
  version: u.identityVersion,
  username: u.username,
  identityKey: u.identityKey,
});

/** Registration (version 1) or identity reset (version + 1): appended, awaited, never failing the caller. */
export async function ktRecordKey(env: Env, u: UserKey): Promise<void> {
  try {
    const [r] = await ktLog(env).append([keyEntry(u)]);
    if (!r?.ok) log('error', 'kt_record_refused', { reason: r?.ok === false ? r.reason : 'unknown' });
  } catch (err) {
    log('error', 'kt_record_failed', { type: err instanceof Error ? err.name : 'unknown' });
  }
}

/**
 * Account deletion (called by the deletion flow): a tombstone entry (user id and version only) is appended
 * and the log erases the stored bytes of the user's earlier entries — the log is append-only, so their leaf
 * hashes stay and every proof still verifies, but neither the username nor a key is served again.
 */
export async function ktRecordDeletion(env: Env, userId: string): Promise<KtAppendResult> {
  return ktLog(env).recordDeletion(userId);
}

// Account deletion (worker/domain/account.ts): AFTER the D1 rows are gone (no new key can be logged for the
// account meanwhile), the tombstone; a failure is logged for the operator by the deletion flow.
onAccountDeletion('key-transparency', async ({ env, userId }) => {
  await ktRecordDeletion(env, userId);
});

/** A call into the log object: its failure is 503 `kt_unavailable` (logged by type), never a bare 500. */
export async function ktCall<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    log('error', 'kt_log_failed', { what, type: err instanceof Error ? err.name : 'unknown' });
    throw new AppError(503, 'kt_unavailable', 'the key transparency log is unavailable; try again later');
  }
}

/** The user's latest entry proven against a fresh head (healing a missing append from D1's state). */
export async function proveUser(env: Env, u: UserKey): Promise<KtProofJson | null> {
  const proof = await ktCall('prove', () => ktLog(env).proveLatest(u.userId, keyEntry(u)));
  return proof ? ktProofJson(proof) : null;
}
