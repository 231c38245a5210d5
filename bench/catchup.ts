/**
 * `npm run bench:catchup` — what a person waits for (issue 19 part 3), in headless Chromium against the local
 * Worker (`npm run dev`: vite + workerd, D1, the ConversationDO):
 *
 *  1. **Offline catch-up.** A receiver R runs the real engine in the page (the modules the dev server serves,
 *     `/src/engine/…`, with the app worker's options: sealed IndexedDB store, Web Locks, message requests
 *     on, 50/20 prekeys, the dev server's key-transparency key). R has a direct conversation with each of
 *     10 senders and one group with all of them (R created them, so they are accepted). The senders are
 *     engine instances in Node (reliability/lib/people.ts, as the reliability suites drive them), so the
 *     browser side is the only thing measured. Per run: R's engine is closed (offline); the senders send
 *     MSGS messages in all (default 1,000: half pairwise, half in the group, spread evenly) and wait until
 *     the server accepted every one, then disconnect; then R opens anew (a fresh engine over a freshly
 *     opened sealed store, as a reopened app does).
 *     - **online** = t0, taken right before R's first call after opening: `engine.conversations()` then
 *       `engine.connect(ids)` (`--path=sockets`, what the app does on open: one socket per conversation,
 *       each resuming from R's durable cursor) or `engine.syncMailbox()` (`--path=mailbox`, what the app's
 *       reconnect does: `GET /api/mailbox` pages);
 *     - **done** = every one of the MSGS messages produced a `message_added` event (the engine emits it only
 *       after the transaction that stored it in the sealed IndexedDB committed), AND the conversation list
 *       is up to date: `engine.conversations()` and each conversation's newest message (`messages(c,
 *       {limit: 1})`, the app's list previews) were read afterwards and every preview is the last message
 *       its conversation was sent.
 *     After each run (untimed) every message is checked in R's store (body, status `received`, no gap, no
 *     duplicate), then R waits for idle (acks, receipts) and closes.
 *     One untimed warm-up run first (1 pairwise + 1 group message per sender) establishes the sessions and
 *     sender keys, so the timed runs measure steady-state catch-up, not first contact.
 *  2. **First message to a new contact**, both ends in the page: A (R) looks the contact B up by username,
 *     creates the direct conversation, connects and sends (bundle claim + PQXDH inside the send); B —
 *     another engine in the same page over its own sealed IndexedDB store, registered beforehand, message
 *     requests off so it connects at once — is told the conversation id the moment it exists (standing in
 *     for the app's list poll, which is not measured) and connects; done when B's engine emitted the
 *     decrypted message. A fresh B per iteration (--first=N, default 20). p50 and p99 (nearest rank).
 *
 * Prints a Markdown section with the machine and its load average; `--write` appends it to bench/RESULTS.md.
 * Options: --runs=N (timed catch-up runs, default 3) --msgs=N (default 1000) --senders=N (default 10)
 * --path=sockets|mailbox|both (default both, interleaved) --first=N (0: skip) --only=catchup|first
 * --profile (CDP CPU profile of the page over each path's first timed run, online → done, written to
 * bench/profiles/catchup-<path>.cpuprofile; prints self time by function and by file, idle and GC, and the
 * run's network counts: HTTP requests and the time they were in flight, WebSocket frames received).
 * Take the machine lock for measured runs: `flock /work/bench.lock npm run bench:catchup`.
 * @module
 */
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { type Person, registered } from '../reliability/lib/people.js';
import { CHROMIUM_ARGS, ensureChromium } from '../scripts/chromium.js';
import { startDevServer } from '../scripts/dev-server.js';
import { ROOT } from '../scripts/local-env.js';
import { toB64u } from '../web/src/engine/_protocol.js';
import { DEFAULT_RATE_LIMITS } from '../worker/limits.js';
import { type CpuProfile, topSelfTime } from './browser.js';
import { describeMachine, machineInfo, markdownTable, median } from './stats.js';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const RUNS = Number(arg('runs') ?? 3);
const MSGS = Number(arg('msgs') ?? 1000);
const SENDERS = Number(arg('senders') ?? 10);
const PATHS = (arg('path') ?? 'both') === 'both' ? ['sockets', 'mailbox'] : [arg('path')!];
const FIRST = Number(arg('first') ?? 20);
const ONLY = arg('only');
/** --profile: a DevTools-protocol CPU profile of the page (where the engine runs) over each path's first timed run. */
const PROFILE = process.argv.includes('--profile');

const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
const until = async (cond: () => Promise<boolean> | boolean, what: string, ms = 300_000) => {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};
const nearestRank = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
let warmingUp = false;

/** Self time of a CPU profile by file and by function, with idle / GC / program apart. */
function describeProfile(profile: CpuProfile): string {
  const byNode = new Map(profile.nodes.map((n) => [n.id, n]));
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const byFile = new Map<string, number>();
  let total = 0;
  samples.forEach((id, i) => {
    const ms = (deltas[i + 1] ?? 0) / 1000;
    total += ms;
    const f = byNode.get(id)?.callFrame;
    const k = !f
      ? '?'
      : f.functionName.startsWith('(')
        ? f.functionName
        : f.url
          ? f.url.replace(/^.*\/(src|node_modules|@fs)\//, '$1/').replace(/\?.*$/, '')
          : `(native) ${f.functionName}`;
    byFile.set(k, (byFile.get(k) ?? 0) + ms);
  });
  const files = [...byFile].sort((a, b) => b[1] - a[1]).slice(0, 25);
  const fns = topSelfTime(profile, 30);
  return [
    `  wall ${(total / 1000).toFixed(2)} s; self time by file / category:`,
    ...files.map(
      ([k, ms]) => `    ${ms.toFixed(0).padStart(7)} ms  ${((100 * ms) / total).toFixed(1).padStart(5)} %  ${k}`,
    ),
    '  top functions (self, idle/program excluded):',
    ...fns.map((f) => `    ${f.ms.toFixed(0).padStart(7)} ms  ${f.name} ${f.where}`),
  ].join('\n');
}
const range = (xs: number[]) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;

/** The page's side: builds engines like the app worker does; kept on globalThis between evaluate calls. */
const PAGE_SETUP = async ({ logKey }: { logKey: string }) => {
  const { createEngine } = await import('/src/engine/engine.ts' as string);
  const { Account } = await import('/src/engine/account.ts' as string);
  const { createHttpApi, createSocketFactory, HttpClient } = await import('/src/engine/http-transport.ts' as string);
  const { openIdbStore } = await import('/src/engine/idb-store.ts' as string);
  const { webLocks } = await import('/src/engine/locks.ts' as string);
  const { defaultCurves, fromB64u } = await import('/src/protocol/index.ts' as string);
  const curves = await defaultCurves();
  const rng = (n: number) => crypto.getRandomValues(new Uint8Array(n));
  // Counts of the sealed store's calls (each is at least one IndexedDB transaction), for "what bounds it".
  const counts = {
    get: 0,
    list: 0,
    tx: 0,
    txMs: 0,
    http: 0,
    httpMs: 0,
    httpBusyMs: 0,
    wsFrames: 0,
    // What came in: mailbox pages and their envelopes (group ones apart), envelopes in `deliver` frames.
    pages: 0,
    envelopes: 0,
    groupEnvelopes: 0,
    receiptEnvelopes: 0,
    wsEnvelopes: 0,
  };
  // Which engine code asked for each write transaction (the first engine frames of its stack), per run.
  const writers = new Map<string, number>();
  const writer = () => {
    const frames = (new Error().stack ?? '')
      .split('\n')
      .filter((l) => l.includes('/src/engine/'))
      .map((l) => {
        const m = /at (?:async )?(\S+) .*\/src\/engine\/([\w.-]+)\?*[^:]*:(\d+)/.exec(l);
        return m ? `${m[1]}@${m[2]}:${m[3]}` : l.trim();
      })
      .slice(0, 3);
    const k = frames.join(' < ') || '?';
    writers.set(k, (writers.get(k) ?? 0) + 1);
  };
  // Network: HTTP requests (and the time at least one was in flight), WebSocket frames received; each
  // request's route (ids replaced by ':id') and start / end, for --profile's request timeline.
  const requests: { route: string; start: number; end: number }[] = [];
  let inFlight = 0;
  let busySince = 0;
  const realFetch = globalThis.fetch.bind(globalThis);
  globalThis.fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    counts.http++;
    const t = performance.now();
    if (inFlight++ === 0) busySince = t;
    const url = new URL(input instanceof Request ? input.url : String(input), location.href);
    const route = `${init?.method ?? (input instanceof Request ? input.method : 'GET')} ${url.pathname
      .split('/')
      .map((s) => (s.length >= 16 ? ':id' : s))
      .join('/')}`;
    try {
      const res = await realFetch(input, init);
      if (route === 'GET /api/mailbox' && res.ok)
        void res
          .clone()
          .json()
          .then((b: { envelopes: { mode: string; kind: string }[] }) => {
            counts.pages++;
            counts.envelopes += b.envelopes.length;
            counts.groupEnvelopes += b.envelopes.filter((e) => e.mode === 'group').length;
            counts.receiptEnvelopes += b.envelopes.filter((e) => e.kind === 'receipt').length;
          })
          .catch(() => undefined);
      return res;
    } finally {
      const now = performance.now();
      counts.httpMs += now - t;
      if (--inFlight === 0) counts.httpBusyMs += now - busySince;
      requests.push({ route, start: t, end: now });
    }
  };
  const RealWs = globalThis.WebSocket;
  const sockets: { created: number; open: number; first: number; last: number; frames: number }[] = [];
  globalThis.WebSocket = class extends RealWs {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      const s = { created: performance.now(), open: 0, first: 0, last: 0, frames: 0 };
      sockets.push(s);
      this.addEventListener('open', () => (s.open = performance.now()));
      this.addEventListener('message', (e: MessageEvent) => {
        counts.wsFrames++;
        if (typeof e.data === 'string' && e.data.includes('"deliver"'))
          try {
            counts.wsEnvelopes += (JSON.parse(e.data) as { envelopes?: unknown[] }).envelopes?.length ?? 0;
          } catch {
            // not JSON: not counted
          }
        s.last = performance.now();
        if (!s.frames++) s.first = s.last;
      });
    }
  } as typeof WebSocket;
  // biome-ignore lint/suspicious/noExplicitAny: untyped harness
  const counted = (s: any) => ({
    ...s,
    get: (k: string) => {
      counts.get++;
      return s.get(k);
    },
    list: (d: string) => {
      counts.list++;
      return s.list(d);
    },
    put: (k: string, v: Uint8Array) => {
      counts.tx++;
      writer();
      return s.put(k, v);
    },
    delete: (k: string) => {
      counts.tx++;
      writer();
      return s.delete(k);
    },
    transaction: async (fn: unknown) => {
      counts.tx++;
      writer();
      const t = performance.now();
      try {
        return await s.transaction(fn);
      } finally {
        counts.txMs += performance.now() - t;
      }
    },
  });
  const makeEngine = (store: unknown, http: unknown, messageRequests: boolean) =>
    createEngine({
      store: counted(store),
      api: createHttpApi(http),
      realtime: createSocketFactory(http),
      curves,
      rng,
      locks: webLocks(),
      keystore: { batch: 50, watermark: 20 },
      messageRequests,
      requestPollMs: 4_000,
      kt: { logKey: fromB64u(logKey) },
    });
  // biome-ignore lint/suspicious/noExplicitAny: the page-side harness is untyped
  const g = globalThis as any;
  g.bench = {
    counts,
    writers,
    requests,
    sockets,
    async person(name: string, db: string, messageRequests: boolean) {
      const store = await openIdbStore(db);
      const http = new HttpClient({});
      const engine = makeEngine(store, http, messageRequests);
      const account = new Account({ http, engine, rng });
      const r = await account.register(name, 'bench password 123');
      if (r.status !== 'signed_in') throw new Error(`register ${name}: ${r.status}`);
      return { name, db, http, engine, account, userId: r.userId, deviceId: r.deviceId, messageRequests };
    },
    /** A reopened app: a fresh engine over a freshly opened store, same session (HttpClient). */
    async reopen(p: { db: string; http: unknown; engine: { close(): void }; messageRequests: boolean }) {
      p.engine.close();
      // biome-ignore lint/suspicious/noExplicitAny: untyped harness
      (p as any).engine = makeEngine(await openIdbStore(p.db), p.http, p.messageRequests);
    },
  };
};

interface StoreCounts {
  gets: number;
  lists: number;
  txs: number;
  txMs: number;
  http: number;
  httpMs: number;
  httpBusyMs: number;
  wsFrames: number;
  pages: number;
  envelopes: number;
  groupEnvelopes: number;
  receiptEnvelopes: number;
  wsEnvelopes: number;
  /** Write transactions by the engine code that asked for them ("fn@file:line < caller < …": count). */
  writers: [string, number][];
}

interface CatchupRun {
  path: string;
  store: StoreCounts;
  ms: number;
  /** Time until the last message_added (before the list refresh). */
  decryptedMs: number;
  load: string;
}

async function main(): Promise<void> {
  const loadBefore = load();
  const limits = Object.fromEntries(
    Object.keys(DEFAULT_RATE_LIMITS).map((k) => [k, { limit: 1_000_000, windowMs: 60_000 }]),
  );
  const server = await startDevServer({
    timeoutMs: 300_000,
    vars: {
      RATE_LIMITS: JSON.stringify(limits),
      DELIVERY_LIMITS: JSON.stringify({ sendBurst: 1_000_000, sendPerSec: 1_000_000 }),
    },
  });
  const profile = mkdtempSync(join(tmpdir(), 'e2e-chat-bench-catchup-'));
  const senders: Person[] = [];
  const catchup: CatchupRun[] = [];
  const first: { total: number; lookup: number; create: number; deliver: number }[] = [];
  let contextClose: (() => Promise<void>) | null = null;
  try {
    const logKey = toB64u(
      new Uint8Array(
        Buffer.from(
          ((await (await fetch(`${server.url}/api/kt/key`)).json()) as { publicKey: string }).publicKey,
          'base64url',
        ),
      ),
    );
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: ensureChromium(),
      args: CHROMIUM_ARGS,
      headless: true,
    });
    contextClose = () => context.close();
    const page: Page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(600_000);
    // tsx compiles this file with esbuild's keepNames: functions passed to page.evaluate call `__name`.
    await page.addInitScript('globalThis.__name = (f) => f;');
    page.on('crash', () => process.stderr.write('page crashed\n'));
    page.on('framenavigated', (f) => process.stderr.write(`navigated: ${f.url()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`page error: ${e.message}\n`));
    await page.goto(`${server.url}/`);
    await page.evaluate(PAGE_SETUP, { logKey });
    if (PROFILE) {
      // The engine runs in the page's main thread here: profile that thread, once per path (its first timed run).
      page.on('console', (m) => {
        if (m.text().startsWith('requests and sockets')) process.stdout.write(`  ${m.text()}\n`);
      });
      const cdp = await context.newCDPSession(page);
      const profiled = new Set<string>();
      let on = false;
      await page.exposeFunction('benchProfile', async (what: string, path: string) => {
        if (what === 'start' && !profiled.has(path) && !warmingUp) {
          await cdp.send('Profiler.enable');
          await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
          await cdp.send('Profiler.start');
          on = true;
        } else if (what === 'stop' && on) {
          on = false;
          profiled.add(path);
          const { profile } = (await cdp.send('Profiler.stop')) as unknown as { profile: CpuProfile };
          await cdp.send('Profiler.disable');
          mkdirSync(join(ROOT, 'bench/profiles'), { recursive: true });
          const file = join(ROOT, `bench/profiles/catchup-${path}.cpuprofile`);
          writeFileSync(file, JSON.stringify(profile));
          process.stdout.write(`\n  profile (${path}) → ${file}\n${describeProfile(profile)}\n`);
        }
      });
    }
    const tag = Date.now().toString(36);

    if (ONLY !== 'first') {
      process.stdout.write(`registering R in the page and ${SENDERS} senders in Node…\n`);
      const r = (await page.evaluate(async (name) => {
        // biome-ignore lint/suspicious/noExplicitAny: untyped harness
        const g = globalThis as any;
        g.R = await g.bench.person(name, `bench-catchup-${name}`, true);
        return { userId: g.R.userId as string };
      }, `cur${tag}`)) as { userId: string };
      for (let i = 0; i < SENDERS; i++) senders.push(await registered(server.url, `cus${i}${tag}`));
      // R creates the conversations (accepted on R's side, like chats a person started).
      const convs = (await page.evaluate(
        async ({ ids }) => {
          // biome-ignore lint/suspicious/noExplicitAny: untyped harness
          const R = (globalThis as any).R;
          const direct: string[] = [];
          for (const u of ids) direct.push(await R.engine.createConversation({ kind: 'direct', members: [u] }));
          const group = await R.engine.createConversation({ kind: 'group', members: ids, title: 'bench group' });
          return { direct, group };
        },
        { ids: senders.map((s) => s.userId) },
      )) as { direct: string[]; group: string };
      void r;

      /** Every sender sends its share; resolves when the server accepted all of them. */
      const sendAll = async (label: string, perSenderDirect: number, perSenderGroup: number) => {
        const last = new Map<string, string>(); // conversation → body of its last message (for the preview)
        const bodies = new Set<string>();
        await Promise.all(
          senders.map(async (s, i) => {
            const direct = convs.direct[i]!;
            await s.engine.connect([direct, convs.group]);
            const ids: { c: string; id: string }[] = [];
            const n = Math.max(perSenderDirect, perSenderGroup);
            for (let k = 0; k < n; k++) {
              if (k < perSenderDirect) {
                const body = `${label} s${i} d${k}`;
                ids.push({ c: direct, id: (await s.engine.sendText(direct, body)).clientId });
                bodies.add(body);
              }
              if (k < perSenderGroup) {
                const body = `${label} s${i} g${k}`;
                ids.push({ c: convs.group, id: (await s.engine.sendText(convs.group, body)).clientId });
                bodies.add(body);
              }
            }
            await until(async () => {
              for (const c of [direct, convs.group]) {
                const mine = new Set(ids.filter((x) => x.c === c).map((x) => x.id));
                const page = await s.engine.messages(c, { limit: 5000 });
                if (
                  page.filter((m) => mine.has(m.clientId) && m.seq !== null && m.seq !== undefined).length < mine.size
                )
                  return false;
              }
              return true;
            }, `${s.name} sent ${label}`).catch(async (e: unknown) => {
              // What is stuck in this sender's outbox: its messages the server has not accepted (no seq),
              // by status and error, and the first few of them.
              for (const c of [direct, convs.group]) {
                const mine = new Set(ids.filter((x) => x.c === c).map((x) => x.id));
                const stuck = (await s.engine.messages(c, { limit: 5000 }).catch(() => [])).filter(
                  (m) => mine.has(m.clientId) && (m.seq === null || m.seq === undefined),
                );
                const by = new Map<string, number>();
                for (const m of stuck) {
                  const k = `${m.status}${m.error ? `/${m.error}` : ''}`;
                  by.set(k, (by.get(k) ?? 0) + 1);
                }
                console.error(
                  `  ${s.name} outbox in ${c === convs.group ? 'the group' : 'its direct chat'}: ${stuck.length} of ${mine.size} not accepted` +
                    ` (${[...by].map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'}); first: ${stuck
                      .slice(0, 3)
                      .map((m) => `${m.clientId} ${m.status}`)
                      .join('; ')}`,
                );
              }
              throw e;
            });
          }),
        );
        // The last message per conversation by server order (the list preview must show it).
        for (const c of [...convs.direct, convs.group]) {
          let best: { seq: number; body: string } | null = null;
          for (const s of senders) {
            const page = await s.engine.messages(c, { limit: 5000 }).catch(() => []);
            for (const m of page)
              if (m.body?.startsWith(`${label} `) && m.outgoing && (!best || (m.seq ?? 0) > best.seq))
                best = { seq: m.seq ?? 0, body: m.body };
          }
          if (best) last.set(c, best.body);
        }
        for (const s of senders) await s.engine.disconnect();
        return { bodies: [...bodies], last: Object.fromEntries(last) };
      };

      /** R offline → senders send → R reopens; returns the page's timings. */
      const round = async (label: string, path: string, perDirect: number, perGroup: number) => {
        await page.evaluate(async () => {
          // biome-ignore lint/suspicious/noExplicitAny: untyped harness
          const g = globalThis as any;
          await g.R.engine.idle();
          g.R.engine.close();
        });
        const sent = await sendAll(label, perDirect, perGroup);
        // The mailbox (D1) is written by the conversation's flush, up to 1.25 × flushDelayMs (2 s) after the
        // DO accepted a message; a device offline for longer sees all of it. Wait that out (untimed).
        await new Promise((r) => setTimeout(r, 3_000));
        return (await page.evaluate(
          async ({ label, path, bodies, last }) => {
            // biome-ignore lint/suspicious/noExplicitAny: untyped harness
            const g = globalThis as any;
            const R = g.R;
            await g.bench.reopen(R);
            const expected = new Set<string>(bodies);
            const seen = new Set<string>();
            let decryptedAt = 0;
            let resolveAll: () => void = () => undefined;
            const all = new Promise<void>((r) => (resolveAll = r));
            const off = R.engine.on((e: { type: string; message?: { body: string | null; status: string } }) => {
              if (e.type !== 'message_added' || !e.message?.body || !expected.has(e.message.body)) return;
              if (e.message.status !== 'received') return;
              seen.add(e.message.body);
              if (seen.size === expected.size) {
                decryptedAt = performance.now();
                resolveAll();
              }
            });
            // --profile: the CPU profiler runs from here to `done` (started and stopped by Node through CDP).
            if (g.benchProfile) await g.benchProfile('start', path);
            const c0 = { ...g.bench.counts };
            g.bench.writers.clear();
            // ---- online ----
            const t0 = performance.now();
            if (path !== 'mailbox') {
              const list = await R.engine.conversations();
              await R.engine.connect(list.map((c: { id: string }) => c.id));
            }
            let synced = -1;
            if (path === 'mailbox') synced = await R.engine.syncMailbox();
            const timeout = new Promise((_, reject) =>
              setTimeout(
                () => reject(new Error(`${path}: ${seen.size} of ${expected.size} after 120 s (synced ${synced})`)),
                120_000,
              ),
            );
            await Promise.race([all, timeout]);
            // ---- the conversation list, as the app renders it: list + newest message of each ----
            const tList = performance.now();
            const list = await R.engine.conversations();
            const tPreviews = performance.now();
            const previews = await Promise.all(
              list.map(async (c: { id: string }) => [c.id, (await R.engine.messages(c.id, { limit: 1 })).at(-1)?.body]),
            );
            const done = performance.now();
            if (g.benchProfile) {
              await g.benchProfile('stop', path);
              // The run's requests by route (count, first start → last end, ms after online) and sockets.
              const by = new Map<string, { n: number; from: number; to: number; ms: number }>();
              for (const q of g.bench.requests as { route: string; start: number; end: number }[]) {
                if (q.start < t0 || q.start > done) continue;
                const r = by.get(q.route) ?? { n: 0, from: Infinity, to: 0, ms: 0 };
                r.n++;
                r.from = Math.min(r.from, q.start - t0);
                r.to = Math.max(r.to, q.end - t0);
                r.ms += q.end - q.start;
                by.set(q.route, r);
              }
              const lines = [...by].map(
                ([k, r]) =>
                  `    ${String(r.n).padStart(3)} × ${k}: ${r.from.toFixed(0)}–${r.to.toFixed(0)} ms after online, ${(r.ms / r.n).toFixed(0)} ms each`,
              );
              for (const w of g.bench.sockets as {
                created: number;
                open: number;
                first: number;
                last: number;
                frames: number;
              }[])
                if (w.created >= t0 && w.created <= done)
                  lines.push(
                    `    socket: created ${(w.created - t0).toFixed(0)}, open ${(w.open - t0).toFixed(0)}, frames ${w.frames} from ${(w.first - t0).toFixed(0)} to ${(w.last - t0).toFixed(0)} ms`,
                  );
              lines.push(
                `    after all decrypted + stored: conversations() ${(tPreviews - tList).toFixed(0)} ms, previews ${(done - tPreviews).toFixed(0)} ms`,
              );
              console.log(
                `requests and sockets (${path}), online → done ${(done - t0).toFixed(0)} ms:\n${lines.join('\n')}`,
              );
            }
            const c1 = g.bench.counts;
            const store = {
              gets: c1.get - c0.get,
              lists: c1.list - c0.list,
              txs: c1.tx - c0.tx,
              txMs: c1.txMs - c0.txMs,
              http: c1.http - c0.http,
              httpMs: c1.httpMs - c0.httpMs,
              httpBusyMs: c1.httpBusyMs - c0.httpBusyMs,
              wsFrames: c1.wsFrames - c0.wsFrames,
              pages: c1.pages - c0.pages,
              envelopes: c1.envelopes - c0.envelopes,
              groupEnvelopes: c1.groupEnvelopes - c0.groupEnvelopes,
              receiptEnvelopes: c1.receiptEnvelopes - c0.receiptEnvelopes,
              wsEnvelopes: c1.wsEnvelopes - c0.wsEnvelopes,
              writers: [...(g.bench.writers as Map<string, number>)].sort((a, b) => b[1] - a[1]),
            };
            off();
            const stale = Object.entries(last as Record<string, string>).filter(
              ([c, body]) => !previews.some(([id, b]: [string, string]) => id === c && b === body),
            );
            if (stale.length) throw new Error(`conversation list not up to date: ${JSON.stringify(stale)}`);
            // ---- untimed: every message stored once, in order, gap-free ----
            await R.engine.idle();
            const stored: string[] = [];
            for (const c of list) {
              const page = await R.engine.messages(c.id, { limit: 100_000 });
              const seqs = page.map((m: { seq: number }) => m.seq);
              for (let i = 1; i < seqs.length; i++)
                if (seqs[i] <= seqs[i - 1]) throw new Error(`order broken in ${c.id}: ${seqs[i - 1]}, ${seqs[i]}`);
              for (const m of page) if (m.body?.startsWith(`${label} `)) stored.push(m.body);
            }
            if (stored.length !== expected.size || new Set(stored).size !== expected.size)
              throw new Error(`stored ${stored.length} (${new Set(stored).size} distinct), expected ${expected.size}`);
            return {
              ms: done - t0,
              decryptedMs: decryptedAt - t0,
              store,
              listMs: tPreviews - tList,
              previewsMs: done - tPreviews,
            };
          },
          { label, path, bodies: sent.bodies, last: sent.last },
        )) as { ms: number; decryptedMs: number; store: StoreCounts; listMs: number; previewsMs: number };
      };

      process.stdout.write('warm-up round (sessions and sender keys)…\n');
      warmingUp = true;
      await round(`w${tag}`, 'sockets', 1, 1);
      warmingUp = false;
      const perDirect = Math.floor(MSGS / 2 / SENDERS);
      const perGroup = Math.floor(MSGS / 2 / SENDERS);
      for (let run = 0; run < RUNS; run++)
        for (const path of PATHS) {
          const l = load();
          const t = await round(`r${run}${path[0]}${tag}`, path, perDirect, perGroup);
          catchup.push({ path, ms: t.ms, decryptedMs: t.decryptedMs, load: l, store: t.store });
          process.stdout.write(
            `  run ${run + 1} ${path}: ${t.ms.toFixed(0)} ms (all decrypted+stored at ${t.decryptedMs.toFixed(0)} ms; then conversations() ${t.listMs.toFixed(0)} ms, previews ${t.previewsMs.toFixed(0)} ms) · store: ${t.store.gets} reads, ${t.store.lists} lists, ${t.store.txs} write transactions (${t.store.txMs.toFixed(0)} ms inside them) · network: ${t.store.http} HTTP requests (${t.store.httpBusyMs.toFixed(0)} ms with one in flight, ${t.store.httpMs.toFixed(0)} ms summed), ${t.store.wsFrames} WebSocket frames in · load ${l}\n`,
          );
          process.stdout.write(
            `    in: ${t.store.pages} mailbox pages, ${t.store.envelopes} envelopes (${t.store.groupEnvelopes} group, ${t.store.receiptEnvelopes} receipts), ${t.store.wsEnvelopes} in deliver frames · write tx by caller: ${t.store.writers.map(([k, n]) => `${n}× ${k}`).join('; ')}\n`,
          );
        }
      await page.evaluate(async () => {
        // biome-ignore lint/suspicious/noExplicitAny: untyped harness
        const g = globalThis as any;
        await g.R.engine.idle();
      });
    }

    if (ONLY !== 'catchup' && FIRST > 0) {
      process.stdout.write(`first message to a new contact: registering A and ${FIRST} contacts in the page…\n`);
      await page.evaluate(
        async ({ tag, n }) => {
          // biome-ignore lint/suspicious/noExplicitAny: untyped harness
          const g = globalThis as any;
          g.A ??= g.R ?? (await g.bench.person(`cua${tag}`, `bench-first-a${tag}`, true));
          g.B = [];
          for (let i = 0; i < n; i++) g.B.push(await g.bench.person(`cub${i}${tag}`, `bench-first-b${i}${tag}`, false));
        },
        { tag, n: FIRST },
      );
      for (let i = 0; i < FIRST; i++) {
        const t = (await page.evaluate(async (i) => {
          // biome-ignore lint/suspicious/noExplicitAny: untyped harness
          const g = globalThis as any;
          const A = g.A;
          const B = g.B[i];
          const body = `first ${i}`;
          let got: () => void = () => undefined;
          const received = new Promise<void>((r) => (got = r));
          const off = B.engine.on((e: { type: string; message?: { body: string | null } }) => {
            if (e.type === 'message_added' && e.message?.body === body) got();
          });
          const t0 = performance.now();
          const u = await A.account.lookup(B.name);
          const t1 = performance.now();
          const c = await A.engine.createConversation({ kind: 'direct', members: [u.userId] });
          const t2 = performance.now();
          const peer = B.engine.connect([c]);
          await A.engine.connect([c]);
          await A.engine.sendText(c, body);
          await received;
          const t3 = performance.now();
          off();
          await peer;
          await A.engine.idle();
          await B.engine.idle();
          B.engine.close();
          return { total: t3 - t0, lookup: t1 - t0, create: t2 - t1, deliver: t3 - t2 };
        }, i)) as { total: number; lookup: number; create: number; deliver: number };
        first.push(t);
        process.stdout.write(`  first message ${i + 1}: ${t.total.toFixed(0)} ms\n`);
      }
    }
  } finally {
    for (const s of senders) s.engine.close();
    await contextClose?.().catch(() => undefined);
    rmSync(profile, { recursive: true, force: true });
    await server.stop();
  }

  const m = machineInfo();
  const rows: string[][] = [];
  for (const path of PATHS) {
    const xs = catchup.filter((r) => r.path === path);
    if (!xs.length) continue;
    const ms = xs.map((r) => r.ms);
    const dec = xs.map((r) => r.decryptedMs);
    rows.push([
      `catch-up ${MSGS} msgs from ${SENDERS} senders, ${path === 'sockets' ? 'app open (sockets resume)' : 'mailbox sync'}`,
      `${median(ms).toFixed(0)} ms`,
      `${range(ms)} ms over ${xs.length} runs; all decrypted+stored at ${median(dec).toFixed(0)} ms (median); target ≤ 2,000 ms: ${median(ms) <= 2000 ? 'met' : 'NOT met'}`,
    ]);
    const per = (k: 'gets' | 'lists' | 'txs') => (median(xs.map((r) => r.store[k])) / MSGS).toFixed(1);
    rows.push([
      `  sealed-store calls per message (${path})`,
      `${per('txs')} write tx`,
      `${per('gets')} reads + ${per('lists')} lists (each its own IndexedDB transaction, HMAC ids, AES-GCM); ${median(xs.map((r) => r.store.txMs)).toFixed(0)} ms spent inside write transactions`,
    ]);
  }
  if (first.length) {
    const col = (k: keyof (typeof first)[number]) => first.map((f) => f[k]);
    rows.push([
      'first message to a new contact, p50 / p99',
      `${nearestRank(col('total'), 50).toFixed(0)} / ${nearestRank(col('total'), 99).toFixed(0)} ms`,
      `${first.length} contacts; lookup p50 ${nearestRank(col('lookup'), 50).toFixed(0)} ms, create ${nearestRank(col('create'), 50).toFixed(0)} ms, connect + claim + PQXDH + send + peer decrypt ${nearestRank(col('deliver'), 50).toFixed(0)} ms`,
    ]);
  }
  const md = [
    '',
    `### Catch-up and first message (npm run bench:catchup) — ${m.date}`,
    '',
    `${describeMachine(m)} · load average before ${loadBefore}, after ${load()} · Chromium headless, engine in the page against \`npm run dev\` · per-run loads: ${catchup.map((r) => `${r.path[0]}:${r.load.split(' ')[0]}`).join(', ') || '—'}`,
    '',
    markdownTable(['measure', 'median', 'notes'], rows, ['left', 'right', 'left']),
    '',
  ].join('\n');
  process.stdout.write(`${md}\n`);
  if (process.argv.includes('--write')) appendFileSync(join(ROOT, 'bench/RESULTS.md'), md);
}

await main();
