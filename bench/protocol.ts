/**
 * `npm run bench:protocol` — e2e-chat's protocol core against @signalapp/libsignal-client 0.103.0 doing the
 * same work, in one process on the same machine. Prints one Markdown table (paste it into bench/RESULTS.md).
 *
 * Workloads (200-byte payloads): one-way messages (symmetric ratchet only), ping-pong messages (a DH
 * ratchet step every message), PQXDH session set-ups (fresh bundle with one-time X25519 + ML-KEM-1024
 * prekeys → first message → decrypted), sender-key messages (one sender, one receiver, signed). Each is
 * prepared outside the timed section, warmed up once, then measured in RUNS interleaved rounds; the
 * table shows medians. Our side runs on the WebCrypto curve path (the production default on Node,
 * browsers and workerd); the pure-JS (noble) figures are printed as a reference column.
 *
 * Options: --runs=N (default 5), --scale=X (multiplies every operation count; 0.25 for a quick look),
 * --only=oneWay,setup (a subset of workloads).
 *
 * This is a benchmark, not a test: it asserts nothing except that every plaintext round-trips.
 * @module
 */
import { loadavg } from 'node:os';
import { defaultCurves, nobleCurves, webCryptoCurves } from '../web/src/protocol/index.js';
import { libsignalWorkloads, loadLibsignal, type SideWorkloads } from './libsignal-side.js';
import { oursWorkloads } from './ours-side.js';
import {
  type Align,
  describeMachine,
  fmtRate,
  fmtRatio,
  machineInfo,
  markdownTable,
  measureInterleaved,
  median,
  type Sample,
} from './stats.js';

const PAYLOAD = 200;

interface Spec {
  readonly key: keyof SideWorkloads;
  readonly label: string;
  /** Target: e2e-chat (WebCrypto curves) ≥ target × libsignal. */
  readonly target: number;
  /** Operations per run for libsignal / ours on WebCrypto / ours on noble (sized for ≈ 0.3–1 s each). */
  readonly ops: { readonly libsignal: number; readonly webcrypto: number; readonly noble: number };
}

const SPECS: readonly Spec[] = [
  { key: 'oneWay', label: 'one-way msg (200 B)', target: 2, ops: { libsignal: 3000, webcrypto: 4000, noble: 3000 } },
  {
    key: 'pingPong',
    label: 'ping-pong msg (DH step each)',
    target: 0.8,
    ops: { libsignal: 2000, webcrypto: 800, noble: 200 },
  },
  { key: 'setup', label: 'PQXDH session set-up', target: 0.5, ops: { libsignal: 300, webcrypto: 100, noble: 25 } },
  {
    key: 'senderKey',
    label: 'sender-key msg (200 B)',
    target: 0.8,
    ops: { libsignal: 3000, webcrypto: 1000, noble: 200 },
  },
];

function arg(name: string): string | undefined {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit?.slice(name.length + 3);
}

async function main(): Promise<void> {
  const runs = Number(arg('runs') ?? 5);
  const scale = Number(arg('scale') ?? 1);
  const only = arg('only')?.split(',');
  const machine = machineInfo();
  const started = performance.now();

  const { lib, version } = await loadLibsignal();
  const webcrypto = await webCryptoCurves();
  if (!webcrypto) throw new Error('this platform has no WebCrypto X25519/Ed25519: the comparison needs it');
  const def = await defaultCurves();
  const sides: Record<'libsignal' | 'webcrypto' | 'noble', SideWorkloads> = {
    libsignal: libsignalWorkloads(lib, PAYLOAD),
    webcrypto: oursWorkloads(webcrypto, PAYLOAD),
    noble: oursWorkloads(nobleCurves, PAYLOAD),
  };

  console.log(`# bench:protocol — e2e-chat vs @signalapp/libsignal-client ${version}`);
  console.log(`machine: ${describeMachine(machine)} · load average at start ${loadavg()[0]!.toFixed(2)}`);
  console.log(`method: median of ${runs} runs after one warm-up, rounds interleaved; ${PAYLOAD}-byte payloads;`);
  console.log(`        e2e-chat on WebCrypto curves (defaultCurves() = ${def.name}), noble-only as reference\n`);

  const rows: string[][] = [];
  const details: string[] = [];
  for (const spec of SPECS) {
    if (only && !only.includes(spec.key)) continue;
    const n = (x: number) => Math.max(1, Math.round(x * scale));
    const impls = (['libsignal', 'webcrypto', 'noble'] as const).map((name) => ({
      name,
      workload: sides[name][spec.key],
      ops: n(spec.ops[name]),
    }));
    // An implementation whose workload cannot run (e.g. a module not landed yet) is reported as n/a.
    const runnable = [];
    for (const impl of impls) {
      try {
        await (await impl.workload(2)).run();
        runnable.push(impl);
      } catch (e) {
        console.error(`${spec.label} / ${impl.name}: not measured — ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    const samples: Map<string, Sample> = await measureInterleaved(runnable, runs);
    const ls = samples.get('libsignal');
    const wc = samples.get('webcrypto');
    const nb = samples.get('noble');
    const rate = (s: Sample | undefined) => (s ? fmtRate(s.median) : 'n/a');
    if (!ls || !wc) {
      rows.push([spec.label, rate(wc), rate(ls), '—', `≥ ${spec.target}× — not measured`, rate(nb)]);
      continue;
    }
    const ratio = wc.median / ls.median;
    const met = ratio >= spec.target ? 'met' : 'NOT met';
    rows.push([spec.label, rate(wc), rate(ls), fmtRatio(ratio), `≥ ${spec.target}× — ${met}`, rate(nb)]);
    const paired = median(ls.opsPerSec.map((l, i) => wc.opsPerSec[i]! / l));
    details.push(`  ${spec.key.padEnd(9)} paired ratio (median of per-round e2e-chat/libsignal): ${fmtRatio(paired)}`);
    for (const [name, s] of [
      ['libsignal', ls],
      ['e2e-chat/webcrypto', wc],
      ['e2e-chat/noble', nb],
    ] as const) {
      if (s) details.push(`  ${spec.key.padEnd(9)} ${name.padEnd(18)} runs: ${s.opsPerSec.map(fmtRate).join(', ')}`);
    }
    console.error(`${spec.label}: done (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  }

  const headers = ['workload', 'e2e-chat ops/s', `libsignal ops/s`, 'ratio', 'target', 'e2e-chat noble-only ops/s'];
  const align: Align[] = ['left', 'right', 'right', 'right', 'left', 'right'];
  console.log(markdownTable(headers, rows, align));
  console.log(`\nper-run ops/s (run order):\n${details.join('\n')}`);
  console.log(
    `load average at end ${loadavg()[0]!.toFixed(2)} (a shared machine: read the ratios, not the absolute figures)`,
  );
  console.log(`\ntotal ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

await main();
