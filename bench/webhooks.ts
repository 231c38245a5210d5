/**
 * `npm run bench:webhooks` — `message.created` webhooks from a busy conversation to a local receiver, for 1,
 * 10 and 100 endpoints (at most 10 per account, so 10 and 100 endpoints belong to 1 and 10 recipient
 * accounts). One sender pushes sender-key (group) messages through the real ConversationDO as fast as a
 * closed loop of WINDOW outstanding sends allows; the recipients are offline bots (no socket), so every
 * message is flushed to their D1 mailboxes and then announced: DO alarm → Queue → consumer → signed POST.
 *
 * Figures per size: messages accepted per second by the DO (the message rate in this run), webhook
 * deliveries received per second (first accepted → last received), and accepted → received latency p50 /
 * p99 over every delivery. Prints one Markdown table with the load average (paste it into bench/RESULTS.md
 * under "## Webhooks"). The receiver answers 200 without verifying (the tests verify every signature).
 *
 * Options: --sizes=1,10 · --scale=0.2 (multiplies the message counts) · --timeout=300 (seconds per size) ·
 * --settings='{"concurrency":32}' (WEBHOOK_SETTINGS of the server under test).
 * This is a benchmark, not a test: it prints figures and says how many deliveries did not arrive in time.
 * @module
 */
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
  load: string;
}

async function scenario(base: string, receiverUrl: string, arrivals: Map<string, number[]>, n: number): Promise<Row> {
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
      const f = JSON.parse(String(data)) as { type: string; seq?: number; code?: string };
      if (f.type === 'error') reject(new Error(`error frame ${f.code}`));
      if (f.type !== 'accepted') return;
      lastAccepted = performance.now();
      acceptedAt.set(f.seq!, Date.now());
      if (++done === messages) resolve();
      else sendOne();
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
  while (count() < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
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
      const r = await scenario(server.url, `http://127.0.0.1:${port}`, arrivals, n);
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
        r.load,
      ]),
      ['right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'left'],
    ),
  );
  console.log(`\nrepeated deliveries (same endpoint and seq, at-least-once): ${duplicates}`);
}

await main();
