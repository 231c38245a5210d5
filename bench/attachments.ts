/**
 * `npm run bench:attachments` — attachments in Chromium against the local Worker (`npm run dev`: vite +
 * workerd, R2 on local disk):
 *
 *  1. client-side encryption and decryption speed (MB/s) of the protocol core's AttachmentEncryptor /
 *     AttachmentDecryptor (decryption includes the SHA-256 digest check) on an in-memory file;
 *  2. a SIZE-MB file (default 50) uploaded and downloaded through the same routes — encrypted (the engine's
 *     own Transfers: read, encrypt, reserve, upload with the digest alongside; streamed download, decrypt,
 *     digest check) vs the same bytes unencrypted (reserve, the same parts upload — 8 MiB parts, three at
 *     once, through the engine's own `sendParts` — the same streamed download collected into a Blob). Runs
 *     alternate A/B (--runs=N, default 3); medians, ranges and the ratio of medians (unencrypted time ÷ encrypted time: ≥ 0.8 is the target).
 *
 * Where it runs: as the app runs its engine (and so its Transfers), in a dedicated module Web Worker the page
 * starts, with every engine event posted to the page; `--page` runs the same code on the page thread instead
 * (the mode of the results before Dec 5). Either way it imports the real modules from the dev server
 * (`/src/engine/…`), signed in with a token of a user the benchmark registered. Prints a Markdown section
 * with the machine and its load average; `--write` appends it to bench/RESULTS.md under "## Attachments".
 * Options: --runs=N --size=MB --page --profile.
 * @module
 */
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { CHROMIUM_ARGS, ensureChromium } from '../scripts/chromium.js';
import { startDevServer } from '../scripts/dev-server.js';
import { ROOT } from '../scripts/local-env.js';
import { type CpuProfile, topSelfTime, workerSession } from './browser.js';
import { createConversation, register } from './lib/app-client.js';
import { type CpuSnapshot, cpuDelta, cpuSnapshot } from './lib/proc-cpu.js';
import { describeMachine, machineInfo, markdownTable, median } from './stats.js';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const RUNS = Number(arg('runs') ?? 3);
const SIZE_MB = Number(arg('size') ?? 50);
/** `--profile`: CPU seconds per process/thread group (from /proc) for each phase, and the top functions of the thread running the transfers. */
const PROFILE = process.argv.includes('--profile');
/** `--page`: run the transfers on the page thread instead of in a dedicated Worker. */
const PAGE = process.argv.includes('--page');
/** The dedicated worker's name (its DevTools target title). */
const WORKER_NAME = 'bench-attachments';

interface RunArgs {
  token: string;
  userId: string;
  deviceId: string;
  conv: string;
  sizeMb: number;
  runs: number;
  /** The dev server, where the modules and the API are. */
  origin: string;
  /** Running in the dedicated worker: engine events are posted to the page, as the app's worker host does. */
  inWorker: boolean;
}

interface PageResult {
  encryptMBs: number;
  decryptMBs: number;
  digestMBs: number;
  nativeChunkDigestMBs: number;
  encrypted: number[];
  plain: number[];
  phases: { encUp: number[]; encDown: number[]; plainUp: number[]; plainDown: number[] };
  /** Encrypted upload: seconds to the first upload progress event, and from it to the end. */
  prof: { encPhase: number[]; xhrPhase: number[] };
}

async function main(): Promise<void> {
  const load = () =>
    loadavg()
      .map((x) => x.toFixed(2))
      .join(' ');
  const loadBefore = load();
  const server = await startDevServer({
    vars: { ATTACHMENT_LIMITS: JSON.stringify({ dailyBytes: 1e12, dailyCount: 100000 }) },
  });
  const profile = mkdtempSync(join(tmpdir(), 'e2e-chat-bench-att-'));
  try {
    const user = await register(server.url, 'benchatt');
    const conv = await createConversation(server.url, [user]);
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: ensureChromium(),
      args: CHROMIUM_ARGS,
      headless: true,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(600_000);
    // Phase marks: with --profile, a CPU snapshot of every descendant thread at each mark.
    const marks: { label: string; t: number; cpu: CpuSnapshot }[] = [];
    // The thread running the transfers (the worker's, or the page's with --page) is sampled (CDP Profiler)
    // during the first run's encrypted upload and download.
    const cdp = PROFILE ? await context.newCDPSession(page) : null;
    let send: ((method: string, params?: object) => Promise<unknown>) | null = null;
    const jsProfiles: Record<string, CpuProfile> = {};
    let profiling: string | null = null;
    await page.exposeFunction('__mark', async (label: string) => {
      if (!PROFILE || !cdp) return;
      if (!send) {
        // The first mark comes from the running code, so the worker exists by now.
        send = PAGE
          ? (method, params) => cdp.send(method as 'Profiler.enable', params)
          : await workerSession(cdp, WORKER_NAME);
        await send('Profiler.enable');
        await send('Profiler.setSamplingInterval', { interval: 200 });
      }
      if (profiling) {
        jsProfiles[profiling] = ((await send('Profiler.stop')) as { profile: CpuProfile }).profile;
        profiling = null;
      }
      marks.push({ label, t: performance.now(), cpu: cpuSnapshot() });
      if (label.startsWith('encrypted') && !jsProfiles[label]) {
        await send('Profiler.start');
        profiling = label;
      }
    });
    // tsx compiles this file with esbuild's keepNames: functions passed to page.evaluate call `__name`.
    await page.addInitScript('globalThis.__name = (f) => f;');
    await page.goto(`${server.url}/`);
    const args: RunArgs = {
      token: user.token,
      userId: user.userId,
      deviceId: user.deviceId,
      conv,
      sizeMb: SIZE_MB,
      runs: RUNS,
      origin: server.url,
      inWorker: !PAGE,
    };
    const result = PAGE ? await page.evaluate(roundTrips, args) : await inDedicatedWorker(page, args);
    if (PROFILE) process.stderr.write(`PROFILE ${JSON.stringify(result.prof)}\n`);
    await context.close();

    const loadAfter = load();
    const mb = (s: number) => (SIZE_MB / s).toFixed(0);
    const range = (xs: number[]) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)} s`;
    const encMed = median(result.encrypted);
    const plainMed = median(result.plain);
    const ratios = result.encrypted.map((e, i) => result.plain[i]! / e);
    const md = [
      '',
      `### Attachments — ${describeMachine(machineInfo())}`,
      '',
      `Load average before: ${loadBefore}; after: ${loadAfter}. Chromium (headless) against \`npm run dev\` (local R2); transfers ${PAGE ? 'on the page thread (--page)' : 'in a dedicated Web Worker (as the app runs its engine)'}.`,
      '',
      markdownTable(
        ['measure', 'result'],
        [
          ['encrypt (AttachmentEncryptor, in memory)', `${result.encryptMBs.toFixed(0)} MB/s`],
          ['decrypt + digest check (AttachmentDecryptor)', `${result.decryptMBs.toFixed(0)} MB/s`],
          [
            'SHA-256 of the whole blob in pure JS (sha256Stream; the format before chunk hashes)',
            `${result.digestMBs.toFixed(0)} MB/s`,
          ],
          [
            'WebCrypto SHA-256 per sealed chunk (what the digest now costs)',
            `${result.nativeChunkDigestMBs.toFixed(0)} MB/s`,
          ],
          [
            `${SIZE_MB} MB upload + download, encrypted (median of ${RUNS})`,
            `${encMed.toFixed(2)} s (${mb(encMed)} MB/s), range ${range(result.encrypted)}`,
          ],
          [
            `${SIZE_MB} MB upload + download, unencrypted, same routes (median of ${RUNS})`,
            `${plainMed.toFixed(2)} s (${mb(plainMed)} MB/s), range ${range(result.plain)}`,
          ],
          [
            'of which upload / download, encrypted (medians)',
            `${median(result.phases.encUp).toFixed(2)} s / ${median(result.phases.encDown).toFixed(2)} s`,
          ],
          [
            'of which upload / download, unencrypted (medians)',
            `${median(result.phases.plainUp).toFixed(2)} s / ${median(result.phases.plainDown).toFixed(2)} s`,
          ],
          [
            'encrypted ÷ unencrypted throughput (target ≥ 0.80)',
            `${(plainMed / encMed).toFixed(2)}× (per run ${ratios.map((r) => r.toFixed(2)).join(', ')})`,
          ],
        ],
        ['left', 'right'],
      ),
      '',
    ].join('\n');
    process.stdout.write(`${md}\n`);
    if (PROFILE) process.stdout.write(`${profileReport(marks, jsProfiles)}\n`);
    if (process.argv.includes('--write')) appendFileSync(join(ROOT, 'bench/RESULTS.md'), md);
  } finally {
    // Chromium may still be writing its cache for a moment after a failure.
    rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 500 });
    await server.stop();
  }
}

/**
 * Runs `roundTrips` in a dedicated module Worker started by the page (from a blob: URL holding its source,
 * so the engine modules come from the dev server as in the app's dev build). Phase marks are relayed to the
 * page's `__mark` (the worker waits for each, as the page mode does); engine events are dropped on arrival.
 */
async function inDedicatedWorker(page: Page, args: RunArgs): Promise<PageResult> {
  const source = [
    'globalThis.__name = (f) => f;',
    `const roundTrips = (${roundTrips.toString()});`,
    'let marked = null;',
    'globalThis.__mark = (label) => new Promise((resolve) => { marked = resolve; postMessage({ mark: label }); });',
    'onmessage = async (e) => {',
    '  if (e.data.marked) return marked();',
    '  try { postMessage({ result: await roundTrips(e.data) }); }',
    '  catch (err) { postMessage({ error: String((err && err.stack) || err) }); }',
    '};',
  ].join('\n');
  return page.evaluate(
    ({ source, args, name }) =>
      new Promise<PageResult>((resolve, reject) => {
        const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
        const worker = new Worker(url, { type: 'module', name });
        const mark = (globalThis as unknown as { __mark: (l: string) => Promise<void> }).__mark;
        worker.onerror = (e) => reject(new Error(`worker: ${e.message}`));
        worker.onmessage = async (e: MessageEvent) => {
          const d = e.data as { mark?: string; result?: PageResult; error?: string };
          if (d.mark !== undefined) {
            await mark(d.mark);
            worker.postMessage({ marked: true });
          } else if (d.result) resolve(d.result);
          else if (d.error) reject(new Error(d.error));
        };
        worker.postMessage(args);
      }),
    { source, args, name: WORKER_NAME },
  );
}

/**
 * The measured part, in the browser: the cipher in memory, then RUNS alternating encrypted / unencrypted round
 * trips. Self-contained (it is serialised: run by `page.evaluate` with --page, or as the body of a dedicated
 * module Worker, as the app runs its engine); modules come from the dev server at `origin`.
 */
async function roundTrips({
  token,
  userId,
  deviceId,
  conv,
  sizeMb,
  runs,
  origin,
  inWorker,
}: RunArgs): Promise<PageResult> {
  const { Transfers, BlobCollector, sendParts } = await import(`${origin}/src/engine/attachments.ts`);
  const { HttpClient, createHttpApi } = await import(`${origin}/src/engine/http-transport.ts`);
  const { AttachmentEncryptor, AttachmentDecryptor, generateAttachmentKey, sha256Stream } = await import(
    `${origin}/src/protocol/index.ts`
  );
  const mark = (globalThis as unknown as { __mark: (l: string) => Promise<void> }).__mark;
  const size = sizeMb * 1024 * 1024;
  const data = new Uint8Array(size);
  for (let o = 0; o < size; o += 65536) crypto.getRandomValues(data.subarray(o, Math.min(size, o + 65536)));
  const rng = (n: number) => crypto.getRandomValues(new Uint8Array(n));
  const MiB = 1024 * 1024;

  // 1. The cipher alone, in memory.
  const key = generateAttachmentKey(rng);
  let t = performance.now();
  const enc = await AttachmentEncryptor.create(key, size);
  const sealed: Uint8Array[] = [];
  for (let o = 0; o < size; o += MiB) sealed.push(...(await enc.push(data.subarray(o, o + MiB))));
  sealed.push(...(await enc.finish()));
  const encryptMBs = sizeMb / ((performance.now() - t) / 1000);
  t = performance.now();
  const h = sha256Stream();
  for (const s of sealed) h.update(s);
  h.digest();
  const digest = enc.digest;
  const digestMBs = sizeMb / ((performance.now() - t) / 1000);
  t = performance.now();
  for (const s of sealed) await crypto.subtle.digest('SHA-256', s as Uint8Array<ArrayBuffer>);
  const nativeChunkDigestMBs = sizeMb / ((performance.now() - t) / 1000);
  t = performance.now();
  const dec = await AttachmentDecryptor.create(key, size, digest);
  for (const s of sealed) await dec.push(s);
  await dec.finish();
  const decryptMBs = sizeMb / ((performance.now() - t) / 1000);
  sealed.length = 0;

  // 2. Round trips through the local Worker.
  // A module Worker made from a blob: URL has no http base URL of its own: the dev server's origin.
  const http = new HttpClient({ baseUrl: origin });
  http.setTokens({ accessToken: token, expiresIn: 600, userId, deviceId });
  const api = createHttpApi(http);
  // Phase marks from the engine's own progress events: the first upload event ends the encrypt phase.
  let tFirstUpload = 0;
  const emit = (e: { type: string; phase?: string }) => {
    if (e.type === 'transfer' && e.phase === 'upload' && tFirstUpload === 0) tFirstUpload = performance.now();
    // As the app's worker host does: every engine event goes to the page.
    if (inWorker) (globalThis as unknown as { postMessage: (m: unknown) => void }).postMessage({ event: e });
  };
  const transfers = new Transfers({ api, rng, emit, now: Date.now });
  const prof = { encPhase: [] as number[], xhrPhase: [] as number[] };
  const file = new Blob([data as BlobPart]);
  const encrypted: number[] = [];
  const plain: number[] = [];
  const phases = {
    encUp: [] as number[],
    encDown: [] as number[],
    plainUp: [] as number[],
    plainDown: [] as number[],
  };
  // The unencrypted download is collected into a Blob the same way the engine collects plaintext.
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    const out = new BlobCollector();
    const reader = stream.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out.add([value]);
    }
    return out.blob();
  };
  for (let i = 0; i < runs; i++) {
    await mark('encrypted upload');
    t = performance.now();
    tFirstUpload = 0;
    const pointer = await transfers.upload(`up${i}`, conv, {
      file,
      fileName: 'bench.bin',
      contentType: 'application/octet-stream',
    });
    const tUp = performance.now();
    await mark('encrypted download');
    const tDown = performance.now();
    const back = await transfers.download(`down${i}`, pointer);
    if (back.size !== size) throw new Error('encrypted round trip lost bytes');
    encrypted.push((performance.now() - t - (tDown - tUp)) / 1000);
    phases.encUp.push((tUp - t) / 1000);
    prof.encPhase.push((tFirstUpload - t) / 1000);
    prof.xhrPhase.push((tUp - tFirstUpload) / 1000);
    phases.encDown.push((performance.now() - tDown) / 1000);
    await mark('unencrypted upload');

    // The same route and transport as the engine: a parts upload when the engine would make one.
    t = performance.now();
    const { attachmentId, partBytes } = await api.reserveAttachment(conv, size, size > 8 * MiB);
    if (partBytes) {
      const count = Math.ceil(size / partBytes);
      const receipts = await sendParts(
        api,
        attachmentId,
        count,
        async (n: number) => file.slice(n * partBytes, (n + 1) * partBytes),
        [],
        {},
      );
      await api.completeAttachment(attachmentId, receipts);
    } else await api.uploadAttachment(attachmentId, file, {});
    const tUp2 = performance.now();
    await mark('unencrypted download');
    const tDown2 = performance.now();
    const got = await drain(await api.downloadAttachment(attachmentId, {}));
    if (got.size !== size) throw new Error('plain round trip lost bytes');
    plain.push((performance.now() - t - (tDown2 - tUp2)) / 1000);
    phases.plainUp.push((tUp2 - t) / 1000);
    phases.plainDown.push((performance.now() - tDown2) / 1000);
    await mark('end');
  }
  return { encryptMBs, decryptMBs, digestMBs, nativeChunkDigestMBs, encrypted, plain, phases, prof };
}

/**
 * Per phase (medians over the runs): wall seconds and CPU seconds of each process/thread group; then the
 * page thread's functions with the most self time in the first run's encrypted upload and download.
 */
function profileReport(
  marks: { label: string; t: number; cpu: CpuSnapshot }[],
  jsProfiles: Record<string, CpuProfile>,
): string {
  const phases = new Map<string, { wall: number[]; cpu: Map<string, number>[] }>();
  for (let i = 0; i + 1 < marks.length; i++) {
    const a = marks[i]!;
    const b = marks[i + 1]!;
    if (a.label === 'end') continue;
    const ph = phases.get(a.label) ?? { wall: [], cpu: [] };
    ph.wall.push((b.t - a.t) / 1000);
    ph.cpu.push(cpuDelta(a.cpu, b.cpu));
    phases.set(a.label, ph);
  }
  const groups = [...new Set([...phases.values()].flatMap((p) => p.cpu.flatMap((m) => [...m.keys()])))].sort();
  const names = [...phases.keys()];
  const med = (label: string, g: string) => median(phases.get(label)!.cpu.map((m) => m.get(g) ?? 0));
  const rows = groups
    .filter((g) => names.some((n) => med(n, g) >= 0.02))
    .map((g) => [g, ...names.map((n) => med(n, g).toFixed(2))]);
  const total = names.map((n) =>
    median(phases.get(n)!.cpu.map((m) => [...m.values()].reduce((x, y) => x + y, 0))).toFixed(2),
  );
  const out = [
    '',
    `CPU seconds per phase (medians of ${phases.get(names[0]!)?.wall.length ?? 0} runs; 2 cores = 2 CPU-s per wall second; the first run is also under the JS profiler):`,
    '',
    markdownTable(
      ['', ...names],
      [
        ['wall s', ...names.map((n) => median(phases.get(n)!.wall).toFixed(2))],
        ...rows,
        ['all CPU (this bench’s processes)', ...total],
      ],
      ['left', ...names.map(() => 'right' as const)],
    ),
  ];
  for (const [label, prof] of Object.entries(jsProfiles)) {
    out.push('', `${PAGE ? 'Page thread' : 'Worker thread'}, ${label} (first run): top self time`, '');
    out.push(
      markdownTable(
        ['function', 'where', 'ms', 'share'],
        topSelfTime(prof, 12).map((f) => [f.name, f.where, f.ms.toFixed(0), `${(f.share * 100).toFixed(1)}%`]),
        ['left', 'left', 'right', 'right'],
      ),
    );
  }
  return out.join('\n');
}

await main();
