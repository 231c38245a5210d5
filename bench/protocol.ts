/**
 * `npm run bench:protocol` — e2e-chat's protocol core where people run it (headless Chromium, a dedicated
 * Web Worker, the minified production bundle) and where bots run it (Node), against
 * @signalapp/libsignal-client native in Node (the limit) and the JavaScript Signal-protocol peer
 * @privacyresearch/libsignal-protocol-typescript in Chromium. Prints one Markdown table (paste it into
 * bench/RESULTS.md § Protocol).
 *
 * Workloads (200-byte payloads): one-way messages (symmetric ratchet only), ping-pong messages (a DH
 * ratchet step every message), PQXDH session set-ups (fresh bundle with one-time X25519 + ML-KEM-1024
 * prekeys → first message → decrypted; the JS peer does X3DH, no PQ), sender-key messages (one sender, one
 * receiver, signed; the JS peer has none). Each is prepared outside the timed section, warmed up once, then
 * measured in RUNS interleaved rounds (every implementation once per round); the table shows medians.
 * Our side runs on `defaultCurves()` (WebCrypto X25519/Ed25519 in both Chromium and Node).
 *
 * Options: --runs=N (default 5), --scale=X (multiplies every operation count; 0.25 for a quick look),
 * --only=oneWay,setup (a subset of workloads), --skip-peer (no JS peer), --skip-browser (Node only, no
 * Chromium), --noble (adds our pure-JS curve path in Node as a reference column), --profile (afterwards, one
 * DevTools CPU profile per workload of our core in the Chromium worker, written to bench/profiles/ with a
 * top-self-time summary).
 *
 * libsignal and the JS peer are installed on first use into bench/libsignal/ and bench/jspeer/ (pinned
 * there, git-ignored node_modules), never into the app's dependencies.
 * This is a benchmark, not a test: it asserts nothing except that every plaintext round-trips.
 * @module
 */
import { mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultCurves, nobleCurves } from '../web/src/protocol/index.js';
import { type BrowserSide, startBrowser, topSelfTime, type WorkerName } from './browser.js';
import { libsignalWorkloads, loadLibsignal, type SideWorkloads } from './libsignal-side.js';
import { oursWorkloads } from './ours-side.js';
import {
  type Align,
  describeMachine,
  fmtRate,
  fmtRatio,
  machineInfo,
  markdownTable,
  measureInterleavedTimed,
  median,
  type Sample,
  timeOnce,
} from './stats.js';

const PAYLOAD = 200;

type Impl = 'chromium' | 'node' | 'libsignal' | 'peer' | 'noble';

interface Spec {
  readonly key: keyof SideWorkloads;
  readonly label: string;
  /** Target in Chromium: ours ≥ target × libsignal (native, Node). Against the JS peer the target is 2×. */
  readonly target: number;
  /** Operations per run for each implementation (sized for ≈ 0.3–1 s each on this machine class). */
  readonly ops: Readonly<Record<Impl, number>>;
  /** Shown beside the JS peer's figure (what it does not do). */
  readonly peerNote?: string;
}

const PEER_TARGET = 2;

const SPECS: readonly Spec[] = [
  {
    key: 'oneWay',
    label: 'one-way msg (200 B)',
    target: 2,
    ops: { chromium: 4000, node: 4000, libsignal: 3000, peer: 1000, noble: 3000 },
  },
  {
    key: 'pingPong',
    label: 'ping-pong msg (DH step each)',
    target: 0.8,
    ops: { chromium: 1000, node: 800, libsignal: 2000, peer: 60, noble: 200 },
  },
  {
    key: 'setup',
    label: 'PQXDH session set-up',
    target: 0.5,
    ops: { chromium: 100, node: 100, libsignal: 300, peer: 12, noble: 25 },
    peerNote: 'X3DH, no PQ',
  },
  {
    key: 'senderKey',
    label: 'sender-key msg (200 B)',
    target: 0.8,
    ops: { chromium: 2000, node: 1000, libsignal: 3000, peer: 1, noble: 200 },
    peerNote: 'no sender keys',
  },
];

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const flag = (name: string) => process.argv.includes(`--${name}`);
const here = dirname(fileURLToPath(import.meta.url));

async function main(): Promise<void> {
  const runs = Number(arg('runs') ?? 5);
  const scale = Number(arg('scale') ?? 1);
  const only = arg('only')?.split(',');
  const withBrowser = !flag('skip-browser');
  const withPeer = withBrowser && !flag('skip-peer');
  const withNoble = flag('noble');
  const machine = machineInfo();
  const started = performance.now();
  const loadStart = loadavg();

  const { lib, version } = await loadLibsignal();
  const curves = await defaultCurves();
  const node: Partial<Record<Impl, SideWorkloads>> = {
    libsignal: libsignalWorkloads(lib, PAYLOAD),
    node: oursWorkloads(curves, PAYLOAD),
    ...(withNoble ? { noble: oursWorkloads(nobleCurves, PAYLOAD) } : {}),
  };
  const browser: BrowserSide | null = withBrowser ? await startBrowser({ peer: withPeer }) : null;

  console.log(`# bench:protocol — e2e-chat in Chromium and Node vs @signalapp/libsignal-client ${version} (native)`);
  console.log(`machine: ${describeMachine(machine)}`);
  if (browser) console.log(`chromium: ${browser.version} headless · workers: ${JSON.stringify(browser.info)}`);
  console.log(`node: our core on defaultCurves() = ${curves.name}, ML-KEM ${curves.mlkem.name}`);
  console.log(`load average at start: ${loadStart.map((x) => x.toFixed(2)).join(' ')}`);
  console.log(`method: median of ${runs} runs after one warm-up, every implementation once per round (interleaved);`);
  console.log(`        ${PAYLOAD}-byte payloads; Chromium runs each implementation in its own dedicated Web Worker\n`);

  const rows: string[][] = [];
  const details: string[] = [];
  const results = new Map<string, Map<Impl, Sample>>();
  try {
    for (const spec of SPECS) {
      if (only && !only.includes(spec.key)) continue;
      const n = (x: number) => Math.max(1, Math.round(x * scale));
      const impls: { name: Impl; once: () => Promise<number> }[] = [];
      const inBrowser = (name: Impl, worker: WorkerName) => {
        if (browser?.has(worker, spec.key))
          impls.push({ name, once: () => browser.timeOnce(worker, spec.key, n(spec.ops[name])) });
      };
      for (const name of ['libsignal', 'node', 'noble'] as const) {
        const side = node[name];
        if (side) impls.push({ name, once: () => timeOnce(side[spec.key], n(spec.ops[name])) });
      }
      inBrowser('chromium', 'ours');
      if (withPeer) inBrowser('peer', 'peer');
      const samples = (await measureInterleavedTimed(impls, runs)) as Map<Impl, Sample>;
      results.set(spec.key, samples);

      const s = (name: Impl) => samples.get(name);
      const rate = (name: Impl) => {
        const x = s(name);
        return x ? fmtRate(x.median) : 'n/a';
      };
      const ratio = (a: Impl, b: Impl) => {
        const x = s(a);
        const y = s(b);
        return x && y ? x.median / y.median : Number.NaN;
      };
      const verdict = (r: number, target: number) =>
        Number.isFinite(r) ? `${fmtRatio(r)} (≥ ${target}×: ${r >= target ? 'met' : 'NOT met'})` : '—';
      const peerCell = !withPeer ? 'skipped' : s('peer') ? rate('peer') : 'n/a';
      rows.push([
        spec.label,
        rate('chromium'),
        rate('node'),
        rate('libsignal'),
        spec.peerNote ? `${peerCell} (${spec.peerNote})` : peerCell,
        verdict(ratio('chromium', 'libsignal'), spec.target),
        verdict(ratio('chromium', 'peer'), PEER_TARGET),
        fmtRatio(ratio('node', 'libsignal')),
        ...(withNoble ? [rate('noble')] : []),
      ]);
      for (const [name, x] of samples) {
        const lo = Math.min(...x.opsPerSec);
        const hi = Math.max(...x.opsPerSec);
        details.push(
          `  ${spec.key.padEnd(9)} ${name.padEnd(9)} median ${fmtRate(x.median)} (${fmtRate(lo)}–${fmtRate(hi)}) · runs: ${x.opsPerSec.map(fmtRate).join(', ')}`,
        );
      }
      const ls = s('libsignal');
      for (const name of ['chromium', 'node'] as const) {
        const x = s(name);
        if (x && ls)
          details.push(
            `  ${spec.key.padEnd(9)} paired ratio ${name}/libsignal (median of per-round ratios): ${fmtRatio(median(ls.opsPerSec.map((l, i) => x.opsPerSec[i]! / l)))}`,
          );
      }
      console.error(`${spec.label}: done (${((performance.now() - started) / 1000).toFixed(0)} s)`);
    }
  } finally {
    await browser?.close();
  }

  const headers = [
    'workload',
    'ours Chromium ops/s',
    'ours Node ops/s',
    'libsignal native ops/s',
    'JS peer Chromium ops/s',
    'Chromium ÷ libsignal',
    'Chromium ÷ JS peer',
    'Node ÷ libsignal',
    ...(withNoble ? ['ours Node noble-only ops/s'] : []),
  ];
  const align: Align[] = ['left', 'right', 'right', 'right', 'right', 'left', 'left', 'right', 'right'];
  console.log(markdownTable(headers, rows, align));
  console.log(`\nmedian (range) and per-run ops/s in run order:\n${details.join('\n')}`);
  console.log(
    `load average at end: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} (a shared machine: read the ratios, not the absolute figures)`,
  );
  console.log(`\ntotal ${((performance.now() - started) / 1000).toFixed(0)} s`);

  if (flag('profile') && withBrowser) await profiles(only, scale);
}

/** One CPU profile per workload of our core in the Chromium worker (identifiers kept so functions are named). */
async function profiles(only: string[] | undefined, scale: number): Promise<void> {
  const dir = join(here, 'profiles');
  mkdirSync(dir, { recursive: true });
  const b = await startBrowser({ peer: false, readableNames: true });
  try {
    for (const spec of SPECS) {
      if (only && !only.includes(spec.key)) continue;
      const ops = Math.max(1, Math.round(spec.ops.chromium * scale));
      await b.timeOnce('ours', spec.key, ops);
      const file = join(dir, `chromium-${spec.key}.cpuprofile`);
      const profile = await b.profile('ours', spec.key, ops, file);
      const total = (profile.endTime - profile.startTime) / 1000;
      console.log(
        `\n### CPU profile, our core in the Chromium worker: ${spec.key} (${ops} ops, ${total.toFixed(0)} ms)`,
      );
      console.log(`${file.slice(here.length - 5)} — top self time (share of non-idle samples):`);
      for (const t of topSelfTime(profile, 14))
        console.log(`  ${(t.share * 100).toFixed(1).padStart(5)} %  ${t.name}${t.where ? `  (${t.where})` : ''}`);
    }
  } finally {
    await b.close();
  }
}

await main();
