/**
 * The reliability suites (reliability/) in their CI size: load, bad input and secrets against one shared
 * `npm run dev` (raised rate limits, own state folder for the D1 snapshot); faults against its own dev
 * server, which it SIGKILLs and restarts (other port, state folder and vars file: the shared server is not
 * touched). Load: engines in worker threads, a 2-user × 2-device group and 5 pairs × 10 messages each way,
 * 10 raw devices; bad input: fast-check over every HTTP route, GraphQL field and WebSocket frame type the
 * app has (discovered from the app), plus oversize / truncated bodies, wrong content types and refused
 * upgrades on every route; faults: restart,
 * socket drops, 30 % D1 write failures, a crash between encrypt and send; secrets: the logs and every
 * state file of both servers searched for plaintexts, private keys, passwords and tokens.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BADINPUT_CI, badInputSuite } from '../reliability/badinput.js';
import { FAULTS_CI, faultsSuite, stopFaults } from '../reliability/faults.js';
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
  await stopFaults(); // only if the faults test timed out: the suite stops its own server when it ends
  await server?.stop();
});

describe('reliability suites (CI size)', () => {
  it('load: every device ends with every message once, decrypted, in the same order', { timeout: 90_000 }, async () => {
    const r = await loadSuite(server.url, LOAD_CI);
    results.push(r);
    expect(r.failures).toEqual([]);
  });

  it('bad input: every discovered route, GraphQL field and frame type — no 5xx, JSON errors, oversize bodies 413, refused upgrades delivered, sockets survive or close with documented codes, no D1 row changed', {
    timeout: 240_000,
  }, async () => {
    const r = await badInputSuite(server.url, server.stateDir, BADINPUT_CI);
    results.push(r);
    expect(r.failures).toEqual([]);
  });

  it('faults: restart, socket drops, D1 write failures, crash before send — nothing acknowledged lost, no duplicates, no key/nonce reuse', {
    // Two dev-server restarts (three before the d1 phase went last): ~40 s each at a load average of 15 on 2
    // cores (294 s in all for three, measured there).
    timeout: 420_000,
  }, async () => {
    const r = await faultsSuite(FAULTS_CI);
    results.push(r);
    expect(r.failures).toEqual([]);
    // The D1 phase really ran under the hook (the suite also fails itself if none was injected).
    expect(Number(r.rows.find(([k]) => k.startsWith('d1: D1 writes failed'))?.[1])).toBeGreaterThan(0);
  });

  it('secrets: no plaintext, private key, password or token in logs, D1 or Durable Object storage', async () => {
    collect(server);
    const r = secretsSuite();
    results.push(r);
    expect(r.failures).toEqual([]);
    expect(Number(r.rows.find(([k]) => k === 'secrets found')?.[1])).toBe(0);
  });
});
