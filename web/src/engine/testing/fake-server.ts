/**
 * An in-memory stand-in for the e2e-chat server, close enough to the real one's rules for engine tests:
 *
 * - key directory: uploads verified under the device's certified signing key; claims take one one-time
 *   EC prekey and one one-time ML-KEM prekey per device atomically (last-resort ML-KEM otherwise) and skip
 *   the caller's own device;
 * - device lists: accepted only as verifyDeviceListUpdate successors, or as an explicit identity reset;
 * - conversations: the signed membership log verified with the protocol core (as the Worker does), plus a
 *   test hook that inserts a member WITHOUT an entry (a malicious server, PITFALLS 17);
 * - delivery (as the ConversationDO): per-conversation seq, a pairwise send must address exactly every
 *   live device of every member except the sender (`device_mismatch` with missing/extra/stale otherwise),
 *   client message ids are idempotency keys (`accepted` + `duplicate`), envelopes stay in each device's
 *   mailbox until acked (over the socket or HTTP), `resume` replays before live delivery starts, a removed
 *   member's sockets close with 4403;
 * - typing signals (as the ConversationDO): relayed to the addressed live member sockets, never sequenced
 *   or stored (`typingRelayed` counts them for tests);
 * - network switches: `setOnline(user, device, false)` drops sockets and refuses new ones;
 * - linking (issue 14): provisioning channels (an in-memory relay with the real one's single use and
 *   secret), single-use linking tokens bound to the account and channel, redemption checked like the
 *   Worker (list version + 1 under the account's key, exactly one device added, the new key's signature
 *   over the token, the device limit), encrypted device names, and the `devices` hint frame; test hooks
 *   to tamper with or drop relayed messages (a malicious relay).
 * - key transparency (fake-kt.ts): registrations and identity resets enter a log whose proofs come with
 *   the username lookup and the device-list fetch; test hooks make it misbehave like a malicious server —
 *   `ktTamper` rewrites answers, `forkKtView(user)` shows one user a diverging log, `resetIdentity(…,
 *   { log: false })` resets an identity without logging it.
 *
 * Does NOT: authenticate (each `api(user, device)` is already "signed in"), rate-limit, or persist.
 * @module
 */
import {
  CLOSE,
  type ClientFrame,
  clientFrame,
  type DeviceRef,
  type Envelope,
  MAX_DELIVER_BATCH,
  type ServerFrame,
  WIRE_VERSION,
} from '../../../../schema/wire.js';
import {
  applyEntry,
  type Curve25519,
  channelIdBytes,
  type DeviceCertificate,
  decodeDeviceList,
  decodeMembershipEntry,
  decodePrekeyUpload,
  deviceKeyResolver,
  encodeBundle,
  fromB64u,
  isSealedProfileShape,
  linkingChallenge,
  type MembershipState,
  sealedSettingsRevision,
  toB64u,
  type VerifiedDeviceList,
  verifyDeviceList,
  verifyDeviceListUpdate,
  verifyLog,
  verifyLoginChallenge,
  verifyPrekeyUpload,
} from '../../protocol/index.js';
import type { PrekeyBundle } from '../../protocol/prekeys.js';
import type { ChannelPoll, LinkingDeviceLinkApi, NewDeviceLinkApi } from '../link-transport.js';
import {
  ApiError,
  type BundleClaim,
  type ConversationInfo,
  type ConversationKind,
  type FrameSocket,
  type KtProof,
  type MailboxCursor,
  type MailboxEnvelope,
  type PrekeyCounts,
  type ServerApi,
  type SocketFactory,
  type SocketHandlers,
  type UserLookup,
} from '../transport.js';
import { FakeKtLog } from './fake-kt.js';

type Spk = PrekeyBundle['signedPrekey'];
type Otp = NonNullable<PrekeyBundle['oneTimePrekey']>;
type Kem = PrekeyBundle['kemPrekey'];

interface FakeChannel {
  secret: string;
  expiresAt: number;
  claimedBy: string | null;
  linked: boolean;
  closedBy: { new: boolean; existing: boolean };
  toNew: { seq: number; data: Uint8Array }[];
  toExisting: { seq: number; data: Uint8Array }[];
  next: { new: number; existing: number };
}

interface FakeDevice {
  cert: DeviceCertificate;
  revoked: boolean;
  name: Uint8Array | null;
  spk: Spk | null;
  otps: Otp[];
  kems: Kem[];
  lastResort: Kem | null;
}

interface FakeUser {
  username: string;
  identityVersion: number;
  list: VerifiedDeviceList;
  listBytes: Uint8Array;
  devices: Map<string, FakeDevice>;
}

/** How a malicious server rewrites key-transparency answers for `viewer` (the signed-in user asking). */
export interface KtTamper {
  deviceList?(
    viewer: string,
    a: { list: Uint8Array; kt: KtProof | null },
  ): { list: Uint8Array; kt: KtProof | null } | Promise<{ list: Uint8Array; kt: KtProof | null }>;
  lookup?(viewer: string, a: UserLookup): UserLookup | Promise<UserLookup>;
  head?(viewer: string, head: Uint8Array): Uint8Array | Promise<Uint8Array>;
  consistency?(viewer: string, from: number, to: number, proof: Uint8Array[]): Uint8Array[];
}

interface FakeSocket {
  user: string;
  device: string;
  live: boolean;
  handlers: SocketHandlers;
  open: boolean;
}

interface FakeConversation {
  id: string;
  kind: ConversationKind;
  entries: Uint8Array[];
  state: MembershipState;
  /** The server's member set: normally the log's fold, but a test can insert members behind its back. */
  members: Map<string, string>;
  seq: number;
  ids: Map<string, { seq: number; ts: number }>;
  /** Un-acked envelopes per `${user}\n${device}`, in seq order. */
  mailbox: Map<string, Envelope[]>;
  sockets: Set<FakeSocket>;
}

const dk = (u: string, d: string) => `${u}\n${d}`;

export interface FakeServerOptions {
  readonly curves: Curve25519;
  readonly now?: () => number;
  /** Devices per account (the Worker's DEVICE_LIMIT); default 5. */
  readonly deviceLimit?: number;
}

export class FakeServer {
  /** The key-transparency log everyone sees (unless a test forks a view). */
  readonly kt: FakeKtLog;
  private readonly ktViews = new Map<string, FakeKtLog>();
  /** Test hooks: a malicious server's rewritten key-transparency answers. */
  ktTamper: KtTamper = {};
  readonly users = new Map<string, FakeUser>();
  readonly conversations = new Map<string, FakeConversation>();
  private readonly offline = new Set<string>();
  /** Devices whose HTTP calls fail as a dropped network does (`fetch` rejects with a TypeError). */
  private readonly unreachable = new Set<string>();
  /** HTTP calls that failed that way: the device and the `ServerApi` method called. */
  readonly refused: { user: string; device: string; call: string }[] = [];
  private readonly muted = new Set<string>();
  /** Every frame a client sent, for assertions. */
  readonly sentFrames: { user: string; device: string; conversationId: string; frame: ClientFrame }[] = [];
  /** Every socket a device opened (each costs a ticket on the real server), in order. */
  readonly openedSockets: { user: string; device: string; conversationId: string }[] = [];
  /** Typing signals relayed to sockets (never stored). */
  typingRelayed = 0;
  private readonly curves: Curve25519;
  private readonly now: () => number;
  /** Attachment blobs (as the Worker + R2: members only, exactly the reserved size). */
  readonly attachments = new Map<
    string,
    {
      conversationId: string;
      uploader: string;
      size: number;
      bytes: Uint8Array | null;
      /** Parts uploads: the part size and the parts received (by number). */
      partBytes?: number;
      parts?: Map<number, { etag: string; bytes: Uint8Array }>;
    }
  >();
  /** The part size of parts uploads (the Worker's default, ATTACHMENT_LIMITS.partBytes). */
  attachmentPartBytes = 8 * 1024 * 1024;
  /** Every attachment call a client made, with what it sent (for "the server never sees …" assertions). */
  readonly attachmentCalls: { op: string; user: string; args: unknown[] }[] = [];
  /** Sealed profiles and sealed private settings by user (as the Worker's D1 rows: ciphertext only). */
  readonly profiles = new Map<string, Uint8Array>();
  readonly privateSettings = new Map<string, { revision: number; sealed: Uint8Array }>();
  /** Test hook: the next `n` uploads fail with a network error after the bytes were read. */
  failUploads = 0;
  /** Test hook: uploads wait for this before completing (to cancel one mid-way). */
  uploadGate: Promise<void> | null = null;
  /** Test hook: the next `n` `send` frames are refused (`frame_too_large`: a terminal error, the message fails). */
  refuseSends = 0;
  readonly channels = new Map<string, FakeChannel>();
  private readonly tokens = new Map<
    string,
    { userId: string; channelId: string; expiresAt: number; usedBy: string | null }
  >();
  deviceLimit: number;
  /** Test hook (a malicious relay): rewrites or drops each message to the new device (null = drop). */
  tamperToNew: ((data: Uint8Array, seq: number) => Uint8Array | null) | null = null;

  private constructor(opts: FakeServerOptions, kt: FakeKtLog) {
    this.curves = opts.curves;
    this.now = opts.now ?? Date.now;
    this.deviceLimit = opts.deviceLimit ?? 5;
    this.kt = kt;
  }

  static async create(opts: FakeServerOptions): Promise<FakeServer> {
    const rng = (n: number) => globalThis.crypto.getRandomValues(new Uint8Array(n));
    return new FakeServer(opts, await FakeKtLog.create(opts.curves, rng, opts.now ?? Date.now));
  }

  /** The log's public key: what the app is built with. */
  get ktLogKey(): Uint8Array {
    return this.kt.publicKey;
  }

  /** The log `viewer` is shown. */
  ktFor(viewer: string): FakeKtLog {
    return this.ktViews.get(viewer) ?? this.kt;
  }

  /**
   * From now on `viewer` sees its own copy of the log (or `view`, e.g. a log with rewritten history), which
   * the test can make diverge: a split view.
   */
  forkKtView(viewer: string, view: FakeKtLog = this.kt.fork()): FakeKtLog {
    this.ktViews.set(viewer, view);
    return view;
  }

  private logKey(userId: string): void {
    const u = this.user(userId);
    this.kt.append({
      kind: 'key',
      userId,
      version: u.identityVersion,
      username: u.username,
      identityKey: u.list.userIdentityKey,
    });
  }

  // ---- accounts and devices ----------------------------------------------------------------------

  /** Registration: a version-1 device list signed by a new user identity key (username: the user id). */
  async register(listBytes: Uint8Array, username?: string): Promise<void> {
    const list = await verifyDeviceList(this.curves, decodeDeviceList(listBytes));
    if (list.version !== 1) throw new ApiError(422, 'invalid_device_list');
    if (this.users.has(list.userId)) throw new ApiError(409, 'user_id_taken');
    const name = username ?? list.userId;
    if ([...this.users.values()].some((u) => u.username === name)) throw new ApiError(409, 'username_taken');
    const devices = new Map(list.devices.map((d) => [d.deviceId, emptyDevice(d.certificate)]));
    this.users.set(list.userId, { username: name, identityVersion: 1, list, listBytes, devices });
    this.logKey(list.userId);
  }

  /** A device list update (add or remove devices) signed by the same identity key, version + 1. */
  async updateDeviceList(listBytes: Uint8Array): Promise<void> {
    const next = decodeDeviceList(listBytes);
    const u = this.user(next.userId);
    const list = await verifyDeviceListUpdate(this.curves, u.list, next);
    this.applyList(u, list, listBytes);
  }

  /**
   * Identity reset: a new identity key and a new list (version + 1); every old device is revoked, and the
   * new key enters the log — unless `log: false` (a malicious server resetting an identity off the log).
   */
  async resetIdentity(listBytes: Uint8Array, opts: { log?: boolean } = {}): Promise<void> {
    const next = decodeDeviceList(listBytes);
    const u = this.user(next.userId);
    const list = await verifyDeviceList(this.curves, next);
    if (list.version !== u.list.version + 1) throw new ApiError(422, 'invalid_device_list');
    for (const d of u.devices.values()) d.revoked = true;
    this.applyList(u, list, listBytes);
    u.identityVersion++;
    if (opts.log !== false) this.logKey(next.userId);
  }

  private applyList(u: FakeUser, list: VerifiedDeviceList, bytes: Uint8Array): void {
    const listed = new Set(list.devices.map((d) => d.deviceId));
    for (const [id, d] of u.devices) if (!listed.has(id)) this.revoke(list.userId, id, d);
    for (const d of list.devices)
      if (!u.devices.has(d.deviceId) || u.devices.get(d.deviceId)!.revoked)
        u.devices.set(d.deviceId, emptyDevice(d.certificate));
    u.list = list;
    u.listBytes = bytes;
    this.announceDevices(list.userId);
  }

  /** The `devices` hint to every live socket of the user's conversations (as the ConversationDO). */
  private announceDevices(userId: string): void {
    for (const c of this.conversations.values()) {
      if (!c.members.has(userId)) continue;
      for (const s of c.sockets) if (s.live) this.push(s, { v: WIRE_VERSION, type: 'devices', userId });
    }
  }

  private revoke(userId: string, deviceId: string, d: FakeDevice): void {
    d.revoked = true;
    for (const c of this.conversations.values()) {
      c.mailbox.delete(dk(userId, deviceId));
      for (const s of [...c.sockets]) if (s.user === userId && s.device === deviceId) this.closeSocket(c, s, 4403);
    }
  }

  private user(userId: string): FakeUser {
    return this.users.get(userId) ?? fail(404, 'not_found');
  }

  private liveDevice(userId: string, deviceId: string): FakeDevice {
    const d = this.user(userId).devices.get(deviceId);
    if (!d || d.revoked) throw new ApiError(401, 'session_revoked');
    return d;
  }

  // ---- test hooks --------------------------------------------------------------------------------

  /** A malicious server adds a member without any signed membership entry. */
  insertMemberWithoutEntry(conversationId: string, userId: string): void {
    this.conv(conversationId).members.set(userId, 'member');
  }

  /**
   * A malicious server adds a live device to a user WITHOUT it being in the user's signed device list
   * (its certificate is signed by some other key), with prekeys, so claims serve it (PITFALLS 16).
   */
  addUnlistedDevice(userId: string, cert: DeviceCertificate, keys: { spk: Spk; otp: Otp; kem: Kem }): void {
    const d = emptyDevice(cert);
    d.spk = keys.spk;
    d.otps.push(keys.otp);
    d.lastResort = keys.kem;
    this.user(userId).devices.set(cert.deviceId, d);
  }

  /** Network switch for one device: offline drops its sockets and refuses new ones. */
  setOnline(userId: string, deviceId: string, online: boolean): void {
    if (online) this.offline.delete(dk(userId, deviceId));
    else {
      this.offline.add(dk(userId, deviceId));
      for (const c of this.conversations.values())
        for (const s of [...c.sockets]) if (s.user === userId && s.device === deviceId) this.closeSocket(c, s, 1006);
    }
  }

  /** The whole network of one device: sockets as `setOnline`, and every HTTP call rejects like a failed fetch. */
  setReachable(userId: string, deviceId: string, reachable: boolean): void {
    if (reachable) this.unreachable.delete(dk(userId, deviceId));
    else this.unreachable.add(dk(userId, deviceId));
    this.setOnline(userId, deviceId, reachable);
  }

  /** Frames from this device are processed, but nothing reaches it (lost answers, e.g. a dying tab). */
  muteReplies(userId: string, deviceId: string, muted: boolean): void {
    if (muted) this.muted.add(dk(userId, deviceId));
    else this.muted.delete(dk(userId, deviceId));
  }

  /** Envelopes still waiting in a device's mailbox for a conversation. */
  pending(conversationId: string, userId: string, deviceId: string): Envelope[] {
    return [...(this.conv(conversationId).mailbox.get(dk(userId, deviceId)) ?? [])];
  }

  // ---- the API a signed-in device sees ----------------------------------------------------------

  /**
   * POST /api/conversations/:id/log as the Worker checks it — and, with `departure`, the entries a deleting
   * account's POST /api/account/delete appends: a direct conversation takes only timer changes after its
   * creation, plus a departure ([transfer_ownership]?, leave) there; with one person left, nothing.
   */
  async appendEntry(userId: string, deviceId: string, id: string, bytes: Uint8Array, departure = false) {
    const c = this.memberConv(id, userId);
    const entry = decodeMembershipEntry(bytes);
    if (entry.authorUserId !== userId || entry.authorDeviceId !== deviceId) throw new ApiError(403, 'forbidden');
    const departing = departure && (entry.action === 'transfer_ownership' || entry.action === 'leave');
    if (c.kind === 'direct' && ((entry.action !== 'set_timer' && !departing) || c.members.size < 2))
      throw new ApiError(422, 'direct_conversation_closed');
    const state = await applyEntry(this.curves, c.state, entry, this.resolver()).catch(() =>
      fail(422, 'invalid_entry'),
    );
    const removed = [...c.state.members.keys()].filter((u) => !state.members.has(u));
    c.state = state;
    c.entries.push(bytes.slice());
    for (const u of removed) c.members.delete(u);
    for (const [u, r] of state.members) c.members.set(u, r);
    const frame: ServerFrame = {
      v: WIRE_VERSION,
      type: 'membership',
      entry: toB64u(bytes),
      removed,
      afterSeq: c.seq,
    };
    for (const s of [...c.sockets]) {
      if (removed.includes(s.user)) this.closeSocket(c, s, CLOSE.forbidden);
      else if (s.live) this.push(s, frame);
    }
    for (const u of removed) for (const k of [...c.mailbox.keys()]) if (k.startsWith(`${u}\n`)) c.mailbox.delete(k);
    return info(c);
  }

  api(userId: string, deviceId: string): ServerApi {
    const calls = this.apiCalls(userId, deviceId);
    return new Proxy(calls, {
      get: (target, prop, receiver) => {
        const v = Reflect.get(target, prop, receiver);
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          if (!this.unreachable.has(dk(userId, deviceId)))
            return (v as (...a: unknown[]) => unknown).apply(target, args);
          this.refused.push({ user: userId, device: deviceId, call: String(prop) });
          return Promise.reject(new TypeError('fetch failed'));
        };
      },
    });
  }

  private apiCalls(userId: string, deviceId: string): ServerApi {
    const me = () => this.liveDevice(userId, deviceId);
    return {
      uploadPrekeys: async (bytes) => {
        const d = me();
        const upload = decodePrekeyUpload(bytes);
        const cert = this.user(userId).list.devices.find((x) => x.deviceId === deviceId)!;
        await verifyPrekeyUpload(this.curves, upload, cert.signingKey);
        const firstKeys = upload.signedPrekey !== null && d.spk === null;
        if (upload.signedPrekey) d.spk = upload.signedPrekey;
        d.otps.push(...upload.oneTimePrekeys);
        for (const k of upload.kemPrekeys) {
          if (k.lastResort) d.lastResort = k;
          else d.kems.push(k);
        }
        if (firstKeys) this.announceDevices(userId);
        return counts(d);
      },
      prekeyCounts: async () => counts(me()),
      claimBundles: async (target) => {
        me();
        return this.claim(userId, deviceId, target);
      },
      fetchDeviceList: async (target) => {
        const u = this.users.get(target);
        if (!u) return null;
        const a = { list: u.listBytes.slice(), kt: await this.ktFor(userId).prove(target) };
        return this.ktTamper.deviceList ? this.ktTamper.deviceList(userId, a) : a;
      },
      lookupUser: async (username) => {
        const [id, u] = [...this.users].find(([, x]) => x.username === username) ?? [];
        if (!id || !u) return null;
        const a: UserLookup = {
          userId: id,
          username,
          identityKey: u.list.userIdentityKey.slice(),
          kt: await this.ktFor(userId).prove(id),
        };
        return this.ktTamper.lookup ? this.ktTamper.lookup(userId, a) : a;
      },
      ktHead: async () => {
        const h = await this.ktFor(userId).head();
        return this.ktTamper.head ? this.ktTamper.head(userId, h) : h;
      },
      ktConsistency: async (from, to) => {
        const p = this.ktFor(userId).consistency(from, to) ?? fail(400, 'kt_out_of_range');
        return this.ktTamper.consistency ? this.ktTamper.consistency(userId, from, to, p) : p;
      },
      createConversation: async (kind, entryBytes) => {
        me();
        const entries = entryBytes.map((b) => decodeMembershipEntry(b));
        const id = entries[0]?.conversationId ?? fail(400, 'invalid_entry');
        if (this.conversations.has(id)) throw new ApiError(409, 'conversation_exists');
        const state = await verifyLog(this.curves, entries, this.resolver()).catch(() => fail(422, 'invalid_entry'));
        if (entries[0]!.authorUserId !== userId) throw new ApiError(403, 'forbidden');
        const c: FakeConversation = {
          id,
          kind,
          entries: entryBytes.map((b) => b.slice()),
          state,
          members: new Map(state.members),
          seq: 0,
          ids: new Map(),
          mailbox: new Map(),
          sockets: new Set(),
        };
        this.conversations.set(id, c);
        return info(c);
      },
      getConversation: async (id) => info(this.memberConv(id, userId)),
      listConversations: async () =>
        [...this.conversations.values()].filter((c) => c.members.has(userId)).map((c) => ({ id: c.id, kind: c.kind })),
      fetchMembershipLog: async (id, afterSeq) =>
        this.memberConv(id, userId)
          .entries.slice(afterSeq + 1)
          .map((b) => b.slice()),
      appendMembershipEntry: (id, bytes) => this.appendEntry(userId, deviceId, id, bytes),
      fetchMailbox: async (cursor) => {
        me();
        return this.readMailbox(userId, deviceId, cursor, 50);
      },
      ackMailbox: async (acks) => {
        me();
        for (const a of acks) this.ack(this.conv(a.conversationId), userId, deviceId, a.upTo);
      },
      reserveAttachment: async (conversationId, size, parts) => {
        me();
        this.attachmentCalls.push({ op: 'reserve', user: userId, args: [conversationId, size] });
        this.memberConv(conversationId, userId);
        const attachmentId = toB64u(crypto.getRandomValues(new Uint8Array(16)));
        const partBytes = parts ? this.attachmentPartBytes : undefined;
        this.attachments.set(attachmentId, {
          conversationId,
          uploader: userId,
          size,
          bytes: null,
          ...(partBytes ? { partBytes, parts: new Map() } : {}),
        });
        return partBytes ? { attachmentId, partBytes } : { attachmentId };
      },
      uploadAttachmentPart: async (attachmentId, n, body, opts) => {
        me();
        const bytes = new Uint8Array(await body.arrayBuffer());
        this.attachmentCalls.push({ op: 'part', user: userId, args: [attachmentId, n, bytes] });
        const a = this.attachments.get(attachmentId);
        if (!a || a.uploader !== userId) throw new ApiError(404, 'not_found');
        if (a.bytes) throw new ApiError(409, 'already_uploaded');
        if (!a.partBytes || !a.parts) throw new ApiError(409, 'upload_mode_mismatch');
        const count = Math.max(1, Math.ceil(a.size / a.partBytes));
        if (n < 1 || n > count) throw new ApiError(400, 'invalid_part');
        if (bytes.length !== (n < count ? a.partBytes : a.size - (count - 1) * a.partBytes))
          throw new ApiError(400, 'size_mismatch');
        if (this.uploadGate) await this.uploadGate;
        if (opts.signal?.aborted) throw new DOMException('aborted', 'AbortError');
        if (this.failUploads > 0) {
          this.failUploads--;
          throw new TypeError('network error');
        }
        const etag = toB64u(crypto.getRandomValues(new Uint8Array(8)));
        a.parts.set(n, { etag, bytes });
        opts.onProgress?.(bytes.length);
        return { partNumber: n, etag };
      },
      completeAttachment: async (attachmentId, parts) => {
        me();
        this.attachmentCalls.push({ op: 'complete', user: userId, args: [attachmentId, parts] });
        const a = this.attachments.get(attachmentId);
        if (!a || a.uploader !== userId) throw new ApiError(404, 'not_found');
        if (a.bytes) throw new ApiError(409, 'already_uploaded');
        if (!a.partBytes || !a.parts) throw new ApiError(409, 'upload_mode_mismatch');
        const got = parts.map((p, i) => {
          const stored = a.parts?.get(i + 1);
          if (p.partNumber !== i + 1 || stored?.etag !== p.etag) throw new ApiError(400, 'upload_incomplete');
          return stored.bytes;
        });
        const bytes = new Uint8Array(got.reduce((n, b) => n + b.length, 0));
        let off = 0;
        for (const b of got) {
          bytes.set(b, off);
          off += b.length;
        }
        if (bytes.length !== a.size) throw new ApiError(400, 'upload_incomplete');
        a.bytes = bytes;
      },
      uploadAttachment: async (attachmentId, body, opts) => {
        me();
        const bytes = new Uint8Array(await body.arrayBuffer());
        this.attachmentCalls.push({ op: 'upload', user: userId, args: [attachmentId, bytes] });
        const a = this.attachments.get(attachmentId);
        if (!a || a.uploader !== userId) throw new ApiError(404, 'not_found');
        if (a.bytes) throw new ApiError(409, 'already_uploaded');
        if (bytes.length !== a.size) throw new ApiError(400, 'size_mismatch');
        opts.onProgress?.(Math.floor(bytes.length / 2));
        if (this.uploadGate) await this.uploadGate;
        if (opts.signal?.aborted) throw new DOMException('aborted', 'AbortError');
        if (this.failUploads > 0) {
          this.failUploads--;
          throw new TypeError('network error');
        }
        a.bytes = bytes;
        opts.onProgress?.(bytes.length);
      },
      cancelAttachment: async (attachmentId) => {
        this.attachmentCalls.push({ op: 'cancel', user: userId, args: [attachmentId] });
        const a = this.attachments.get(attachmentId);
        if (a && a.uploader === userId && !a.bytes) this.attachments.delete(attachmentId);
      },
      downloadAttachment: async (attachmentId) => {
        me();
        this.attachmentCalls.push({ op: 'download', user: userId, args: [attachmentId] });
        const a = this.attachments.get(attachmentId);
        if (!a?.bytes || !this.conversations.get(a.conversationId)?.members.has(userId))
          throw new ApiError(404, 'not_found');
        const bytes = a.bytes.slice();
        let off = 0;
        return new ReadableStream<Uint8Array>({
          pull(ctl) {
            if (off >= bytes.length) return ctl.close();
            ctl.enqueue(bytes.slice(off, off + 100_000));
            off += 100_000;
          },
        });
      },
      // ---- people (the Worker's rules: shape checks only, compare-and-swap on the settings revision) ----
      putProfile: async (sealed) => {
        me();
        if (!isSealedProfileShape(sealed)) throw new ApiError(422, 'invalid_profile');
        this.profiles.set(userId, sealed.slice());
      },
      fetchProfile: async (target) => {
        me();
        return this.profiles.get(target)?.slice() ?? null;
      },
      fetchPrivateSettings: async () => {
        me();
        const s = this.privateSettings.get(userId);
        return s ? { revision: s.revision, sealed: s.sealed.slice() } : { revision: 0, sealed: null };
      },
      putPrivateSettings: async (sealed) => {
        me();
        const revision = sealedSettingsRevision(sealed);
        if (revision === null) throw new ApiError(422, 'invalid_settings');
        if (revision !== (this.privateSettings.get(userId)?.revision ?? 0) + 1)
          throw new ApiError(409, 'revision_conflict');
        this.privateSettings.set(userId, { revision, sealed: sealed.slice() });
      },
    };
  }

  /** WebSocket factory for one device (the ticket step is implicit). */
  sockets(userId: string, deviceId: string): SocketFactory {
    return async (conversationId, handlers) => {
      await Promise.resolve();
      if (this.offline.has(dk(userId, deviceId))) throw new Error('network unreachable');
      const c = this.conversations.get(conversationId);
      const d = this.users.get(userId)?.devices.get(deviceId);
      if (!c?.members.has(userId) || !d || d.revoked) throw new ApiError(403, 'not_member');
      const s: FakeSocket = { user: userId, device: deviceId, live: false, handlers, open: true };
      c.sockets.add(s);
      this.openedSockets.push({ user: userId, device: deviceId, conversationId });
      const socket: FrameSocket = {
        send: (data) => {
          if (!s.open) return;
          queueMicrotask(() => {
            if (s.open) this.onFrame(c, s, data);
          });
        },
        close: () => {
          s.open = false;
          c.sockets.delete(s);
        },
      };
      return socket;
    };
  }

  // ---- linking (issue 14) ------------------------------------------------------------------------

  /** The live channel for `side` (as the relay: a side that closed is done; see worker/link-channel.ts). */
  private channel(id: string, check: (c: FakeChannel) => void, side?: 'new' | 'existing'): FakeChannel {
    const c = this.channels.get(id);
    if (!c) throw new ApiError(404, 'channel_not_found');
    if (this.now() >= c.expiresAt) {
      this.channels.delete(id);
      throw new ApiError(410, 'channel_expired');
    }
    if ((c.closedBy.new && c.closedBy.existing) || (side && c.closedBy[side]))
      throw new ApiError(410, 'channel_closed');
    check(c);
    return c;
  }

  /** A long poll: until a message after `after` is queued for `side`, or `waitMs` (at least one timer turn). */
  private async channelWait(id: string, side: 'new' | 'existing', after: number, waitMs: number): Promise<void> {
    const end = Date.now() + waitMs;
    for (;;) {
      await new Promise((r) => setTimeout(r, 2));
      const c = this.channels.get(id);
      const box = c ? (side === 'new' ? c.toNew : c.toExisting) : [];
      if (!c || c.closedBy.new || c.closedBy.existing || box.some((m) => m.seq > after) || Date.now() >= end) return;
    }
  }

  private pollChannel(c: FakeChannel, side: 'new' | 'existing', after: number): ChannelPoll {
    const box = side === 'new' ? c.toNew : c.toExisting;
    const keep = box.filter((m) => m.seq > after);
    box.splice(0, box.length, ...keep);
    if (keep.length === 0 && c.closedBy[side === 'new' ? 'existing' : 'new']) throw new ApiError(410, 'channel_closed');
    return {
      messages: keep.slice(0, 16).map((m) => ({ seq: m.seq, data: m.data.slice() })),
      peerAcked: 0,
      linked: c.linked,
    };
  }

  /** The new device's side: no session until `redeem`, which calls `onSignedIn` with its ids. */
  newDeviceLinkApi(onSignedIn: (userId: string, deviceId: string) => void = () => undefined): NewDeviceLinkApi {
    const auth = (secret: string) => (c: FakeChannel) => {
      if (c.secret !== secret) throw new ApiError(403, 'channel_forbidden');
    };
    return {
      origin: 'https://fake.example',
      openChannel: async (channelId) => {
        channelIdBytes(channelId);
        if (this.channels.has(channelId)) throw new ApiError(409, 'channel_exists');
        const secret = b64(32);
        const expiresAt = this.now() + 10 * 60 * 1000;
        this.channels.set(channelId, {
          secret,
          expiresAt,
          claimedBy: null,
          linked: false,
          closedBy: { new: false, existing: false },
          toNew: [],
          toExisting: [],
          next: { new: 0, existing: 0 },
        });
        return { secret, expiresAt };
      },
      poll: async (id, secret, after, waitMs) => {
        await this.channelWait(id, 'new', after, waitMs);
        return this.pollChannel(this.channel(id, auth(secret), 'new'), 'new', after);
      },
      send: async (id, secret, data) => {
        const c = this.channel(id, auth(secret), 'new');
        if (c.closedBy.existing) throw new ApiError(410, 'channel_closed');
        const seq = ++c.next.existing;
        c.toExisting.push({ seq, data: data.slice() });
        return seq;
      },
      close: async (id, secret) => {
        const c = this.channel(id, auth(secret), 'new');
        c.closedBy.new = true;
        c.toNew = [];
      },
      redeem: async (r) => {
        const t = this.tokens.get(r.linkingToken);
        if (!t) throw new ApiError(401, 'invalid_linking_token');
        if (t.usedBy) throw new ApiError(409, 'linking_token_used');
        if (t.expiresAt <= this.now()) throw new ApiError(401, 'linking_token_expired');
        if (t.channelId !== r.channelId) throw new ApiError(403, 'linking_token_mismatch');
        const c = this.channel(r.channelId, auth(r.channelSecret));
        if (c.claimedBy?.split('\n')[0] !== t.userId) throw new ApiError(403, 'channel_forbidden');
        const next = decodeDeviceList(r.deviceList);
        if (next.userId !== t.userId) throw new ApiError(422, 'invalid_device_list');
        const u = this.user(t.userId);
        const list = await verifyDeviceListUpdate(this.curves, u.list, next).catch(() =>
          fail(422, 'invalid_device_list'),
        );
        const before = new Set(u.list.devices.map((d) => d.deviceId));
        const added = list.devices.filter((d) => !before.has(d.deviceId));
        if (added.length !== 1 || u.list.devices.some((d) => !list.devices.some((x) => x.deviceId === d.deviceId)))
          throw new ApiError(422, 'unexpected_device_change');
        if (list.devices.length > this.deviceLimit) throw new ApiError(409, 'device_limit');
        const dev = added[0]!;
        const ok = await verifyLoginChallenge(
          this.curves,
          dev.signingKey,
          linkingChallenge(fromB64u(r.linkingToken)),
          t.userId,
          dev.deviceId,
          r.signature,
        ).catch(() => false);
        if (!ok) throw new ApiError(422, 'invalid_device_proof');
        this.applyList(u, list, r.deviceList);
        t.usedBy = dev.deviceId;
        c.linked = true;
        if (r.name) u.devices.get(dev.deviceId)!.name = r.name.slice();
        onSignedIn(t.userId, dev.deviceId);
        return { userId: t.userId, deviceId: dev.deviceId };
      },
    };
  }

  /** The signed-in device's side of linking. */
  linkingApi(userId: string, deviceId: string): LinkingDeviceLinkApi {
    const me = dk(userId, deviceId);
    const claimed = (c: FakeChannel) => {
      if (!c.claimedBy) throw new ApiError(409, 'channel_unclaimed');
      if (c.claimedBy !== me) throw new ApiError(403, 'channel_claimed');
    };
    return {
      origin: 'https://fake.example',
      linkingToken: async (channelId) => {
        this.liveDevice(userId, deviceId);
        const c = this.channel(channelId, () => undefined);
        const u = this.user(userId);
        if ([...u.devices.values()].filter((d) => !d.revoked).length >= this.deviceLimit)
          throw new ApiError(409, 'device_limit');
        if (c.closedBy.new || c.closedBy.existing) throw new ApiError(410, 'channel_closed');
        if (c.linked) throw new ApiError(409, 'channel_used');
        if (c.claimedBy && c.claimedBy !== me) throw new ApiError(403, 'channel_claimed');
        c.claimedBy = me;
        const token = b64(32);
        this.tokens.set(token, { userId, channelId, expiresAt: c.expiresAt, usedBy: null });
        return { linkingToken: token, expiresAt: c.expiresAt };
      },
      poll: async (id, after, waitMs) => {
        await this.channelWait(id, 'existing', after, waitMs);
        return this.pollChannel(this.channel(id, claimed, 'existing'), 'existing', after);
      },
      send: async (id, data) => {
        const c = this.channel(id, claimed, 'existing');
        if (c.closedBy.new) throw new ApiError(410, 'channel_closed');
        const seq = ++c.next.new;
        const out = this.tamperToNew ? this.tamperToNew(data.slice(), seq) : data.slice();
        if (out) c.toNew.push({ seq, data: out });
        return seq;
      },
      close: async (id) => {
        const c = this.channel(id, claimed, 'existing');
        c.closedBy.existing = true;
        c.toExisting = [];
      },
      setDeviceName: async (target, name) => {
        const d = this.user(userId).devices.get(target);
        if (!d || d.revoked) throw new ApiError(404, 'unknown_device');
        d.name = name.slice();
      },
    };
  }

  /** The account's devices as GET /api/devices shows them (names are ciphertext). */
  deviceNames(userId: string): { deviceId: string; name: Uint8Array | null; revoked: boolean }[] {
    return [...this.user(userId).devices].map(([deviceId, d]) => ({ deviceId, name: d.name, revoked: d.revoked }));
  }

  // ---- internals --------------------------------------------------------------------------------

  private resolver() {
    return deviceKeyResolver([...this.users.values()].map((u) => u.list));
  }

  private conv(id: string): FakeConversation {
    return this.conversations.get(id) ?? fail(404, 'not_found');
  }

  private memberConv(id: string, userId: string): FakeConversation {
    const c = this.conv(id);
    if (!c.members.has(userId)) throw new ApiError(404, 'not_found');
    return c;
  }

  private claim(callerUser: string, callerDevice: string, target: string): BundleClaim {
    const u = this.user(target);
    const devices: { deviceId: string; bundle: Uint8Array }[] = [];
    const unavailable: string[] = [];
    for (const [deviceId, d] of u.devices) {
      if (target === callerUser && deviceId === callerDevice) continue;
      if (d.revoked) continue;
      const kem = d.kems.shift() ?? d.lastResort;
      if (!d.spk || !kem) {
        unavailable.push(deviceId);
        continue;
      }
      const otp = d.otps.shift() ?? null;
      const bundle = encodeBundle({
        deviceCertificate: d.cert,
        signedPrekey: d.spk,
        oneTimePrekey: otp,
        kemPrekey: kem,
      });
      devices.push({ deviceId, bundle });
    }
    return {
      userId: target,
      identityKey: u.list.userIdentityKey.slice(),
      deviceList: u.listBytes.slice(),
      devices,
      unavailable,
    };
  }

  /** Every live device of every server-side member except the sender. */
  private recipients(c: FakeConversation, sender: DeviceRef): DeviceRef[] {
    const out: DeviceRef[] = [];
    for (const u of c.members.keys()) {
      const user = this.users.get(u);
      if (!user) continue;
      for (const [d, dev] of user.devices) if (!dev.revoked && !(u === sender.u && d === sender.d)) out.push({ u, d });
    }
    return out;
  }

  private onFrame(c: FakeConversation, s: FakeSocket, data: string): void {
    let frame: ClientFrame;
    try {
      frame = clientFrame.parse(JSON.parse(data));
    } catch {
      this.push(s, { v: WIRE_VERSION, type: 'error', code: 'bad_frame', message: 'invalid frame' });
      return;
    }
    this.sentFrames.push({ user: s.user, device: s.device, conversationId: c.id, frame });
    if (frame.type === 'ack') {
      this.ack(c, s.user, s.device, frame.upTo);
      return;
    }
    if (frame.type === 'resume') {
      const all = (c.mailbox.get(dk(s.user, s.device)) ?? []).filter((e) => e.seq > frame.after);
      for (let i = 0; i < all.length; i += MAX_DELIVER_BATCH)
        this.push(s, { v: WIRE_VERSION, type: 'deliver', envelopes: all.slice(i, i + MAX_DELIVER_BATCH) });
      const through = all.length ? all[all.length - 1]!.seq : frame.after;
      this.push(s, { v: WIRE_VERSION, type: 'resume', after: frame.after, through, more: false });
      s.live = true;
      return;
    }
    if (!c.members.has(s.user)) {
      this.closeSocket(c, s, CLOSE.forbidden);
      return;
    }
    if (frame.type === 'typing') {
      this.relayTyping(c, s, frame);
      return;
    }
    if (frame.type === 'send' && this.refuseSends > 0) {
      this.refuseSends--;
      this.push(s, { v: WIRE_VERSION, type: 'error', code: 'frame_too_large', message: 'refused', id: frame.id });
      return;
    }
    const sender = { u: s.user, d: s.device };
    const key = dk(s.user, s.device) + '\n' + frame.id;
    const seen = c.ids.get(key);
    if (seen) {
      this.push(s, { v: WIRE_VERSION, type: 'accepted', id: frame.id, seq: seen.seq, ts: seen.ts, duplicate: true });
      return;
    }
    const expected = this.recipients(c, sender);
    let items: { u: string; d: string; c: string }[];
    if ('to' in frame) {
      const want = new Map(expected.map((r) => [dk(r.u, r.d), r]));
      const extra: DeviceRef[] = [];
      const stale: DeviceRef[] = [];
      const dup = new Set<string>();
      for (const t of frame.to) {
        const k = dk(t.u, t.d);
        if (dup.has(k)) {
          this.push(s, { v: WIRE_VERSION, type: 'error', code: 'duplicate_recipient', message: 'dup', id: frame.id });
          return;
        }
        dup.add(k);
        if (want.delete(k)) continue;
        const dev = this.users.get(t.u)?.devices.get(t.d);
        if (c.members.has(t.u) && dev?.revoked) stale.push({ u: t.u, d: t.d });
        else extra.push({ u: t.u, d: t.d });
      }
      const missing = [...want.values()];
      if (missing.length || extra.length || stale.length) {
        this.push(s, {
          v: WIRE_VERSION,
          type: 'error',
          code: 'device_mismatch',
          message: 'the addressed devices are not the current device set',
          id: frame.id,
          missing,
          extra,
          stale,
        });
        return;
      }
      items = frame.to.map((t) => ({ u: t.u, d: t.d, c: t.c }));
    } else {
      items = expected.map((r) => ({ ...r, c: frame.group }));
    }
    const seq = ++c.seq;
    const ts = this.now();
    c.ids.set(key, { seq, ts });
    for (const it of items) {
      const env: Envelope = {
        seq,
        ts,
        from: sender,
        id: frame.id,
        kind: frame.type === 'receipt' ? 'receipt' : 'message',
        ...(frame.type === 'receipt' ? { status: frame.status } : {}),
        mode: 'to' in frame ? 'pairwise' : 'group',
        c: it.c,
      };
      const k = dk(it.u, it.d);
      if (!c.mailbox.has(k)) c.mailbox.set(k, []);
      c.mailbox.get(k)!.push(env);
      for (const o of c.sockets)
        if (o.live && o.user === it.u && o.device === it.d)
          this.push(o, { v: WIRE_VERSION, type: 'deliver', envelopes: [env] });
    }
    this.push(s, { v: WIRE_VERSION, type: 'accepted', id: frame.id, seq, ts });
  }

  /** A typing signal goes to the live sockets it addresses (members only) and nowhere else. */
  private relayTyping(c: FakeConversation, s: FakeSocket, frame: Extract<ClientFrame, { type: 'typing' }>): void {
    const from = { u: s.user, d: s.device };
    const targets =
      'group' in frame
        ? [...c.sockets]
            .filter((o) => !(o.user === s.user && o.device === s.device))
            .map((o) => ({ o, c: frame.group }))
        : frame.to.flatMap((t) =>
            [...c.sockets].filter((o) => o.user === t.u && o.device === t.d).map((o) => ({ o, c: t.c })),
          );
    for (const { o, c: ct } of targets) {
      if (!o.live || !c.members.has(o.user)) continue;
      this.typingRelayed++;
      this.push(o, { v: WIRE_VERSION, type: 'typing', from, mode: 'group' in frame ? 'group' : 'pairwise', c: ct });
    }
  }

  private ack(c: FakeConversation, u: string, d: string, upTo: number): void {
    const box = c.mailbox.get(dk(u, d));
    if (box)
      c.mailbox.set(
        dk(u, d),
        box.filter((e) => e.seq > upTo),
      );
  }

  private readMailbox(u: string, d: string, cursor: MailboxCursor | null, limit: number) {
    const all: MailboxEnvelope[] = [];
    const ids = [...this.conversations.keys()].sort();
    for (const id of ids) {
      for (const e of this.conversations.get(id)!.mailbox.get(dk(u, d)) ?? []) all.push({ ...e, conversationId: id });
    }
    const after = all.filter(
      (e) =>
        !cursor ||
        e.conversationId > cursor.afterConversation ||
        (e.conversationId === cursor.afterConversation && e.seq > cursor.afterSeq),
    );
    const envelopes = after.slice(0, limit);
    const last = envelopes[envelopes.length - 1];
    const next =
      envelopes.length === limit && last ? { afterConversation: last.conversationId, afterSeq: last.seq } : null;
    return { envelopes, next };
  }

  private push(s: FakeSocket, frame: ServerFrame): void {
    if (this.muted.has(dk(s.user, s.device))) return;
    const text = JSON.stringify(frame);
    queueMicrotask(() => {
      if (s.open) s.handlers.onMessage(text);
    });
  }

  private closeSocket(c: FakeConversation, s: FakeSocket, code: number): void {
    if (!s.open) return;
    s.open = false;
    c.sockets.delete(s);
    queueMicrotask(() => s.handlers.onClose(code));
  }
}

const b64 = (n: number) => toB64u(globalThis.crypto.getRandomValues(new Uint8Array(n)));

function emptyDevice(cert: DeviceCertificate): FakeDevice {
  return { cert, revoked: false, name: null, spk: null, otps: [], kems: [], lastResort: null };
}

function counts(d: FakeDevice): PrekeyCounts {
  return { oneTime: d.otps.length, kem: d.kems.length, signedPrekey: d.spk !== null };
}

function info(c: FakeConversation): ConversationInfo {
  return {
    id: c.id,
    kind: c.kind,
    headSeq: c.state.seq,
    members: [...c.members].map(([userId, role]) => ({ userId, role })),
  };
}

function fail(status: number, code: string): never {
  throw new ApiError(status, code);
}
