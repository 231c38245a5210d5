/**
 * LinkChannelDO — the provisioning channel (docs/PROTOCOL.md §"Linking", docs/API.md §"Linking a device"):
 * one object per channel id, a short-lived relay of sealed bytes between the new device and the signed-in
 * device that links it.
 *
 * Responsibilities:
 *  - lifetime: opened once by the new device (which alone holds the channel secret; only its SHA-256 is
 *    stored), gone LIMITS.linkChannelTtlMs after opening (alarm → deleteAll) or once both sides closed it
 *    (a side that closes first leaves what it sent readable for the other: the last status is not lost);
 *  - single use: exactly one (user, device) may claim the linking side (the first to ask for a linking
 *    token); after the new device redeemed the token the channel cannot be claimed or provisioned again;
 *  - relay: two ordered queues (to the new device, to the linking device) of opaque messages, each numbered
 *    by the object; a poll returns what is queued after the caller's cursor, acknowledges everything up to
 *    it (deleted at once) and waits (long poll) when nothing is there yet;
 *  - limits: message size per direction, bytes waiting per direction (429 `channel_full`: the sender
 *    pauses), total bytes and messages per channel (409 `channel_quota`).
 *
 * Does NOT: read anything it relays (every message is sealed by the devices: provisioning.ts,
 * transfer.ts), issue or check linking tokens (worker/domain/linking.ts does, and asks this object to
 * claim, verify the secret and record the redemption), or authenticate the linking side (the Worker
 * passes the authenticated user and device).
 *
 * Every method answers a `ChannelResult`; errors are values (a DO RPC does not carry AppError's class).
 */
import { DurableObject } from 'cloudflare:workers';
import type { Env } from './env.js';
import { LIMITS } from './limits.js';

export type ChannelSide = 'new' | 'existing';

/** The authenticated linking device, or the new device's channel secret. */
export type ChannelCredential =
  | { readonly side: 'existing'; readonly userId: string; readonly deviceId: string }
  | { readonly side: 'new'; readonly secret: string };

export type ChannelFailure = {
  readonly ok: false;
  readonly status: 400 | 403 | 404 | 409 | 410 | 413 | 429;
  readonly code: string;
  readonly message: string;
  readonly retryAfterSec?: number;
};
export type ChannelResult<T> = ({ readonly ok: true } & T) | ChannelFailure;

export interface ChannelMessage {
  readonly seq: number;
  readonly data: Uint8Array;
}

interface Meta {
  secretHash: Uint8Array;
  createdAt: number;
  expiresAt: number;
  claimedBy: { userId: string; deviceId: string } | null;
  /** The new device redeemed its linking token: no further claim. */
  linked: boolean;
  /** Each side that closed the channel: it sends and receives nothing more; the other may still drain. */
  closedBy: Record<ChannelSide, boolean>;
  /** Per direction (key = receiving side): last seq assigned, last seq the receiver acknowledged. */
  next: Record<ChannelSide, number>;
  acked: Record<ChannelSide, number>;
  queuedBytes: Record<ChannelSide, number>;
  totalBytes: Record<ChannelSide, number>;
}

const META = 'meta';
/** One poll answers at most this many messages and (beyond the first) about this many bytes. */
const POLL_MAX_MESSAGES = 16;
const POLL_MAX_BYTES = 1024 * 1024;
const msgKey = (to: ChannelSide, seq: number) => `m:${to}:${seq.toString().padStart(10, '0')}`;
const other = (s: ChannelSide): ChannelSide => (s === 'new' ? 'existing' : 'new');

const failure = (
  status: ChannelFailure['status'],
  code: string,
  message: string,
  retryAfterSec?: number,
): ChannelFailure =>
  retryAfterSec === undefined
    ? { ok: false, status, code, message }
    : { ok: false, status, code, message, retryAfterSec };

async function sha256(s: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(s)));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

export class LinkChannelDO extends DurableObject<Env> {
  private meta: Meta | null | undefined;
  /** Pollers waiting for a message, per receiving side. */
  private readonly waiters: Record<ChannelSide, Set<() => void>> = { new: new Set(), existing: new Set() };

  private async load(): Promise<Meta | null> {
    if (this.meta === undefined) this.meta = (await this.ctx.storage.get<Meta>(META)) ?? null;
    return this.meta;
  }

  private async save(m: Meta): Promise<void> {
    this.meta = m;
    await this.ctx.storage.put(META, m);
  }

  /** The live channel, or the failure that says why it is not usable. */
  private async live(now: number): Promise<ChannelResult<{ meta: Meta }>> {
    const m = await this.load();
    if (!m) return failure(404, 'channel_not_found', 'no such linking channel');
    if (now >= m.expiresAt) {
      await this.wipe();
      return failure(410, 'channel_expired', 'this linking code expired; start again on the new device');
    }
    if (m.closedBy.new && m.closedBy.existing) return failure(410, 'channel_closed', 'this linking channel was closed');
    return { ok: true, meta: m };
  }

  private async authorize(cred: ChannelCredential, now: number): Promise<ChannelResult<{ meta: Meta }>> {
    const r = await this.live(now);
    if (!r.ok) return r;
    if (r.meta.closedBy[cred.side]) return failure(410, 'channel_closed', 'this linking channel was closed');
    if (cred.side === 'new') {
      if (typeof cred.secret !== 'string' || !sameBytes(await sha256(cred.secret), r.meta.secretHash))
        return failure(403, 'channel_forbidden', 'wrong channel secret');
      return r;
    }
    const c = r.meta.claimedBy;
    if (!c) return failure(409, 'channel_unclaimed', 'ask for a linking token for this channel first');
    if (c.userId !== cred.userId || c.deviceId !== cred.deviceId)
      return failure(403, 'channel_claimed', 'another device is linking through this channel');
    return r;
  }

  /** Opens the channel (the new device). 409 `channel_exists` if the id was ever opened and is not gone. */
  async open(secretHash: Uint8Array, now = Date.now()): Promise<ChannelResult<{ expiresAt: number }>> {
    if (await this.load()) return failure(409, 'channel_exists', 'this channel id is taken; draw another');
    const expiresAt = now + LIMITS.linkChannelTtlMs;
    await this.save({
      secretHash: secretHash.slice(),
      createdAt: now,
      expiresAt,
      claimedBy: null,
      linked: false,
      closedBy: { new: false, existing: false },
      next: { new: 0, existing: 0 },
      acked: { new: 0, existing: 0 },
      queuedBytes: { new: 0, existing: 0 },
      totalBytes: { new: 0, existing: 0 },
    });
    await this.ctx.storage.setAlarm(expiresAt);
    return { ok: true, expiresAt };
  }

  /**
   * The linking device claims the channel (when it asks for a linking token). Idempotent for the same
   * device; 403 `channel_claimed` for any other; 409 `channel_used` once the new device was linked.
   */
  async claim(userId: string, deviceId: string, now = Date.now()): Promise<ChannelResult<{ expiresAt: number }>> {
    const r = await this.live(now);
    if (!r.ok) return r;
    const m = r.meta;
    if (m.closedBy.new || m.closedBy.existing) return failure(410, 'channel_closed', 'this linking channel was closed');
    if (m.linked) return failure(409, 'channel_used', 'a device was already linked through this channel');
    if (m.claimedBy && (m.claimedBy.userId !== userId || m.claimedBy.deviceId !== deviceId))
      return failure(403, 'channel_claimed', 'another device is linking through this channel');
    if (!m.claimedBy) await this.save({ ...m, claimedBy: { userId, deviceId } });
    return { ok: true, expiresAt: m.expiresAt };
  }

  /**
   * Redemption of the linking token (called by the Worker before it commits the new device): the secret
   * must be the new device's and the channel claimed by `userId`. Marks the channel linked.
   */
  async redeem(secret: string, userId: string, now = Date.now()): Promise<ChannelResult<object>> {
    const r = await this.authorize({ side: 'new', secret }, now);
    if (!r.ok) return r;
    if (r.meta.linked) return failure(409, 'channel_used', 'a device was already linked through this channel');
    if (r.meta.claimedBy?.userId !== userId)
      return failure(403, 'channel_forbidden', 'this channel was not claimed by that account');
    return { ok: true };
  }

  /** Records the completed link (after the Worker's commit). */
  async markLinked(now = Date.now()): Promise<void> {
    const r = await this.live(now);
    if (r.ok) await this.save({ ...r.meta, linked: true });
  }

  /** Queues one sealed message for the other side. */
  async send(cred: ChannelCredential, data: Uint8Array, now = Date.now()): Promise<ChannelResult<{ seq: number }>> {
    const r = await this.authorize(cred, now);
    if (!r.ok) return r;
    // No await from here to the write: concurrent sends never share a seq (the secret check above awaits).
    const m = this.meta!;
    const to = other(cred.side);
    if (m.closedBy[to]) return failure(410, 'channel_closed', 'the other device closed this linking channel');
    const max = to === 'new' ? LIMITS.linkMaxMessageBytes : LIMITS.linkMaxReplyBytes;
    if (!(data instanceof Uint8Array) || data.length === 0 || data.length > max)
      return failure(413, 'payload_too_large', `a channel message to the ${to} device is 1..${max} bytes`);
    const maxMessages = to === 'new' ? LIMITS.linkMaxMessagesToNew : LIMITS.linkMaxMessagesToExisting;
    if (m.next[to] >= maxMessages || m.totalBytes[to] + data.length > LIMITS.linkMaxTotalBytes)
      return failure(409, 'channel_quota', 'this channel carried all it may; start again');
    if (m.queuedBytes[to] + data.length > LIMITS.linkMaxQueuedBytes)
      return failure(429, 'channel_full', 'the other device has not caught up yet; retry shortly', 1);
    const seq = m.next[to] + 1;
    const next: Meta = {
      ...m,
      next: { ...m.next, [to]: seq },
      queuedBytes: { ...m.queuedBytes, [to]: m.queuedBytes[to] + data.length },
      totalBytes: { ...m.totalBytes, [to]: m.totalBytes[to] + data.length },
    };
    this.meta = next;
    await this.ctx.storage.put({ [META]: next, [msgKey(to, seq)]: data });
    this.wake(to);
    return { ok: true, seq };
  }

  /**
   * Messages for the caller after `after` (everything up to `after` is acknowledged and deleted), waiting
   * up to `waitMs` for one to arrive. `peerAcked`: how far the other side has acknowledged what the
   * caller sent (progress on the sending side). `linked`: the new device redeemed its token.
   */
  async poll(
    cred: ChannelCredential,
    after: number,
    waitMs: number,
    now = Date.now(),
  ): Promise<ChannelResult<{ messages: ChannelMessage[]; peerAcked: number; linked: boolean }>> {
    const me = cred.side;
    let r = await this.authorize(cred, now);
    if (!r.ok) return r;
    if (!Number.isInteger(after) || after < 0 || after > r.meta.next[me])
      return failure(400, 'invalid_request', 'cursor beyond the last message');
    await this.acknowledge(me, after);
    const deadline = now + Math.max(0, Math.min(waitMs, LIMITS.linkPollMaxWaitMs));
    for (;;) {
      r = await this.authorize(cred, Date.now());
      if (!r.ok) return r;
      const meta = r.meta;
      if (meta.next[me] > after) {
        const rows = await this.ctx.storage.list<Uint8Array>({
          start: msgKey(me, after + 1),
          end: msgKey(me, meta.next[me] + 1),
          limit: POLL_MAX_MESSAGES,
        });
        const messages: ChannelMessage[] = [];
        let bytes = 0;
        for (const [k, data] of rows) {
          if (messages.length > 0 && bytes + data.length > POLL_MAX_BYTES) break;
          messages.push({ seq: Number(k.slice(k.lastIndexOf(':') + 1)), data });
          bytes += data.length;
        }
        return { ok: true, messages, peerAcked: meta.acked[other(me)], linked: meta.linked };
      }
      if (meta.closedBy[other(me)])
        return failure(410, 'channel_closed', 'the other device closed this linking channel');
      const left = deadline - Date.now();
      if (left <= 0) return { ok: true, messages: [], peerAcked: meta.acked[other(me)], linked: meta.linked };
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          this.waiters[me].delete(done);
          resolve();
        };
        const t = setTimeout(done, left);
        this.waiters[me].add(done);
      });
    }
  }

  /**
   * One side is done: what was queued for it is deleted and it can send or receive nothing more; the other
   * side may still read what was sent to it (a last status), then gets 410 `channel_closed`. When both
   * sides closed, everything is deleted (a tombstone stays until the expiry alarm).
   */
  async close(cred: ChannelCredential, now = Date.now()): Promise<ChannelResult<object>> {
    const r = await this.authorize(cred, now);
    if (!r.ok) return r;
    const me = cred.side;
    const m = this.meta!;
    const closedBy = { ...m.closedBy, [me]: true };
    if (closedBy.new && closedBy.existing) {
      await this.ctx.storage.deleteAll();
      await this.save({ ...m, closedBy, queuedBytes: { new: 0, existing: 0 } });
    } else {
      const mine = [...(await this.ctx.storage.list({ start: msgKey(me, 0), end: msgKey(me, m.next[me] + 1) }))].map(
        ([k]) => k,
      );
      for (let i = 0; i < mine.length; i += 128) await this.ctx.storage.delete(mine.slice(i, i + 128));
      await this.save({ ...this.meta!, closedBy, queuedBytes: { ...this.meta!.queuedBytes, [me]: 0 } });
    }
    await this.ctx.storage.setAlarm(m.expiresAt);
    this.wake('new');
    this.wake('existing');
    return { ok: true };
  }

  /**
   * Account deletion (worker/domain/linking.ts registers the hook): a channel this account claimed is erased
   * at once — what it relays, the claim naming the account, its alarm. Idempotent; a channel claimed by
   * anyone else (or by nobody) is left alone.
   */
  async eraseForAccount(userId: string): Promise<boolean> {
    const m = await this.load();
    if (!m || m.claimedBy?.userId !== userId) return false;
    await this.ctx.storage.deleteAlarm();
    await this.wipe();
    return true;
  }

  override async alarm(): Promise<void> {
    await this.wipe();
  }

  private async wipe(): Promise<void> {
    await this.ctx.storage.deleteAll();
    this.meta = null;
    this.wake('new');
    this.wake('existing');
  }

  private async acknowledge(me: ChannelSide, upTo: number): Promise<void> {
    const from = this.meta!.acked[me];
    if (upTo <= from) return;
    const rows = [
      ...(await this.ctx.storage.list<Uint8Array>({ start: msgKey(me, from + 1), end: msgKey(me, upTo + 1) })),
    ];
    // Re-read after the await: another poll may have acknowledged part of the range meanwhile.
    const m = this.meta;
    if (!m || upTo <= m.acked[me]) return;
    let freed = 0;
    for (const [k, v] of rows) if (Number(k.slice(k.lastIndexOf(':') + 1)) > m.acked[me]) freed += v.length;
    const next: Meta = {
      ...m,
      acked: { ...m.acked, [me]: upTo },
      queuedBytes: { ...m.queuedBytes, [me]: Math.max(0, m.queuedBytes[me] - freed) },
    };
    this.meta = next;
    await this.ctx.storage.put(META, next);
    const keys = rows.map(([k]) => k);
    for (let i = 0; i < keys.length; i += 128) await this.ctx.storage.delete(keys.slice(i, i + 128));
  }

  private wake(side: ChannelSide): void {
    for (const w of [...this.waiters[side]]) w();
  }
}
