/**
 * `npm run reliability` — the load, faults, bad-input and secrets suites against their own `npm run dev`
 * (raised rate limits, loopback only), full size by default; `--ci` runs the configuration of
 * e2e/reliability.test.ts. Prints one Markdown table (bench/RESULTS.md "## Reliability").
 * Options: --ci, --only=load,faults,badinput (secrets always runs last over what the others left).
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeMachine, machineInfo } from '../bench/stats.js';
import type { DevServer } from '../scripts/dev-server.js';
import { BADINPUT_CI, BADINPUT_FULL, badInputSuite } from './badinput.js';
import { FAULTS_CI, FAULTS_FULL, faultsSuite, stopFaults } from './faults.js';
import { LOAD_CI, LOAD_FULL, loadSuite } from './load.js';
import { reportDetails, reportTable, type SuiteResult } from './report.js';
import { collect, secretsSuite } from './secrets.js';
import { startSuiteServer } from './server.js';

const ci = process.argv.includes('--ci');
const only = process.argv
  .find((a) => a.startsWith('--only='))
  ?.slice(7)
  .split(',');
const want = (s: string) => !only || only.includes(s);
const log = (s: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

const results: SuiteResult[] = [];
const t0 = performance.now();
/** The running suite's server and state folder, stopped and removed on Ctrl-C / SIGTERM too. */
let current: { server?: DevServer; stateDir: string } | null = null;
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    log(`${signal}: stopping the suites' dev servers`);
    const c = current;
    void Promise.all([c?.server?.stop(), stopFaults()])
      .catch(() => undefined)
      .finally(() => {
        if (c) rmSync(c.stateDir, { recursive: true, force: true });
        process.exit(130);
      });
  });
/** Each suite gets its own server and state (the bad-input D1 snapshot reads every row: keep it small). */
async function withServer(f: (server: DevServer) => Promise<void>): Promise<void> {
  const stateDir = mkdtempSync(join(tmpdir(), 'e2e-chat-reliability-'));
  current = { stateDir };
  try {
    const server = await startSuiteServer({ stateDir });
    current.server = server;
    try {
      await f(server);
      collect(server);
    } finally {
      await server.stop();
    }
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
    current = null;
  }
}
if (want('load'))
  await withServer(async (server) => {
    results.push(await loadSuite(server.url, ci ? LOAD_CI : LOAD_FULL, log));
    log(`load suite done: ${results.at(-1)!.failures.join('; ') || 'no problems'}`);
  });
if (want('badinput'))
  await withServer(async (server) => {
    results.push(await badInputSuite(server.url, server.stateDir, ci ? BADINPUT_CI : BADINPUT_FULL, log));
    log(`bad-input suite done: ${results.at(-1)!.failures.join('; ') || 'no problems'}`);
  });
if (want('faults')) {
  results.push(await faultsSuite(ci ? FAULTS_CI : FAULTS_FULL, log));
  log(`faults suite done: ${results.at(-1)!.failures.join('; ') || 'no problems'}`);
}
results.push(secretsSuite());
const load = loadavg()
  .map((x) => x.toFixed(1))
  .join(' ');
process.stdout.write(
  `\n${describeMachine(machineInfo())} · load average ${load} · ${ci ? 'CI' : 'full'} configuration · ${((performance.now() - t0) / 1000).toFixed(0)} s\n\n${reportTable(results)}\n${reportDetails(results)}`,
);
process.exitCode = results.some((r) => r.failures.length > 0) ? 1 : 0;
