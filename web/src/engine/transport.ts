/**
 * What the engine needs from the network, as two interfaces:
 *
 * - `ServerApi` — request/response calls (REST today): prekey upload and counts, bundle claims, device
 *   lists, conversations and their signed membership log, WebSocket tickets, the offline mailbox, and
 *   attachment blobs (reserve, upload with progress, download as a stream).
 *   Binary values are `Uint8Array` here; adapters do the base64url.
 * - `RealtimeChannel` — one WebSocket per open conversation carrying the frames of schema/wire.ts.
 *   `createRealtime` implements it over any `SocketFactory` (the browser WebSocket adapter, the fake
 *   server in tests): every (re)connect starts with `resume` from the last seq the engine durably processed,
 *   the conversation is "online" once the replay is complete, dropped sockets reconnect with exponential
 *   back-off and jitter, and a 4403 close (removed member / revoked device) is final.
 *
 * Does NOT: encrypt or decrypt, decide what to send (outbox.ts) or what to acknowledge (inbox.ts), or know
 * HTTP (http-transport.ts does).
 * @module
 */
import {
  CLOSE,
  type ClientFrame,
  type Envelope,
  type MailboxCursor,
  type MailboxEnvelope,
  mailboxEnvelope,
  mailboxPage,
  type ServerFrame,
  serverFrame,
  WIRE_VERSION,
} from '../../../schema/wire.js';

export type { ClientFrame, Envelope, MailboxCursor, MailboxEnvelope, ServerFrame };

export interface PrekeyCounts {
  readonly oneTime: number;
  readonly kem: number;
  readonly signedPrekey: boolean;
}

export interface BundleClaim {
  readonly userId: string;
  readonly identityKey: Uint8Array;
  /** The user's current signed device list, exactly as signed (verified by the directory). */
  readonly deviceList: Uint8Array;
  readonly devices: readonly { readonly deviceId: string; readonly bundle: Uint8Array }[];
  /** Live devices without a complete set of prekeys. */
  readonly unavailable: readonly string[];
}

/**
 * A user's latest key-transparency log entry as the server proves it: the encoded entry, its leaf index,
 * the signed tree head and the RFC 9162 inclusion proof (transparency.ts verifies all of it).
 */
export interface KtProof {
  readonly entry: Uint8Array;
  readonly index: number;
  readonly head: Uint8Array;
  readonly proof: readonly Uint8Array[];
}

export interface UserLookup {
  readonly userId: string;
  readonly username: string;
  readonly identityKey: Uint8Array;
  readonly kt: KtProof | null;
}

export type ConversationKind = 'direct' | 'group';

export interface ConversationInfo {
  readonly id: string;
  readonly kind: ConversationKind;
  readonly headSeq: number;
  /** The server's fold of the log: informational only — clients trust their own verified replay. */
  readonly members: readonly { readonly userId: string; readonly role: string }[];
}

/**
 * A GET /api/mailbox answer checked against schema/wire.ts (whatever ServerApi fetched it, as every socket frame
 * is): a page of the wrong shape, or whose `next` does not move past `after`, is `invalid_server_response`
 * (nothing of it is processed or acked); an envelope that is not one is left out and counted in `dropped`,
 * like a frame that does not parse — the rest of the page is processed.
 */
export function checkMailboxPage(
  raw: unknown,
  after: MailboxCursor | null,
): { envelopes: MailboxEnvelope[]; next: MailboxCursor | null; dropped: number } {
  const page = mailboxPage.safeParse(raw);
  const next = page.success ? page.data.next : null;
  if (
    !page.success ||
    (next &&
      after &&
      (next.afterConversation < after.afterConversation ||
        (next.afterConversation === after.afterConversation && next.afterSeq <= after.afterSeq)))
  )
    throw new ApiError(502, 'invalid_server_response', 'the server answered GET /api/mailbox with a malformed page');
  const envelopes: MailboxEnvelope[] = [];
  for (const e of page.data.envelopes) {
    const r = mailboxEnvelope.safeParse(e);
    if (r.success) envelopes.push(r.data);
  }
  return { envelopes, next, dropped: page.data.envelopes.length - envelopes.length };
}

/** What the server answers for one uploaded part (handed back to `completeAttachment`). */
export interface PartReceipt {
  readonly partNumber: number;
  readonly etag: string;
}

export interface ServerApi {
  uploadPrekeys(upload: Uint8Array): Promise<PrekeyCounts>;
  prekeyCounts(): Promise<PrekeyCounts>;
  /** Bundles for every live device of `userId` except the caller's device (consumes one-time prekeys). */
  claimBundles(userId: string): Promise<BundleClaim>;
  /**
   * The user's current signed device list with the log's proof of their identity key, or null if the user
   * does not exist.
   */
  fetchDeviceList(userId: string): Promise<{ list: Uint8Array; kt: KtProof | null } | null>;
  /** Username → user id and identity key with the log's proof, or null if there is no such user. */
  lookupUser(username: string): Promise<UserLookup | null>;
  /** The key-transparency log's newest signed tree head. */
  ktHead(): Promise<Uint8Array>;
  /** RFC 9162 consistency proof between two tree sizes (throws an ApiError if the log cannot give one). */
  ktConsistency(from: number, to: number): Promise<Uint8Array[]>;
  createConversation(kind: ConversationKind, entries: readonly Uint8Array[]): Promise<ConversationInfo>;
  getConversation(id: string): Promise<ConversationInfo>;
  listConversations(): Promise<readonly { readonly id: string; readonly kind: ConversationKind }[]>;
  /** Entries with seq > afterSeq, in order (afterSeq = -1 for the whole log). */
  fetchMembershipLog(id: string, afterSeq: number): Promise<Uint8Array[]>;
  appendMembershipEntry(id: string, entry: Uint8Array): Promise<ConversationInfo>;
  fetchMailbox(cursor: MailboxCursor | null): Promise<{ envelopes: MailboxEnvelope[]; next: MailboxCursor | null }>;
  ackMailbox(acks: readonly { readonly conversationId: string; readonly upTo: number }[]): Promise<void>;
  // ---- attachments (docs/API.md §"Attachments") ----
  /**
   * Reserves an id for exactly `size` ciphertext bytes in a conversation we are a member of; with `parts`,
   * for a parts upload whose parts are `partBytes` long (the last one the rest).
   */
  reserveAttachment(
    conversationId: string,
    size: number,
    parts?: boolean,
  ): Promise<{ readonly attachmentId: string; readonly partBytes?: number }>;
  /** Uploads the ciphertext into the reservation; `onProgress(bytesSent)` where the platform can tell. */
  uploadAttachment(attachmentId: string, body: Blob, opts: TransferOptions): Promise<void>;
  /** Part `partNumber` (1-based) of a parts upload; sent again, it replaces the one before. */
  uploadAttachmentPart(
    attachmentId: string,
    partNumber: number,
    body: Blob,
    opts: TransferOptions,
  ): Promise<PartReceipt>;
  /** Completes a parts upload from every part's receipt, in order. */
  completeAttachment(attachmentId: string, parts: readonly PartReceipt[]): Promise<void>;
  /** Drops a reservation that was never completed. */
  cancelAttachment(attachmentId: string): Promise<void>;
  /** The blob, as a stream. 404 `not_found` when it is gone or we are no longer a member. */
  downloadAttachment(attachmentId: string, opts: TransferOptions): Promise<ReadableStream<Uint8Array>>;
  // ---- people (docs/API.md §"Profiles and private settings"): ciphertext only ----
  /** Stores our sealed profile (web/src/protocol/profile.ts). */
  putProfile(sealed: Uint8Array): Promise<void>;
  /** Any user's sealed profile, or null if they have none. */
  fetchProfile(userId: string): Promise<Uint8Array | null>;
  /** Our sealed private settings (revision 0 and null before the first write). */
  fetchPrivateSettings(): Promise<{ readonly revision: number; readonly sealed: Uint8Array | null }>;
  /** Stores them if they carry exactly the stored revision + 1; else ApiError 409 `revision_conflict`. */
  putPrivateSettings(sealed: Uint8Array): Promise<void>;
}

export interface TransferOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (loaded: number) => void;
}

/** An HTTP error with the server's stable error code (`{"error":{"code":…}}`). */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message = code,
  ) {
    super(message);
  }
}

// ---- realtime ----------------------------------------------------------------------------------------

export interface FrameSocket {
  send(data: string): void;
  close(code?: number): void;
}

export interface SocketHandlers {
  onMessage(data: string): void;
  onClose(code: number): void;
}

/** Opens an authenticated socket for one conversation; resolves once it is open. */
export type SocketFactory = (conversationId: string, handlers: SocketHandlers) => Promise<FrameSocket>;

export type ConnectionStatus = 'connecting' | 'online' | 'offline' | 'forbidden';

export interface RealtimeChannel {
  /** Keep a connection to this conversation (idempotent); reconnects until `close`. */
  open(conversationId: string): void;
  close(conversationId: string): void;
  /**
   * The socket's frames could not all be processed: its frames are ignored from now on, and it reconnects
   * (with back-off) to resume from the durable cursor, so what failed is delivered again. A no-op without a
   * socket (a connect under way resumes from the cursor anyway).
   */
  restart(conversationId: string): void;
  /** Whether a socket is wanted for the conversation (opened and not closed since: online, connecting or retrying). */
  isOpen(conversationId: string): boolean;
  closeAll(): void;
  /** Sends if a socket is open (acks may go out during the resume replay); returns false otherwise. */
  send(conversationId: string, frame: ClientFrame): boolean;
  status(conversationId: string): ConnectionStatus;
  /**
   * Moves a conversation waiting for the ticket budget to the front of the queue (the one on screen); a
   * no-op for one already connecting or connected.
   */
  prioritize(conversationId: string): void;
  onFrame(handler: (conversationId: string, frame: ServerFrame) => void): () => void;
  onStatus(handler: (conversationId: string, status: ConnectionStatus) => void): () => void;
}

export interface RealtimeOptions {
  readonly connect: SocketFactory;
  /** The last seq durably processed for the conversation (resume point), read at every (re)connect. */
  readonly lastSeq: (conversationId: string) => Promise<number>;
  readonly backoff?: { readonly baseMs: number; readonly maxMs: number };
  readonly random?: () => number;
  readonly setTimer?: (fn: () => void, ms: number) => unknown;
  readonly clearTimer?: (handle: unknown) => void;
  /** Clock for the ticket budget (ms). */
  readonly now?: () => number;
  /**
   * Socket opens (each spends one server ticket) allowed at once and per minute after that. The server allows
   * 120 tickets a minute per device (docs/API.md); the default stays under it, so an account with hundreds of
   * conversations never has its opens refused — the rest wait in a queue the visible conversation can jump.
   */
  readonly ticketBudget?: { readonly burst: number; readonly perMinute: number };
}

/** Default ticket budget: under the server's 120 tickets / min per device. */
export const TICKET_BUDGET = { burst: 100, perMinute: 100 } as const;

interface Conn {
  socket: FrameSocket | null;
  status: ConnectionStatus;
  attempt: number;
  timer: unknown;
  wanted: boolean;
  generation: number;
  /** Restarts after a processing failure, for their back-off (the socket's `attempt` resets once online). */
  restarts: number;
  restartedAt: number;
}

export function createRealtime(opts: RealtimeOptions): RealtimeChannel {
  const backoff = opts.backoff ?? { baseMs: 500, maxMs: 30_000 };
  const random = opts.random ?? Math.random;
  const setTimer = opts.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
  const clearTimer = opts.clearTimer ?? ((h) => clearTimeout(h as ReturnType<typeof setTimeout>));
  const conns = new Map<string, Conn>();
  const now = opts.now ?? Date.now;
  const budget = opts.ticketBudget ?? TICKET_BUDGET;
  let tokens = budget.burst;
  let refilledAt = now();
  /** Conversations waiting for a token, in the order they will open. */
  const waiting: string[] = [];
  let drainTimer: unknown = null;
  const refill = () => {
    const t = now();
    tokens = Math.min(budget.burst, tokens + (Math.max(0, t - refilledAt) * budget.perMinute) / 60_000);
    refilledAt = t;
  };
  const drain = () => {
    drainTimer = null;
    refill();
    while (waiting.length > 0 && tokens >= 1) {
      const id = waiting.shift()!;
      const c = conns.get(id);
      if (!c?.wanted) continue;
      tokens -= 1;
      void connect(id, c);
    }
    if (waiting.length > 0) drainTimer = setTimer(drain, Math.ceil(((1 - tokens) * 60_000) / budget.perMinute));
  };
  /** Connects now if the budget allows, otherwise queues (the conversation shows as connecting meanwhile). */
  const start = (id: string, c: Conn) => {
    refill();
    if (waiting.length === 0 && tokens >= 1) {
      tokens -= 1;
      void connect(id, c);
      return;
    }
    setStatus(id, c, 'connecting');
    if (!waiting.includes(id)) waiting.push(id);
    if (drainTimer === null) drain();
  };
  const frameHandlers = new Set<(c: string, f: ServerFrame) => void>();
  const statusHandlers = new Set<(c: string, s: ConnectionStatus) => void>();

  const setStatus = (id: string, c: Conn, s: ConnectionStatus) => {
    if (c.status === s) return;
    c.status = s;
    for (const h of statusHandlers) h(id, s);
  };

  const schedule = (id: string, c: Conn) => {
    if (!c.wanted || c.status === 'forbidden') return;
    const ms = Math.min(backoff.maxMs, backoff.baseMs * 2 ** c.attempt) * (0.5 + random() / 2);
    c.attempt++;
    c.timer = setTimer(() => {
      c.timer = null;
      start(id, c);
    }, ms);
  };

  const resume = async (id: string, c: Conn) => {
    const after = await opts.lastSeq(id);
    c.socket?.send(JSON.stringify({ v: WIRE_VERSION, type: 'resume', after }));
  };

  const connect = async (id: string, c: Conn) => {
    const gen = ++c.generation;
    setStatus(id, c, 'connecting');
    try {
      const socket = await opts.connect(id, {
        onMessage: (data) => {
          if (gen !== c.generation) return;
          let frame: ServerFrame;
          try {
            frame = serverFrame.parse(JSON.parse(data));
          } catch {
            return; // a frame we cannot parse is ignored; the server's frames are versioned
          }
          if (frame.type === 'resume') {
            if (frame.more) c.socket?.send(JSON.stringify({ v: WIRE_VERSION, type: 'resume', after: frame.through }));
            else {
              c.attempt = 0;
              setStatus(id, c, 'online');
            }
          }
          for (const h of frameHandlers) h(id, frame);
        },
        onClose: (code) => {
          if (gen !== c.generation) return;
          c.socket = null;
          if (code === CLOSE.forbidden) {
            setStatus(id, c, 'forbidden');
            return;
          }
          setStatus(id, c, 'offline');
          schedule(id, c);
        },
      });
      if (gen !== c.generation || !c.wanted) {
        socket.close(CLOSE.normal);
        return;
      }
      c.socket = socket;
      await resume(id, c);
    } catch {
      if (gen !== c.generation) return;
      setStatus(id, c, 'offline');
      schedule(id, c);
    }
  };

  const close = (id: string) => {
    const c = conns.get(id);
    if (!c) return;
    c.wanted = false;
    c.generation++;
    if (c.timer) clearTimer(c.timer);
    const queued = waiting.indexOf(id);
    if (queued >= 0) waiting.splice(queued, 1);
    c.socket?.close(CLOSE.normal);
    c.socket = null;
    setStatus(id, c, 'offline');
    conns.delete(id);
  };

  return {
    open(id) {
      if (conns.has(id)) return;
      const c: Conn = {
        socket: null,
        status: 'offline',
        attempt: 0,
        timer: null,
        wanted: true,
        generation: 0,
        restarts: 0,
        restartedAt: 0,
      };
      conns.set(id, c);
      start(id, c);
    },
    prioritize(id) {
      const i = waiting.indexOf(id);
      if (i > 0) {
        waiting.splice(i, 1);
        waiting.unshift(id);
      }
    },
    close,
    restart(id) {
      const c = conns.get(id);
      if (!c?.wanted || !c.socket) return;
      c.generation++;
      c.socket.close(CLOSE.normal);
      c.socket = null;
      // A failure that repeats (the store keeps failing) backs off like a socket that keeps dropping; a quiet
      // while after the last restart starts over.
      if (now() - c.restartedAt > 2 * backoff.maxMs) c.restarts = 0;
      c.restartedAt = now();
      c.attempt = Math.max(c.attempt, c.restarts++);
      setStatus(id, c, 'offline');
      schedule(id, c);
    },
    closeAll() {
      for (const id of [...conns.keys()]) close(id);
      if (drainTimer !== null) clearTimer(drainTimer);
      drainTimer = null;
    },
    send(id, frame) {
      const c = conns.get(id);
      if (!c?.socket) return false;
      c.socket.send(JSON.stringify(frame));
      return true;
    },
    status: (id) => conns.get(id)?.status ?? 'offline',
    isOpen: (id) => conns.has(id),
    onFrame(h) {
      frameHandlers.add(h);
      return () => frameHandlers.delete(h);
    },
    onStatus(h) {
      statusHandlers.add(h);
      return () => statusHandlers.delete(h);
    },
  };
}
