/**
 * `npm run bench:kt` — key transparency (issue 20), two parts, one Markdown table each (paste them into
 * bench/RESULTS.md under "## Key transparency"):
 *
 * 1. **The log Durable Object** (worker/kt-log.ts) under `wrangler dev` (workerd, local SQLite on disk),
 *    driven from inside workerd by bench/kt/worker.ts: appends/s when every append waits alone (one call
 *    in flight: one commit each), when 64 registrations arrive at once (the group commit batches them), and
 *    in bulk (256 entries per call); then the DO's time to prove one entry at the size reached.
 * 2. **A simulated log of 1,000,000 entries** (real encoded entries, the RFC 9162 tree in flat arrays,
 *    hashed with node:crypto; the protocol core's proof generation reads it): proof sizes (inclusion,
 *    consistency, the `kt` field of a lookup answer as JSON) and the client's verification time per step —
 *    the tree head signature (noble and WebCrypto), the inclusion proof, a consistency proof — with the
 *    protocol core exactly as the engine runs it.
 *
 * Options: --repeat=N (DO runs per scenario, interleaved; default 3), --scale=X (DO append counts),
 * --entries=N (simulated log size, default 1,000,000), --samples=N (verifications timed, default 500),
 * --only=do|sim. Benchmarks print; they assert nothing but that proofs verify.
 * @module
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../scripts/local-env.js';
import { toB64u } from '../web/src/protocol/bytes.js';
import { generateEd25519 } from '../web/src/protocol/keys.js';
import { consistencyProof, frontierPositions, inclusionProof, type NodeReader } from '../web/src/protocol/merkle.js';
import { type Curve25519, nobleCurves, webCryptoCurves } from '../web/src/protocol/primitives.js';
import {
  encodeKtEntry,
  signTreeHead,
  verifyEntryInclusion,
  verifyHeadConsistency,
  verifyTreeHead,
} from '../web/src/protocol/transparency.js';
import { startWrangler } from './lib/wrangler-dev.js';
import { describeMachine, machineInfo, markdownTable, median } from './stats.js';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const REPEAT = Math.max(1, Number(arg('repeat') ?? 3));
const SCALE = Number(arg('scale') ?? 1);
const ENTRIES = Number(arg('entries') ?? 1_000_000);
const SAMPLES = Number(arg('samples') ?? 500);
const ONLY = arg('only');
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
const fmt = (x: number, d = 0) =>
  Number.isFinite(x) ? x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : '—';
const range = (xs: number[], d = 0) => `${fmt(Math.min(...xs), d)}–${fmt(Math.max(...xs), d)}`;

// ---- 1. the log Durable Object ----------------------------------------------------------------------------

const SCENARIOS = [
  { name: 'one append at a time (1 in flight, 1 entry per call)', n: 1_500, inflight: 1, per: 1 },
  { name: 'registration burst (64 in flight, 1 entry per call)', n: 6_000, inflight: 64, per: 1 },
  { name: 'bulk (4 in flight, 256 entries per call)', n: 20_000, inflight: 4, per: 256 },
] as const;

async function benchDo(): Promise<string> {
  const dir = join(ROOT, 'bench/kt');
  writeFileSync(join(dir, '.dev.vars'), `KT_LOG_SIGNING_KEY="${randomBytes(32).toString('base64url')}"\n`, {
    mode: 0o600,
  });
  const state = mkdtempSync(join(tmpdir(), 'e2e-chat-bench-kt-'));
  const server = await startWrangler(join(dir, 'wrangler.toml'), '/health', state);
  const per = new Map<string, { rate: number[]; commits: number[] }>(
    SCENARIOS.map((s) => [s.name, { rate: [], commits: [] }]),
  );
  let proveRow: string[] = [];
  try {
    const run = async (s: (typeof SCENARIOS)[number], log: string) => {
      const n = Math.max(s.per * s.inflight, Math.round(s.n * SCALE));
      const t0 = performance.now();
      const res = await fetch(`${server.url}/append?log=${log}&n=${n}&inflight=${s.inflight}&per=${s.per}`, {
        method: 'POST',
      });
      const ms = performance.now() - t0;
      if (!res.ok) throw new Error(`append: ${res.status} ${await res.text()}`);
      const r = (await res.json()) as { ms: number; size: number; commits: number; lastUser: string };
      return { rate: (n * 1000) / ms, commits: r.commits, n, lastUser: r.lastUser, size: r.size };
    };
    for (const s of SCENARIOS) await run(s, `warmup-${s.per}-${s.inflight}`); // warm-up (compiles, tables)
    for (let i = 0; i < REPEAT; i++) {
      for (const s of SCENARIOS) {
        const r = await run(s, `run${i}-${s.per}-${s.inflight}`);
        per.get(s.name)!.rate.push(r.rate);
        per.get(s.name)!.commits.push(r.n / r.commits);
      }
    }
    // Proofs from the DO at the size of a grown log (the bulk scenario's, plus two more runs into it).
    const grown = `grown-${Date.now()}`;
    let last = '';
    let size = 0;
    for (let i = 0; i < 3; i++) {
      const r = await run(SCENARIOS[2], grown);
      last = r.lastUser;
      size = r.size;
    }
    const times: number[] = [];
    let bytes = 0;
    for (let i = 0; i < 30; i++) {
      const r = (await (await fetch(`${server.url}/prove?log=${grown}&user=${last}`)).json()) as {
        ms: number;
        bytes: number;
      };
      times.push(r.ms);
      bytes = r.bytes;
    }
    const stats = (await (await fetch(`${server.url}/stats?log=${grown}`)).json()) as { databaseBytes: number };
    proveRow = [
      `proveLatest at ${fmt(size)} entries (DO-side, median of 30)`,
      `${fmt(median(times), 1)} ms`,
      `${bytes} B`,
      `${fmt(stats.databaseBytes / size)} B`,
    ];
  } finally {
    await server.stop();
  }
  const rows = SCENARIOS.map((s) => {
    const x = per.get(s.name)!;
    return [s.name, fmt(median(x.rate)), range(x.rate), fmt(median(x.commits), 1)];
  });
  return [
    markdownTable(['log DO appends', 'appends/s (median)', `range of ${REPEAT}`, 'entries per commit'], rows, [
      'left',
      'right',
      'right',
      'right',
    ]),
    '',
    markdownTable(
      ['log DO proof', 'time', 'entry + head + proof', 'SQLite bytes per entry'],
      [proveRow],
      ['left', 'right', 'right', 'right'],
    ),
  ].join('\n');
}

// ---- 2. a simulated log of a million entries ---------------------------------------------------------------

const sha256 = (...parts: Uint8Array[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};
const LEAF = Uint8Array.of(0);
const NODE = Uint8Array.of(1);

/** Every perfect-subtree root in one flat array per level (level 0: leaf hashes). */
function flatTree(leaves: number, entry: (i: number) => Uint8Array) {
  const levels: Uint8Array[] = [new Uint8Array(leaves * 32)];
  for (let i = 0; i < leaves; i++) levels[0]!.set(sha256(LEAF, entry(i)), i * 32);
  for (let l = 1; 2 ** l <= leaves; l++) {
    const below = levels[l - 1]!;
    const count = Math.floor(leaves / 2 ** l);
    const out = new Uint8Array(count * 32);
    for (let i = 0; i < count; i++) out.set(sha256(NODE, below.subarray(2 * i * 32, 2 * i * 32 + 64)), i * 32);
    levels.push(out);
  }
  const read: NodeReader = (level, index) => levels[level]!.subarray(index * 32, index * 32 + 32);
  return { levels, read };
}

async function benchSimulated(): Promise<string> {
  const now = 1_800_000_000_000;
  const keyOf = (i: number) => {
    const k = sha256(Uint8Array.of(i & 255, (i >> 8) & 255, (i >> 16) & 255, i >>> 24));
    k[31]! &= 0x7f;
    return k;
  };
  const entry = (i: number) =>
    encodeKtEntry({
      kind: 'key',
      userId: toB64u(sha256(Uint8Array.of(1, i & 255, (i >> 8) & 255, (i >> 16) & 255)).subarray(0, 16)),
      version: 1,
      time: now + i,
      username: `user${i}`,
      identityKey: keyOf(i),
    });
  const t0 = performance.now();
  const { read } = flatTree(ENTRIES, entry);
  const buildS = (performance.now() - t0) / 1000;
  const root = (size: number) => {
    // The root from the frontier of `size` (perfect subtrees, combined right to left).
    const f = frontierPositions(size).map((p) => read(p.level, p.index));
    let r = f[f.length - 1]!;
    for (let i = f.length - 2; i >= 0; i--) r = sha256(NODE, f[i]!, r);
    return r;
  };
  const curves: Curve25519[] = [nobleCurves, (await webCryptoCurves())!];
  const logKey = await generateEd25519(curves[1]!, (n) => new Uint8Array(randomBytes(n)));
  const head = await signTreeHead(curves[1]!, logKey, { size: ENTRIES, root: root(ENTRIES), time: now });
  const verified = await verifyTreeHead(curves[1]!, logKey.publicKey, head);

  const rand = (n: number) => Math.floor(Math.random() * n);
  const incl: { hashes: number; json: number; genUs: number; verifyUs: number }[] = [];
  for (let s = 0; s < SAMPLES; s++) {
    const i = rand(ENTRIES);
    const g0 = performance.now();
    const proof = inclusionProof(read, i, ENTRIES);
    const genUs = (performance.now() - g0) * 1000;
    const e = entry(i);
    const v0 = performance.now();
    verifyEntryInclusion(verified, i, e, proof);
    const verifyUs = (performance.now() - v0) * 1000;
    const json = JSON.stringify({
      entry: toB64u(e),
      index: i,
      head: toB64u(head),
      proof: proof.map((h) => toB64u(h)),
    }).length;
    incl.push({ hashes: proof.length, json, genUs, verifyUs });
  }
  const cons: { hashes: number; verifyUs: number; genUs: number }[] = [];
  for (let s = 0; s < Math.min(SAMPLES, 200); s++) {
    // A client that last saw a head a little (or a lot) older than the newest one.
    const m = s % 2 ? ENTRIES - 1 - rand(5_000) : 1 + rand(ENTRIES - 1);
    const g0 = performance.now();
    const proof = consistencyProof(read, m, ENTRIES);
    const genUs = (performance.now() - g0) * 1000;
    const older = { size: m, root: root(m), time: now - 1 };
    const v0 = performance.now();
    verifyHeadConsistency(older, verified, proof);
    cons.push({ hashes: proof.length, verifyUs: (performance.now() - v0) * 1000, genUs });
  }
  const sig: Record<string, number[]> = { noble: [], webcrypto: [] };
  for (let s = 0; s < Math.min(SAMPLES, 300); s++) {
    for (const c of curves) {
      const t = performance.now();
      await verifyTreeHead(c, logKey.publicKey, head);
      sig[c.name]!.push((performance.now() - t) * 1000);
    }
  }
  const med = (xs: number[]) => median(xs);
  const rows: string[][] = [
    [`tree of ${fmt(ENTRIES)} entries built (node:crypto)`, `${fmt(buildS, 1)} s`, ''],
    [
      'inclusion proof',
      `${fmt(med(incl.map((x) => x.hashes)))} hashes = ${fmt(med(incl.map((x) => x.hashes)) * 32)} B`,
      `max ${fmt(Math.max(...incl.map((x) => x.hashes)))} hashes`,
    ],
    [
      '`kt` field of a lookup answer (JSON: entry, index, head, proof)',
      `${fmt(med(incl.map((x) => x.json)))} B`,
      `max ${fmt(Math.max(...incl.map((x) => x.json)))} B`,
    ],
    [
      'consistency proof (old head → newest)',
      `${fmt(med(cons.map((x) => x.hashes)))} hashes = ${fmt(med(cons.map((x) => x.hashes)) * 32)} B`,
      `max ${fmt(Math.max(...cons.map((x) => x.hashes)))} hashes`,
    ],
    ['client: tree head signature, noble (pure JS)', `${fmt(med(sig.noble!))} µs`, `p90 ${fmt(p90(sig.noble!))} µs`],
    ['client: tree head signature, WebCrypto', `${fmt(med(sig.webcrypto!))} µs`, `p90 ${fmt(p90(sig.webcrypto!))} µs`],
    [
      'client: inclusion proof + entry decode (noble SHA-256)',
      `${fmt(med(incl.map((x) => x.verifyUs)))} µs`,
      `p90 ${fmt(p90(incl.map((x) => x.verifyUs)))} µs`,
    ],
    [
      'client: consistency proof (noble SHA-256)',
      `${fmt(med(cons.map((x) => x.verifyUs)))} µs`,
      `p90 ${fmt(p90(cons.map((x) => x.verifyUs)))} µs`,
    ],
    [
      'server: inclusion proof generation (in memory; the DO reads SQLite)',
      `${fmt(med(incl.map((x) => x.genUs)))} µs`,
      `p90 ${fmt(p90(incl.map((x) => x.genUs)))} µs`,
    ],
  ];
  return markdownTable([`simulated log, ${fmt(ENTRIES)} entries`, 'median', 'spread'], rows, [
    'left',
    'right',
    'right',
  ]);
}

const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)] ?? Number.NaN;

async function main() {
  const out: string[] = [`${describeMachine(machineInfo())} · load before: ${load()}`, ''];
  if (ONLY !== 'sim') out.push(await benchDo(), '');
  if (ONLY !== 'do') out.push(await benchSimulated(), '');
  out.push(`load after: ${load()}`);
  console.log(out.join('\n'));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
