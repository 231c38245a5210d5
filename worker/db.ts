/** drizzle over D1. All SQL goes through drizzle or bound parameters — never string-built (pitfall 26). */
import { drizzle } from 'drizzle-orm/d1';
import * as schema from '../schema/tables.js';
import type { Env } from './env.js';

export type Db = ReturnType<typeof makeDb>;
export const makeDb = (env: Pick<Env, 'DB'>) => drizzle(env.DB, { schema });
export { schema };
