/** drizzle over D1. All SQL goes through drizzle or bound parameters — never string-built (pitfall 26). */
import { drizzle } from 'drizzle-orm/d1';
import * as schema from '../schema/tables.js';
import type { Env } from './env.js';
import { withFaults } from './faults.js';

export type Db = ReturnType<typeof makeDb>;
/** E2E_CHAT_FAULTS (development only, see faults.ts) can make a fraction of writes fail for fault tests. */
export const makeDb = (env: Pick<Env, 'DB'> & Partial<Pick<Env, 'APP_ENV' | 'E2E_CHAT_FAULTS'>>) =>
  drizzle(withFaults(env.DB, env), { schema });
export { schema };
