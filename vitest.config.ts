import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-pool-workers';
import { defineConfig } from 'vitest/config';
import { ktPublicKeyOf } from './scripts/local-env.js';

/**
 * Outside workerd, `cloudflare:workers` (the Durable Object base classes) is a stub: the bad-input suite
 * imports the Worker's app to discover its routes (reliability/lib/surface.ts).
 */
const workerdStub = {
  'cloudflare:workers': fileURLToPath(new URL('./reliability/lib/workerd-stub.mjs', import.meta.url)),
};

/** Fresh secrets for every test run (the pool must not depend on a developer's .dev.vars). */
const secret = () => randomBytes(32).toString('base64url');
const ktSeed = secret();

/** Unit + worker files side by side: at least 2 (see the unit project), one fewer than cores on bigger machines. */
const phase1Workers = Math.max(2, availableParallelism() - 1);

/**
 * Three suites, one command (`npm test` runs them all; `--project <name>` runs one):
 *  - unit:    protocol core, client engine, bot SDK and scripts, in Node;
 *  - worker:  the Worker and its Durable Objects inside workerd, with real D1 (migrations applied) and DOs;
 *  - browser: real Chromium (Debian's package, driven by playwright-core) against `npm run dev`,
 *             started and stopped by e2e/global-setup.ts.
 */
export default defineConfig({
  test: {
    reporters: ['default', './scripts/summary-reporter.ts'],
    projects: [
      {
        resolve: { alias: workerdStub },
        test: {
          name: 'unit',
          include: ['web/src/**/*.test.ts', 'scripts/**/*.test.ts', 'reliability/**/*.test.ts', 'bots/**/*.test.ts'],
          environment: 'node',
          testTimeout: 30_000,
          // Vitest's default is one fewer worker than cores: on the 2-core CI that is ONE, so unit and worker
          // files ran one after the other while a core idled. Both projects share group 0, so they need the
          // same count (vitest refuses two counts in one group); the browser project runs alone after them.
          maxWorkers: phase1Workers,
        },
      },
      {
        plugins: [
          cloudflareTest(async () => ({
            main: './worker/index.ts',
            wrangler: { configPath: './wrangler.toml' },
            miniflare: {
              bindings: {
                APP_ENV: 'test',
                APP_ORIGIN: 'https://app.example',
                // Defaults everywhere except conversation creation / member additions per account, which
                // tests that build many groups from one owner would exhaust; worker/hardening.test.ts tests
                // those two at their defaults through app.fetch with RATE_LIMITS emptied.
                RATE_LIMITS: JSON.stringify({
                  conversationCreate: { limit: 100_000, windowMs: 3_600_000 },
                  memberAdd: { limit: 100_000, windowMs: 3_600_000 },
                }),
                // Retries and timeouts in seconds, so retries and disabling are testable (worker/webhooks/config.ts).
                WEBHOOK_SETTINGS: JSON.stringify({ retryScheduleSec: [0, 1, 1], timeoutMs: 1500 }),
                JWT_SIGNING_KEYS: `test-a:${secret()},test-b:${secret()}`,
                TOTP_ENCRYPTION_KEY: secret(),
                TOKEN_HASH_KEY: secret(),
                // A fresh log key per run, with its public half (the Worker checks they match; a
                // developer's .dev.vars, which the pool also reads, must not leave its own half here).
                KT_LOG_SIGNING_KEY: ktSeed,
                KT_LOG_PUBLIC_KEY: ktPublicKeyOf(ktSeed),
                // Heads signed at least every 50 ms, so tests see new entries in fresh heads quickly.
                KT_CONFIG: JSON.stringify({ headIntervalMs: 50 }),
                TEST_MIGRATIONS: await readD1Migrations('./schema/migrations'),
              },
            },
          })),
        ],
        test: {
          name: 'worker',
          include: ['worker/**/*.test.ts'],
          setupFiles: ['./worker/test/apply-migrations.ts'],
          // A local webhook receiver (Node) the Worker under test POSTs to.
          globalSetup: ['./worker/test/receiver-setup.ts'],
          testTimeout: 30_000,
          maxWorkers: phase1Workers, // as unit's: one group, one count
        },
      },
      {
        resolve: { alias: workerdStub },
        test: {
          name: 'browser',
          include: ['e2e/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['./e2e/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          fileParallelism: false,
          // After unit + worker have finished: Chromium, the dev servers and the reliability suites
          // competing with the workers pool for 2 cores made 30 s waits in the browser flows expire.
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
