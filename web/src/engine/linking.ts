/**
 * Linking a device, both sides (docs/PROTOCOL.md §"Linking", issue 14), over the provisioning channel
 * (link-transport.ts) and the protocol core (link-code.ts, provisioning.ts, transfer.ts, history.ts).
 *
 * New device (`NewDeviceLink`): draws an ephemeral X25519 key and a channel id, opens the channel, shows
 * the link code; opens the provisioning message when it arrives; creates its own device keys on the
 * account (device list version + 1 signed with the handed-over identity secret); redeems the linking
 * token with a signature by its new key (and so gets its own session); pins the contacts' trust state;
 * tells the linking device it is linked; then receives the history — header, chunks in order — and
 * imports it only when every chunk arrived and opened (one transaction), or reports the transfer as
 * interrupted (a gap, a frame that does not open, silence) and can ask for it again.
 *
 * Linking device (`LinkingDeviceLink`): parses the code (refusing another server's), asks the server for
 * a single-use linking token for the channel (409 `device_limit` when the account is full), seals the
 * provisioning message, waits for "linked", then sends the history archive (or "no history") chunk by
 * chunk, pausing when the relay says the other side has not caught up, and restarts it when the new
 * device asks for a retry.
 *
 * Progress is reported on both sides (`LinkProgress`); every failure is a `LinkError` with a stable code.
 *
 * Does NOT: choose names or options (the UI does), keep the channel key beyond the link (memory only), or
 * persist transfer state: a reload ends the link (the device stays linked; history can be linked again
 * only by linking anew).
 * @module
 */
import {
  type Curve25519,
  channelIdString,
  Direction,
  decodeLinkCode,
  encodeLinkCode,
  fromB64u,
  generateX25519,
  is,
  linkingChallenge,
  type OpenedProvisioning,
  type OurX25519KeyPair,
  openProvisioning,
  openTransferFrame,
  type Rng,
  sealTransferFrame,
  type TransferFrame,
  type TransferKeys,
  toB64u,
  transferKeys,
} from './_protocol.js';
import type { EngineApi } from './engine.js';
import { isApiError } from './http-transport.js';
import type { ChannelMessage, LinkingDeviceLinkApi, NewDeviceLinkApi } from './link-transport.js';
import type { HistoryOptions } from './own-devices.js';

export type LinkErrorCode =
  /** The text is not a link code (or a version this app does not know). */
  | 'bad_link_code'
  /** The code is for another server than the one this app talks to. */
  | 'wrong_server'
  /** The provisioning message did not open or carried something refused (tampered, wrong key, wrong list). */
  | 'provisioning_failed'
  /** The channel expired or was closed before the link completed. */
  | 'link_expired'
  /** The other side cancelled (its reason is in the message). */
  | 'cancelled'
  /** The history did not arrive complete; nothing was imported. */
  | 'history_incomplete'
  /** The history arrived but could not be imported; nothing was imported. */
  | 'history_failed';

export class LinkError extends Error {
  override readonly name = 'LinkError';
  constructor(
    readonly code: LinkErrorCode | string,
    message: string = code,
  ) {
    super(message);
  }
}

type Status = Extract<TransferFrame, { type: 'status' }>;
type Answer = Status | Extract<TransferFrame, { type: 'cancel' }>;

export type LinkPhase = 'waiting' | 'linking' | 'linked' | 'history' | 'done' | 'interrupted' | 'failed';

export interface LinkProgress {
  readonly phase: LinkPhase;
  /** history: chunks received (new device) or acknowledged (linking device) so far, of `total`. */
  readonly done?: number;
  readonly total?: number;
  /** history: messages in the archive; done: messages imported. */
  readonly messages?: number;
  /** interrupted / failed: a stable code. */
  readonly code?: string;
  /** From the provisioning message (new device) — who we are being linked as. */
  readonly username?: string;
  readonly deviceName?: string;
}

export interface LinkTimings {
  /** Long-poll wait per request (the server caps it at 25 s). */
  readonly pollWaitMs: number;
  /** No frame for this long while history is expected: the transfer is reported interrupted. */
  readonly stallMs: number;
  /** Pause after the relay said 429 channel_full. */
  readonly backoffMs: number;
}

export const DEFAULT_LINK_TIMINGS: LinkTimings = { pollWaitMs: 20_000, stallMs: 45_000, backoffMs: 1_000 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function channelGone(e: unknown): boolean {
  return isApiError(e, 'channel_expired') || isApiError(e, 'channel_closed') || isApiError(e, 'channel_not_found');
}

// ---- the new device -------------------------------------------------------------------------------------

export interface NewDeviceLinkOptions {
  readonly api: NewDeviceLinkApi;
  readonly curves: Curve25519;
  readonly rng: Rng;
  readonly onProgress?: (p: LinkProgress) => void;
  readonly timings?: Partial<LinkTimings>;
}

export class NewDeviceLink {
  readonly code: string;
  readonly channelId: string;
  private readonly channelBytes: Uint8Array;
  private after = 0;
  private sendSeq = 0;
  private recvSeq = 0;
  private keys: TransferKeys | null = null;
  private opened: OpenedProvisioning | null = null;
  private attempt = 0;
  private closed = false;
  /** After a retry: frames of the abandoned attempt (and its gap) are skipped until the new header. */
  private resync = false;
  private readonly t: LinkTimings;
  private readonly queue: ChannelMessage[] = [];

  private constructor(
    private readonly o: NewDeviceLinkOptions,
    private readonly ephemeral: OurX25519KeyPair,
    channelBytes: Uint8Array,
    private readonly secret: string,
    readonly expiresAt: number,
  ) {
    this.channelBytes = channelBytes;
    this.channelId = channelIdString(channelBytes);
    this.code = encodeLinkCode({ origin: o.api.origin, channelId: channelBytes, ephemeralKey: ephemeral.publicKey });
    this.t = { ...DEFAULT_LINK_TIMINGS, ...o.timings };
  }

  /** Draws the ephemeral key and channel id, opens the channel: show `code` (QR and text). */
  static async start(o: NewDeviceLinkOptions): Promise<NewDeviceLink> {
    const ephemeral = await generateX25519(o.curves, o.rng);
    const channel = o.rng(16);
    const r = await o.api.openChannel(channelIdString(channel));
    const link = new NewDeviceLink(o, ephemeral, channel, r.secret, r.expiresAt);
    o.onProgress?.({ phase: 'waiting' });
    return link;
  }

  private progress(p: LinkProgress): void {
    this.o.onProgress?.({
      ...p,
      ...(this.opened ? { username: this.opened.username, deviceName: this.opened.deviceName } : {}),
    });
  }

  /** The next relayed message (long poll), or null after `waitMs` of silence. */
  private async next(waitMs: number): Promise<ChannelMessage | null> {
    if (this.queue.length === 0) {
      let r: Awaited<ReturnType<NewDeviceLinkApi['poll']>>;
      const t0 = Date.now();
      try {
        r = await this.o.api.poll(this.channelId, this.secret, this.after, Math.min(waitMs, this.t.pollWaitMs));
      } catch (e) {
        if (channelGone(e)) throw new LinkError('link_expired', 'the link code expired or was closed');
        throw e;
      }
      this.queue.push(...r.messages);
      // An empty answer that came back at once (a short wait): never spin against the relay.
      if (r.messages.length === 0 && Date.now() - t0 < 25) await sleep(25);
    }
    const m = this.queue.shift() ?? null;
    if (m) this.after = m.seq;
    return m;
  }

  /** Waits for the provisioning message and opens it (the UI then knows whose account this becomes). */
  async waitForProvisioning(): Promise<OpenedProvisioning> {
    for (;;) {
      if (this.closed) throw new LinkError('cancelled', 'cancelled');
      const m = await this.next(this.t.pollWaitMs);
      if (!m) {
        if (Date.now() >= this.expiresAt) throw new LinkError('link_expired', 'the link code expired');
        continue;
      }
      try {
        const r = await openProvisioning(this.o.curves, this.ephemeral, this.channelBytes, m.data);
        this.opened = r.content;
        this.keys = transferKeys(r.channelKey, this.channelBytes);
      } catch (e) {
        this.progress({ phase: 'failed', code: 'provisioning_failed' });
        throw new LinkError(
          'provisioning_failed',
          `the provisioning message was refused (${is(e) ? e.code : 'error'})`,
        );
      }
      this.progress({ phase: 'linking' });
      return this.opened;
    }
  }

  private async sendFrame(f: TransferFrame): Promise<void> {
    const sealed = sealTransferFrame(this.keys!, Direction.ToExisting, ++this.sendSeq, f);
    await this.o.api.send(this.channelId, this.secret, sealed);
  }

  /**
   * Becomes a device of the account: `engine` is this device's engine over the account's (empty) store;
   * `redeemApi` the link API bound to the HTTP client that engine uses (it is signed in afterwards).
   */
  async complete(engine: EngineApi, deviceId: string, redeemApi: NewDeviceLinkApi = this.o.api) {
    const p = this.opened;
    if (!p) throw new LinkError('provisioning_failed', 'no provisioning message yet');
    const own = await engine.bootstrap({
      userId: p.userId,
      deviceId,
      userIdentitySecret: p.userIdentitySecret,
      linkTo: p.deviceList,
    });
    const tokenText = toB64u(p.linkingToken);
    const signature = await engine.signLoginChallenge(linkingChallenge(p.linkingToken));
    const name = p.deviceName ? await engine.sealDeviceName(own.deviceId, p.deviceName) : undefined;
    try {
      await redeemApi.redeem({
        linkingToken: tokenText,
        channelId: this.channelId,
        channelSecret: this.secret,
        deviceList: own.deviceList,
        signature,
        ...(name ? { name } : {}),
      });
    } catch (e) {
      await this.sendFrame({ type: 'cancel', code: isApiError(e) ? e.code : 'link_failed' }).catch(() => undefined);
      this.progress({ phase: 'failed', code: isApiError(e) ? e.code : 'link_failed' });
      throw e;
    }
    await engine.importTrust([...p.contacts]);
    // Self-monitoring (key transparency) checks the log's entry for our username, as after any sign-in.
    await engine.setOwnUsername(p.username);
    await engine.publishPrekeys();
    await this.sendFrame({ type: 'status', status: 'linked', attempt: 0, value: 0, code: '' });
    this.progress({ phase: 'linked' });
    return { userId: own.userId, deviceId: own.deviceId, history: p.history };
  }

  /**
   * Receives the history into `engine` (after `complete`). Resolves with the number of messages imported
   * (0 when the linking device sends none). Throws LinkError `history_incomplete` when the transfer was
   * interrupted — nothing is imported then; `retryHistory()` asks for it again while the channel lives.
   */
  async receiveHistory(engine: EngineApi): Promise<number> {
    if (!this.keys || !this.opened) throw new LinkError('provisioning_failed', 'not linked');
    let header: Extract<TransferFrame, { type: 'history_header' }> | null = null;
    let chunks: Uint8Array[] = [];
    let lastFrameAt = Date.now();
    for (;;) {
      if (this.closed) throw new LinkError('cancelled', 'cancelled');
      let m: ChannelMessage | null;
      try {
        m = await this.next(Math.max(0, this.t.stallMs - (Date.now() - lastFrameAt)));
      } catch (e) {
        if (e instanceof LinkError && e.code === 'link_expired')
          return this.interrupted('link_expired', chunks, header);
        throw e;
      }
      if (!m) {
        if (Date.now() - lastFrameAt >= this.t.stallMs) return this.interrupted('history_stalled', chunks, header);
        continue;
      }
      lastFrameAt = Date.now();
      let f: TransferFrame;
      if (this.resync) {
        // Authentic frames with a later seq are accepted only as the start of the new attempt.
        const seq = m.data.length >= 6 ? new DataView(m.data.buffer, m.data.byteOffset + 2, 4).getUint32(0) : 0;
        let g: TransferFrame | null = null;
        try {
          g = seq > this.recvSeq ? openTransferFrame(this.keys, Direction.ToNew, seq, m.data) : null;
        } catch {
          g = null;
        }
        if (!g || (g.type === 'history_chunk' && g.attempt < this.attempt)) continue;
        if (g.type === 'history_header' && g.attempt < this.attempt) continue;
        this.recvSeq = seq;
        this.resync = false;
        f = g;
      } else {
        try {
          f = openTransferFrame(this.keys, Direction.ToNew, this.recvSeq + 1, m.data);
          this.recvSeq++;
        } catch {
          // A frame the relay dropped, repeated, reordered or altered: stop here, import nothing.
          return this.interrupted('history_tampered', chunks, header);
        }
      }
      if (f.type === 'cancel') throw new LinkError('cancelled', `the other device cancelled (${f.code})`);
      if (f.type === 'history_none') {
        await this.finish();
        return 0;
      }
      if (f.type === 'history_header') {
        if (f.attempt < this.attempt) continue; // a previous attempt's leftovers
        this.attempt = f.attempt;
        header = f;
        chunks = [];
        this.progress({ phase: 'history', done: 0, total: f.chunks, messages: f.messages });
        if (f.chunks === 0) return this.importAll(engine, header, chunks);
        continue;
      }
      if (f.type !== 'history_chunk' || !header || f.attempt !== this.attempt) continue;
      if (f.index !== chunks.length) return this.interrupted('history_incomplete', chunks, header);
      chunks.push(f.records);
      this.progress({ phase: 'history', done: chunks.length, total: header.chunks, messages: header.messages });
      if (chunks.length % 8 === 0 && chunks.length < header.chunks)
        await this.sendFrame({
          type: 'status',
          status: 'progress',
          attempt: this.attempt,
          value: chunks.length,
          code: '',
        }).catch(() => undefined);
      if (chunks.length === header.chunks) return this.importAll(engine, header, chunks);
    }
  }

  private async importAll(
    engine: EngineApi,
    header: Extract<TransferFrame, { type: 'history_header' }>,
    chunks: Uint8Array[],
  ): Promise<number> {
    let imported: number;
    try {
      imported = (await engine.importLinkHistory(chunks)).messages;
    } catch {
      await this.sendFrame({
        type: 'status',
        status: 'failed',
        attempt: this.attempt,
        value: 0,
        code: 'history_failed',
      }).catch(() => undefined);
      this.progress({ phase: 'failed', code: 'history_failed', total: header.chunks });
      throw new LinkError('history_failed', 'the history could not be imported; nothing was');
    }
    await this.sendFrame({
      type: 'status',
      status: 'imported',
      attempt: this.attempt,
      value: imported,
      code: '',
    }).catch(() => undefined);
    await this.finish(imported);
    return imported;
  }

  private async interrupted(code: string, chunks: Uint8Array[], header: { chunks: number } | null): Promise<never> {
    this.progress({ phase: 'interrupted', code, done: chunks.length, ...(header ? { total: header.chunks } : {}) });
    throw new LinkError('history_incomplete', `the history transfer was interrupted (${code}); nothing was imported`);
  }

  /** Asks the linking device to send the history again (after `interrupted`); call receiveHistory again. */
  async retryHistory(): Promise<void> {
    this.attempt++;
    this.resync = true;
    await this.sendFrame({ type: 'status', status: 'retry', attempt: this.attempt, value: 0, code: '' });
  }

  private async finish(messages = 0): Promise<void> {
    this.progress({ phase: 'done', messages });
    await this.close();
  }

  /** Ends the link from this side (the channel is deleted). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.o.api.close(this.channelId, this.secret).catch(() => undefined);
  }

  /** Gives up (the other side sees `cancel`). */
  async cancel(code = 'cancelled'): Promise<void> {
    if (this.keys && !this.closed) await this.sendFrame({ type: 'cancel', code }).catch(() => undefined);
    await this.close();
  }
}

// ---- the linking (signed-in) device ----------------------------------------------------------------------

export interface LinkingDeviceLinkOptions {
  readonly api: LinkingDeviceLinkApi;
  readonly engine: EngineApi;
  /** Our username (carried to the new device, which names its store after it). */
  readonly username: string;
  readonly onProgress?: (p: LinkProgress) => void;
  readonly timings?: Partial<LinkTimings>;
}

export interface LinkRequest {
  readonly deviceName: string;
  /** Send recent history (default on in the UI). */
  readonly history: boolean;
  readonly historyOptions?: Partial<HistoryOptions>;
}

export interface LinkOutcome {
  /** Messages the new device imported (0 without history). */
  readonly messages: number;
}

export class LinkingDeviceLink {
  private channelId = '';
  private keys: TransferKeys | null = null;
  private sendSeq = 0;
  private recvSeq = 0;
  private after = 0;
  private cancelled = false;
  private readonly t: LinkTimings;

  constructor(private readonly o: LinkingDeviceLinkOptions) {
    this.t = { ...DEFAULT_LINK_TIMINGS, ...o.timings };
  }

  /** Validates a scanned or pasted code without side effects (`bad_link_code`, `wrong_server`). */
  static parse(text: string, origin: string) {
    let code: ReturnType<typeof decodeLinkCode>;
    try {
      code = decodeLinkCode(text);
    } catch {
      throw new LinkError('bad_link_code', 'this is not a link code from e2e-chat');
    }
    if (code.origin !== origin) throw new LinkError('wrong_server', `this code is for ${code.origin}, not ${origin}`);
    return code;
  }

  /** Links the device whose code this is; resolves when it is linked and has its history (or none). */
  async link(text: string, req: LinkRequest): Promise<LinkOutcome> {
    const code = LinkingDeviceLink.parse(text, this.o.api.origin);
    this.channelId = channelIdString(code.channelId);
    this.o.onProgress?.({ phase: 'linking', deviceName: req.deviceName });
    const token = await this.o.api.linkingToken(this.channelId);
    const sealed = await this.o.engine.sealProvisioning({
      channelId: code.channelId,
      ephemeralKey: code.ephemeralKey,
      username: this.o.username,
      linkingToken: fromB64u(token.linkingToken),
      deviceName: req.deviceName,
      history: req.history,
    });
    this.keys = transferKeys(sealed.channelKey, code.channelId);
    await this.sendRaw(sealed.sealed);

    // The new device registers itself, then says so (or cancels with the server's refusal).
    const linked = await this.waitStatus(['linked'], Number.POSITIVE_INFINITY);
    if (linked.type === 'cancel') throw new LinkError('cancelled', `the new device stopped (${linked.code})`);
    this.o.onProgress?.({ phase: 'linked', deviceName: req.deviceName });

    if (!req.history) {
      await this.sendFrame({ type: 'history_none' });
      this.o.onProgress?.({ phase: 'done', messages: 0 });
      await this.close();
      return { messages: 0 };
    }
    const archive = await this.o.engine.exportLinkHistory(req.historyOptions);
    let attempt = 1;
    let answer = await this.sendArchive(attempt, archive);
    for (;;) {
      if (answer.type === 'cancel') throw new LinkError('cancelled', `the new device stopped (${answer.code})`);
      if (answer.status === 'imported') {
        this.o.onProgress?.({ phase: 'done', messages: answer.value });
        await this.close();
        return { messages: answer.value };
      }
      if (answer.status === 'failed') {
        this.o.onProgress?.({ phase: 'failed', code: answer.code || 'history_failed' });
        throw new LinkError(answer.code || 'history_failed', 'the new device could not import the history');
      }
      if (answer.status === 'retry') {
        attempt = Math.max(attempt + 1, answer.attempt);
        answer = await this.sendArchive(attempt, archive);
      } else answer = await this.waitStatus(['imported', 'failed', 'retry'], this.t.stallMs);
    }
  }

  private async sendArchive(
    attempt: number,
    archive: { chunks: Uint8Array[]; messages: number; bytes: number },
  ): Promise<Answer> {
    const total = archive.chunks.length;
    this.o.onProgress?.({ phase: 'history', done: 0, total, messages: archive.messages });
    await this.sendFrame({
      type: 'history_header',
      attempt,
      chunks: total,
      messages: archive.messages,
      bytes: archive.bytes,
    });
    for (let i = 0; i < total; i++) {
      await this.sendFrame({ type: 'history_chunk', attempt, index: i, records: archive.chunks[i]! });
      this.o.onProgress?.({ phase: 'history', done: i + 1, total, messages: archive.messages });
      // Every few chunks: has the new device asked for a retry (a gap) or given up?
      if ((i + 1) % 8 === 0) {
        const early = await this.pollStatus(0);
        if (early) return early;
      }
    }
    return this.waitStatus(['imported', 'failed', 'retry'], this.t.stallMs);
  }

  /** One poll for a status frame; progress frames are swallowed (they only show the other side is alive). */
  private async pollStatus(waitMs: number): Promise<Answer | null> {
    let r: Awaited<ReturnType<LinkingDeviceLinkApi['poll']>>;
    try {
      r = await this.o.api.poll(this.channelId, this.after, waitMs);
    } catch (e) {
      if (channelGone(e)) throw new LinkError('link_expired', 'the link channel expired or was closed');
      throw e;
    }
    for (const m of r.messages) {
      this.after = m.seq;
      let f: TransferFrame;
      try {
        f = openTransferFrame(this.keys!, Direction.ToExisting, this.recvSeq + 1, m.data);
        this.recvSeq++;
      } catch {
        throw new LinkError('cancelled', 'a message from the new device did not open');
      }
      if (f.type === 'cancel' || (f.type === 'status' && f.status !== 'progress')) return f;
    }
    return null;
  }

  private async waitStatus(wanted: readonly Status['status'][], stallMs: number): Promise<Answer> {
    let quietSince = Date.now();
    for (;;) {
      if (this.cancelled) throw new LinkError('cancelled', 'cancelled');
      const t0 = Date.now();
      const f = await this.pollStatus(this.t.pollWaitMs);
      if (!f && Date.now() - t0 < 25) await sleep(25);
      if (f && (f.type === 'cancel' || wanted.includes(f.status))) return f;
      if (f) quietSince = Date.now();
      if (Date.now() - quietSince >= stallMs) {
        this.o.onProgress?.({ phase: 'interrupted', code: 'no_answer' });
        quietSince = Date.now(); // keep waiting: the channel's expiry ends it
      }
    }
  }

  private async sendRaw(data: Uint8Array): Promise<void> {
    for (;;) {
      try {
        await this.o.api.send(this.channelId, data);
        return;
      } catch (e) {
        if (isApiError(e, 'channel_full')) {
          await sleep(this.t.backoffMs);
          continue;
        }
        if (channelGone(e)) throw new LinkError('link_expired', 'the link channel expired or was closed');
        throw e;
      }
    }
  }

  private sendFrame(f: TransferFrame): Promise<void> {
    return this.sendRaw(sealTransferFrame(this.keys!, Direction.ToNew, ++this.sendSeq, f));
  }

  async close(): Promise<void> {
    if (this.channelId) await this.o.api.close(this.channelId).catch(() => undefined);
  }

  async cancel(code = 'cancelled'): Promise<void> {
    this.cancelled = true;
    if (this.keys) await this.sendFrame({ type: 'cancel', code }).catch(() => undefined);
    await this.close();
  }
}
