/**
 * The local message store per conversation: messages the server sequenced (`msg/<conv>/<seq>`, ordered by
 * seq), local messages not yet accepted (`pending/<conv>/<clientId>`), the processed-seq cursor per
 * conversation (resume point and acknowledgement bound), and four indexes:
 *
 * - `mid/<conv>/<id>` → seq: a message by its id within the conversation (what reactions, edits, deletes
 *   and replies refer to). The FIRST message stored under an id keeps it: a later message reusing the id
 *   (a malicious member copying it) never redirects an action meant for the original;
 * - `qr/<conv>/<quoted id>/<seq>`: the replies quoting a message, so deleting or expiring it also erases
 *   the excerpts its replies carry;
 * - `exp/<expiresAt>.<seq>.<conv>`: disappearing messages by expiry time (expiry.ts sweeps it).
 * - `att/<conv>/<clientId>`: an attachment message's full pointer (key and digest included), written in
 *   the same transaction as the message, so the MessageView the UI gets never carries the key;
 * - `top/<conv>`: the highest seq stored. Once `topb/<conv>` is set (checked once per conversation: older
 *   stores' history imports did not raise it) it bounds every stored message, and a page (the newest, or the
 *   list preview) is read seq by seq down from it instead of listing the conversation.
 *
 * Payloads (inside every pairwise or sender-key ciphertext) are the content types of protocol/content.ts
 * (docs/PROTOCOL.md §"Content types"): `text`, `att`, `react`, `edit`, `delete`, `typing`, `receipt`, `skd`, `pk`, `sync` (read
 * positions, between our own devices only),
 * `kth` (key transparency: the newest signed tree head the sender verified — never shown; transparency.ts
 * compares it with ours to catch a split view). A pairwise slot addressed to a device we will not encrypt to (not in a verified list, or a member only the
 * server added) carries the one-byte WITHHELD marker.
 *
 * Does NOT: decrypt, send, decide whether an action is allowed (actions.ts), or page by anything but seq
 * (the sealed store lists a conversation's directory; history paging slices it).
 * @module
 */

import { type Content, constants, decodeContent, encodeJson } from './_protocol.js';
import type { AttachmentPointer } from './attachments.js';
import type { MessageView } from './context.js';
import { listJson, readJson, type Store, type StoreTx, writeJson } from './storage.js';

/** What a decrypted payload can be (protocol/content.ts). */
export type Payload = Content;

/**
 * Encodes a payload WITHOUT checking it (tests craft hostile payloads with it); the engine's own sends use
 * `encodeContent`, which checks every field.
 */
export const encodePayload = (p: Payload | Readonly<Record<string, unknown>>): Uint8Array => encodeJson(p);

/** A payload of a known type that passes its field rules, or null. */
export function decodePayload(bytes: Uint8Array): Payload | null {
  const r = decodeContent(bytes);
  return r.kind === 'ok' ? r.content : null;
}

/**
 * Longest text body, in UTF-8 bytes: half the protocol's plaintext limit, so the payload around it, the
 * padding, the ratchet header and a prekey message's KEM ciphertext always fit (the composer enforces it
 * as you type; `sendText` refuses more with `too_long`).
 */
export const MAX_TEXT_BYTES = constants.MAX_TEXT_BYTES;

/** The one-byte placeholder for devices that get nothing from us (base64url "AA"). */
export const WITHHELD = 'AA';

const pad = (n: number) => n.toString().padStart(16, '0');
const K = {
  msg: (c: string, seq: number) => `msg/${c}/${pad(seq)}`,
  msgDir: (c: string) => `msg/${c}/`,
  pending: (c: string, id: string) => `pending/${c}/${id}`,
  pendingDir: (c: string) => `pending/${c}/`,
  cursor: (c: string) => `cur/${c}`,
  attachment: (c: string, clientId: string) => `att/${c}/${clientId}`,
  /** The highest seq stored (our own accepted messages included: the cursor counts only received ones). */
  top: (c: string) => `top/${c}`,
  /** Present once `top/<c>` is known to bound every message stored in the conversation (see `Messages.page`). */
  topBounds: (c: string) => `topb/${c}`,
  id: (c: string, id: string) => `mid/${c}/${id}`,
  quotedBy: (c: string, id: string, seq: number) => `qr/${c}/${id}/${pad(seq)}`,
  quotedDir: (c: string, id: string) => `qr/${c}/${id}/`,
  expiry: (at: number, c: string, seq: number) => `exp/${pad(at)}.${pad(seq)}.${c}`,
};
export const EXPIRY_DIR = 'exp/';
/** Largest page `Messages.page` reads newest first, seq by seq (a larger one lists the conversation). */
const SCAN_LIMIT = 200;
/** Most seqs one newest-first page reads before it lists the conversation instead. */
const SCAN_MAX_SEQS = 1024;

/** An expiry index entry's parts (`exp/<at>.<seq>.<conv>`). */
export function parseExpiryKey(key: string): { at: number; seq: number; conversationId: string } | null {
  const m = /^exp\/(\d{16})\.(\d{16})\.([A-Za-z0-9_-]+)$/.exec(key);
  return m ? { at: Number(m[1]), seq: Number(m[2]), conversationId: m[3]! } : null;
}

/** Raises the conversation's `top` to `seq`: for messages stored without `putInTx` (a history import). */
export async function raiseTopInTx(tx: StoreTx, conversationId: string, seq: number): Promise<void> {
  if (((await readJson<number>(tx, K.top(conversationId))) ?? 0) < seq) writeJson(tx, K.top(conversationId), seq);
}

export class Messages {
  constructor(
    private readonly store: Store,
    private readonly now: () => number = Date.now,
  ) {}

  /** Last seq durably processed in `conversationId` (0 if none). */
  async cursor(conversationId: string): Promise<number> {
    return (await readJson<number>(this.store, K.cursor(conversationId))) ?? 0;
  }

  cursorInTx(tx: StoreTx, conversationId: string): Promise<number | undefined> {
    return readJson<number>(tx, K.cursor(conversationId));
  }

  /** Moves the cursor to `seq` if it is below it (read in `tx`: never backwards); false if it was not. */
  async advanceCursorInTx(tx: StoreTx, conversationId: string, seq: number): Promise<boolean> {
    if (((await readJson<number>(tx, K.cursor(conversationId))) ?? 0) >= seq) return false;
    writeJson(tx, K.cursor(conversationId), seq);
    return true;
  }

  /**
   * Stores a message (pending, or sequenced with its indexes). A sequenced message claims its id in the
   * id index unless an earlier message holds it.
   */
  async putInTx(tx: StoreTx, m: MessageView): Promise<void> {
    if (m.seq === null) {
      writeJson(tx, K.pending(m.conversationId, m.clientId), m);
      return;
    }
    writeJson(tx, K.msg(m.conversationId, m.seq), m);
    await this.indexInTx(tx, m);
    if (((await readJson<number>(tx, K.top(m.conversationId))) ?? 0) < m.seq)
      writeJson(tx, K.top(m.conversationId), m.seq);
  }

  /**
   * Reads, all at once, what `putInTx` of received messages with these ids reads (the id index, the top):
   * through a `readOnce` view, the puts that follow then find them read.
   */
  async prefetchInTx(tx: StoreTx, conversationId: string, ids: readonly string[]): Promise<void> {
    await Promise.all([tx.get(K.top(conversationId)), ...ids.map((id) => tx.get(K.id(conversationId, id)))]);
  }

  /**
   * `page`'s sequenced messages read newest first: the seqs from `top` (or below `beforeSeq`) down, a window
   * of gets at a time (one backend read each), skipping seqs that hold no message (signals, receipts, actions)
   * or an expired one, until `limit` are found or seq 1 is passed. Null — the caller lists the conversation —
   * when `top` is not yet known to bound every stored message (then that is checked, once per conversation,
   * see `checkTop`), or when SCAN_MAX_SEQS seqs held too few messages.
   */
  private async scan(conversationId: string, limit: number, beforeSeq?: number): Promise<MessageView[] | null> {
    const [top, bounds] = await Promise.all([
      readJson<number>(this.store, K.top(conversationId)),
      this.store.get(K.topBounds(conversationId)),
    ]);
    if (bounds === undefined) {
      await this.checkTop(conversationId);
      return null;
    }
    const now = this.now();
    const newestFirst: MessageView[] = [];
    let hi = Math.min(top ?? 0, beforeSeq === undefined ? Number.MAX_SAFE_INTEGER : beforeSeq - 1);
    let budget = SCAN_MAX_SEQS;
    while (hi >= 1 && newestFirst.length < limit) {
      if (budget <= 0) return null;
      const n = Math.min(hi, budget, Math.max(2 * (limit - newestFirst.length), 16));
      const window = await Promise.all(
        Array.from({ length: n }, (_, i) => readJson<MessageView>(this.store, K.msg(conversationId, hi - i))),
      );
      for (const m of window) {
        if (!m || (m.expiresAt !== undefined && m.expiresAt <= now)) continue;
        newestFirst.push(m);
        if (newestFirst.length === limit) break;
      }
      hi -= n;
      budget -= n;
    }
    return newestFirst.reverse();
  }

  /**
   * Makes `top` bound every stored message of the conversation (a store from before `top` covered history
   * imports may hold messages above it), then marks it so. Runs once per conversation, in one transaction:
   * a message stored meanwhile moves `top`, which this transaction read, so it runs again.
   */
  private async checkTop(conversationId: string): Promise<void> {
    await this.store.transaction(async (tx) => {
      if ((await tx.get(K.topBounds(conversationId))) !== undefined) return;
      const keys = (await tx.list(K.msgDir(conversationId))).map((e) => e.key);
      const stored = keys.length ? Number(keys[keys.length - 1]!.slice(K.msgDir(conversationId).length)) : 0;
      const top = (await readJson<number>(tx, K.top(conversationId))) ?? 0;
      if (stored > top) writeJson(tx, K.top(conversationId), stored);
      writeJson(tx, K.topBounds(conversationId), true);
    });
  }

  /** The newest seq this device knows in the conversation: processed (cursor) or stored (own accepted). */
  async newest(conversationId: string): Promise<number> {
    const [cur, top] = await Promise.all([
      this.cursor(conversationId),
      readJson<number>(this.store, K.top(conversationId)),
    ]);
    return Math.max(cur, top ?? 0);
  }

  private async indexInTx(tx: StoreTx, m: MessageView): Promise<void> {
    if (m.seq === null) return;
    const held = await readJson<number>(tx, K.id(m.conversationId, m.clientId));
    if (held === undefined) writeJson(tx, K.id(m.conversationId, m.clientId), m.seq);
    if (m.quote) writeJson(tx, K.quotedBy(m.conversationId, m.quote.id, m.seq), true);
    if (m.expiresAt !== undefined) writeJson(tx, K.expiry(m.expiresAt, m.conversationId, m.seq), true);
  }

  async putPending(m: MessageView): Promise<void> {
    await this.store.transaction(async (tx) => this.putInTx(tx, m));
  }

  /**
   * A local message was accepted with `seq` (and the server's `ts`): it moves from pending into the
   * sequenced history; `expiresAt(ts)` gives its disappearing time, if the conversation has a timer.
   */
  async accept(
    conversationId: string,
    clientId: string,
    seq: number,
    ts?: number,
    expiresAt?: (ts: number) => number | undefined,
  ): Promise<MessageView | null> {
    const at = ts !== undefined ? expiresAt?.(ts) : undefined;
    return this.store.transaction(async (tx) => {
      const m =
        (await readJson<MessageView>(tx, K.pending(conversationId, clientId))) ??
        (await readJson<MessageView>(tx, K.msg(conversationId, seq)));
      if (!m) return null;
      tx.delete(K.pending(conversationId, clientId));
      const next: MessageView = {
        ...m,
        seq,
        status: m.status === 'delivered' ? 'delivered' : 'sent',
        ...(ts !== undefined && m.ts === undefined ? { ts } : {}),
        ...(at !== undefined && m.expiresAt === undefined ? { expiresAt: at } : {}),
      };
      await this.putInTx(tx, next);
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

  /** Replaces a sequenced message record as it is (the caller built it from the stored one). */
  replaceInTx(tx: StoreTx, m: MessageView): void {
    if (m.seq !== null) writeJson(tx, K.msg(m.conversationId, m.seq), m);
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

  /** Forgets an attachment's pointer (its key): a failed one deleted, or deleted for everyone, or expired. */
  deleteAttachmentInTx(tx: StoreTx, conversationId: string, clientId: string): void {
    tx.delete(K.attachment(conversationId, clientId));
  }

  attachment(conversationId: string, clientId: string): Promise<AttachmentPointer | undefined> {
    return readJson<AttachmentPointer>(this.store, K.attachment(conversationId, clientId));
  }

  async get(conversationId: string, seq: number): Promise<MessageView | undefined> {
    return readJson<MessageView>(this.store, K.msg(conversationId, seq));
  }

  /** The seq of the message with this id in the conversation (the first one stored under it). */
  seqOfInTx(tx: StoreTx, conversationId: string, id: string): Promise<number | undefined> {
    return readJson<number>(tx, K.id(conversationId, id));
  }

  seqOf(conversationId: string, id: string): Promise<number | undefined> {
    return readJson<number>(this.store, K.id(conversationId, id));
  }

  /** The message with this id, as stored (inside a transaction). */
  async byIdInTx(tx: StoreTx, conversationId: string, id: string): Promise<MessageView | undefined> {
    const seq = await this.seqOfInTx(tx, conversationId, id);
    return seq === undefined ? undefined : readJson<MessageView>(tx, K.msg(conversationId, seq));
  }

  async byId(conversationId: string, id: string): Promise<MessageView | undefined> {
    return this.store.transaction((tx) => this.byIdInTx(tx, conversationId, id));
  }

  /**
   * Erases what a deleted or expired message said from the replies that quote it (their excerpt becomes
   * null); returns the replies changed.
   */
  async eraseQuotesOfInTx(tx: StoreTx, conversationId: string, id: string): Promise<MessageView[]> {
    const out: MessageView[] = [];
    for (const e of await tx.list(K.quotedDir(conversationId, id))) {
      const seq = Number(e.key.slice(e.key.lastIndexOf('/') + 1));
      const reply = await readJson<MessageView>(tx, K.msg(conversationId, seq));
      if (reply?.quote && reply.quote.text !== null) {
        const next: MessageView = { ...reply, quote: { ...reply.quote, text: null } };
        writeJson(tx, K.msg(conversationId, seq), next);
        out.push(next);
      }
    }
    return out;
  }

  /**
   * Removes a sequenced message and its index entries (expiry). Replies quoting it keep their place with
   * the excerpt erased; the id stays claimed (no later message can take it over).
   */
  async removeInTx(tx: StoreTx, m: MessageView): Promise<MessageView[]> {
    if (m.seq === null) return [];
    tx.delete(K.msg(m.conversationId, m.seq));
    tx.delete(K.attachment(m.conversationId, m.clientId));
    if (m.expiresAt !== undefined) tx.delete(K.expiry(m.expiresAt, m.conversationId, m.seq));
    if (m.quote) tx.delete(K.quotedBy(m.conversationId, m.quote.id, m.seq));
    return this.eraseQuotesOfInTx(tx, m.conversationId, m.clientId);
  }

  /** Expiry index entries due at or before `now` (oldest first), at most `limit`. */
  async due(now: number, limit = 500): Promise<{ key: string; at: number; seq: number; conversationId: string }[]> {
    const out: { key: string; at: number; seq: number; conversationId: string }[] = [];
    for (const e of await this.store.list(EXPIRY_DIR)) {
      const p = parseExpiryKey(e.key);
      if (!p) continue;
      if (p.at > now) break; // sorted by key: zero-padded expiry first
      out.push({ key: e.key, ...p });
      if (out.length >= limit) break;
    }
    return out;
  }

  /** The earliest expiry in the index, or null. */
  async nextExpiry(): Promise<number | null> {
    const first = (await this.store.list(EXPIRY_DIR))[0];
    return first ? (parseExpiryKey(first.key)?.at ?? null) : null;
  }

  /** Every sequenced message of a conversation, oldest first (search; expired ones left out). */
  async all(conversationId: string): Promise<MessageView[]> {
    const now = this.now();
    return (await listJson<MessageView>(this.store, K.msgDir(conversationId)))
      .map((e) => e.value)
      .filter((m) => m.expiresAt === undefined || m.expiresAt > now);
  }

  /**
   * Up to `limit` sequenced messages before `beforeSeq` (newest page when omitted), oldest first; the
   * newest page also carries pending local messages at the end. Messages past their expiry are never
   * returned, even before the sweep has deleted them. A page of at most SCAN_LIMIT is read newest first,
   * seq by seq down from `top` (`scan`), instead of listing the whole conversation.
   */
  async page(conversationId: string, opts: { beforeSeq?: number; limit?: number } = {}): Promise<MessageView[]> {
    const limit = opts.limit ?? 50;
    let page = limit <= SCAN_LIMIT ? await this.scan(conversationId, limit, opts.beforeSeq) : null;
    if (!page) {
      const all = await this.all(conversationId);
      const older = opts.beforeSeq === undefined ? all : all.filter((m) => (m.seq ?? 0) < opts.beforeSeq!);
      page = older.slice(Math.max(0, older.length - limit));
    }
    if (opts.beforeSeq !== undefined) return page;
    const pending = (await listJson<MessageView>(this.store, K.pendingDir(conversationId)))
      .map((e) => e.value)
      .sort((a, b) => a.sentAt - b.sentAt);
    return [...page, ...pending];
  }
}
