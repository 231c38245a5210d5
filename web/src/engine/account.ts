/**
 * UI-free account flows over the engine (keys) and the HTTP transport (server): register, sign in (with
 * the TOTP step as a continuation), resume a session after a reload, sign out, password change, TOTP,
 * devices (list, link, revoke) and the explicit identity reset. Used by the app, the bot SDK and tests.
 *
 * - Keys are created and held only by the engine's Store (sealed IndexedDB in the browser); only public
 *   keys, signatures and the password pre-hash (argon2id, web/src/protocol/password.ts) leave.
 * - `login` never creates an identity. A browser without keys for the account still gets a precise
 *   answer: it signs in with a throw-away device id, and after a correct password the server says
 *   `device_not_linked` — returned as a typed result (link from another device, or `resetIdentity`).
 * - `register` reuses keys already in the Store if a previous attempt failed (e.g. username taken); a Store
 *   that belongs to a registered account is refused by the server (409 `user_id_taken`/`username_taken`).
 * - `resetIdentity` is explicit and needs an EMPTY Store (the old keys are worthless afterwards: open a
 *   fresh store, then call it); contacts will see a key change.
 *
 * Expected outcomes are results; everything else throws `AccountError` (local) or `HttpApiError` (server
 * code: `invalid_credentials`, `rate_limited` with `retryAfter`, `username_taken`, …).
 *
 * Does NOT: keep the password or the pre-hash after a call, persist tokens (the refresh cookie is the
 * session), or show anything.
 * @module
 */
import { normalizeUsername } from '../../../schema/auth-api.js';
import { fromB64u, passwordPrehash, type Rng, toB64u } from './_protocol.js';
import type { EngineApi, OwnIdentityView } from './engine.js';
import {
  createRestApi,
  type DeviceJson,
  type HttpClient,
  isApiError,
  type RestApi,
  type SessionInfo,
} from './http-transport.js';
import { createLinkingDeviceLinkApi } from './link-transport.js';
import {
  LinkingDeviceLink,
  type LinkOutcome,
  type LinkProgress,
  type LinkRequest,
  type LinkTimings,
} from './linking.js';

export type AccountErrorCode =
  | 'invalid_username'
  | 'username_taken'
  | 'empty_password'
  | 'store_not_empty'
  | 'not_signed_in';

export class AccountError extends Error {
  override readonly name = 'AccountError';
  constructor(
    readonly code: AccountErrorCode,
    message: string = code,
  ) {
    super(message);
  }
}

export interface Progress {
  readonly phase: 'password' | 'keys' | 'server';
  /** 0..1 within the phase. */
  readonly fraction: number;
}

export interface ProgressOptions {
  readonly onProgress?: (p: Progress) => void;
}

export type SecondFactor = { readonly code: string } | { readonly recoveryCode: string };

export type LoginResult =
  | { readonly status: 'signed_in'; readonly userId: string; readonly deviceId: string }
  /** TOTP is on: call `totp` with a code or a recovery code (a wrong code keeps the step valid). */
  | { readonly status: 'mfa_required'; readonly totp: (factor: SecondFactor) => Promise<LoginResult> }
  /**
   * Correct password, but this browser holds no keys for the account (or its device was removed): link it
   * from a device you already use, or reset the identity. `hasLocalKeys`: the Store holds keys (of a
   * removed device, or another account).
   */
  | {
      readonly status: 'device_not_linked';
      readonly userId: string;
      readonly deviceListVersion: number;
      readonly hasLocalKeys: boolean;
      readonly message: string;
    };

export interface AccountOptions {
  readonly http: HttpClient;
  /** The engine (in-process, or the Web Worker proxy from worker-client.ts). */
  readonly engine: EngineApi;
  /** Randomness for user and device ids (default: WebCrypto). */
  readonly rng?: Rng;
}

export interface NewDeviceProof {
  /** The new device's certificate (its engine's `identity().deviceCertificate`). */
  readonly certificate: Uint8Array;
  /** Signs the server's challenge with the NEW device's key (its engine's `signLoginChallenge`). */
  readonly sign: (challenge: Uint8Array) => Promise<Uint8Array>;
}

const cryptoRng: Rng = (n) => globalThis.crypto.getRandomValues(new Uint8Array(n));

export class Account {
  readonly rest: RestApi;
  private readonly http: HttpClient;
  private readonly engine: EngineApi;
  private readonly rng: Rng;

  constructor(opts: AccountOptions) {
    this.http = opts.http;
    this.engine = opts.engine;
    this.rng = opts.rng ?? cryptoRng;
    this.rest = createRestApi(opts.http);
  }

  /** The signed-in device, or null. */
  get session(): SessionInfo | null {
    return this.http.session;
  }

  /**
   * New account: fresh user identity key, device keys, certificate and a version-1 device list (in the
   * engine), a device-signed challenge, POST /api/auth/register, then one-time prekeys uploaded.
   */
  async register(username: string, password: string, opts: ProgressOptions = {}): Promise<LoginResult> {
    const name = this.username(username);
    // A taken name is reported before seconds of password hashing and key generation are spent.
    if ((await this.usernameAvailable(name)) === false)
      throw new AccountError('username_taken', 'this username is taken');
    const prehash = await this.prehash(password, name, opts);
    opts.onProgress?.({ phase: 'keys', fraction: 0 });
    const existing = await this.engine.identity();
    const own = existing ?? (await this.engine.bootstrap({ userId: this.newId(), deviceId: this.newId() }));
    opts.onProgress?.({ phase: 'keys', fraction: 1 });
    opts.onProgress?.({ phase: 'server', fraction: 0 });
    const ch = await this.rest.challenge();
    const signature = await this.engine.signLoginChallenge(fromB64u(ch.challenge));
    const tokens = await this.rest.register({
      userId: own.userId,
      username: name,
      passwordPrehash: toB64u(prehash),
      userIdentityKey: toB64u(own.userIdentityKey),
      deviceList: toB64u(own.deviceList),
      deviceId: own.deviceId,
      challengeId: ch.challengeId,
      challengeSignature: toB64u(signature),
    });
    this.http.setTokens(tokens);
    await this.engine.setOwnUsername(name);
    await this.engine.publishPrekeys();
    opts.onProgress?.({ phase: 'server', fraction: 1 });
    return { status: 'signed_in', userId: tokens.userId, deviceId: tokens.deviceId };
  }

  /**
   * Whether `username` is free (GET /api/auth/username/:username): true / false, or null when the server
   * could not say (rate-limited, offline) — a hint only, registration decides. Throws `invalid_username`.
   */
  async usernameAvailable(username: string): Promise<boolean | null> {
    const name = this.username(username);
    try {
      return (await this.rest.usernameAvailable(name)).available;
    } catch {
      return null;
    }
  }

  /** Sign in with the keys this Store holds (never creates any). */
  async login(username: string, password: string, opts: ProgressOptions = {}): Promise<LoginResult> {
    const name = this.username(username);
    const prehash = await this.prehash(password, name, opts);
    const own = await this.engine.identity();
    opts.onProgress?.({ phase: 'server', fraction: 0 });
    const ch = await this.rest.challenge();
    const deviceId = own?.deviceId ?? this.newId();
    // Without keys: a throw-away device id and a signature that cannot verify. The server checks the
    // password first, so a correct one yields `device_not_linked` and a wrong one `invalid_credentials`.
    const signature = own ? await this.engine.signLoginChallenge(fromB64u(ch.challenge)) : new Uint8Array(64);
    let res: Awaited<ReturnType<RestApi['login']>>;
    try {
      res = await this.rest.login({
        username: name,
        passwordPrehash: toB64u(prehash),
        deviceId,
        challengeId: ch.challengeId,
        challengeSignature: toB64u(signature),
      });
    } catch (e) {
      const linked = notLinked(e, own !== null);
      if (linked) return linked;
      throw e;
    }
    if ('mfaRequired' in res) {
      const mfaToken = res.mfaToken;
      const totp = async (factor: SecondFactor): Promise<LoginResult> => {
        const t = await this.rest.totp({ mfaToken, ...factor });
        this.http.setTokens(t);
        return this.afterSignIn(name);
      };
      return { status: 'mfa_required', totp };
    }
    this.http.setTokens(res);
    return this.afterSignIn(name);
  }

  /**
   * After a reload: a new access token from the refresh cookie, if it belongs to the identity in this
   * Store. Returns null when there is no usable session (show the sign-in screen).
   */
  async resume(): Promise<SessionInfo | null> {
    const own = await this.engine.identity();
    if (!own) return null;
    try {
      await this.http.refresh();
    } catch (e) {
      if (isApiError(e) && (e.status === 401 || e.status === 403)) return null;
      throw e;
    }
    const s = this.http.session;
    if (!s || s.userId !== own.userId || s.deviceId !== own.deviceId) {
      this.http.clearSession();
      return null;
    }
    await this.engine.publishPrekeys();
    return s;
  }

  /**
   * Explicit identity reset for a user who lost every device: new user identity key and a new one-device
   * list (version = the account's + 1), every old device revoked, every session ended, contacts see a
   * key change. Needs an EMPTY Store. With TOTP on, pass `factor` or answer the `mfa_required` result.
   */
  async resetIdentity(
    username: string,
    password: string,
    opts: ProgressOptions & { factor?: SecondFactor } = {},
  ): Promise<LoginResult> {
    if (await this.engine.identity()) {
      throw new AccountError('store_not_empty', 'an identity reset needs a fresh store (the old keys become useless)');
    }
    const name = this.username(username);
    const prehash = await this.prehash(password, name, opts);
    opts.onProgress?.({ phase: 'server', fraction: 0 });
    // Learn the account's id and list version: a sign-in attempt without keys (after a correct password
    // the server answers device_not_linked with both).
    const probe = await this.rest.challenge();
    let account: { userId: string; deviceListVersion: number };
    try {
      await this.rest.login({
        username: name,
        passwordPrehash: toB64u(prehash),
        deviceId: this.newId(),
        challengeId: probe.challengeId,
        challengeSignature: toB64u(new Uint8Array(64)),
      });
      throw new Error('reset: the server accepted a sign-in without keys');
    } catch (e) {
      const linked = notLinked(e, false);
      if (!linked) throw e;
      account = linked;
    }
    opts.onProgress?.({ phase: 'keys', fraction: 0 });
    const own = await this.engine.bootstrap({
      userId: account.userId,
      deviceId: this.newId(),
      listVersion: account.deviceListVersion + 1,
    });
    opts.onProgress?.({ phase: 'keys', fraction: 1 });
    const attempt = async (factor?: SecondFactor): Promise<LoginResult> => {
      const ch = await this.rest.challenge();
      const signature = await this.engine.signLoginChallenge(fromB64u(ch.challenge));
      try {
        const t = await this.rest.resetIdentity({
          username: name,
          passwordPrehash: toB64u(prehash),
          userIdentityKey: toB64u(own.userIdentityKey),
          deviceList: toB64u(own.deviceList),
          deviceId: own.deviceId,
          challengeId: ch.challengeId,
          challengeSignature: toB64u(signature),
          ...(factor ?? {}),
        });
        this.http.setTokens(t);
      } catch (e) {
        if (isApiError(e, 'mfa_required') && !factor) return { status: 'mfa_required', totp: attempt };
        throw e;
      }
      await this.engine.setOwnUsername(name);
      await this.engine.publishPrekeys();
      opts.onProgress?.({ phase: 'server', fraction: 1 });
      return { status: 'signed_in', userId: own.userId, deviceId: own.deviceId };
    };
    return attempt(opts.factor);
  }

  /** Signs this session out (keys stay in the Store: the same browser can sign in again). */
  async logout(): Promise<void> {
    await this.engine.disconnect();
    try {
      await this.rest.logout();
    } finally {
      this.http.clearSession();
    }
  }

  /** Signs every session of the account out, this one included. Returns how many were ended. */
  async logoutAll(): Promise<number> {
    await this.engine.disconnect();
    try {
      return (await this.rest.logoutAll()).revokedSessions;
    } finally {
      this.http.clearSession();
    }
  }

  /**
   * "Download my data": everything the server holds about this account, as the server exports it — the
   * export comes in bounded pages (`truncated` + `next`), followed here and joined table by table.
   */
  async exportServerData(): Promise<Record<string, unknown>> {
    const first = await this.rest.exportAccount();
    const tables: Record<string, Record<string, unknown>[]> = { ...first.tables };
    let next = first.next;
    while (next !== null) {
      const page = await this.rest.exportAccount(next);
      for (const [name, rows] of Object.entries(page.tables)) tables[name] = [...(tables[name] ?? []), ...rows];
      if (page.next === next) throw new Error('the account export did not move on');
      next = page.next;
    }
    const { truncated: _t, next: _n, ...head } = first;
    return { ...head, tables };
  }

  /**
   * Deletes the account (issue 18): signs the entries that leave every group others are still in, proves
   * the password (and the second factor when TOTP is on), and asks the server to delete everything.
   * The caller erases this browser's store afterwards.
   */
  async deleteAccount(
    password: string,
    factor: { code?: string; recoveryCode?: string } = {},
    opts: ProgressOptions = {},
  ): Promise<void> {
    const { username } = await this.rest.session();
    const prehash = await this.prehash(password, username, opts);
    const leave = (await this.engine.departures()).map((d) => ({
      conversationId: d.conversationId,
      entries: d.entries.map((e) => toB64u(e)),
    }));
    await this.rest.deleteAccount({ passwordPrehash: toB64u(prehash), ...factor, leave });
    await this.engine.disconnect();
    this.http.clearSession();
  }

  /** Other sessions are signed out; this one stays. */
  async changePassword(current: string, next: string, opts: ProgressOptions = {}): Promise<number> {
    const { username } = await this.rest.session();
    const a = await this.prehash(current, username, opts);
    const b = await this.prehash(next, username, opts);
    return (await this.rest.changePassword(toB64u(a), toB64u(b))).revokedSessions;
  }

  /**
   * TOTP enrolment (re-proves the password): show `otpauthUri` as a QR code (and `secret` as text); then
   * `totpConfirm`.
   */
  async totpEnroll(password: string, opts: ProgressOptions = {}) {
    const { username } = await this.rest.session();
    return this.rest.totpEnroll(toB64u(await this.prehash(password, username, opts)));
  }

  /** Turns TOTP on; returns the 10 recovery codes (shown once). */
  async totpConfirm(code: string): Promise<string[]> {
    return (await this.rest.totpConfirm(code)).recoveryCodes;
  }

  async totpDisable(code: string): Promise<void> {
    await this.rest.totpDisable(code);
  }

  async sessionInfo() {
    return this.rest.session();
  }

  /** The account's devices (and our copy of the signed list is brought up to date). */
  async devices(): Promise<readonly DeviceJson[]> {
    const r = await this.rest.devices();
    if (r.deviceList) await this.engine.adoptOwnDeviceList(fromB64u(r.deviceList.bytes));
    return r.devices;
  }

  /**
   * Adds a device to the account: this (signed-in) device signs the next list with the new device's
   * certificate; the new device proves its key by signing the server's challenge.
   */
  async linkDevice(newDevice: NewDeviceProof): Promise<OwnIdentityView> {
    await this.devices();
    const ch = await this.rest.deviceChallenge();
    const signature = await newDevice.sign(fromB64u(ch.challenge));
    const list = await this.engine.addDeviceToList(newDevice.certificate);
    try {
      const r = await this.rest.registerDevice(list, ch.challengeId, signature);
      return this.engine.adoptOwnDeviceList(fromB64u(r.deviceList.bytes));
    } catch (e) {
      await this.devices(); // back to the list the server holds
      throw e;
    }
  }

  /** The account's devices with their names opened (only our devices can; null: none or unreadable). */
  async devicesWithNames(): Promise<(DeviceJson & { readonly displayName: string | null })[]> {
    const list = await this.devices();
    const names = await this.engine.deviceNames(
      list.map((d) => ({ deviceId: d.deviceId, name: d.name ? fromB64u(d.name) : null })),
    );
    return list.map((d) => ({ ...d, displayName: names[d.deviceId] ?? null }));
  }

  /** Names one of our devices (the server stores only the ciphertext). */
  async renameDevice(deviceId: string, name: string): Promise<void> {
    const sealed = await this.engine.sealDeviceName(deviceId, name);
    await createLinkingDeviceLinkApi(this.http).setDeviceName(deviceId, sealed);
  }

  /**
   * Links the new device whose code (QR or text) this is (docs/PROTOCOL.md §"Linking"): a linking token,
   * the sealed provisioning message, then the history if asked. Resolves when it is done. Errors:
   * LinkError (`bad_link_code`, `wrong_server`, `cancelled`, `link_expired`, …) or the server's code
   * (`device_limit`, `channel_claimed`, `rate_limited`, …). `onLink` receives the object (to cancel).
   */
  async linkNewDevice(
    code: string,
    req: LinkRequest,
    opts: {
      onProgress?: (p: LinkProgress) => void;
      onLink?: (l: LinkingDeviceLink) => void;
      timings?: Partial<LinkTimings>;
    } = {},
  ): Promise<LinkOutcome> {
    const { username } = await this.rest.session();
    const link = new LinkingDeviceLink({
      api: createLinkingDeviceLinkApi(this.http),
      engine: this.engine,
      username,
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(opts.timings ? { timings: opts.timings } : {}),
    });
    opts.onLink?.(link);
    try {
      return await link.link(code, req);
    } finally {
      await this.devices().catch(() => undefined); // our copy of the list now has the new device
    }
  }

  /** Removes one of the account's other devices: its keys, prekeys and sessions (sockets closed with 4403). */
  async revokeDevice(deviceId: string): Promise<OwnIdentityView> {
    await this.devices();
    const list = await this.engine.removeDeviceFromList(deviceId);
    try {
      const r = await this.rest.revokeDevice(deviceId, list);
      return this.engine.adoptOwnDeviceList(fromB64u(r.deviceList.bytes));
    } catch (e) {
      await this.devices();
      throw e;
    }
  }

  /**
   * Resolves a username (any signed-in user may; rate-limited) to the user id and identity key — only if
   * the key-transparency log proves them (the engine verifies; otherwise `kt_unproven` is thrown).
   */
  async lookup(username: string): Promise<{ userId: string; username: string; identityKey: Uint8Array } | null> {
    return this.engine.lookupUser(this.username(username));
  }

  // ---- internals ----

  private async afterSignIn(username: string): Promise<LoginResult> {
    const s = this.http.session;
    if (!s) throw new AccountError('not_signed_in');
    await this.engine.setOwnUsername(username); // self-monitoring checks the log's entry for it
    await this.engine.publishPrekeys();
    try {
      await this.devices();
    } catch (e) {
      // A list we cannot adopt (not for this device) is not fatal to the sign-in itself.
      if (isApiError(e)) throw e;
    }
    return { status: 'signed_in', userId: s.userId, deviceId: s.deviceId };
  }

  private username(raw: string): string {
    const n = normalizeUsername(raw);
    if (!n) {
      throw new AccountError(
        'invalid_username',
        'usernames are 3-32 characters of a-z, 0-9, "_", "." and "-", starting with a letter',
      );
    }
    return n;
  }

  private async prehash(password: string, name: string, opts: ProgressOptions): Promise<Uint8Array> {
    if (!password) throw new AccountError('empty_password');
    opts.onProgress?.({ phase: 'password', fraction: 0 });
    const h = await passwordPrehash(password, name, (f) => opts.onProgress?.({ phase: 'password', fraction: f }));
    opts.onProgress?.({ phase: 'password', fraction: 1 });
    return h;
  }

  private newId(): string {
    return toB64u(this.rng(16));
  }
}

function notLinked(e: unknown, hasLocalKeys: boolean): (LoginResult & { status: 'device_not_linked' }) | null {
  if (!isApiError(e, 'device_not_linked')) return null;
  const d = (e as { details?: Record<string, unknown> }).details ?? {};
  return {
    status: 'device_not_linked',
    userId: typeof d.userId === 'string' ? d.userId : '',
    deviceListVersion: typeof d.deviceListVersion === 'number' ? d.deviceListVersion : 0,
    hasLocalKeys,
    message: e.message,
  };
}
