/**
 * The engine's home: a dedicated Web Worker, so key generation, argon2id and every encrypt/decrypt run
 * off the UI thread. It opens the account's sealed IndexedDB store (one database per account, named by a
 * hash of the username), builds the engine with Web Locks (one writer per session across tabs), the HTTP
 * transport and realtime sockets, and serves two RPCs on its port: the engine's (engine/worker-host.ts)
 * and the account/session one (session-api.ts). Access tokens live only here, in memory; the refresh
 * cookie is the session across reloads.
 *
 * The optional local passphrase (sealed-store.ts) wraps the store's keys: a locked store makes `restore`
 * and `login` fail with code `locked` until `unlock` gets the passphrase. Tabs of one account coordinate
 * over a BroadcastChannel named after the database: a re-key (passphrase set, changed or removed), a
 * "lock now" or an erase in one tab makes the others close their engine and tell their page to reload
 * (their keys are stale or meant to be forgotten; the sealed store's epoch check refuses their writes
 * even before the message arrives).
 *
 * Does NOT: render, or keep a password, pre-hash or passphrase after a call returns.
 * @module
 */
import {
  type Account,
  Account as AccountImpl,
  type LoginResult as AccountLogin,
  type SecondFactor,
} from '../engine/account.js';
import { createEngine, type Engine } from '../engine/engine.js';
import { createHttpApi, createRestApi, createSocketFactory, HttpClient, isApiError } from '../engine/http-transport.js';
import { openIdbStore } from '../engine/idb-store.js';
import { createNewDeviceLinkApi } from '../engine/link-transport.js';
import { type LinkingDeviceLink, type LinkProgress, NewDeviceLink } from '../engine/linking.js';
import { webLocks } from '../engine/locks.js';
import type { SealedStore } from '../engine/sealed-store.js';
import { hostEngine } from '../engine/worker-host.js';
import { defaultCurves, platformRng, toB64u } from '../protocol/index.js';
import { KT_LOG_PUBLIC_KEY } from './kt-key.js';
import { runIncomingLink } from './link-incoming.js';
import { CLIENT_POLL_MS } from './poll.js';
import {
  AppError,
  type DeviceInfo,
  hostSession,
  type LinkProgressView,
  type Me,
  type Progress,
  type SessionApi,
} from './session-api.js';
import { createSessionEnd } from './session-end.js';

const port = self as unknown as {
  postMessage(m: unknown): void;
  addEventListener(type: 'message', l: (ev: { data: unknown }) => void): void;
  removeEventListener(type: 'message', l: (ev: { data: unknown }) => void): void;
};

interface Opened {
  readonly name: string;
  readonly dbName: string;
  readonly store: SealedStore;
  readonly channel: BroadcastChannel | null;
  readonly engine: Engine;
  readonly http: HttpClient;
  readonly account: Account;
  readonly unhost: () => void;
}

let current: Opened | null = null;
let pendingSecondFactor: ((f: SecondFactor) => Promise<AccountLogin>) | null = null;
const curves = defaultCurves();
/** The platform's CSPRNG, passed as `platformRng` itself: ML-KEM encapsulation then goes through WebCrypto where
 * the platform has it (the provider lets the platform draw m only for exactly this function). */
const rng = platformRng;

const normalize = (u: string) => u.normalize('NFKC').toLowerCase().trim();

async function dbNameFor(username: string): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(`e2e-chat db:${username}`)));
  return `e2e-chat-${[...h.slice(0, 12)].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}

/** What one tab tells the others about the store they share. */
type StoreNotice = 'rekeyed' | 'locked' | 'erased';

const channelName = (dbName: string) => `e2e-chat-store:${dbName}`;

/**
 * Posts through this worker's own channel object when it has one for `dbName` (a BroadcastChannel does not
 * hear itself, but would hear a second object of the same name in this very worker).
 */
function tellOtherTabs(dbName: string, notice: StoreNotice): void {
  if (typeof BroadcastChannel === 'undefined') return;
  if (current?.dbName === dbName && current.channel) {
    current.channel.postMessage({ notice });
    return;
  }
  const ch = new BroadcastChannel(channelName(dbName));
  ch.postMessage({ notice });
  ch.close();
}

const unlockProgress = (fraction: number) => progress({ step: 'unlock', fraction });

async function open(username: string, passphrase?: string): Promise<Opened> {
  const name = normalize(username);
  if (current?.name === name) return current;
  close();
  const dbName = await dbNameFor(name);
  sessionEnd.opened(dbName);
  const store = await openIdbStore(dbName, passphrase === undefined ? {} : { passphrase, onProgress: unlockProgress });
  const http = new HttpClient({ onSignedOut: (e) => void sessionEnd.ended(dbName, e) });
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
    // A conversation from someone we never accepted waits for Accept before anything goes back (people.ts).
    messageRequests: true,
    // …and gets no socket until then: its messages come from the mailbox, polled as often as the chat list.
    requestPollMs: CLIENT_POLL_MS, // 4 s (poll.ts)
    kt: { logKey: KT_LOG_PUBLIC_KEY },
  });
  const account = new AccountImpl({ http, engine, rng });
  const unhost = hostEngine(engine, port);
  const channel = typeof BroadcastChannel === 'undefined' ? null : new BroadcastChannel(channelName(dbName));
  channel?.addEventListener('message', (ev: MessageEvent) => {
    const notice = (ev.data as { notice?: StoreNotice } | null)?.notice;
    if (notice !== 'rekeyed' && notice !== 'locked' && notice !== 'erased') return;
    if (current?.dbName === dbName) close();
    port.postMessage({ storeChanged: notice });
  });
  current = { name, dbName, store, channel, engine, http, account, unhost };
  return current;
}

/** Closes the engine and forgets the store's keys (they stay only in IndexedDB, sealed). */
function close(): void {
  if (!current) return;
  const c = current;
  current = null;
  pendingSecondFactor = null;
  c.channel?.close();
  c.unhost();
  c.engine.close();
  c.store.lock();
}

function need(): Opened {
  if (!current) throw new AppError('not_signed_in', 'not signed in');
  return current;
}

/** The server ended a session: removed (checked, store erased) or signed out — one decision at a time. */
const sessionEnd = createSessionEnd({
  engineFor: (dbName) => (current?.dbName === dbName ? current.engine : null),
  async erase(dbName) {
    tellOtherTabs(dbName, 'erased');
    if (current?.dbName === dbName) close();
    await deleteDb(dbName);
  },
  post: (message) => port.postMessage(message),
});

// ---- linking (issue 14) -------------------------------------------------------------------------------

let incoming: NewDeviceLink | null = null;
let outgoing: LinkingDeviceLink | null = null;
const linkProgress = (p: LinkProgressView) => port.postMessage({ link: p });
const linkOutProgress = (p: LinkProgress) => port.postMessage({ linkOut: p });

/** This browser being linked: provisioning message → store for that account → keys, session, history. */
function runIncoming(link: NewDeviceLink): Promise<void> {
  return runIncomingLink(link, {
    open: (username) => open(username),
    close(username) {
      if (current?.name === normalize(username)) close();
    },
    async erase(username) {
      const dbName = await dbNameFor(normalize(username));
      if (current?.dbName === dbName) close();
      await deleteDb(dbName);
    },
    redeemApi: (o) => createNewDeviceLinkApi(o.http),
    async revoke(o, deviceId) {
      await createRestApi(o.http).revokeDevice(deviceId, await o.engine.listWithoutThisDevice());
    },
    deviceId: () => toB64u(rng(16)),
    isCurrent: () => incoming === link,
    failed: (code, username) => linkProgress({ phase: 'failed', code, ...(username ? { username } : {}) }),
    async linked(o, p) {
      linkProgress({ phase: 'linked', username: p.username, deviceName: p.deviceName, me: await me(o) });
      await receiveHistory(link, o);
    },
  });
}

async function receiveHistory(link: NewDeviceLink, o: Opened): Promise<void> {
  try {
    await link.receiveHistory(o.engine);
  } catch (e) {
    const code = (e as { code?: string }).code ?? 'history_failed';
    if (code !== 'history_incomplete') linkProgress({ phase: 'failed', code });
  }
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
      await deleteDb(dbName);
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
  totpEnroll: (password) => need().account.totpEnroll(password, { onProgress }),
  async totpConfirm(code) {
    return { recoveryCodes: await need().account.totpConfirm(code) };
  },
  totpDisable: (code) => need().account.totpDisable(code),
  async devices() {
    const o = need();
    const mine = o.http.session?.deviceId;
    return (await o.account.devicesWithNames()).map(
      (d): DeviceInfo => ({
        deviceId: d.deviceId,
        createdAt: d.createdAt,
        lastSeenAt: d.lastSeenAt,
        revoked: d.revoked,
        current: d.deviceId === mine,
        name: d.displayName,
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
  async usernameAvailable(username) {
    try {
      return (await createRestApi(new HttpClient()).usernameAvailable(normalize(username))).available;
    } catch {
      return null;
    }
  },
  async names(userIds) {
    const ids = [...new Set(userIds)].slice(0, 100);
    if (ids.length === 0) return {};
    const r = await need().http.request<{ users: { userId: string; username: string }[] }>('GET', '/api/users/names', {
      query: { ids: ids.join(',') },
    });
    return Object.fromEntries(r.users.map((u) => [u.userId, u.username]));
  },
  async unlock(username, passphrase) {
    if (typeof passphrase !== 'string' || passphrase.length === 0) throw new AppError('bad_passphrase', 'empty');
    const o = await open(username, passphrase);
    const s = await o.account.resume();
    return s ? me(o) : null;
  },
  async localLock() {
    return { passphrase: need().store.hasPassphrase() };
  },
  async setLocalPassphrase(next, currentPassphrase) {
    const o = need();
    if (next !== null && (typeof next !== 'string' || next.length === 0))
      throw new AppError('invalid_passphrase', 'empty passphrase');
    if (o.store.hasPassphrase()) {
      if (typeof currentPassphrase !== 'string' || currentPassphrase.length === 0)
        throw new AppError('bad_passphrase', 'the current passphrase is needed');
      await o.store.checkPassphrase(currentPassphrase, { onProgress: unlockProgress });
    }
    await o.store.setPassphrase(next, { onProgress: unlockProgress });
    tellOtherTabs(o.dbName, 'rekeyed');
  },
  async lock() {
    if (current) tellOtherTabs(current.dbName, 'locked');
    close();
  },
  async linkStart() {
    await incoming?.cancel().catch(() => undefined);
    let link: NewDeviceLink | null = null;
    link = await NewDeviceLink.start({
      api: createNewDeviceLinkApi(new HttpClient({ cookies: null })),
      curves: await curves,
      rng,
      // 'linked' is reported by runIncoming, with the session it opened.
      onProgress: (p) => {
        if (link !== null && incoming === link && p.phase !== 'linked') linkProgress(p);
      },
    });
    incoming = link;
    void runIncoming(link);
    return { code: link.code, expiresAt: link.expiresAt };
  },
  async linkRetryHistory() {
    const link = incoming;
    if (!link || !current) throw new AppError('not_linking', 'no link in progress');
    await link.retryHistory();
    void receiveHistory(link, current);
  },
  async linkCancel() {
    const link = incoming;
    incoming = null;
    await link?.cancel();
  },
  async linkDevice(code, req) {
    const o = need();
    if (typeof req?.deviceName !== 'string' || typeof req.history !== 'boolean')
      throw new AppError('invalid_request', 'a device name and the history choice are needed');
    try {
      return await o.account.linkNewDevice(code, req, {
        onProgress: linkOutProgress,
        onLink: (l) => {
          outgoing = l;
        },
      });
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'link_failed';
      linkOutProgress({ phase: 'failed', code });
      throw e;
    } finally {
      outgoing = null;
    }
  },
  async linkDeviceCancel() {
    await outgoing?.cancel();
  },
  async renameDevice(deviceId, name) {
    await need().account.renameDevice(deviceId, name);
  },
  async checkSession() {
    const o = need();
    try {
      await o.http.refresh();
    } catch (e) {
      if (!isApiError(e)) throw e; // a 401 already reached sessionEnd through the HTTP client
    }
  },
  exportServerData: async () => JSON.stringify(await need().account.exportServerData(), null, 2),
  async deleteAccount(p) {
    const o = need();
    await o.account.deleteAccount(p.password, p.code || p.recoveryCode ? factor(p) : {}, { onProgress });
    // The account is gone: so is everything this browser kept for it.
    tellOtherTabs(o.dbName, 'erased');
    close();
    await deleteDb(o.dbName);
  },
  exportHistory: (p) =>
    need().engine.exportHistory({
      ...(p.passphrase ? { passphrase: p.passphrase } : {}),
      onProgress: (fraction) => progress({ step: 'seal', fraction }),
    }),
  async eraseLocal(username) {
    const dbName = await dbNameFor(normalize(username));
    tellOtherTabs(dbName, 'erased');
    if (current?.dbName === dbName) close();
    await deleteDb(dbName);
  },
};

function deleteDb(dbName: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const r = indexedDB.deleteDatabase(dbName);
    r.onsuccess = () => resolve();
    r.onerror = () => reject(r.error);
  });
}

function factor(p: { code?: string; recoveryCode?: string }): SecondFactor {
  return p.recoveryCode ? { recoveryCode: p.recoveryCode } : { code: p.code ?? '' };
}

hostSession(api, port);
