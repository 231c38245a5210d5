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
import { schema } from '../db.js';
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

/** An audit_events insert to put in the same `db.batch` as the change it records (ids and counts only). */
export function auditStmt(caller: Caller, event: string, details?: AuditDetails) {
  return caller.db.insert(schema.auditEvents).values({
    event,
    userId: caller.auth.userId,
    deviceId: caller.auth.deviceId,
    clientHash: caller.clientHash,
    details: details ? JSON.stringify(details) : null,
  });
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
 * Runs write statements as ONE D1 batch (a single transaction: all or nothing). Used instead of
 * `db.batch` because drizzle 0.45's D1 batch cannot bind parameters of `db.run(sql…)` items
 * (SQLiteRaw has no prepared `stmt`), which the compare-and-swap guards need. Every value stays a bound
 * parameter (pitfall 26): drizzle renders the SQL text, D1 binds the values.
 */
export async function writeBatch(env: Pick<Env, 'DB'>, items: readonly unknown[]): Promise<void> {
  const stmts = (items as Renderable[]).map((item) => {
    const q = 'toSQL' in item ? item.toSQL() : item.getQuery();
    return env.DB.prepare(q.sql).bind(...q.params);
  });
  if (stmts.length > 0) await env.DB.batch(stmts);
}
