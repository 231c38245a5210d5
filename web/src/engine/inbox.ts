/**
 * The receive path, for envelopes from the realtime socket and from the mailbox alike, processed strictly
 * in seq order per conversation:
 *
 * - dedupe: an envelope at or below the conversation's processed cursor is skipped; the protocol's
 *   `duplicate` (a message key already used) is dropped quietly;
 * - decrypt (pairwise session or the sender's sender key), check the payload names THIS conversation, then
 *   store the message and advance the cursor in ONE transaction — acknowledgement (the returned cursor)
 *   happens only after that commit;
 * - a message that fails to decrypt is stored as `undecryptable` with its error code (never silently
 *   dropped) and its raw envelope kept for a later retry; the session is repaired where the protocol
 *   allows: a failed pairwise message marks the session so our next send starts a new one (a prekey
 *   message re-establishes it on both sides), an untrusted identity refreshes the sender's device list
 *   (surfacing a key change), a group message without a sender key is retried when a distribution arrives;
 * - delivery receipts: one end-to-end encrypted receipt per batch, listing the client ids received.
 *
 * Does NOT: talk to the socket or the mailbox (the engine does and acks with the returned cursor), or send
 * (it queues receipts in the outbox).
 * @module
 */
import { fromB64u, is } from './_protocol.js';
import { decodeRecord, encodeRecord } from './codec.js';
import type { EngineContext, MessageView } from './context.js';
import type { Directory } from './directory.js';
import type { Groups } from './groups.js';
import type { Keystore } from './keystore.js';
import { decodePayload, encodePayload, type Messages, type Payload } from './messages.js';
import type { Outbox } from './outbox.js';
import type { Sessions } from './sessions.js';
import { mutex, type StoreTx } from './storage.js';
import type { Envelope } from './transport.js';

const K = {
  undecryptable: (c: string, seq: number) => `undec/${c}/${seq.toString().padStart(16, '0')}`,
  undecDir: (c: string) => `undec/${c}/`,
};

interface HeldEnvelope {
  readonly conversationId: string;
  readonly envelope: Envelope;
}

export class Inbox {
  private readonly queues = new Map<string, <T>(fn: () => Promise<T>) => Promise<T>>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly keys: Keystore,
    private readonly sessions: Sessions,
    private readonly groups: Groups,
    private readonly directory: Directory,
    private readonly messages: Messages,
    private readonly outbox: Outbox,
    private readonly newId: () => string,
  ) {}

  private queue(conversationId: string) {
    let q = this.queues.get(conversationId);
    if (!q) {
      q = mutex();
      this.queues.set(conversationId, q);
    }
    return q;
  }

  /** Processes envelopes in seq order; returns the cursor to acknowledge (null if nothing advanced). */
  process(conversationId: string, envelopes: readonly Envelope[]): Promise<number | null> {
    return this.queue(conversationId)(async () => {
      const sorted = [...envelopes].sort((a, b) => a.seq - b.seq);
      let acked: number | null = null;
      const receipts: string[] = [];
      for (const env of sorted) {
        const cursor = await this.messages.cursor(conversationId);
        if (env.seq <= cursor) {
          acked = cursor;
          continue;
        }
        const r = await this.one(conversationId, env);
        if (r) receipts.push(r);
        acked = env.seq;
      }
      if (receipts.length) await this.queueReceipt(conversationId, receipts);
      return acked;
    });
  }

  /** Handles one envelope; returns the client id to acknowledge end-to-end, if any. */
  private async one(conversationId: string, env: Envelope, retry = false): Promise<string | null> {
    const { u, d } = env.from;
    const bytes = fromB64u(env.c);
    let payload: Payload | null = null;
    let error: string | null = null;
    if (bytes.length === 1 && bytes[0] === 0) {
      // WITHHELD: the sender did not encrypt to this device. Nothing to show, nothing lost.
      if (!retry) await this.advance(conversationId, env.seq);
      return null;
    }
    try {
      const plaintext =
        env.mode === 'group'
          ? await this.groups.decrypt(conversationId, u, d, bytes)
          : (await this.sessions.decrypt(u, d, bytes)).plaintext;
      payload = decodePayload(plaintext);
      if (!payload || payload.conv !== conversationId) error = 'wrong_conversation';
    } catch (e) {
      if (is(e, 'duplicate')) {
        if (!retry) await this.advance(conversationId, env.seq);
        return null;
      }
      error = is(e) ? e.code : 'decryption_failed';
      if (env.mode === 'pairwise' && error === 'decryption_failed') await this.sessions.markForRepair(u, d);
      if (error === 'untrusted_identity') await this.directory.refresh(u).catch(() => undefined);
    }
    if (error || !payload) {
      await this.storeUndecryptable(conversationId, env, error ?? 'decryption_failed', retry);
      return null;
    }
    return this.handle(conversationId, env, payload, retry);
  }

  private async handle(conversationId: string, env: Envelope, p: Payload, retry: boolean): Promise<string | null> {
    const { u, d } = env.from;
    const own = await this.keys.identity();
    if (p.t === 'text') {
      const m: MessageView = {
        conversationId,
        seq: env.seq,
        clientId: env.id,
        from: { userId: u, deviceId: d },
        outgoing: u === own.userId,
        body: p.body,
        status: u === own.userId ? 'sent' : 'received',
        sentAt: p.sentAt,
        receivedAt: this.ctx.now(),
      };
      await this.ctx.store.transaction(async (tx) => {
        if (retry) tx.delete(K.undecryptable(conversationId, env.seq));
        this.messages.putInTx(tx, m);
        if (!retry) this.advanceInTx(tx, conversationId, env.seq);
      });
      this.ctx.emit({ type: retry ? 'message_updated' : 'message_added', message: m });
      return u === own.userId ? null : env.id;
    }
    if (p.t === 'skd') await this.groups.processDistribution(conversationId, u, d, p.d);
    if (p.t === 'receipt' && (await this.groups.isVerifiedMember(conversationId, u)))
      await this.outbox.markDelivered(conversationId, p.ids);
    if (!retry) await this.advance(conversationId, env.seq);
    if (p.t === 'skd') await this.retryUndecryptable(conversationId, (h) => h.from.u === u && h.from.d === d);
    return null;
  }

  private advanceInTx(tx: StoreTx, c: string, seq: number) {
    this.messages.setCursorInTx(tx, c, seq);
  }

  private async advance(conversationId: string, seq: number): Promise<void> {
    await this.ctx.store.transaction(async (tx) => this.advanceInTx(tx, conversationId, seq));
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
    await this.ctx.store.transaction(async (tx) => {
      this.messages.putInTx(tx, m);
      tx.put(K.undecryptable(conversationId, env.seq), encodeRecord({ conversationId, envelope: env }));
      this.advanceInTx(tx, conversationId, env.seq);
    });
    this.ctx.emit({ type: 'message_added', message: m });
  }

  /** Tries stored undecryptable envelopes again (after a distribution arrived or a key change was accepted). */
  async retryUndecryptable(conversationId: string, match: (e: Envelope) => boolean = () => true): Promise<void> {
    const held = await this.ctx.store.list(K.undecDir(conversationId));
    const receipts: string[] = [];
    for (const h of held) {
      const { envelope } = decodeRecord<HeldEnvelope>(h.value);
      if (!match(envelope)) continue;
      const r = await this.one(conversationId, envelope, true);
      if (r) receipts.push(r);
    }
    if (receipts.length) await this.queueReceipt(conversationId, receipts);
  }

  private async queueReceipt(conversationId: string, ids: string[]): Promise<void> {
    await this.outbox.enqueue({
      clientId: this.newId(),
      conversationId,
      kind: 'receipt',
      receiptStatus: 'delivered',
      payload: encodePayload({ t: 'receipt', conv: conversationId, status: 'delivered', ids }),
      mode: 'pairwise',
      items: null,
      group: null,
      state: 'sending',
      seq: null,
      attempts: 0,
      createdAt: this.ctx.now(),
      visible: false,
    });
  }
}
