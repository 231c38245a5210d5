/**
 * The reliability suites (reliability/) in their CI size, against their own `npm run dev` (raised rate
 * limits, own state folder for the D1 snapshot): load (engines: a 2-user × 2-device group and 5 pairs × 10
 * messages each way, 10 raw devices), bad input (fast-check: HTTP routes, GraphQL, WebSocket frames) and
 * secrets (logs and every state file searched for plaintexts, private keys, passwords and tokens).
 * The faults suite runs in `npm run reliability` only (see bench/RESULTS.md "## Reliability").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BADINPUT_CI, badInputSuite } from '../reliability/badinput.js';
import { LOAD_CI, loadSuite } from '../reliability/load.js';
import { reportTable, type SuiteResult } from '../reliability/report.js';
import { collect, secretsSuite } from '../reliability/secrets.js';
import { startSuiteServer } from '../reliability/server.js';
import type { DevServer } from '../scripts/dev-server.js';

let server: DevServer;
const results: SuiteResult[] = [];

beforeAll(async () => {
  server = await startSuiteServer();
});

afterAll(async () => {
  if (results.length) console.log(reportTable(results));
  await server?.stop();
});

describe('reliability suites (CI size)', () => {
  it('load: every device ends with every message once, decrypted, in the same order', { timeout: 90_000 }, async () => {
    const r = await loadSuite(server.url, LOAD_CI);
    results.push(r);
    expect(r.failures).toEqual([]);
  });

  it('bad input: no 5xx, sockets survive or close with documented codes, no D1 row changed', {
    timeout: 90_000,
  }, async () => {
    const r = await badInputSuite(server.url, server.stateDir, BADINPUT_CI);
    results.push(r);
    expect(r.failures).toEqual([]);
  });

  it('secrets: no plaintext, private key, password or token in logs, D1 or Durable Object storage', async () => {
    collect(server);
    const r = secretsSuite();
    results.push(r);
    expect(r.failures).toEqual([]);
    expect(Number(r.rows[2]![1])).toBe(0);
  });
});
