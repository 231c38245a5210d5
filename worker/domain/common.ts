/**
 * Shared pieces of the domain layer (devices, key directory, conversations): the curve implementation,
 * audit statements that join a `db.batch`, and the caller identity every domain function receives.
 *
 * The domain functions are called by both the REST routes and the GraphQL resolvers, so every check
 * lives here once. They throw AppError; the REST layer renders it as `{error:{code}}`, GraphQL as
 * `{errors:[{extensions:{code}}]}`.
 */
import { type Curve25519, defaultCurves } from '../../web/src/protocol/primitives.js';
import type { Db } from '../db.js';
import { d1, schema } from '../db.js';
import type { AuthContext, Env } from '../env.js';

/** WebCrypto Ed25519 in workerd (noble's pure-JS verify costs ~2.8 ms each). */
export const curves = (): Promise<Curve25519> => defaultCurves();

/** What every domain call needs: bindings, a drizzle handle, the authenticated device and the client hash. */
export interface Caller {
  env: Env;
  db: Db;
  auth: AuthContext;
  clientHash: string;
}

export type AuditDetails = Record<string, string | number | boolean | null>;

export interface AuditFields {
  userId?: string | null;
  deviceId?: string | null;
  clientHash?: string | null;
  details?: AuditDetails;
}

/**
 * An audit_events insert (ids and counts only — never secrets or plaintext) to put in the same batch as the
 * change it records. `at` defaults to the row default (now).
 */
export function auditInsert(db: Db, event: string, f: AuditFields, at?: number) {
  return db.insert(schema.auditEvents).values({
    ...(at === undefined ? {} : { at }),
    event,
    userId: f.userId ?? null,
    deviceId: f.deviceId ?? null,
    clientHash: f.clientHash ?? null,
    details: f.details ? JSON.stringify(f.details) : null,
  });
}

/** auditInsert for the authenticated caller of a domain function. */
export function auditStmt(caller: Caller, event: string, details?: AuditDetails) {
  return auditInsert(caller.db, event, {
    userId: caller.auth.userId,
    deviceId: caller.auth.deviceId,
    clientHash: caller.clientHash,
    details,
  });
}

/**
 * Splits rows for multi-row statements under D1's per-statement limits: at most `maxParams` bound
 * parameters (D1 allows 100) and, with `sizeOf`, at most `maxBytes` of payload per statement.
 */
export function chunkRows<T>(
  rows: readonly T[],
  paramsPerRow: number,
  opts: { maxParams?: number; sizeOf?: (row: T) => number; maxBytes?: number } = {},
): T[][] {
  const { maxParams = 90, sizeOf = () => 0, maxBytes = Number.POSITIVE_INFINITY } = opts;
  const rowsPerStmt = Math.max(1, Math.floor(maxParams / paramsPerRow));
  const out: T[][] = [];
  let cur: T[] = [];
  let bytes = 0;
  for (const row of rows) {
    const size = sizeOf(row);
    if (cur.length > 0 && (cur.length >= rowsPerStmt || bytes + size > maxBytes)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(row);
    bytes += size;
  }
  if (cur.length) out.push(cur);
  return out;
}

/** D1 returns BLOB columns as ArrayBuffer or number[] depending on the path; normalise to Uint8Array. */
export function asBytes(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (Array.isArray(v)) return Uint8Array.from(v as number[]);
  throw new Error('not a blob');
}

/**
 * True if the error is a D1/SQLite constraint failure (primary key / unique), i.e. a lost race. With
 * `target` (`"table.column"`, or `"table."` for any column of a table), only a failure SQLite reports on
 * that target counts (`UNIQUE constraint failed: users.username`).
 */
export function isConstraintError(err: unknown, target?: string): boolean {
  const msg = err instanceof Error ? `${err.message} ${String((err as { cause?: unknown }).cause ?? '')}` : '';
  if (!/constraint/i.test(msg)) return false;
  return target === undefined || msg.includes(target);
}

/** Anything drizzle can render to SQL + bound params: query builders (`toSQL`) and `db.run(sql…)` (`getQuery`). */
type Renderable = { toSQL(): { sql: string; params: unknown[] } } | { getQuery(): { sql: string; params: unknown[] } };

/**
 * Runs write statements as ONE D1 batch (a single transaction: all or nothing) and returns each statement's
 * result (`meta.changes` tells a compare-and-swap whether it won). Used instead of
 * `db.batch` because drizzle 0.45's D1 batch cannot bind parameters of `db.run(sql…)` items
 * (SQLiteRaw has no prepared `stmt`), which the compare-and-swap guards need. Every value stays a bound
 * parameter (pitfall 26): drizzle renders the SQL text, D1 binds the values.
 */
export async function writeBatch(
  env: Pick<Env, 'DB'> & Partial<Pick<Env, 'APP_ENV' | 'E2E_CHAT_FAULTS'>>,
  items: readonly unknown[],
): Promise<D1Result[]> {
  const db = d1(env); // through the fault hook like every other D1 access (db.ts)
  const stmts = (items as Renderable[]).map((item) => {
    const q = 'toSQL' in item ? item.toSQL() : item.getQuery();
    return db.prepare(q.sql).bind(...q.params);
  });
  return stmts.length > 0 ? db.batch(stmts) : [];
}
