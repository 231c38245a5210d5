/**
 * `npm run bench:web` — the web client's weight and start-up, measured on the production build:
 *
 *  1. `vite build`; gzipped size (zlib, level 9) of every JS file, of the engine worker, and of the JS the
 *     first page actually loads (every script Chromium fetched before the page was ready to type);
 *  2. the build served as in production by `vite preview` (the built Worker in workerd, static assets with
 *     web/public/_headers, i.e. the strict CSP), fresh local D1 state;
 *  3. Chromium (system build via scripts/chromium.ts): time from navigation start to ready-to-type — the
 *     register form's username input present and enabled — with a cold cache (a fresh context per run)
 *     and a warm one; then the full registration (argon2id pre-hash + key generation in the worker +
 *     server) from the click to the chat list; CSP violations reported by the page (register page, chat
 *     list, a Kobalte menu and dialog) are counted.
 *
 * Prints a Markdown section; `--write` appends it to bench/RESULTS.md under "## Web". Options: --runs=N.
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, ensureChromium } from '../scripts/chromium.js';
import { freePort } from '../scripts/dev-server.js';
import { QUIET_ENV, ROOT } from '../scripts/local-env.js';
import { describeMachine, machineInfo, markdownTable, median } from './stats.js';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const RUNS = Number(arg('runs') ?? 10);
const BUDGET_KB = 100;
const ASSETS = join(ROOT, 'dist/client/assets');

const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;
const ms = (n: number) => `${n.toFixed(0)} ms`;
const p95 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.95))]!;

function build(): void {
  process.stdout.write('building…\n');
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build'], {
    cwd: ROOT,
    env: QUIET_ENV,
    encoding: 'utf8',
  });
  if (r.status !== 0) {
    process.stderr.write(r.stdout + r.stderr);
    throw new Error('vite build failed');
  }
}

function gzipSizes(): Map<string, { raw: number; gz: number }> {
  const out = new Map<string, { raw: number; gz: number }>();
  for (const f of readdirSync(ASSETS).filter((f) => f.endsWith('.js'))) {
    const b = readFileSync(join(ASSETS, f));
    out.set(f, { raw: b.length, gz: gzipSync(b, { level: 9 }).length });
  }
  return out;
}

async function startPreview(): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const state = mkdtempSync(join(tmpdir(), 'e2e-chat-bench-web-'));
  const child: ChildProcess = spawn(
    process.execPath,
    [join(ROOT, 'node_modules/tsx/dist/cli.mjs'), 'scripts/dev.ts', 'preview'],
    {
      cwd: ROOT,
      env: { ...QUIET_ENV, PORT: String(port), E2E_CHAT_STATE_DIR: state },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    },
  );
  let log = '';
  child.stdout?.on('data', (d) => (log += d));
  child.stderr?.on('data', (d) => (log += d));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.pid && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    }
    rmSync(state, { recursive: true, force: true });
  };
  for (let i = 0; i < 240; i++) {
    try {
      if ((await fetch(`${url}/api/health`)).ok) return { url, stop };
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await stop();
  throw new Error(`vite preview did not start:\n${log}`);
}

async function main() {
  build();
  const sizes = gzipSizes();
  const worker = [...sizes].find(([f]) => f.startsWith('engine.worker'));
  const allJs = [...sizes.values()].reduce((a, s) => a + s.gz, 0);
  const preview = await startPreview();
  const browser = await chromium.launch({ executablePath: ensureChromium(), args: CHROMIUM_ARGS });
  const cspViolations: string[] = [];
  let ip = 0;
  const context = async () => {
    const ctx = await browser.newContext({ baseURL: preview.url });
    await ctx.setExtraHTTPHeaders({ 'cf-connecting-ip': `10.77.${process.pid & 255}.${++ip}` });
    return ctx;
  };
  const watch = (page: import('playwright-core').Page, loaded: Set<string>) => {
    page.on('response', (r) => {
      const name = basename(new URL(r.url()).pathname);
      if (name.endsWith('.js')) loaded.add(name);
    });
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) cspViolations.push(m.text());
    });
  };
  const readyToType = async (page: import('playwright-core').Page) => {
    await page.goto('/register');
    return page
      .waitForFunction(
        () => {
          const el = document.querySelector<HTMLInputElement>('input[name=username]');
          return el && !el.disabled ? performance.now() : null;
        },
        undefined,
        { polling: 'raf', timeout: 30_000 },
      )
      .then((h) => h.jsonValue() as Promise<number>);
  };

  // Cold: a fresh context (empty cache) per run.
  const cold: number[] = [];
  let firstPage = new Set<string>();
  for (let i = 0; i < RUNS; i++) {
    const ctx = await context();
    const page = await ctx.newPage();
    const loaded = new Set<string>();
    watch(page, loaded);
    cold.push(await readyToType(page));
    if (i === 0) firstPage = loaded;
    await ctx.close();
  }
  // Warm: one context, reloads.
  const warm: number[] = [];
  {
    const ctx = await context();
    const page = await ctx.newPage();
    watch(page, new Set());
    await readyToType(page);
    for (let i = 0; i < RUNS; i++) warm.push(await readyToType(page));
    await ctx.close();
  }
  // Registration: click → chat list (argon2id + keys in the worker + server round trips).
  const register: number[] = [];
  const workerLoads: string[] = [];
  for (let i = 0; i < Math.min(RUNS, 4); i++) {
    const ctx = await context();
    const page = await ctx.newPage();
    const loaded = new Set<string>();
    watch(page, loaded);
    await readyToType(page);
    await page.getByLabel('Username').fill(`bench${Date.now().toString(36)}${i}`);
    await page.getByLabel('Password', { exact: true }).fill('bench password 123');
    await page.getByLabel('Confirm password').fill('bench password 123');
    const t0 = Date.now();
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.waitForURL('**/chats', { timeout: 120_000 });
    await page.getByTestId('me').waitFor();
    register.push(Date.now() - t0);
    if (i === 0) {
      workerLoads.push(...loaded);
      // Exercise the Kobalte menu and dialog under the production CSP (violations are counted).
      await page.getByRole('button', { name: 'New conversation' }).click();
      await page.getByRole('menuitem', { name: 'New chat' }).click();
      await page.getByRole('dialog').waitFor();
      await page.keyboard.press('Escape');
    }
    await ctx.close();
  }
  await browser.close();
  await preview.stop();

  const firstPageGz = [...firstPage].reduce((a, f) => a + (sizes.get(f)?.gz ?? 0), 0);
  const m = machineInfo();
  const rows: string[][] = [
    [
      'JS the first page loads (/register, before ready)',
      `${kb(firstPageGz)} gz`,
      `${firstPage.size} files: ${[...firstPage].join(', ')}`,
    ],
    ['budget for the first page', `≤ ${BUDGET_KB} KB gz`, firstPageGz <= BUDGET_KB * 1024 ? 'met' : 'NOT met'],
    [
      'engine worker (crypto; loaded on submit or when signed in)',
      `${kb(worker?.[1].gz ?? 0)} gz`,
      `${kb(worker?.[1].raw ?? 0)} raw`,
    ],
    [
      'first page + engine worker',
      `${kb(firstPageGz + (worker?.[1].gz ?? 0))} gz`,
      'what a registration downloads in all',
    ],
    ['all JS in the build', `${kb(allJs)} gz`, `${sizes.size} files`],
    [
      'ready-to-type, cold cache (median / p95)',
      `${ms(median(cold))} / ${ms(p95(cold))}`,
      `${RUNS} runs, navigation start → username input enabled`,
    ],
    ['ready-to-type, warm cache (median / p95)', `${ms(median(warm))} / ${ms(p95(warm))}`, `${RUNS} reloads`],
    [
      'registration click → chat list (median)',
      ms(median(register)),
      `${register.length} runs: argon2id (19 MiB, t=2) + keys + 50/50 prekeys + server`,
    ],
    [
      'CSP violations reported by the page',
      String(cspViolations.length),
      cspViolations.slice(0, 2).join(' | ') || 'none',
    ],
  ];
  const section = [
    '## Web (npm run bench:web)',
    '',
    `${describeMachine(m)} · load average ${loadavg()[0]!.toFixed(2)} · production build served by \`vite preview\` (built Worker in workerd, strict CSP) · Chromium headless`,
    '',
    markdownTable(['measure', 'value', 'notes'], rows),
    '',
  ].join('\n');
  process.stdout.write(`\n${section}\n`);
  if (process.argv.includes('--write')) appendFileSync(join(ROOT, 'bench/RESULTS.md'), `\n${section}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
