/**
 * Starts `npm run dev` (scripts/dev.ts) for the browser tests, benchmarks and reliability suites: on a
 * free loopback port, with its own fresh local state folder, and resolves once /api/health answers.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDevVars, QUIET_ENV, ROOT } from './local-env.js';

export interface DevServer {
  url: string;
  stateDir: string;
  child: ChildProcess;
  output: () => string;
  stop: () => Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface DevServerOptions {
  timeoutMs?: number;
  /** Process environment for `npm run dev` (note: the Worker does not see it once `.dev.vars` exists). */
  env?: Record<string, string>;
  /**
   * Worker variables (e.g. RATE_LIMITS): written with a copy of the local secrets to a git-ignored
   * `.dev.vars.<name>` that wrangler loads instead of `.dev.vars` for CLOUDFLARE_ENV=<name>; removed on stop.
   */
  vars?: Record<string, string>;
  /** Use (and keep on stop) this state folder, so D1/DO state survives a restart; default: fresh, removed. */
  stateDir?: string;
  /** Listen on this port (a restart on the same address); default: a free one. */
  port?: number;
}

export async function startDevServer(opts: DevServerOptions = {}): Promise<DevServer> {
  const port = opts.port ?? (await freePort());
  const stateDir = opts.stateDir ?? mkdtempSync(join(tmpdir(), 'e2e-chat-state-'));
  let varsFile: string | undefined;
  const env: Record<string, string> = { ...opts.env };
  if (opts.vars) {
    ensureDevVars();
    // The environment name is part of the Worker's name and so of its Durable Objects' storage folder: a
    // restart on a kept state folder must use the same name to find its objects again.
    const name = `devserver${opts.stateDir ? createHash('sha256').update(opts.stateDir).digest('hex').slice(0, 8) : randomBytes(4).toString('hex')}`;
    varsFile = `${ROOT}.dev.vars.${name}`;
    const extra = Object.entries(opts.vars).map(([k, v]) => `${k}='${v}'`);
    writeFileSync(varsFile, `${readFileSync(`${ROOT}.dev.vars`, 'utf8').trimEnd()}\n${extra.join('\n')}\n`, {
      mode: 0o600,
    });
    env.CLOUDFLARE_ENV = name;
  }
  let out = '';
  const child = spawn(process.execPath, [`${ROOT}node_modules/tsx/dist/cli.mjs`, `${ROOT}scripts/dev.ts`], {
    cwd: ROOT,
    env: { ...QUIET_ENV, PORT: String(port), E2E_CHAT_STATE_DIR: stateDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.pid) {
      const exited = new Promise((r) => child.once('exit', r));
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    if (varsFile) rmSync(varsFile, { force: true });
    if (!opts.stateDir) rmSync(stateDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + (opts.timeoutMs ?? 90_000);
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    try {
      const res = await fetch(`${url}/api/health`);
      if (res.ok) return { url, stateDir, child, output: () => out, stop };
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await stop();
  throw new Error(`dev server did not become healthy:\n${out.slice(-4000)}`);
}
