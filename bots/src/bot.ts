/**
 * `Bot`: an account with its own device keys that takes part in end-to-end encrypted chats from Node 20.
 * Built ON the client engine (web/src/engine — the web app's keys, sessions, sender keys, outbox/inbox,
 * mailbox sync, resume and prekey maintenance); this module adds only what a program needs around it:
 *
 *  - state: a sealed, crash-safe file store (file-store.ts) in `stateDir`, keyed by E2E_BOT_STATE_KEY;
 *    the session's refresh cookie is kept there too, so a restart resumes without a password round;
 *  - sign-in: registers `username` on first use (fresh keys in `stateDir`), afterwards resumes the saved
 *    session or signs in with the password and the keys in `stateDir`;
 *  - handlers: `on('message')` is called for every decrypted incoming text, at least once — a per-conversation
 *    "handled" mark is stored after each handler resolves, so messages stored before a crash are handed to
 *    the handlers again at the next start (de-duplicate by `seq` if a handler must not repeat);
 *  - sending: `send(username, text)` (a direct conversation, created if needed), `sendTo(conversationId, …)`,
 *    `reply` — each resolves once the server accepted the message (it is durable there);
 *  - listening: `listen()` keeps sockets to every conversation (reconnect + resume by the engine) and
 *    notices new conversations; webhook mode: `handleWebhook(request)` verifies the Standard Webhooks
 *    signature and then syncs the mailbox, so a bot that only runs when called needs no socket;
 *  - key changes: a contact's new identity key blocks sending to them (as in the app) unless the policy says
 *    otherwise — see `KeyChangePolicy` and the README.
 *
 * Does NOT: keep plaintext anywhere but the sealed store, log message text, keys or tokens, or support TOTP
 * on the bot account (sign-in needs the password only).
 * @module
 */
import { Webhook } from 'standardwebhooks';
import {
  MAX_WEBHOOK_BODY_BYTES,
  WEBHOOK_ROTATION_OVERLAP_MS,
  type WebhookEventBody,
  webhookEventBody,
} from '../../schema/webhooks.js';
import {
  Account,
  type ContactView,
  type CookieJar,
  createEngine,
  createHttpApi,
  createSocketFactory,
  defaultCurves,
  type Engine,
  EngineError,
  type EngineEvent,
  fromB64u,
  HttpClient,
  isApiError,
  type MessageView,
  memoryCookieJar,
  memoryLocks,
  readJson,
  type Store,
  writeJson,
} from './engine.js';
import { type FileStore, openFileStore, stateKeyFrom } from './file-store.js';
import { type WebhookApi, type WebhookSecretView, webhookApi } from './webhooks.js';

export type BotErrorCode =
  | 'username_taken'
  | 'needs_second_factor'
  | 'device_not_linked'
  | 'send_timeout'
  | 'send_failed'
  | 'unknown_user'
  | 'closed'
  /** A webhook request body larger than any the server sends (MAX_WEBHOOK_BODY_BYTES): refused unread. */
  | 'payload_too_large';

export class BotError extends Error {
  override readonly name = 'BotError';
  constructor(
    readonly code: BotErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * What happens when a contact's identity key changes (they reset their account, or — the case this guards
 * against — someone who controls the server pretends they did):
 *  - `'refuse'` (default, as in the app): sending to them fails with `identity_changed` until
 *    `acceptKeyChange(userId)` is called; the `keyChange` event says so;
 *  - `'accept'`: the new key is accepted at once (a man in the middle would go unnoticed — only for bots
 *    whose conversations carry nothing worth intercepting);
 *  - a function: decides per change (e.g. accept only users on an allow list, after checking out of band).
 */
export type KeyChangePolicy = 'refuse' | 'accept' | ((change: { userId: string }) => boolean | Promise<boolean>);

export interface BotOptions {
  /** The server's origin, e.g. `https://chat.example.com` or `http://127.0.0.1:5173`. */
  readonly server: string;
  readonly username: string;
  readonly password: string;
  /** Where the sealed state lives (created if missing; one process at a time). */
  readonly stateDir: string;
  /** 32 bytes, base64url; default: the E2E_BOT_STATE_KEY environment variable. */
  readonly stateKey?: string | Uint8Array;
  /** Extra webhook secrets (`whsec_…`) handleWebhook accepts, besides those of endpoints made by `bot.webhooks`. */
  readonly webhookSecrets?: readonly string[];
  readonly keyChanges?: KeyChangePolicy;
  /** How often `listen()` looks for conversations the bot was added to (default 5 s). */
  readonly pollMs?: number;
  /** How long a send waits for the server to accept it (default 30 s). */
  readonly sendTimeoutMs?: number;
  /** A fetch to use (tests, proxies). */
  readonly fetch?: typeof fetch;
  /**
   * The server's key-transparency log key (Ed25519 public key, base64url or 32 bytes; `GET /api/kt/key`
   * prints it). Default: the E2E_BOT_KT_LOG_KEY environment variable; without either, the bot fetches it
   * from the server at start — which trusts the server for it, so pin it for anything real (bots/README.md).
   */
  readonly ktLogKey?: string | Uint8Array;
}

/** The log key the engine verifies key-transparency proofs with (see BotOptions.ktLogKey). */
async function ktLogKey(opts: BotOptions): Promise<Uint8Array> {
  const given = opts.ktLogKey ?? process.env.E2E_BOT_KT_LOG_KEY;
  if (given !== undefined && given !== '') return typeof given === 'string' ? fromB64u(given) : given;
  const res = await (opts.fetch ?? fetch)(new URL('/api/kt/key', opts.server));
  if (!res.ok) throw new Error(`GET /api/kt/key: HTTP ${res.status}`);
  const { publicKey } = (await res.json()) as { publicKey: string };
  return fromB64u(publicKey);
}

export interface SentMessage {
  readonly conversationId: string;
  readonly clientId: string;
  readonly seq: number;
}

export interface BotMessage {
  readonly conversationId: string;
  readonly conversationKind: 'direct' | 'group';
  readonly seq: number;
  /** The sender's message id (unique per sender device). */
  readonly id: string;
  readonly from: { readonly userId: string; readonly deviceId: string; readonly username: string | null };
  readonly text: string;
  readonly sentAt: number;
  /** Sends `text` to the same conversation; resolves once accepted. */
  reply(text: string): Promise<SentMessage>;
}

export interface BotEvents {
  message: BotMessage;
  /** One of our messages reached a recipient device (an end-to-end encrypted delivery receipt). */
  receipt: { readonly conversationId: string; readonly clientId: string; readonly seq: number };
  keyChange: { readonly userId: string; readonly accepted: boolean };
  /** A handler threw, or background work failed (never message text). */
  error: Error;
}

type Handler<E extends keyof BotEvents> = (e: BotEvents[E]) => void | Promise<void>;

const K = {
  handled: (c: string) => `bot/handled/${c}`,
  cookies: 'bot/cookies',
  secrets: 'bot/webhook-secrets',
  seen: 'bot/webhook-seen',
  names: 'bot/names',
};
/** Webhook ids remembered for de-duplication (the newest ones). */
const SEEN_KEPT = 1000;

/** A cookie jar that keeps the refresh cookie in the sealed store, so a restarted bot resumes its session. */
async function storedCookieJar(store: Store): Promise<CookieJar> {
  const jar = memoryCookieJar();
  const lines = new Map<string, string>((await readJson<[string, string][]>(store, K.cookies)) ?? []);
  jar.store([...lines.values()]);
  // Store transactions run in order, and close() queues behind them: the latest cookie is what stays.
  const persist = () => void store.transaction(async (tx) => writeJson(tx, K.cookies, [...lines])).catch(() => {});
  return {
    header: () => jar.header(),
    store(setCookies) {
      jar.store(setCookies);
      for (const line of setCookies) {
        const name = line.slice(0, line.indexOf('=')).trim();
        if (name) lines.set(name, line);
      }
      persist();
    },
    clear() {
      jar.clear();
      lines.clear();
      persist();
    },
  };
}

export class Bot {
  readonly engine: Engine;
  readonly account: Account;
  /** The webhook management API for this account; `create` / `rotate` also keep the secret for handleWebhook. */
  readonly webhooks: WebhookApi;
  private readonly listeners = new Map<keyof BotEvents, Set<Handler<keyof BotEvents>>>();
  private readonly dispatching = new Map<string, Promise<void>>();
  private readonly redispatch = new Set<string>();
  private readonly accepted = new Map<string, { seq: number } | { failed: string }>();
  private readonly waiters = new Set<() => void>();
  private readonly background = new Set<Promise<unknown>>();
  private pollTimer: ReturnType<typeof setInterval> | null = null;
  /** listen() was called: sockets stay open; otherwise (webhook mode) they close after each webhook. */
  private listening = false;
  private closed = false;
  private kinds = new Map<string, 'direct' | 'group'>();

  private constructor(
    private readonly opts: BotOptions,
    private readonly store: FileStore,
    private readonly http: HttpClient,
    engine: Engine,
    readonly userId: string,
    readonly deviceId: string,
  ) {
    this.engine = engine;
    this.account = new Account({ http, engine });
    const api = webhookApi(http);
    this.webhooks = {
      ...api,
      create: async (input) => this.keepSecret(await api.create(input)),
      rotate: async (id) => this.keepSecret(await api.rotate(id)),
    };
    engine.on((e) => this.onEngineEvent(e));
  }

  /**
   * Opens the state in `stateDir` and signs in: registers `username` with fresh keys the first time, then
   * resumes the saved session (or signs in with the password). Handlers added with `on` before the first
   * `listen()` / `sync()` also get messages that were stored but not yet handled before a restart.
   */
  static async open(opts: BotOptions): Promise<Bot> {
    const store = await openFileStore(opts.stateDir, stateKeyFrom(opts.stateKey));
    try {
      const http = new HttpClient({
        baseUrl: opts.server,
        ...(opts.fetch ? { fetch: opts.fetch } : {}),
        cookies: await storedCookieJar(store),
      });
      const engine = createEngine({
        store,
        api: createHttpApi(http),
        realtime: createSocketFactory(http),
        curves: await defaultCurves(),
        rng: (n) => globalThis.crypto.getRandomValues(new Uint8Array(n)),
        locks: memoryLocks(),
        kt: { logKey: await ktLogKey(opts) },
      });
      const account = new Account({ http, engine });
      const own = await engine.identity();
      let session: { userId: string; deviceId: string } | null = null;
      if (!own) {
        try {
          const r = await account.register(opts.username, opts.password);
          if (r.status === 'signed_in') session = r;
        } catch (e) {
          if (isApiError(e, 'username_taken')) {
            throw new BotError(
              'username_taken',
              `"${opts.username}" is registered already and ${opts.stateDir} holds no keys for it`,
            );
          }
          throw e;
        }
      } else {
        session = await account.resume();
        if (!session) {
          const r = await account.login(opts.username, opts.password);
          if (r.status === 'mfa_required') {
            throw new BotError('needs_second_factor', 'the bot account has TOTP enabled; bots sign in with a password');
          }
          if (r.status === 'device_not_linked') throw new BotError('device_not_linked', r.message);
          session = r;
        }
      }
      if (!session) throw new BotError('device_not_linked', 'could not sign in');
      return new Bot(opts, store, http, engine, session.userId, session.deviceId);
    } catch (e) {
      await store.close();
      throw e;
    }
  }

  // ---- events ---------------------------------------------------------------------------------------------

  /** Adds a handler; returns a function that removes it. */
  on<E extends keyof BotEvents>(event: E, handler: Handler<E>): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(handler as Handler<keyof BotEvents>);
    return () => set.delete(handler as Handler<keyof BotEvents>);
  }

  private async emit<E extends keyof BotEvents>(event: E, value: BotEvents[E]): Promise<void> {
    for (const h of this.listeners.get(event) ?? []) {
      try {
        await h(value);
      } catch (err) {
        if (event === 'message') throw err;
        if (event !== 'error') await this.emit('error', err instanceof Error ? err : new Error(String(err)));
      }
    }
  }

  private track(p: Promise<unknown>): void {
    const q = p.catch((err: unknown) => this.emit('error', err instanceof Error ? err : new Error(String(err))));
    this.background.add(q);
    void q.finally(() => this.background.delete(q));
  }

  private onEngineEvent(e: EngineEvent): void {
    if (this.closed) return;
    switch (e.type) {
      case 'message_added':
        if (!e.message.outgoing && e.message.seq !== null) this.dispatch(e.message.conversationId);
        break;
      case 'message_updated': {
        const m = e.message;
        if (!m.outgoing) break;
        if (m.seq !== null && !this.accepted.has(m.clientId)) this.settle(m.clientId, { seq: m.seq });
        if (m.status === 'failed') this.settle(m.clientId, { failed: m.error ?? 'send_failed' });
        if (m.status === 'delivered' && m.seq !== null) {
          this.track(this.emit('receipt', { conversationId: m.conversationId, clientId: m.clientId, seq: m.seq }));
        }
        break;
      }
      case 'key_change':
        if (e.blocked) this.track(this.keyChanged(e.userId));
        break;
      default:
        break;
    }
  }

  private settle(clientId: string, v: { seq: number } | { failed: string }): void {
    this.accepted.set(clientId, v);
    // Outcomes nobody waits for (receipts, sender-key distributions) must not pile up.
    if (this.accepted.size > 1000) this.accepted.delete(this.accepted.keys().next().value!);
    for (const w of [...this.waiters]) w();
  }

  private async keyChanged(userId: string): Promise<void> {
    const policy = this.opts.keyChanges ?? 'refuse';
    const accept = policy === 'accept' ? true : policy === 'refuse' ? false : await policy({ userId });
    if (accept) await this.engine.acceptIdentityChange(userId);
    await this.emit('keyChange', { userId, accepted: accept });
  }

  /** Accepts a contact's new identity key (after checking it out of band, e.g. the safety number). */
  async acceptKeyChange(userId: string): Promise<ContactView> {
    return this.engine.acceptIdentityChange(userId);
  }

  // ---- handlers: at least once, in seq order per conversation ---------------------------------------------

  /** Runs the message handlers for every stored, not yet handled incoming message of the conversation. */
  private dispatch(conversationId: string): void {
    if (this.dispatching.has(conversationId)) {
      this.redispatch.add(conversationId);
      return;
    }
    const run = (async () => {
      do {
        this.redispatch.delete(conversationId);
        await this.handlePending(conversationId);
      } while (this.redispatch.has(conversationId) && !this.closed);
    })()
      .catch((err: unknown) => this.emit('error', err instanceof Error ? err : new Error(String(err))))
      .finally(() => this.dispatching.delete(conversationId));
    this.dispatching.set(conversationId, run);
  }

  private async handlePending(conversationId: string): Promise<void> {
    const handled = (await readJson<number>(this.store, K.handled(conversationId))) ?? 0;
    const todo: MessageView[] = [];
    let before: number | undefined;
    for (;;) {
      const page = await this.engine.messages(conversationId, { ...(before ? { beforeSeq: before } : {}), limit: 200 });
      const seqd = page.filter((m) => m.seq !== null);
      todo.unshift(...seqd.filter((m) => m.seq! > handled));
      const oldest = seqd[0]?.seq ?? null;
      if (oldest === null || oldest <= handled + 1 || seqd.length < 200) break;
      before = oldest;
    }
    for (const m of todo) {
      if (this.closed) return;
      if (!m.outgoing && m.body !== null && m.status === 'received') {
        await this.emit('message', await this.view(m));
      }
      await this.store.transaction(async (tx) => writeJson(tx, K.handled(conversationId), m.seq));
    }
  }

  private async view(m: MessageView): Promise<BotMessage> {
    const conversationKind = await this.kindOf(m.conversationId);
    return {
      conversationId: m.conversationId,
      conversationKind,
      seq: m.seq!,
      id: m.clientId,
      from: { userId: m.from.userId, deviceId: m.from.deviceId, username: await this.usernameOf(m.from.userId) },
      text: m.body!,
      sentAt: m.sentAt,
      reply: (text) => this.sendTo(m.conversationId, text),
    };
  }

  private async kindOf(conversationId: string): Promise<'direct' | 'group'> {
    let k = this.kinds.get(conversationId);
    if (!k) {
      k = (await this.engine.conversation(conversationId)).kind;
      this.kinds.set(conversationId, k);
    }
    return k;
  }

  /** A user's name (cached in the sealed store; null if the server does not say). */
  async usernameOf(userId: string): Promise<string | null> {
    const names = (await readJson<Record<string, string>>(this.store, K.names)) ?? {};
    if (names[userId]) return names[userId];
    try {
      const r = await this.http.request<{ users: { userId: string; username: string }[] }>('GET', '/api/users/names', {
        query: { ids: userId },
      });
      const found = r.users.find((u) => u.userId === userId)?.username ?? null;
      if (found) {
        await this.store.transaction(async (tx) => {
          const cur = (await readJson<Record<string, string>>(tx, K.names)) ?? {};
          writeJson(tx, K.names, { ...cur, [userId]: found });
        });
      }
      return found;
    } catch {
      return null;
    }
  }

  // ---- sending ----------------------------------------------------------------------------------------------

  /** Sends `text` to `username` in a direct conversation (created on first use). */
  async send(username: string, text: string): Promise<SentMessage> {
    const user = await this.account.lookup(username);
    if (!user) throw new BotError('unknown_user', `no user "${username}"`);
    return this.sendTo(await this.directWith(user.userId), text);
  }

  /** Our direct conversation with `userId` (the oldest if several), created if there is none. */
  async directWith(userId: string): Promise<string> {
    for (const c of await this.engine.conversations()) {
      if (c.kind === 'direct' && c.myRole !== null && c.members.some((m) => m.userId === userId)) return c.id;
    }
    const id = await this.engine.createConversation({ kind: 'direct', members: [userId] });
    this.kinds.set(id, 'direct');
    return id;
  }

  /** A group with the given members (usernames), owned by the bot. */
  async createGroup(title: string, usernames: readonly string[]): Promise<string> {
    const ids: string[] = [];
    for (const n of usernames) {
      const u = await this.account.lookup(n);
      if (!u) throw new BotError('unknown_user', `no user "${n}"`);
      ids.push(u.userId);
    }
    const id = await this.engine.createConversation({ kind: 'group', members: ids, title });
    this.kinds.set(id, 'group');
    return id;
  }

  /** Sends `text` to a conversation; resolves once the server accepted it (a seq is assigned). */
  async sendTo(conversationId: string, text: string): Promise<SentMessage> {
    if (this.closed) throw new BotError('closed', 'the bot is closed');
    await this.engine.connect([conversationId]);
    const m = await this.engine.sendText(conversationId, text);
    const timeout = this.opts.sendTimeoutMs ?? 30_000;
    const end = Date.now() + timeout;
    for (;;) {
      const r = this.accepted.get(m.clientId);
      if (r) {
        this.accepted.delete(m.clientId);
        if ('failed' in r) throw new BotError('send_failed', `the message was refused (${r.failed})`);
        return { conversationId, clientId: m.clientId, seq: r.seq };
      }
      const left = end - Date.now();
      if (left <= 0) throw new BotError('send_timeout', `not accepted within ${timeout} ms (it stays queued)`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 1000));
        this.waiters.add(done);
      });
    }
  }

  // ---- receiving ------------------------------------------------------------------------------------------

  /**
   * Fetches, decrypts and acknowledges the whole mailbox (envelopes for devices that were offline), then
   * runs the handlers for what is new. Returns the number of envelopes processed.
   */
  async sync(): Promise<number> {
    const n = await this.engine.syncMailbox();
    await this.catchUp();
    return n;
  }

  /** Handlers for stored-but-unhandled messages of every conversation (after a restart, or a sync). */
  private async catchUp(): Promise<void> {
    for (const c of await this.engine.conversations()) this.dispatch(c.id);
    await Promise.all([...this.dispatching.values()]);
  }

  /**
   * Keeps a socket to every conversation (the engine reconnects with back-off and resumes from the last seq)
   * and looks for new conversations every `pollMs`. Resolves once the current ones are connecting; call
   * `close()` to stop.
   */
  async listen(): Promise<void> {
    this.listening = true;
    await this.engine.connect();
    await this.catchUp();
    const ms = this.opts.pollMs ?? 5_000;
    this.pollTimer ??= setInterval(() => {
      this.track(
        (async () => {
          await this.engine.connect();
          await this.catchUp();
        })(),
      );
    }, ms);
  }

  /** Resolves when every socket is online (or `timeoutMs` passed): for tests and start-up logs. */
  async online(timeoutMs = 15_000): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const ids = (await this.engine.conversations()).filter((c) => c.myRole !== null).map((c) => c.id);
      const states = await Promise.all(ids.map((id) => this.engine.connectionStatus(id)));
      if (states.every((s) => s === 'online' || s === 'forbidden')) return true;
      if (Date.now() > end) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  // ---- webhooks -------------------------------------------------------------------------------------------

  private async keepSecret(v: WebhookSecretView): Promise<WebhookSecretView> {
    await this.store.transaction(async (tx) => {
      const cur = (await readJson<{ id: string; secret: string; at: number }[]>(tx, K.secrets)) ?? [];
      // Keep the new one and, for the rotation's overlap, the previous ones (at most 4 per endpoint).
      const mine = [{ id: v.endpoint.id, secret: v.secret, at: Date.now() }, ...cur];
      const byEndpoint = new Map<string, number>();
      writeJson(
        tx,
        K.secrets,
        mine.filter((s) => {
          const n = (byEndpoint.get(s.id) ?? 0) + 1;
          byEndpoint.set(s.id, n);
          return n <= 4;
        }),
      );
    });
    return v;
  }

  /**
   * The secrets a webhook may be signed with: those given in the options, each endpoint's newest, and one a
   * rotation replaced only during the server's overlap (WEBHOOK_ROTATION_OVERLAP_MS) — a rotated-away
   * (perhaps leaked) secret must stop verifying when the server stops signing with it.
   */
  private async secrets(): Promise<string[]> {
    const kept = (await readJson<{ id: string; secret: string; at: number }[]>(this.store, K.secrets)) ?? [];
    const now = Date.now();
    /** Per endpoint, when the secret seen last (newest first: keepSecret prepends) was created. */
    const replacedAt = new Map<string, number>();
    const live: string[] = [];
    for (const s of kept) {
      const at = replacedAt.get(s.id);
      if (at === undefined || now - at < WEBHOOK_ROTATION_OVERLAP_MS) live.push(s.secret);
      replacedAt.set(s.id, s.at);
    }
    return [...(this.opts.webhookSecrets ?? []), ...live];
  }

  /**
   * Webhook mode: verifies the request with the Standard Webhooks library against the bot's secrets (401 if
   * none matches or the timestamp is off by more than 5 minutes), drops a `webhook-id` already handled (200),
   * and otherwise syncs the mailbox — handlers run before this resolves — and answers 200. The server waits
   * 10 s for the answer; a slower handler makes it retry (the copy is dropped once the first one finished). Works with any
   * WHATWG `Request` (Node 20's global, a serverless runtime's, or `nodeRequest` below).
   */
  async handleWebhook(request: Request): Promise<Response> {
    // Anyone who reaches the endpoint can post, before any signature is checked: read no more than the
    // largest body the server ever sends.
    const body = await boundedText(request, MAX_WEBHOOK_BODY_BYTES);
    if (body === null) {
      return Response.json(
        { error: { code: 'payload_too_large', message: `a webhook body is at most ${MAX_WEBHOOK_BODY_BYTES} bytes` } },
        { status: 413 },
      );
    }
    const headers: Record<string, string> = {};
    request.headers.forEach((v, k) => {
      headers[k] = v;
    });
    let event: WebhookEventBody | null = null;
    for (const secret of await this.secrets()) {
      try {
        const parsed = webhookEventBody.safeParse(new Webhook(secret).verify(body, headers));
        event = parsed.success ? parsed.data : null;
        if (!parsed.success) return Response.json({ ok: true, ignored: 'unknown event' });
        break;
      } catch {
        // try the next secret
      }
    }
    if (!event) {
      return Response.json({ error: { code: 'invalid_signature', message: 'no secret verifies it' } }, { status: 401 });
    }
    const id = headers['webhook-id'] ?? '';
    if (((await readJson<string[]>(this.store, K.seen)) ?? []).includes(id)) {
      return Response.json({ ok: true, duplicate: true });
    }
    switch (event.type) {
      case 'message.created':
      case 'conversation.member_added':
        await this.sync();
        break;
      case 'contact.identity_changed':
        await this.engine.refreshContact(event.data.userId);
        break;
      default:
        break;
    }
    // Remembered only once handled: a delivery retried after a crash mid-way is processed again (the
    // engine drops envelopes it has, handlers resume after their mark), a later copy is dropped.
    await this.store.transaction(async (tx) => {
      const seen = (await readJson<string[]>(tx, K.seen)) ?? [];
      if (!seen.includes(id)) writeJson(tx, K.seen, [...seen.slice(-(SEEN_KEPT - 1)), id]);
    });
    // Webhook mode keeps no socket between calls (replies opened one for their conversation).
    if (!this.listening) {
      await this.idle();
      await this.engine.disconnect();
    }
    return Response.json({ ok: true });
  }

  /** Waits for background work (handlers, receipts, persistence) to settle. */
  async idle(): Promise<void> {
    await this.engine.idle();
    for (let i = 0; i < 100 && (this.dispatching.size > 0 || this.background.size > 0); i++) {
      await Promise.all([...this.dispatching.values(), ...this.background]);
    }
  }

  /** Stops listening, waits for handlers in flight, closes the sockets and releases the state directory. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
    await this.idle().catch(() => undefined);
    this.closed = true;
    this.engine.close();
    await this.store.close();
  }
}

/** The body as text, or null once it is longer than `max` bytes (declared or read: nothing more is read). */
async function boundedText(request: Request, max: number): Promise<string | null> {
  const declared = Number(request.headers.get('content-length') ?? '');
  if (Number.isFinite(declared) && declared > max) {
    await request.body?.cancel().catch(() => undefined);
    return null;
  }
  if (!request.body) return '';
  const reader = request.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel().catch(() => undefined);
      return null;
    }
    parts.push(value);
  }
  return Buffer.concat(parts).toString('utf8');
}

/**
 * A WHATWG Request from a node:http request (for `handleWebhook` behind `http.createServer`). A body larger
 * than MAX_WEBHOOK_BODY_BYTES (declared or read) is not buffered: BotError `payload_too_large` (answer 413).
 */
export async function nodeRequest(
  req: import('node:http').IncomingMessage,
  base = 'http://localhost',
): Promise<Request> {
  const tooLarge = () => new BotError('payload_too_large', `a webhook body is at most ${MAX_WEBHOOK_BODY_BYTES} bytes`);
  if (Number(req.headers['content-length'] ?? 0) > MAX_WEBHOOK_BODY_BYTES) throw tooLarge();
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of req) {
    total += (c as Buffer).length;
    if (total > MAX_WEBHOOK_BODY_BYTES) throw tooLarge(); // leaving the loop stops reading the stream
    chunks.push(c as Buffer);
  }
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers.set(k, v);
  return new Request(new URL(req.url ?? '/', base), {
    method: req.method ?? 'POST',
    headers,
    ...(req.method === 'GET' || req.method === 'HEAD' ? {} : { body: Buffer.concat(chunks) }),
  });
}

/** Writes a WHATWG Response to a node:http response. */
export async function sendNodeResponse(res: import('node:http').ServerResponse, r: Response): Promise<void> {
  res.statusCode = r.status;
  r.headers.forEach((v, k) => {
    res.setHeader(k, v);
  });
  res.end(Buffer.from(await r.arrayBuffer()));
}

export { EngineError };
