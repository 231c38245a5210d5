/**
 * The Chromium half of `npm run bench:protocol`: bundles the workloads for the browser, serves them, and
 * drives one headless Chromium (the system build, via playwright-core as bench/web.ts does) in which each
 * implementation runs in its own **dedicated Web Worker**, as the app runs its engine:
 *  - `ours`: e2e-chat's protocol core (web/src/protocol through bench/ours-side.ts), bundled and minified
 *    by Vite's production build (rolldown + its minifier, the app's es2022 target), as the app ships it;
 *  - `peer`: @privacyresearch/libsignal-protocol-typescript (bench/jspeer-side.ts), installed on first use
 *    into bench/jspeer/ (git-ignored node_modules; never an app dependency), bundled the same way.
 * Each request prepares and times one workload inside the worker (bench/browser/worker-host.ts).
 *
 * `profile()` records a DevTools-protocol CPU profile of one workload inside the worker (CDP
 * `Profiler.start/stop` on the worker's target, reached through the page's CDP session) and writes the
 * `.cpuprofile` (open it in Chrome DevTools › Performance, or read `topSelfTime`).
 *
 * Does NOT: measure anything in Node, or touch the app's build or dependencies.
 * @module
 */
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type CDPSession, chromium, type Page } from 'playwright-core';
import { build as viteBuild } from 'vite';
import { CHROMIUM_ARGS, ensureChromium } from '../scripts/chromium.js';

const here = dirname(fileURLToPath(import.meta.url));
const PEER_DIR = join(here, 'jspeer');
export const PEER_PACKAGE = '@privacyresearch/libsignal-protocol-typescript';

export type WorkerName = 'ours' | 'peer';

export interface BrowserSide {
  /** Chromium's version string and what each worker reported on start (e.g. the curve path). */
  readonly version: string;
  readonly info: Readonly<Partial<Record<WorkerName, string>>>;
  /** Workload keys each worker can run. */
  has(worker: WorkerName, key: string): boolean;
  /** Prepares (untimed) and times `ops` operations of `key` inside the worker; ops per second. */
  timeOnce(worker: WorkerName, key: string, ops: number): Promise<number>;
  /** Like timeOnce, under the CPU profiler of the worker's thread; writes the .cpuprofile to `file`. */
  profile(worker: WorkerName, key: string, ops: number, file: string): Promise<CpuProfile>;
  close(): Promise<void>;
}

/** The parts of a DevTools `Profiler.Profile` that `topSelfTime` reads. */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }[];
  samples?: number[];
  timeDeltas?: number[];
  startTime: number;
  endTime: number;
}

/** Installs the JS peer into bench/jspeer/ on first use (pinned there; not the app's package.json). */
export function ensureJsPeer(log: (s: string) => void = console.error): void {
  if (existsSync(join(PEER_DIR, 'node_modules', PEER_PACKAGE))) return;
  log(`installing ${PEER_PACKAGE} into bench/jspeer (first use)…`);
  execFileSync('npm', ['install', '--prefix', PEER_DIR, '--no-audit', '--no-fund'], { stdio: 'inherit' });
}

/** Bundles one worker entry with Vite's production build (rolldown, minified, the app's es2022 target). */
async function bundle(entry: string, readableNames: boolean): Promise<string> {
  const out = (await viteBuild({
    configFile: false,
    root: dirname(entry),
    logLevel: 'error',
    build: {
      write: false,
      // As the app ships it; a profiled run is left unminified so the profile names our functions.
      minify: !readableNames,
      target: 'es2022',
      modulePreload: false,
      rollupOptions: { input: entry, output: { format: 'es', entryFileNames: 'worker.js' } },
    },
  })) as { output: { type: string; code?: string }[] } | { output: { type: string; code?: string }[] }[];
  const chunks = (Array.isArray(out) ? out : [out]).flatMap((o) => o.output).filter((c) => c.type === 'chunk');
  if (chunks.length !== 1) throw new Error(`expected one chunk for ${entry}, got ${chunks.length}`);
  return chunks[0]!.code!;
}

function serve(files: Record<string, string>): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const body = files[req.url ?? ''];
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    const type = req.url!.endsWith('.js') ? 'text/javascript' : 'text/html';
    res.writeHead(200, { 'content-type': `${type}; charset=utf-8`, 'cache-control': 'no-store' }).end(body);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve({ server, url: `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}` });
    }),
  );
}

/** Runs in the page: starts one module worker per name and relays timing requests to them. */
const PAGE_HELPERS = `
window.__workers = {};
window.__seq = 0;
window.__start = async (names) => {
  const out = {};
  for (const name of names) {
    const worker = new Worker('/' + name + '.js', { type: 'module', name });
    window.__workers[name] = worker;
    out[name] = await new Promise((resolve, reject) => {
      worker.addEventListener('error', (e) => reject(new Error(name + ' worker: ' + e.message)), { once: true });
      worker.addEventListener('message', (e) => e.data && e.data.ready && resolve(e.data.ready), { once: true });
    });
  }
  return out;
};
window.__call = (name, key, ops) => new Promise((resolve, reject) => {
  const target = window.__workers[name];
  const id = ++window.__seq;
  const onMessage = (e) => {
    if (!e.data || e.data.id !== id) return;
    target.removeEventListener('message', onMessage);
    if (e.data.error) reject(new Error(name + '/' + key + ': ' + e.data.error));
    else resolve(e.data.result);
  };
  target.addEventListener('message', onMessage);
  target.postMessage({ id, key, ops });
});
`;

/** Bundles, serves and starts Chromium with one worker per implementation (`peer: false` skips the peer;
 * `readableNames` keeps identifiers for a profiled run). */
export async function startBrowser(opts: { peer: boolean; readableNames?: boolean }): Promise<BrowserSide> {
  const readableNames = opts.readableNames ?? false;
  const files: Record<string, string> = { '/': '<!doctype html><meta charset="utf-8"><title>bench:protocol</title>' };
  files['/ours.js'] = await bundle(join(here, 'browser/ours.worker.ts'), readableNames);
  if (opts.peer) {
    ensureJsPeer();
    files['/peer.js'] = await bundle(join(PEER_DIR, 'peer.worker.ts'), readableNames);
  }
  const { server, url } = await serve(files);
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({ executablePath: ensureChromium(), args: CHROMIUM_ARGS });
    const page = await browser.newPage();
    page.on('pageerror', (e) => console.error(`chromium page error: ${e.message}`));
    await page.goto(`${url}/`);
    const names: WorkerName[] = opts.peer ? ['ours', 'peer'] : ['ours'];
    // Page-side helpers as plain source (functions passed to page.evaluate would carry tsx's __name helper).
    await page.evaluate(PAGE_HELPERS);
    const ready = (await page.evaluate(`window.__start(${JSON.stringify(names)})`)) as Record<
      WorkerName,
      { keys: string[]; info: string }
    >;
    const call = (worker: WorkerName, key: string, ops: number) =>
      page.evaluate(`window.__call(${JSON.stringify(worker)}, ${JSON.stringify(key)}, ${ops})`) as Promise<number>;

    const b = browser;
    return {
      version: b.version(),
      info: Object.fromEntries(names.map((n) => [n, ready[n].info])),
      has: (worker, key) => ready[worker]?.keys.includes(key) ?? false,
      timeOnce: call,
      async profile(worker, key, ops, file) {
        const cdp = await page.context().newCDPSession(page);
        try {
          const profile = await profileWorker(page, cdp, worker, () => call(worker, key, ops));
          writeFileSync(file, JSON.stringify(profile));
          return profile;
        } finally {
          await cdp.detach();
        }
      },
      async close() {
        await b.close();
        server.close();
      },
    };
  } catch (e) {
    await browser?.close();
    server.close();
    throw e;
  }
}

/**
 * CPU-profiles one dedicated worker: attaches to it (workerSession), starts the V8 sampling profiler at
 * 100 µs, runs `during`, stops and returns the profile.
 */
async function profileWorker(
  _page: Page,
  cdp: CDPSession,
  worker: WorkerName,
  during: () => Promise<unknown>,
): Promise<CpuProfile> {
  const send = await workerSession(cdp, worker);
  await send('Profiler.enable');
  await send('Profiler.setSamplingInterval', { interval: 100 });
  await send('Profiler.start');
  await during();
  const { profile } = (await send('Profiler.stop')) as { profile: CpuProfile };
  await send('Profiler.disable');
  return profile;
}

/**
 * A DevTools-protocol channel to the page's dedicated worker named `title` (it must be running or start
 * within 5 s): attaches through the page's CDP session (`Target.setAutoAttach`, non-flat mode: commands go
 * through `Target.sendMessageToTarget`). Also used by bench/attachments.ts.
 */
export async function workerSession(
  cdp: CDPSession,
  title: string,
): Promise<(method: string, params?: object) => Promise<unknown>> {
  const sessions = new Map<string, { type: string; title: string }>();
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  cdp.on('Target.attachedToTarget', (e) => {
    sessions.set(e.sessionId, { type: e.targetInfo.type, title: e.targetInfo.title });
  });
  cdp.on('Target.receivedMessageFromTarget', (e) => {
    const msg = JSON.parse(e.message) as { id?: number; result?: unknown; error?: { message: string } };
    if (msg.id === undefined) return;
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.error) p.reject(new Error(msg.error.message));
    else p.resolve(msg.result);
  });
  await cdp.send('Target.setAutoAttach', { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
  for (let i = 0; i < 50 && ![...sessions.values()].some((s) => s.title === title); i++)
    await new Promise((r) => setTimeout(r, 100));
  const sessionId = [...sessions].find(([, s]) => s.title === title)?.[0];
  if (!sessionId) throw new Error(`no CDP target for worker ${title} (saw ${JSON.stringify([...sessions.values()])})`);
  let seq = 0;
  return (method, params = {}) =>
    new Promise<unknown>((resolve, reject) => {
      const id = ++seq;
      pending.set(id, { resolve, reject });
      void cdp.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) });
    });
}

/** The functions with the most self time in a CPU profile (idle and program excluded), as shares of samples. */
export function topSelfTime(profile: CpuProfile, n = 15): { name: string; where: string; share: number; ms: number }[] {
  const byNode = new Map(profile.nodes.map((node) => [node.id, node]));
  const counts = new Map<number, number>();
  const deltas = profile.timeDeltas ?? [];
  const samples = profile.samples ?? [];
  const msPer = new Map<number, number>();
  samples.forEach((id, i) => {
    counts.set(id, (counts.get(id) ?? 0) + 1);
    msPer.set(id, (msPer.get(id) ?? 0) + (deltas[i + 1] ?? 0) / 1000);
  });
  const agg = new Map<string, { name: string; where: string; hits: number; ms: number }>();
  let total = 0;
  for (const [id, hits] of counts) {
    const node = byNode.get(id);
    if (!node) continue;
    const f = node.callFrame;
    if (f.functionName === '(idle)' || f.functionName === '(program)') continue;
    total += hits;
    const where = f.url ? `${f.url.split('/').pop()}:${f.lineNumber + 1}` : '';
    const k = `${f.functionName}@${where}`;
    const a = agg.get(k) ?? { name: f.functionName || '(anonymous)', where, hits: 0, ms: 0 };
    a.hits += hits;
    a.ms += msPer.get(id) ?? 0;
    agg.set(k, a);
  }
  return [...agg.values()]
    .sort((a, b) => b.hits - a.hits)
    .slice(0, n)
    .map((a) => ({ name: a.name, where: a.where, share: a.hits / Math.max(1, total), ms: a.ms }));
}
