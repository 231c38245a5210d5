/**
 * The local message store per conversation: messages the server sequenced (`msg/<conv>/<seq>`, ordered by
 * seq), local messages not yet accepted (`pending/<conv>/<clientId>`), the processed-seq cursor per
 * conversation (resume point and acknowledgement bound), and the end-to-end payload format.
 *
 * Payloads (inside every pairwise or sender-key ciphertext) are JSON naming their conversation, so the
 * server cannot replay a ciphertext into another conversation: `text`, `skd` (a sender-key distribution),
 * `receipt` (delivered/read for client ids), `att` (an attachment pointer and an optional caption;
 * attachments.ts), `pk` (our profile key as a 41-byte profile-key message, always pairwise; people.ts). An attachment message's pointer — key and digest included — is kept in its own record
 * (`att/<conv>/<clientId>`), written in the same transaction as the message, so the MessageView the UI
 * gets never carries the key. A pairwise slot addressed to a device we will not encrypt to
 * (not in a verified list, or a member only the server added) carries the one-byte WITHHELD marker.
 *
 * Does NOT: decrypt, send, or page by anything but seq (the sealed store lists a conversation's directory;
 * history paging slices it).
 * @module
 */

import { constants } from './_protocol.js';
import type { AttachmentPointer } from './attachments.js';
import { decodeRecord, encodeRecord } from './codec.js';
import type { MessageView } from './context.js';
import { listJson, readJson, type Store, type StoreTx, writeJson } from './storage.js';

export type Payload =
  | { readonly t: 'text'; readonly conv: string; readonly id: string; readonly body: string; readonly sentAt: number }
  | { readonly t: 'skd'; readonly conv: string; readonly d: Uint8Array }
  | {
      readonly t: 'att';
      readonly conv: string;
      readonly id: string;
      /** Caption (may be empty). */
      readonly body: string;
      readonly sentAt: number;
      /** The pointer; checked with `parseAttachmentPointer` before anything uses it. */
      readonly att: unknown;
    }
  | {
      readonly t: 'receipt';
      readonly conv: string;
      readonly status: 'delivered' | 'read';
      readonly ids: readonly string[];
    }
  // ---- people (people.ts): our profile key, pairwise only ----
  | { readonly t: 'pk'; readonly conv: string; readonly k: Uint8Array };

export const encodePayload = (p: Payload): Uint8Array => encodeRecord(p);

export function decodePayload(bytes: Uint8Array): Payload | null {
  try {
    const p = decodeRecord<Payload>(bytes);
    return p && typeof p === 'object' && typeof p.t === 'string' && typeof p.conv === 'string' ? p : null;
  } catch {
    return null;
  }
}

/**
 * Longest text body, in UTF-8 bytes: half the protocol's plaintext limit, so the payload around it, the
 * padding, the ratchet header and a prekey message's KEM ciphertext always fit (the composer enforces it
 * as you type; `sendText` refuses more with `too_long`).
 */
export const MAX_TEXT_BYTES = constants.MAX_PLAINTEXT_LEN / 2;

/** The one-byte placeholder for devices that get nothing from us (base64url "AA"). */
export const WITHHELD = 'AA';

const pad = (seq: number) => seq.toString().padStart(16, '0');
const K = {
  msg: (c: string, seq: number) => `msg/${c}/${pad(seq)}`,
  msgDir: (c: string) => `msg/${c}/`,
  pending: (c: string, id: string) => `pending/${c}/${id}`,
  pendingDir: (c: string) => `pending/${c}/`,
  cursor: (c: string) => `cur/${c}`,
  attachment: (c: string, clientId: string) => `att/${c}/${clientId}`,
};

export class Messages {
  constructor(private readonly store: Store) {}

  /** Last seq durably processed in `conversationId` (0 if none). */
  async cursor(conversationId: string): Promise<number> {
    return (await readJson<number>(this.store, K.cursor(conversationId))) ?? 0;
  }

  cursorInTx(tx: StoreTx, conversationId: string): Promise<number | undefined> {
    return readJson<number>(tx, K.cursor(conversationId));
  }

  setCursorInTx(tx: StoreTx, conversationId: string, seq: number): void {
    writeJson(tx, K.cursor(conversationId), seq);
  }

  putInTx(tx: StoreTx, m: MessageView): void {
    if (m.seq === null) writeJson(tx, K.pending(m.conversationId, m.clientId), m);
    else writeJson(tx, K.msg(m.conversationId, m.seq), m);
  }

  async putPending(m: MessageView): Promise<void> {
    await this.store.transaction(async (tx) => this.putInTx(tx, m));
  }

  /** A local message was accepted with `seq`: it moves from pending into the sequenced history. */
  async accept(conversationId: string, clientId: string, seq: number): Promise<MessageView | null> {
    return this.store.transaction(async (tx) => {
      const m =
        (await readJson<MessageView>(tx, K.pending(conversationId, clientId))) ??
        (await readJson<MessageView>(tx, K.msg(conversationId, seq)));
      if (!m) return null;
      tx.delete(K.pending(conversationId, clientId));
      const next: MessageView = { ...m, seq, status: m.status === 'delivered' ? 'delivered' : 'sent' };
      writeJson(tx, K.msg(conversationId, seq), next);
      return next;
    });
  }

  async update(conversationId: string, key: { seq: number | null; clientId: string }, patch: Partial<MessageView>) {
    return this.store.transaction(async (tx) => this.updateInTx(tx, conversationId, key, patch));
  }

  async updateInTx(
    tx: StoreTx,
    conversationId: string,
    key: { seq: number | null; clientId: string },
    patch: Partial<MessageView>,
  ): Promise<MessageView | null> {
    const k = key.seq === null ? K.pending(conversationId, key.clientId) : K.msg(conversationId, key.seq);
    const m = await readJson<MessageView>(tx, k);
    if (!m) return null;
    const next = { ...m, ...patch };
    writeJson(tx, k, next);
    return next;
  }

  async getPending(conversationId: string, clientId: string): Promise<MessageView | undefined> {
    return readJson<MessageView>(this.store, K.pending(conversationId, clientId));
  }

  deletePendingInTx(tx: StoreTx, conversationId: string, clientId: string): void {
    tx.delete(K.pending(conversationId, clientId));
  }

  /** The full pointer (key and digest included) of an attachment message, in the message's transaction. */
  putAttachmentInTx(tx: StoreTx, conversationId: string, clientId: string, p: AttachmentPointer): void {
    writeJson(tx, K.attachment(conversationId, clientId), p);
  }

  deleteAttachmentInTx(tx: StoreTx, conversationId: string, clientId: string): void {
    tx.delete(K.attachment(conversationId, clientId));
  }

  attachment(conversationId: string, clientId: string): Promise<AttachmentPointer | undefined> {
    return readJson<AttachmentPointer>(this.store, K.attachment(conversationId, clientId));
  }

  async get(conversationId: string, seq: number): Promise<MessageView | undefined> {
    return readJson<MessageView>(this.store, K.msg(conversationId, seq));
  }

  /**
   * Up to `limit` sequenced messages before `beforeSeq` (newest page when omitted), oldest first; the
   * newest page also carries pending local messages at the end.
   */
  async page(conversationId: string, opts: { beforeSeq?: number; limit?: number } = {}): Promise<MessageView[]> {
    const limit = opts.limit ?? 50;
    const all = (await listJson<MessageView>(this.store, K.msgDir(conversationId))).map((e) => e.value);
    const older = opts.beforeSeq === undefined ? all : all.filter((m) => (m.seq ?? 0) < opts.beforeSeq!);
    const page = older.slice(Math.max(0, older.length - limit));
    if (opts.beforeSeq !== undefined) return page;
    const pending = (await listJson<MessageView>(this.store, K.pendingDir(conversationId)))
      .map((e) => e.value)
      .sort((a, b) => a.sentAt - b.sentAt);
    return [...page, ...pending];
  }
}
