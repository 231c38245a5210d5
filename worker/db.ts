/**
 * The one place a D1 handle is made from the bindings: every query (drizzle via `makeDb`, `writeBatch`,
 * the health check) goes through `d1(env)`, so the reliability fault hook (faults.ts) sees every D1 write.
 * All SQL goes through drizzle or bound parameters — never string-built (pitfall 26).
 *
 * The hook is compiled out of `npm run build` / `deploy`: `import.meta.env.MODE` is a constant Vite replaces
 * ("production" in `vite build`, "development" in `vite dev`, "test" in the Vitest workers pool), so the
 * bundler drops the branch and with it faults.ts; `scripts/check-fault-hook.ts` fails `deploy:check` /
 * `deploy` if any of it is left in dist/. Plain `wrangler dev` (bench/delivery.ts) has no
 * `import.meta.env`: hook off.
 */
import { drizzle } from 'drizzle-orm/d1';
import * as schema from '../schema/tables.js';
import type { Env } from './env.js';
import { withFaults } from './faults.js';

/**
 * Vite's mode, replaced by a string literal at build time: "production" in `vite build` (whatever NODE_ENV
 * the shell has — unlike `import.meta.env.DEV`, which a NODE_ENV=test or =development shell turns true),
 * "development" in `vite dev`, "test" in Vitest. Absent under plain `wrangler dev`.
 */
const MODE = (import.meta as { env?: { MODE?: string } }).env?.MODE;
const HOOK_COMPILED_IN = MODE === 'development' || MODE === 'test';

type D1Env = Pick<Env, 'DB'> & Partial<Pick<Env, 'APP_ENV' | 'E2E_CHAT_FAULTS'>>;

/**
 * The D1 binding of `env`; in a development build with the fault flag set (and APP_ENV=development, see
 * faults.ts) a wrapper that makes a fraction of writes fail.
 */
export function d1(env: D1Env): D1Database {
  if (HOOK_COMPILED_IN) return withFaults(env.DB, env);
  return env.DB;
}

export type Db = ReturnType<typeof makeDb>;
export const makeDb = (env: D1Env) => drizzle(d1(env), { schema });
export { schema };
