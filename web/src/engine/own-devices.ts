/**
 * What only the user's own devices share (docs/PROTOCOL.md §"Linking"): everything derived from the user
 * identity secret — device names and the id of the own sync conversation — and everything a linking
 * device hands a new one: the sealed provisioning message (with contacts' trust state), the history
 * archive, and on the new device their import. Also read positions, which follow across own devices
 * through the sync conversation, and the check that makes a removed device erase itself.
 *
 * - Names: `sealDeviceName` / `deviceNames` (the server stores and returns ciphertext only).
 * - Trust state: the directory's records (trusted identity key per contact), the app's verified marks
 *   (pref `verified`: userId → base64url identity key) and known usernames (pref `names`). On the new
 *   device they become pins (directory.ts) and the same prefs, so safety numbers and verified marks carry
 *   over and a key change that happened meanwhile is surfaced, never trusted on first use.
 * - History: the newest messages of the last `maxAgeMs`, at most `maxMessages` and `maxBytes` of records
 *   (defaults 90 days, 10,000, 50 MB), plus read positions; imported in ONE transaction, never in part,
 *   and never over a message this device already holds.
 * - Removal: `confirmRemoved(list)` is true only for a list signed by OUR user identity key, newer than the
 *   one we hold, that no longer contains this device — the server's word alone never erases anything.
 *
 * Does NOT: talk to the relay (linking.ts), send (the engine queues sync messages in the outbox), or keep
 * the account keys anywhere but in memory.
 * @module
 */
import {
  type AccountKeys,
  accountKeys,
  constants,
  decodeDeviceList,
  decodeHistoryRecords,
  equal,
  type HistoryRecord,
  type HistoryStatus,
  openDeviceName,
  type ProvisioningContact,
  packHistory,
  sealDeviceName,
  sealProvisioning,
  selfConversationId,
  type TheirX25519Key,
  toB64u,
  verifyDeviceList,
} from './_protocol.js';
import type { EngineContext, MessageStatus, MessageView } from './context.js';
import type { Directory } from './directory.js';
import type { Keystore } from './keystore.js';
import { raiseTopInTx } from './messages.js';
import { listJson, readJson, type StoreTx, writeJson } from './storage.js';

export interface HistoryOptions {
  readonly maxAgeMs: number;
  readonly maxMessages: number;
  readonly maxBytes: number;
}

/** The defaults: the last 90 days, at most 10,000 messages and 50 MB. */
export const DEFAULT_HISTORY: HistoryOptions = {
  maxAgeMs: 90 * 24 * 3600 * 1000,
  maxMessages: constants.MAX_HISTORY_MESSAGES,
  maxBytes: constants.MAX_HISTORY_BYTES,
};

export interface HistoryArchive {
  /** Chunk payloads (history.ts records), in order; seal each as a history_chunk frame. */
  readonly chunks: Uint8Array[];
  readonly messages: number;
  readonly bytes: number;
}

const READ = (c: string) => `read/${c}`;
const READ_DIR = 'read/';
const CURSOR_DIR = 'cur/';
const msgKey = (c: string, seq: number) => `msg/${c}/${seq.toString().padStart(16, '0')}`;

const STATUS_OF: Partial<Record<MessageStatus, HistoryStatus>> = {
  sent: 'sent',
  delivered: 'delivered',
  received: 'received',
  undecryptable: 'undecryptable',
  failed: 'failed',
};

export class OwnDevices {
  private keysCache: { secret: Uint8Array; keys: AccountKeys } | null = null;

  constructor(
    private readonly ctx: EngineContext,
    private readonly keys: Keystore,
    private readonly directory: Directory,
    /** Conversations the server says we are in (history also covers ones we left: see `cur/`). */
    private readonly serverConversations: () => Promise<string[]>,
  ) {}

  private async accountKeys(): Promise<AccountKeys> {
    const secret = (await this.keys.identity()).userIdentity.secretKey;
    if (!this.keysCache || !equal(this.keysCache.secret, secret))
      this.keysCache = { secret, keys: accountKeys(secret) };
    return this.keysCache.keys;
  }

  async selfConversationId(): Promise<string> {
    return selfConversationId(await this.accountKeys(), (await this.keys.identity()).userId);
  }

  // ---- device names ------------------------------------------------------------------------------------

  async sealDeviceName(deviceId: string, name: string): Promise<Uint8Array> {
    const own = await this.keys.identity();
    return sealDeviceName(this.ctx.rng, await this.accountKeys(), own.userId, deviceId, name);
  }

  /** Names of our devices (null: none set, or one that does not open — never shown as text). */
  async deviceNames(
    devices: readonly { deviceId: string; name: Uint8Array | null }[],
  ): Promise<Record<string, string | null>> {
    const own = await this.keys.identity();
    const k = await this.accountKeys();
    const out: Record<string, string | null> = {};
    for (const d of devices) {
      try {
        out[d.deviceId] = d.name ? openDeviceName(k, own.userId, d.deviceId, d.name) : null;
      } catch {
        out[d.deviceId] = null;
      }
    }
    return out;
  }

  // ---- linking: the sealed provisioning message ----------------------------------------------------------

  /** The contacts' trust state as this device holds it (at most MAX_LINK_CONTACTS). */
  async trustState(): Promise<ProvisioningContact[]> {
    const own = await this.keys.identity();
    const verified = ((await readJson<Record<string, string>>(this.ctx.store, 'ui/verified')) ?? {}) as Record<
      string,
      string
    >;
    const names = ((await readJson<Record<string, string>>(this.ctx.store, 'ui/names')) ?? {}) as Record<
      string,
      string
    >;
    const out: ProvisioningContact[] = [];
    for (const { value } of await listJson<{ userId: string; trustedIdentityKey: Uint8Array }>(
      this.ctx.store,
      'dir/user/',
    )) {
      if (value.userId === own.userId) continue;
      if (out.length >= constants.MAX_LINK_CONTACTS) break;
      const name = names[value.userId];
      out.push({
        userId: value.userId,
        identityKey: value.trustedIdentityKey,
        verified: verified[value.userId] === toB64u(value.trustedIdentityKey),
        username: typeof name === 'string' && name.length <= constants.MAX_LINK_USERNAME_LEN ? name : '',
      });
    }
    return out;
  }

  async sealProvisioning(p: {
    channelId: Uint8Array;
    ephemeralKey: TheirX25519Key;
    username: string;
    linkingToken: Uint8Array;
    deviceName: string;
    history: boolean;
  }): Promise<{ sealed: Uint8Array; channelKey: Uint8Array }> {
    const own = await this.keys.identity();
    return sealProvisioning(
      this.ctx.curves,
      this.ctx.rng,
      { channelId: p.channelId, ephemeralKey: p.ephemeralKey },
      {
        userId: own.userId,
        username: p.username,
        userIdentitySecret: own.userIdentity.secretKey,
        linkedBy: own.deviceId,
        linkingToken: p.linkingToken,
        deviceList: own.deviceList,
        deviceName: p.deviceName,
        history: p.history,
        contacts: await this.trustState(),
        createdAt: this.ctx.now(),
      },
    );
  }

  /** On the new device: the handed-over trust state becomes pins and the app's prefs. */
  async importTrust(contacts: readonly ProvisioningContact[]): Promise<void> {
    await this.directory.pin(contacts.map((c) => ({ userId: c.userId, identityKey: c.identityKey })));
    await this.ctx.store.transaction(async (tx) => {
      const verified = (await readJson<Record<string, string>>(tx, 'ui/verified')) ?? {};
      const names = (await readJson<Record<string, string>>(tx, 'ui/names')) ?? {};
      for (const c of contacts) {
        if (c.verified) verified[c.userId] = toB64u(c.identityKey);
        if (c.username) names[c.userId] = c.username;
      }
      writeJson(tx, 'ui/verified', verified);
      writeJson(tx, 'ui/names', names);
    });
  }

  // ---- history ----------------------------------------------------------------------------------------

  /** Every conversation with local history: the server's list and anything we hold a cursor for. */
  private async localConversations(): Promise<string[]> {
    const ids = new Set(await this.serverConversations().catch(() => [] as string[]));
    for (const e of await this.ctx.store.list(CURSOR_DIR)) ids.add(e.key.slice(CURSOR_DIR.length));
    ids.delete(await this.selfConversationId());
    return [...ids];
  }

  async exportHistory(opts: Partial<HistoryOptions> = {}): Promise<HistoryArchive> {
    const o = { ...DEFAULT_HISTORY, ...opts };
    const since = this.ctx.now() - o.maxAgeMs;
    const all: MessageView[] = [];
    for (const c of await this.localConversations()) {
      for (const { value } of await listJson<MessageView>(this.ctx.store, `msg/${c}/`)) {
        if (value.seq !== null && value.sentAt >= since && value.status !== 'sending') all.push(value);
      }
    }
    // Newest first until a cap is reached; then in conversation order for the receiver.
    all.sort((a, b) => b.sentAt - a.sentAt || (b.seq ?? 0) - (a.seq ?? 0));
    const picked: HistoryRecord[] = [];
    let bytes = 0;
    for (const m of all) {
      if (picked.length >= Math.min(o.maxMessages, constants.MAX_HISTORY_MESSAGES)) break;
      const rec = this.toRecord(m);
      const size = 64 + (rec.body?.length ?? 0) * 3;
      if (bytes + size > Math.min(o.maxBytes, constants.MAX_HISTORY_BYTES)) break;
      bytes += size;
      picked.push(rec);
    }
    picked.sort((a, b) =>
      a.conversationId < b.conversationId ? -1 : a.conversationId > b.conversationId ? 1 : a.seq - b.seq,
    );
    const convs = new Set(picked.map((r) => r.conversationId));
    const reads: HistoryRecord[] = [];
    for (const e of await listJson<number>(this.ctx.store, READ_DIR)) {
      const c = e.key.slice(READ_DIR.length);
      if (convs.has(c)) reads.push({ kind: 'read_position', conversationId: c, seq: e.value });
    }
    const chunks = packHistory([...picked, ...reads]);
    return { chunks, messages: picked.length, bytes: chunks.reduce((n, c) => n + c.length, 0) };
  }

  private toRecord(m: MessageView): HistoryRecord & { kind: 'message' } {
    return {
      kind: 'message',
      conversationId: m.conversationId,
      seq: m.seq!,
      clientId: m.clientId.slice(0, 64) || 'x',
      fromUser: m.from.userId,
      fromDevice: m.from.deviceId,
      status: STATUS_OF[m.status] ?? 'received',
      sentAt: Math.max(0, Math.floor(m.sentAt)),
      receivedAt: Math.max(0, Math.floor(m.receivedAt)),
      body: m.body,
      error: m.error ? m.error.slice(0, 64) : null,
    };
  }

  /**
   * Imports a complete archive (every chunk, in order) in ONE transaction: all of it or — on any malformed
   * chunk — nothing. A message already held at the same (conversation, seq) is kept as it is.
   */
  async importHistory(chunks: readonly Uint8Array[]): Promise<{ messages: number; conversations: string[] }> {
    const records = chunks.flatMap((c) => decodeHistoryRecords(c).records); // throws before any write
    if (records.filter((r) => r.kind === 'message').length > constants.MAX_HISTORY_MESSAGES)
      throw new Error('history: more messages than the protocol allows');
    const own = await this.keys.identity();
    const self = await this.selfConversationId();
    const now = this.ctx.now();
    return this.ctx.store.transaction(async (tx) => {
      let messages = 0;
      const convs = new Set<string>();
      const highest = new Map<string, number>();
      for (const r of records) {
        if (r.conversationId === self) continue;
        if (r.kind === 'read_position') {
          this.raiseReadInTx(tx, r.conversationId, r.seq, (await readJson<number>(tx, READ(r.conversationId))) ?? 0);
          continue;
        }
        const k = msgKey(r.conversationId, r.seq);
        if (await tx.get(k)) continue;
        const outgoing = r.fromUser === own.userId;
        const m: MessageView = {
          conversationId: r.conversationId,
          seq: r.seq,
          clientId: r.clientId,
          from: { userId: r.fromUser, deviceId: r.fromDevice },
          outgoing,
          body: r.body,
          status: r.status === 'failed' ? 'failed' : r.status,
          sentAt: r.sentAt,
          receivedAt: Math.min(r.receivedAt, now),
          ...(r.error ? { error: r.error } : {}),
        };
        writeJson(tx, k, m);
        messages++;
        convs.add(r.conversationId);
        highest.set(r.conversationId, Math.max(highest.get(r.conversationId) ?? 0, r.seq));
      }
      // Each conversation's `top` bounds its messages, imported ones too (messages.ts `page` reads down from it).
      for (const [c, seq] of highest) await raiseTopInTx(tx, c, seq);
      return { messages, conversations: [...convs] };
    });
  }

  // ---- read positions -----------------------------------------------------------------------------------

  async readPosition(conversationId: string): Promise<number> {
    return (await readJson<number>(this.ctx.store, READ(conversationId))) ?? 0;
  }

  private raiseReadInTx(tx: StoreTx, c: string, seq: number, cur: number): boolean {
    if (!Number.isSafeInteger(seq) || seq <= cur) return false;
    writeJson(tx, READ(c), seq);
    return true;
  }

  /** Raises the read position (never lowers it); true if it moved. */
  async raiseRead(conversationId: string, seq: number): Promise<boolean> {
    return this.ctx.store.transaction(async (tx) =>
      this.raiseReadInTx(tx, conversationId, seq, (await readJson<number>(tx, READ(conversationId))) ?? 0),
    );
  }

  /** Applies read positions synced from another of our devices in the caller's transaction. */
  async applyReadsInTx(
    tx: StoreTx,
    reads: readonly { c: string; seq: number }[],
  ): Promise<{ c: string; seq: number }[]> {
    const moved: { c: string; seq: number }[] = [];
    for (const r of reads.slice(0, constants.MAX_SYNC_READS)) {
      if (typeof r?.c !== 'string' || r.c.length === 0 || r.c.length > 64) continue;
      if (this.raiseReadInTx(tx, r.c, r.seq, (await readJson<number>(tx, READ(r.c))) ?? 0)) moved.push(r);
    }
    return moved;
  }

  // ---- removal ------------------------------------------------------------------------------------------

  /**
   * True only if `listBytes` is signed by our user identity key, is newer than the list we hold, is for our
   * user, and no longer contains this device.
   */
  async confirmRemoved(listBytes: Uint8Array): Promise<boolean> {
    const own = await this.keys.identity();
    try {
      const list = await verifyDeviceList(this.ctx.curves, decodeDeviceList(listBytes), own.userIdentity.publicKey);
      const ours = decodeDeviceList(own.deviceList);
      return (
        list.userId === own.userId &&
        list.version > ours.version &&
        !list.devices.some((d) => d.deviceId === own.deviceId)
      );
    } catch {
      return false;
    }
  }
}
