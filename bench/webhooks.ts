/**
 * `npm run bench:webhooks` — `message.created` webhooks from a busy conversation to a local receiver, for 1,
 * 10 and 100 endpoints (at most 10 per account, so 10 and 100 endpoints belong to 1 and 10 recipient
 * accounts). One sender pushes sender-key (group) messages through the real ConversationDO as fast as a
 * closed loop of WINDOW outstanding sends allows; the recipients are offline bots (no socket), so every
 * message is flushed to their D1 mailboxes and then announced: DO alarm → Queue → consumer → signed POST.
 *
 * Figures per size: messages accepted per second by the DO (the message rate in this run), webhook
 * deliveries received per second (first accepted → last received), and accepted → received latency p50 /
 * p99 over every delivery; whether it keeps up (the median lag of the last tenth of the messages against the
 * first tenth: a pipeline that keeps up delivers the last as quickly as the first); and the CPU each delivery
 * costs on this machine (workerd, the dev server's Node, this process: sender and receiver), from /proc over
 * first send → last delivery. Prints one Markdown table with the load average (paste it into bench/RESULTS.md
 * under "## Webhooks"). The receiver answers 200 without verifying (the tests verify every signature).
 *
 * Options: --sizes=1,10 · --scale=0.2 (multiplies the message counts) · --timeout=300 (seconds per size) ·
 * --settings='{"concurrency":32}' (WEBHOOK_SETTINGS of the server under test).
 * This is a benchmark, not a test: it prints figures and says how many deliveries did not arrive in time.
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { loadavg } from 'node:os';
import { startSuiteServer } from '../reliability/server.js';
import { WIRE_VERSION } from '../schema/wire.js';
import { freePort } from '../scripts/dev-server.js';
import { type BenchUser, connectApp, createConversation, inBatches, payload, register } from './lib/app-client.js';
import { describeMachine, machineInfo, markdownTable } from './stats.js';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const SIZES = (arg('sizes') ?? '1,10,100').split(',').map(Number);
const SCALE = Number(arg('scale') ?? 1);
const TIMEOUT_S = Number(arg('timeout') ?? 300);
/** WEBHOOK_SETTINGS for the server under test (JSON, worker/webhooks/config.ts), e.g. '{"concurrency":32}'. */
const SETTINGS = arg('settings');
/** Messages per size: deliveries = messages × endpoints. */
const MESSAGES: Record<number, number> = { 1: 2000, 10: 600, 100: 100 };
const WINDOW = 16;
const PER_ACCOUNT = 10;

const percentile = (sorted: number[], p: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : Number.NaN;

interface Row {
  endpoints: number;
  messages: number;
  acceptedPerSec: number;
  deliveredPerSec: number;
  /** Deliveries over first received → last received: the rate of the pipeline once events exist. */
  pipelinePerSec: number;
  delivered: number;
  expected: number;
  p50: number;
  p99: number;
  /** Median accepted → received latency of the first and the last tenth of the messages (by seq). */
  lagFirst: number;
  lagLast: number;
  /** CPU seconds spent from the first send to the last delivery: workerd, the dev server's Node, this process. */
  cpu: CpuSplit | null;
  load: string;
}

interface CpuSplit {
  workerd: number;
  node: number;
  bench: number;
}

/**
 * CPU seconds (user + system) so far of the process tree under `root`, split into workerd and the rest
 * (the dev server's Node: Vite, Miniflare), read from /proc (Linux; null elsewhere).
 */
function treeCpu(root: number): { workerd: number; node: number } | null {
  try {
    const procs = new Map<number, { ppid: number; comm: string; ticks: number }>();
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        const close = stat.lastIndexOf(')');
        const comm = stat.slice(stat.indexOf('(') + 1, close);
        const f = stat.slice(close + 2).split(' ');
        procs.set(Number(d), { ppid: Number(f[1]), comm, ticks: Number(f[11]) + Number(f[12]) });
      } catch {
        /* exited */
      }
    }
    const inTree = (pid: number): boolean => {
      for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
        if (p === root) return true;
        p = procs.get(p)?.ppid ?? 0;
      }
      return false;
    };
    let workerd = 0;
    let node = 0;
    for (const [pid, p] of procs) {
      if (!inTree(pid)) continue;
      if (p.comm.startsWith('workerd')) workerd += p.ticks;
      else node += p.ticks;
    }
    return { workerd: workerd / 100, node: node / 100 };
  } catch {
    return null;
  }
}

async function scenario(
  base: string,
  serverPid: number | undefined,
  receiverUrl: string,
  arrivals: Map<string, number[]>,
  n: number,
): Promise<Row> {
  const messages = Math.max(1, Math.round((MESSAGES[n] ?? 100) * SCALE));
  const accounts = Math.ceil(n / PER_ACCOUNT);
  const sender = await register(base, 'whsend');
  const recipients: BenchUser[] = await inBatches(accounts, 5, () => register(base, 'whbot'));
  const conv = await createConversation(base, [sender, ...recipients]);
  const tag = `s${n}x${Date.now().toString(36)}`;
  let made = 0;
  for (const [i, r] of recipients.entries()) {
    const count = Math.min(PER_ACCOUNT, n - i * PER_ACCOUNT);
    for (let k = 0; k < count; k++) {
      const res = await fetch(`${base}/api/webhooks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${r.token}` },
        body: JSON.stringify({ url: `${receiverUrl}/${tag}/${made++}`, events: ['message.created'] }),
      });
      if (res.status !== 201) throw new Error(`create webhook: ${res.status} ${await res.text()}`);
    }
  }
  const ws = await connectApp(base, conv, sender);
  const cpu0 = serverPid ? treeCpu(serverPid) : null;
  const bench0 = process.cpuUsage();
  const acceptedAt = new Map<number, number>();
  const t0 = performance.now();
  let lastAccepted = t0;
  await new Promise<void>((resolve, reject) => {
    let next = 0;
    let done = 0;
    const sendOne = () => {
      if (next >= messages) return;
      ws.send(JSON.stringify({ v: WIRE_VERSION, type: 'send', id: `m${next++}`, group: payload() }));
    };
    ws.on('message', (data) => {
      const f = JSON.parse(String(data)) as {
        type: string;
        seq?: number;
        code?: string;
        accepted?: { seq: number }[];
      };
      if (f.type === 'error') reject(new Error(`error frame ${f.code}`));
      // One answer per commit: a lone `accepted`, or `accepted_batch` for several of this socket's sends.
      const seqs = f.type === 'accepted' ? [f.seq!] : f.type === 'accepted_batch' ? f.accepted!.map((a) => a.seq) : [];
      if (seqs.length === 0) return;
      lastAccepted = performance.now();
      for (const seq of seqs) {
        acceptedAt.set(seq, Date.now());
        if (++done === messages) resolve();
        else sendOne();
      }
    });
    for (let i = 0; i < WINDOW; i++) sendOne();
  });
  const acceptedPerSec = (messages * 1000) / (lastAccepted - t0);
  ws.close(1000);
  const expected = messages * n;
  const key = (seq: number, e: number) => `${tag}/${e}/${seq}`;
  const count = () => {
    let c = 0;
    for (let e = 0; e < n; e++) for (const seq of acceptedAt.keys()) if (arrivals.has(key(seq, e))) c++;
    return c;
  };
  const deadline = Date.now() + TIMEOUT_S * 1000;
  while (count() < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const cpu1 = serverPid ? treeCpu(serverPid) : null;
  const benchUsed = process.cpuUsage(bench0);
  const cpu =
    cpu0 && cpu1
      ? {
          workerd: cpu1.workerd - cpu0.workerd,
          node: cpu1.node - cpu0.node,
          bench: (benchUsed.user + benchUsed.system) / 1e6,
        }
      : null;
  // Does the pipeline keep up? If it does, the lag of the last messages is that of the first ones.
  const seqs = [...acceptedAt.keys()].sort((a, b) => a - b);
  const tenth = Math.max(1, Math.floor(seqs.length / 10));
  const lagOf = (part: number[]) => {
    const ls: number[] = [];
    for (const seq of part)
      for (let e = 0; e < n; e++) {
        const got = arrivals.get(key(seq, e));
        if (got) ls.push(got[0]! - acceptedAt.get(seq)!);
      }
    ls.sort((a, b) => a - b);
    return percentile(ls, 50);
  };
  const latencies: number[] = [];
  let first = Number.POSITIVE_INFINITY;
  let firstReceived = Number.POSITIVE_INFINITY;
  let last = 0;
  for (const [seq, at] of acceptedAt) {
    first = Math.min(first, at);
    for (let e = 0; e < n; e++) {
      const got = arrivals.get(key(seq, e));
      if (!got) continue;
      latencies.push(got[0]! - at);
      last = Math.max(last, got[0]!);
      firstReceived = Math.min(firstReceived, got[0]!);
    }
  }
  latencies.sort((a, b) => a - b);
  return {
    endpoints: n,
    messages,
    acceptedPerSec,
    deliveredPerSec: (latencies.length * 1000) / Math.max(1, last - first),
    pipelinePerSec: (latencies.length * 1000) / Math.max(1, last - firstReceived),
    delivered: latencies.length,
    expected,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    lagFirst: lagOf(seqs.slice(0, tenth)),
    lagLast: lagOf(seqs.slice(-tenth)),
    cpu,
    load: loadavg()
      .map((l) => l.toFixed(2))
      .join(' '),
  };
}

async function main() {
  // Arrival time of the first copy of each (endpoint, seq): `<tag>/<endpoint>/<seq>` → [ms since epoch].
  const arrivals = new Map<string, number[]>();
  const receiver = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      const at = Date.now();
      try {
        const seq = (JSON.parse(body) as { data?: { seq?: number } }).data?.seq;
        const k = `${(req.url ?? '').slice(1)}/${seq}`;
        const seen = arrivals.get(k);
        if (seen) seen.push(at);
        else arrivals.set(k, [at]);
      } catch {
        /* not ours */
      }
      res.end();
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => receiver.listen(port, '127.0.0.1', resolve));
  // A loaded machine needs longer than the default 90 s for a first `vite` start.
  const server = await startSuiteServer({
    timeoutMs: 300_000,
    ...(SETTINGS ? { vars: { WEBHOOK_SETTINGS: SETTINGS } } : {}),
  });
  const rows: Row[] = [];
  try {
    for (const n of SIZES) {
      const r = await scenario(server.url, server.child.pid, `http://127.0.0.1:${port}`, arrivals, n);
      rows.push(r);
      console.error(`${n} endpoints: ${r.delivered}/${r.expected} delivered`);
    }
  } finally {
    await server.stop();
    receiver.close();
  }
  const duplicates = [...arrivals.values()].filter((v) => v.length > 1).length;
  console.log(`\n${describeMachine(machineInfo())}\n`);
  console.log(
    markdownTable(
      [
        'endpoints',
        'messages',
        'DO accepted msg/s',
        'DO-equivalent deliveries/s',
        'received/s (first accepted → last received)',
        'pipeline deliveries/s (first → last received)',
        'received',
        'p50 ms',
        'p99 ms',
        'lag first / last tenth ms',
        'CPU ms per delivery (workerd + dev Node + bench)',
        'load avg',
      ],
      rows.map((r) => [
        String(r.endpoints),
        String(r.messages),
        r.acceptedPerSec.toFixed(0),
        (r.acceptedPerSec * r.endpoints).toFixed(0),
        r.deliveredPerSec.toFixed(0),
        r.pipelinePerSec.toFixed(0),
        `${r.delivered}/${r.expected}`,
        r.p50.toFixed(0),
        r.p99.toFixed(0),
        `${r.lagFirst.toFixed(0)} / ${r.lagLast.toFixed(0)}`,
        r.cpu && r.delivered
          ? [r.cpu.workerd, r.cpu.node, r.cpu.bench].map((x) => ((x * 1000) / r.delivered).toFixed(2)).join(' + ')
          : '—',
        r.load,
      ]),
      ['right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'left'],
    ),
  );
  console.log(`\nrepeated deliveries (same endpoint and seq, at-least-once): ${duplicates}`);
}

await main();
