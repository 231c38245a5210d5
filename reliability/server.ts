/**
 * The suites' own `npm run dev`: raised rate and delivery limits (load runs register hundreds of
 * accounts and send bursts from one address range), optionally a kept state folder and extra variables.
 * @module
 */
import { type DevServer, type DevServerOptions, startDevServer } from '../scripts/dev-server.js';

const HIGH = { limit: 1_000_000, windowMs: 60_000 };

export const RAISED_LIMITS = {
  RATE_LIMITS: JSON.stringify(
    Object.fromEntries(
      ['register', 'login', 'totp', 'refresh', 'claim', 'ticket', 'lookup', 'probe'].map((k) => [k, HIGH]),
    ),
  ),
  DELIVERY_LIMITS: JSON.stringify({ sendBurst: 1_000_000, sendPerSec: 1_000_000 }),
};

export function startSuiteServer(opts: DevServerOptions = {}): Promise<DevServer> {
  return startDevServer({ ...opts, vars: { ...RAISED_LIMITS, ...opts.vars } });
}
