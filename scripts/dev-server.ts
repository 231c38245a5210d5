/**
 * Starts `npm run dev` (scripts/dev.ts) for the browser tests, benchmarks and reliability suites: on a
 * free loopback port, with its own fresh local state folder, and resolves once /api/health answers.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { QUIET_ENV, ROOT } from './local-env.js';

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

/** Whether a failed start says its port (or one it picked beside it) was taken meanwhile. */
const portTaken = (err: unknown) => err instanceof Error && /Address already in use|EADDRINUSE/.test(err.message);

/**
 * Runs `start` on a free port, again on another one (up to 3 tries) when the port was taken between
 * `freePort()` and the server binding it — two servers started side by side (the app and the relay of
 * bench:delivery) can pick each other's ports, or one's inspector port.
 */
export async function onFreePort<T>(start: (port: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start(await freePort());
    } catch (err) {
      if (attempt >= 3 || !portTaken(err)) throw err;
    }
  }
}

export interface DevServerOptions {
  timeoutMs?: number;
  /** Process environment for `npm run dev` (note: the Worker does not see it once `.dev.vars` exists). */
  env?: Record<string, string>;
  /**
   * Worker variables (e.g. RATE_LIMITS): written to a temporary JSON file that vite.config.ts adds to the
   * Worker's vars (E2E_CHAT_DEV_VARS); removed on stop.
   */
  vars?: Record<string, string>;
  /** Use (and keep on stop) this state folder, so D1/DO state survives a restart; default: fresh, removed. */
  stateDir?: string;
  /** Listen on this port (a restart on the same address); default: a free one. */
  port?: number;
}

export async function startDevServer(opts: DevServerOptions = {}): Promise<DevServer> {
  return opts.port !== undefined ? startDevServerOn(opts.port, opts) : onFreePort((p) => startDevServerOn(p, opts));
}

async function startDevServerOn(port: number, opts: DevServerOptions): Promise<DevServer> {
  const stateDir = opts.stateDir ?? mkdtempSync(join(tmpdir(), 'e2e-chat-state-'));
  let varsFile: string | undefined;
  const env: Record<string, string> = { ...opts.env };
  if (opts.vars) {
    // Handed to vite.config.ts (the Cloudflare plugin's `config` customizer adds them to the Worker's vars).
    // Not through CLOUDFLARE_ENV + `.dev.vars.<name>`: wrangler.toml has named environments now (staging,
    // production) and wrangler refuses any other name.
    varsFile = join(mkdtempSync(join(tmpdir(), 'e2e-chat-vars-')), 'vars.json');
    writeFileSync(varsFile, JSON.stringify(opts.vars), { mode: 0o600 });
    env.E2E_CHAT_DEV_VARS = varsFile;
  }
  const server = await startSupervised([`${ROOT}node_modules/tsx/dist/cli.mjs`, `${ROOT}scripts/dev.ts`], {
    port,
    env: { ...QUIET_ENV, PORT: String(port), E2E_CHAT_STATE_DIR: stateDir, ...env },
    probePath: '/api/health',
    timeoutMs: opts.timeoutMs,
    what: 'dev server',
    cleanup: () => {
      if (varsFile) rmSync(dirname(varsFile), { recursive: true, force: true });
      if (!opts.stateDir) rmSync(stateDir, { recursive: true, force: true });
    },
  });
  return { ...server, stateDir };
}

export interface Supervised {
  url: string;
  child: ChildProcess;
  output: () => string;
  stop: () => Promise<void>;
}

/**
 * A Node script (`argv` after `node`) as its own process group serving 127.0.0.1:`port`, its output kept;
 * resolves once `probePath` answers 200 (else stops it and throws with the output's tail). `stop` sends
 * SIGTERM to the group, SIGKILL after 5 s, then runs `cleanup`. Shared by `npm run dev` here and the
 * benchmarks' `wrangler dev` (bench/lib/wrangler-dev.ts).
 */
export async function startSupervised(
  argv: string[],
  opts: {
    port: number;
    env: NodeJS.ProcessEnv;
    probePath: string;
    timeoutMs?: number;
    what: string;
    cleanup?: () => void;
  },
): Promise<Supervised> {
  let out = '';
  const child = spawn(process.execPath, argv, {
    cwd: ROOT,
    env: opts.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  const url = `http://127.0.0.1:${opts.port}`;
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
    opts.cleanup?.();
  };
  const deadline = Date.now() + (opts.timeoutMs ?? 90_000);
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    try {
      const res = await fetch(`${url}${opts.probePath}`);
      if (res.ok) return { url, child, output: () => out, stop };
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await stop();
  throw new Error(`${opts.what} did not become healthy:\n${out.slice(-4000)}`);
}
