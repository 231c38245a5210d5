/**
 * Conversations as the client trusts them: the signed membership log replayed locally (`verifyLog` /
 * `applyEntry` with a resolver over VERIFIED device lists), and our sender keys per conversation.
 *
 * - Who receives anything from us is decided only by the verified log (PITFALLS 17): a member the server
 *   inserted without a valid signed entry is not in it, so its devices get neither sender keys nor
 *   pairwise content (their slots carry WITHHELD).
 * - The log is verified BEFORE our sender key is distributed; distribution goes, over pairwise sessions,
 *   only to devices in the verified lists of verified members that do not have the current chain yet.
 * - A membership change that removes someone (remove / leave) marks our sender key for rotation: the next
 *   group send creates a fresh chain and distributes it to the remaining members only (PITFALLS 19).
 * - Our own chain has one writer across tabs (lock `senderkey:<conv>`) and is persisted before the
 *   ciphertext is returned (no iteration is used twice).
 * - Distributions are accepted only from devices of verified members, for the conversation they name.
 * - A member removed (remove / leave) loses their sender keys with us: every stored `skr/<conv>/<user>/*`
 *   is deleted, so nothing they send with an old chain decrypts (the inbox also rejects any envelope from
 *   a non-member or an unlisted device before decrypting — `verifiedSender`).
 * - Every verified entry becomes a timeline info line (info.ts): its position (the message seq it follows)
 *   is stored with the log in one transaction, and `info_added` is emitted after the commit.
 * - A server answer that skips a log entry is refused (`membership_gap`) and that conversation's log is not
 *   fetched again before a doubling back-off (LOG_GAP_RETRY_BASE_MS … MAX_MS): never a refetch loop. Until
 *   an answer without a gap is applied the conversation is `inGap` (the engine shows it and retries; the
 *   outbox encrypts nothing to it meanwhile: the log may have moved past a removal this device cannot see).
 *   The gap is stored (`conv/<id>/gap`), so a reload neither hides it nor lets held messages out.
 * - Receiving is all-or-nothing: `decrypt` and `withDistribution` hand the caller a `commit(tx)` to run
 *   in the same transaction that stores the message and advances the cursor, under the receive lock.
 *
 * Does NOT: send frames (outbox.ts), or fetch anything but the log and device lists.
 * @module
 */
import {
  applyEntry,
  constants,
  createSenderKey,
  decodeMembershipEntry,
  decodeSenderKeyDistribution,
  deserializeOwnSenderKey,
  deserializeSenderKeyRecord,
  emptySenderKeyRecord,
  encodeMembershipEntry,
  encodeSenderKeyDistribution,
  fromB64u,
  is,
  type MembershipEntry,
  type MembershipState,
  nextEntry,
  processSenderKeyDistribution,
  type Role,
  type SenderKeyRecord,
  senderDecrypt,
  senderEncrypt,
  senderKeyDistribution,
  serializeOwnSenderKey,
  serializeSenderKeyRecord,
  toB64u,
  type VerifiedDevice,
  verifyLog,
} from './_protocol.js';
import { backoffDelay } from './backoff.js';
import { encodeRecord } from './codec.js';
import { type EngineContext, EngineError, type ReceiveChain } from './context.js';
import type { Directory } from './directory.js';
import { type InfoLine, infoKey, membershipLine, shownLine } from './info.js';
import type { Keystore } from './keystore.js';
import { adderFromLog } from './people.js';
import { listJson, readJson, type StoreTx, writeJson } from './storage.js';
import type { ConversationKind } from './transport.js';

interface LogRecord {
  readonly kind: ConversationKind;
  readonly entries: readonly Uint8Array[];
}

interface OwnKeyRecord {
  readonly key: Uint8Array;
  /** `user/device` of every device that received this chain. */
  readonly distributed: readonly string[];
}

const K = {
  log: (c: string) => `conv/${c}/log`,
  /** One record per conversation whose log this device holds (the store lists one directory level). */
  known: (c: string) => `convs/${c}`,
  rotate: (c: string) => `conv/${c}/rotate`,
  /** The conversation's log gap (`Gap`), while the server's answers skip an entry: kept across reloads. */
  gap: (c: string) => `conv/${c}/gap`,
  own: (c: string) => `sk/${c}/own`,
  recv: (c: string, u: string, d: string) => `skr/${c}/${u}/${d}`,
  recvDir: (c: string, u: string) => `skr/${c}/${u}/`,
};

/** A log gap: answers with a gap in a row, and when the log may be fetched again (ms, the engine's clock). */
interface Gap {
  readonly failures: number;
  readonly until: number;
}

export interface Recipient {
  readonly userId: string;
  readonly devices: readonly VerifiedDevice[];
}

export class Groups {
  private readonly states = new Map<string, { seq: number; state: MembershipState }>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly keys: Keystore,
    private readonly directory: Directory,
    /** The newest message seq this device knows in a conversation (where a new info line goes). */
    private readonly cursor: (conversationId: string) => Promise<number> = async () => 0,
    /**
     * The conversation's log has a gap (`retryAt`: when it may be fetched again; told at every refusal), or —
     * null — no longer: an answer without a gap was verified and applied.
     */
    private readonly onGap: (conversationId: string, retryAt: number | null) => void = () => undefined,
  ) {}

  /**
   * Whether the server's log for the conversation skipped an entry and no whole answer has come since: the
   * log may have moved on (a removal, say) past what this device can verify — nothing is encrypted to it then.
   * Stored with the conversation (`conv/<id>/gap`), not in memory: after a reload (or in another tab) our
   * held messages stay held and the state is shown until a whole answer is applied.
   */
  async inGap(conversationId: string): Promise<boolean> {
    return (await this.gap(conversationId)) !== undefined;
  }

  private gap(conversationId: string): Promise<Gap | undefined> {
    return readJson<Gap>(this.ctx.store, K.gap(conversationId));
  }

  /**
   * Builds, signs and registers a new conversation with us as owner and `members` added as members.
   * `fixedId`: our own sync conversation, whose id every device of ours derives (account-keys.ts).
   */
  async create(kind: ConversationKind, members: readonly string[], title: string, fixedId?: string): Promise<string> {
    const own = await this.keys.identity();
    const id = fixedId ?? randomId(this.ctx.rng(16));
    const resolve = await this.directory.resolver([own.userId]);
    const entries: MembershipEntry[] = [];
    let state: MembershipState | null = null;
    const author = { authorUserId: own.userId, authorDeviceId: own.deviceId, timestamp: this.ctx.now() };
    const push = async (p: { action: 'create' | 'add'; target?: string; role?: Role; title?: string }) => {
      const e = await nextEntry(this.ctx.curves, own.signing, state, id, { ...author, ...p });
      state = await applyEntry(this.ctx.curves, state, e, resolve);
      entries.push(e);
    };
    await push({ action: 'create', title });
    for (const m of members) if (m !== own.userId) await push({ action: 'add', target: m, role: 'member' });
    const bytes = entries.map(encodeMembershipEntry);
    await this.ctx.api.createConversation(kind, bytes);
    await this.ctx.store.transaction(async (tx) => {
      writeJson(tx, K.log(id), { kind, entries: bytes });
      writeJson(tx, K.known(id), true);
    });
    return id;
  }

  /** Appends an entry of ours (add / remove / leave / rename …) through the server. */
  async append(
    conversationId: string,
    p: {
      action: 'add' | 'remove' | 'leave' | 'promote' | 'demote' | 'transfer_ownership' | 'rename' | 'set_timer';
      target?: string;
      role?: Role;
      title?: string;
      timer?: number;
    },
  ) {
    const own = await this.keys.identity();
    const state = await this.membership(conversationId);
    const e = await nextEntry(this.ctx.curves, own.signing, state, conversationId, {
      ...p,
      authorUserId: own.userId,
      authorDeviceId: own.deviceId,
      timestamp: this.ctx.now(),
    });
    await this.ctx.api.appendMembershipEntry(conversationId, encodeMembershipEntry(e));
    await this.applyNew(conversationId, [encodeMembershipEntry(e)]);
  }

  /**
   * Account deletion (issue 18): the entries this device signs to leave `conversationId` — group or
   * direct — a `leave`, preceded by `transfer_ownership` to an admin (else the first other member; in a
   * direct chat, the other person) when we own it, since the owner cannot leave — or none when nobody else
   * is in it. Not sent here: the server appends them, in order, as part of the deletion request (it
   * cannot sign them itself; it accepts them in a direct log only there).
   */
  async departure(conversationId: string): Promise<Uint8Array[]> {
    const own = await this.keys.identity();
    await this.syncLog(conversationId); // sign on top of the server's head, not an older copy
    let state = await this.membership(conversationId);
    const others = [...state.members].filter(([u]) => u !== own.userId);
    if (others.length === 0 || !state.members.has(own.userId)) return [];
    const author = { authorUserId: own.userId, authorDeviceId: own.deviceId, timestamp: this.ctx.now() };
    const out: Uint8Array[] = [];
    if (state.members.get(own.userId) === 'owner') {
      const heir = (others.find(([, r]) => r === 'admin') ?? others[0]!)[0];
      const t = await nextEntry(this.ctx.curves, own.signing, state, conversationId, {
        action: 'transfer_ownership',
        target: heir,
        ...author,
      });
      out.push(encodeMembershipEntry(t));
      // The leave is signed on top of the transfer, replayed with the same rules every member uses.
      state = await applyEntry(this.ctx.curves, state, t, await this.directory.resolver([own.userId]));
    }
    const leave = await nextEntry(this.ctx.curves, own.signing, state, conversationId, { action: 'leave', ...author });
    out.push(encodeMembershipEntry(leave));
    return out;
  }

  /** The verified membership state: the locally held log plus anything new from the server, all verified. */
  async membership(conversationId: string): Promise<MembershipState> {
    const rec = await readJson<LogRecord>(this.ctx.store, K.log(conversationId));
    if (!rec) {
      const info = await this.ctx.api.getConversation(conversationId);
      const entries = await this.ctx.api.fetchMembershipLog(conversationId, -1);
      const state = await this.verify(conversationId, entries);
      await this.ctx.store.transaction(async (tx) => {
        writeJson(tx, K.log(conversationId), { kind: info.kind, entries });
        writeJson(tx, K.known(conversationId), true);
      });
      return state;
    }
    const cached = this.states.get(conversationId);
    if (cached && cached.seq === rec.entries.length - 1) return cached.state;
    return this.verify(conversationId, rec.entries);
  }

  private async verify(conversationId: string, entryBytes: readonly Uint8Array[]): Promise<MembershipState> {
    const entries = entryBytes.map((b) => decodeMembershipEntry(b));
    if (entries.some((e) => e.conversationId !== conversationId))
      throw new EngineError('membership_invalid', 'log of another conversation');
    const resolve = await this.directory.resolver(entries.map((e) => e.authorUserId));
    let state: MembershipState;
    try {
      state = await verifyLog(this.ctx.curves, entries, resolve);
    } catch (e) {
      throw new EngineError('membership_invalid', `membership log does not verify: ${(e as Error).message}`);
    }
    this.states.set(conversationId, { seq: state.seq, state });
    return state;
  }

  /**
   * A membership frame: apply, and mark our sender key for rotation on removal. `afterSeq` (the frame's)
   * places its info line; without it the line follows the last message this device processed.
   */
  async onMembershipEntry(conversationId: string, entryB64u: string, afterSeq?: number): Promise<void> {
    await this.membership(conversationId);
    await this.applyNew(conversationId, [fromB64u(entryB64u)], afterSeq);
  }

  /**
   * The info lines of the verified log, in log order: every entry of a group; in a direct conversation
   * only timer changes and a deleted account's leave (`shownLine`).
   */
  async infoLines(conversationId: string): Promise<InfoLine[]> {
    await this.membership(conversationId);
    const rec = await readJson<LogRecord>(this.ctx.store, K.log(conversationId));
    if (!rec) return [];
    const positions = new Map(
      (await listJson<number>(this.ctx.store, infoKey.dir(conversationId))).map((p) => [p.key, p.value]),
    );
    return rec.entries
      .map((b) => decodeMembershipEntry(b))
      .map((e) =>
        shownLine(
          rec.kind,
          membershipLine(conversationId, e, positions.get(infoKey.position(conversationId, e.seq)) ?? 0),
        ),
      )
      .filter((l): l is InfoLine => l !== null);
  }

  /** The conversation's disappearing-message timer in seconds (0: off), from the verified log. */
  async timer(conversationId: string): Promise<number> {
    return (await this.membership(conversationId)).timer ?? 0;
  }

  /** Whether `userId` is an owner or admin of a GROUP per the verified log (may delete anyone's message). */
  async isModerator(conversationId: string, userId: string): Promise<boolean> {
    if ((await this.kind(conversationId)) !== 'group') return false;
    const role = (await this.membership(conversationId)).members.get(userId);
    return role === 'owner' || role === 'admin';
  }

  /** Fetches and applies (verified) any entries newer than the local log (e.g. when a timer hint differs). */
  syncLog(conversationId: string): Promise<void> {
    return this.sync(conversationId);
  }

  /**
   * Verifies and stores entries newer than the local log. `fetched`: `fresh` is the server's answer for
   * everything after the local log — a gap in it is the server's (no refetch: `gapFound`); otherwise a gap (a
   * frame ahead of us) is filled by one fetch, unless the conversation is in its gap back-off.
   */
  private async applyNew(
    conversationId: string,
    fresh: readonly Uint8Array[],
    afterSeq?: number,
    fetched = false,
  ): Promise<void> {
    const rec = (await readJson<LogRecord>(this.ctx.store, K.log(conversationId)))!;
    let state = await this.membership(conversationId);
    const before = new Set(state.members.keys());
    const added: Uint8Array[] = [];
    for (const b of fresh) {
      const e = decodeMembershipEntry(b);
      if (e.seq <= state.seq) continue; // already applied
      if (e.seq !== state.seq + 1) {
        if (fetched) await this.gapFound(conversationId, state.seq + 1);
        // We missed entries: fetch what is missing and verify it all in order.
        await this.assertNoGapBackoff(conversationId);
        const more = await this.ctx.api.fetchMembershipLog(conversationId, state.seq);
        return this.applyNew(conversationId, more, afterSeq, true);
      }
      const resolve = await this.directory.resolver([e.authorUserId]);
      state = await applyEntry(this.ctx.curves, state, e, resolve);
      added.push(b);
    }
    if (!added.length) {
      if (fetched) await this.gapClosed(conversationId);
      return;
    }
    const removed = [...before].filter((u) => !state.members.has(u));
    const position = afterSeq ?? (await this.cursor(conversationId));
    const lines = added.map((b) => membershipLine(conversationId, decodeMembershipEntry(b), position));
    // A frame, the sync on reconnect and a sender check can apply entries side by side: the log is written
    // only on top of the one these entries were verified against. If another apply got there first, start
    // again from what it stored (entries it already applied are skipped) — never write an older log back.
    const wrote = await this.ctx.store.transaction(async (tx) => {
      const now = await readJson<LogRecord>(tx, K.log(conversationId));
      if (now?.entries.length !== rec.entries.length) return false;
      writeJson(tx, K.log(conversationId), { kind: rec.kind, entries: [...rec.entries, ...added] });
      if (removed.length) writeJson(tx, K.rotate(conversationId), true);
      for (const l of lines) writeJson(tx, infoKey.position(conversationId, Number(l.id.split(':')[1])), position);
      return true;
    });
    if (!wrote) return this.applyNew(conversationId, fresh, afterSeq, fetched);
    this.states.set(conversationId, { seq: state.seq, state });
    // Only now, with the whole answer applied: what waited for it (the outbox) sees the new log.
    if (fetched) await this.gapClosed(conversationId);
    for (const u of removed) await this.forgetSenderKeys(conversationId, u);
    this.ctx.emit({ type: 'membership_changed', conversationId, members: [...state.members.keys()] });
    for (const l of lines) {
      const line = shownLine(rec.kind, l);
      if (line) this.ctx.emit({ type: 'info_added', line });
    }
  }

  /** Ids of the conversations whose log this device holds (also those the server no longer lists us in). */
  async knownConversations(): Promise<string[]> {
    return (await this.ctx.store.list('convs/')).map((e) => e.key.slice('convs/'.length));
  }

  /** Records `ids` as known (for logs stored before the index existed). */
  async remember(ids: readonly string[]): Promise<void> {
    const known = new Set(await this.knownConversations());
    const missing = ids.filter((id) => !known.has(id));
    if (!missing.length) return;
    await this.ctx.store.transaction(async (tx) => {
      for (const id of missing) if (await tx.get(K.log(id))) writeJson(tx, K.known(id), true);
    });
  }

  async kind(conversationId: string): Promise<ConversationKind> {
    await this.membership(conversationId);
    return (await readJson<LogRecord>(this.ctx.store, K.log(conversationId)))!.kind;
  }

  /** Verified members and their verified devices (this device excluded; our other devices included). */
  async recipients(conversationId: string): Promise<Recipient[]> {
    const state = await this.membership(conversationId);
    const out: Recipient[] = [];
    for (const userId of state.members.keys()) out.push({ userId, devices: await this.directory.devices(userId) });
    return out;
  }

  async memberIds(conversationId: string): Promise<string[]> {
    return [...(await this.membership(conversationId)).members.keys()];
  }

  async isVerifiedMember(conversationId: string, userId: string): Promise<boolean> {
    return (await this.membership(conversationId)).members.has(userId);
  }

  /**
   * Whether (u, d) passes `verifiedSender` on what this device already holds (the verified log and device
   * list), without refreshing anything: false means "ask `verifiedSender`", not "refused".
   */
  async isKnownSender(conversationId: string, u: string, d: string): Promise<boolean> {
    const [member, device] = await Promise.all([this.isVerifiedMember(conversationId, u), this.directory.device(u, d)]);
    return member && !!device;
  }

  /**
   * Whether content from (u, d) may be accepted in this conversation: u is a member per the verified log
   * and d is in u's verified device list. On a miss the log (from the server, verified entry by entry)
   * and the device list are refreshed once first — a member added just before they wrote is accepted;
   * nothing the server alone asserts is. Throws `membership_gap` while the log cannot be brought up to date.
   */
  async verifiedSender(conversationId: string, u: string, d: string): Promise<'ok' | 'not_member' | 'unknown_device'> {
    if (!(await this.isVerifiedMember(conversationId, u))) {
      await this.sync(conversationId).catch((e: unknown) => {
        // The server's log skips an entry: whether u was added cannot be told yet. Not "not a member" — the
        // envelope fails and comes again once the log is whole (it is not stored as undecryptable for good).
        if (e instanceof EngineError && e.code === 'membership_gap') throw e;
      });
      if (!(await this.isVerifiedMember(conversationId, u))) return 'not_member';
    }
    if (!(await this.directory.device(u, d))) {
      await this.directory.refresh(u).catch(() => undefined);
      if (!(await this.directory.device(u, d))) return 'unknown_device';
    }
    return 'ok';
  }

  /** Fetches and applies (verified) any membership entries newer than the local log. */
  private async sync(conversationId: string): Promise<void> {
    const state = await this.membership(conversationId);
    await this.assertNoGapBackoff(conversationId);
    const more = await this.ctx.api.fetchMembershipLog(conversationId, state.seq);
    if (more.length) await this.applyNew(conversationId, more, undefined, true);
    else await this.gapClosed(conversationId);
  }

  private async gapClosed(conversationId: string): Promise<void> {
    if (!(await this.inGap(conversationId))) return; // the common case: one read, no transaction
    const was = await this.ctx.store.transaction(async (tx) => {
      const had = (await tx.get(K.gap(conversationId))) !== undefined;
      if (had) tx.delete(K.gap(conversationId));
      return had;
    });
    if (was) this.onGap(conversationId, null);
  }

  /** Refuses (`membership_gap`, no fetch) while the conversation's log is in its gap back-off. */
  private async assertNoGapBackoff(conversationId: string): Promise<void> {
    const g = await this.gap(conversationId);
    if (g && this.ctx.now() < g.until) {
      this.onGap(conversationId, g.until);
      throw new EngineError('membership_gap', 'the membership log had a gap; not fetched again yet');
    }
  }

  /** The server's answer skipped entry `missing`: back off (doubling, jittered) before the next fetch, and refuse. */
  private async gapFound(conversationId: string, missing: number): Promise<never> {
    const until = await this.ctx.store.transaction(async (tx) => {
      const failures = ((await readJson<Gap>(tx, K.gap(conversationId)))?.failures ?? 0) + 1;
      const wait = backoffDelay(
        { baseMs: constants.LOG_GAP_RETRY_BASE_MS, maxMs: constants.LOG_GAP_RETRY_MAX_MS },
        failures - 1,
        this.ctx.rng,
      );
      const gap: Gap = { failures, until: this.ctx.now() + wait };
      writeJson(tx, K.gap(conversationId), gap);
      return gap.until;
    });
    this.onGap(conversationId, until);
    throw new EngineError('membership_gap', `the server's membership log skips entry ${missing}`);
  }

  /** A removed member's chains are deleted (under each chain's receive lock). */
  private async forgetSenderKeys(conversationId: string, u: string): Promise<void> {
    for (const e of await this.ctx.store.list(K.recvDir(conversationId, u))) {
      const d = e.key.slice(K.recvDir(conversationId, u).length);
      await this.ctx.locks.request(`senderkey-recv:${conversationId}:${u}:${d}`, () => this.ctx.store.delete(e.key));
    }
  }

  /**
   * Makes sure we have a current sender key (rotating it if marked) and returns the distribution message
   * plus the devices that still need it. The caller sends it (pairwise) before the group message.
   */
  async prepareSenderKey(conversationId: string): Promise<{ distribution: Uint8Array; needs: VerifiedDevice[] }> {
    const recipients = await this.recipients(conversationId);
    return this.ctx.locks.request(`senderkey:${conversationId}`, async () => {
      let own = await readJson<OwnKeyRecord>(this.ctx.store, K.own(conversationId));
      const rotate = (await readJson<boolean>(this.ctx.store, K.rotate(conversationId))) ?? false;
      if (!own || rotate) {
        const fresh = await createSenderKey(this.ctx.curves, this.ctx.rng);
        own = { key: serializeOwnSenderKey(fresh), distributed: [] };
        const rec = own;
        await this.ctx.store.transaction(async (tx) => {
          writeJson(tx, K.own(conversationId), rec);
          tx.delete(K.rotate(conversationId));
        });
      }
      const key = deserializeOwnSenderKey(own.key);
      const have = new Set(own.distributed);
      const needs = recipients.flatMap((r) => r.devices).filter((d) => !have.has(`${d.userId}/${d.deviceId}`));
      return { distribution: encodeSenderKeyDistribution(senderKeyDistribution(key, conversationId)), needs };
    });
  }

  /** Records that `devices` were sent the current chain (after the distribution was queued durably). */
  async markDistributed(conversationId: string, devices: readonly { userId: string; deviceId: string }[]) {
    await this.ctx.store.transaction(async (tx) => {
      const own = await readJson<OwnKeyRecord>(tx, K.own(conversationId));
      if (!own) return;
      const all = new Set([...own.distributed, ...devices.map((d) => `${d.userId}/${d.deviceId}`)]);
      writeJson(tx, K.own(conversationId), { ...own, distributed: [...all] });
    });
  }

  /**
   * Our distribution of the current chain failed for good (its entry was given up on): no device is taken to
   * hold it any more, so the next group send distributes it again instead of every later message being
   * undecryptable to the devices that never got it.
   */
  async forgetDistributed(conversationId: string): Promise<void> {
    await this.ctx.store.transaction(async (tx) => {
      const own = await readJson<OwnKeyRecord>(tx, K.own(conversationId));
      if (own) writeJson(tx, K.own(conversationId), { ...own, distributed: [] });
    });
  }

  /** Devices that did not get the current chain after all (WITHHELD): the next send distributes again. */
  async unmarkDistributed(conversationId: string, devices: readonly { userId: string; deviceId: string }[]) {
    await this.ctx.store.transaction(async (tx) => {
      const own = await readJson<OwnKeyRecord>(tx, K.own(conversationId));
      if (!own) return;
      const drop = new Set(devices.map((d) => `${d.userId}/${d.deviceId}`));
      writeJson(tx, K.own(conversationId), { ...own, distributed: own.distributed.filter((x) => !drop.has(x)) });
    });
  }

  /**
   * Encrypts with our chain; the advanced chain is persisted before the ciphertext is returned. Refuses
   * (`sender_key_rotation`) while a removal has marked the chain for rotation: the removed member holds it, so
   * nothing encrypted after the removal was applied may use it (`prepareSenderKey` and its distribution first).
   */
  encrypt(conversationId: string, plaintext: Uint8Array): Promise<Uint8Array> {
    return this.ctx.locks.request(`senderkey:${conversationId}`, async () => {
      const own = await readJson<OwnKeyRecord>(this.ctx.store, K.own(conversationId));
      if (!own) throw new EngineError('send_failed', 'no sender key (prepareSenderKey first)');
      if (await readJson<boolean>(this.ctx.store, K.rotate(conversationId)))
        throw new EngineError('sender_key_rotation', 'our sender key must be rotated and distributed first');
      const r = await senderEncrypt(this.ctx.curves, deserializeOwnSenderKey(own.key), plaintext);
      await this.ctx.store.put(K.own(conversationId), encodeRecord({ ...own, key: serializeOwnSenderKey(r.own) }));
      return r.message;
    });
  }

  /**
   * A sender-key distribution from (u, d), accepted only if u is a verified member and d is in u's
   * verified list. Under the receive lock, `then` gets `apply(tx)` to run in the caller's transaction (the
   * one that commits the pairwise session and advances the cursor), or null and the reason it was refused
   * (`not_member`, `malformed_payload`, or the protocol's code) — the caller records that in the same
   * transaction instead.
   */
  async withDistribution<T>(
    conversationId: string,
    u: string,
    d: string,
    bytes: Uint8Array,
    then: (apply: ((tx: StoreTx) => void) | null, refused?: string) => Promise<T>,
  ): Promise<T> {
    // Only what this device holds (the inbox ran `verifiedSender`, which may refresh, before decrypting): the
    // caller holds the pairwise session's lock, and bringing the log up to date may take receive locks.
    if (!(await this.isKnownSender(conversationId, u, d))) return then(null, 'not_member');
    return this.ctx.locks.request(`senderkey-recv:${conversationId}:${u}:${d}`, async () => {
      const raw = await this.ctx.store.get(K.recv(conversationId, u, d));
      let next: Uint8Array;
      try {
        const rec = raw ? deserializeSenderKeyRecord(raw) : emptySenderKeyRecord();
        next = serializeSenderKeyRecord(
          processSenderKeyDistribution(rec, decodeSenderKeyDistribution(bytes), conversationId),
        );
      } catch (e) {
        return then(null, is(e) ? e.code : 'malformed_payload');
      }
      return then((tx) => tx.put(K.recv(conversationId, u, d), next));
    });
  }

  /**
   * Decrypts a group message from (u, d) with its stored chain and hands the plaintext to `then` under the
   * receive lock; `commit(tx)` (the advanced chain) must run in the transaction that stores the message.
   */
  /**
   * The sender key of (u, d) in the conversation as a receiving chain for the inbox's batch path (which holds
   * `lock` and one transaction for a run of envelopes, see ReceiveChain); the same lock and record as `decrypt`.
   */
  receiveChain(conversationId: string, u: string, d: string): ReceiveChain<SenderKeyRecord> {
    return {
      lock: `senderkey-recv:${conversationId}:${u}:${d}`,
      load: async (tx) => {
        const raw = await tx.get(K.recv(conversationId, u, d));
        return raw ? deserializeSenderKeyRecord(raw) : emptySenderKeyRecord();
      },
      decrypt: async (rec, message) => {
        const r = await senderDecrypt(this.ctx.curves, rec, message);
        return { plaintext: r.plaintext, next: r.record };
      },
      save: (tx, rec) => tx.put(K.recv(conversationId, u, d), serializeSenderKeyRecord(rec)),
    };
  }

  decrypt<T>(
    conversationId: string,
    u: string,
    d: string,
    message: Uint8Array,
    then: (r: { plaintext: Uint8Array; commit: (tx: StoreTx) => Promise<void> }) => Promise<T>,
  ): Promise<T> {
    return this.ctx.locks.request(`senderkey-recv:${conversationId}:${u}:${d}`, async () => {
      const raw = await this.ctx.store.get(K.recv(conversationId, u, d));
      const rec = raw ? deserializeSenderKeyRecord(raw) : emptySenderKeyRecord();
      const r = await senderDecrypt(this.ctx.curves, rec, message);
      const next = serializeSenderKeyRecord(r.record);
      return then({ plaintext: r.plaintext, commit: async (tx) => tx.put(K.recv(conversationId, u, d), next) });
    });
  }

  /** Who added `userId` to the conversation, per the verified log (people.ts: message requests). */
  async addedBy(conversationId: string, userId: string): Promise<string | null> {
    await this.membership(conversationId);
    const rec = await readJson<LogRecord>(this.ctx.store, K.log(conversationId));
    return rec ? adderFromLog(rec.entries, userId) : null;
  }

  /**
   * Whether our current sender key can be used as it is: it exists, no removal marked it for rotation and
   * every current recipient device has it. Ephemeral signals (typing) are sent only then — they never
   * create, rotate or distribute a key.
   */
  async senderKeyReady(conversationId: string): Promise<boolean> {
    const own = await readJson<OwnKeyRecord>(this.ctx.store, K.own(conversationId));
    if (!own || (await readJson<boolean>(this.ctx.store, K.rotate(conversationId)))) return false;
    const have = new Set(own.distributed);
    for (const r of await this.recipients(conversationId))
      for (const d of r.devices) if (!have.has(`${d.userId}/${d.deviceId}`)) return false;
    return true;
  }

  /** True if we hold a sending chain for this conversation (we sent there, or distributed already). */
  async hasOwnSenderKey(conversationId: string): Promise<boolean> {
    return (await this.ctx.store.get(K.own(conversationId))) !== undefined;
  }

  async hasSenderKeyFrom(conversationId: string, u: string, d: string): Promise<boolean> {
    return (await this.ctx.store.get(K.recv(conversationId, u, d))) !== undefined;
  }
}

function randomId(bytes: Uint8Array): string {
  return toB64u(bytes);
}
