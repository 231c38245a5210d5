/**
 * Simulated people for the reliability suites: the real client engine (web/src/engine) in Node over the
 * HTTP transport and `ws` WebSockets, like e2e/engine.test.ts. Each person sends its own
 * `cf-connecting-ip` (local workerd keeps it), so per-client limits apply per person.
 * @module
 */

import WebSocket from 'ws';
import { type Curve25519, defaultCurves, fromB64u, toB64u } from '../../web/src/engine/_protocol.js';
import { Account } from '../../web/src/engine/account.js';
import { createEngine, type Engine } from '../../web/src/engine/engine.js';
import {
  createHttpApi,
  createSocketFactory,
  HttpClient,
  type WebSocketConstructor,
} from '../../web/src/engine/http-transport.js';
import { memoryLocks } from '../../web/src/engine/locks.js';
import type { Store } from '../../web/src/engine/storage.js';
import { cryptoRng, ownIdentity } from '../../web/src/engine/testing/harness.js';
import { remember, rememberForLogs } from '../secrets.js';
import { indexedMemoryStore } from './indexed-store.js';

export const PASSWORD = 'correct horse battery staple';

export interface Person {
  readonly name: string;
  readonly http: HttpClient;
  engine: Engine;
  account: Account;
  readonly store: Store;
  readonly ip: string;
  userId: string;
  deviceId: string;
}

let curves: Curve25519 | undefined;
let addresses = 0;

/** Fleet worker thread `k` (reliability/lib/fleet.ts) hands out its own range of client addresses. */
export function setIpBase(k: number): void {
  addresses = (k + 1) * 4096;
}

export function nextIp(): string {
  addresses++;
  return `203.0.${(addresses >> 8) & 255}.${addresses & 255}`;
}

/** fetch from client address `ip`; tokens, refresh cookies and tickets it receives are remembered as secrets. */
export function fetchFrom(ip: string): typeof fetch {
  return async (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set('cf-connecting-ip', ip);
    const res = await fetch(input, { ...init, headers });
    for (const c of res.headers.getSetCookie()) remember('token', c.split(';')[0]!.split('=').slice(1).join('='));
    if (res.headers.get('content-type')?.includes('json')) {
      const body = (await res
        .clone()
        .json()
        .catch(() => null)) as Record<string, unknown> | null;
      for (const k of ['accessToken', 'ticket', 'mfaToken'])
        if (typeof body?.[k] === 'string') remember('token', body[k] as string);
    }
    return res;
  };
}

/** Remembers a device's private keys (and the shared password) for the secrets suite. */
export async function rememberKeys(p: Person): Promise<void> {
  const id = await ownIdentity(p.store);
  remember('private key', id.userIdentity.secretKey);
  remember('private key', id.signing.secretKey);
  remember('private key', id.identity.secretKey);
  remember('password', PASSWORD);
  rememberForLogs('account id', p.userId);
  rememberForLogs('username', p.name);
  rememberForLogs('client address', p.ip);
}

export const runId = () =>
  toB64u(cryptoRng(4))
    .toLowerCase()
    .replace(/[^a-z0-9]/g, 'x');

/** Watches (and can drop or swallow) the conversation sockets of the devices it is given to. */
export interface SocketTap {
  /** Open sockets (terminate one to simulate a dropped connection). */
  readonly sockets: Set<WebSocket>;
  /** Every frame a device is about to send; return false to swallow it (it never leaves the process). */
  out?: (who: string, data: string) => boolean;
  /** Every frame a device receives. */
  in?: (who: string, data: string) => void;
}

export function socketTap(): SocketTap {
  return { sockets: new Set() };
}

function tappedWebSocket(tap: SocketTap, who: string): WebSocketConstructor {
  class Tapped extends WebSocket {
    constructor(url: string) {
      super(url, { perMessageDeflate: false });
      tap.sockets.add(this);
      this.on('close', () => tap.sockets.delete(this));
      this.on('message', (d) => tap.in?.(who, String(d)));
    }
    override send(data: unknown, ...rest: unknown[]): void {
      if (tap.out && typeof data === 'string' && !tap.out(who, data)) return;
      (super.send as (...a: unknown[]) => void)(data, ...rest);
    }
  }
  return Tapped as unknown as WebSocketConstructor;
}

const ktKeys = new Map<string, Promise<Uint8Array>>();
/**
 * The log key of the server at `baseUrl` (GET /api/kt/key). The app has it built in; these test clients run
 * against a server of their own and take its word for it — never do this in a real client.
 */
export function ktLogKeyOf(baseUrl: string): Promise<Uint8Array> {
  let k = ktKeys.get(baseUrl);
  if (!k) {
    k = fetch(`${baseUrl}/api/kt/key`)
      .then((r) => r.json() as Promise<{ publicKey: string }>)
      .then((j) => fromB64u(j.publicKey));
    ktKeys.set(baseUrl, k);
  }
  return k;
}

/** A person's device: an engine over `store` (a fresh in-memory store by default) talking to `baseUrl`. */
export async function device(
  baseUrl: string,
  name: string,
  store: Store = indexedMemoryStore(),
  ip = nextIp(),
  tap?: SocketTap,
): Promise<Person> {
  curves ??= await defaultCurves();
  const http = new HttpClient({ baseUrl, fetch: fetchFrom(ip) });
  const engine = createEngine({
    store,
    api: createHttpApi(http),
    realtime: createSocketFactory(http, tap ? { WebSocket: tappedWebSocket(tap, name) } : {}),
    curves,
    rng: cryptoRng,
    locks: memoryLocks(),
    keystore: { batch: 8, watermark: 3 },
    backoff: { baseMs: 50, maxMs: 400 },
    kt: { logKey: await ktLogKeyOf(baseUrl) },
  });
  return { name, http, engine, account: new Account({ http, engine }), store, ip, userId: '', deviceId: '' };
}

/**
 * A crash and restart of a device's engine: the old engine is closed without any further work and a new
 * one is created over the same Store (and the same HTTP client, i.e. the same refresh cookie).
 */
export async function restartEngine(p: Person, tap?: SocketTap): Promise<void> {
  p.engine.close();
  curves ??= await defaultCurves();
  p.engine = createEngine({
    store: p.store,
    api: createHttpApi(p.http),
    realtime: createSocketFactory(p.http, tap ? { WebSocket: tappedWebSocket(tap, p.name) } : {}),
    curves,
    rng: cryptoRng,
    locks: memoryLocks(),
    keystore: { batch: 8, watermark: 3 },
    backoff: { baseMs: 50, maxMs: 400 },
    kt: { logKey: await ktLogKeyOf(p.http.baseUrl) },
  });
  p.account = new Account({ http: p.http, engine: p.engine });
}

export async function registered(baseUrl: string, name: string, tap?: SocketTap): Promise<Person> {
  const p = await device(baseUrl, name, indexedMemoryStore(), nextIp(), tap);
  const r = await p.account.register(p.name, PASSWORD);
  if (r.status !== 'signed_in') throw new Error(`register ${name}: ${r.status}`);
  p.userId = r.userId;
  p.deviceId = r.deviceId;
  await rememberKeys(p);
  return p;
}

/**
 * A second device of `primary`'s account: bootstrapped with the user identity key the primary's store
 * holds, added to the signed device list through the device-registration API, then signed in.
 */
export async function secondDevice(baseUrl: string, primary: Person, tap?: SocketTap): Promise<Person> {
  const secret = (await ownIdentity(primary.store)).userIdentity.secretKey;
  const p = await device(baseUrl, `${primary.name}-2`, indexedMemoryStore(), nextIp(), tap);
  const id = await p.engine.bootstrap({
    userId: primary.userId,
    deviceId: toB64u(cryptoRng(16)),
    userIdentitySecret: secret,
  });
  await primary.account.linkDevice({
    certificate: id.deviceCertificate,
    sign: (c) => p.engine.signLoginChallenge(c),
  });
  const login = await p.account.login(primary.name, PASSWORD);
  if (login.status !== 'signed_in') throw new Error(`second device of ${primary.name}: ${login.status}`);
  p.userId = login.userId;
  p.deviceId = login.deviceId;
  await rememberKeys(p);
  return p;
}

export async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `f` over `items` with at most `width` in flight. */
export async function pool<T, R>(items: readonly T[], width: number, f: (t: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return out;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Every sequenced message a device holds for a conversation, oldest first. */
export async function allMessages(p: { engine: Pick<Engine, 'messages'> }, conv: string) {
  return p.engine.messages(conv, { limit: 1_000_000 });
}
