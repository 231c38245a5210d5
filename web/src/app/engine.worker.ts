/**
 * The engine's home: a dedicated Web Worker, so key generation, argon2id and every encrypt/decrypt run
 * off the UI thread. It opens the account's sealed IndexedDB store (one database per account, named by a
 * hash of the username), builds the engine with Web Locks (one writer per session across tabs), the HTTP
 * transport and realtime sockets, and serves two RPCs on its port: the engine's (engine/worker-host.ts)
 * and the account/session one (session-api.ts). Access tokens live only here, in memory; the refresh
 * cookie is the session across reloads.
 *
 * Does NOT: render, or keep a password or pre-hash after a call returns.
 * @module
 */
import {
  type Account,
  Account as AccountImpl,
  type LoginResult as AccountLogin,
  type SecondFactor,
} from '../engine/account.js';
import { createEngine, type Engine } from '../engine/engine.js';
import { createHttpApi, createSocketFactory, HttpClient } from '../engine/http-transport.js';
import { openIdbStore } from '../engine/idb-store.js';
import { webLocks } from '../engine/locks.js';
import { hostEngine } from '../engine/worker-host.js';
import { defaultCurves } from '../protocol/index.js';
import { AppError, type DeviceInfo, hostSession, type Me, type Progress, type SessionApi } from './session-api.js';

const port = self as unknown as {
  postMessage(m: unknown): void;
  addEventListener(type: 'message', l: (ev: { data: unknown }) => void): void;
  removeEventListener(type: 'message', l: (ev: { data: unknown }) => void): void;
};

interface Opened {
  readonly name: string;
  readonly dbName: string;
  readonly engine: Engine;
  readonly http: HttpClient;
  readonly account: Account;
  readonly unhost: () => void;
}

let current: Opened | null = null;
let pendingSecondFactor: ((f: SecondFactor) => Promise<AccountLogin>) | null = null;
const curves = defaultCurves();
const rng = (n: number) => crypto.getRandomValues(new Uint8Array(n));

const normalize = (u: string) => u.normalize('NFKC').toLowerCase().trim();

async function dbNameFor(username: string): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(`e2e-chat db:${username}`)));
  return `e2e-chat-${[...h.slice(0, 12)].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}

async function open(username: string): Promise<Opened> {
  const name = normalize(username);
  if (current?.name === name) return current;
  close();
  const dbName = await dbNameFor(name);
  const store = await openIdbStore(dbName);
  const http = new HttpClient({ onSignedOut: () => port.postMessage({ signedOut: true }) });
  const engine = createEngine({
    store,
    api: createHttpApi(http),
    realtime: createSocketFactory(http),
    curves: await curves,
    rng,
    locks: webLocks(),
    // 50 per kind: registration stays quick (ML-KEM-1024 key generation dominates), and the default
    // batch of 100 plus the last-resort KEM key exceeds the upload's 100-per-kind limit.
    keystore: { batch: 50, watermark: 20 },
  });
  const account = new AccountImpl({ http, engine, rng });
  const unhost = hostEngine(engine, port);
  current = { name, dbName, engine, http, account, unhost };
  return current;
}

function close(): void {
  if (!current) return;
  current.unhost();
  current.engine.close();
  current = null;
}

function need(): Opened {
  if (!current) throw new AppError('not_signed_in', 'not signed in');
  return current;
}

const progress = (p: Progress) => port.postMessage({ progress: p });
const onProgress = (p: { phase: 'password' | 'keys' | 'server'; fraction: number }) =>
  progress({
    step: p.phase === 'password' ? 'prehash' : p.phase === 'keys' ? 'keys' : 'register',
    fraction: p.fraction,
  });

async function me(o: Opened): Promise<Me> {
  const s = await o.account.sessionInfo();
  return { userId: s.userId, deviceId: s.deviceId, username: s.username, totpEnabled: s.totpEnabled };
}

async function finish(o: Opened, r: AccountLogin): Promise<Me> {
  if (r.status === 'signed_in') {
    pendingSecondFactor = null;
    return me(o);
  }
  if (r.status === 'mfa_required') {
    pendingSecondFactor = r.totp;
    throw new AppError('mfa_required', 'a code from the authenticator app is needed');
  }
  throw new AppError('device_not_linked', r.message);
}

const api: SessionApi = {
  async restore(username) {
    const o = await open(username);
    const s = await o.account.resume();
    return s ? me(o) : null;
  },
  async register(username, password) {
    const o = await open(username);
    return finish(o, await o.account.register(username, password, { onProgress }));
  },
  async login(username, password) {
    const o = await open(username);
    const r = await o.account.login(username, password, { onProgress });
    if (r.status === 'signed_in') return { status: 'ok', me: await me(o) };
    if (r.status === 'mfa_required') {
      pendingSecondFactor = r.totp;
      return { status: 'totp_required' };
    }
    return { status: 'device_not_linked' };
  },
  async loginSecondFactor(f) {
    const o = need();
    if (!pendingSecondFactor) throw new AppError('invalid_mfa_token', 'start signing in again');
    return finish(o, await pendingSecondFactor(factor(f)));
  },
  async resetIdentity(p) {
    let o = await open(p.username);
    if (pendingSecondFactor && (p.code || p.recoveryCode)) return finish(o, await pendingSecondFactor(factor(p)));
    if (await o.engine.identity()) {
      // Keys of a removed device: worthless after a reset, and the reset needs an empty store.
      const dbName = o.dbName;
      close();
      await new Promise<void>((resolve, reject) => {
        const r = indexedDB.deleteDatabase(dbName);
        r.onsuccess = () => resolve();
        r.onerror = () => reject(r.error);
      });
      o = await open(p.username);
    }
    const f = p.code || p.recoveryCode ? factor(p) : undefined;
    return finish(
      o,
      await o.account.resetIdentity(p.username, p.password, { onProgress, ...(f ? { factor: f } : {}) }),
    );
  },
  async logout() {
    await need().account.logout();
  },
  async logoutAll() {
    await need().account.logoutAll();
  },
  async changePassword(a, b) {
    await need().account.changePassword(a, b, { onProgress });
  },
  totpEnroll: () => need().account.totpEnroll(),
  async totpConfirm(code) {
    return { recoveryCodes: await need().account.totpConfirm(code) };
  },
  totpDisable: (code) => need().account.totpDisable(code),
  async devices() {
    const o = need();
    const mine = o.http.session?.deviceId;
    return (await o.account.devices()).map(
      (d): DeviceInfo => ({
        deviceId: d.deviceId,
        createdAt: d.createdAt,
        lastSeenAt: d.lastSeenAt,
        revoked: d.revoked,
        current: d.deviceId === mine,
      }),
    );
  },
  async revokeDevice(deviceId) {
    await need().account.revokeDevice(deviceId);
  },
  async lookup(username) {
    const u = await need().account.lookup(username);
    return u ? { userId: u.userId, username: u.username } : null;
  },
};

function factor(p: { code?: string; recoveryCode?: string }): SecondFactor {
  return p.recoveryCode ? { recoveryCode: p.recoveryCode } : { code: p.code ?? '' };
}

hostSession(api, port);
