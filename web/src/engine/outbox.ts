/**
 * The outbox: every frame we send (messages, sender-key distributions, receipts) is first persisted
 * here, so it survives reloads, and is retried with the SAME client message id — the server's idempotency
 * key — until it is accepted. Ciphertexts are computed once and stored with the entry (sealed at rest): a
 * retry after a reload re-sends exactly the same frame, never a fresh encryption of the same text.
 *
 * States: sending → sent (accepted with a seq) → delivered (an end-to-end receipt came back) | failed. A
 * receipt can come before our `accepted`: 'delivered' without a seq is still sent (again) until accepted.
 * One frame per conversation is in flight at a time; a frame whose answer (accepted / error) has not come
 * after SEND_ANSWER_TIMEOUT_MS while the socket stayed open is sent again (same id: the server answers a
 * retry of an accepted one with its seq) — an answer lost on the way must not hold the conversation for good.
 * Preparing an entry (bundle claims, device lists) can fail for a transient reason — no network, a 5xx, a
 * 429: the entry stays `sending` (and the conversation's later entries wait behind it) and is tried again
 * with capped back-off, and at once when the socket comes back, until it is OUTBOX_TRANSIENT_LIFESPAN_MS
 * old; only then does a transient failure fail it. An entry whose frame may have gone out (its ciphertext is
 * stored) is never sent again past that age either — it fails as `unreachable` (or, already marked
 * delivered by a receipt, just leaves the outbox): the server may have forgotten its id by then. A permanent refusal (an EngineError, any other 4xx)
 * fails it at once. Retry timers are unref'd and stop with `close`.
 * A message queued before what a send needs was held (the conversation's log, never stored here, or a member's
 * device list, with the network down) is `prepare`d at its turn through `hooks.prepare`, from the verified log,
 * with the same back-off: it waits as `sending` like any offline send, and nothing is encrypted before that.
 * While the conversation's membership log has a gap (groups.ts `inGap`) an entry not yet encrypted waits as
 * `sending`, with everything behind it, and is encrypted and sent once a whole log is applied.
 * On `device_mismatch` the entry is repaired and retried: extra and stale devices are dropped, their
 * users' device lists refreshed, and only the MISSING devices are encrypted to — if they are in a verified
 * list of a verified member; every other missing slot carries WITHHELD (PITFALLS 16, 17).
 *
 * Does NOT: decide membership (groups.ts), hold sessions (sessions.ts), or own the socket (the engine
 * passes `send`).
 * @module
 */
import { type DeviceRef, type ErrorFrame, SEND_ANSWER_TIMEOUT_MS, WIRE_VERSION } from '../../../schema/wire.js';
import { constants, toB64u } from './_protocol.js';
import { backoffDelay } from './backoff.js';
import { type EngineContext, EngineError, errorLabel, type MessageView } from './context.js';
import type { Directory } from './directory.js';
import type { Groups } from './groups.js';
import { type Messages, WITHHELD } from './messages.js';
import type { Sessions } from './sessions.js';
import { listJson, mutex, putJson, readJson, type StoreTx, writeJson } from './storage.js';
import { ApiError, type ClientFrame } from './transport.js';

export interface OutboxItem {
  readonly u: string;
  readonly d: string;
  readonly c: string;
}

export interface OutboxEntry {
  readonly clientId: string;
  readonly conversationId: string;
  readonly kind: 'message' | 'receipt';
  readonly receiptStatus?: 'delivered' | 'read';
  readonly payload: Uint8Array;
  readonly mode: 'pairwise' | 'group';
  readonly items: readonly OutboxItem[] | null;
  readonly group: string | null;
  readonly state: 'sending' | 'sent' | 'delivered' | 'failed';
  readonly seq: number | null;
  readonly attempts: number;
  readonly createdAt: number;
  /** Send order (assigned by `enqueue`, monotonic). */
  readonly order?: number;
  /** True for user-visible messages (a MessageView tracks its state). */
  readonly visible: boolean;
  /** A group message: the members whose receipt came (it is delivered once every current member's has). */
  readonly deliveredTo?: readonly string[];
  /** A group message: the other members when it was queued (absent: every current member is awaited). */
  readonly audience?: readonly string[];
  readonly error?: string;
  /**
   * Failed `unreachable` past the lifespan with its ciphertext made: its frame may have been stored (the answer
   * lost), and the server may no longer recognise its id — it is not sent again, not even as a retry.
   */
  readonly mayHaveBeenSent?: boolean;
  /** A delivery receipt: the client ids it covers (the payload encodes them; kept to merge receipts). */
  readonly receiptIds?: readonly string[];
  /**
   * A delivery receipt: the users it is encrypted to — the authors of the messages it covers; every other
   * member device gets WITHHELD (a receipt tells them nothing they need, and each would cost them a
   * decryption). Absent: every member.
   */
  readonly receiptTo?: readonly string[];
  /**
   * A sender-key distribution: once accepted, devices that got WITHHELD instead of it (no prekeys yet — a
   * device linked a moment ago) are marked as still needing it, so the next group send retries them.
   */
  readonly distributes?: boolean;
  /**
   * A visible message queued while what a send needs from the server could not be fetched (the verified log of
   * a conversation this device never stored, a member's device list — the network was down): `mode` is a
   * placeholder and `payload` lacks the conversation's timer. At its turn `hooks.prepare` fetches and verifies
   * all that, queues what must precede it (profile key, sender key) and completes it; a transient failure
   * there keeps it `sending` with the usual back-off. Nothing is encrypted before that.
   */
  readonly prepare?: boolean;
}

/**
 * Most client ids one merged receipt carries: ≈ 1.5 KB of ciphertext per member device, so even a large
 * group's receipt frame stays far below MAX_FRAME_BYTES.
 */
const MAX_RECEIPT_IDS = 64;

/** Gives up after this many device_mismatch repairs of one entry. */
const MAX_REPAIRS = 5;

/**
 * Retries after a transient failure while preparing an entry: `baseMs` doubling up to `maxMs` (jittered,
 * backoff.ts); an entry
 * older than `lifespanMs` (since `createdAt`) fails at its next transient failure. Defaults: OUTBOX_RETRY_*
 * and OUTBOX_TRANSIENT_LIFESPAN_MS (constants.ts); tests shorten them.
 */
export interface OutboxRetry {
  readonly baseMs: number;
  readonly maxMs: number;
  readonly lifespanMs: number;
}
export const DEFAULT_OUTBOX_RETRY: OutboxRetry = {
  baseMs: constants.OUTBOX_RETRY_BASE_MS,
  maxMs: constants.OUTBOX_RETRY_MAX_MS,
  lifespanMs: constants.OUTBOX_TRANSIENT_LIFESPAN_MS,
};

/** A failure that says nothing about the message: the server was unreachable, overloaded or restarting. */
export function isTransient(err: unknown): boolean {
  if (err instanceof EngineError) return false;
  if (err instanceof ApiError) return err.status >= 500 || err.status === 429;
  return err instanceof TypeError; // fetch: connection refused / reset
}
/** Why an entry failed: the engine's code; `unreachable` for a transient failure past the lifespan. */
function failureCode(err: unknown): string {
  if (err instanceof EngineError) return err.code;
  return isTransient(err) ? 'unreachable' : 'send_failed';
}
const key = (clientId: string) => `out/${clientId}`;
/**
 * The outbox's version: random bytes rewritten by every transaction that adds a visible entry (`enqueue`),
 * so an instance's in-memory set of visible entry ids (`Outbox.sent`) is known to be complete exactly while
 * the store holds the version it was taken at (random: two histories never share one).
 */
const VERSION_KEY = 'outv/version';
/** Most ids `Outbox.sent` holds; with more, receipts look every id up (as without it). */
const SENT_IDS_MAX = 4096;
const ref = (u: string, d: string) => `${u}\n${d}`;

/**
 * What the engine does when the server sequenced (or refused) one of our entries: a sequenced message
 * gets its disappearing time from `expiresAt`; an action or signal (`visible: false`) is handed to
 * `accepted` before its entry is dropped — our reactions, edits and deletes are applied to our own store at
 * the seq the server gave them, exactly as every other device applies them; `failed` hears of the ones
 * that will never be sent.
 */
export interface OutboxHooks {
  readonly expiresAt?: (conversationId: string) => Promise<((ts: number) => number | undefined) | undefined>;
  readonly accepted?: (e: OutboxEntry, seq: number, ts: number) => Promise<void>;
  readonly failed?: (e: OutboxEntry) => Promise<void>;
  /**
   * A group entry found our sender key marked for rotation (`sender_key_rotation`), or waited for a log with a
   * gap: rotate it if marked and queue its distribution to the devices lacking it with send order `order`
   * (just before the entry's), so it goes out first.
   */
  readonly rotate?: (conversationId: string, order: number) => Promise<void>;
  /**
   * Completes a `prepare` entry from the verified log (fetched if not held): its mode and final payload, after
   * queuing what goes before it at send orders below the entry's. Throws as a send would: transient (retried)
   * or a refusal (the message fails).
   */
  readonly prepare?: (e: OutboxEntry) => Promise<{ mode: 'pairwise' | 'group'; payload: Uint8Array }>;
}

export class Outbox {
  private readonly inFlight = new Set<string>();
  /** Answers and flushes run one at a time, so an answer is never raced by a resend of the same entry. */
  private readonly serial = mutex();
  /** Per conversation: the entry whose answer (accepted / error) we are waiting for. One at a time keeps
   * the server's order equal to ours (a sender-key distribution always precedes the group message). */
  private readonly awaiting = new Map<string, string>();
  /** Per conversation: which wait `awaiting` is in — an answer timer only ends the wait it was armed for. */
  private readonly waits = new Map<string, number>();
  private lastWait = 0;
  /** Conversations whose entries waited for a log with a gap: a group entry distributes our sender key first. */
  private readonly heldByGap = new Set<string>();
  /** Transient failures so far per entry, for the back-off (in memory: a reload starts again). */
  private readonly transient = new Map<string, number>();
  /** Pending retry and answer timers (cleared by `close`). */
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private closed = false;
  private readonly retry: OutboxRetry;
  /** Per conversation: our queued delivery receipt that is not encrypted yet (new receipts merge into it). */
  private readonly openReceipt = new Map<string, string>();
  /**
   * The client ids of every visible entry as of the store's outbox version `version` (a superset: entries
   * deleted since may still be in it; null: more than SENT_IDS_MAX). A receipt's ids are looked up only where
   * they are in it — a receipt from a group member names mostly other members' messages, which we never had
   * in our outbox.
   */
  private sent: { readonly version: string; readonly ids: Set<string> | null } | null = null;

  constructor(
    private readonly ctx: EngineContext,
    private readonly sessions: Sessions,
    private readonly groups: Groups,
    private readonly directory: Directory,
    private readonly messages: Messages,
    private readonly send: (conversationId: string, frame: ClientFrame) => boolean,
    private readonly hooks: OutboxHooks = {},
    /** How long a sent frame waits for its answer before it is sent again (ms). */
    private readonly answerTimeoutMs: number = SEND_ANSWER_TIMEOUT_MS,
    retry: Partial<OutboxRetry> = {},
  ) {
    this.retry = { ...DEFAULT_OUTBOX_RETRY, ...retry };
  }

  /** Stops every retry and answer timer; nothing is sent after (the engine is closing). */
  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  /** Runs `fn` after `ms` unless closed meanwhile; never keeps a Node process (a bot) alive. */
  private later(fn: () => void, ms: number): void {
    if (this.closed) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.closed) fn();
    }, ms);
    this.timers.add(t);
    (t as { unref?: () => void }).unref?.();
  }

  /**
   * The conversation waits for `clientId` for `ms`, then flushes again — unless the wait ended first (an
   * answer, a reconnect's `reset` and flush): a timer only ends the wait it was armed for.
   */
  private retryLater(conversationId: string, clientId: string, ms: number): void {
    const n = this.wait(conversationId, clientId);
    this.later(() => {
      if (this.waits.get(conversationId) !== n) return;
      this.answered(conversationId, clientId);
      void this.flush(conversationId);
    }, ms);
  }

  private lastOrder = 0;

  /** Stores `entry` to be sent after every entry queued before it (or at send order `order`, when given). */
  async enqueue(entry: OutboxEntry, order?: number): Promise<void> {
    if (order === undefined) this.lastOrder = Math.max(this.lastOrder + 1, this.ctx.now() * 1000);
    const e = { ...entry, order: order ?? this.lastOrder };
    if (!entry.visible) return putJson(this.ctx.store, key(entry.clientId), e);
    // A visible entry changes the outbox's version in the same transaction (see `sent`).
    const { before, after } = await this.ctx.store.transaction(async (tx) => {
      const v = { before: await readJson<string>(tx, VERSION_KEY), after: toB64u(this.ctx.rng(16)) };
      writeJson(tx, key(entry.clientId), e);
      writeJson(tx, VERSION_KEY, v.after);
      return v;
    });
    // Our set stays complete only if it was complete for the version this transaction replaced.
    const sent = this.sent;
    this.sent =
      sent && sent.version === (before ?? '')
        ? { version: after, ids: sent.ids && sent.ids.size < SENT_IDS_MAX ? sent.ids.add(entry.clientId) : null }
        : null;
  }

  /**
   * Which of `ids` may have a visible entry (inside `tx`: the version read is checked at its commit): those
   * in the in-memory set when it belongs to the store's version; else all of them, and the set is taken anew
   * in the background (in its own transaction: what is remembered is only ever what a commit confirmed).
   */
  private async mayHaveSentInTx(tx: StoreTx, ids: readonly string[]): Promise<readonly string[]> {
    const version = (await readJson<string>(tx, VERSION_KEY)) ?? '';
    if (this.sent?.version === version) {
      const sent = this.sent.ids;
      return sent ? ids.filter((id) => sent.has(id)) : ids;
    }
    this.loadingSent ??= this.loadSent().finally(() => (this.loadingSent = null));
    return ids;
  }

  private loadingSent: Promise<void> | null = null;

  /** Takes the set of visible entry ids, with the version it belongs to. */
  private async loadSent(): Promise<void> {
    try {
      const r = await this.ctx.store.transaction(async (tx) => {
        const version = (await readJson<string>(tx, VERSION_KEY)) ?? '';
        const all = await listJson<OutboxEntry>(tx, 'out/');
        const ids = all.filter((e) => e.value.visible).map((e) => e.value.clientId);
        return { version, ids: ids.length <= SENT_IDS_MAX ? new Set(ids) : null };
      });
      this.sent = r;
    } catch {
      this.sent = null; // e.g. the store was locked: receipts look every id up, as without the set
    }
  }

  /**
   * Queues a delivery receipt for `ids`, merged into this conversation's queued receipt if that one has
   * not been encrypted yet: under load one receipt covers many batches instead of one receipt (and one
   * ciphertext per member device) per received batch. Runs under the outbox mutex, like every send, so a
   * merge never races the encryption of the entry it merges into. `to`: the users the receipt is for (the
   * messages' authors, see `receiptTo`); undefined: every member — and so is a merge with such a receipt.
   */
  enqueueReceipt(
    conversationId: string,
    ids: readonly string[],
    build: (ids: readonly string[], to: readonly string[] | undefined) => OutboxEntry,
    to?: readonly string[],
  ): Promise<void> {
    return this.serial(async () => {
      const openId = this.openReceipt.get(conversationId);
      if (openId !== undefined) {
        const open = await readJson<OutboxEntry>(this.ctx.store, key(openId));
        const merged = [...new Set([...(open?.receiptIds ?? []), ...ids])];
        const mergedTo = open?.receiptTo && to ? [...new Set([...open.receiptTo, ...to])] : undefined;
        if (
          open &&
          open.state === 'sending' &&
          open.items === null &&
          open.group === null &&
          open.receiptStatus === 'delivered' &&
          merged.length <= MAX_RECEIPT_IDS &&
          !this.inFlight.has(openId) &&
          this.awaiting.get(conversationId) !== openId
        ) {
          const next = build(merged, mergedTo);
          await putJson(this.ctx.store, key(openId), {
            ...next,
            clientId: open.clientId,
            createdAt: open.createdAt,
            order: open.order,
          });
          return;
        }
      }
      const fresh = build(ids, to);
      await this.enqueue(fresh);
      this.openReceipt.set(conversationId, fresh.clientId);
    });
  }

  /**
   * A sender-key distribution that a later send queued for the conversation while `e` waited unprepared (that
   * send, with the log at hand, found the members lacking our key and marked them, so `e`'s preparation
   * queued none) goes before `e`: `e` is encrypted with that key, and members reading `e` first would store it
   * undecryptable until the distribution came. Runs under the outbox mutex (from trySend).
   */
  private async distributionsFirst(e: OutboxEntry): Promise<void> {
    const at = e.order ?? e.createdAt * 1000;
    for (const d of await this.entries()) {
      if (d.conversationId !== e.conversationId || !d.distributes || !unsent(d)) continue;
      if ((d.order ?? d.createdAt * 1000) > at)
        await putJson(this.ctx.store, key(d.clientId), { ...d, order: at - 0.25 });
    }
  }

  /** Removes an entry (a failed message the user deleted or retried as a new one). */
  dropInTx(tx: StoreTx, clientId: string): void {
    tx.delete(key(clientId));
  }

  async entries(): Promise<OutboxEntry[]> {
    return (await listJson<OutboxEntry>(this.ctx.store, 'out/'))
      .map((e) => e.value)
      .sort((a, b) => (a.order ?? a.createdAt * 1000) - (b.order ?? b.createdAt * 1000));
  }

  /** Sends the oldest pending entry of each conversation (or of one), unless one is awaiting its answer. */
  flush(conversationId?: string): Promise<void> {
    if (this.closed) return Promise.resolve();
    return this.serial(() => this.flushNow(conversationId));
  }

  /**
   * Sends the oldest waiting entry of each conversation (of one, with `conversationId`). An entry that
   * fails for good there (a refused bundle claim, a blocked member) lets the next one of its conversation
   * go in the same flush: nothing else may come to flush it — a message queued behind a failed profile-key
   * share or key-transparency gossip would otherwise stay 'sending'.
   */
  private async flushNow(conversationId?: string): Promise<void> {
    const started = new Set<string>();
    for (const e of await this.entries()) {
      if (e.state === 'sent' && this.ctx.now() - e.createdAt >= RECEIPT_WAIT_MS) {
        // No receipt can come any more (the server's mailbox kept it at most that long): it stops waiting.
        await this.ctx.store.delete(key(e.clientId));
        continue;
      }
      if (!unsent(e) || (conversationId && e.conversationId !== conversationId)) continue;
      if (started.has(e.conversationId) || this.awaiting.has(e.conversationId)) continue;
      if ((await this.trySend(e.clientId)) !== 'failed') started.add(e.conversationId);
    }
  }

  /** The socket was (re)connected: answers to frames sent before are lost; resend from the oldest. */
  reset(conversationId: string): void {
    this.awaiting.delete(conversationId);
    this.waits.delete(conversationId);
  }

  private answered(conversationId: string, clientId: string): void {
    if (this.awaiting.get(conversationId) !== clientId) return;
    this.awaiting.delete(conversationId);
    this.waits.delete(conversationId);
  }

  /** The conversation's next entry waits until `clientId` is answered (or a retry timer ends the wait). */
  private wait(conversationId: string, clientId: string): number {
    this.awaiting.set(conversationId, clientId);
    const n = ++this.lastWait;
    this.waits.set(conversationId, n);
    return n;
  }

  /**
   * Sent on an open socket: if no answer ends this wait within answerTimeoutMs (the server lost the frame or
   * its answer, or answered without an id), the entry is sent again. A reconnect resends at once anyway.
   */
  private awaitAnswer(conversationId: string, clientId: string): void {
    this.retryLater(conversationId, clientId, this.answerTimeoutMs);
  }

  /** Encrypts (once) and sends one entry; 'failed' when it was given up on here. */
  private async trySend(clientId: string): Promise<'failed' | undefined> {
    if (this.inFlight.has(clientId)) return;
    this.inFlight.add(clientId);
    let conversationId: string | undefined;
    let createdAt = 0;
    try {
      let e = await readJson<OutboxEntry>(this.ctx.store, key(clientId));
      if (!e || !unsent(e)) return;
      conversationId = e.conversationId;
      createdAt = e.createdAt;
      // Its ciphertext may have gone out (stored, the answer lost with the socket): the server answers a
      // retried id only while its log keeps it (24 h from the stored ts, which is never before createdAt).
      // Past the lifespan (shorter, see constants.ts) it is never sent again: a resend could be stored twice.
      if ((e.items !== null || e.group !== null) && this.ctx.now() - e.createdAt >= this.retry.lifespanMs) {
        this.transient.delete(clientId);
        if (e.state === 'delivered')
          await this.ctx.store.delete(key(clientId)); // a receipt proves it stored
        else await this.fail(clientId, 'unreachable', true);
        return 'failed';
      }
      // The server's log skipped an entry: it may have moved past a removal this device cannot verify. Nothing
      // is encrypted for the conversation until a whole log is applied (the engine flushes then): the entry
      // and those behind it wait as `sending`, and go out once, under their ids, with the verified members.
      if (e.items === null && e.group === null && (await this.groups.inGap(e.conversationId))) {
        this.heldByGap.add(e.conversationId);
        return;
      }
      if (e.prepare && this.hooks.prepare) {
        // Queued offline before the conversation's log (or a member's devices) was held: completed now, from
        // the verified log; what it queued before it (a sender-key distribution) goes first, then it.
        const done = await this.hooks.prepare(e);
        if (done.mode === 'group') await this.distributionsFirst(e);
        const { prepare: _done, ...rest } = e;
        await putJson(this.ctx.store, key(clientId), { ...rest, mode: done.mode, payload: done.payload });
        this.retryLater(e.conversationId, clientId, 0);
        return;
      }
      if (e.mode === 'group' && e.group === null && this.heldByGap.has(e.conversationId) && this.hooks.rotate) {
        // Held: members the whole log added get our sender key first (queued just before this entry).
        await this.hooks.rotate(e.conversationId, (e.order ?? e.createdAt * 1000) - 0.5);
        this.heldByGap.delete(e.conversationId);
        this.retryLater(e.conversationId, clientId, 0);
        return;
      }
      if (this.openReceipt.get(e.conversationId) === clientId) this.openReceipt.delete(e.conversationId);
      if (e.mode === 'pairwise' && e.items === null) {
        e = { ...e, items: await this.fanout(e.conversationId, e.payload, receiptScope(e)) };
        await putJson(this.ctx.store, key(clientId), e);
      } else if (e.mode === 'group' && e.group === null) {
        let group: Uint8Array;
        try {
          group = await this.groups.encrypt(e.conversationId, e.payload);
        } catch (err) {
          // A removal since it was queued (PITFALLS 19): the new chain and its distribution (to the members
          // left) go first, queued just before this entry; it is encrypted at its next turn, right after.
          if (!(err instanceof EngineError && err.code === 'sender_key_rotation') || !this.hooks.rotate) throw err;
          await this.hooks.rotate(e.conversationId, (e.order ?? e.createdAt * 1000) - 0.5);
          this.retryLater(e.conversationId, clientId, 0);
          return;
        }
        e = { ...e, group: toB64u(group) };
        await putJson(this.ctx.store, key(clientId), e);
      }
      if (this.send(e.conversationId, frameOf(e))) this.awaitAnswer(e.conversationId, e.clientId);
      this.transient.delete(clientId);
    } catch (err) {
      if (conversationId !== undefined && this.retryable(err, createdAt)) {
        // Keep the entry (and everything after it in this conversation: a sender-key distribution must
        // precede its group message) and try again later; a reconnect retries at once.
        this.retryLater(conversationId, clientId, this.backoff(clientId));
        return;
      }
      this.transient.delete(clientId);
      await this.fail(clientId, failureCode(err));
      return 'failed';
    } finally {
      this.inFlight.delete(clientId);
    }
  }

  /** A transient failure of an entry younger than the lifespan: it waits and is tried again. */
  private retryable(err: unknown, createdAt: number): boolean {
    return isTransient(err) && this.ctx.now() - createdAt < this.retry.lifespanMs;
  }

  /** The delay before the next try of an entry that just failed transiently (capped doubling, jittered). */
  private backoff(clientId: string): number {
    const tries = this.transient.get(clientId) ?? 0;
    this.transient.set(clientId, tries + 1);
    return backoffDelay(this.retry, tries, this.ctx.rng);
  }

  /**
   * One ciphertext per device of every verified member (their verified devices only); with `only`, the
   * devices of members not in it get WITHHELD instead (nothing is encrypted to them).
   */
  private async fanout(conversationId: string, payload: Uint8Array, only?: ReadonlySet<string>): Promise<OutboxItem[]> {
    const items: OutboxItem[] = [];
    for (const r of await this.groups.recipients(conversationId)) {
      if (only && !only.has(r.userId)) {
        for (const d of r.devices) items.push({ u: r.userId, d: d.deviceId, c: WITHHELD });
        continue;
      }
      await this.directory.assertSendable(r.userId);
      for (const x of await this.sessions.encryptFor(r.userId, r.devices, payload))
        items.push({ u: r.userId, d: x.deviceId, c: toB64u(x.ciphertext) });
    }
    return items;
  }

  onAccepted(conversationId: string, clientId: string, seq: number, ts?: number): Promise<void> {
    return this.serial(() => this.acceptedNow(conversationId, clientId, seq, ts));
  }

  private async acceptedNow(conversationId: string, clientId: string, seq: number, ts?: number): Promise<void> {
    this.answered(conversationId, clientId);
    const e = await readJson<OutboxEntry>(this.ctx.store, key(clientId));
    if (e && e.conversationId === conversationId) {
      if (e.distributes && e.items) {
        const missed = e.items.filter((i) => i.c === WITHHELD).map((i) => ({ userId: i.u, deviceId: i.d }));
        if (missed.length) await this.groups.unmarkDistributed(conversationId, missed);
      }
      if (!e.visible) {
        // Sequenced means every other device applies it: so do we (even if we had given up on it).
        if (this.hooks.accepted) {
          await this.hooks
            .accepted(e, seq, ts ?? this.ctx.now())
            .catch((err) => console.error('outbox:', errorLabel(err)));
        }
        await this.ctx.store.delete(key(clientId));
      } else {
        // Delivered already (the receipts came before this answer): nothing is left to send or to wait for.
        if (e.state === 'delivered') await this.ctx.store.delete(key(clientId));
        // Kept only to count receipts: never sent again, so its payload and ciphertexts go.
        else await putJson(this.ctx.store, key(clientId), awaitingReceipts({ ...e, state: 'sent', seq }));
        const expiry = await this.hooks.expiresAt?.(conversationId).catch(() => undefined);
        const m = await this.messages.accept(conversationId, clientId, seq, ts, expiry);
        if (m) this.ctx.emit({ type: 'message_updated', message: m });
      }
    }
    await this.flushNow(conversationId);
  }

  onError(conversationId: string, frame: ErrorFrame): Promise<void> {
    return this.serial(async () => {
      if (!frame.id) return;
      this.answered(conversationId, frame.id);
      await this.handleError(conversationId, frame);
      await this.flushNow(conversationId);
    });
  }

  private async handleError(conversationId: string, frame: ErrorFrame): Promise<void> {
    if (!frame.id) return;
    const e = await readJson<OutboxEntry>(this.ctx.store, key(frame.id));
    if (!e || e.conversationId !== conversationId || !unsent(e)) return;
    if (frame.code === 'device_mismatch' && e.mode === 'pairwise' && e.items) {
      if (e.attempts >= MAX_REPAIRS) return this.fail(e.clientId, 'device_mismatch');
      try {
        const items = await this.repair(e, frame);
        await putJson(this.ctx.store, key(e.clientId), { ...e, items, attempts: e.attempts + 1 });
      } catch (err) {
        if (!this.retryable(err, e.createdAt)) return this.fail(e.clientId, failureCode(err));
        // A bundle claim for a missing device hit the network: the same frame goes again later, and its
        // mismatch is repaired then.
        this.retryLater(conversationId, e.clientId, this.backoff(e.clientId));
        return;
      }
      await this.trySend(e.clientId);
      return;
    }
    if (frame.code === 'rate_limited' || frame.code === 'unavailable' || frame.code === 'internal') {
      // The server's wait, within [OUTBOX_RETRY_BASE_MS, OUTBOX_RETRY_MAX_MS]: 0 would resend at once and
      // anything past 2^31 - 1 ms overflows the timer to ~1 ms — either a hot resend loop.
      const ms = frame.retryAfterMs ?? 1000;
      this.retryLater(
        conversationId,
        e.clientId,
        Math.min(constants.OUTBOX_RETRY_MAX_MS, Math.max(constants.OUTBOX_RETRY_BASE_MS, ms)),
      );
      return;
    }
    return this.fail(e.clientId, frame.code);
  }

  private async repair(e: OutboxEntry, frame: ErrorFrame): Promise<OutboxItem[]> {
    const drop = new Set([...(frame.extra ?? []), ...(frame.stale ?? [])].map((r) => ref(r.u, r.d)));
    const items = (e.items ?? []).filter((i) => !drop.has(ref(i.u, i.d)));
    const missing = frame.missing ?? [];
    const users = new Set([...missing, ...(frame.stale ?? []), ...(frame.extra ?? [])].map((r) => r.u));
    for (const u of users) await this.directory.refresh(u).catch(() => undefined);
    const byUser = new Map<string, DeviceRef[]>();
    for (const m of missing) byUser.set(m.u, [...(byUser.get(m.u) ?? []), m]);
    const only = receiptScope(e);
    for (const [u, refs] of byUser) {
      const wanted = new Set(refs.map((r) => r.d));
      let covered = new Set<string>();
      if (
        (!only || only.has(u)) &&
        (await this.groups.isVerifiedMember(e.conversationId, u)) &&
        !(await this.directory.isBlocked(u))
      ) {
        const devices = (await this.directory.devices(u)).filter((d) => wanted.has(d.deviceId));
        const enc = await this.sessions.encryptFor(u, devices, e.payload);
        for (const x of enc) items.push({ u, d: x.deviceId, c: toB64u(x.ciphertext) });
        covered = new Set(enc.map((x) => x.deviceId));
      }
      for (const d of wanted) if (!covered.has(d)) items.push({ u, d, c: WITHHELD });
    }
    return items;
  }

  /** Whether a failed entry's frame may have been stored by the server (see `OutboxEntry.mayHaveBeenSent`). */
  async mayHaveBeenSent(clientId: string): Promise<boolean> {
    const e = await readJson<OutboxEntry>(this.ctx.store, key(clientId));
    return e?.state === 'failed' && e.mayHaveBeenSent === true;
  }

  private async fail(clientId: string, error: string, mayHaveBeenSent = false): Promise<void> {
    const e = await readJson<OutboxEntry>(this.ctx.store, key(clientId));
    if (!e) return;
    await putJson(this.ctx.store, key(clientId), {
      ...e,
      state: 'failed',
      error,
      ...(mayHaveBeenSent ? { mayHaveBeenSent } : {}),
    });
    if (!e.visible) {
      await this.hooks.failed?.(e).catch(() => undefined);
      return;
    }
    const m = await this.messages.update(e.conversationId, { seq: e.seq, clientId }, { status: 'failed', error });
    if (m) this.ctx.emit({ type: 'message_updated', message: m });
  }

  /**
   * A group's members changed (R8): a message that only a member removed since still lacked is delivered
   * now — no receipt will come from them to complete it.
   */
  async membersChanged(conversationId: string, members: ReadonlySet<string>): Promise<void> {
    const updated = await this.ctx.store.transaction(async (tx) => {
      const out: MessageView[] = [];
      for (const { value: e } of await listJson<OutboxEntry>(tx, 'out/')) {
        if (e.conversationId !== conversationId || !e.visible || !e.audience || !e.deliveredTo?.length) continue;
        if (e.state !== 'sent' && e.state !== 'sending') continue;
        const awaited = e.audience.filter((u) => members.has(u));
        if (!awaited.every((u) => e.deliveredTo!.includes(u))) continue;
        if (e.state === 'sent') tx.delete(key(e.clientId));
        else writeJson(tx, key(e.clientId), { ...e, state: 'delivered' });
        const delivery = { to: awaited.length, of: awaited.length };
        const m = await this.messages.updateInTx(
          tx,
          conversationId,
          { seq: e.seq, clientId: e.clientId },
          { status: 'delivered', delivery },
        );
        if (m) out.push(m);
      }
      return out;
    });
    for (const m of updated) this.ctx.emit({ type: 'message_updated', message: m });
  }

  /**
   * An end-to-end receipt from a member: our messages with these client ids are delivered. Runs in the
   * caller's transaction (the inbox's, which also advances the cursor); returns the updated messages for
   * the caller to emit after the commit.
   */
  async markDeliveredInTx(
    tx: StoreTx,
    conversationId: string,
    ids: readonly string[],
    /** A group's receipt: whose it is, and every member whose receipt makes the message delivered (R8). */
    by: { readonly userId: string; readonly awaited: ReadonlySet<string> } | null = null,
  ): Promise<MessageView[]> {
    const out: MessageView[] = [];
    // Every id's entry read at once, only for ids that may be ours (a receipt from a group member lists other
    // members' messages too, for which we hold none); each id once, so no read is answered from before a
    // write of this loop.
    const unique = await this.mayHaveSentInTx(tx, [...new Set(ids)]);
    if (unique.length === 0) return out;
    const entries = await Promise.all(unique.map((id) => readJson<OutboxEntry>(tx, key(id))));
    for (const [i, id] of unique.entries()) {
      const e = entries[i];
      if (!e || e.conversationId !== conversationId || !e.visible) continue;
      let delivery: { to: number; of: number } | undefined;
      if (by && e.state !== 'delivered') {
        // Kept (with who has it) until every current member's receipt is in; shown as "k of n" meanwhile.
        // Awaited: the current members it was sent to (one added since never got it; one removed is not waited for).
        const awaited = e.audience ? new Set(e.audience.filter((u) => by.awaited.has(u))) : by.awaited;
        const to = [...new Set([...(e.deliveredTo ?? []), by.userId])].filter((u) => awaited.has(u));
        delivery = { to: to.length, of: awaited.size };
        if (to.length < awaited.size) {
          writeJson(
            tx,
            key(id),
            e.state === 'sent' ? awaitingReceipts({ ...e, deliveredTo: to }) : { ...e, deliveredTo: to },
          );
          const m = await this.messages.updateInTx(tx, conversationId, { seq: e.seq, clientId: id }, { delivery });
          if (m) out.push(m);
          continue;
        }
      }
      if (e.state === 'sent') tx.delete(key(id));
      // Not accepted yet (its `accepted` is late or was lost): it stays queued, and is sent again until it is.
      else if (e.state === 'sending') writeJson(tx, key(id), { ...e, state: 'delivered' });
      const m = await this.messages.updateInTx(
        tx,
        conversationId,
        { seq: e.seq, clientId: id },
        { status: 'delivered', ...(delivery ? { delivery } : {}) },
      );
      if (m) out.push(m);
    }
    return out;
  }
}

/**
 * How long an accepted message waits in the outbox for its receipts (a group's: every other member's, R8):
 * twice the server's mailbox retention (worker/delivery/config.ts `mailboxTtlMs`, 30 days) — the message
 * and then the receipt each wait at most that long. Past it the entry leaves and the message keeps what it
 * shows (sent, or "k/n").
 */
export const RECEIPT_WAIT_MS = 60 * 24 * 3600 * 1000;

/**
 * An accepted entry kept only to count receipts: it is never sent again, so it holds no payload and no
 * ciphertexts (a group with a member who never answers keeps one such entry per message for RECEIPT_WAIT_MS).
 */
function awaitingReceipts(e: OutboxEntry): OutboxEntry {
  return { ...e, payload: new Uint8Array(0), items: null, group: null };
}

/** The users a receipt is encrypted to (undefined: every member; see `OutboxEntry.receiptTo`). */
function receiptScope(e: OutboxEntry): ReadonlySet<string> | undefined {
  return e.kind === 'receipt' && e.receiptTo ? new Set(e.receiptTo) : undefined;
}

/**
 * Still to be sent until the server answers it: 'sending', and 'delivered' without a seq — a member's
 * receipt can arrive before our `accepted` (which may be late, or lost with a dropped socket), and such an
 * entry must still be sent again to learn its seq (the server answers the retry with the original one).
 */
function unsent(e: OutboxEntry): boolean {
  return e.state === 'sending' || (e.state === 'delivered' && e.seq === null);
}

function frameOf(e: OutboxEntry): ClientFrame {
  const body = e.mode === 'group' ? { group: e.group! } : { to: e.items!.map((i) => ({ u: i.u, d: i.d, c: i.c })) };
  return e.kind === 'receipt'
    ? ({
        v: WIRE_VERSION,
        type: 'receipt',
        id: e.clientId,
        status: e.receiptStatus ?? 'delivered',
        ...body,
      } as ClientFrame)
    : ({ v: WIRE_VERSION, type: 'send', id: e.clientId, ...body } as ClientFrame);
}
