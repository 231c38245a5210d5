/**
 * Load suite: real client engines (X3DH/PQXDH, Double Ratchet, sender keys) against `npm run dev`.
 *  - one group of `groupUsers` users × `devicesPerUser` devices (second devices linked through the
 *    device-registration API with the user identity key), every device sending `groupMessages`;
 *  - `pairs` parallel 1:1 conversations, both sides sending `pairMessages`;
 *  - random pauses (0..pauseMs) between sends.
 * Every device must end with every message exactly once, decrypted, in the same (server seq) order as
 * every other device, each sender's messages in send order. Plus `rawDevices` connected devices in one
 * conversation without crypto (the delivery benchmark's client, bench/lib/app-client.ts).
 * @module
 */
import { appScenario } from '../bench/lib/app-client.js';
import { defaultFleetSize, Fleet, type Peer } from './lib/fleet.js';
import {
  allMessages,
  type Person,
  percentile,
  pool,
  registered,
  runId,
  secondDevice,
  sleep,
  until,
} from './lib/people.js';
import type { SuiteResult } from './report.js';
import { remember } from './secrets.js';

export interface LoadConfig {
  groupUsers: number;
  devicesPerUser: 1 | 2;
  groupMessages: number;
  pairs: number;
  pairMessages: number;
  pauseMs: number;
  rawDevices: number;
  rawMessages: number;
  /** How long a scenario may take to converge. */
  timeoutMs: number;
  /** Worker threads running the engines (reliability/lib/fleet.ts); 0: all in this thread. */
  workers: number;
}

export const LOAD_FULL: LoadConfig = {
  groupUsers: 10,
  devicesPerUser: 2,
  groupMessages: 50,
  pairs: 100,
  pairMessages: 50,
  pauseMs: 200,
  rawDevices: 100,
  rawMessages: 200,
  timeoutMs: 300_000,
  workers: defaultFleetSize(),
};

export const LOAD_CI: LoadConfig = {
  groupUsers: 2,
  devicesPerUser: 2,
  groupMessages: 10,
  pairs: 5,
  pairMessages: 10,
  pauseMs: 50,
  rawDevices: 10,
  rawMessages: 40,
  timeoutMs: 60_000,
  workers: 2,
};

export interface ConversationOutcome {
  messages: number;
  deliveries: number;
  /** Accepted (acknowledged to the sender) but missing at a recipient. */
  lost: number;
  duplicated: number;
  reordered: number;
  undecryptable: number;
  /** Shown to the sender as failed (sendText threw or the status is `failed`). */
  failed: number;
  /** Why, per cause: `threw <code>` (sendText threw) or the failed message's error code. */
  failedWhy?: Record<string, number>;
  /** Still `sending` when the exchange gave up waiting. */
  unsettled: number;
  latencies: number[];
  seconds: number;
}

/**
 * Every device in `devices` sends `perDevice` texts to `conv` (already connected) with random pauses; then
 * waits until every sender's messages are settled (accepted or failed) and every device holds every
 * accepted message of the others, and checks them. `during` runs alongside the sending (fault injection).
 */
export async function exchange(
  conv: string,
  devices: Peer[],
  perDevice: number,
  pauseMs: number,
  timeoutMs: number,
  during?: Promise<unknown>,
  progress?: (s: string) => void,
): Promise<ConversationOutcome> {
  const tag = `plain${runId()}${runId()}`;
  remember('plaintext', tag);
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  const seen = devices.map(() => new Set<string>());
  // Own messages not yet accepted or failed, as far as the engines' events tell (a cheap pre-check: the
  // store is read — every message decoded — only when this is empty or every few seconds).
  const unsettledHint = new Set<string>();
  const listen = () =>
    devices.map((p, i) =>
      p.engine.on((e) => {
        if ((e.type !== 'message_added' && e.type !== 'message_updated') || e.message.conversationId !== conv) return;
        if (e.message.from.deviceId === p.deviceId) {
          if (e.message.seq !== null || e.message.status === 'failed') unsettledHint.delete(e.message.body ?? '');
          return;
        }
        if (e.type !== 'message_added') return;
        const body = e.message.body ?? '';
        const t = sentAt.get(body);
        if (t !== undefined && !seen[i]!.has(body)) latencies.push(performance.now() - t);
        seen[i]!.add(body);
      }),
    );
  let offs = listen();
  let engines = devices.map((p) => p.engine);
  const relisten = () => {
    // A fault may replace a device's engine (crash and restart from the same Store).
    if (devices.some((p, i) => p.engine !== engines[i])) {
      for (const off of offs) off();
      offs = listen();
      engines = devices.map((p) => p.engine);
    }
  };
  const undecryptableBefore = await Promise.all(
    devices.map(async (p) => (await allMessages(p, conv)).filter((m) => m.body === null).length),
  );
  const t0 = performance.now();
  let thrown = 0;
  let lastRead = 0;
  const settled = async () => {
    relisten();
    if (unsettledHint.size > 0 && performance.now() - lastRead < 5_000) return false;
    lastRead = performance.now();
    const all = await Promise.all(devices.map((p) => allMessages(p, conv)));
    return all.every((ms) =>
      ms.filter((m) => m.body?.startsWith(tag) && m.outgoing).every((m) => m.seq !== null || m.status === 'failed'),
    );
  };
  const failedWhy: Record<string, number> = {};
  const why = (k: string) => {
    failedWhy[k] = (failedWhy[k] ?? 0) + 1;
  };
  let accepted = new Set<string>();
  let unsettled = 0;
  let sent = 0;
  const ticker =
    progress &&
    setInterval(() => {
      const received = seen.reduce((n, s) => n + s.size, 0);
      progress(
        `${((performance.now() - t0) / 1000).toFixed(0)} s: ${sent} sent, ${sentAt.size - unsettledHint.size} settled, ${received} received`,
      );
    }, 30_000);
  try {
    await Promise.all([
      during,
      ...devices.map(async (p, d) => {
        for (let i = 0; i < perDevice; i++) {
          const body = `${tag}|${d}|${i}`;
          sentAt.set(body, performance.now());
          unsettledHint.add(body);
          try {
            await p.engine.sendText(conv, body);
            sent++;
          } catch (err) {
            thrown++;
            why(`threw ${(err as { code?: string }).code ?? (err as Error).name}`);
            unsettledHint.delete(body);
          }
          if (pauseMs > 0) await sleep(Math.random() * pauseMs);
        }
      }),
    ]);
    await until(settled, `every message in ${conv} accepted or failed`, timeoutMs).catch(() => undefined);
    const own = await Promise.all(devices.map((p) => allMessages(p, conv)));
    accepted = new Set(
      own.flatMap((ms, d) =>
        ms.filter((m) => m.seq !== null && m.body?.startsWith(`${tag}|${d}|`)).map((m) => m.body!),
      ),
    );
    unsettled = own
      .flatMap((ms, d) => ms.filter((m) => m.body?.startsWith(`${tag}|${d}|`)))
      .filter((m) => m.seq === null && m.status !== 'failed').length;
    await until(
      () => {
        relisten();
        return devices.every((_, d) => [...accepted].every((b) => b.startsWith(`${tag}|${d}|`) || seen[d]!.has(b)));
      },
      `every device receives in ${conv}`,
      timeoutMs,
    ).catch(() => undefined);
  } finally {
    for (const off of offs) off();
    if (ticker) clearInterval(ticker);
  }
  const seconds = (performance.now() - t0) / 1000;
  let lost = 0;
  let duplicated = 0;
  let reordered = 0;
  let undecryptable = 0;
  let failed = thrown;
  let reference: string[] | null = null;
  // All reads at once: an engine thread busy with a backlog answers each call late, so one at a time the
  // reads alone took minutes after the full-size group.
  const finals = await Promise.all(devices.map((p) => allMessages(p, conv)));
  for (const [d, everything] of finals.entries()) {
    undecryptable += everything.filter((m) => m.body === null).length - undecryptableBefore[d]!;
    const ms = everything.filter((m) => m.body?.startsWith(tag));
    for (const m of ms.filter((m) => m.status === 'failed' && m.body?.startsWith(`${tag}|${d}|`))) {
      failed++;
      why(m.error ?? 'failed');
    }
    const bodies = ms
      .filter((m) => m.body !== null && m.seq !== null)
      .sort((a, b) => a.seq! - b.seq!)
      .map((m) => m.body!);
    const counts = new Map<string, number>();
    for (const b of bodies) counts.set(b, (counts.get(b) ?? 0) + 1);
    for (const b of accepted) if (!counts.has(b)) lost++;
    for (const c of counts.values()) if (c > 1) duplicated += c - 1;
    // Each sender's messages in send order, and the same global order on every device.
    const lastIndex = new Map<string, number>();
    for (const b of bodies) {
      const [, from, i] = b.split('|');
      if ((lastIndex.get(from!) ?? -1) > Number(i)) reordered++;
      lastIndex.set(from!, Number(i));
    }
    const common = bodies.filter((b) => accepted.has(b));
    if (reference === null) reference = common;
    else if (reference.join('\n') !== common.join('\n')) reordered++;
  }
  return {
    messages: perDevice * devices.length,
    deliveries: perDevice * (devices.length - 1) * devices.length,
    lost,
    duplicated,
    reordered,
    undecryptable,
    failed,
    failedWhy,
    unsettled,
    latencies,
    seconds,
  };
}

function merge(outcomes: ConversationOutcome[], seconds: number): ConversationOutcome {
  const sum = (k: keyof Omit<ConversationOutcome, 'latencies' | 'failedWhy'>) => outcomes.reduce((s, o) => s + o[k], 0);
  return {
    messages: sum('messages'),
    deliveries: sum('deliveries'),
    lost: sum('lost'),
    duplicated: sum('duplicated'),
    reordered: sum('reordered'),
    undecryptable: sum('undecryptable'),
    failed: sum('failed'),
    unsettled: sum('unsettled'),
    latencies: outcomes.flatMap((o) => o.latencies),
    seconds,
  };
}

const online = (p: Peer, conv: string) =>
  until(async () => (await p.engine.connectionStatus(conv)) === 'online', `${p.name} online`, 60_000);

function rows(label: string, o: ConversationOutcome): [string, string][] {
  const lat = [...o.latencies].sort((a, b) => a - b);
  return [
    [`${label}: messages / deliveries`, `${o.messages} / ${o.deliveries}`],
    [`${label}: lost / duplicated / reordered`, `${o.lost} / ${o.duplicated} / ${o.reordered}`],
    [`${label}: undecryptable / failed / unsettled`, `${o.undecryptable} / ${o.failed} / ${o.unsettled}`],
    [
      `${label}: throughput (msg/s, deliveries/s)`,
      `${(o.messages / o.seconds).toFixed(1)}, ${(o.deliveries / o.seconds).toFixed(1)}`,
    ],
    [`${label}: latency p50 / p99 (ms)`, `${percentile(lat, 50).toFixed(0)} / ${percentile(lat, 99).toFixed(0)}`],
  ];
}

export async function loadSuite(baseUrl: string, cfg: LoadConfig, log = (_: string) => {}): Promise<SuiteResult> {
  const t0 = performance.now();
  const failures: string[] = [];
  const out: [string, string][] = [];
  const run = runId();
  const everyone: Person[] = [];
  // The engines run in worker threads (every core does crypto) unless cfg.workers is 0.
  const fleet = cfg.workers > 0 ? new Fleet(baseUrl, cfg.workers) : null;
  const width = 4 * Math.max(1, cfg.workers);
  const register = async (name: string): Promise<Peer> => {
    if (fleet) return fleet.register(name);
    const p = await registered(baseUrl, name);
    everyone.push(p);
    return p;
  };
  const linkSecond = async (primary: Peer): Promise<Peer> => {
    if (fleet) return fleet.secondDevice(primary);
    const p = await secondDevice(baseUrl, primary as Person);
    everyone.push(p);
    return p;
  };
  try {
    // ---- group ----
    const primaries = await pool(
      Array.from({ length: cfg.groupUsers }, (_, i) => i),
      width,
      (i) => register(`lg${i}${run}`),
    );
    const group: Peer[] = [...primaries];
    if (cfg.devicesPerUser === 2) group.push(...(await pool(primaries, width, linkSecond)));
    log(
      `load: ${group.length} group devices registered (${((performance.now() - t0) / 1000).toFixed(0)} s, ${fleet ? `${fleet.size} worker threads` : 'one thread'})`,
    );
    const owner = primaries[0]!;
    const conv = await owner.engine.createConversation({
      kind: 'group',
      members: primaries.slice(1).map((p) => p.userId),
      title: 'load',
    });
    const since = () => `${((performance.now() - t0) / 1000).toFixed(0)} s`;
    log(`load: group conversation created (${since()})`);
    await Promise.all(group.map((p) => p.engine.connect([conv])));
    await Promise.all(group.map((p) => online(p, conv)));
    log(`load: group devices online (${since()})`);
    const g = await exchange(conv, group, cfg.groupMessages, cfg.pauseMs, cfg.timeoutMs, undefined, (s) =>
      log(`load: group ${s}`),
    );
    out.push(...rows(`group ${group.length} devices × ${cfg.groupMessages}`, g));
    log(`load: group done in ${g.seconds.toFixed(1)} s`);
    await Promise.all(group.map((p) => p.engine.disconnect()));
    log(`load: group disconnected (${since()})`);

    // ---- pairs ----
    const pairStart = performance.now();
    const people = await pool(
      Array.from({ length: cfg.pairs * 2 }, (_, i) => i),
      width,
      (i) => register(`lp${i}${run}`),
    );
    log(`load: ${people.length} pair users registered (${((performance.now() - pairStart) / 1000).toFixed(0)} s)`);
    const pairs = await pool(
      Array.from({ length: cfg.pairs }, (_, k) => [people[2 * k]!, people[2 * k + 1]!] as const),
      2 * width,
      async ([a, b]) => {
        const c = await a.engine.createConversation({ kind: 'direct', members: [b.userId] });
        await a.engine.connect([c]);
        await b.engine.connect([c]);
        await online(a, c);
        await online(b, c);
        return { c, a, b };
      },
    );
    log(`load: ${pairs.length} pair conversations online (${since()})`);
    const ex0 = performance.now();
    const outcomes = await Promise.all(
      pairs.map(({ c, a, b }) => exchange(c, [a, b], cfg.pairMessages, cfg.pauseMs, cfg.timeoutMs)),
    );
    const pr = merge(outcomes, (performance.now() - ex0) / 1000);
    out.push(...rows(`${cfg.pairs} pairs × 2 × ${cfg.pairMessages}`, pr));
    log(`load: pairs done in ${pr.seconds.toFixed(1)} s`);
    for (const o of [g, pr]) {
      if (o.lost || o.duplicated || o.reordered || o.undecryptable || o.failed || o.unsettled)
        failures.push(
          `lost ${o.lost}, duplicated ${o.duplicated}, reordered ${o.reordered}, undecryptable ${o.undecryptable}, failed ${o.failed}, unsettled ${o.unsettled}`,
        );
    }

    // ---- many connected devices, no crypto ----
    if (cfg.rawDevices > 0) {
      const r = await appScenario(baseUrl, cfg.rawDevices, cfg.rawMessages);
      out.push(
        [
          `raw ${r.devices} devices, ${r.messages} msgs: msg/s, deliveries/s`,
          `${r.acceptedPerSec.toFixed(0)}, ${r.deliveredPerSec.toFixed(0)}`,
        ],
        [`raw ${r.devices} devices: latency p50 / p99 (ms)`, `${r.p50.toFixed(1)} / ${r.p99.toFixed(1)}`],
      );
    }
  } catch (e) {
    failures.push(`load: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    for (const p of everyone) p.engine.close();
    await fleet?.close();
  }
  out.push(['load: wall time (s)', ((performance.now() - t0) / 1000).toFixed(0)]);
  return { name: 'load', rows: out, failures };
}
