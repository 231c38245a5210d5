/**
 * ConversationDO — one Durable Object per conversation (`idFromName(conversationId)`): the conversation's
 * single writer for ordering and the hub of its realtime fan-out.
 *
 * Responsibilities:
 *  - accept WebSockets the Worker has already authenticated (ticket + membership + live device; the
 *    verified ids arrive in INTERNAL_* headers on a Request the Worker built) with the Hibernation API;
 *    attachments hold ids only; a `{"type":"ping"}` auto-response keeps idle sockets cheap and an alarm
 *    reaps sockets whose last ping is older than DELIVERY_LIMITS.staleSocketMs (close 4408);
 *  - validate every frame against schema/wire.ts (bad frames → `error` frame, socket stays; past the hard
 *    cap → close 1009); never throw out of a handler;
 *  - check a send against the cached member/device set (re-read from D1 once on a mismatch, when dropped by
 *    the membership / device RPCs, and whenever it is older than DELIVERY_LIMITS.deviceSetTtlMs — the RPCs
 *    are best effort, the TTL bounds how long a missed one is trusted), rate-limit it per device (token
 *    bucket), then queue it for the group commit: the queued sends get `seq`/`ts` in the one DO-SQLite
 *    transaction that persists them all (store.ts: a group message is one log row tagged with its
 *    recipient-set epoch, a pairwise one to one device is one row too, one to several devices adds a
 *    row per device); one answer per sender socket (`accepted`, or `accepted_batch` for several of its
 *    sends) and one `deliver` per recipient live socket go out only after that commit (output gate);
 *  - keep every envelope pending until its device acks (pairwise rows; ack cursors for group and direct
 *    messages); copy the un-acked ones to the D1 mailbox in batches from the alarm
 *    (DELIVERY_LIMITS.flushDelayMs after they were written), replay them on `resume`;
 *  - disappearing messages (issue 17): the conversation's timer comes with the member/device set (D1
 *    conversations.timer_seconds, written with the verified set_timer entry); the alarm drops every envelope
 *    older than min(timer, mailbox TTL) from its store and from D1 (mailbox rows, group envelopes);
 *  - membershipChanged / deviceRevoked RPCs: close removed members' / revoked devices' sockets with 4403,
 *    push the signed membership entry, delete a revoked device's envelopes here and in D1.
 *
 * Does NOT: see plaintext (every `c` is an opaque ciphertext produced by web/src/protocol), authenticate
 * (the Worker does, before forwarding — the DO is not reachable from outside), or verify membership
 * signatures (clients verify the membership log; the `members` table is its fold).
 */
import { DurableObject } from 'cloudflare:workers';
import {
  CLIENT_FRAME_TYPES,
  CLOSE,
  type ClientFrame,
  clientFrame,
  type DeviceRef,
  type Envelope,
  HARD_FRAME_BYTES,
  MAX_ACCEPTED_BATCH,
  MAX_CIPHERTEXT_BYTES,
  MAX_DELIVER_BATCH,
  MAX_FRAME_BYTES,
  MAX_PAIRWISE_RECIPIENTS,
  type ReceiptFrame,
  type SendFrame,
  type ServerFrame,
  type TypingFrame,
  WIRE_PING,
  WIRE_PONG,
  WIRE_VERSION,
  type WireErrorCode,
  wireId,
} from '../schema/wire.js';
import { fromB64u, toB64u } from '../web/src/protocol/bytes.js';
import { makeDb } from './db.js';
import { type DeliveryConfig, deliveryConfig } from './delivery/config.js';
import {
  compareAddressed,
  type DeviceSet,
  deviceKey,
  isLiveMemberDevice,
  liveDevicesOf,
  loadDeviceSet,
} from './delivery/device-set.js';
import {
  deleteDeviceMailbox,
  expireConversation,
  flushOutbox,
  forgetUserMailbox,
  readMailbox,
} from './delivery/mailbox-db.js';
import { type AppendResult, DeliveryStore, type Epoch, type ReplayRow } from './delivery/store.js';
import type { Env } from './env.js';
import { type LogFields, log, logId } from './log.js';
import { count } from './metrics.js';
import { emitMessageEvents } from './webhooks/emit.js';

/** Close code for "you are no longer allowed here" (device revoked, member removed). */
export const CLOSE_FORBIDDEN = CLOSE.forbidden;
/** Internal headers the Worker sets on a forwarded upgrade after authenticating it (never from clients). */
export const INTERNAL_USER_HEADER = 'X-E2E-User-Id';
export const INTERNAL_DEVICE_HEADER = 'X-E2E-Device-Id';
/** The session (token family) the ticket was minted under: sockets are tagged with it (sessionsEnded). */
export const INTERNAL_FAMILY_HEADER = 'X-E2E-Family-Id';
export const INTERNAL_CONVERSATION_HEADER = 'X-E2E-Conversation-Id';
export const INTERNAL_ROLE_HEADER = 'X-E2E-Role';

/** Typing signals per device: a burst, then this many per second (a person types one signal per ~3 s). */
export const TYPING_BURST = 10;
export const TYPING_PER_SEC = 2;

/** What a socket remembers across hibernation: ids, connect time, and whether it gets live deliveries. */
interface Attachment {
  u: string;
  d: string;
  /** Connected at (ms): the reaper's reference until the first ping. */
  t: number;
  /** Set after the socket's first complete `resume`: from then on it receives live `deliver` frames. */
  live: boolean;
}

/** A send that passed every check, waiting for the group commit (ConversationDO.drainSends). */
interface QueuedSend {
  ws: WebSocket;
  sender: DeviceRef;
  id: string;
  kind: 'message' | 'receipt';
  status: 'delivered' | 'read' | null;
  /** The member/device set it was checked against (its group epoch); null for a queued retry. */
  set: DeviceSet | null;
  /** Sender-key ciphertext (bytes to store, base64url as received to fan out), or null (pairwise). */
  group: { c: Uint8Array; b64: string } | null;
  /** Pairwise recipients: ids, `deviceKey`, ciphertext bytes to store and base64url to fan out. */
  recipients: { u: string; d: string; k: string; c: Uint8Array; b64: string }[];
  /** It took a send token (given back if the group commit finds it is a retry of an accepted message). */
  spentToken: boolean;
}

/** A live socket of the group commit's fan-out and the envelopes it gets from the commit in progress. */
interface LiveTarget {
  ws: WebSocket;
  key: string;
  out: string[];
  bytes: number;
}

interface LiveSockets {
  all: LiveTarget[];
  byKey: Map<string, LiveTarget[]>;
}

/** A `deliver` frame's envelopes (JSON text) stay under the frame limit clients are built for. */
const DELIVER_FRAME_CHARS = MAX_FRAME_BYTES - 1024;

/** Adds an envelope to a socket's `deliver` frame of this commit (a full frame is sent first). */
function pushEnvelope(to: LiveTarget, envelope: string): void {
  if (to.out.length >= MAX_DELIVER_BATCH || to.bytes + envelope.length > DELIVER_FRAME_CHARS) {
    send(to.ws, deliverFrame(to.out));
    to.out = [];
    to.bytes = 0;
  }
  to.out.push(envelope);
  to.bytes += envelope.length + 1;
}
/**
 * An envelope's JSON up to its `mode` value: `{"seq":…,"ts":…,"from":{"u":…,"d":…},"id":…,"kind":…,["status":…,]"mode":`
 * — the same text and key order as JSON.stringify of the Envelope; every string in it passed wireId (ids)
 * or is a fixed label, so nothing needs escaping. The caller appends `"group","c":"…"}` or the pairwise
 * mode and that device's ciphertext (base64url as received). Encoded once per message.
 */
const envelopeHead = (seq: number, ts: number, q: QueuedSend): string =>
  `{"seq":${seq},"ts":${ts},"from":{"u":"${q.sender.u}","d":"${q.sender.d}"},"id":"${q.id}","kind":"${q.kind}",${q.status ? `"status":"${q.status}",` : ''}"mode":`;
const deliverFrame = (envelopes: string[]) =>
  `{"v":${WIRE_VERSION},"type":"deliver","envelopes":[${envelopes.join(',')}]}`;

/**
 * The answer frame for entries[from … from + MAX_ACCEPTED_BATCH): `accepted` for a lone entry, else
 * `accepted_batch` — the same text as JSON.stringify of the frame.
 */
function answerFrame(entries: string[], from: number): string {
  const end = Math.min(entries.length, from + MAX_ACCEPTED_BATCH);
  if (end - from === 1) return `{"v":${WIRE_VERSION},"type":"accepted",${entries[from]}}`;
  const list = from === 0 && end === entries.length ? entries : entries.slice(from, end);
  return `{"v":${WIRE_VERSION},"type":"accepted_batch","accepted":[{${list.join('},{')}}]}`;
}

const userTag = (u: string) => `u:${u}`;
const deviceTag = (u: string, d: string) => `d:${u}:${d}`;
const familyTag = (f: string) => `f:${f}`;
const MAX_RPC_ENTRY_CHARS = 8192;
/** schema/wire.ts `wireId` and `ciphertextB64u`, for the hand-checked fast path in fastFrame(). */
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const B64U_RE = /^[A-Za-z0-9_-]+$/;
const MAX_CIPHERTEXT_CHARS = Math.ceil((MAX_CIPHERTEXT_BYTES * 4) / 3);

const isCiphertext = (c: unknown): c is string =>
  typeof c === 'string' && c.length <= MAX_CIPHERTEXT_CHARS && B64U_RE.test(c);

/**
 * The frames of the hot path — a `send` (sender-key `group` or pairwise `to`) and an `ack` — checked by hand
 * exactly as schema/wire.ts would (same keys, same id / base64url / seq / recipient-count rules); anything
 * else returns null and goes through the zod schema. `v` and `type` were checked by the caller. Saves the
 * zod union walk on every message (for a pairwise send, one strict-object parse per recipient as well).
 */
export function fastFrame(o: Record<string, unknown>): ClientFrame | null {
  const n = Object.keys(o).length;
  if (o.type === 'send' && n === 4) {
    const { id, group, to } = o;
    if (typeof id !== 'string' || !ID_RE.test(id)) return null;
    if (group !== undefined) return isCiphertext(group) ? { v: WIRE_VERSION, type: 'send', id, group } : null;
    if (!Array.isArray(to) || to.length < 1 || to.length > MAX_PAIRWISE_RECIPIENTS) return null;
    for (const t of to as unknown[]) {
      if (typeof t !== 'object' || t === null || Array.isArray(t) || Object.keys(t).length !== 3) return null;
      const { u, d, c } = t as Record<string, unknown>;
      if (typeof u !== 'string' || typeof d !== 'string' || !ID_RE.test(u) || !ID_RE.test(d) || !isCiphertext(c)) {
        return null;
      }
    }
    // Each item is a JSON-parsed object with exactly the keys u, d, c, checked above: used as it is.
    return { v: WIRE_VERSION, type: 'send', id, to: to as { u: string; d: string; c: string }[] };
  }
  if (o.type === 'ack' && n === 3) {
    const { upTo } = o;
    if (typeof upTo === 'number' && Number.isSafeInteger(upTo) && upTo >= 0) {
      return { v: WIRE_VERSION, type: 'ack', upTo };
    }
  }
  return null;
}

/** checkSend's answer when the member/device set must be re-read from D1 before it can decide. */
const REFRESH = Symbol('refresh');

class FrameError extends Error {
  constructor(
    readonly code: WireErrorCode,
    message: string,
    readonly extra: Partial<Extract<ServerFrame, { type: 'error' }>> = {},
  ) {
    super(message);
  }
}

function send(ws: WebSocket, frame: ServerFrame | string): void {
  try {
    ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  } catch {
    // The socket is closing; the runtime reaps it.
  }
}

function closeWs(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason);
  } catch {
    // already closed
  }
}

const errorFrame = (code: WireErrorCode, message: string, extra: object = {}): ServerFrame =>
  ({ v: WIRE_VERSION, type: 'error', code, message, ...extra }) as ServerFrame;

function toEnvelope(r: ReplayRow): Envelope {
  return {
    seq: r.seq,
    ts: r.ts,
    from: { u: r.sender_user, d: r.sender_device },
    id: r.client_id,
    kind: r.kind,
    ...(r.status ? { status: r.status } : {}),
    mode: r.grp ? 'group' : 'pairwise',
    c: toB64u(new Uint8Array(r.c ?? new ArrayBuffer(0))),
  };
}

export class ConversationDO extends DurableObject<Env> {
  private readonly store: DeliveryStore;
  private readonly cfg: DeliveryConfig;
  private conversationId: string | null = null;
  private deviceSet: DeviceSet | null = null;
  /**
   * Bumped by every RPC that changes the set in D1 (membership, devices, revocation, account deletion):
   * a read started under an older generation may predate the change, so it is neither joined nor installed.
   */
  private deviceSetGen = 0;
  private deviceSetLoad: { gen: number; set: Promise<DeviceSet> } | null = null;
  /** Per-device send token buckets (in memory: a wake from hibernation starts them full). */
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  /** Per-device typing-signal buckets (in memory; issue 17). */
  private readonly typingBuckets = new Map<string, { tokens: number; at: number }>();
  private readonly attachments = new WeakMap<WebSocket, Attachment>();
  /** Last frame per socket (in memory), so an active sender that does not ping is not reaped. */
  private readonly lastFrameAt = new WeakMap<WebSocket, number>();
  private alarmAt: number | null = null;
  private flushing: Promise<void> | null = null;
  /** Highest acked seq per device not yet applied to storage (see handleAck). */
  private readonly acks = new Map<string, { u: string; d: string; upTo: number }>();
  /** The recipient-set epoch of the cached device set (dropped whenever the set is changed or replaced). */
  private epochMemo: { set: DeviceSet; epoch: Epoch } | null = null;
  /** Each socket's device key (in memory; derived from its attachment). */
  private readonly socketKeys = new WeakMap<WebSocket, string>();
  /** The last send of each socket still being checked (handleSend runs one socket's sends in order). */
  private readonly sendChains = new WeakMap<WebSocket, Promise<void>>();
  /** Checked sends waiting for the group commit (drainSends), in arrival order, and their client ids. */
  private queue: QueuedSend[] = [];
  private readonly queuedKeys = new Set<string>();
  private drainTimer: ReturnType<typeof setTimeout> | null = null;
  /** The live sockets for the group commit's fan-out (liveTargets); null: rebuild before the next use. */
  private liveSockets: LiveSockets | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.cfg = deliveryConfig(env.DELIVERY_LIMITS);
    // Answered by the runtime without waking the object (keeps hibernation cheap).
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(WIRE_PING, WIRE_PONG));
    this.store = new DeliveryStore(ctx.storage);
    void ctx.blockConcurrencyWhile(async () => {
      this.store.init();
      this.conversationId = this.store.state().conversationId;
      this.alarmAt = await ctx.storage.getAlarm();
      // Messages committed just before an eviction whose alarm was never set: their flush and webhook events
      // must still happen (the log holds them; events_through says how far events went).
      if (this.alarmAt === null && this.store.eventsThrough() < this.store.lastSeq()) {
        await this.ensureAlarm(Date.now());
      }
    });
  }

  /** A log line with the conversation as a keyed hash (`conv`), never the id (worker/log.ts). */
  private log(level: 'info' | 'warn' | 'error', event: string, fields: LogFields = {}): void {
    log(level, event, { conv: this.conversationId ? logId(this.env, 'c', this.conversationId) : undefined, ...fields });
  }

  // ---- connect ------------------------------------------------------------------------------------------

  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get('Upgrade')?.toLowerCase() !== 'websocket') {
      return Response.json(
        { error: { code: 'upgrade_required', message: 'expected a WebSocket upgrade' } },
        { status: 426 },
      );
    }
    const u = request.headers.get(INTERNAL_USER_HEADER) ?? '';
    const d = request.headers.get(INTERNAL_DEVICE_HEADER) ?? '';
    const conv = request.headers.get(INTERNAL_CONVERSATION_HEADER) ?? '';
    const f = request.headers.get(INTERNAL_FAMILY_HEADER) ?? '';
    if ([u, d, conv, f].some((x) => !wireId.safeParse(x).success)) {
      return Response.json(
        { error: { code: 'unauthenticated', message: 'not forwarded by the Worker' } },
        { status: 403 },
      );
    }
    if (this.conversationId === null) {
      this.store.setConversationId(conv);
      this.conversationId = conv;
    } else if (this.conversationId !== conv) {
      return Response.json({ error: { code: 'wrong_object', message: 'conversation mismatch' } }, { status: 400 });
    }
    // A device added since the cache was filled: refresh now rather than refuse its first send.
    if (this.deviceSet && !isLiveMemberDevice(this.deviceSet, u, d)) this.deviceSet = null;
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    this.ctx.acceptWebSocket(server, [userTag(u), deviceTag(u, d), familyTag(f)]);
    this.liveSockets = null;
    const att: Attachment = { u, d, t: Date.now(), live: false };
    server.serializeAttachment(att);
    this.attachments.set(server, att);
    count(this.env, 'sockets_opened');
    this.log('info', 'socket_open', { user: logId(this.env, 'u', u), sockets: this.ctx.getWebSockets().length });
    await this.ensureAlarm(Date.now() + this.cfg.reapIntervalMs);
    return new Response(null, { status: 101, webSocket: client });
  }

  private attachment(ws: WebSocket): Attachment | null {
    let att = this.attachments.get(ws);
    if (!att) {
      att = (ws.deserializeAttachment() as Attachment | null) ?? undefined;
      if (att) this.attachments.set(ws, att);
    }
    return att ?? null;
  }

  // ---- frames -------------------------------------------------------------------------------------------

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    // The frame's client message id once it is known: every error about a send or receipt carries it, so
    // the client can tell which entry it answers (an id-less answer would leave that entry waiting for good).
    const seen: { id?: string } = {};
    try {
      this.lastFrameAt.set(ws, Date.now());
      await this.handleFrame(ws, message, seen);
    } catch (err) {
      const about = seen.id ? { id: seen.id } : {};
      if (err instanceof FrameError) {
        count(
          this.env,
          err.code === 'rate_limited' ? 'rate_limited' : 'errors',
          err.code === 'rate_limited' ? 'send' : err.code,
        );
        send(ws, errorFrame(err.code, err.message, { ...about, ...err.extra }));
      } else {
        count(this.env, 'errors', 'internal');
        this.log('error', 'conversation_frame_failed', { type: err instanceof Error ? err.name : 'unknown' });
        send(ws, errorFrame('internal', 'internal error; retry the frame', about));
      }
    }
  }

  private async handleFrame(ws: WebSocket, message: string | ArrayBuffer, seen: { id?: string }): Promise<void> {
    const rawLength = typeof message === 'string' ? message.length : message.byteLength;
    if (rawLength > HARD_FRAME_BYTES) {
      this.closeSocket(ws, CLOSE.tooBig, 'frame over the hard cap');
      return;
    }
    if (typeof message !== 'string') throw new FrameError('bad_frame', 'frames are JSON text');
    // UTF-8 is at most 3 bytes per UTF-16 unit: short frames need no encoding pass.
    const size = message.length * 3 <= MAX_FRAME_BYTES ? message.length : new TextEncoder().encode(message).byteLength;
    if (size > HARD_FRAME_BYTES) {
      this.closeSocket(ws, CLOSE.tooBig, 'frame over the hard cap');
      return;
    }
    if (size > MAX_FRAME_BYTES) throw new FrameError('frame_too_large', `frames are at most ${MAX_FRAME_BYTES} bytes`);
    let raw: unknown;
    try {
      raw = JSON.parse(message);
    } catch {
      throw new FrameError('bad_frame', 'not JSON');
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new FrameError('bad_frame', 'a frame is a JSON object');
    }
    const obj = raw as { v?: unknown; type?: unknown; id?: unknown };
    const id = typeof obj.id === 'string' && ID_RE.test(obj.id) ? obj.id : undefined;
    if (id !== undefined && (obj.type === 'send' || obj.type === 'receipt')) seen.id = id;
    if (!(CLIENT_FRAME_TYPES as readonly unknown[]).includes(obj.type)) {
      throw new FrameError('unknown_type', 'unknown frame type', id ? { id } : {});
    }
    if (obj.v !== WIRE_VERSION) {
      throw new FrameError('unsupported_version', `wire version ${WIRE_VERSION} expected`, id ? { id } : {});
    }
    let frame = fastFrame(raw as Record<string, unknown>);
    if (!frame) {
      const parsed = clientFrame.safeParse(raw);
      if (!parsed.success) throw new FrameError('bad_frame', 'frame failed validation', id ? { id } : {});
      frame = parsed.data;
    }
    const att = this.attachment(ws);
    if (!att) {
      this.closeSocket(ws, CLOSE.internal, 'unknown socket');
      return;
    }
    await this.dispatch(ws, att, frame);
  }

  private async dispatch(ws: WebSocket, att: Attachment, frame: ClientFrame): Promise<void> {
    switch (frame.type) {
      case 'send':
      case 'receipt': {
        // One socket's sends are checked in arrival order: a send waiting on a device-set read from D1 must
        // not be passed by the next one (which would get the earlier seq and see no queued retry). With
        // nothing of this socket's waiting, the send is checked now (synchronously unless D1 must be read).
        const prev = this.sendChains.get(ws);
        const run = prev ? prev.then(() => this.handleSend(ws, att, frame)) : this.handleSend(ws, att, frame);
        if (!run) return;
        const tail = run.catch(() => undefined);
        this.sendChains.set(ws, tail);
        void tail.then(() => {
          if (this.sendChains.get(ws) === tail) this.sendChains.delete(ws);
        });
        return run;
      }
      case 'ack':
        return this.handleAck(att, frame.upTo);
      case 'resume':
        // A replay that fails (e.g. the D1 read below the DO's retention) cannot be answered with an error
        // the client could match — a resume has no id, and the socket would stay short of 'online' for good,
        // its sends never reset: close it with 1011 instead; the client reconnects with back-off and resumes.
        return this.handleResume(ws, att, frame.after).catch((err: unknown) => {
          count(this.env, 'errors', 'internal');
          this.log('error', 'conversation_resume_failed', { type: err instanceof Error ? err.name : 'unknown' });
          this.closeSocket(ws, CLOSE.internal, 'resume failed');
        });
      case 'typing':
        return this.handleTyping(ws, att, frame);
    }
  }

  // ---- typing (issue 17): relayed to live sockets, never sequenced, never stored -----------------------

  /**
   * An encrypted typing signal: from a live member device, relayed to the addressed live member devices'
   * live sockets (every other live member socket for a sender-key signal) and forgotten. Nothing is written
   * to DO storage or D1; a device that is not connected never learns of it. Rate-limited per device
   * (TYPING_BURST, TYPING_PER_SEC) apart from the send bucket, so a typing flood never delays messages.
   */
  private async handleTyping(ws: WebSocket, att: Attachment, frame: TypingFrame): Promise<void> {
    const now = Date.now();
    const key = deviceKey(att.u, att.d);
    const b = this.typingBuckets.get(key) ?? { tokens: TYPING_BURST, at: now };
    b.tokens = Math.min(TYPING_BURST, b.tokens + ((now - b.at) / 1000) * TYPING_PER_SEC);
    b.at = now;
    this.typingBuckets.set(key, b);
    if (b.tokens < 1) {
      const retryAfterMs = Math.ceil(((1 - b.tokens) / TYPING_PER_SEC) * 1000);
      throw new FrameError('rate_limited', 'typing signals too fast', { retryAfterMs });
    }
    b.tokens -= 1;
    const set = await this.devices();
    if (!isLiveMemberDevice(set, att.u, att.d)) {
      this.closeSocket(ws, CLOSE.forbidden, 'not a member or device revoked');
      return;
    }
    const from = { u: att.u, d: att.d };
    const targets = new Map<string, string>(); // device key → ciphertext
    if ('group' in frame) {
      for (const [u, devices] of set.live) for (const d of devices) targets.set(deviceKey(u, d), frame.group);
    } else {
      for (const t of frame.to) if (isLiveMemberDevice(set, t.u, t.d)) targets.set(deviceKey(t.u, t.d), t.c);
    }
    targets.delete(key);
    const mode = 'group' in frame ? 'group' : 'pairwise';
    for (const other of this.ctx.getWebSockets()) {
      if (other === ws) continue;
      const a = this.attachment(other);
      const c = a?.live ? targets.get(this.socketKey(other, a)) : undefined;
      if (c !== undefined) send(other, { v: WIRE_VERSION, type: 'typing', from, mode, c });
    }
  }

  private takeToken(att: Attachment, now: number): number {
    const key = deviceKey(att.u, att.d);
    const b = this.buckets.get(key) ?? { tokens: this.cfg.sendBurst, at: now };
    b.tokens = Math.min(this.cfg.sendBurst, b.tokens + ((now - b.at) / 1000) * this.cfg.sendPerSec);
    b.at = now;
    this.buckets.set(key, b);
    if (b.tokens < 1) return Math.ceil(((1 - b.tokens) / this.cfg.sendPerSec) * 1000);
    b.tokens -= 1;
    return 0;
  }

  /** Gives back the token of a send that turned out to be a retry of an accepted message. */
  private refundToken(who: DeviceRef): void {
    const b = this.buckets.get(deviceKey(who.u, who.d));
    if (b) b.tokens = Math.min(this.cfg.sendBurst, b.tokens + 1);
  }

  /**
   * Checks a send and queues it for the group commit. Synchronous while the cached member/device set is fresh
   * and settles it (the common case: no promise per send); returns a promise only when the set must be read
   * from D1 first (dispatch then chains the socket's next sends behind it).
   */
  private handleSend(ws: WebSocket, att: Attachment, frame: SendFrame | ReceiptFrame): Promise<void> | undefined {
    const sender: DeviceRef = { u: att.u, d: att.d };
    // A retry of a send still waiting for the group commit: answered with the original's seq by that commit.
    if (this.queuedKeys.has(`${att.u}\n${att.d}\n${frame.id}`)) {
      this.enqueue({
        ws,
        sender,
        id: frame.id,
        kind: 'message',
        status: null,
        set: null,
        group: null,
        recipients: [],
        spentToken: false,
      });
      return;
    }
    // A retry of an accepted message answers with the original seq and delivers nothing, whatever changed
    // since and without spending a token. A send that passes the checks below is looked up by the group
    // commit (in the store's id set, or one log query per sender device per batch), which answers a retry so
    // and gives its token back; a send about to be refused (or failing) is looked up here first, so a retry
    // is never refused.
    const retryAfterMs = this.takeToken(att, Date.now());
    if (retryAfterMs > 0) {
      if (this.answeredAsDuplicate(ws, att, frame.id)) return;
      throw new FrameError('rate_limited', 'sending too fast', { id: frame.id, retryAfterMs });
    }
    const cached = this.deviceSet;
    if (cached && Date.now() - cached.loadedAt <= this.cfg.deviceSetTtlMs) {
      let checked: QueuedSend | null | typeof REFRESH;
      try {
        checked = this.checkSend(ws, att, sender, frame, cached, false);
      } catch (err) {
        if (this.answeredAsDuplicate(ws, att, frame.id)) {
          this.refundToken(att);
          return;
        }
        throw err;
      }
      if (checked !== REFRESH) {
        if (checked) this.enqueue(checked);
        return;
      }
    }
    return this.checkSendAfterRead(ws, att, sender, frame);
  }

  /** handleSend's path when the member/device set has to be (re-)read from D1. */
  private async checkSendAfterRead(
    ws: WebSocket,
    att: Attachment,
    sender: DeviceRef,
    frame: SendFrame | ReceiptFrame,
  ): Promise<void> {
    let checked: QueuedSend | null | typeof REFRESH;
    try {
      checked = this.checkSend(ws, att, sender, frame, await this.devices(), false);
      if (checked === REFRESH) checked = this.checkSend(ws, att, sender, frame, await this.devices(true), true);
    } catch (err) {
      // Refused, or the device set could not be read: a retry of an accepted message is answered anyway.
      if (this.answeredAsDuplicate(ws, att, frame.id)) {
        this.refundToken(att);
        return;
      }
      throw err;
    }
    if (checked && checked !== REFRESH) this.enqueue(checked);
  }

  /** Answers a retry of an accepted message with its original seq; false when `id` is not in the log. */
  private answeredAsDuplicate(ws: WebSocket, att: Attachment, id: string): boolean {
    const dup = this.store.findDuplicate(att.u, att.d, id);
    if (dup) send(ws, { v: WIRE_VERSION, type: 'accepted', id, seq: dup.seq, ts: dup.ts, duplicate: true });
    return dup !== null;
  }

  /**
   * The member / device-set / recipient checks of a send against `set`: the send to queue, null (socket
   * closed, or a retry answered), or REFRESH when the set must be re-read from D1 first (the sender or an
   * addressed device is not in it, and `refreshed` says it was not just re-read). Throws a refusal.
   */
  private checkSend(
    ws: WebSocket,
    att: Attachment,
    sender: DeviceRef,
    frame: SendFrame | ReceiptFrame,
    set: DeviceSet,
    refreshed: boolean,
  ): QueuedSend | null | typeof REFRESH {
    if (!isLiveMemberDevice(set, att.u, att.d)) {
      if (!refreshed) return REFRESH;
      if (this.answeredAsDuplicate(ws, att, frame.id)) {
        this.refundToken(att);
        return null;
      }
      this.closeSocket(ws, CLOSE.forbidden, 'not a member or device revoked');
      return null;
    }

    let recipients: QueuedSend['recipients'] = [];
    let group: QueuedSend['group'] = null;
    if ('group' in frame) {
      group = { c: decodeCiphertext(frame.group, frame.id), b64: frame.group };
    } else {
      const seen = new Set<string>();
      for (const t of frame.to) {
        const k = deviceKey(t.u, t.d);
        if (seen.has(k)) throw new FrameError('duplicate_recipient', 'a device is addressed twice', { id: frame.id });
        seen.add(k);
      }
      const mismatch = compareAddressed(set, sender, frame.to);
      if (mismatch && !refreshed) return REFRESH;
      if (mismatch) {
        throw new FrameError('device_mismatch', 'the addressed devices are not the current device set', {
          id: frame.id,
          ...mismatch,
        });
      }
      recipients = frame.to.map((t) => ({
        u: t.u,
        d: t.d,
        k: deviceKey(t.u, t.d),
        c: decodeCiphertext(t.c, frame.id),
        b64: t.c,
      }));
    }
    return {
      ws,
      sender,
      id: frame.id,
      kind: frame.type === 'receipt' ? 'receipt' : 'message',
      status: frame.type === 'receipt' ? frame.status : null,
      set,
      group,
      recipients,
      spentToken: true,
    };
  }

  // ---- group commit -------------------------------------------------------------------------------------

  /**
   * Queues a send that passed every check for the next group commit. The commit runs once the frames
   * already waiting have been read (a zero-delay timer: the runtime delivers every ready WebSocket
   * message before it fires) or at once when the batch is full — so a burst from many devices costs one
   * SQLite commit, and each recipient socket one `deliver` frame, instead of one per message.
   * Nothing is answered before that commit: `accepted` is only sent after it.
   */
  private enqueue(q: QueuedSend): void {
    this.queue.push(q);
    this.queuedKeys.add(`${q.sender.u}\n${q.sender.d}\n${q.id}`);
    if (this.queue.length >= this.cfg.commitBatchMax) this.drainSends();
    else if (this.drainTimer === null) this.drainTimer = setTimeout(() => this.drainSends(), 0);
  }

  /**
   * The group commit: every queued send is persisted in ONE transaction (seq/ts in queue order), then each
   * live recipient socket gets its envelopes in seq order (one `deliver` frame per ≤ MAX_DELIVER_BATCH
   * envelopes / MAX_FRAME_BYTES), then each sender socket one answer for all its sends (`accepted` /
   * `accepted_batch`). The runtime's output gate holds those
   * frames until the commit is durable. Also run first by every RPC that changes who may send or receive,
   * so a queued send is stored and fanned out under the device set it was checked against. Never throws.
   */
  private drainSends(): void {
    if (this.drainTimer !== null) {
      clearTimeout(this.drainTimer);
      this.drainTimer = null;
    }
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    this.queuedKeys.clear();
    let results: AppendResult[];
    const epochs: (Epoch | null)[] = [];
    try {
      for (const q of batch) epochs.push(q.group && q.set ? this.epochOf(q.set) : null);
      results = this.store.appendBatch(
        batch.map((q, i) => ({
          senderUser: q.sender.u,
          senderDevice: q.sender.d,
          clientId: q.id,
          kind: q.kind,
          status: q.status,
          group: q.group ? { c: q.group.c, epoch: epochs[i]!.id } : null,
          recipients: q.recipients,
          rcpt: q.kind === 'message' && !q.group ? recipientUsers(q) : null,
        })),
        Date.now(),
      );
    } catch (err) {
      this.log('error', 'conversation_commit_failed', { type: err instanceof Error ? err.name : 'unknown' });
      for (const q of batch) send(q.ws, errorFrame('internal', 'internal error; retry the frame', { id: q.id }));
      return;
    }
    const live = this.liveTargets();
    let delivered = 0;
    let stored = false;
    let pairwise = 0;
    let group = 0;
    for (let i = 0; i < batch.length; i++) {
      const q = batch[i]!;
      const res = results[i]!;
      if (res.duplicate) {
        if (q.spentToken) this.refundToken(q.sender);
        continue;
      }
      stored = true;
      if (q.kind === 'message') {
        if (q.group) group++;
        else pairwise++;
      }
      const head = envelopeHead(res.seq, res.ts, q);
      if (q.group) {
        // The recipients are the epoch's devices minus the sender: the same set resume derives later.
        const devices = epochs[i]!.devices;
        const senderKey = deviceKey(q.sender.u, q.sender.d);
        const envelope = `${head}"group","c":"${q.group.b64}"}`;
        for (const to of live.all) {
          if (to.key !== senderKey && devices.has(to.key)) {
            pushEnvelope(to, envelope);
            delivered++;
          }
        }
      } else {
        for (const r of q.recipients) {
          const sockets = live.byKey.get(r.k);
          if (sockets === undefined) continue;
          const envelope = `${head}"pairwise","c":"${r.b64}"}`;
          for (const to of sockets) pushEnvelope(to, envelope);
          delivered += sockets.length;
        }
      }
    }
    for (const to of live.all) {
      if (to.out.length > 0) send(to.ws, deliverFrame(to.out));
      to.out = [];
      to.bytes = 0;
    }
    if (pairwise) count(this.env, 'messages_accepted', 'pairwise', pairwise);
    if (group) count(this.env, 'messages_accepted', 'group', group);
    if (delivered) count(this.env, 'messages_delivered', 'live', delivered);
    // Each sender socket gets ONE answer for all its sends of this commit (in their order): a lone one as
    // `accepted`, several as `accepted_batch` (≤ MAX_ACCEPTED_BATCH entries a frame).
    const answers = new Map<WebSocket, string[]>();
    for (let i = 0; i < batch.length; i++) {
      const { seq, ts, duplicate } = results[i]!;
      // The same text as JSON.stringify of an entry (the id passed wireId: nothing to escape).
      const entry = `"id":"${batch[i]!.id}","seq":${seq},"ts":${ts}${duplicate ? ',"duplicate":true' : ''}`;
      const list = answers.get(batch[i]!.ws);
      if (list) list.push(entry);
      else answers.set(batch[i]!.ws, [entry]);
    }
    for (const [ws, entries] of answers) {
      for (let i = 0; i < entries.length; i += MAX_ACCEPTED_BATCH) send(ws, answerFrame(entries, i));
    }
    // The alarm flushes what is still un-acked then (a group message also moves the group-flushed mark).
    if (stored) {
      this.ensureAlarm(Date.now() + this.cfg.flushDelayMs).catch((err: unknown) => {
        this.log('warn', 'conversation_alarm_failed', { type: err instanceof Error ? err.name : 'unknown' });
      });
    }
  }

  /** The recipient-set epoch of `set` (every live device of every member): written once per change. */
  private epochOf(set: DeviceSet): Epoch {
    if (this.epochMemo?.set === set) return this.epochMemo.epoch;
    const epoch = this.store.epochFor(liveDevicesOf(set));
    this.epochMemo = { set, epoch };
    return epoch;
  }

  /**
   * The live sockets (past their first complete `resume`) with their device keys, kept between commits and
   * rebuilt from `ctx.getWebSockets()` after anything that can change them: a socket accepted, made live,
   * closed (by us or its peer) or failed — and after a wake from hibernation (the field starts null).
   */
  private liveTargets(): LiveSockets {
    if (this.liveSockets !== null) return this.liveSockets;
    const all: LiveTarget[] = [];
    const byKey = new Map<string, LiveTarget[]>();
    for (const ws of this.ctx.getWebSockets()) {
      const a = this.attachment(ws);
      if (!a?.live) continue;
      const t: LiveTarget = { ws, key: this.socketKey(ws, a), out: [], bytes: 0 };
      all.push(t);
      const same = byKey.get(t.key);
      if (same) same.push(t);
      else byKey.set(t.key, [t]);
    }
    this.liveSockets = { all, byKey };
    return this.liveSockets;
  }

  private closeSocket(ws: WebSocket, code: number, reason: string): void {
    this.liveSockets = null;
    closeWs(ws, code, reason);
  }

  private socketKey(ws: WebSocket, att: Attachment): string {
    let k = this.socketKeys.get(ws);
    if (k === undefined) {
      k = deviceKey(att.u, att.d);
      this.socketKeys.set(ws, k);
    }
    return k;
  }

  /**
   * Acks are kept in memory and applied in one write by the alarm (or before a resume / flush): an ack
   * costs no storage commit. Losing one (eviction) only means those envelopes are delivered again, which
   * the at-least-once contract allows (clients dedupe by seq).
   */
  private async handleAck(att: Attachment, upTo: number): Promise<void> {
    const clamped = Math.min(upTo, this.store.lastSeq());
    const key = deviceKey(att.u, att.d);
    const prev = this.acks.get(key);
    if (prev && prev.upTo >= clamped) return;
    this.acks.set(key, { u: att.u, d: att.d, upTo: clamped });
    await this.ensureAlarm(Date.now() + this.cfg.flushDelayMs);
  }

  /** Applies the acks held in memory (one storage transaction). */
  private applyAcks(): void {
    if (this.acks.size === 0) return;
    const acks = [...this.acks.values()];
    this.acks.clear();
    this.ctx.storage.transactionSync(() => {
      for (const a of acks) this.store.ack(a.u, a.d, a.upTo);
    });
  }

  private async handleResume(ws: WebSocket, att: Attachment, after: number): Promise<void> {
    // A removed member / revoked device whose notification was lost is refused here too once the cached
    // set has expired (a D1 failure with no cached set does not block resume: the upgrade checked D1).
    if (this.conversationId) {
      let set: DeviceSet | null = null;
      try {
        set = await this.devices();
        if (!isLiveMemberDevice(set, att.u, att.d)) set = await this.devices(true);
      } catch (err) {
        this.log('warn', 'conversation_resume_member_check_failed', {
          type: err instanceof Error ? err.name : 'unknown',
        });
      }
      if (set && !isLiveMemberDevice(set, att.u, att.d)) {
        this.closeSocket(ws, CLOSE.forbidden, 'not a member or device revoked');
        return;
      }
    }
    this.applyAcks();
    const limit = this.cfg.resumeMaxEnvelopes;
    const state = this.store.state();
    const bySeq = new Map<number, Envelope>();
    // Below the DO's retention the envelopes are only in D1 (already flushed, then pruned here).
    if (after < state.prunedThrough && this.conversationId) {
      const rows = await readMailbox(makeDb(this.env), att.u, att.d, {
        afterConversation: this.conversationId,
        afterSeq: after,
        limit,
        onlyConversation: this.conversationId,
        throughSeq: state.prunedThrough,
      });
      for (const { conversationId: _c, ...e } of rows) bySeq.set(e.seq, e);
    }
    // ---- no await from here on: envelopes written during the D1 read are in the DO rows below ----
    for (const r of this.store.pendingFor(att.u, att.d, after, limit)) {
      if (bySeq.has(r.seq)) continue;
      bySeq.set(r.seq, toEnvelope(r));
    }
    const envelopes = [...bySeq.values()].sort((a, b) => a.seq - b.seq).slice(0, limit);
    if (envelopes.length) count(this.env, 'messages_delivered', 'resume', envelopes.length);
    for (let i = 0; i < envelopes.length; i += MAX_DELIVER_BATCH) {
      send(ws, { v: WIRE_VERSION, type: 'deliver', envelopes: envelopes.slice(i, i + MAX_DELIVER_BATCH) });
    }
    const more = envelopes.length >= limit;
    const through = more ? envelopes[envelopes.length - 1]!.seq : Math.max(after, this.store.state().lastSeq);
    send(ws, { v: WIRE_VERSION, type: 'resume', after, through, more });
    if (!more && !att.live) {
      att.live = true;
      this.liveSockets = null;
      ws.serializeAttachment(att);
    }
  }

  // ---- member / device set --------------------------------------------------------------------------------

  /**
   * The member/device set: cached, re-read from D1 when `refresh`, when dropped by an RPC, or when older
   * than deviceSetTtlMs (a lost RPC is trusted for at most that long). A reload closes the sockets of
   * anyone who is no longer a member or whose device was revoked.
   */
  private async devices(refresh = false): Promise<DeviceSet> {
    const cached = refresh ? null : this.deviceSet;
    if (cached && Date.now() - cached.loadedAt <= this.cfg.deviceSetTtlMs) return cached;
    let set: DeviceSet;
    for (;;) {
      const gen = this.deviceSetGen;
      let load = this.deviceSetLoad;
      if (load?.gen !== gen) {
        const conv = this.conversationId;
        if (!conv) throw new FrameError('unavailable', 'conversation not initialised');
        const started: { gen: number; set: Promise<DeviceSet> } = {
          gen,
          set: loadDeviceSet(makeDb(this.env), conv).finally(() => {
            if (this.deviceSetLoad === started) this.deviceSetLoad = null;
          }),
        };
        this.deviceSetLoad = load = started;
      }
      try {
        set = await load.set;
      } catch (err) {
        // Only the age expired (no RPC dropped it, no mismatch): while D1 is unreachable the expired set
        // keeps the conversation usable; `loadedAt` stays old, so the next call tries D1 again.
        if (!cached || gen !== this.deviceSetGen) throw err;
        this.log('warn', 'conversation_device_set_reload_failed', {
          type: err instanceof Error ? err.name : 'unknown',
        });
        return cached;
      }
      // Read before an RPC's change: the RPC's own refresh (or this one, again) reads what D1 holds now.
      if (gen === this.deviceSetGen) break;
    }
    this.deviceSet = set;
    // A changed disappearing-message timer: the alarm expires what is now older than it (here and in D1).
    if (this.store.setTimer(set.timerMs)) await this.ensureAlarm(Date.now());
    // Anyone connected who is no longer a member (or whose device was revoked) is disconnected.
    for (const ws of this.ctx.getWebSockets()) {
      const a = this.attachment(ws);
      if (a && !isLiveMemberDevice(set, a.u, a.d))
        this.closeSocket(ws, CLOSE.forbidden, 'not a member or device revoked');
    }
    return set;
  }

  /**
   * A membership-log entry was appended (routes/conversations.ts): the sockets of removed members are
   * closed with 4403 first (they receive nothing afterwards, PITFALLS 21), the member/device cache is
   * refreshed, then every remaining socket gets `{type:'membership', entry, removed, afterSeq}` (entry:
   * base64url of the signed encoding). Returns the number of sockets closed.
   */
  async membershipChanged(entryB64u: string, removedUserIds: string[]): Promise<number> {
    this.drainSends();
    let closed = 0;
    this.epochMemo = null; // the cached set is changed in place below
    this.deviceSetGen++;
    const removed = removedUserIds.filter((u) => wireId.safeParse(u).success);
    for (const u of removed) {
      for (const ws of this.ctx.getWebSockets(userTag(u))) {
        this.closeSocket(ws, CLOSE.forbidden, 'removed from conversation');
        closed++;
      }
      this.deviceSet?.members.delete(u);
    }
    if (this.conversationId) {
      try {
        await this.devices(true);
      } catch {
        this.deviceSet = null; // reloaded on the next send
        this.log('warn', 'conversation_device_set_refresh_failed', {});
      }
    }
    if (
      typeof entryB64u === 'string' &&
      entryB64u.length <= MAX_RPC_ENTRY_CHARS &&
      /^[A-Za-z0-9_-]*$/.test(entryB64u)
    ) {
      const frame = JSON.stringify({
        v: WIRE_VERSION,
        type: 'membership',
        entry: entryB64u,
        removed,
        afterSeq: this.store.state().lastSeq,
      });
      const gone = new Set(removed);
      for (const ws of this.ctx.getWebSockets()) {
        const a = this.attachment(ws);
        if (a && !gone.has(a.u)) send(ws, frame);
      }
    }
    return closed;
  }

  /**
   * A device was revoked (routes/devices.ts): its sockets are closed with 4403, its envelopes are dropped
   * here and its D1 mailbox rows deleted (in every conversation; idempotent), and the cache refreshed.
   * Returns the number of sockets closed.
   */
  async deviceRevoked(userId: string, deviceId: string): Promise<number> {
    if (!wireId.safeParse(userId).success || !wireId.safeParse(deviceId).success) return 0;
    this.drainSends();
    let closed = 0;
    for (const ws of this.ctx.getWebSockets(deviceTag(userId, deviceId))) {
      this.closeSocket(ws, CLOSE.forbidden, 'device revoked');
      closed++;
    }
    this.deviceSet?.live.get(userId)?.delete(deviceId);
    this.deviceSet?.revoked.get(userId)?.add(deviceId);
    this.epochMemo = null; // the cached set changed in place; forgetDevice drops it from every epoch
    this.deviceSetGen++;
    this.acks.delete(deviceKey(userId, deviceId));
    this.store.forgetDevice(userId, deviceId);
    // A flush in flight may still insert this device's rows: let it finish, then delete.
    if (this.flushing) await this.flushing.catch(() => undefined);
    this.store.forgetDevice(userId, deviceId);
    await deleteDeviceMailbox(makeDb(this.env), userId, deviceId);
    if (this.conversationId) this.deviceSet = null; // reloaded on the next send
    this.announceDevices(userId);
    return closed;
  }

  /** Tells every socket that `userId`'s device set changed (a hint: clients verify the signed list). */
  private announceDevices(userId: string): void {
    const frame = JSON.stringify({ v: WIRE_VERSION, type: 'devices', userId });
    for (const ws of this.ctx.getWebSockets()) if (this.attachment(ws)) send(ws, frame);
  }

  /**
   * A member registered a new device (domain/devices.ts) or reset their identity: the cached device set is
   * dropped so the next pairwise send must address the new device (device_mismatch otherwise) — without
   * this, a message sent before the new device first connects would silently skip it.
   */
  async devicesChanged(userId: string): Promise<void> {
    if (!wireId.safeParse(userId).success) return;
    this.drainSends();
    this.deviceSet = null;
    this.deviceSetGen++;
    this.epochMemo = null;
    this.announceDevices(userId);
  }

  /**
   * Sessions (token families) were signed out or revoked (routes/auth.ts: logout, logout-all, sessions/revoke,
   * password change, refresh-token reuse): the sockets opened under them are closed with 4403 (final for
   * the client, which must sign in again). Returns the number of sockets closed.
   */
  async sessionsEnded(familyIds: string[]): Promise<number> {
    if (!Array.isArray(familyIds)) return 0;
    this.drainSends();
    let closed = 0;
    for (const f of familyIds.slice(0, 1000)) {
      if (!wireId.safeParse(f).success) continue;
      for (const ws of this.ctx.getWebSockets(familyTag(f))) {
        this.closeSocket(ws, CLOSE.forbidden, 'signed out');
        closed++;
      }
    }
    return closed;
  }

  /**
   * The device acknowledged up to `upTo` over HTTP (POST /api/mailbox/ack): its envelopes leave the DO
   * too, so an un-flushed copy is never written to D1 after the ack.
   */
  async ackDevice(userId: string, deviceId: string, upTo: number): Promise<void> {
    if (!wireId.safeParse(userId).success || !wireId.safeParse(deviceId).success || !Number.isSafeInteger(upTo)) return;
    if (this.store.ack(userId, deviceId, upTo)) await this.ensureAlarm(Date.now() + this.cfg.flushDelayMs);
  }

  /**
   * An account was deleted (domain/account.ts) and others remain here: its sockets are closed, its
   * devices' envelopes, cursors and acks dropped, and the messages it sent are re-attributed to the
   * `tombstone` id (they stay, in order, for the members still waiting for them).
   */
  async forgetUser(userId: string, deviceIds: string[], tombstone: string): Promise<void> {
    if (!wireId.safeParse(userId).success || !wireId.safeParse(tombstone).success || !Array.isArray(deviceIds)) return;
    this.drainSends();
    for (const ws of this.ctx.getWebSockets(userTag(userId))) this.closeSocket(ws, CLOSE.forbidden, 'account deleted');
    const forget = () => {
      for (const d of deviceIds.slice(0, 1000)) {
        if (!wireId.safeParse(d).success) continue;
        this.acks.delete(deviceKey(userId, d));
        this.store.forgetDevice(userId, d);
      }
      this.store.forgetSender(userId, tombstone);
    };
    forget();
    // A flush in flight (or one that ran after account deletion's D1 batch) may still have written rows for
    // its devices or naming it as sender: let it finish, then clean this conversation's D1 rows again.
    if (this.flushing) {
      await this.flushing.catch(() => undefined);
      forget(); // what that flush's take put back in flight or wrote meanwhile
    }
    this.deviceSet = null;
    this.deviceSetGen++;
    this.epochMemo = null;
    if (this.conversationId) await forgetUserMailbox(makeDb(this.env), this.conversationId, userId, tombstone);
  }

  /** The conversation was deleted with its last member (domain/account.ts): every byte of storage goes. */
  async erase(): Promise<void> {
    this.drainSends();
    for (const ws of this.ctx.getWebSockets()) this.closeSocket(ws, CLOSE.forbidden, 'conversation deleted');
    if (this.flushing) await this.flushing.catch(() => undefined);
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    this.alarmAt = null;
    this.conversationId = null;
    this.deviceSet = null;
    this.deviceSetGen++;
    this.epochMemo = null;
    this.acks.clear();
    this.store.init();
  }

  /** Number of connected sockets (tests and, later, presence). */
  async connectedCount(): Promise<number> {
    return this.ctx.getWebSockets().length;
  }

  // ---- alarm: outbox flush, acks, retention, reaping --------------------------------------------------------

  private async ensureAlarm(at: number): Promise<void> {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    const before = this.alarmAt;
    this.alarmAt = at;
    try {
      await this.ctx.storage.setAlarm(at);
    } catch (err) {
      // Not set: the next call must try again (an `alarmAt` left here would skip every later one).
      if (this.alarmAt === at) this.alarmAt = before;
      throw err;
    }
  }

  override async alarm(): Promise<void> {
    this.alarmAt = null;
    const now = Date.now();
    this.applyAcks();
    let next: number | null = null;
    let failed = false;
    // Disappearing messages (issue 17): nothing pending outlives the timer (nor the mailbox TTL).
    const timerMs = this.store.timerMs();
    const lifeMs = timerMs > 0 ? Math.min(timerMs, this.cfg.mailboxTtlMs) : 0;
    if (lifeMs > 0) {
      try {
        this.store.expire(now - lifeMs);
      } catch (err) {
        this.log('warn', 'conversation_expire_failed', { type: err instanceof Error ? err.name : 'unknown' });
      }
    }
    try {
      const more = await this.flush();
      if (more) next = now;
    } catch (err) {
      this.log('warn', 'conversation_flush_failed', { type: err instanceof Error ? err.name : 'unknown' });
      failed = true;
      next = now + Math.max(this.cfg.flushDelayMs, 5_000);
    }
    // Webhook events for what the flush made fetchable (never on the send path: nothing waits on them).
    if (this.conversationId) {
      try {
        const more = await emitMessageEvents(this.env, this.store, this.conversationId);
        if (more) next = Math.min(next ?? now, now);
      } catch (err) {
        log('warn', 'conversation_events_failed', { type: err instanceof Error ? err.name : 'unknown' });
        next = Math.min(next ?? Number.POSITIVE_INFINITY, now + 5_000);
      }
    }
    if (lifeMs > 0 && this.conversationId && this.store.expireD1Pending()) {
      const through = this.store.expiredThrough();
      try {
        await expireConversation(makeDb(this.env), this.conversationId, now - lifeMs, through);
        this.store.clearExpireD1(through);
      } catch (err) {
        this.log('warn', 'conversation_expire_failed', { type: err instanceof Error ? err.name : 'unknown' });
        next = Math.min(next ?? Number.POSITIVE_INFINITY, now + 5_000);
      }
    }
    try {
      this.store.prune(now - this.cfg.logRetentionMs);
    } catch (err) {
      this.log('warn', 'conversation_prune_failed', { type: err instanceof Error ? err.name : 'unknown' });
    }
    this.reap(now);
    const candidates: number[] = [];
    if (next !== null) candidates.push(next);
    const flushAt = failed ? null : this.store.nextFlushAt(Date.now(), this.cfg.flushDelayMs);
    // While messages keep coming, the oldest un-flushed one is always due a few ms from now: without a gap
    // the alarm ran back to back (each run its own storage commit beside the group commits), which halved
    // 2-device throughput (bench:delivery). A quarter of the delay apart, a write reaches D1 within 1.25×
    // the delay; a backlog (`more`) still re-runs at once.
    if (flushAt !== null) candidates.push(Math.max(flushAt, now + Math.floor(this.cfg.flushDelayMs / 4)));
    if (this.acks.size > 0) candidates.push(now + this.cfg.flushDelayMs);
    if (this.ctx.getWebSockets().length > 0) candidates.push(now + this.cfg.reapIntervalMs);
    const expiresAt = this.store.nextExpiryAt(lifeMs);
    if (expiresAt !== null) candidates.push(Math.max(now + 1_000, expiresAt));
    const oldest = this.store.oldestTs();
    if (oldest !== null) candidates.push(Math.max(now + 60_000, oldest + this.cfg.logRetentionMs));
    if (candidates.length > 0) await this.ensureAlarm(Math.min(...candidates));
  }

  /** Copies one outbox batch (and the pending acks) to D1. Returns true if more is waiting. */
  private async flush(): Promise<boolean> {
    const conv = this.conversationId;
    if (!conv) return false;
    const batch = this.store.takeOutbox(this.cfg.flushMaxRows, Date.now() - this.cfg.flushDelayMs);
    const acks = this.store.pendingAcks();
    if (batch.rows.length === 0 && acks.length === 0) {
      // Group messages every recipient acked in time: nothing for D1, only the mark moves.
      if (this.store.hasOutboxInFlight()) this.store.commitOutbox();
      return batch.more;
    }
    const run = flushOutbox(makeDb(this.env), conv, batch, acks, this.cfg.mailboxTtlMs, this.store.timerMs());
    this.flushing = run;
    try {
      await run;
    } catch (err) {
      this.store.releaseOutbox();
      throw err;
    } finally {
      this.flushing = null;
    }
    this.store.commitOutbox();
    this.store.clearAcks(acks);
    return batch.more;
  }

  private reap(now: number): void {
    for (const ws of this.ctx.getWebSockets()) {
      const a = this.attachment(ws);
      const pinged = this.ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? 0;
      const last = Math.max(pinged, a?.t ?? 0, this.lastFrameAt.get(ws) ?? 0);
      if (now - last > this.cfg.staleSocketMs) this.closeSocket(ws, CLOSE.stale, 'no ping');
    }
  }

  // ---- socket lifecycle ---------------------------------------------------------------------------------

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    count(this.env, 'sockets_closed', String(code));
    this.log('info', 'socket_close', { code });
    // 1005/1006 are reserved and may not be sent back; answer with a normal closure instead.
    this.closeSocket(ws, code === 1005 || code === 1006 ? CLOSE.normal : code, 'closing');
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    this.closeSocket(ws, CLOSE.internal, 'error');
  }
}

/** A pairwise message's recipient accounts other than the sender's (its webhook audience), space-separated. */
function recipientUsers(q: QueuedSend): string | null {
  if (q.recipients.length === 1) return q.recipients[0]!.u === q.sender.u ? null : q.recipients[0]!.u;
  const users = new Set<string>();
  for (const r of q.recipients) if (r.u !== q.sender.u) users.add(r.u);
  return users.size === 0 ? null : [...users].join(' ');
}

/** A ciphertext as bytes (fromB64u uses the runtime's decoder where it has one); refused with the frame's id. */
function decodeCiphertext(b64u: string, id: string): Uint8Array {
  try {
    return fromB64u(b64u);
  } catch {
    throw new FrameError('bad_frame', 'ciphertext is not base64url', { id });
  }
}
