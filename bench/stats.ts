/**
 * Generic benchmark helpers: one timed workload run, median of repeated runs (after a warm-up), interleaved
 * rounds across implementations, a plain-text table, and a description of the machine.
 *
 * Shared by every `npm run bench:*` script; nothing here knows about the protocol.
 * Does NOT: assert anything (benchmarks print, tests assert) or write files.
 * @module
 */
import { cpus } from 'node:os';

/** A workload prepared outside the timed section; `run` does `ops` operations and is the only timed part. */
export interface Prepared {
  readonly ops: number;
  run(): Promise<void>;
}

/** Builds a fresh, untimed set-up (keys, sessions, stores) for one run of `ops` operations. */
export type Workload = (ops: number) => Promise<Prepared>;

export interface Sample {
  /** Operations per second of each measured run (warm-up excluded), in run order. */
  readonly opsPerSec: readonly number[];
  readonly median: number;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Prepares (untimed) and runs `workload` once; returns operations per second of the timed part. */
export async function timeOnce(workload: Workload, ops: number): Promise<number> {
  const prepared = await workload(ops);
  const t0 = performance.now();
  await prepared.run();
  const ms = performance.now() - t0;
  return (prepared.ops * 1000) / ms;
}

/**
 * Runs several implementations of one workload: one warm-up each, then `runs` rounds in which every
 * implementation runs once in turn (interleaved, so drift on a shared machine hits all of them alike).
 */
export async function measureInterleaved(
  impls: readonly { readonly name: string; readonly workload: Workload; readonly ops: number }[],
  runs: number,
): Promise<Map<string, Sample>> {
  return measureInterleavedTimed(
    impls.map((i) => ({ name: i.name, once: () => timeOnce(i.workload, i.ops) })),
    runs,
  );
}

/** As `measureInterleaved`, for implementations that time themselves (e.g. inside a browser worker):
 * `once()` prepares and runs one measured run and returns its operations per second. */
export async function measureInterleavedTimed(
  impls: readonly { readonly name: string; readonly once: () => Promise<number> }[],
  runs: number,
): Promise<Map<string, Sample>> {
  for (const impl of impls) await impl.once();
  const results = new Map<string, number[]>(impls.map((i) => [i.name, []]));
  for (let r = 0; r < runs; r++) {
    for (const impl of impls) results.get(impl.name)!.push(await impl.once());
  }
  return new Map([...results].map(([name, xs]) => [name, { opsPerSec: xs, median: median(xs) }]));
}

/** Formats a number of operations per second with thousands separators and no decimals (≥ 100). */
export function fmtRate(x: number): string {
  if (!Number.isFinite(x)) return '—';
  return x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(1);
}

/** A ratio such as 2.41×. */
export function fmtRatio(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(2)}×` : '—';
}

export type Align = 'left' | 'right';

/** A GitHub-flavoured Markdown table, padded so it also reads well in a terminal. */
export function markdownTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  align?: readonly Align[],
): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length), 3));
  const pad = (s: string, i: number) =>
    (align?.[i] ?? 'left') === 'right' ? s.padStart(widths[i]!) : s.padEnd(widths[i]!);
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => pad(c, i)).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => ((align?.[i] ?? 'left') === 'right' ? `${'-'.repeat(w + 1)}:` : `-${'-'.repeat(w + 1)}`)).join('|')}|`;
  return [line(headers), rule, ...rows.map((r) => line(r))].join('\n');
}

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly node: string;
  readonly platform: string;
  readonly date: string;
}

export function machineInfo(now = new Date()): MachineInfo {
  const list = cpus();
  return {
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    cores: list.length,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    date: now.toISOString().slice(0, 10),
  };
}

export function describeMachine(m: MachineInfo): string {
  return `${m.date} · ${m.cpuModel} · ${m.cores} cores · Node ${m.node} · ${m.platform}`;
}
