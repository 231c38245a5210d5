/**
 * The account/session half of the engine worker's interface (the engine's own methods go through
 * engine/worker-client.ts). Sign-in state, access tokens and the HTTP transport live in the worker, next
 * to the engine that needs them; the UI only ever sees the results below. Requests are `{ rid, method,
 * args }`, answers `{ rid, ok, value | error }`, progress reports `{ progress }` — shapes that do not
 * collide with the engine RPC on the same worker port.
 *
 * The local passphrase lock: `restore` / `login` of an account whose sealed store is passphrase-wrapped
 * fail with code `locked`; `unlock` opens it (code `bad_passphrase` when wrong) and then restores the
 * session; `lock` forgets the keys (the UI then terminates the worker). The passphrase is only ever an
 * argument here: never stored, never sent to the server, never logged.
 *
 * Does NOT: hold a password or passphrase after the call returns, or see tokens.
 * @module
 */

export interface Me {
  readonly userId: string;
  readonly deviceId: string;
  readonly username: string;
  readonly totpEnabled: boolean;
}

export type LoginResult =
  | { readonly status: 'ok'; readonly me: Me }
  | { readonly status: 'totp_required' }
  /** The password was right, but this browser holds no keys for the account (link it from another device). */
  | { readonly status: 'device_not_linked' };

export interface DeviceInfo {
  readonly deviceId: string;
  readonly createdAt: number;
  readonly lastSeenAt: number | null;
  readonly revoked: boolean;
  readonly current: boolean;
  /** The device's name, opened by this device (null: none set, or not readable). */
  readonly name: string | null;
}

/** Linking progress (engine/linking.ts LinkProgress) as the page sees it; `me` once this device is linked. */
export interface LinkProgressView {
  readonly phase: 'waiting' | 'linking' | 'linked' | 'history' | 'done' | 'interrupted' | 'failed';
  readonly done?: number;
  readonly total?: number;
  readonly messages?: number;
  readonly code?: string;
  readonly username?: string;
  readonly deviceName?: string;
  readonly me?: Me;
}

/** What register / login / reset report while they work (argon2id first, then key generation). */
export interface Progress {
  /** `unlock`: deriving the local store's key from its passphrase (argon2id); `seal`: the same for a history export. */
  readonly step: 'prehash' | 'keys' | 'register' | 'prekeys' | 'sync' | 'unlock' | 'seal';
  /** 0..1 within the step, when known. */
  readonly fraction?: number;
}

export interface SessionApi {
  /** Signs in again with the refresh cookie, for the account last used in this browser. */
  restore(username: string): Promise<Me | null>;
  register(username: string, password: string): Promise<Me>;
  login(username: string, password: string): Promise<LoginResult>;
  loginSecondFactor(p: { code?: string; recoveryCode?: string }): Promise<Me>;
  resetIdentity(p: { username: string; password: string; code?: string; recoveryCode?: string }): Promise<Me>;
  logout(): Promise<void>;
  logoutAll(): Promise<void>;
  changePassword(current: string, next: string): Promise<void>;
  totpEnroll(password: string): Promise<{ otpauthUri: string; secret: string }>;
  totpConfirm(code: string): Promise<{ recoveryCodes: string[] }>;
  totpDisable(code: string): Promise<void>;
  devices(): Promise<DeviceInfo[]>;
  revokeDevice(deviceId: string): Promise<void>;
  /**
   * Whether a username is free (asked before any key is generated; needs no account): true / false, or null
   * when the server could not say (rate-limited, offline). Registration still decides.
   */
  usernameAvailable(username: string): Promise<boolean | null>;
  /** Directory lookup by username (normalised by the server); null when there is no such user. */
  lookup(username: string): Promise<{ userId: string; username: string } | null>;
  /** userId → username for people who share a conversation with us (others are left out). */
  names(userIds: string[]): Promise<Record<string, string>>;
  /** Opens the account's passphrase-locked store, then restores the session as `restore` does. */
  unlock(username: string, passphrase: string): Promise<Me | null>;
  /** Whether this browser's store for the signed-in account is passphrase-locked. */
  localLock(): Promise<{ passphrase: boolean }>;
  /**
   * Sets, changes (`current` required when one is set) or removes (`next` null) the local passphrase:
   * every record is re-sealed under fresh keys; other tabs of the account are told to reload.
   */
  setLocalPassphrase(next: string | null, current?: string): Promise<void>;
  /** Forgets the store's keys and closes the engine; other tabs of the account lock too. */
  lock(): Promise<void>;
  /** Deletes this browser's store for `username` (a forgotten passphrase; an identity reset follows). */
  eraseLocal(username: string): Promise<void>;
  // ---- linking (issue 14); progress arrives as `{ link }` (this browser being linked) / `{ linkOut }` ----
  /** This browser: opens a provisioning channel and returns the code to show (QR and text). */
  linkStart(): Promise<{ code: string; expiresAt: number }>;
  /** This browser, after `interrupted`: asks the other device to send the history again. */
  linkRetryHistory(): Promise<void>;
  linkCancel(): Promise<void>;
  /** A signed-in browser links the device whose code this is. */
  linkDevice(code: string, req: { deviceName: string; history: boolean }): Promise<{ messages: number }>;
  linkDeviceCancel(): Promise<void>;
  renameDevice(deviceId: string, name: string): Promise<void>;
  /** Refreshes the session now (a removed device then learns it at once). */
  checkSession(): Promise<void>;
  /** "Download my data": the server's export of this account, as pretty JSON text. */
  exportServerData(): Promise<string>;
  /** Deletes the account (leaves every group with signed entries first), then this browser's store. */
  deleteAccount(p: { password: string; code?: string; recoveryCode?: string }): Promise<void>;
  /** "Download my history": this browser's history from its store (plain JSON, or sealed under `passphrase`). */
  exportHistory(p: { passphrase?: string }): Promise<HistoryFile>;
}

/** A history export as the engine made it (engine/history.ts). */
export interface HistoryFile {
  readonly bytes: Uint8Array;
  readonly encrypted: boolean;
  readonly conversations: number;
  readonly messages: number;
}

export const SESSION_METHODS: readonly (keyof SessionApi)[] = [
  'restore',
  'register',
  'login',
  'loginSecondFactor',
  'resetIdentity',
  'logout',
  'logoutAll',
  'changePassword',
  'totpEnroll',
  'totpConfirm',
  'totpDisable',
  'devices',
  'revokeDevice',
  'usernameAvailable',
  'lookup',
  'names',
  'unlock',
  'localLock',
  'setLocalPassphrase',
  'lock',
  'eraseLocal',
  'linkStart',
  'linkRetryHistory',
  'linkCancel',
  'linkDevice',
  'linkDeviceCancel',
  'renameDevice',
  'checkSession',
  'exportServerData',
  'deleteAccount',
  'exportHistory',
];

export interface SessionRequest {
  readonly rid: number;
  readonly method: keyof SessionApi;
  readonly args: unknown[];
}

export type SessionResponse =
  | { readonly rid: number; readonly ok: true; readonly value: unknown }
  | {
      readonly rid: number;
      readonly ok: false;
      readonly error: { name: string; code?: string; message: string; retryAfter?: number };
    };

/** An error from the worker with the server's or engine's stable code (and, for 429, Retry-After seconds). */
export class AppError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

/** Seconds to wait from an error that carries them: `retryAfter` (Retry-After) or the body's `retryAfterSec`. */
export function retryAfterOf(e: unknown): number | undefined {
  const x = e as { retryAfter?: unknown; details?: { retryAfterSec?: unknown } } | null;
  const v = typeof x?.retryAfter === 'number' ? x.retryAfter : x?.details?.retryAfterSec;
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.ceil(v) : undefined;
}

interface Port {
  postMessage(m: unknown): void;
  addEventListener(type: 'message', l: (ev: { data: unknown }) => void): void;
}

export type SessionClient = SessionApi & {
  /** Rejects every pending and later call with `error` (the worker was terminated). */
  dispose(error: Error): void;
};

export function sessionClient(port: Port, onProgress: (p: Progress) => void): SessionClient {
  let next = 1;
  let disposed: Error | null = null;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  port.addEventListener('message', (ev) => {
    const d = ev.data as SessionResponse | { progress: Progress } | null;
    if (disposed || !d || typeof d !== 'object') return;
    if ('progress' in d) return onProgress(d.progress);
    if (!('rid' in d)) return;
    const w = waiting.get(d.rid);
    if (!w) return;
    waiting.delete(d.rid);
    if (d.ok) w.resolve(d.value);
    else w.reject(new AppError(d.error.code ?? d.error.name, d.error.message, d.error.retryAfter));
  });
  const call =
    (method: string) =>
    (...args: unknown[]) =>
      new Promise((resolve, reject) => {
        if (disposed) return reject(disposed);
        const rid = next++;
        waiting.set(rid, { resolve, reject });
        port.postMessage({ rid, method, args });
      });
  const api = Object.fromEntries(SESSION_METHODS.map((m) => [m, call(m)])) as unknown as SessionApi;
  return Object.assign(api, {
    dispose(error: Error) {
      disposed = error;
      for (const w of waiting.values()) w.reject(error);
      waiting.clear();
    },
  });
}

export function hostSession(api: SessionApi, port: Port): void {
  const allowed = new Set<string>(SESSION_METHODS);
  port.addEventListener('message', async (ev) => {
    const req = ev.data as SessionRequest | null;
    if (!req || typeof req !== 'object' || typeof req.rid !== 'number' || !allowed.has(req.method)) return;
    try {
      const fn = api[req.method] as (...a: unknown[]) => Promise<unknown>;
      const value = await fn(...req.args);
      port.postMessage({ rid: req.rid, ok: true, value } satisfies SessionResponse);
    } catch (e) {
      const err = e as { name?: string; code?: string; message?: string };
      const retryAfter = retryAfterOf(e);
      port.postMessage({
        rid: req.rid,
        ok: false,
        error: {
          name: err.name ?? 'Error',
          ...(err.code ? { code: err.code } : {}),
          message: err.message ?? String(e),
          ...(retryAfter ? { retryAfter } : {}),
        },
      } satisfies SessionResponse);
    }
  });
}
