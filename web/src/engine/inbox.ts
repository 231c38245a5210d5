/**
 * The receive path, for envelopes from the realtime socket and from the mailbox alike, processed strictly
 * in seq order per conversation:
 *
 * - dedupe: an envelope at or below the conversation's processed cursor is skipped. The protocol's
 *   `duplicate` (a message key already used) is skipped only when the envelope is already accounted for
 *   locally (cursor past it, or a message stored at its seq — e.g. another tab processed it); otherwise it
 *   is stored as `undecryptable` with error `duplicate` (visible, never silently dropped). Every transaction
 *   that moves the cursor reads it first and never moves it back; a failure stored without decrypting (an
 *   unknown sender, a failed decryption) is not stored at all once the cursor passed it (another tab of this
 *   device processed it meanwhile);
 * - sender check BEFORE decrypting: the sender must be a member per the verified membership log and the
 *   sending device must be in the sender's verified device list (`Groups.verifiedSender`, which refreshes
 *   both once on a miss). An envelope from anyone else — e.g. a removed member still holding a sender key,
 *   delivered by a stale or malicious server — is NOT decrypted and is stored as a failed message (status
 *   `undecryptable`, body null, error `not_member` / `unknown_device`): visible, never shown as content.
 *   A removed member's sender keys are deleted when the removal is applied (groups.ts);
 * - batches: a run of envelopes (a mailbox page's share of a conversation, a `deliver` frame) is processed in
 *   ONE store transaction (`batch`) while it holds the lock of every chain it decrypts from: chain states and
 *   the cursor are read once, each envelope is decrypted against the state in memory, and the texts and
 *   receipts, the states as the last taken envelope left them, and the cursor commit together (acked after).
 *   Anything else — a failure, a new session, a distribution, an action, a blocked sender — ends the run
 *   before it and is handled alone as described below; the rest continues as a new run;
 * - decryption is all-or-nothing: the advanced session / sender-key state is committed (still under the
 *   session lock) in the SAME transaction that stores the message (or applies the receipt or the
 *   sender-key distribution) and advances the cursor; acknowledgement (the returned cursor) happens only
 *   after that commit. A crash anywhere before it leaves the old state, and the redelivered envelope
 *   decrypts again. A payload that does not parse, names another conversation, or carries a malformed
 *   distribution is stored as a failed message in that same transaction; a distribution comes pairwise
 *   only (one inside a group message is refused, `malformed_payload`);
 * - a message that fails to decrypt is stored as `undecryptable` with its error code (never silently
 *   dropped) and its raw envelope kept for a later retry; the session is repaired where the protocol
 *   allows: a failed pairwise message marks the session so our next send starts a new one (a prekey
 *   message re-establishes it on both sides), an untrusted identity refreshes the sender's device list
 *   (surfacing a key change), a group message without a sender key is retried when a distribution arrives;
 * - attachments (`att`): the pointer is checked field by field (attachments.ts `parseAttachmentPointer`) and
 *   stored with the message in one transaction; a pointer that breaks a rule is a failed message
 *   (`malformed_payload`). Nothing is downloaded here — the user opens it (engine `openAttachment`);
 * - content types (docs/PROTOCOL.md §"Content types", protocol/content.ts): a `text` is stored (its quote
 *   resolved against this device's copy of the quoted message when it has one, its expiry from the
 *   conversation's VERIFIED timer — a different timer named by the message only makes us bring the log up
 *   to date first); a reaction, edit or delete is applied under the rules of actions.ts in the same
 *   transaction, or refused (nothing changes; a `content_refused` event names the code); a type or version
 *   from the future is stored as an "unsupported message" if it has an id, else ignored; a broken message
 *   is stored as failed, a broken signal ignored (`content_refused`);
 * - delivery receipts: one end-to-end encrypted receipt per batch, listing the client ids received and
 *   encrypted only to those messages' authors (other members' devices get WITHHELD) — held instead while
 *   the conversation is a message request (people.ts; sent when it is accepted, then to every member);
 * - people (people.ts): a message from a blocked person, or in a blocked conversation, is decrypted (so the
 *   session stays in step) and dropped in the same transaction — nothing stored, no receipt, no event; a
 *   `pk` payload stores the sender's profile key with the envelope, and the profile is fetched after the
 *   commit; a malformed one is ignored (nothing shown, the envelope is processed).
 *
 * Known limit: membership is checked against the log as it stands when the envelope is processed, so a
 * message a member sent just before being removed, processed after the removal, is stored as `not_member`.
 *
 * Does NOT: talk to the socket or the mailbox (the engine does and acks with the returned cursor), or send
 * (it queues receipts in the outbox).
 * @module
 */

import { type Content, decodeContent, fromB64u, is, quoteExcerpt, type TextContent } from './_protocol.js';
import { type ActionOutcome, applyActionInTx, type MessageAction } from './actions.js';
import { MAX_CAPTION_LEN, parseAttachmentPointer, viewOf } from './attachments.js';
import { decodeRecord, encodeRecord } from './codec.js';
import {
  type EngineContext,
  EngineError,
  type EngineEvent,
  type MessageView,
  type QuoteView,
  type ReceiveChain,
} from './context.js';
import type { Directory } from './directory.js';
import type { Groups } from './groups.js';
import type { Keystore } from './keystore.js';
import type { EngineLocks } from './locks.js';
import { encodePayload, type Messages } from './messages.js';
import type { Outbox } from './outbox.js';
import type { OwnDevices } from './own-devices.js';
import type { People } from './people.js';
import type { Sessions } from './sessions.js';
import { mutex, readOnce, type StoreReader, type StoreTx } from './storage.js';
import type { Envelope } from './transport.js';

const K = {
  undecryptable: (c: string, seq: number) => `undec/${c}/${seq.toString().padStart(16, '0')}`,
  undecDir: (c: string) => `undec/${c}/`,
};

/** What one decrypted envelope committed, for the events and follow-ups after the transaction. */
interface Outcome {
  readonly added: readonly MessageView[];
  readonly updated: readonly MessageView[];
  readonly receipt: string | null;
  readonly distributionApplied: boolean;
  /** A new profile key from this user was stored: fetch their profile. */
  readonly profileFrom?: string;
  /** A reaction / edit / delete / signal that was not applied, and why. */
  readonly refused?: string;
}

/** Envelopes one batch takes at most (one store transaction: its writes are sealed and committed together). */
const BATCH_MAX = 256;

/** What a batch reads first: the cursor, each chain's state, and the bytes behind them. */
interface BatchStart {
  readonly cursor: number;
  readonly states: ReadonlyMap<ReceiveChain, unknown>;
  readonly seen: ReadonlyMap<string, Uint8Array | undefined>;
}

/** What a batch takes from a start (see `batch`). */
interface BatchDecision {
  readonly from: number;
  readonly cursor: number;
  readonly states: ReadonlyMap<ReceiveChain, unknown>;
  readonly dirty: ReadonlySet<ReceiveChain>;
  readonly take: readonly { readonly env: Envelope; readonly content: Content }[];
  readonly acked: number | null;
  readonly taken: number;
}

/** Whether two starts read the same keys and got the same bytes. */
function sameReads(
  a: ReadonlyMap<string, Uint8Array | undefined>,
  b: ReadonlyMap<string, Uint8Array | undefined>,
): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    if (!b.has(k)) return false;
    const w = b.get(k);
    if (v === undefined || w === undefined ? v !== w : v.length !== w.length || v.some((x, i) => x !== w[i]))
      return false;
  }
  return true;
}

/** A message to acknowledge end-to-end: its client id, and its author (the only one the receipt is for). */
interface Receipt {
  readonly id: string;
  readonly from: string;
}

interface BatchResult {
  /** Envelopes of the run accounted for (stored, or skipped as already processed), from its start. */
  readonly taken: number;
  /** The cursor to acknowledge after them (null: none of them advanced it). */
  readonly acked: number | null;
  /** Messages to acknowledge end-to-end. */
  readonly receipts: readonly Receipt[];
}

interface HeldEnvelope {
  readonly conversationId: string;
  readonly envelope: Envelope;
}

export class Inbox {
  private readonly queues = new Map<string, <T>(fn: () => Promise<T>) => Promise<T>>();
  /**
   * Conversations whose processing failed (a store error, a fetch that failed): their live frames are skipped
   * (not stored, not acknowledged) until the socket resumes from the durable cursor (`resumePoint`) — a later
   * frame would move the cursor past the envelope that failed, and its ack would let the server delete it.
   */
  private readonly broken = new Set<string>();
  /** Conversation kinds already read (they never change). */
  private readonly kinds = new Map<string, Awaited<ReturnType<Groups['kind']>>>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly keys: Keystore,
    private readonly sessions: Sessions,
    private readonly groups: Groups,
    private readonly directory: Directory,
    private readonly messages: Messages,
    private readonly outbox: Outbox,
    private readonly newId: () => string,
    private readonly people: People,
    /** Runs follow-up work in the background (the engine tracks it for idle()). */
    private readonly background: (p: Promise<unknown>) => void = (p) => void p.catch(() => undefined),
    /** Our own devices (linking): read positions from our sync conversation. */
    private readonly own?: OwnDevices,
    /** A peer's key-transparency head arrived (`kth`); checked after the commit, outside the session lock. */
    private readonly onPeerHead: (userId: string, head: Uint8Array) => void = () => undefined,
  ) {}

  private queue(conversationId: string) {
    let q = this.queues.get(conversationId);
    if (!q) {
      q = mutex();
      this.queues.set(conversationId, q);
    }
    return q;
  }

  /**
   * Processes envelopes in seq order; returns the cursor to acknowledge (null if nothing advanced).
   * Runs of envelopes go through `batch` (one store transaction per run); an envelope the batch does not
   * take ends its run, is handled alone by `one` (today's path: failures, repairs, distributions, …), and
   * the rest continues as a new run. `live`: a socket's frame, skipped while the conversation waits for its
   * resume after a failure (a mailbox page is always processed: it starts from the server's durable cursor).
   * A failure marks the conversation so: the caller restarts its socket.
   */
  process(conversationId: string, envelopes: readonly Envelope[], live = false): Promise<number | null> {
    return this.queue(conversationId)(async () => {
      if (live && this.broken.has(conversationId)) return null;
      try {
        return await this.processNow(conversationId, envelopes);
      } catch (e) {
        this.broken.add(conversationId);
        throw e;
      }
    });
  }

  /**
   * The cursor a (re)connecting socket resumes after: read in the conversation's queue, after every frame
   * queued before it (the old socket's frames behind a failure are skipped); the socket's frames count again.
   */
  resumePoint(conversationId: string): Promise<number> {
    return this.queue(conversationId)(async () => {
      this.broken.delete(conversationId);
      return this.messages.cursor(conversationId);
    });
  }

  private async processNow(conversationId: string, envelopes: readonly Envelope[]): Promise<number | null> {
    const sorted = [...envelopes].sort((a, b) => a.seq - b.seq);
    let acked: number | null = null;
    const receipts: Receipt[] = [];
    let i = 0;
    while (i < sorted.length) {
      const run = sorted.slice(i, i + BATCH_MAX);
      const b = await this.batch(conversationId, run);
      receipts.push(...b.receipts);
      if (b.acked !== null) acked = b.acked;
      i += b.taken;
      if (b.taken === run.length) continue;
      // The envelope the batch stopped at: alone, as before batching.
      const env = sorted[i++]!;
      const cursor = await this.messages.cursor(conversationId);
      if (env.seq <= cursor) {
        acked = cursor;
        continue;
      }
      const r = await this.one(conversationId, env);
      if (r) receipts.push({ id: r, from: env.from.u });
      acked = env.seq;
    }
    if (receipts.length) await this.receiptsFor(conversationId, receipts);
    return acked;
  }

  /**
   * A run of envelopes in ONE store transaction, holding the lock of every chain it decrypts from (sessions
   * first, then sender keys, each in name order — the order the one-at-a-time path nests them — so a batch
   * never deadlocks with it, a send, or another tab): the cursor and each chain's state are read once through
   * the transaction, every envelope is decrypted against the state in memory, and the messages, the advanced
   * states (as the last TAKEN envelope left them) and the cursor commit together; the caller acknowledges
   * after that. The decrypting is done ahead, before the transaction's turn, from the same reads outside it;
   * the transaction keeps that result only if its own reads return the same bytes, else decrypts again. The run ends before the first envelope it does not take — a sender that is not verified, a
   * decryption that fails or would start a session, or any content but a text or a receipt from a sender
   * whose messages are kept, with the conversation's verified timer — and nothing of that envelope is
   * written (its chain keeps the state before it); `process` hands it to `one`. The transaction function may
   * run more than once (store conflicts): it only reads and writes through `tx` and returns what to emit,
   * which is emitted once, after the commit.
   */
  private async batch(conversationId: string, run: readonly Envelope[]): Promise<BatchResult> {
    const own = await this.keys.identity();
    // ---- outside the transaction (these may refresh from the network): who may send, and what we keep ----
    const chains = new Map<string, ReceiveChain>();
    const dropped = new Map<string, boolean>();
    const bytes = run.map((e) => fromB64u(e.c));
    // The run's senders, read side by side from what this device holds (no network); a sender not known
    // that way is checked with `verifiedSender` (which may refresh the log or the device list), one at a
    // time in run order, and only up to the first one that fails.
    const senders = new Map<string, Envelope['from']>();
    for (const [i, env] of run.entries())
      if (!isWithheld(bytes[i]!)) senders.set(`${env.from.u}/${env.from.d}`, env.from);
    const verified = new Map<string, boolean>();
    await Promise.all(
      [...senders].map(async ([k, { u, d }]) => {
        if (await this.groups.isKnownSender(conversationId, u, d)) verified.set(k, true);
      }),
    );
    let usable = 0;
    const first = new Map<string, Envelope>();
    for (const [i, env] of run.entries()) {
      if (!isWithheld(bytes[i]!)) {
        const { u, d } = env.from;
        let ok = verified.get(`${u}/${d}`);
        if (ok === undefined) {
          ok = (await this.groups.verifiedSender(conversationId, u, d)) === 'ok';
          verified.set(`${u}/${d}`, ok);
        }
        if (!ok) break;
        const k = `${env.mode}/${u}/${d}`;
        if (!first.has(k)) first.set(k, env);
      }
      usable++;
    }
    // What the run's chains and senders need, side by side: each chain, and whether we keep a sender's messages.
    await Promise.all([
      ...[...first].map(async ([k, env]) => {
        const { u, d } = env.from;
        chains.set(
          k,
          env.mode === 'group'
            ? this.groups.receiveChain(conversationId, u, d)
            : await this.sessions.receiveChain(u, d),
        );
      }),
      ...[...new Set([...first.values()].map((e) => e.from.u))]
        .filter((u) => u !== own.userId)
        .map(async (u) => dropped.set(u, await this.people.isDropped(conversationId, u))),
    ]);
    if (usable === 0) return { taken: 0, acked: null, receipts: [] };
    const timer = await this.groups.timer(conversationId);
    // Who a group's receipts must come from before our message shows delivered (read outside the transaction).
    const awaited = await this.receiptAudience(conversationId, own.userId);
    const locks = [...new Set([...chains.values()].map((c) => c.lock))].sort(lockOrder);
    const list = [...chains.values()];
    /** The cursor and every chain's state, read through `from`, with the exact bytes each read returned. */
    const readStart = async (from: StoreReader): Promise<BatchStart> => {
      const seen = new Map<string, Uint8Array | undefined>();
      const recording: StoreTx = {
        get: async (key) => {
          const v = await from.get(key);
          seen.set(key, v?.slice());
          return v;
        },
        list: () => Promise.reject(new Error('inbox: the batch start reads no list')),
        put: () => {
          throw new Error('inbox: the batch start writes nothing');
        },
        delete: () => {
          throw new Error('inbox: the batch start writes nothing');
        },
      };
      const [stored, ...loaded] = await Promise.all([
        this.messages.cursorInTx(recording, conversationId),
        ...list.map((c) => c.load(recording)),
      ]);
      return {
        cursor: (stored as number | undefined) ?? 0,
        states: new Map<ReceiveChain, unknown>(list.map((c, i) => [c, loaded[i]])),
        seen,
      };
    };
    /** 1. Decrypt and decide, in order, writing nothing: a function of the start alone. */
    const decide = async (start: BatchStart): Promise<BatchDecision> => {
      let cursor = start.cursor;
      const states = new Map(start.states);
      const dirty = new Set<ReceiveChain>();
      const take: { env: Envelope; content: Content }[] = [];
      let acked: number | null = null;
      let taken = 0;
      for (const [i, env] of run.slice(0, usable).entries()) {
        if (env.seq <= cursor) {
          acked = cursor;
          taken++;
          continue;
        }
        if (!isWithheld(bytes[i]!)) {
          const chain = chains.get(`${env.mode}/${env.from.u}/${env.from.d}`)!;
          let d: { plaintext: Uint8Array; next: unknown };
          try {
            d = await chain.decrypt(states.get(chain), bytes[i]!);
          } catch {
            break; // `one` decrypts it again and stores what failed, as it always did
          }
          const content = this.takes(conversationId, env, d.plaintext, own.userId, timer, dropped);
          if (!content) break;
          states.set(chain, d.next);
          dirty.add(chain);
          take.push({ env, content });
        }
        cursor = env.seq;
        acked = env.seq;
        taken++;
      }
      return { from: start.cursor, cursor, states, dirty, take, acked, taken };
    };
    const r = await withLocks(this.ctx.locks, locks, async () => {
      // Decrypted ahead, under the chains' locks but before the store transaction (whose turn holds the
      // store for every other conversation): from the cursor and states as read now. The transaction reads
      // them again and uses this decision only if every byte it reads is the same — else it decides again
      // from what it read. Nothing of it is written or acknowledged before that transaction commits.
      const early = await readStart(this.ctx.store);
      const ahead = await decide(early);
      return this.ctx.store.transaction(async (inner) => {
        const tx = readOnce(inner);
        const start = await readStart(tx);
        const d = sameReads(start.seen, early.seen) ? ahead : await decide(start);
        // 2. What storing them reads, all at once; 3. store them, in order.
        const ids = d.take.flatMap((t) => (t.content.t === 'text' ? [t.content.id] : []));
        if (ids.length) await this.messages.prefetchInTx(tx, conversationId, ids);
        const events: EngineEvent[] = [];
        const receipts: Receipt[] = [];
        for (const t of d.take) {
          const out = await this.storeInTx(tx, conversationId, t.env, t.content, own.userId, timer, awaited);
          events.push(...out.events);
          if (out.receipt) receipts.push({ id: out.receipt, from: t.env.from.u });
        }
        for (const chain of d.dirty) chain.save(tx, d.states.get(chain));
        if (d.cursor !== d.from) await this.advanceInTx(tx, conversationId, d.cursor);
        return { taken: d.taken, acked: d.acked, receipts, events };
      });
    });
    for (const e of r.events) this.ctx.emit(e);
    return r;
  }

  /**
   * The content the batch path takes from one decrypted envelope: a text or a receipt; null for anything it
   * leaves to `one` — a malformed or misaddressed payload, a blocked sender's message, a timer other than the
   * verified one (`one` brings the log up to date first), any other content type.
   */
  private takes(
    conversationId: string,
    env: Envelope,
    plaintext: Uint8Array,
    ownUserId: string,
    timer: number,
    dropped: ReadonlyMap<string, boolean>,
  ): Content | null {
    const r = decodeContent(plaintext);
    if (r.kind !== 'ok' || r.content.conv !== conversationId) return null;
    const p = r.content;
    if (p.t === 'receipt') return p;
    if (p.t !== 'text' || p.id !== env.id || (p.exp ?? 0) !== timer) return null;
    const u = env.from.u;
    if (u !== ownUserId && dropped.get(u) !== false) return null;
    return p;
  }

  /** Stores what `takes` took (a text or a receipt) in the batch's transaction; returns what to emit after. */
  private async storeInTx(
    tx: StoreTx,
    conversationId: string,
    env: Envelope,
    p: Content,
    ownUserId: string,
    timer: number,
    awaited: ReadonlySet<string> | null,
  ): Promise<{ events: EngineEvent[]; receipt: string | null }> {
    if (p.t === 'receipt') {
      const by = awaited ? { userId: env.from.u, awaited } : null;
      const updated = await this.outbox.markDeliveredInTx(tx, conversationId, p.ids, by);
      return { events: updated.map((m) => ({ type: 'message_updated', message: m })), receipt: null };
    }
    if (p.t !== 'text') throw new Error(`inbox: the batch path does not store ${p.t}`);
    let m: MessageView = {
      ...this.baseView(conversationId, env, ownUserId),
      body: p.body,
      sentAt: p.sentAt,
      ...(timer > 0 ? { expiresAt: env.ts + timer * 1000 } : {}),
    };
    const quote = p.reply ? await this.resolveQuote(tx, conversationId, p) : undefined;
    m = quote ? { ...m, quote } : m;
    await this.messages.putInTx(tx, m);
    return {
      events: [{ type: 'message_added', message: m }],
      receipt: env.from.u === ownUserId ? null : env.id,
    };
  }

  /**
   * Handles one envelope; returns the client id to acknowledge end-to-end, if any. `logSynced`: the
   * membership log was brought up to date for this envelope already (see `LogBehind`).
   */
  private async one(conversationId: string, env: Envelope, retry = false, logSynced = false): Promise<string | null> {
    const { u, d } = env.from;
    const bytes = fromB64u(env.c);
    if (bytes.length === 1 && bytes[0] === 0) {
      // WITHHELD: the sender did not encrypt to this device. Nothing to show, nothing lost.
      if (!retry) await this.advance(conversationId, env.seq);
      return null;
    }
    const sender = await this.groups.verifiedSender(conversationId, u, d);
    if (sender !== 'ok') {
      await this.storeFailed(conversationId, env, sender, retry);
      return null;
    }
    let decrypted = false;
    let outcome: Outcome;
    try {
      const then = (r: { plaintext: Uint8Array; commit: (tx: StoreTx) => Promise<void> }) => {
        decrypted = true;
        return this.accept(conversationId, env, r.plaintext, r.commit, retry, logSynced);
      };
      outcome =
        env.mode === 'group'
          ? await this.groups.decrypt(conversationId, u, d, bytes, then)
          : await this.sessions.decrypt(u, d, bytes, then);
    } catch (e) {
      if (e instanceof LogBehind && !logSynced) {
        // Nothing was committed and the chain's lock is released: bring the log up to date (which may apply a
        // removal and take the removed sender's chain lock), then handle the envelope again from the start.
        await this.groups.syncLog(conversationId).catch(() => undefined);
        return this.one(conversationId, env, retry, true);
      }
      // A one-time prekey another new session consumed meanwhile: a decryption failure, not a storage one.
      const consumed = e instanceof EngineError && e.code === 'prekey_consumed';
      if (decrypted && !consumed) throw e; // storing failed (e.g. a crash): nothing committed, the envelope is not acked
      if (is(e, 'duplicate')) {
        if (retry) return null;
        const done =
          (await this.messages.cursor(conversationId)) >= env.seq ||
          (await this.messages.get(conversationId, env.seq)) !== undefined;
        if (!done) await this.storeFailed(conversationId, env, 'duplicate', false);
        return null;
      }
      const error = is(e) ? e.code : consumed ? 'prekey_consumed' : 'decryption_failed';
      if (env.mode === 'pairwise' && (error === 'decryption_failed' || consumed))
        await this.sessions.markForRepair(u, d);
      if (error === 'untrusted_identity') await this.directory.refresh(u).catch(() => undefined);
      await this.storeUndecryptable(conversationId, env, error, retry);
      return null;
    }
    for (const m of outcome.added) this.ctx.emit({ type: retry ? 'message_updated' : 'message_added', message: m });
    for (const m of outcome.updated) this.ctx.emit({ type: 'message_updated', message: m });
    if (outcome.refused) this.ctx.emit({ type: 'content_refused', conversationId, id: env.id, code: outcome.refused });
    if (outcome.distributionApplied)
      await this.retryUndecryptable(conversationId, (h) => h.from.u === u && h.from.d === d);
    if (outcome.profileFrom) this.background(this.people.refreshProfile(outcome.profileFrom));
    return outcome.receipt;
  }

  /**
   * Runs under the session / sender-key lock right after decryption: ONE transaction commits the advanced
   * state (`commit`), what the payload carries, and the cursor. Events are emitted by the caller.
   * It takes no lock and brings nothing up to date from the server: locks are not re-entrant, and anything
   * that applies log entries may take a chain's receive lock — the one held here, or (another tab) one
   * held by a batch. What needs a newer log throws `LogBehind` before anything is committed instead.
   */
  private async accept(
    conversationId: string,
    env: Envelope,
    plaintext: Uint8Array,
    commit: (tx: StoreTx) => Promise<void>,
    retry: boolean,
    logSynced: boolean,
  ): Promise<Outcome> {
    const { u, d } = env.from;
    const own = await this.keys.identity();
    const r = decodeContent(plaintext);
    const conv = r.kind === 'malformed' ? r.conv : r.kind === 'ok' ? r.content.conv : r.conv;
    const signal = r.kind === 'malformed' && r.t !== null && r.t !== 'text' && isKnownSignal(r.t);
    const bad =
      r.kind === 'malformed'
        ? 'malformed_payload'
        : conv !== conversationId
          ? 'wrong_conversation'
          : r.kind === 'ok' && (r.content.t === 'text' || r.content.t === 'att') && r.content.id !== env.id
            ? 'malformed_payload' // a message's id is the one its envelope was sent under
            : r.kind === 'unsupported' && r.id !== null && r.id !== env.id
              ? 'malformed_payload'
              : null;
    if (bad) {
      const isSignal =
        signal ||
        (r.kind === 'ok' && r.content.t !== 'text' && r.content.t !== 'att') ||
        (r.kind === 'unsupported' && !r.id);
      if (isSignal) return this.ignore(conversationId, env, commit, retry, bad);
      const m = this.failedView(conversationId, env, bad, own.userId);
      await this.ctx.store.transaction(async (tx) => {
        await commit(tx);
        await this.putFailedInTx(tx, m, env, retry);
      });
      return { added: [m], updated: [], receipt: null, distributionApplied: false };
    }
    // ---- people: what a blocked person sends is dropped; profile keys are stored ----
    const t = r.kind === 'ok' ? r.content.t : r.t;
    const dropped =
      u !== own.userId && t !== 'skd' && t !== 'receipt' && (await this.people.isDropped(conversationId, u));
    const pk = r.kind === 'ok' && r.content.t === 'pk' ? r.content : null;
    if (dropped || pk) {
      let fresh = false;
      await this.ctx.store.transaction(async (tx) => {
        await commit(tx);
        fresh = false;
        if (!dropped && pk && u !== own.userId) {
          try {
            fresh = await this.people.acceptProfileKeyInTx(tx, u, pk.k);
          } catch (e) {
            if (!is(e)) throw e; // a malformed profile-key message: ignored
          }
        }
        if (retry) tx.delete(K.undecryptable(conversationId, env.seq));
        else await this.advanceInTx(tx, conversationId, env.seq);
      });
      return {
        added: [],
        updated: [],
        receipt: null,
        distributionApplied: false,
        ...(fresh ? { profileFrom: u } : {}),
      };
    }
    if (r.kind === 'unsupported') {
      // A type (or version) from the future: a timeline message shows as unsupported, a signal is ignored.
      if (r.id === null) return this.ignore(conversationId, env, commit, retry);
      const expiresAt = await this.expiryFor(conversationId, env.ts);
      const m: MessageView = {
        ...this.baseView(conversationId, env, own.userId),
        body: null,
        unsupported: r.t,
        ...(expiresAt !== undefined ? { expiresAt } : {}),
      };
      await this.storeMessage(conversationId, env, m, commit, retry);
      return { added: [m], updated: [], receipt: u === own.userId ? null : env.id, distributionApplied: false };
    }
    if (r.kind !== 'ok') return this.ignore(conversationId, env, commit, retry, 'malformed_payload');
    const p: Content = r.content;
    if (p.t === 'text') {
      const expiresAt = await this.expiryFor(conversationId, env.ts, p.exp ?? 0, logSynced);
      let m: MessageView = {
        ...this.baseView(conversationId, env, own.userId),
        body: p.body,
        sentAt: p.sentAt,
        ...(expiresAt !== undefined ? { expiresAt } : {}),
      };
      await this.ctx.store.transaction(async (tx) => {
        await commit(tx);
        if (retry) tx.delete(K.undecryptable(conversationId, env.seq));
        const quote = p.reply ? await this.resolveQuote(tx, conversationId, p) : undefined;
        m = quote ? { ...m, quote } : m;
        await this.messages.putInTx(tx, m);
        if (!retry) await this.advanceInTx(tx, conversationId, env.seq);
      });
      return { added: [m], updated: [], receipt: u === own.userId ? null : env.id, distributionApplied: false };
    }
    if (p.t === 'att') {
      // An attachment: the pointer must follow every rule of PROTOCOL.md §"Attachments" before it is stored.
      const pointer = parseAttachmentPointer(p.att);
      if (!pointer || p.body.length > MAX_CAPTION_LEN) {
        const m = this.failedView(conversationId, env, 'malformed_payload', own.userId);
        await this.ctx.store.transaction(async (tx) => {
          await commit(tx);
          await this.putFailedInTx(tx, m, env, retry);
        });
        return { added: [m], updated: [], receipt: null, distributionApplied: false };
      }
      const expiresAt = await this.expiryFor(conversationId, env.ts, p.exp ?? 0, logSynced);
      const m: MessageView = {
        ...this.baseView(conversationId, env, own.userId),
        body: p.body,
        sentAt: p.sentAt,
        attachment: viewOf(pointer),
        ...(expiresAt !== undefined ? { expiresAt } : {}),
      };
      await this.ctx.store.transaction(async (tx) => {
        await commit(tx);
        if (retry) tx.delete(K.undecryptable(conversationId, env.seq));
        await this.messages.putInTx(tx, m);
        this.messages.putAttachmentInTx(tx, conversationId, env.id, pointer);
        if (!retry) await this.advanceInTx(tx, conversationId, env.seq);
      });
      return { added: [m], updated: [], receipt: u === own.userId ? null : env.id, distributionApplied: false };
    }
    if (p.t === 'skd') {
      // A distribution comes pairwise only. One inside a group message is refused: applying it would take
      // the chain's receive lock that this decryption holds (locks are not re-entrant: a hostile member
      // could wedge the conversation for good).
      if (env.mode !== 'pairwise') return this.ignore(conversationId, env, commit, retry, 'malformed_payload');
      return this.groups.withDistribution(conversationId, u, d, p.d, async (apply, refused) => {
        const m = apply ? null : this.failedView(conversationId, env, refused ?? 'malformed_payload', own.userId);
        await this.ctx.store.transaction(async (tx) => {
          await commit(tx);
          if (apply) {
            apply(tx);
            if (!retry) await this.advanceInTx(tx, conversationId, env.seq);
          } else await this.putFailedInTx(tx, m!, env, retry);
        });
        return { added: m ? [m] : [], updated: [], receipt: null, distributionApplied: !!apply };
      });
    }
    if (p.t === 'sync') {
      // Only our own devices, only in our own sync conversation; anything else is dropped (cursor advances).
      const ours = u === own.userId && this.own && (await this.own.selfConversationId()) === conversationId;
      let moved: { c: string; seq: number }[] = [];
      await this.ctx.store.transaction(async (tx) => {
        await commit(tx);
        if (ours && Array.isArray(p.read)) moved = await this.own!.applyReadsInTx(tx, p.read);
        if (!retry) await this.advanceInTx(tx, conversationId, env.seq);
      });
      for (const r of moved) this.ctx.emit({ type: 'read_position', conversationId: r.c, seq: r.seq });
      return { added: [], updated: [], receipt: null, distributionApplied: false };
    }
    if (p.t === 'kth') {
      // Key-transparency gossip: nothing to show; the head is compared with ours once this is committed.
      await this.ctx.store.transaction(async (tx) => {
        await commit(tx);
        if (!retry) await this.advanceInTx(tx, conversationId, env.seq);
      });
      if (p.head instanceof Uint8Array) this.onPeerHead(u, p.head);
      return { added: [], updated: [], receipt: null, distributionApplied: false };
    }
    if (p.t === 'react' || p.t === 'edit' || p.t === 'delete') {
      const result = await this.applyAction(conversationId, env, p, commit, retry);
      return result.ok
        ? { added: [], updated: result.updated, receipt: null, distributionApplied: false }
        : { added: [], updated: [], receipt: null, distributionApplied: false, refused: result.code };
    }
    // `typing` is ephemeral only, never sequenced; `pk` was handled above (TypeScript narrowing needs it here).
    if (p.t === 'typing' || p.t === 'pk') return this.ignore(conversationId, env, commit, retry);
    // A receipt (the sender is a verified member: checked before decrypting).
    const ids = p.ids;
    const by = await this.receiptFrom(conversationId, u, own.userId);
    const updated = await this.ctx.store.transaction(async (tx) => {
      await commit(tx);
      const out = await this.outbox.markDeliveredInTx(tx, conversationId, ids, by);
      if (!retry) await this.advanceInTx(tx, conversationId, env.seq);
      return out;
    });
    return { added: [], updated, receipt: null, distributionApplied: false };
  }

  /**
   * Review R8: in a group, our message is delivered only once every other current member has it — their
   * receipts are counted per member (any of their devices). Null for a direct conversation (the one peer).
   */
  private async receiptAudience(conversationId: string, ownUserId: string): Promise<ReadonlySet<string> | null> {
    // A conversation's kind never changes: read once (the log record is not decoded again per batch).
    let kind = this.kinds.get(conversationId);
    if (kind === undefined) {
      kind = await this.groups.kind(conversationId);
      this.kinds.set(conversationId, kind);
    }
    if (kind !== 'group') return null;
    const { members } = await this.groups.membership(conversationId);
    return new Set([...members.keys()].filter((m) => m !== ownUserId));
  }

  private async receiptFrom(conversationId: string, userId: string, ownUserId: string) {
    const awaited = await this.receiptAudience(conversationId, ownUserId);
    return awaited ? { userId, awaited } : null;
  }

  /** The fields every stored message shares (who, where in the order, when). */
  private baseView(conversationId: string, env: Envelope, ownUserId: string) {
    return {
      conversationId,
      seq: env.seq,
      clientId: env.id,
      from: { userId: env.from.u, deviceId: env.from.d },
      outgoing: env.from.u === ownUserId,
      status: env.from.u === ownUserId ? ('sent' as const) : ('received' as const),
      sentAt: env.ts,
      receivedAt: this.ctx.now(),
      ts: env.ts,
    };
  }

  private async storeMessage(
    conversationId: string,
    env: Envelope,
    m: MessageView,
    commit: (tx: StoreTx) => Promise<void>,
    retry: boolean,
  ): Promise<void> {
    await this.ctx.store.transaction(async (tx) => {
      await commit(tx);
      if (retry) tx.delete(K.undecryptable(conversationId, env.seq));
      await this.messages.putInTx(tx, m);
      if (!retry) await this.advanceInTx(tx, conversationId, env.seq);
    });
  }

  /** Commits the decryption and advances the cursor without storing anything (a signal, or a refused one). */
  private async ignore(
    conversationId: string,
    env: Envelope,
    commit: (tx: StoreTx) => Promise<void>,
    retry: boolean,
    refused?: string,
  ): Promise<Outcome> {
    await this.ctx.store.transaction(async (tx) => {
      await commit(tx);
      if (retry) tx.delete(K.undecryptable(conversationId, env.seq));
      else await this.advanceInTx(tx, conversationId, env.seq);
    });
    return { added: [], updated: [], receipt: null, distributionApplied: false, ...(refused ? { refused } : {}) };
  }

  /**
   * The quote a reply shows: from this device's copy of the quoted message when it has it (the author and
   * text the sender claims are not trusted over it; a deleted original quotes nothing), else as carried.
   */
  private async resolveQuote(tx: StoreTx, conversationId: string, p: TextContent): Promise<QuoteView> {
    const q = p.reply!;
    const local = await this.messages.byIdInTx(tx, conversationId, q.id);
    if (!local) return { id: q.id, author: q.author, text: q.text };
    return {
      id: q.id,
      author: local.from.userId,
      text: local.deleted || local.body === null ? null : quoteExcerpt(local.body),
    };
  }

  /**
   * When a message the server stamped `ts` disappears: ts + the conversation's VERIFIED timer (undefined
   * when off). A message naming another timer (`hint`, the sender's view) makes us fetch and verify newer
   * log entries first (`LogBehind`, unless `logSynced`); the log still decides (PITFALLS 30: a timer only
   * comes from a signed entry).
   */
  private async expiryFor(
    conversationId: string,
    ts: number,
    hint?: number,
    logSynced = false,
  ): Promise<number | undefined> {
    const timer = await this.groups.timer(conversationId);
    if (hint !== undefined && hint !== timer && !logSynced) throw new LogBehind();
    return timer > 0 ? ts + timer * 1000 : undefined;
  }

  /** A reaction, edit or delete: applied under the rules (actions.ts) in the decryption's transaction. */
  private async applyAction(
    conversationId: string,
    env: Envelope,
    a: MessageAction,
    commit: (tx: StoreTx) => Promise<void>,
    retry: boolean,
  ): Promise<ActionOutcome> {
    const moderator = a.t === 'delete' && (await this.groups.isModerator(conversationId, env.from.u));
    return this.ctx.store.transaction(async (tx) => {
      await commit(tx);
      const r = await applyActionInTx(tx, this.messages, a, {
        conversationId,
        actor: env.from.u,
        seq: env.seq,
        ts: env.ts,
        moderator,
        dropOutboxInTx: (t, id) => this.outbox.dropInTx(t, id),
      });
      if (retry) tx.delete(K.undecryptable(conversationId, env.seq));
      else await this.advanceInTx(tx, conversationId, env.seq);
      return r;
    });
  }

  private failedView(conversationId: string, env: Envelope, error: string, ownUserId: string): MessageView {
    return {
      conversationId,
      seq: env.seq,
      clientId: env.id,
      from: { userId: env.from.u, deviceId: env.from.d },
      outgoing: env.from.u === ownUserId,
      body: null,
      status: 'undecryptable',
      sentAt: env.ts,
      receivedAt: this.ctx.now(),
      error,
    };
  }

  /**
   * A failed message with nothing to retry (no raw envelope kept); on a retry it replaces the held one. False
   * (nothing written) if the cursor already passed it: another tab processed it meanwhile.
   */
  private async putFailedInTx(tx: StoreTx, m: MessageView, env: Envelope, retry: boolean): Promise<boolean> {
    if (!retry && !(await this.advanceInTx(tx, m.conversationId, env.seq))) return false;
    await this.messages.putInTx(tx, m);
    if (retry) tx.delete(K.undecryptable(m.conversationId, env.seq));
    return true;
  }

  /** Stores a failed message without decrypting (rejected sender, unaccounted duplicate). */
  private async storeFailed(conversationId: string, env: Envelope, error: string, retry: boolean): Promise<void> {
    if (retry) return; // a held envelope stays as it was
    const m = this.failedView(conversationId, env, error, (await this.keys.identity()).userId);
    if (await this.ctx.store.transaction((tx) => this.putFailedInTx(tx, m, env, false)))
      this.ctx.emit({ type: 'message_added', message: m });
  }

  /**
   * Moves the cursor to `seq`, reading it in `tx` (never backwards: another tab with the same store may have
   * processed further since this one looked); false if it was already there or past.
   */
  private advanceInTx(tx: StoreTx, c: string, seq: number): Promise<boolean> {
    return this.messages.advanceCursorInTx(tx, c, seq);
  }

  private async advance(conversationId: string, seq: number): Promise<void> {
    await this.ctx.store.transaction((tx) => this.advanceInTx(tx, conversationId, seq));
  }

  private async storeUndecryptable(conversationId: string, env: Envelope, error: string, retry: boolean) {
    if (retry) return; // still failing: it stays as it was
    const own = await this.keys.identity();
    const m: MessageView = {
      conversationId,
      seq: env.seq,
      clientId: env.id,
      from: { userId: env.from.u, deviceId: env.from.d },
      outgoing: env.from.u === own.userId,
      body: null,
      status: 'undecryptable',
      sentAt: env.ts,
      receivedAt: this.ctx.now(),
      error,
    };
    const stored = await this.ctx.store.transaction(async (tx) => {
      if (!(await this.advanceInTx(tx, conversationId, env.seq))) return false; // another tab processed it
      await this.messages.putInTx(tx, m);
      tx.put(K.undecryptable(conversationId, env.seq), encodeRecord({ conversationId, envelope: env }));
      return true;
    });
    if (stored) this.ctx.emit({ type: 'message_added', message: m });
  }

  /** Tries stored undecryptable envelopes again (after a distribution arrived or a key change was accepted). */
  async retryUndecryptable(conversationId: string, match: (e: Envelope) => boolean = () => true): Promise<void> {
    const held = await this.ctx.store.list(K.undecDir(conversationId));
    const receipts: Receipt[] = [];
    for (const h of held) {
      const { envelope } = decodeRecord<HeldEnvelope>(h.value);
      if (!match(envelope)) continue;
      const r = await this.one(conversationId, envelope, true);
      if (r) receipts.push({ id: r, from: envelope.from.u });
    }
    if (receipts.length) await this.receiptsFor(conversationId, receipts);
  }

  /** Queues a delivery receipt, or holds it while the conversation is a message request (people.ts). */
  private async receiptsFor(conversationId: string, receipts: readonly Receipt[]): Promise<void> {
    const ids = receipts.map((r) => r.id);
    const state = await this.people.state(conversationId, await this.messages.cursor(conversationId));
    if (state === 'accepted') await this.queueReceipt(conversationId, ids, [...new Set(receipts.map((r) => r.from))]);
    else if (state !== 'blocked') await this.people.holdReceipts(conversationId, ids);
  }

  /**
   * Queues a delivery receipt for `ids`, encrypted only to the devices of `to` — the authors of those
   * messages, the only members it tells anything (every other device's slot carries WITHHELD) — or, without
   * `to` (receipts held while the conversation was a request: their authors were not kept), to every member.
   */
  async queueReceipt(conversationId: string, ids: string[], to?: readonly string[]): Promise<void> {
    const clientId = this.newId();
    const createdAt = this.ctx.now();
    await this.outbox.enqueueReceipt(
      conversationId,
      ids,
      (all, allTo) => ({
        clientId,
        conversationId,
        kind: 'receipt',
        receiptStatus: 'delivered',
        payload: encodePayload({ t: 'receipt', conv: conversationId, status: 'delivered', ids: [...all] }),
        receiptIds: all,
        ...(allTo ? { receiptTo: allTo } : {}),
        mode: 'pairwise',
        items: null,
        group: null,
        state: 'sending',
        seq: null,
        attempts: 0,
        createdAt,
        visible: false,
      }),
      to,
    );
  }
}

/**
 * Thrown inside `accept` (under the chain's lock, nothing committed) when the envelope needs a newer membership
 * log than this device holds — a timer hint that differs from the verified timer: `one` syncs the log after
 * the lock is released and handles the envelope again (decrypting it again from the same, uncommitted state).
 */
class LogBehind extends Error {
  constructor() {
    super('inbox: the membership log is behind this envelope');
  }
}

/** WITHHELD (a single zero byte): the sender did not encrypt to this device. */
function isWithheld(bytes: Uint8Array): boolean {
  return bytes.length === 1 && bytes[0] === 0;
}

/** Sessions before sender keys (the one-at-a-time path takes a sender key's lock inside a session's), then by name. */
function lockOrder(a: string, b: string): number {
  const rank = (n: string) => (n.startsWith('session:') ? 0 : 1);
  return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
}

/** Runs `fn` holding every lock in `names`, taken one inside the other in that order. */
function withLocks<T>(locks: EngineLocks, names: readonly string[], fn: () => Promise<T>): Promise<T> {
  return names.reduceRight<() => Promise<T>>((inner, name) => () => locks.request(name, inner), fn)();
}

/** Known content types that are signals or actions rather than timeline messages. */
function isKnownSignal(t: string): boolean {
  return (
    t === 'react' || t === 'edit' || t === 'delete' || t === 'typing' || t === 'receipt' || t === 'skd' || t === 'pk'
  );
}
