/**
 * Test-mode fault injection for the reliability suites (reliability/faults.ts): with
 * `E2E_CHAT_FAULTS='{"d1WriteFailRate":0.3}'` (optionally `"match":"mailbox"`, a substring of the SQL) a
 * fraction of D1 writes (INSERT / UPDATE / DELETE / REPLACE statements and batches containing one) throw
 * before reaching D1. Reads are never affected.
 *
 * Applied in one place, `d1(env)` in worker/db.ts, which every D1 access goes through (drizzle via
 * `makeDb`, `writeBatch`, the health check; scripts/check-fault-hook.test.ts fails on any other use of
 * the binding). Two independent locks keep it out of production:
 *  1. compiled out: db.ts only references this module when Vite's mode is "development" (`npm run dev`)
 *     or "test" (the Vitest workers pool); `vite build` (so `build`, `deploy`, `deploy:check`) replaces the
 *     mode by "production" and the bundler drops this file — `deploy` and `deploy:check` fail if any of it
 *     is found in dist/ (scripts/check-fault-hook.ts);
 *  2. inert: even where compiled in, it acts only if APP_ENV is "development" (local `.dev.vars`) AND the
 *     flag is set: wrangler.toml sets APP_ENV="production" and declares no such variable
 *     (worker/faults.test.ts).
 */
import type { Env } from './env.js';
import { log } from './log.js';

export interface FaultConfig {
  d1WriteFailRate: number;
  match?: string;
}

export class InjectedFault extends Error {
  override name = 'InjectedFault';
}

export function faultConfig(env: Partial<Pick<Env, 'APP_ENV' | 'E2E_CHAT_FAULTS'>>): FaultConfig | null {
  if (env.APP_ENV !== 'development' || !env.E2E_CHAT_FAULTS) return null;
  try {
    const c = JSON.parse(env.E2E_CHAT_FAULTS) as Partial<FaultConfig>;
    const rate = Number(c.d1WriteFailRate);
    if (!(rate > 0)) return null;
    return { d1WriteFailRate: Math.min(1, rate), match: typeof c.match === 'string' ? c.match : undefined };
  } catch {
    return null;
  }
}

const WRITE = /^\s*(insert|update|delete|replace)\b/i;
const REAL = Symbol('real statement');
type Stmt = D1PreparedStatement & { [REAL]?: D1PreparedStatement; sql?: string };

function isWrite(sql: string, cfg: FaultConfig): boolean {
  return WRITE.test(sql) && (cfg.match === undefined || sql.includes(cfg.match));
}

function maybeFail(cfg: FaultConfig): void {
  if (Math.random() < cfg.d1WriteFailRate) {
    // One line per injected failure (no SQL, no values), so a suite can count them exactly.
    log('warn', 'fault_injected', { kind: 'd1_write' });
    throw new InjectedFault('injected D1 write failure');
  }
}

function wrapStatement(real: D1PreparedStatement, sql: string, cfg: FaultConfig): D1PreparedStatement {
  const write = isWrite(sql, cfg);
  const guard =
    <A extends unknown[], R>(f: (...a: A) => Promise<R>) =>
    async (...a: A): Promise<R> => {
      if (write) maybeFail(cfg);
      return f(...a);
    };
  const stmt = {
    [REAL]: real,
    sql,
    bind: (...values: unknown[]) => wrapStatement(real.bind(...values), sql, cfg),
    first: guard((col?: string) => (col === undefined ? real.first() : real.first(col))),
    run: guard(() => real.run()),
    all: guard(() => real.all()),
    raw: guard((opts?: { columnNames?: boolean }) => real.raw(opts as { columnNames: true })),
  };
  return stmt as unknown as D1PreparedStatement;
}

/** `db` itself unless faults are configured for this environment; else a wrapper that fails writes. */
export function withFaults(db: D1Database, env: Partial<Pick<Env, 'APP_ENV' | 'E2E_CHAT_FAULTS'>>): D1Database {
  const cfg = faultConfig(env);
  if (!cfg) return db;
  return new Proxy(db, {
    get(target, prop) {
      if (prop === 'prepare') return (sql: string) => wrapStatement(target.prepare(sql), sql, cfg);
      if (prop === 'batch')
        return async (stmts: Stmt[]) => {
          if (stmts.some((s) => s.sql !== undefined && isWrite(s.sql, cfg))) maybeFail(cfg);
          return target.batch(stmts.map((s) => s[REAL] ?? s));
        };
      const v = Reflect.get(target, prop);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}
