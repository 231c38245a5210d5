/**
 * Key transparency on the client (docs/PROTOCOL.md §"Key transparency", PITFALLS 31): no identity key is
 * trusted unless the log proves it, the log must never rewrite its history, and what the log shows us is
 * compared with what it shows the people we talk to.
 *
 * - **Heads.** We keep the newest tree head we verified (`kt/head`). Every head the server presents must be
 *   signed by the log key built into the app; a head of the size we hold must have our root (else the log
 *   forked); a larger one must come with a consistency proof from ours (else it rewrote history); and the
 *   head the server presents as current may never be smaller than ours (rollback). KT calls run one at a
 *   time across tabs (lock `kt`), so an honest log's heads only ever grow in the order we see them.
 * - **Keys.** A user identity key is used only after `provenUser` / `provenDeviceList` verified the log's
 *   entry for that user — the right user id (and username), exactly that key, included in a verified head.
 *   Anything else raises an alert and throws `kt_unproven`: no session is set up, nothing is encrypted.
 * - **Gossip.** Heads travel inside our end-to-end encrypted conversations (payload `kth`, messages.ts);
 *   `onPeerHead` checks a peer's head against ours through the server's consistency proofs — a log that
 *   shows different histories to different people (a split view) cannot answer both.
 * - **Self-monitoring.** On connect and every `monitorIntervalMs` (6 h), the log's latest entry for our user id and
 *   for our username must be our own key; otherwise "someone registered a new key for your account".
 *
 * Every failure is an alert (`kt_alert` event, kept in `kt/alerts`) the app shows as a security warning.
 *
 * Does NOT: decide trust on first use or key-change prompts (directory.ts still does, for proven keys
 * only), prove that an entry is the *latest* for a user (a log is not a map: the server could serve an
 * older, genuinely logged key — docs/PROTOCOL.md says what that needs), or audit the whole log.
 * @module
 */
import {
  decodeDeviceList,
  decodeTreeHead,
  equal,
  is,
  isFork,
  type KtEntry,
  toB64u,
  type VerifiedTreeHead,
  verifyEntryInclusion,
  verifyHeadConsistency,
  verifyTreeHead,
} from './_protocol.js';
import { type EngineContext, EngineError } from './context.js';
import { putJson, readJson } from './storage.js';
import type { KtProof } from './transport.js';

export interface KtOptions {
  /** The log's Ed25519 public key (32 bytes), built into the app. */
  readonly logKey: Uint8Array;
  /** A head older than this proves nothing new (the log signs fresh ones every few seconds). Default 1 day. */
  readonly maxHeadAgeMs?: number;
  /** Self-monitoring period while connected (and once on connect). Default 6 hours. */
  readonly monitorIntervalMs?: number;
  /** Resend our head in a conversation at most this often unless it changed. Default 1 day. */
  readonly gossipIntervalMs?: number;
  /**
   * Send our head with our messages (default true). Only tests that count envelopes exactly turn it off;
   * receiving and checking peers' heads is always on.
   */
  readonly gossip?: boolean;
}

export type KtAlertCode =
  /** A tree head not signed by the log key. */
  | 'bad_signature'
  /** The log presented a head older (smaller) than one we verified. */
  | 'rollback'
  /** Two heads of one size with different roots. */
  | 'fork'
  /** A newer head the log could not prove extends ours: it rewrote history. */
  | 'inconsistent'
  /** A peer's head and ours are not one history: the log shows different people different logs. */
  | 'split_view'
  /** A key the log does not prove: a forged proof, a wrong key for the user, or no entry at all. */
  | 'unproven_key'
  /** The log's entry for OUR account names another key: someone registered a new key for it. */
  | 'own_key_replaced'
  /** The log's newest head is older than maxHeadAgeMs (a frozen log). */
  | 'stale_head';

export interface KtAlert {
  readonly id: string;
  readonly code: KtAlertCode;
  /** When we detected it. */
  readonly at: number;
  /** What to tell the user (plain language; no key bytes). */
  readonly message: string;
  readonly userId?: string;
  /** When the log accepted the offending entry (own_key_replaced). */
  readonly entryTime?: number;
}

interface StoredHead {
  readonly bytes: Uint8Array;
}

const K = {
  head: 'kt/head',
  alerts: 'kt/alerts',
  self: 'kt/self',
  gossip: (c: string) => `kt/gossip/${c}`,
};
const MAX_ALERTS = 50;

export class Transparency {
  readonly maxHeadAgeMs: number;
  readonly monitorIntervalMs: number;
  readonly gossipIntervalMs: number;

  constructor(
    private readonly ctx: EngineContext,
    private readonly opts: KtOptions,
  ) {
    this.maxHeadAgeMs = opts.maxHeadAgeMs ?? 24 * 3600_000;
    this.monitorIntervalMs = opts.monitorIntervalMs ?? 6 * 3600_000;
    this.gossipIntervalMs = opts.gossipIntervalMs ?? 24 * 3600_000;
  }

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    return this.ctx.locks.request('kt', fn);
  }

  /** The newest head we verified, or null before the first one. */
  async head(): Promise<VerifiedTreeHead | null> {
    const s = await readJson<StoredHead>(this.ctx.store, K.head);
    return s ? this.verify(s.bytes, 'stored') : null;
  }

  async alerts(): Promise<KtAlert[]> {
    return (await readJson<KtAlert[]>(this.ctx.store, K.alerts)) ?? [];
  }

  async dismissAlert(id: string): Promise<void> {
    const all = await this.alerts();
    await putJson(
      this.ctx.store,
      K.alerts,
      all.filter((a) => a.id !== id),
    );
  }

  /** Raises an alert (deduplicated by code, user and message) and returns the error to throw. */
  private async alert(a: Omit<KtAlert, 'id' | 'at'>, code: 'kt_unproven' | 'kt_log_invalid'): Promise<EngineError> {
    const all = await this.alerts();
    const same = all.find((x) => x.code === a.code && x.userId === a.userId && x.message === a.message);
    const alert: KtAlert = { ...a, id: same?.id ?? toB64u(this.ctx.rng(9)), at: this.ctx.now() };
    await putJson(this.ctx.store, K.alerts, [alert, ...all.filter((x) => x !== same)].slice(0, MAX_ALERTS));
    this.ctx.emit({ type: 'kt_alert', alert });
    return new EngineError(code, a.message, a.userId);
  }

  // ---- heads ----------------------------------------------------------------------------------------------

  private async verify(bytes: Uint8Array, source: 'log' | 'peer' | 'stored'): Promise<VerifiedTreeHead> {
    if (this.opts.logKey.length !== 32)
      throw new EngineError('kt_log_invalid', 'this app was built without a key-transparency log key');
    try {
      return await verifyTreeHead(this.ctx.curves, this.opts.logKey, bytes);
    } catch (e) {
      if (source === 'stored') throw e;
      throw await this.alert(
        {
          code: 'bad_signature',
          message:
            source === 'log'
              ? 'The server presented a key-transparency tree head that is not signed by its log key.'
              : 'A contact sent a key-transparency tree head that is not signed by the log key.',
        },
        'kt_log_invalid',
      );
    }
  }

  /**
   * Moves our newest head to `bytes` if it extends it (a consistency proof from the server). Every head the
   * server sends is its newest (the log never proves against an old one), and KT calls run one at a time
   * under the `kt` lock, so a smaller head than ours is a rollback. Returns the verified head.
   */
  private async advance(bytes: Uint8Array): Promise<VerifiedTreeHead> {
    const cand = await this.verify(bytes, 'log');
    if (cand.time < this.ctx.now() - this.maxHeadAgeMs) {
      throw await this.alert(
        {
          code: 'stale_head',
          message: `The key-transparency log's newest head is from ${new Date(cand.time).toISOString()}: the log looks frozen.`,
        },
        'kt_log_invalid',
      );
    }
    const ours = await this.head();
    if (!ours) {
      await putJson(this.ctx.store, K.head, { bytes: cand.bytes } satisfies StoredHead);
      return cand;
    }
    if (cand.size < ours.size) {
      throw await this.alert(
        {
          code: 'rollback',
          message: `The key-transparency log went back from ${ours.size} to ${cand.size} entries: it may be hiding keys.`,
        },
        'kt_log_invalid',
      );
    }
    if (isFork(ours, cand)) {
      throw await this.alert(
        {
          code: 'fork',
          message: `The key-transparency log signed two different trees of ${cand.size} entries: it forked.`,
        },
        'kt_log_invalid',
      );
    }
    if (cand.size === ours.size) {
      if (cand.time > ours.time) await putJson(this.ctx.store, K.head, { bytes: cand.bytes } satisfies StoredHead);
      return cand;
    }
    let proof: Uint8Array[];
    try {
      proof = await this.ctx.api.ktConsistency(ours.size, cand.size);
      verifyHeadConsistency(ours, cand, proof);
    } catch (e) {
      if (!is(e) && !isNotFound(e)) throw e; // network trouble: nothing learned
      throw await this.alert(
        {
          code: 'inconsistent',
          message: `The key-transparency log could not prove that its tree of ${cand.size} entries extends the one of ${ours.size} we saw: it rewrote history.`,
        },
        'kt_log_invalid',
      );
    }
    await putJson(this.ctx.store, K.head, { bytes: cand.bytes } satisfies StoredHead);
    return cand;
  }

  /** Fetches the log's current head and advances to it (under the lock). */
  refreshHead(): Promise<VerifiedTreeHead> {
    return this.locked(async () => this.advance(await this.ctx.api.ktHead()));
  }

  // ---- keys ---------------------------------------------------------------------------------------------------

  /** Checks `kt` proves exactly (userId[, username], identityKey); raises and throws `kt_unproven` otherwise. */
  private async verifyKey(
    expect: { userId: string; username?: string; identityKey: Uint8Array },
    kt: KtProof | null,
  ): Promise<Extract<KtEntry, { kind: 'key' }>> {
    const unproven = (why: string) =>
      this.alert(
        {
          code: 'unproven_key',
          userId: expect.userId,
          message:
            `The server gave a key for ${expect.username ?? 'a contact'} that the key-transparency log does not prove (${why}). ` +
            'It was not used: nothing was encrypted to it. Before you trust a new key for them, compare safety numbers in person.',
        },
        'kt_unproven',
      );
    if (!kt) throw await unproven('no proof');
    const head = await this.advance(kt.head);
    let entry: KtEntry;
    try {
      entry = verifyEntryInclusion(head, kt.index, kt.entry, kt.proof);
    } catch (e) {
      if (!is(e)) throw e;
      throw await unproven('the inclusion proof does not verify');
    }
    if (entry.kind !== 'key') throw await unproven('the log says the account was deleted');
    if (entry.userId !== expect.userId) throw await unproven('the log entry is for another account');
    if (expect.username !== undefined && entry.username !== expect.username)
      throw await unproven('the log entry is for another username');
    if (!equal(entry.identityKey, expect.identityKey)) throw await unproven('the log has a different key');
    return entry;
  }

  /** Username lookup, verified: the user id and key the log proves for `username`, or null if none. */
  provenUser(username: string): Promise<{ userId: string; username: string; identityKey: Uint8Array } | null> {
    return this.locked(async () => {
      const r = await this.ctx.api.lookupUser(username);
      if (!r) return null;
      await this.verifyKey({ userId: r.userId, username, identityKey: r.identityKey }, r.kt);
      return { userId: r.userId, username, identityKey: r.identityKey };
    });
  }

  /** The user's current signed device list, whose identity key the log proves; null if the user is unknown. */
  provenDeviceList(userId: string): Promise<Uint8Array | null> {
    return this.locked(async () => {
      const r = await this.ctx.api.fetchDeviceList(userId);
      if (!r) return null;
      const list = decodeDeviceList(r.list);
      if (list.userId !== userId) throw new EngineError('unknown_user', 'device list for another user', userId);
      await this.verifyKey({ userId, identityKey: list.userIdentityKey }, r.kt);
      return r.list;
    });
  }

  // ---- self-monitoring ------------------------------------------------------------------------------------------

  async setOwnUsername(username: string): Promise<void> {
    await putJson(this.ctx.store, K.self, { username });
  }

  /**
   * The log's newest head must extend ours, and its latest entries for our user id and for our username
   * must carry OUR identity key. Returns the alerts raised (empty when all is well); a misbehaving log
   * throws `kt_log_invalid` after raising its alert, network failures throw as they are (try again later).
   */
  monitorSelf(own: { userId: string; userIdentityKey: Uint8Array }): Promise<KtAlert[]> {
    return this.locked(async () => {
      const raised: KtAlert[] = [];
      const replaced = async (entry: KtEntry | null, what: string) => {
        const e = await this.alert(
          {
            code: 'own_key_replaced',
            userId: own.userId,
            ...(entry ? { entryTime: entry.time } : {}),
            message:
              `Someone registered a new key for your account${entry ? ` on ${new Date(entry.time).toISOString()}` : ''} (${what}). ` +
              'If it was not you, reset your identity from a device you trust, change your password, and tell your contacts to compare safety numbers.',
          },
          'kt_log_invalid',
        );
        raised.push((await this.alerts())[0]!);
        return e;
      };
      const check = async (kt: KtProof | null, what: string, username?: string) => {
        if (!kt) return replaced(null, `${what}: the server has no log entry`);
        const head = await this.advance(kt.head);
        let entry: KtEntry;
        try {
          entry = verifyEntryInclusion(head, kt.index, kt.entry, kt.proof);
        } catch (e) {
          if (!is(e)) throw e;
          return replaced(null, `${what}: the server's proof does not verify`);
        }
        if (entry.kind !== 'key') return replaced(entry, `${what}: the log says the account was deleted`);
        if (entry.userId !== own.userId || (username !== undefined && entry.username !== username))
          return replaced(entry, `${what}: the log maps it to another account`);
        if (!equal(entry.identityKey, own.userIdentityKey)) return replaced(entry, `${what}: the log has another key`);
        return null;
      };
      await this.advance(await this.ctx.api.ktHead()); // the log's newest head extends ours
      const list = await this.ctx.api.fetchDeviceList(own.userId);
      await check(list?.kt ?? null, 'your user id');
      const self = await readJson<{ username: string }>(this.ctx.store, K.self);
      if (self) {
        const byName = await this.ctx.api.lookupUser(self.username);
        await check(byName?.kt ?? null, `the username ${self.username}`, self.username);
      }
      return raised;
    });
  }

  // ---- gossip ----------------------------------------------------------------------------------------------------

  /** Our head to send in `conversationId` if it changed since we last did (or gossipIntervalMs passed). */
  async headToGossip(conversationId: string): Promise<Uint8Array | null> {
    if (this.opts.gossip === false) return null;
    const head = await this.head();
    if (!head) return null;
    const last = await readJson<{ size: number; at: number }>(this.ctx.store, K.gossip(conversationId));
    if (last && last.size === head.size && this.ctx.now() - last.at < this.gossipIntervalMs) return null;
    await putJson(this.ctx.store, K.gossip(conversationId), { size: head.size, at: this.ctx.now() });
    return head.bytes;
  }

  /**
   * A head a peer verified, received inside an encrypted conversation: ours and theirs must be one
   * history. A difference the server cannot reconcile with consistency proofs is a split view.
   */
  onPeerHead(peerUserId: string, bytes: Uint8Array): Promise<void> {
    return this.locked(async () => {
      const theirs = await this.verify(bytes, 'peer');
      const split = (why: string) =>
        this.alert(
          {
            code: 'split_view',
            userId: peerUserId,
            message: `The key-transparency log showed a contact a different history than it showed you (${why}): the server may be giving different people different keys.`,
          },
          'kt_log_invalid',
        );
      let ours = await this.head();
      // Theirs is newer: compare with the log's current head. If it cannot be fetched, nothing is learned
      // (thrown as it is, like a failed consistency proof below) — our older head is no evidence of a split
      // view; a log that fails the fetch's own checks has raised its alert in `advance`.
      if (!ours || ours.size < theirs.size) ours = await this.advance(await this.ctx.api.ktHead());
      if (isFork(ours, theirs)) {
        await split(`two trees of ${ours.size} entries`);
        return;
      }
      if (ours.size === theirs.size) return;
      if (ours.size < theirs.size) {
        await split(`the log's newest tree for you has ${ours.size} entries, your contact's ${theirs.size}`);
        return;
      }
      try {
        verifyHeadConsistency(theirs, ours, await this.ctx.api.ktConsistency(theirs.size, ours.size));
      } catch (e) {
        if (!is(e) && !isNotFound(e)) throw e;
        await split(`no consistency proof from your contact's ${theirs.size} entries to your ${ours.size}`);
      }
    });
  }

  /** Plain facts about a head for the UI (size and time), never bytes. */
  static describe(head: Uint8Array): { size: number; time: number } {
    const h = decodeTreeHead(head);
    return { size: h.size, time: h.time };
  }
}

/** A 4xx from the server for a proof request (e.g. `kt_out_of_range`): the log cannot produce it. */
function isNotFound(e: unknown): boolean {
  const s = (e as { status?: unknown })?.status;
  return typeof s === 'number' && s >= 400 && s < 500;
}
