// Runs inside workerd before each worker test file: applies the real drizzle-kit migrations to the
// test's D1 database (isolated per test file by the pool).
import { applyD1Migrations } from 'cloudflare:test';
import { env } from 'cloudflare:workers';

await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
