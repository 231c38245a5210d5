/**
 * The delivery benchmark's raw client, shared with the reliability suites: users registered through the
 * real register API (protocol-core keys, no engine), a group conversation with signed membership entries,
 * and a ticketed conversation WebSocket (`ws`) that has completed its first resume. No message crypto.
 * @module
 */
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { WIRE_VERSION } from '../../schema/wire.js';
import { fromB64u, toB64u } from '../../web/src/protocol/bytes.js';
import { encodeDeviceList, signLoginChallenge } from '../../web/src/protocol/identity.js';
import {
  encodeMembershipEntry,
  entryHash,
  type MembershipEntry,
  type MembershipState,
  nextEntry,
} from '../../web/src/protocol/membership.js';
import { defaultCurves, type Rng } from '../../web/src/protocol/primitives.js';
import { makeTestUser, type TestDevice } from '../../web/src/protocol/testing.js';

export const rng: Rng = (n) => new Uint8Array(randomBytes(n));

export function openWs(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
}

export interface BenchUser {
  userId: string;
  deviceId: string;
  device: TestDevice;
  token: string;
}

export async function json(res: Response, what: string): Promise<Record<string, unknown>> {
  if (!res.ok) throw new Error(`${what}: ${res.status} ${(await res.text()).slice(0, 200)}`);
  return (await res.json()) as Record<string, unknown>;
}

let ipCounter = 0;
export const ipHeader = () => {
  ipCounter++;
  return { 'cf-connecting-ip': `10.${(ipCounter >> 16) & 255}.${(ipCounter >> 8) & 255}.${ipCounter & 255}` };
};

export async function register(base: string, name: string): Promise<BenchUser> {
  const curves = await defaultCurves();
  const userId = `u_${randomBytes(8).toString('hex')}`;
  const deviceId = `d_${randomBytes(6).toString('hex')}`;
  const keys = await makeTestUser(curves, rng, userId, [deviceId]);
  const device = keys.devices[0]!;
  const headers = { 'content-type': 'application/json', ...ipHeader() };
  const ch = await json(await fetch(`${base}/api/auth/challenge`, { method: 'POST', headers }), 'challenge');
  const sig = await signLoginChallenge(curves, device.signing, fromB64u(ch.challenge as string), userId, deviceId);
  const body = {
    userId,
    username: `${name}${randomBytes(4).toString('hex')}`,
    passwordPrehash: toB64u(rng(32)),
    userIdentityKey: toB64u(keys.identity.publicKey),
    deviceList: toB64u(encodeDeviceList(keys.deviceList)),
    deviceId,
    challengeId: ch.challengeId,
    challengeSignature: toB64u(sig),
  };
  const reg = await json(
    await fetch(`${base}/api/auth/register`, { method: 'POST', headers, body: JSON.stringify(body) }),
    'register',
  );
  return { userId, deviceId, device, token: reg.accessToken as string };
}

export async function inBatches<T>(n: number, batch: number, f: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i += batch) out.push(...(await Promise.all(range(i, Math.min(n, i + batch)).map(f))));
  return out;
}
export const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

/** A group conversation of all users, created by users[0] with signed membership entries. */
export async function createConversation(base: string, users: BenchUser[]): Promise<string> {
  const curves = await defaultCurves();
  const owner = users[0]!;
  const id = `bench${randomBytes(6).toString('hex')}`;
  const author = { authorUserId: owner.userId, authorDeviceId: owner.deviceId, timestamp: Date.now() };
  const entries: MembershipEntry[] = [
    await nextEntry(curves, owner.device.signing, null, id, { ...author, action: 'create', title: 'bench' }),
  ];
  const stateAfter = (e: MembershipEntry): MembershipState => ({
    conversationId: id,
    members: new Map(),
    title: '',
    headHash: entryHash(e),
    seq: e.seq,
  });
  for (const u of users.slice(1)) {
    const prev = entries[entries.length - 1]!;
    entries.push(
      await nextEntry(curves, owner.device.signing, stateAfter(prev), id, {
        ...author,
        action: 'add',
        target: u.userId,
        role: 'member',
      }),
    );
  }
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${owner.token}`, ...ipHeader() };
  const enc = (e: MembershipEntry) => toB64u(encodeMembershipEntry(e));
  await json(
    await fetch(`${base}/api/conversations`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ kind: 'group', entries: entries.slice(0, 64).map(enc) }),
    }),
    'create conversation',
  );
  for (const e of entries.slice(64)) {
    await json(
      await fetch(`${base}/api/conversations/${id}/log`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ entry: enc(e) }),
      }),
      'append entry',
    );
  }
  return id;
}

export async function connectApp(base: string, conv: string, u: BenchUser): Promise<WebSocket> {
  const t = await json(
    await fetch(`${base}/api/conversations/${conv}/ticket`, {
      method: 'POST',
      headers: { authorization: `Bearer ${u.token}`, ...ipHeader() },
    }),
    'ticket',
  );
  const ws = await openWs(`${base.replace('http', 'ws')}/api/conversations/${conv}/ws?ticket=${t.ticket as string}`);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no resume reply')), 10_000);
    ws.on('message', function onMsg(data) {
      const f = JSON.parse(String(data)) as { type: string };
      if (f.type !== 'resume') return;
      clearTimeout(timer);
      ws.off('message', onMsg);
      resolve();
    });
    ws.send(JSON.stringify({ v: WIRE_VERSION, type: 'resume', after: 0 }));
  });
  return ws;
}

// ---- closed-loop load (no crypto) -----------------------------------------------------------------------

export const WINDOW = 4;
export const ACK_EVERY = 50;
/** A padded 1:1 text message's ciphertext (Double Ratchet header + 160 B padded body + tag) ≈ 256 B. */
export const CIPHERTEXT_BYTES = 256;
export const SCENARIO_TIMEOUT_MS = 240_000;
export const payload = () => toB64u(rng(CIPHERTEXT_BYTES));

export interface Result {
  devices: number;
  messages: number;
  acceptedPerSec: number;
  deliveredPerSec: number;
  p50: number;
  p99: number;
  /** Frames the server sent to all devices per message (answers + deliveries + anything else). */
  framesPerMsg: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export interface Peer {
  ws: WebSocket;
  me: string;
  /** Builds the frame for message `id`. */
  frame: (id: string) => string;
  /** Classifies an incoming frame: my own messages confirmed (ids), deliveries (sender/id pairs), or other. */
  parse: (data: string) => { accepted?: string[]; delivered?: { from: string; id: string; seq?: number }[] };
  ack?: (seq: number) => void;
}

/** `onStart` runs just before the first send (the CPU window of bench:delivery starts there, after set-up). */
export async function runLoad(peers: Peer[], total: number, onStart?: () => void): Promise<Omit<Result, 'devices'>> {
  const n = peers.length;
  const perDevice = Math.max(1, Math.floor(total / n));
  const messages = perDevice * n;
  const expectedDeliveries = messages * (n - 1);
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  let accepted = 0;
  let delivered = 0;
  let frames = 0;
  let lastAccepted = 0;
  let lastDelivered = 0;
  onStart?.();
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(new Error(`timeout: accepted ${accepted}/${messages}, delivered ${delivered}/${expectedDeliveries}`)),
      SCENARIO_TIMEOUT_MS,
    );
    const done = () => {
      if (accepted === messages && delivered === expectedDeliveries) {
        clearTimeout(timer);
        resolve();
      }
    };
    for (const p of peers) {
      let next = 0;
      let sinceAck = 0;
      const sendOne = () => {
        if (next >= perDevice) return;
        const id = `m${next++}`;
        sentAt.set(`${p.me}/${id}`, performance.now());
        p.ws.send(p.frame(id));
      };
      p.ws.on('message', (data) => {
        const now = performance.now();
        frames++;
        const r = p.parse(String(data));
        if (r.accepted !== undefined) {
          accepted += r.accepted.length;
          lastAccepted = now;
          for (let i = 0; i < r.accepted.length; i++) sendOne();
        }
        if (r.delivered) {
          let maxSeq = 0;
          for (const d of r.delivered) {
            const t = sentAt.get(`${d.from}/${d.id}`);
            if (t !== undefined) latencies.push(now - t);
            delivered++;
            maxSeq = Math.max(maxSeq, d.seq ?? 0);
          }
          lastDelivered = now;
          sinceAck += r.delivered.length;
          if (p.ack && sinceAck >= ACK_EVERY) {
            sinceAck = 0;
            p.ack(maxSeq);
          }
        }
        done();
      });
      for (let i = 0; i < WINDOW; i++) sendOne();
    }
  });
  latencies.sort((a, b) => a - b);
  return {
    messages,
    acceptedPerSec: (accepted * 1000) / (lastAccepted - started),
    deliveredPerSec: (delivered * 1000) / (lastDelivered - started),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    framesPerMsg: frames / messages,
  };
}

/**
 * Which send frames the load uses: `group` = one sender-key ciphertext fanned out by the DO; `pairwise` =
 * one ciphertext per other device (`to`), each stored in that device's mailbox.
 */
export type FrameMode = 'group' | 'pairwise';

/** A pairwise `to` list: one fresh ciphertext-sized payload for every device but the sender's. */
export function pairwiseTo(users: readonly BenchUser[], sender: number): { u: string; d: string; c: string }[] {
  const to: { u: string; d: string; c: string }[] = [];
  for (let j = 0; j < users.length; j++)
    if (j !== sender) to.push({ u: users[j]!.userId, d: users[j]!.deviceId, c: payload() });
  return to;
}

export async function appScenario(
  base: string,
  n: number,
  total: number,
  mode: FrameMode = 'group',
  onStart?: () => void,
): Promise<Result> {
  const users = await inBatches(n, 10, (i) => register(base, `bench${i}x`));
  const conv = await createConversation(base, users);
  const sockets = await inBatches(n, 20, (i) => connectApp(base, conv, users[i]!));
  const peers: Peer[] = sockets.map((ws, i) => ({
    ws,
    me: users[i]!.userId,
    frame: (id) =>
      JSON.stringify(
        mode === 'group'
          ? { v: WIRE_VERSION, type: 'send', id, group: payload() }
          : { v: WIRE_VERSION, type: 'send', id, to: pairwiseTo(users, i) },
      ),
    parse: (data) => {
      const f = JSON.parse(data) as {
        type: string;
        id?: string;
        code?: string;
        accepted?: { id: string }[];
        envelopes?: { from: { u: string }; id: string; seq: number }[];
      };
      if (f.type === 'accepted') return { accepted: [f.id!] };
      if (f.type === 'accepted_batch') return { accepted: f.accepted!.map((a) => a.id) };
      if (f.type === 'deliver')
        return { delivered: f.envelopes!.map((e) => ({ from: e.from.u, id: e.id, seq: e.seq })) };
      if (f.type === 'error') throw new Error(`app error frame: ${f.code}`);
      return {};
    },
    ack: (seq) => ws.send(JSON.stringify({ v: WIRE_VERSION, type: 'ack', upTo: seq })),
  }));
  try {
    return { devices: n, ...(await runLoad(peers, total, onStart)) };
  } finally {
    for (const s of sockets) s.close(1000);
  }
}
