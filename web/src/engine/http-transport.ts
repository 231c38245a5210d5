/**
 * The engine's network over the real server: `HttpClient` (fetch + JSON + base64url, typed errors, the
 * access token with one refresh-and-retry on 401 `invalid_token`), the `ServerApi` the engine needs
 * (`createHttpApi`), the REST calls of the account flows (`createRestApi`: /api/auth, /api/devices,
 * /api/users), and the realtime `SocketFactory` (`createSocketFactory`: ticket over HTTP, then
 * `WebSocket(…/ws?ticket=…)`, keep-alive pings; reconnect, back-off and resume are createRealtime's).
 *
 * Cookies: the refresh token only ever travels in the `__Host-e2e_refresh` cookie. In a browser (page or
 * Web Worker) fetch keeps it (`credentials: 'same-origin'`); in Node there is no cookie jar, so the client
 * keeps a tiny in-memory one (`memoryCookieJar`) — bots and tests sign in exactly like the app.
 *
 * WebSocket: the browser's global; in Node 20 (no global WebSocket) the `ws` package, loaded lazily so the
 * browser bundle never includes it.
 *
 * Does NOT: derive password prehashes or sign anything (account.ts and the engine do), persist tokens (the
 * access token lives in memory; a reload refreshes from the cookie), or decide what to send.
 * @module
 */
import type { z } from 'zod';
import type {
  AccountExportPage,
  challengeResponse,
  loginResponse,
  RegisterRequest,
  ResetIdentityRequest,
  recoveryCodesResponse,
  revokedResponse,
  sessionResponse,
  TokenResponse,
  totpEnrollResponse,
} from '../../../schema/auth-api.js';
import { CLOSE, PING_INTERVAL_MS, WIRE_PING, WIRE_PONG } from '../../../schema/wire.js';
import { fromB64u, toB64u } from './_protocol.js';
import {
  ApiError,
  type BundleClaim,
  type ConversationInfo,
  type ConversationKind,
  type FrameSocket,
  type KtProof,
  type MailboxCursor,
  type MailboxEnvelope,
  type PrekeyCounts,
  type ServerApi,
  type SocketFactory,
  type TransferOptions,
} from './transport.js';

// ---- errors ------------------------------------------------------------------------------------------

export interface DeviceRefJson {
  readonly u: string;
  readonly d: string;
}

/**
 * An HTTP error with the server's `error.code`, every other field of the server's error object in
 * `details` (e.g. `fields`, `reason`, `headSeq`, `userId`), and for 429 the server's `Retry-After`.
 */
export class HttpApiError extends ApiError {
  constructor(
    status: number,
    code: string,
    message: string,
    readonly details: Readonly<Record<string, unknown>> = {},
    /** Seconds, from `Retry-After` (429 `rate_limited`). */
    readonly retryAfter: number | null = null,
  ) {
    super(status, code, message);
  }

  /** device_mismatch lists, when the server sent them. */
  get mismatch(): { missing: DeviceRefJson[]; extra: DeviceRefJson[]; stale: DeviceRefJson[] } | null {
    if (this.code !== 'device_mismatch') return null;
    const list = (k: string) => (Array.isArray(this.details[k]) ? (this.details[k] as DeviceRefJson[]) : []);
    return { missing: list('missing'), extra: list('extra'), stale: list('stale') };
  }
}

/** True if `e` is an API error with `code` (works for errors that crossed a worker boundary too). */
export function isApiError(e: unknown, code?: string): e is ApiError {
  if (!e || typeof e !== 'object') return false;
  const x = e as { name?: unknown; code?: unknown; status?: unknown };
  const apiLike = e instanceof ApiError || (x.name === 'ApiError' && typeof x.code === 'string');
  return apiLike && (code === undefined || x.code === code);
}

// ---- cookies (Node) ------------------------------------------------------------------------------------

/** The smallest cookie jar that works for one origin: name → value, honouring Max-Age=0 / past Expires. */
export interface CookieJar {
  /** The `Cookie` header to send, or null if empty. */
  header(): string | null;
  /** Records the response's `Set-Cookie` headers. */
  store(setCookies: readonly string[]): void;
  clear(): void;
}

export function memoryCookieJar(now: () => number = Date.now): CookieJar {
  const jar = new Map<string, { value: string; expires: number | null }>();
  return {
    header() {
      const t = now();
      const parts: string[] = [];
      for (const [name, c] of jar) {
        if (c.expires !== null && c.expires <= t) jar.delete(name);
        else parts.push(`${name}=${c.value}`);
      }
      return parts.length ? parts.join('; ') : null;
    },
    store(setCookies) {
      for (const line of setCookies) {
        const [pair, ...attrs] = line.split(';');
        const eq = pair?.indexOf('=') ?? -1;
        if (!pair || eq <= 0) continue;
        const name = pair.slice(0, eq).trim();
        const value = pair.slice(eq + 1).trim();
        let expires: number | null = null;
        for (const a of attrs) {
          const [k, v = ''] = a.split('=').map((s) => s.trim());
          if (k?.toLowerCase() === 'max-age') expires = now() + Number(v) * 1000;
          else if (k?.toLowerCase() === 'expires' && expires === null) {
            const ms = Date.parse(v);
            if (!Number.isNaN(ms)) expires = ms;
          }
        }
        if (value === '' || (expires !== null && expires <= now())) jar.delete(name);
        else jar.set(name, { value, expires });
      }
    },
    clear: () => jar.clear(),
  };
}

const inBrowser = (): boolean =>
  typeof (globalThis as { document?: unknown }).document !== 'undefined' ||
  typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== 'undefined';

// ---- the HTTP client -----------------------------------------------------------------------------------

export interface HttpClientOptions {
  /** Origin of the server, e.g. `http://127.0.0.1:5173`; '' (default) = same origin (browser). */
  readonly baseUrl?: string;
  readonly fetch?: typeof fetch;
  /** Node: a cookie jar for the refresh cookie (default: a memory jar outside browsers, none inside). */
  readonly cookies?: CookieJar | null;
  /**
   * Called when the session is over for good (refresh refused, or any request answered 401
   * `session_revoked`): the UI shows the sign-in screen with the reason (`details.reason` of the error:
   * identity_reset, device_revoked, password_changed, logout_all, …).
   */
  readonly onSignedOut?: (error: ApiError) => void;
}

export interface RequestOptions {
  readonly json?: unknown;
  readonly query?: Record<string, string | number | undefined>;
  /** Send the access token (refreshing it first if there is none). Default true. */
  readonly auth?: boolean;
}

export interface SessionInfo {
  readonly userId: string;
  readonly deviceId: string;
}

export class HttpClient {
  readonly baseUrl: string;
  private readonly fetchFn: typeof fetch;
  private readonly cookies: CookieJar | null;
  private readonly onSignedOut: ((e: ApiError) => void) | undefined;
  private accessToken: string | null = null;
  private expiresAt = 0;
  private refreshing: Promise<string> | null = null;
  private current: SessionInfo | null = null;

  constructor(opts: HttpClientOptions = {}) {
    this.baseUrl = (opts.baseUrl ?? '').replace(/\/$/, '');
    this.fetchFn = opts.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.cookies = opts.cookies !== undefined ? opts.cookies : inBrowser() ? null : memoryCookieJar();
    this.onSignedOut = opts.onSignedOut;
  }

  /** Who the current access token is for (null before sign-in or after sign-out). */
  get session(): SessionInfo | null {
    return this.current;
  }

  /** Adopts the tokens of a sign-in, registration, MFA step or refresh. */
  setTokens(t: TokenResponse): void {
    this.accessToken = t.accessToken;
    this.expiresAt = Date.now() + t.expiresIn * 1000;
    this.current = { userId: t.userId, deviceId: t.deviceId };
  }

  /** Forgets the access token and (Node) the refresh cookie. */
  clearSession(): void {
    this.accessToken = null;
    this.expiresAt = 0;
    this.current = null;
    this.cookies?.clear();
  }

  /** POST /api/auth/refresh with the cookie; one in flight at a time. Returns the new access token. */
  refresh(): Promise<string> {
    this.refreshing ??= (async () => {
      try {
        const t = await this.raw<TokenResponse>('POST', '/api/auth/refresh', { auth: false });
        this.setTokens(t);
        return t.accessToken;
      } catch (e) {
        if (isApiError(e) && e.status === 401) this.ended(e);
        throw e;
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  /** The session ended for good: forget it and tell the owner. */
  private ended(e: ApiError): void {
    this.clearSession();
    this.onSignedOut?.(e);
  }

  /** A valid access token: the current one, or a refreshed one if there is none or it is about to expire. */
  async token(): Promise<string> {
    if (this.accessToken && Date.now() < this.expiresAt - 15_000) return this.accessToken;
    return this.refresh();
  }

  /**
   * One JSON request. With `auth` (default) it carries the access token; a 401 `invalid_token` (expired,
   * rotated key) triggers one refresh and one retry. Errors are HttpApiError with the server's code.
   */
  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    if (opts.auth === false) return this.raw<T>(method, path, opts);
    const token = await this.token();
    try {
      return await this.raw<T>(method, path, opts, token);
    } catch (e) {
      if (isApiError(e, 'session_revoked') && e.status === 401) this.ended(e);
      if (!(isApiError(e, 'invalid_token') && e.status === 401)) throw e;
      return this.raw<T>(method, path, opts, await this.refresh());
    }
  }

  url(path: string, query?: RequestOptions['query']): string {
    let u = `${this.baseUrl}${path}`;
    if (query) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, String(v));
      const s = q.toString();
      if (s) u += `?${s}`;
    }
    return u;
  }

  private async raw<T>(method: string, path: string, opts: RequestOptions, token?: string): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    if (opts.json !== undefined) headers['content-type'] = 'application/json';
    const cookie = this.cookies?.header();
    if (cookie) headers.cookie = cookie;
    const res = await this.fetchFn(this.url(path, opts.query), {
      method,
      headers,
      ...(opts.json !== undefined ? { body: JSON.stringify(opts.json) } : {}),
      credentials: this.cookies ? 'omit' : 'same-origin',
    });
    if (this.cookies) {
      const set = (res.headers as Headers & { getSetCookie?: () => string[] }).getSetCookie?.() ?? [];
      if (set.length) this.cookies.store(set);
    }
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    let body: unknown = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (!res.ok) throw httpError(res.status, body, res.headers.get('retry-after'));
    return body as T;
  }

  /** Runs `op` with the access token; one refresh-and-retry on 401 `invalid_token` (as `request`). */
  private async authorized<T>(op: (headers: Record<string, string>) => Promise<T>): Promise<T> {
    const headers = (token: string) => {
      const h: Record<string, string> = { authorization: `Bearer ${token}` };
      const cookie = this.cookies?.header();
      if (cookie) h.cookie = cookie;
      return h;
    };
    try {
      return await op(headers(await this.token()));
    } catch (e) {
      if (!(isApiError(e, 'invalid_token') && e.status === 401)) throw e;
      return op(headers(await this.refresh()));
    }
  }

  /**
   * PUT of a Blob body (attachments). In a browser (page or worker) through XMLHttpRequest, the one API that
   * reports upload progress; elsewhere through fetch (progress only at the end). `signal` aborts.
   */
  upload(path: string, body: Blob, opts: TransferOptions = {}): Promise<unknown> {
    return this.authorized(async (auth) => {
      const headers = { ...auth, accept: 'application/json', 'content-type': 'application/octet-stream' };
      const url = this.url(path);
      if (typeof XMLHttpRequest !== 'undefined') {
        const r = await xhrPut(url, headers, body, opts);
        const parsed = parseJson(r.text);
        if (r.status < 200 || r.status >= 300) throw httpError(r.status, parsed, r.retryAfter);
        return parsed;
      }
      const res = await this.fetchFn(url, {
        method: 'PUT',
        headers,
        body,
        credentials: this.cookies ? 'omit' : 'same-origin',
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      const parsed = parseJson(await res.text());
      if (!res.ok) throw httpError(res.status, parsed, res.headers.get('retry-after'));
      opts.onProgress?.(body.size);
      return parsed;
    });
  }

  /** GET of a binary body as a stream (attachments); errors as for `request`. */
  download(path: string, opts: TransferOptions = {}): Promise<ReadableStream<Uint8Array>> {
    return this.authorized(async (headers) => {
      const res = await this.fetchFn(this.url(path), {
        method: 'GET',
        headers,
        credentials: this.cookies ? 'omit' : 'same-origin',
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      if (!res.ok || !res.body)
        throw httpError(res.status, parseJson(await res.text()), res.headers.get('retry-after'));
      return res.body as ReadableStream<Uint8Array>;
    });
  }
}

function parseJson(text: string): unknown {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** The server's `{error:{code,message,…}}` as an HttpApiError (with Retry-After for 429). */
function httpError(status: number, body: unknown, retryAfter: string | null): HttpApiError {
  const err = (body as { error?: Record<string, unknown> } | null)?.error;
  const code = typeof err?.code === 'string' ? err.code : `http_${status}`;
  const message = typeof err?.message === 'string' ? err.message : `HTTP ${status}`;
  const { code: _c, message: _m, ...details } = err ?? {};
  const ra = Number(retryAfter);
  return new HttpApiError(status, code, message, details, Number.isFinite(ra) && ra > 0 ? ra : null);
}

function xhrPut(
  url: string,
  headers: Record<string, string>,
  body: Blob,
  opts: TransferOptions,
): Promise<{ status: number; text: string; retryAfter: string | null }> {
  return new Promise((resolve, reject) => {
    const aborted = () => reject(new DOMException('the transfer was cancelled', 'AbortError'));
    if (opts.signal?.aborted) return aborted();
    const x = new XMLHttpRequest();
    x.open('PUT', url);
    for (const [k, v] of Object.entries(headers)) if (k !== 'cookie') x.setRequestHeader(k, v);
    x.upload.onprogress = (e) => opts.onProgress?.(e.loaded);
    x.onload = () =>
      resolve({ status: x.status, text: x.responseText, retryAfter: x.getResponseHeader('retry-after') });
    x.onerror = () => reject(new TypeError('network error'));
    x.onabort = aborted;
    opts.signal?.addEventListener('abort', () => x.abort(), { once: true });
    x.send(body);
  });
}

// ---- the engine's ServerApi ----------------------------------------------------------------------------

interface ConversationJson {
  id: string;
  kind: ConversationKind;
  headSeq: number;
  members: { userId: string; role: string }[];
}

const info = (c: ConversationJson): ConversationInfo => ({
  id: c.id,
  kind: c.kind,
  headSeq: c.headSeq,
  members: c.members.map((m) => ({ userId: m.userId, role: m.role })),
});

const seg = (s: string) => encodeURIComponent(s);

/**
 * Part sizes a client accepts from a parts reservation: R2's smallest part (the Worker refuses a smaller
 * ATTACHMENT_LIMITS.partBytes) up to 64 MiB — the engine holds a few parts in memory at once, so a server
 * must not be able to make it allocate more (docs/API.md §Attachments).
 */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
export const MAX_PART_BYTES = 64 * 1024 * 1024;
/** R2's (and S3's) most parts in one multipart upload. */
export const MAX_PARTS = 10_000;

/**
 * The server's `partBytes` for a parts upload of `size` bytes, if it and its `parts` count are sane; anything
 * else is `invalid_server_response` (nothing is read or sent).
 */
function checkedPartBytes(size: number, partBytes: unknown, parts: unknown): number {
  const count = typeof partBytes === 'number' && partBytes > 0 ? Math.max(1, Math.ceil(size / partBytes)) : 0;
  if (
    !Number.isSafeInteger(partBytes) ||
    (partBytes as number) < MIN_PART_BYTES ||
    (partBytes as number) > MAX_PART_BYTES ||
    count > MAX_PARTS ||
    parts !== count
  )
    throw new HttpApiError(
      502,
      'invalid_server_response',
      `the server answered a parts reservation with an unusable part size (partBytes must be an integer from ${MIN_PART_BYTES} to ${MAX_PART_BYTES}, parts = ⌈size ÷ partBytes⌉ ≤ ${MAX_PARTS})`,
    );
  return partBytes as number;
}
/** The server's membership-log page size (worker/domain/conversations.ts MAX_LOG_PAGE). */
const LOG_PAGE = 500;

export function createHttpApi(http: HttpClient): ServerApi {
  return {
    uploadPrekeys: async (upload) =>
      counts(await http.request<PrekeyCounts>('POST', '/api/keys', { json: { upload: toB64u(upload) } })),
    prekeyCounts: async () => counts(await http.request<PrekeyCounts>('GET', '/api/keys/count')),
    async claimBundles(userId): Promise<BundleClaim> {
      const r = await http.request<{
        userId: string;
        identityKey: string;
        deviceList: { version: number; bytes: string };
        devices: { deviceId: string; bundle: string }[];
        unavailable: string[];
      }>('POST', '/api/keys/claim', { json: { userId } });
      return {
        userId: r.userId,
        identityKey: fromB64u(r.identityKey),
        deviceList: fromB64u(r.deviceList.bytes),
        devices: r.devices.map((d) => ({ deviceId: d.deviceId, bundle: fromB64u(d.bundle) })),
        unavailable: r.unavailable,
      };
    },
    async fetchDeviceList(userId) {
      try {
        const r = await http.request<{ deviceList: { bytes: string }; kt: KtProofJson | null }>(
          'GET',
          `/api/users/${seg(userId)}/device-list`,
        );
        return { list: fromB64u(r.deviceList.bytes), kt: ktProof(r.kt) };
      } catch (e) {
        if (isApiError(e, 'not_found')) return null;
        throw e;
      }
    },
    async lookupUser(username) {
      try {
        const r = await http.request<UserJson>('GET', `/api/users/by-name/${seg(username)}`);
        return { userId: r.userId, username: r.username, identityKey: fromB64u(r.identityKey), kt: ktProof(r.kt) };
      } catch (e) {
        if (isApiError(e, 'not_found')) return null;
        throw e;
      }
    },
    ktHead: async () => fromB64u((await http.request<{ head: string }>('GET', '/api/kt/head')).head),
    ktConsistency: async (from, to) =>
      (await http.request<{ proof: string[] }>('GET', `/api/kt/consistency?from=${from}&to=${to}`)).proof.map((h) =>
        fromB64u(h),
      ),
    createConversation: async (kind, entries) =>
      info(
        await http.request<ConversationJson>('POST', '/api/conversations', {
          json: { kind, entries: entries.map((e) => toB64u(e)) },
        }),
      ),
    getConversation: async (id) => info(await http.request<ConversationJson>('GET', `/api/conversations/${seg(id)}`)),
    async listConversations() {
      const r = await http.request<{ conversations: { id: string; kind: ConversationKind }[] }>(
        'GET',
        '/api/conversations',
      );
      return r.conversations.map((c) => ({ id: c.id, kind: c.kind }));
    },
    async fetchMembershipLog(id, afterSeq) {
      const out: Uint8Array[] = [];
      let after = afterSeq;
      for (;;) {
        const r = await http.request<{ entries: { seq: number; entry: string }[] }>(
          'GET',
          `/api/conversations/${seg(id)}/log`,
          { query: { afterSeq: after, limit: LOG_PAGE } },
        );
        for (const e of r.entries) out.push(fromB64u(e.entry));
        const last = r.entries[r.entries.length - 1];
        if (r.entries.length < LOG_PAGE || !last) return out;
        after = last.seq;
      }
    },
    appendMembershipEntry: async (id, entry) =>
      info(
        await http.request<ConversationJson>('POST', `/api/conversations/${seg(id)}/log`, {
          json: { entry: toB64u(entry) },
        }),
      ),
    async fetchMailbox(cursor: MailboxCursor | null) {
      const r = await http.request<{ envelopes: MailboxEnvelope[]; next: MailboxCursor | null }>(
        'GET',
        '/api/mailbox',
        { query: cursor ? { afterConversation: cursor.afterConversation, afterSeq: cursor.afterSeq } : {} },
      );
      return { envelopes: r.envelopes, next: r.next };
    },
    async ackMailbox(acks) {
      if (!acks.length) return;
      for (let i = 0; i < acks.length; i += 100)
        await http.request<void>('POST', '/api/mailbox/ack', { json: { acks: acks.slice(i, i + 100) } });
    },
    async reserveAttachment(conversationId, size, parts) {
      const r = await http.request<{ attachmentId: string; partBytes?: unknown; parts?: unknown }>(
        'POST',
        '/api/attachments',
        { json: parts ? { conversationId, size, parts: true } : { conversationId, size } },
      );
      if (!parts) return { attachmentId: r.attachmentId };
      return { attachmentId: r.attachmentId, partBytes: checkedPartBytes(size, r.partBytes, r.parts) };
    },
    async uploadAttachment(attachmentId, body, opts) {
      await http.upload(`/api/attachments/${seg(attachmentId)}`, body, opts);
    },
    async uploadAttachmentPart(attachmentId, partNumber, body, opts) {
      const r = (await http.upload(`/api/attachments/${seg(attachmentId)}/parts/${partNumber}`, body, opts)) as {
        partNumber: number;
        etag: string;
      };
      return { partNumber: r.partNumber, etag: r.etag };
    },
    async completeAttachment(attachmentId, parts) {
      await http.request<unknown>('POST', `/api/attachments/${seg(attachmentId)}/complete`, {
        json: { parts: parts.map((p) => ({ partNumber: p.partNumber, etag: p.etag })) },
      });
    },
    async cancelAttachment(attachmentId) {
      await http.request<void>('DELETE', `/api/attachments/${seg(attachmentId)}`);
    },
    downloadAttachment: (attachmentId, opts) => http.download(`/api/attachments/${seg(attachmentId)}`, opts),
    // ---- people ----
    async putProfile(sealed) {
      await http.request<unknown>('PUT', '/api/profile', { json: { profile: toB64u(sealed) } });
    },
    async fetchProfile(userId) {
      try {
        const r = await http.request<{ profile: string }>('GET', `/api/users/${seg(userId)}/profile`);
        return fromB64u(r.profile);
      } catch (e) {
        if (isApiError(e, 'not_found')) return null;
        throw e;
      }
    },
    async fetchPrivateSettings() {
      const r = await http.request<{ revision: number; settings: string | null }>('GET', '/api/settings');
      return { revision: r.revision, sealed: r.settings === null ? null : fromB64u(r.settings) };
    },
    async putPrivateSettings(sealed) {
      await http.request<unknown>('PUT', '/api/settings', { json: { settings: toB64u(sealed) } });
    },
  };
}

const counts = (c: PrekeyCounts): PrekeyCounts => ({
  oneTime: c.oneTime,
  kem: c.kem,
  signedPrekey: c.signedPrekey,
});

// ---- REST calls of the account flows -------------------------------------------------------------------

export type ChallengeJson = z.infer<typeof challengeResponse>;
export type LoginJson = z.infer<typeof loginResponse>;
export type SessionJson = z.infer<typeof sessionResponse>;

export interface DeviceJson {
  readonly deviceId: string;
  readonly createdAt: number;
  readonly lastSeenAt: number | null;
  readonly revoked: boolean;
  readonly revokedAt: number | null;
  /** base64url of the encrypted name (only our devices open it: Account.devicesWithNames). */
  readonly name?: string | null;
}

export interface DeviceListJson {
  readonly version: number;
  /** base64url of the signed encoding. */
  readonly bytes: string;
}

/** A key-transparency proof as the users routes send it (worker/domain/kt.ts): base64url values. */
export interface KtProofJson {
  readonly entry: string;
  readonly index: number;
  readonly head: string;
  readonly proof: readonly string[];
}

const ktProof = (j: KtProofJson | null | undefined): KtProof | null =>
  j
    ? { entry: fromB64u(j.entry), index: j.index, head: fromB64u(j.head), proof: j.proof.map((h) => fromB64u(h)) }
    : null;

export interface UserJson {
  readonly userId: string;
  readonly username: string;
  /** base64url. */
  readonly identityKey: string;
  readonly identityVersion: number;
  /** The log's proof of the key (clients go through the engine, which verifies it). */
  readonly kt: KtProofJson | null;
}

/** Typed wrappers of /api/auth, /api/devices and /api/users (bodies as in schema/auth-api.ts, docs/API.md). */
export function createRestApi(http: HttpClient) {
  const post = <T>(path: string, json?: unknown, auth = true) =>
    http.request<T>('POST', path, { ...(json !== undefined ? { json } : {}), auth });
  return {
    challenge: () => post<ChallengeJson>('/api/auth/challenge', undefined, false),
    /** Whether a (valid) username is free — a hint before key generation; registration decides. */
    usernameAvailable: (username: string) =>
      http.request<{ username: string; available: boolean }>(
        'GET',
        `/api/auth/username/${encodeURIComponent(username)}`,
        { auth: false },
      ),
    register: (body: RegisterRequest) => post<TokenResponse>('/api/auth/register', body, false),
    login: (body: {
      username: string;
      passwordPrehash: string;
      deviceId: string;
      challengeId: string;
      challengeSignature: string;
    }) => post<LoginJson>('/api/auth/login', body, false),
    totp: (body: { mfaToken: string; code?: string; recoveryCode?: string }) =>
      post<TokenResponse>('/api/auth/totp', body, false),
    resetIdentity: (body: ResetIdentityRequest) => post<TokenResponse>('/api/auth/reset-identity', body, false),
    session: () => http.request<SessionJson>('GET', '/api/auth/session'),
    logout: () => post<{ ok: true }>('/api/auth/logout'),
    logoutAll: () => post<z.infer<typeof revokedResponse>>('/api/auth/logout-all'),
    revokeSessions: (deviceId: string) =>
      post<z.infer<typeof revokedResponse>>('/api/auth/sessions/revoke', { deviceId }),
    changePassword: (currentPrehash: string, newPrehash: string) =>
      post<z.infer<typeof revokedResponse>>('/api/auth/password', { currentPrehash, newPrehash }),
    totpEnroll: (currentPrehash: string) =>
      post<z.infer<typeof totpEnrollResponse>>('/api/auth/totp/enroll', { currentPrehash }),
    totpConfirm: (code: string) => post<z.infer<typeof recoveryCodesResponse>>('/api/auth/totp/confirm', { code }),
    totpDisable: (code: string) => post<{ ok: true }>('/api/auth/totp/disable', { code }),
    /** Issue 18: one page of everything the server holds about the account (GET /api/account/export). */
    exportAccount: (cursor?: string) =>
      http.request<AccountExportPage>('GET', '/api/account/export', { query: { cursor } }),
    deleteAccount: (body: {
      passwordPrehash: string;
      code?: string;
      recoveryCode?: string;
      leave: { conversationId: string; entries: string[] }[];
    }) => post<{ ok: true; deleted: true }>('/api/account/delete', body),
    devices: () => http.request<{ devices: DeviceJson[]; deviceList: DeviceListJson | null }>('GET', '/api/devices'),
    deviceChallenge: () => post<{ challengeId: string; challenge: string }>('/api/devices/challenge'),
    registerDevice: (deviceList: Uint8Array, challengeId: string, signature: Uint8Array) =>
      post<{ deviceList: DeviceListJson }>('/api/devices', {
        deviceList: toB64u(deviceList),
        challengeId,
        signature: toB64u(signature),
      }),
    revokeDevice: (deviceId: string, deviceList: Uint8Array) =>
      post<{ deviceList: DeviceListJson }>(`/api/devices/${seg(deviceId)}/revoke`, {
        deviceList: toB64u(deviceList),
      }),
    userByName: (username: string) => http.request<UserJson>('GET', `/api/users/by-name/${seg(username)}`),
    deviceListOf: (userId: string) =>
      http.request<Omit<UserJson, 'username'> & { deviceList: DeviceListJson }>(
        'GET',
        `/api/users/${seg(userId)}/device-list`,
      ),
  };
}
export type RestApi = ReturnType<typeof createRestApi>;

// ---- realtime sockets ----------------------------------------------------------------------------------

/** The subset of the WHATWG WebSocket the factory uses (the browser's and the `ws` package's both fit). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface SocketFactoryOptions {
  /** Default: the global WebSocket, else the `ws` package (Node 20). */
  readonly WebSocket?: WebSocketConstructor;
  /** Keep-alive interval (default PING_INTERVAL_MS, as the DO expects). */
  readonly pingIntervalMs?: number;
  /** How long the handshake may take before the attempt counts as failed (default 15 s). */
  readonly openTimeoutMs?: number;
}

let wsModule: Promise<WebSocketConstructor> | null = null;

async function webSocketCtor(given?: WebSocketConstructor): Promise<WebSocketConstructor> {
  if (given) return given;
  const g = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (g) return g;
  const name = 'ws'; // not a static import: the browser bundle must not include it
  wsModule ??= import(/* @vite-ignore */ name).then(
    (m: { WebSocket?: WebSocketConstructor; default?: WebSocketConstructor }) =>
      (m.WebSocket ?? m.default) as WebSocketConstructor,
  );
  return wsModule;
}

function wsUrl(http: HttpClient, path: string): string {
  const base = http.baseUrl || (globalThis as { location?: { href: string } }).location?.href;
  const u = new URL(path, base);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.toString();
}

/**
 * Opens a conversation socket: `POST /api/conversations/:id/ticket`, then the WebSocket with the
 * single-use ticket. A refused ticket for a removed member / revoked device (403 `not_member`) or an
 * ended session is reported as a 4403 close, so createRealtime stops reconnecting; anything else throws
 * and is retried with back-off.
 */
export function createSocketFactory(http: HttpClient, opts: SocketFactoryOptions = {}): SocketFactory {
  const pingMs = opts.pingIntervalMs ?? PING_INTERVAL_MS;
  const openTimeout = opts.openTimeoutMs ?? 15_000;
  return async (conversationId, handlers) => {
    const Ctor = await webSocketCtor(opts.WebSocket);
    let ticket: { ticket: string; path: string };
    try {
      ticket = await http.request('POST', `/api/conversations/${seg(conversationId)}/ticket`);
    } catch (e) {
      if (isApiError(e, 'not_member') || isApiError(e, 'session_revoked')) {
        setTimeout(() => handlers.onClose(CLOSE.forbidden), 0);
        return { send() {}, close() {} };
      }
      throw e;
    }
    const ws = new Ctor(wsUrl(http, ticket.path));
    return new Promise<FrameSocket>((resolve, reject) => {
      let open = false;
      let pinger: ReturnType<typeof setInterval> | null = null;
      const timer = setTimeout(() => {
        if (open) return;
        reject(new Error('WebSocket open timed out'));
        try {
          ws.close();
        } catch {
          /* not open */
        }
      }, openTimeout);
      ws.onopen = () => {
        open = true;
        clearTimeout(timer);
        pinger = setInterval(() => {
          if (ws.readyState === 1) ws.send(WIRE_PING);
        }, pingMs);
        resolve({
          send: (data) => {
            if (ws.readyState === 1) ws.send(data);
          },
          close: (code) => {
            if (pinger) clearInterval(pinger);
            ws.onmessage = null;
            ws.onclose = null;
            try {
              ws.close(code ?? CLOSE.normal);
            } catch {
              /* already closed */
            }
          },
        });
      };
      ws.onmessage = (ev) => {
        const data = typeof ev.data === 'string' ? ev.data : String(ev.data);
        if (data === WIRE_PONG) return;
        handlers.onMessage(data);
      };
      ws.onerror = () => {
        if (!open) {
          clearTimeout(timer);
          reject(new Error('WebSocket failed to open'));
        }
      };
      ws.onclose = (ev) => {
        if (pinger) clearInterval(pinger);
        clearTimeout(timer);
        if (!open) {
          reject(new Error(`WebSocket closed before opening (${ev.code})`));
          return;
        }
        handlers.onClose(ev.code);
      };
    });
  };
}
