/**
 * CPU time of this process's descendants, by thread, from /proc (Linux only): a benchmark takes a snapshot
 * at each phase mark and reports where the CPU went between two marks — the browser's page thread, its
 * crypto / blob / network threads, the local Worker (workerd), the dev server (node). Threads that exited
 * between two snapshots are not counted (their time is lost, not misattributed).
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs';

/** CPU seconds per group, at one moment. */
export type CpuSnapshot = Map<string, number>;

const TICK = 100; // getconf CLK_TCK on Linux

interface Proc {
  pid: number;
  ppid: number;
  comm: string;
}

function stat(path: string): { comm: string; ppid: number; cpu: number } | null {
  try {
    const s = readFileSync(path, 'utf8');
    const close = s.lastIndexOf(')');
    const comm = s.slice(s.indexOf('(') + 1, close);
    const f = s.slice(close + 2).split(' ');
    // fields after comm: state(0) ppid(1) … utime(11) stime(12)
    return { comm, ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) / TICK };
  } catch {
    return null;
  }
}

function descendants(root: number): Proc[] {
  const all: Proc[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const s = stat(`/proc/${d}/stat`);
    if (s) all.push({ pid: Number(d), ppid: s.ppid, comm: s.comm });
  }
  const keep = new Set([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of all)
      if (!keep.has(p.pid) && keep.has(p.ppid)) {
        keep.add(p.pid);
        grew = true;
      }
  }
  return all.filter((p) => keep.has(p.pid) && p.pid !== root);
}

/** Which group a thread's time belongs to. */
function group(proc: Proc, cmdline: string, thread: string, main: boolean): string {
  if (/workerd/.test(proc.comm) || /workerd/.test(cmdline)) return 'workerd';
  if (/chrom/i.test(proc.comm) || /chrom/i.test(cmdline)) {
    const type = /--type=(\S+)/.exec(cmdline)?.[1] ?? 'browser';
    if (type === 'renderer') {
      if (main) return 'chromium renderer: page (main) thread';
      return `chromium renderer: ${thread.replace(/[\d/]+$/, '')}`;
    }
    return `chromium ${type === 'utility' ? 'network service' : type}: ${thread.replace(/[\d/]+$/, '')}`;
  }
  if (/node|esbuild|vite/.test(proc.comm)) return 'node (dev server, bench)';
  return proc.comm;
}

/** CPU seconds used so far by every descendant of `root` (default: this process), grouped. */
export function cpuSnapshot(root = process.pid): CpuSnapshot {
  const out: CpuSnapshot = new Map();
  for (const p of descendants(root)) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    } catch {
      continue;
    }
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${p.pid}/task`);
    } catch {
      continue;
    }
    for (const t of tids) {
      const s = stat(`/proc/${p.pid}/task/${t}/stat`);
      if (!s) continue;
      const g = group(p, cmdline, s.comm, t === String(p.pid));
      out.set(g, (out.get(g) ?? 0) + s.cpu);
    }
  }
  return out;
}

/** CPU seconds per group spent between two snapshots (groups with < 5 ms left out). */
export function cpuDelta(a: CpuSnapshot, b: CpuSnapshot): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of b) {
    const d = v - (a.get(k) ?? 0);
    if (d >= 0.005) out.set(k, d);
  }
  return out;
}

/** The whole machine's CPU time from /proc/stat (all cores, in ticks): busy and total; null without /proc. */
export function machineTicks(): { busy: number; total: number } | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already inside user / nice)
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - f[3]! - f[4]!, total };
  } catch {
    return null;
  }
}

/** CPU seconds used so far by each thread (`pid/tid`) of the descendants of `root` whose command matches. */
export function threadSnapshot(match: RegExp, root = process.pid): CpuSnapshot {
  const out: CpuSnapshot = new Map();
  for (const p of descendants(root)) {
    if (!match.test(p.comm)) continue;
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${p.pid}/task`);
    } catch {
      continue;
    }
    for (const t of tids) {
      const s = stat(`/proc/${p.pid}/task/${t}/stat`);
      if (s) out.set(`${p.pid}/${t}`, s.cpu);
    }
  }
  return out;
}

/**
 * A thread's scheduler figures (`pid/tid` as from threadSnapshot), seconds: time on a core, and time
 * runnable but waiting for one (the cores were busy elsewhere); null when gone or without schedstats.
 */
export function schedStat(id: string): { run: number; wait: number } | null {
  try {
    const [run, wait] = readFileSync(`/proc/${id.replace('/', '/task/')}/schedstat`, 'utf8')
      .split(' ')
      .map(Number);
    return { run: run! / 1e9, wait: wait! / 1e9 };
  } catch {
    return null;
  }
}
