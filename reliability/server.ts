/**
 * The suites' own `npm run dev`: raised rate and delivery limits (load runs register hundreds of
 * accounts and send bursts from one address range), optionally a kept state folder and extra variables.
 * Each server optimises its dependencies into `<stateDir>/vite-cache` (vite.config.ts
 * E2E_CHAT_VITE_CACHE_DIR), not the shared node_modules/.vite that other dev servers on the machine
 * re-optimise concurrently; a restart on the same state folder reuses it, and it goes with the folder.
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DevServer, type DevServerOptions, startDevServer } from '../scripts/dev-server.js';
import { DEFAULT_RATE_LIMITS } from '../worker/limits.js';

const HIGH = { limit: 1_000_000, windowMs: 60_000 };

/**
 * Buckets left at their defaults: the bad-input suite's attack shapes (sign-in lockout, group floods) test
 * them, and no suite's normal traffic comes near them (successful sign-ins do not count; every simulated
 * person creates a handful of conversations).
 */
export const DEFAULT_BUCKETS = new Set(['login', 'reset', 'conversationCreate', 'memberAdd']);

export const RAISED_LIMITS = {
  RATE_LIMITS: JSON.stringify(
    Object.fromEntries(
      Object.keys(DEFAULT_RATE_LIMITS)
        .filter((k) => !DEFAULT_BUCKETS.has(k))
        .map((k) => [k, HIGH]),
    ),
  ),
  DELIVERY_LIMITS: JSON.stringify({ sendBurst: 1_000_000, sendPerSec: 1_000_000 }),
};

/** The folder under a state folder that holds the server's Vite dependency cache (not server state). */
export const VITE_CACHE = 'vite-cache';

export async function startSuiteServer(opts: DevServerOptions = {}): Promise<DevServer> {
  // Without a kept state folder this one is fresh and removed on stop, like startDevServer's own.
  const ownDir = opts.stateDir ? null : mkdtempSync(join(tmpdir(), 'e2e-chat-state-'));
  const stateDir = opts.stateDir ?? ownDir!;
  try {
    const server = await startDevServer({
      ...opts,
      stateDir,
      env: { ...opts.env, E2E_CHAT_VITE_CACHE_DIR: join(stateDir, VITE_CACHE) },
      vars: { ...RAISED_LIMITS, ...opts.vars },
    });
    if (!ownDir) return server;
    return {
      ...server,
      stop: async () => {
        await server.stop();
        rmSync(ownDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    if (ownDir) rmSync(ownDir, { recursive: true, force: true });
    throw err;
  }
}
