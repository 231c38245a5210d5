/**
 * `npm run bench:delivery` — realtime delivery through the ConversationDO (ticketed WebSocket, wire
 * schema validation, device-set check, seq assigned in the DO-SQLite transaction that writes the
 * message — one row per sender-key message —, ack cursors, the D1 outbox) against a bare relay DO (bench/relay: broadcast only — no storage, no checks) on the same
 * machine and runtime (workerd via `npm run dev` and `wrangler dev`), for 2, 10 and 100 connected devices
 * in one conversation. Prints one Markdown table (paste it into bench/RESULTS.md under "## Delivery").
 *
 * Load: every device keeps WINDOW sends outstanding (closed loop) with opaque ciphertext-sized payloads
 * (no crypto in the loop); receivers ack every ACK_EVERY envelopes. Throughput = messages accepted (app)
 * or echoed back to the sender (relay) per second; delivered = envelopes received by all other devices
 * per second; latency = send → receive at each other device, p50 / p99 over every delivery.
 * Setting up users uses the real register API and signed membership entries (protocol core).
 *
 * Options: --frames=group,pairwise (default both: sender-key frames, and pairwise frames with one ciphertext
 * per other device — the relay then carries the same bytes), --scale=X (multiplies the message counts; 0.2 for a quick look), --sizes=2,10, --repeat=N (runs
 * per size, app and relay alternating; the table shows medians and the range of the per-run ratios).
 * Each row also shows the server CPU per accepted message (user + system time of the workerd processes over
 * the load — set-up outside —, from /proc via bench/lib/proc-cpu.ts: what the object costs per message beside the bare relay),
 * the bench client's own CPU per message (this Node process: it shares the cores with the servers) and the
 * share of the machine's cores busy over the load (below 100 %: the loop is waiting, not CPU-starved).
 * Profiling the object's JavaScript: BENCH_INSPECT_PORT=<port> opens the V8 inspector of the app's workerd
 * on that port (`wrangler dev --inspector-port`); a DevTools client (chrome://inspect, or a CDP script calling
 * Profiler.start / Profiler.stop on the target listed at http://127.0.0.1:<port>/json) records a CPU profile.
 * Stop the profile before the run ends: the target goes away with wrangler.
 * This is a benchmark, not a test: it prints figures and asserts only that nothing was lost.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { WIRE_VERSION } from '../schema/wire.js';
import { startDevServer } from '../scripts/dev-server.js';
import { ensureDevVars, QUIET_ENV, ROOT } from '../scripts/local-env.js';
import {
  ACK_EVERY,
  appScenario,
  type BenchUser,
  CIPHERTEXT_BYTES,
  type FrameMode,
  inBatches,
  openWs,
  type Peer,
  pairwiseTo,
  payload,
  type Result,
  runLoad,
  WINDOW,
} from './lib/app-client.js';
import { type CpuSnapshot, cpuDelta, cpuSnapshot, machineTicks, schedStat, threadSnapshot } from './lib/proc-cpu.js';
import { startWrangler } from './lib/wrangler-dev.js';
import { describeMachine, machineInfo, markdownTable } from './stats.js';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const SCALE = Number(arg('scale') ?? 1);
const SIZES = (arg('sizes') ?? '2,10,100').split(',').map(Number);
/** --no-vite: skip the `npm run dev` (Vite in front of workerd) reference column. */
const SKIP_VITE = process.argv.includes('--no-vite');
/** --state-dir=/dev/shm: where the wrangler dev state folders go (default: the OS temp folder, on disk). */
const STATE_BASE = arg('state-dir') ?? tmpdir();
/** Runs per size (app and relay alternate, so both see the same moments of a noisy machine). */
const REPEAT = Math.max(1, Number(arg('repeat') ?? 3));
/** --frames=group,pairwise: which send frames to measure (sender-key `group`, per-device `pairwise`). */
const FRAMES = (arg('frames') ?? 'group,pairwise').split(',') as FrameMode[];
for (const f of FRAMES) if (f !== 'group' && f !== 'pairwise') throw new Error(`--frames: unknown mode ${f}`);
/**
 * Messages sent per scenario (split across devices); fan-out makes deliveries = messages × (n − 1). Sized
 * so one run lasts ~0.5–1 s on the 2-core VM: shorter runs measured mostly start-up and scheduling noise.
 */
const MESSAGES: Record<number, number> = { 2: 4000, 10: 3000, 100: 400 };

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

// ---- server CPU per message (Linux /proc; '—' elsewhere) ---------------------------------------------------

/**
 * Runs a scenario and adds the servers' CPU per accepted message (µs): every workerd under this process
 * (bench/lib/proc-cpu.ts), from the first send to the end of the load. Registering users, creating the
 * conversation and connecting sockets stay outside the window: for the app they cost ≈ 0.3–0.5 s of CPU
 * (≈ 90 µs per message of a 4,000-message run), which the relay's set-up does not have. Scenarios run one
 * at a time and the idle server hibernates, so that is the scenario's server.
 */
async function measured(run: (onStart: () => void) => Promise<Result>): Promise<Measured> {
  let before: CpuSnapshot | null = null;
  let client: NodeJS.CpuUsage | null = null;
  let ticks: ReturnType<typeof machineTicks> = null;
  let threads: CpuSnapshot | null = null;
  const sched = new Map<string, { run: number; wait: number }>();
  let t0ms = 0;
  const r = await run(() => {
    client = process.cpuUsage();
    ticks = machineTicks();
    threads = threadSnapshot(/workerd/);
    for (const id of threads.keys()) {
      const st = schedStat(id);
      if (st) sched.set(id, st);
    }
    t0ms = performance.now();
    try {
      before = cpuSnapshot();
    } catch {
      // no /proc
    }
  });
  const s = before ? cpuDelta(before, cpuSnapshot()).get('workerd') : undefined;
  // The busiest workerd thread over the load: the one running the object (or the relay), single-threaded.
  const th0 = threads as CpuSnapshot | null;
  const wallS = (performance.now() - t0ms) / 1000;
  let busiest = th0 ? 0 : Number.NaN;
  let busiestId = '';
  if (th0) {
    for (const [id, cpu] of cpuDelta(th0, threadSnapshot(/workerd/)))
      if (cpu > busiest) {
        busiest = cpu;
        busiestId = id;
      }
  }
  // Its time runnable but not on a core: the share of the load it waited for a core (CPU starvation).
  const st0 = sched.get(busiestId);
  const st1 = st0 ? schedStat(busiestId) : null;
  const threadRunqWait = st0 && st1 ? (st1.wait - st0.wait) / wallS : Number.NaN;
  const c0 = client as NodeJS.CpuUsage | null;
  const c = c0 ? process.cpuUsage(c0) : null;
  const t0 = ticks as ReturnType<typeof machineTicks>;
  const t1 = machineTicks();
  return {
    ...r,
    cpuUsPerMsg: s === undefined ? Number.NaN : (s * 1e6) / r.messages,
    clientUsPerMsg: c ? (c.user + c.system) / r.messages : Number.NaN,
    threadUsPerMsg: (busiest * 1e6) / r.messages,
    threadBusy: busiest / wallS,
    threadRunqWait,
    machineBusy: t0 && t1 && t1.total > t0.total ? (t1.busy - t0.busy) / (t1.total - t0.total) : Number.NaN,
  };
}

/**
 * cpuUsPerMsg: the servers' (workerd) CPU per message; clientUsPerMsg: this process's (the load's sockets,
 * JSON, latency bookkeeping) — it shares the machine's cores with the server; machineBusy: the share of
 * all cores busy over the load (everything running, not only this benchmark); threadUsPerMsg / threadBusy:
 * the busiest workerd thread (the one running the object) — below 100 % busy, it waits (for the commit's
 * fsync, which blocks it, or for the clients).
 */
type Measured = Result & {
  cpuUsPerMsg: number;
  clientUsPerMsg: number;
  machineBusy: number;
  /** The busiest server thread's CPU per message, and its share of the load's wall time. */
  threadUsPerMsg: number;
  threadBusy: number;
  /** The share of the load's wall time that thread was runnable but waiting for a core. */
  threadRunqWait: number;
};

/** The median of each figure over the runs (each figure separately). */
function medianResult(rs: Measured[]): Measured {
  return {
    cpuUsPerMsg: median(rs.map((r) => r.cpuUsPerMsg)),
    clientUsPerMsg: median(rs.map((r) => r.clientUsPerMsg)),
    machineBusy: median(rs.map((r) => r.machineBusy)),
    threadUsPerMsg: median(rs.map((r) => r.threadUsPerMsg)),
    threadBusy: median(rs.map((r) => r.threadBusy)),
    threadRunqWait: median(rs.map((r) => r.threadRunqWait)),
    devices: rs[0]!.devices,
    messages: rs[0]!.messages,
    acceptedPerSec: median(rs.map((r) => r.acceptedPerSec)),
    deliveredPerSec: median(rs.map((r) => r.deliveredPerSec)),
    p50: median(rs.map((r) => r.p50)),
    p99: median(rs.map((r) => r.p99)),
    framesPerMsg: median(rs.map((r) => r.framesPerMsg)),
  };
}

// ---- the load ------------------------------------------------------------------------------------------

/**
 * The bare relay with the same bytes on the wire: a pairwise frame carries one payload per other device
 * (the relay broadcasts the whole frame; it does not split, store or check it).
 */
async function relayScenario(
  base: string,
  n: number,
  total: number,
  mode: FrameMode = 'group',
  onStart?: () => void,
): Promise<Result> {
  const room = `r${randomBytes(6).toString('hex')}`;
  const sockets = await inBatches(n, 20, () => openWs(`${base.replace('http', 'ws')}/ws?room=${room}`));
  const fakeUsers = sockets.map((_, i) => ({ userId: `dev${i}`, deviceId: 'd1' }) as BenchUser);
  const peers: Peer[] = sockets.map((ws, i) => {
    const me = `dev${i}`;
    return {
      ws,
      me,
      frame: (id) =>
        JSON.stringify(
          mode === 'group'
            ? { v: WIRE_VERSION, type: 'send', id, u: me, group: payload() }
            : { v: WIRE_VERSION, type: 'send', id, u: me, to: pairwiseTo(fakeUsers, i) },
        ),
      parse: (data) => {
        const f = JSON.parse(data) as { id: string; u: string };
        return f.u === me ? { accepted: [f.id] } : { delivered: [{ from: f.u, id: f.id }] };
      },
    };
  });
  try {
    return { devices: n, ...(await runLoad(peers, total, onStart)) };
  } finally {
    for (const s of sockets) s.close(1000);
  }
}

// ---- servers -------------------------------------------------------------------------------------------

const startRelay = () =>
  startWrangler(`${ROOT}bench/relay/wrangler.toml`, '/health', mkdtempSync(join(STATE_BASE, 'e2e-chat-bench-')));

/**
 * The app's Worker under plain `wrangler dev` (no Vite in front), like the relay: a generated config in
 * .wrangler/bench-app/ with the app's bindings, raised limits, a copy of the local secrets, and local D1
 * migrations applied to a fresh state folder.
 */
async function startAppDirect(vars: Record<string, string>): Promise<{ url: string; stop: () => Promise<void> }> {
  const dir = `${ROOT}.wrangler/bench-app`;
  mkdirSync(dir, { recursive: true });
  const config = `${dir}/wrangler.json`;
  writeFileSync(
    config,
    JSON.stringify(
      {
        name: 'e2e-chat-bench-app',
        main: '../../worker/index.ts',
        compatibility_date: '2026-04-20',
        compatibility_flags: ['nodejs_compat'],
        send_metrics: false,
        d1_databases: [
          {
            binding: 'DB',
            database_name: 'e2e-chat',
            database_id: '00000000-0000-4000-8000-000000000000',
            migrations_dir: '../../schema/migrations',
          },
        ],
        durable_objects: {
          bindings: [
            { name: 'CONVERSATION', class_name: 'ConversationDO' },
            { name: 'RATE_LIMITER', class_name: 'RateLimiter' },
            { name: 'PROBE', class_name: 'ProbeDO' },
            { name: 'KT_LOG', class_name: 'KeyLogDO' },
          ],
        },
        migrations: [
          { tag: 'v1', new_sqlite_classes: ['ConversationDO', 'RateLimiter', 'ProbeDO'] },
          { tag: 'v2', new_sqlite_classes: ['KeyLogDO'] },
        ],
        vars: { APP_ENV: 'development', APP_ORIGIN: '', ...vars },
      },
      null,
      2,
    ),
  );
  writeFileSync(`${dir}/.dev.vars`, readFileSync(`${ROOT}.dev.vars`, 'utf8'), { mode: 0o600 });
  const state = mkdtempSync(join(STATE_BASE, 'e2e-chat-bench-app-'));
  const r = spawnSync(
    process.execPath,
    [
      `${ROOT}node_modules/wrangler/bin/wrangler.js`,
      'd1',
      'migrations',
      'apply',
      'DB',
      '--local',
      '--persist-to',
      state,
      '--config',
      config,
    ],
    { cwd: ROOT, env: QUIET_ENV, encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`bench app migrations failed:\n${(r.stdout + r.stderr).slice(-2000)}`);
  return startWrangler(config, '/api/health', state);
}

const fmt = (x: number, digits = 0) =>
  Number.isFinite(x)
    ? x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : '—';

async function main() {
  const limits = Object.fromEntries(
    ['register', 'login', 'refresh', 'claim', 'ticket', 'probe'].map((k) => [
      k,
      { limit: 1_000_000, windowMs: 60_000 },
    ]),
  );
  const vars = {
    RATE_LIMITS: JSON.stringify(limits),
    DELIVERY_LIMITS: JSON.stringify({
      sendBurst: 1_000_000,
      sendPerSec: 1_000_000,
      ...(process.env.BENCH_FLUSH_MS ? { flushDelayMs: Number(process.env.BENCH_FLUSH_MS) } : {}),
    }),
  };
  ensureDevVars();
  const stops: (() => Promise<void>)[] = [];
  const rows: {
    mode: FrameMode;
    app: Measured;
    relay: Measured;
    vite: Result | null;
    tput: number[];
    p99: number[];
  }[] = [];
  let vite: Awaited<ReturnType<typeof startDevServer>> | null = null;
  try {
    process.stdout.write(
      `starting the app (wrangler dev), the relay (wrangler dev)${SKIP_VITE ? '' : ' and npm run dev'}…\n`,
    );
    const direct = await startAppDirect(vars);
    stops.push(direct.stop);
    const relay = await startRelay();
    stops.push(relay.stop);
    if (!SKIP_VITE) {
      vite = await startDevServer({ vars });
      stops.push(vite.stop);
    }
    for (const n of SIZES)
      for (const mode of FRAMES) {
        const total = Math.max(n, Math.round((MESSAGES[n] ?? 500) * SCALE));
        // Warm every path (JIT, DO start-up) with a small run, then measure, app and relay alternating.
        await relayScenario(relay.url, Math.min(n, 10), 40, mode);
        await appScenario(direct.url, Math.min(n, 10), 40, mode);
        const apps: Measured[] = [];
        const relays: Measured[] = [];
        for (let i = 0; i < REPEAT; i++) {
          const r = await measured((onStart) => relayScenario(relay.url, n, total, mode, onStart));
          const a = await measured((onStart) => appScenario(direct.url, n, total, mode, onStart));
          relays.push(r);
          apps.push(a);
          process.stdout.write(
            `${n} devices ${mode}, run ${i + 1}/${REPEAT}: app ${fmt(a.acceptedPerSec)} msg/s p99 ${fmt(a.p99, 1)} ms · relay ${fmt(r.acceptedPerSec)} msg/s p99 ${fmt(r.p99, 1)} ms · server CPU ${fmt(a.cpuUsPerMsg)} / ${fmt(r.cpuUsPerMsg)} µs/msg · frames/msg ${fmt(a.framesPerMsg, 2)} / ${fmt(r.framesPerMsg, 2)} · client CPU ${fmt(a.clientUsPerMsg)} / ${fmt(r.clientUsPerMsg)} µs/msg · cores busy ${fmt(a.machineBusy * 100)} / ${fmt(r.machineBusy * 100)} % · busiest server thread ${fmt(a.threadUsPerMsg)} / ${fmt(r.threadUsPerMsg)} µs/msg, ${fmt(a.threadBusy * 100)} / ${fmt(r.threadBusy * 100)} % busy, ${fmt(a.threadRunqWait * 100)} / ${fmt(r.threadRunqWait * 100)} % waiting for a core (load ${loadavg()[0]!.toFixed(1)})\n`,
          );
        }
        const v = vite ? await appScenario(vite.url, n, total, mode) : null;
        if (v)
          process.stdout.write(
            `${n} devices ${mode}: app via npm run dev ${fmt(v.acceptedPerSec)} msg/s p99 ${fmt(v.p99, 1)} ms\n`,
          );
        rows.push({
          mode,
          app: medianResult(apps),
          relay: medianResult(relays),
          vite: v,
          tput: apps.map((a, i) => a.acceptedPerSec / relays[i]!.acceptedPerSec),
          p99: apps.map((a, i) => a.p99 / relays[i]!.p99),
        });
      }
  } catch (e) {
    // The dev server's log lines carry error types only (never bodies or tokens).
    if (vite) process.stderr.write(`${vite.output().slice(-2000)}\n`);
    throw e;
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  }
  const table = markdownTable(
    [
      'devices',
      'frames',
      'msgs',
      'app msg/s',
      'app env/s',
      'app p50 / p99 ms',
      'relay msg/s',
      'relay env/s',
      'relay p50 / p99 ms',
      'msg/s ratio',
      'p99 ratio',
      'per-run ratios (msg/s · p99)',
      'server CPU µs/msg app / relay',
      'client CPU µs/msg app / relay',
      'cores busy app / relay',
      'busiest server thread µs/msg (busy % · waiting for a core %) app / relay',
      'npm run dev msg/s (p99 ms)',
    ],
    rows.map(({ mode, app: a, relay: r, vite: v, tput, p99 }) => [
      String(a.devices),
      mode,
      String(a.messages),
      fmt(a.acceptedPerSec),
      fmt(a.deliveredPerSec),
      `${fmt(a.p50, 1)} / ${fmt(a.p99, 1)}`,
      fmt(r.acceptedPerSec),
      fmt(r.deliveredPerSec),
      `${fmt(r.p50, 1)} / ${fmt(r.p99, 1)}`,
      `${fmt(a.acceptedPerSec / r.acceptedPerSec, 2)}×`,
      `${fmt(a.p99 / r.p99, 2)}×`,
      `${fmt(Math.min(...tput), 2)}–${fmt(Math.max(...tput), 2)} · ${fmt(Math.min(...p99), 2)}–${fmt(Math.max(...p99), 2)}`,
      `${fmt(a.cpuUsPerMsg)} / ${fmt(r.cpuUsPerMsg)}`,
      `${fmt(a.clientUsPerMsg)} / ${fmt(r.clientUsPerMsg)}`,
      `${fmt(a.machineBusy * 100)} / ${fmt(r.machineBusy * 100)} %`,
      `${fmt(a.threadUsPerMsg)} (${fmt(a.threadBusy * 100)} · ${fmt(a.threadRunqWait * 100)}) / ${fmt(r.threadUsPerMsg)} (${fmt(r.threadBusy * 100)} · ${fmt(r.threadRunqWait * 100)})`,
      v ? `${fmt(v.acceptedPerSec)} (${fmt(v.p99, 1)})` : '—',
    ]),
    [
      'right',
      'left',
      'right',
      'right',
      'right',
      'right',
      'right',
      'right',
      'right',
      'right',
      'right',
      'right',
      'right',
      'right',
      'right',
      'right',
      'right',
    ],
  );
  // Targets (issue 19 part 2): 2 devices ≥ 0.8× the relay with p99 ≤ 2×; 10 and 100 devices at or above
  // the ratios recorded in bench/RESULTS.md.
  const verdict = rows
    .map(
      (r) =>
        `${r.app.devices} devices ${r.mode} (median of ${REPEAT}): throughput ${fmt(r.app.acceptedPerSec / r.relay.acceptedPerSec, 2)}× the relay${r.app.devices === 2 ? ' (target ≥ 0.8×)' : ''}, p99 ${fmt(r.app.p99 / r.relay.p99, 2)}×${r.app.devices === 2 ? ' (target ≤ 2×)' : ''}`,
    )
    .join('\n');
  const load = loadavg()
    .map((x) => x.toFixed(1))
    .join(' ');
  process.stdout.write(
    `\n${describeMachine(machineInfo())} · load average ${load}\nwindow ${WINDOW} per device, ${CIPHERTEXT_BYTES} B ciphertexts, ack every ${ACK_EVERY}, medians of ${REPEAT} runs\n\n${table}\n\n${verdict}\n`,
  );
}

await main();
