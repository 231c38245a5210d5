/**
 * `createEngine` ties the client together: keys (keystore), contacts (directory), pairwise sessions,
 * conversations and sender keys (groups), the outbox, the inbox and the message store, over an injected
 * Store, ServerApi, realtime SocketFactory, curves, rng, clock and lock manager. It runs unchanged in Node
 * (bots, tests) and in the browser, preferably inside a Web Worker (worker-host.ts): every method takes
 * and returns plain data, and UI events are plain objects.
 *
 * Sending text: pairwise to every verified device of every verified member (our own other devices
 * included) for direct conversations, or with our sender key for groups (distributed first, pairwise, to
 * the verified devices that lack it). Sending is refused while any member's identity key change is
 * unaccepted (PITFALLS 15).
 *
 * Everyday messaging (issue 17, docs/PROTOCOL.md §"Content types"): replies carry a quote of the message
 * they answer; reactions, edits and deletes for everyone are payloads of their own that name their target
 * by id, checked here before they are queued (a friendly refusal) and applied — on every device, ours
 * included — only once the server has sequenced them (actions.ts), so all devices converge; until then
 * our own shows as `pending` on the target. The disappearing-message timer is a signed membership entry
 * (`setTimer`); expiry.ts deletes what has expired. Typing signals (typing.ts) are ephemeral frames.
 * `search` looks through this device's decrypted store only.
 *
 * Does NOT: authenticate (the ServerApi is already signed in; `signLoginChallenge` helps the auth flow),
 * render, or choose a storage backend.
 * @module
 */
import {
  type Content,
  type Curve25519,
  canSetTimer,
  constants,
  decodeContent,
  decodeDeviceCertificate,
  encodeContent,
  encodeDeviceCertificate,
  isReaction,
  isTimerSeconds,
  type ProvisioningContact,
  type Quote,
  quoteExcerpt,
  type Rng,
  type Role,
  SETTING_KIND,
  signLoginChallenge,
  theirX25519,
  toB64u,
} from './_protocol.js';
import { applyActionInTx, isEditable, type MessageAction } from './actions.js';
import { type AttachmentDraft, type AttachmentPointer, MAX_CAPTION_LEN, Transfers, viewOf } from './attachments.js';
import { backoffDelay, unitInterval } from './backoff.js';
import {
  type EngineContext,
  EngineError,
  type EngineEvent,
  errorLabel,
  type MessageView,
  type PendingAction,
} from './context.js';
import type { ContactView } from './directory.js';
import { Directory } from './directory.js';
import { Expiry } from './expiry.js';
import { Groups } from './groups.js';
import { buildHistory, type HistoryExport, historyFile } from './history.js';
import { Inbox } from './inbox.js';
import { deviceLinkedLine, type InfoLine, infoKey } from './info.js';
import { Keystore, type KeystoreConfig } from './keystore.js';
import type { EngineLocks } from './locks.js';
import { encodePayload, MAX_TEXT_BYTES, Messages } from './messages.js';
import { isTransient, Outbox, type OutboxEntry, type OutboxRetry } from './outbox.js';
import { DEFAULT_HISTORY, type HistoryArchive, type HistoryOptions, OwnDevices } from './own-devices.js';
import { People, type PeopleView, type ProfileView, type RequestState } from './people.js';
import { Sessions } from './sessions.js';
import { listJson, mutex, putJson, readJson, type Store, type StoreTx, writeJson } from './storage.js';
import { type KtAlert, type KtOptions, Transparency } from './transparency.js';
import {
  type ConnectionStatus,
  type ConversationKind,
  checkMailboxPage,
  createRealtime,
  type Envelope,
  type MailboxCursor,
  type PrekeyCounts,
  type RealtimeChannel,
  type ServerApi,
  type SocketFactory,
} from './transport.js';
import { Typing } from './typing.js';

export interface EngineOptions {
  readonly store: Store;
  readonly api: ServerApi;
  /** Opens conversation sockets (browser: tickets + WebSocket; tests: the fake server). */
  readonly realtime: SocketFactory;
  readonly curves: Curve25519;
  readonly rng: Rng;
  readonly now?: () => number;
  readonly locks: EngineLocks;
  readonly keystore?: Partial<KeystoreConfig>;
  readonly backoff?: { readonly baseMs: number; readonly maxMs: number };
  /** Largest file this client sends (plaintext bytes; default DEFAULT_MAX_ATTACHMENT_SIZE, 100 MiB). */
  readonly maxAttachmentBytes?: number;
  /**
   * Message requests (people.ts): a conversation started by someone we never accepted waits for our
   * accept before any receipt or our profile key goes back. The app turns this on; a bot accepts everyone
   * (default off). Blocks apply either way.
   */
  readonly messageRequests?: boolean;
  /**
   * How often the mailbox is polled while a conversation is left unconnected because it is a message
   * request (or hidden, or blocked): such a conversation gets no socket and spends no ticket until it is
   * accepted; its envelopes come from `GET /api/mailbox` (ms, default 15 s).
   */
  readonly requestPollMs?: number;
  /**
   * Whether signals that reveal we are present (typing) may be sent into a conversation — e.g. not before a
   * message request is accepted. Default: always.
   */
  readonly signalsAllowed?: (conversationId: string) => Promise<boolean>;
  /** Key transparency: the log's public key built into the app, and timing (transparency.ts). */
  readonly kt: KtOptions;
  /** A sent frame with no answer after this long is sent again (ms; default SEND_ANSWER_TIMEOUT_MS). */
  readonly sendAnswerTimeoutMs?: number;
  /**
   * Retries of an outbox entry whose preparation failed for a transient reason (defaults: OUTBOX_RETRY_*,
   * OUTBOX_TRANSIENT_LIFESPAN_MS in constants.ts; tests shorten them).
   */
  readonly outboxRetry?: Partial<OutboxRetry>;
}

export interface OwnIdentityView {
  readonly userId: string;
  readonly deviceId: string;
  readonly userIdentityKey: Uint8Array;
  readonly deviceCertificate: Uint8Array;
  readonly deviceList: Uint8Array;
}

/** A conversation as the verified membership log says (title, members and their roles, our role). */
export interface ConversationView {
  readonly id: string;
  readonly kind: ConversationKind;
  readonly title: string;
  readonly members: readonly { readonly userId: string; readonly role: Role }[];
  /** Our role; null if we are no longer a member. */
  readonly myRole: Role | null;
  /** Accepted, a message request, a deleted (hidden) request, or blocked (people.ts). */
  readonly requestState: RequestState;
  /**
   * The server's membership log skipped an entry: who is in the conversation cannot be verified past what this
   * device holds. Retried with back-off; our messages wait as `sending` until a whole log is verified
   * (event `membership_gap`).
   */
  readonly membershipGap: boolean;
  /**
   * The server no longer lists us as a member (removed, or we left on another device): the history this
   * device holds stays readable; nothing can be sent. `myRole` is then null.
   */
  readonly removed: boolean;
  /** Disappearing-message timer in seconds (0: off), from the verified log's last `set_timer` entry. */
  readonly timer: number;
}

/** A membership change other than add/remove (those have their own methods). */
export type MembershipChange =
  | { readonly action: 'promote' | 'demote' | 'transfer_ownership'; readonly target: string }
  | { readonly action: 'leave' }
  | { readonly action: 'rename'; readonly title: string }
  | { readonly action: 'set_timer'; readonly timer: number };

export interface SafetyNumberView {
  readonly digits: string;
  readonly display: string;
  readonly scannable: Uint8Array;
}

/** The engine's API: plain data in and out, so it can sit behind a MessagePort. */
export interface EngineApi {
  bootstrap(p: {
    userId: string;
    deviceId: string;
    userIdentitySecret?: Uint8Array;
    /** Version of the first signed list (identity reset: the account's current version + 1). Default 1. */
    listVersion?: number;
    /** Linking: the account's current signed list; ours is its version + 1 with this device added. */
    linkTo?: Uint8Array;
  }): Promise<OwnIdentityView>;
  identity(): Promise<OwnIdentityView | null>;
  signLoginChallenge(challenge: Uint8Array): Promise<Uint8Array>;
  /** Signs our device list with another device's certificate added (linking; publish the result). */
  addDeviceToList(certificate: Uint8Array): Promise<Uint8Array>;
  /** Signs our device list without `deviceId` (revocation; publish the result). */
  removeDeviceFromList(deviceId: string): Promise<Uint8Array>;
  /** Signs our device list without THIS device, without adopting it (it leaves the account; then erased). */
  listWithoutThisDevice(): Promise<Uint8Array>;
  /** Adopts our user's list as published (verified under our user identity key, must contain this device). */
  adoptOwnDeviceList(list: Uint8Array): Promise<OwnIdentityView>;
  /** Rotates the signed prekey when due and tops up one-time prekeys below the watermark. */
  publishPrekeys(): Promise<PrekeyCounts>;
  createConversation(p: { kind: ConversationKind; members: string[]; title?: string }): Promise<string>;
  addMember(conversationId: string, userId: string): Promise<void>;
  removeMember(conversationId: string, userId: string): Promise<void>;
  members(conversationId: string): Promise<string[]>;
  /**
   * Every conversation we are in, from the verified logs — plus those this device holds a log of that the
   * server no longer lists us in (`removed`, read-only).
   */
  conversations(): Promise<ConversationView[]>;
  /** The conversation's info lines (engine/info.ts): verified membership changes, placed among messages. */
  infoLines(conversationId: string): Promise<InfoLine[]>;
  conversation(conversationId: string): Promise<ConversationView>;
  changeMembership(conversationId: string, change: MembershipChange): Promise<void>;
  /** Account deletion: the signed entries that leave every conversation others are still in (Groups.departure). */
  departures(): Promise<{ conversationId: string; entries: Uint8Array[] }[]>;
  /**
   * The local history as a file (history.ts): every conversation and message this device holds, read from
   * the store alone — plain JSON, or sealed under `passphrase` (PROTOCOL.md §"History export"). Export-only.
   */
  exportHistory(opts?: {
    passphrase?: string;
    kdf?: { m: number; t: number; p: number };
    onProgress?: (fraction: number) => void;
  }): Promise<HistoryExport>;
  /** Small UI preferences and known usernames, kept in the (sealed) store under `ui/`. */
  getPref(key: string): Promise<unknown>;
  setPref(key: string, value: unknown): Promise<void>;
  /** Opens the sockets of every conversation we are in (or of `conversationIds`). */
  connect(conversationIds?: string[]): Promise<void>;
  disconnect(): Promise<void>;
  connectionStatus(conversationId: string): Promise<ConnectionStatus>;
  /**
   * Refuses a body over MAX_TEXT_BYTES (UTF-8) with `too_long` before anything is stored. `replyTo`: the id
   * of the message this one answers (quoted; `unknown_message` / `deleted` if it cannot be).
   */
  sendText(conversationId: string, body: string, opts?: { replyTo?: string }): Promise<MessageView>;
  // ---- issue 17: actions on messages, timer, typing, search ----
  /** Our reaction to a message ('' removes it). */
  react(conversationId: string, messageId: string, emoji: string): Promise<void>;
  /** Edits our own text message (within EDIT_WINDOW_MS). */
  editMessage(conversationId: string, messageId: string, body: string): Promise<void>;
  /** Deletes a message for everyone: our own, or anyone's as a group's owner or admin. */
  deleteForEveryone(conversationId: string, messageId: string): Promise<void>;
  /** Sets the disappearing-message timer (seconds, 0 = off) with a signed membership entry. */
  setTimer(conversationId: string, seconds: number): Promise<void>;
  /** Tells the others we are typing (true) or stopped (false); false if nothing was sent. */
  typing(conversationId: string, on: boolean): Promise<boolean>;
  /** Searches this device's decrypted messages (every conversation); newest first. */
  search(query: string, opts?: { limit?: number; conversationId?: string }): Promise<MessageView[]>;
  /** The seq of a message by its id in this device's store (null if it does not have it). */
  locate(conversationId: string, messageId: string): Promise<number | null>;
  /** Deletes every message whose disappearing time has passed (also run by `connect`). */
  sweepExpired(): Promise<number>;
  /**
   * Sends a failed message's text again (as a new message); the failed one is removed. Refused
   * (`may_have_been_sent`) for a message whose frame went out unanswered past the lifespan: it may be stored.
   */
  retrySend(conversationId: string, clientId: string): Promise<MessageView>;
  /** Deletes a failed message from this device (it was never accepted by the server). */
  discardFailed(conversationId: string, clientId: string): Promise<void>;
  /**
   * Encrypts and uploads `draft` (progress as `transfer` events under `transferId`), then — only once the
   * upload completed — sends it as a message with an optional caption. After a failure the same call with
   * the same `transferId` retries the upload without reading the file again (or, uploaded already, sends
   * the same blob); `cancelTransfer` gives up. Once the message is stored it is the file's only card: a send
   * that fails after that resolves with the message `failed` (its Retry is `retrySend`), and the same call
   * again returns that message — one file is never uploaded or sent twice.
   */
  sendAttachment(
    conversationId: string,
    draft: AttachmentDraft,
    opts: { transferId: string; caption?: string },
  ): Promise<MessageView>;
  /** Downloads and decrypts an attachment message's file: the whole file, or an error and nothing. */
  openAttachment(conversationId: string, clientId: string, transferId: string): Promise<Blob>;
  /** Cancels an upload or download (and drops a failed upload kept for a retry). */
  cancelTransfer(transferId: string): Promise<void>;
  messages(conversationId: string, opts?: { beforeSeq?: number; limit?: number }): Promise<MessageView[]>;
  /** Offline catch-up: fetch, process and acknowledge the whole mailbox. Returns envelopes processed. */
  syncMailbox(): Promise<number>;
  flushOutbox(): Promise<void>;
  contact(userId: string): Promise<ContactView>;
  refreshContact(userId: string): Promise<ContactView>;
  /**
   * The safety number under the trusted identity key, or (`pending`) under the new key of an identity
   * change that awaits acceptance (null if none): what a person compares before accepting it.
   */
  safetyNumber(userId: string, which?: 'trusted' | 'pending'): Promise<SafetyNumberView | null>;
  acceptIdentityChange(userId: string): Promise<ContactView>;
  // ---- people (people.ts): profiles, message requests, block and mute ----
  /** Pulls our private settings (blocks, mutes, accepted requests) written by another device of ours. */
  syncPeople(): Promise<PeopleView>;
  people(): Promise<PeopleView>;
  /** Seals and stores our display name and avatar (the avatar already resized and re-encoded). */
  setProfile(p: { name: string; avatar: ProfileView['avatar'] }): Promise<ProfileView>;
  /** A person's profile as this device holds it (`refresh`: fetch and open it again first). */
  profile(userId: string, opts?: { refresh?: boolean }): Promise<ProfileView | null>;
  profiles(): Promise<ProfileView[]>;
  /** Who added us to a conversation (for a request: who is asking). */
  requester(conversationId: string): Promise<string | null>;
  /** Accepts a message request: held receipts go out, our profile key goes along with our next message. */
  acceptRequest(conversationId: string): Promise<void>;
  /** Deletes a request: hidden until a later message arrives; no receipt is ever sent for what it held. */
  deleteRequest(conversationId: string): Promise<void>;
  /** Blocks a person (their messages are dropped on all our devices; they are not told) or a conversation. */
  block(target: PeopleTarget): Promise<void>;
  unblock(target: PeopleTarget): Promise<void>;
  /** Mutes until `until` (ms; 0 or omitted: until unmuted). */
  mute(target: PeopleTarget, until?: number): Promise<void>;
  unmute(target: PeopleTarget): Promise<void>;
  // ---- key transparency (transparency.ts) ----
  /** Username → user id and identity key, only if the key-transparency log proves them (null: no such user). */
  lookupUser(username: string): Promise<{ userId: string; username: string; identityKey: Uint8Array } | null>;
  /** Our username, for self-monitoring (the log's entry for it must carry our key). */
  setOwnUsername(username: string): Promise<void>;
  /** Self-monitoring now: the log's newest head and our own entries. Returns the alerts it raised. */
  ktCheck(): Promise<KtAlert[]>;
  /** Security warnings from key transparency, newest first. */
  ktAlerts(): Promise<KtAlert[]>;
  dismissKtAlert(id: string): Promise<void>;

  // ---- own devices and linking (issue 14; own-devices.ts, linking.ts) ----
  /** Our device's name, encrypted for the server to store (only our devices can read it). */
  sealDeviceName(deviceId: string, name: string): Promise<Uint8Array>;
  /** Names of our devices from the server's ciphertexts (null: none, or unreadable). */
  deviceNames(devices: { deviceId: string; name: Uint8Array | null }[]): Promise<Record<string, string | null>>;
  /** Linking device: the provisioning message for a new device (carries our identity secret, sealed). */
  sealProvisioning(p: {
    channelId: Uint8Array;
    ephemeralKey: Uint8Array;
    username: string;
    linkingToken: Uint8Array;
    deviceName: string;
    history: boolean;
  }): Promise<{ sealed: Uint8Array; channelKey: Uint8Array }>;
  /** New device: contacts' trust state from the provisioning message (pins, verified marks, names). */
  importTrust(contacts: ProvisioningContact[]): Promise<void>;
  /** Linking device: the history archive to send (defaults: 90 days, 10,000 messages, 50 MB). */
  exportLinkHistory(opts?: Partial<HistoryOptions>): Promise<HistoryArchive>;
  /** New device: imports a complete archive in one transaction (all or nothing). */
  importLinkHistory(chunks: Uint8Array[]): Promise<{ messages: number; conversations: string[] }>;
  /** True only if `list` (signed by our identity key, newer than ours) no longer contains this device. */
  confirmRemoved(list: Uint8Array): Promise<boolean>;
  /** Marks a conversation read up to `seq`; our other devices follow (through our own sync conversation). */
  markRead(conversationId: string, seq: number): Promise<void>;
  readPosition(conversationId: string): Promise<number>;
}

export type PeopleTarget = { readonly userId: string } | { readonly conversationId: string };

export interface Engine extends EngineApi {
  /** Subscribe to UI events; returns an unsubscribe function (not across the worker boundary). */
  on(listener: (e: EngineEvent) => void): () => void;
  /** Resolves when no frame, send or receive the engine started is still being processed. */
  idle(): Promise<void>;
  close(): void;
}

export function createEngine(opts: EngineOptions): Engine {
  const listeners = new Set<(e: EngineEvent) => void>();
  const ctx: EngineContext = {
    store: opts.store,
    api: opts.api,
    curves: opts.curves,
    rng: opts.rng,
    now: opts.now ?? Date.now,
    locks: opts.locks,
    emit: (e) => {
      if ((e.type === 'message_added' || e.type === 'message_updated') && e.message.expiresAt !== undefined)
        expiry.poke(e.message.expiresAt);
      for (const l of listeners) l(e);
      if (e.type === 'devices_changed' && e.added?.length) onDevicesAdded(e.userId, e.added);
      if (e.type === 'membership_changed') onMembersChanged(e.conversationId, e.members);
    },
  };
  /** Set below: a group's members changed → group messages only a removed member lacked are delivered (R8). */
  let onMembersChanged: (conversationId: string, members: readonly string[]) => void = () => undefined;
  /** Set below: a contact linked a device → a quiet info line in every conversation with them. */
  let onDevicesAdded: (userId: string, added: readonly string[]) => void = () => undefined;
  const newId = () => toB64u(ctx.rng(16));
  const keys = new Keystore(ctx, opts.keystore);
  const kt = new Transparency(ctx, opts.kt);
  const directory = new Directory(ctx, keys, kt);
  const sessions = new Sessions(ctx, keys, directory);
  const messages = new Messages(ctx.store, ctx.now);
  const expiry = new Expiry(ctx, messages);
  const groups = new Groups(
    ctx,
    keys,
    directory,
    (c) => messages.newest(c),
    (c, retryAt) => onMembershipGap(c, retryAt),
  );
  /**
   * The mailbox catch-up the first `connect` starts (null when none runs): that connect opens its sockets
   * after it, and any socket opened meanwhile sends its `resume` only after it, from the cursor it left — the
   * replay then carries only what arrived since, and the backlog goes through the mailbox's large pages
   * instead of one socket at a time.
   */
  let catchUp: Promise<unknown> | null = null;
  let caughtUp = false;
  /** Bumped by `disconnect` / `close`: sockets a `connect` left to open after its catch-up are not opened. */
  let connections = 0;
  const realtime: RealtimeChannel = createRealtime({
    connect: opts.realtime,
    lastSeq: async (c) => {
      if (catchUp) await catchUp;
      return inbox.resumePoint(c);
    },
    now: ctx.now,
    random: () => unitInterval(ctx.rng), // the reconnect jitter: the injected randomness, never Math.random
    ...(opts.backoff ? { backoff: opts.backoff } : {}),
  });
  const outbox = new Outbox(
    ctx,
    sessions,
    groups,
    directory,
    messages,
    (c, f) => realtime.send(c, f),
    {
      expiresAt: async (c) => {
        const timer = await groups.timer(c);
        return timer > 0 ? (ts) => ts + timer * 1000 : undefined;
      },
      accepted: (e, seq, ts) => ownActionSequenced(e, seq, ts),
      failed: async (e) => {
        await ownActionFailed(e);
        // Our profile key will never reach this conversation with this entry: the next message shares it again.
        const r = decodeContent(e.payload);
        if (r.kind === 'ok' && r.content.t === 'pk') await people.unmarkShared(e.conversationId);
        // Nor our sender key (marked distributed when queued): the next group message distributes it again.
        if (e.distributes) await groups.forgetDistributed(e.conversationId);
      },
      rotate: async (c, order) => {
        await distributeSenderKey(c, order);
      },
      prepare: (e) => prepareDeferred(e),
    },
    opts.sendAnswerTimeoutMs,
    opts.outboxRetry,
  );
  const people = new People(ctx, keys, (c, u) => groups.addedBy(c, u), opts.messageRequests ?? false);
  // Typing reveals presence: never into a conversation that is still a request (or blocked), nor to the
  // members of a log with a gap (one of them may have been removed since).
  const typingAllowed = async (c: string) =>
    !(await groups.inGap(c)) &&
    (opts.signalsAllowed ? await opts.signalsAllowed(c) : true) &&
    (await people.state(c, await messages.cursor(c))) === 'accepted';
  const typing = new Typing(ctx, keys, sessions, groups, directory, (c, f) => realtime.send(c, f), typingAllowed);
  const own = new OwnDevices(ctx, keys, directory, async () => (await ctx.api.listConversations()).map((c) => c.id));
  const inbox = new Inbox(
    ctx,
    keys,
    sessions,
    groups,
    directory,
    messages,
    outbox,
    newId,
    people,
    (p) => track(p),
    own,
    (u, head) => track(kt.onPeerHead(u, head)),
  );
  const transfers = new Transfers(ctx, opts.maxAttachmentBytes ? { maxBytes: opts.maxAttachmentBytes } : {});

  // ---- background work tracking (idle() for tests and for a clean shutdown) ----
  const pending = new Set<Promise<unknown>>();
  const track = (p: Promise<unknown>) => {
    const q = p.catch((e) => console.error('engine:', errorLabel(e))).finally(() => pending.delete(q));
    pending.add(q);
  };

  // ---- prekey maintenance: replenish when new sessions used our one-time prekeys, rotate on schedule ----
  // keys.maintain runs one at a time (a lock across tabs), so an explicit publishPrekeys() always gets a
  // run that starts after it was called; background runs are not stacked up behind each other.
  let backgroundRun = false;
  const maintainInBackground = () => {
    if (backgroundRun) return;
    backgroundRun = true;
    track(keys.maintain(ctx.api).finally(() => (backgroundRun = false)));
  };
  /** After processing envelopes: a new session consumed a one-time prekey → ask the server's counts. */
  const maintainIfConsumed = () => {
    if (!backgroundRun && keys.takeConsumed()) maintainInBackground();
  };
  let maintenanceTimer: ReturnType<typeof setInterval> | undefined;

  /**
   * Processing failed (a store error, a fetch that failed): nothing past the durable cursor is acked, and the
   * conversation's socket resumes from it (inbox.process skips its live frames until then), never past it —
   * or, failing again, the mailbox brings what failed back (`recoverByMailbox`).
   */
  const failed =
    (conversationId: string) =>
    (e: unknown): never => {
      const n = (failures.get(conversationId) ?? 0) + 1;
      failures.set(conversationId, n);
      const socket = realtime.isOpen(conversationId);
      if (socket && n <= constants.PROCESS_FAILURE_SOCKET_RESTARTS) realtime.restart(conversationId);
      else {
        // Failing again, or no socket to resume from the cursor (a mailbox sync): no socket opens (tickets) for
        // it — the mailbox brings the envelope back; a socket it had opens again once it is processed.
        realtime.close(conversationId);
        recoverByMailbox(conversationId, socket);
      }
      throw e;
    };
  /**
   * Consecutive processing failures per conversation, until its processing moves the cursor again. After
   * PROCESS_FAILURE_SOCKET_RESTARTS socket restarts (each spends a ticket of the budget all conversations share)
   * the conversation is closed and retried through the mailbox (`recovering`: its next try, back-off doubling
   * like a socket's) until an envelope of it is processed; then its socket opens again and resumes from the cursor.
   */
  const failures = new Map<string, number>();
  const recovering = new Map<string, { timer: ReturnType<typeof setTimeout>; tries: number; reopen: boolean }>();
  const backoffMs = opts.backoff ?? { baseMs: 500, maxMs: 30_000 };
  /** `reopen`: the conversation had a socket, opened again once it recovers (kept across tries). */
  const recoverByMailbox = (conversationId: string, reopen = false) => {
    const prev = recovering.get(conversationId);
    clearTimeout(prev?.timer);
    const tries = (prev?.tries ?? 0) + 1;
    const ms = backoffDelay(backoffMs, tries - 1, ctx.rng);
    const gen = connections;
    const timer = setTimeout(() => {
      if (gen !== connections || recovering.get(conversationId) !== next) return;
      // Nothing of it in the mailbox yet (the server writes it there shortly): try again later.
      track(
        syncMailboxNow().finally(() => {
          if (recovering.get(conversationId) === next) recoverByMailbox(conversationId);
        }),
      );
    }, ms);
    (timer as { unref?: () => void }).unref?.();
    const next = { timer, tries, reopen: reopen || prev?.reopen === true };
    recovering.set(conversationId, next);
  };
  /** Processing of the conversation moved its cursor: a failure streak ends, a closed socket opens again. */
  const processed = (conversationId: string) => {
    failures.delete(conversationId);
    const r = recovering.get(conversationId);
    if (!r) return;
    clearTimeout(r.timer);
    recovering.delete(conversationId);
    if (r.reopen && !parked.has(conversationId)) realtime.open(conversationId); // a request stays on the poll
  };
  const stopRecovery = () => {
    for (const r of recovering.values()) clearTimeout(r.timer);
    recovering.clear();
    failures.clear();
    for (const r of gapRetries.values()) clearTimeout(r.timer);
    gapRetries.clear();
  };

  // ---- a membership log with a gap: shown, retried, and cleared by the first whole answer ----------------
  /** Conversations whose `membership_gap` state the UI was told of (events only on a change). */
  const gapShown = new Set<string>();
  /** Per conversation in a gap: the log fetch armed for when its back-off ends (groups.ts LOG_GAP_RETRY_*). */
  const gapRetries = new Map<string, { timer: ReturnType<typeof setTimeout>; at: number }>();
  const onMembershipGap = (conversationId: string, retryAt: number | null) => {
    if (retryAt === null) {
      clearTimeout(gapRetries.get(conversationId)?.timer);
      gapRetries.delete(conversationId);
      if (gapShown.delete(conversationId)) ctx.emit({ type: 'membership_gap', conversationId, retryAt: null });
      // What waited for a whole log: our held messages go out, a conversation on the mailbox is retried now.
      track(outbox.flush(conversationId));
      const r = recovering.get(conversationId);
      if (r) {
        clearTimeout(r.timer);
        recovering.set(conversationId, { ...r, tries: 0 });
        recoverByMailbox(conversationId);
      }
      return;
    }
    if (!gapShown.has(conversationId)) {
      gapShown.add(conversationId);
      ctx.emit({ type: 'membership_gap', conversationId, retryAt });
    }
    if (gapRetries.get(conversationId)?.at === retryAt) return;
    clearTimeout(gapRetries.get(conversationId)?.timer);
    const gen = connections;
    const timer = setTimeout(
      () => {
        gapRetries.delete(conversationId);
        if (gen === connections) track(groups.syncLog(conversationId).catch(() => undefined));
      },
      Math.max(0, retryAt - ctx.now()) + 1,
    );
    (timer as { unref?: () => void }).unref?.();
    gapRetries.set(conversationId, { timer, at: retryAt });
  };
  /**
   * Offline catch-up: fetch, process and acknowledge the whole mailbox (also the request poll's and the first
   * connect's). One sync at a time: a second one runs after the first, for what came since, instead of
   * processing the same pages side by side. A conversation whose envelopes fail to process does not stop it:
   * that conversation keeps its cursor (nothing of it past the failure is processed or acked in this sync, its
   * remaining pages are skipped) and is retried with back-off (`failed`: its socket, or the mailbox when it
   * has none); every other conversation is processed and acked, then the sync rejects with the first failure.
   */
  const oneSync = mutex();
  const syncMailboxNow = (): Promise<number> => oneSync(syncMailboxPages);
  const syncMailboxPages = async (): Promise<number> => {
    let count = 0;
    // The next page is fetched while this one is processed, and a page's ack goes out while the next one is
    // processed (acks one after another, each only after its page's envelopes committed).
    // Every page is checked against the wire schema first (transport.ts checkMailboxPage).
    const fetchPage = (after: MailboxCursor | null) =>
      ctx.api.fetchMailbox(after).then((raw: unknown) => {
        const page = checkMailboxPage(raw, after);
        if (page.dropped) console.warn('engine: malformed mailbox envelopes left out:', page.dropped);
        return page;
      });
    let next: ReturnType<typeof fetchPage> | null = fetchPage(null);
    let acked: Promise<void> = Promise.resolve();
    /** Conversations that failed in this sync, and the first failure (rethrown once the rest is done). */
    const failedHere = new Set<string>();
    let firstFailure: { error: unknown } | null = null;
    try {
      while (next) {
        const page: Awaited<ReturnType<typeof fetchPage>> = await next;
        next = page.next ? fetchPage(page.next) : null;
        // A prefetched page that fails is seen when awaited; until then its rejection is not unhandled.
        next?.catch(() => undefined);
        const byConv = new Map<string, Envelope[]>();
        for (const e of page.envelopes) {
          const { conversationId, ...env } = e;
          if (failedHere.has(conversationId)) continue; // nothing past its failed envelope
          byConv.set(conversationId, [...(byConv.get(conversationId) ?? []), env]);
        }
        // The page's conversations side by side (each conversation's envelopes stay in order in its own
        // queue), so their store transactions meet in the sealed store's group commit; acked once all are stored.
        const done = await Promise.all(
          [...byConv].map(async ([c, envs]) => ({
            c,
            n: envs.length,
            upTo: await inbox
              .process(c, envs)
              .catch(failed(c))
              .catch((error: unknown) => {
                failedHere.add(c);
                firstFailure ??= { error };
                return undefined;
              }),
          })),
        );
        const acks: { conversationId: string; upTo: number }[] = [];
        for (const { c, n, upTo } of done) {
          if (upTo === undefined) continue;
          count += n;
          if (upTo === null) continue;
          acks.push({ conversationId: c, upTo });
          processed(c);
        }
        // The page ends inside a conversation that failed: the rest of it is not fetched (it would be skipped).
        const skipTo = page.next && failedHere.has(page.next.afterConversation) ? page.next.afterConversation : null;
        if (skipTo !== null) next = fetchPage({ afterConversation: skipTo, afterSeq: Number.MAX_SAFE_INTEGER });
        next?.catch(() => undefined);
        await acked; // an ack that failed stops the sync, as before
        acked = acks.length ? ctx.api.ackMailbox(acks) : Promise.resolve();
        acked.catch(() => undefined);
      }
      await acked;
    } finally {
      await acked.catch(() => undefined);
    }
    maintainIfConsumed();
    if (firstFailure) throw (firstFailure as { error: unknown }).error;
    return count;
  };

  // ---- message requests get no socket (issue 17, issue 12 item 3) ----------------------------------------
  /**
   * Conversations left unconnected because they are not accepted (a request, a deleted request, blocked):
   * no socket is opened and no ticket spent for them, so a flood of groups from strangers cannot starve the
   * ticket budget of real chats; their envelopes come from the mailbox poll (every requestPollMs while any
   * is parked). Accepting (or unblocking) opens the socket.
   */
  const parked = new Set<string>();
  let requestPollTimer: ReturnType<typeof setInterval> | undefined;
  const isParkable = async (c: string) => (await people.state(c, await messages.cursor(c))) !== 'accepted';
  const openOrPark = async (c: string): Promise<boolean> => {
    let park = false;
    try {
      park = await isParkable(c);
    } catch {
      park = false; // cannot tell (its log did not load): connect as before
    }
    if (!park) {
      parked.delete(c);
      realtime.open(c);
      return false;
    }
    parked.add(c);
    if (requestPollTimer === undefined) {
      requestPollTimer = setInterval(() => track(pollRequests()), opts.requestPollMs ?? 15_000);
      (requestPollTimer as { unref?: () => void }).unref?.();
    }
    return true;
  };
  /** Parked conversations that are accepted now (here, by another device of ours, by unblocking) connect. */
  const unpark = async () => {
    for (const c of [...parked]) if (!(await isParkable(c).catch(() => true))) await openOrPark(c);
    if (parked.size === 0) {
      clearInterval(requestPollTimer);
      requestPollTimer = undefined;
    }
  };
  let polling: Promise<void> | null = null;
  const pollRequests = () => {
    polling ??= (async () => {
      try {
        if (parked.size === 0) return;
        await people.sync().catch(() => undefined);
        // A conversation that keeps failing makes the sync reject once the rest is done: the requests accepted
        // meanwhile (in another tab, on another device) still get their sockets.
        await syncMailboxNow().catch(() => undefined);
        await unpark();
      } catch {
        // offline or refused: the next tick tries again
      } finally {
        polling = null;
      }
    })();
    return polling;
  };
  /** Resolves when the conversation's socket is online (at once if it is), or after `ms`. */
  const online = (conversationId: string, ms: number) =>
    new Promise<void>((resolve) => {
      if (realtime.status(conversationId) === 'online') return resolve();
      const done = () => {
        clearTimeout(t);
        off();
        resolve();
      };
      const t = setTimeout(done, ms);
      const off = realtime.onStatus((c, st) => {
        if (c === conversationId && st === 'online') done();
      });
    });
  const stopRequestPoll = () => {
    clearInterval(requestPollTimer);
    requestPollTimer = undefined;
    parked.clear();
  };

  // ---- key transparency: self-monitoring on connect and periodically; head gossip after we send ----
  let monitorTimer: ReturnType<typeof setInterval> | undefined;
  const monitorSelf = async () => {
    if (!(await keys.exists())) return [];
    const own = await keys.identity();
    return kt.monitorSelf({ userId: own.userId, userIdentityKey: own.userIdentity.publicKey });
  };
  /** Our newest verified head, invisibly, to the conversation's members (if it changed since the last time). */
  const gossip = async (conversationId: string, kind: ConversationKind) => {
    const head = await kt.headToGossip(conversationId);
    if (!head) return;
    const payload = encodePayload({ t: 'kth', conv: conversationId, head });
    await outbox.enqueue(
      entry(conversationId, newId(), payload, kind === 'group' ? 'group' : 'pairwise', false, ctx.now()),
    );
  };

  const receive = async (conversationId: string, envelopes: readonly Envelope[]) => {
    const upTo = await inbox.process(conversationId, envelopes, true).catch(failed(conversationId));
    if (upTo !== null) {
      realtime.send(conversationId, { v: 1, type: 'ack', upTo });
      processed(conversationId);
    }
    maintainIfConsumed();
    await outbox.flush(conversationId);
  };

  realtime.onFrame((conversationId, frame) => {
    switch (frame.type) {
      case 'deliver':
        track(receive(conversationId, frame.envelopes));
        break;
      case 'accepted':
        track(outbox.onAccepted(conversationId, frame.id, frame.seq, frame.ts));
        break;
      case 'accepted_batch':
        // Several of our sends stored by one commit: each entry settles its send as an `accepted` would.
        for (const a of frame.accepted) track(outbox.onAccepted(conversationId, a.id, a.seq, a.ts));
        break;
      case 'error':
        track(outbox.onError(conversationId, frame));
        break;
      case 'membership':
        track(groups.onMembershipEntry(conversationId, frame.entry, frame.afterSeq));
        break;
      case 'typing':
        track(typing.receive(conversationId, frame));
        break;
      case 'devices':
        track(onDevicesHint(conversationId, frame.userId));
        break;
      case 'resume':
        break;
    }
  });
  realtime.onStatus((conversationId, status) => {
    ctx.emit({ type: 'connection', conversationId, status });
    if (status === 'online') {
      outbox.reset(conversationId);
      track(outbox.flush(conversationId));
      // Entries appended while we were away come only as live frames: fetch what we missed (a direct
      // chat's last entry may be a deleted account's leave, after which no frame ever comes).
      // Then what a send needs from the server — the verified log and every member's verified device list —
      // so a message typed after the network drops is encrypted and queued from what is held instead of
      // failing on a fetch (it waits as `sending` and goes out on reconnect).
      track(
        groups
          .syncLog(conversationId)
          .catch(() => undefined)
          .then(() => groups.recipients(conversationId))
          .catch(() => undefined),
      );
    }
  });

  const ownView = async (): Promise<OwnIdentityView> => {
    const own = await keys.identity();
    return {
      userId: own.userId,
      deviceId: own.deviceId,
      userIdentityKey: own.userIdentity.publicKey,
      deviceCertificate: encodeDeviceCertificate(own.certificate),
      deviceList: own.deviceList,
    };
  };

  const conversationView = async (id: string, removed = false): Promise<ConversationView> => {
    const state = await groups.membership(id);
    const own = await keys.identity();
    return {
      id,
      kind: await groups.kind(id),
      title: state.title,
      members: [...state.members].map(([userId, role]) => ({ userId, role })),
      myRole: removed ? null : (state.members.get(own.userId) ?? null),
      removed,
      requestState: await people.state(id, await messages.cursor(id)),
      timer: state.timer ?? 0,
      membershipGap: await groups.inGap(id),
    };
  };

  // ---- people: accepting a request, and sharing our profile key with those we talk to ----
  const acceptConversation = async (conversationId: string, waitOnline = true) => {
    await people.accept(conversationId, await groups.kind(conversationId));
    // A request had no socket: it connects now (its resume replays anything the poll has not fetched).
    // Accepting returns once it is online (or after 15 s): what the person does next — typing, replying —
    // then goes out at once instead of being dropped (typing) or waiting for the reconnect. (Not from the
    // outbox, `waitOnline` false: its entry's send waits for the socket anyway.)
    if (parked.has(conversationId) && !(await openOrPark(conversationId)) && waitOnline)
      await online(conversationId, 15_000);
    const held = await people.takeHeldReceipts(conversationId);
    if (held.length) {
      await inbox.queueReceipt(conversationId, held);
      track(outbox.flush(conversationId));
    }
  };
  /**
   * Queues our profile key (pairwise) where the members lack our current one; a request is accepted first.
   * `order`: the profile key's send order (default: after everything queued so far).
   */
  const beforeVisibleSend = async (conversationId: string, order?: number) => {
    const state = await people.state(conversationId, await messages.cursor(conversationId));
    if (state === 'request' || state === 'hidden') await acceptConversation(conversationId, order === undefined);
    await shareProfileKey(conversationId, order);
  };
  /** Queues our current profile key (pairwise) into an accepted conversation whose members lack it. */
  const shareProfileKey = async (conversationId: string, order?: number): Promise<boolean> => {
    const members = (await groups.membership(conversationId)).members.keys();
    const pk = await people.profileKeyToShare(conversationId, members);
    if (!pk) return false;
    await outbox.enqueue(
      entry(conversationId, newId(), encodePayload(pk.payload), 'pairwise', false, ctx.now()),
      order,
    );
    await ctx.store.transaction(async (tx) => people.markSharedInTx(tx, conversationId, pk.mark));
    return true;
  };
  const targetOf = (t: PeopleTarget, user: number, conv: number) =>
    'userId' in t ? { kind: user, target: t.userId } : { kind: conv, target: t.conversationId };

  /** A failed local message (never accepted): its record and its outbox entry, removed in one transaction. */
  const dropFailed = async (conversationId: string, clientId: string): Promise<MessageView> => {
    const m = await messages.getPending(conversationId, clientId);
    if (m?.status !== 'failed' || !m)
      throw new EngineError('not_failed', 'only a failed message can be retried or deleted');
    await ctx.store.transaction(async (tx) => {
      messages.deletePendingInTx(tx, conversationId, clientId);
      messages.deleteAttachmentInTx(tx, conversationId, clientId);
      outbox.dropInTx(tx, clientId);
    });
    ctx.emit({ type: 'message_removed', conversationId, clientId });
    return m;
  };

  const assertMembersSendable = async (conversationId: string) => {
    for (const u of (await groups.membership(conversationId)).members.keys()) await directory.assertSendable(u);
  };
  /**
   * `assertMembersSendable`, except that a transient failure (the conversation's log is not held and the server
   * is unreachable) answers false: the send is queued to be prepared by the outbox (`OutboxEntry.prepare`).
   */
  const sendableNow = async (conversationId: string): Promise<boolean> => {
    try {
      await assertMembersSendable(conversationId);
      return true;
    } catch (err) {
      if (isTransient(err)) return false;
      throw err;
    }
  };

  // ---- issue 17: our own actions on messages ----
  const actionOf = (payload: Uint8Array): MessageAction | null => {
    const r = decodeContent(payload);
    return r.kind === 'ok' && (r.content.t === 'react' || r.content.t === 'edit' || r.content.t === 'delete')
      ? r.content
      : null;
  };
  const pendingKey = (a: MessageAction): keyof PendingAction =>
    a.t === 'react' ? 'react' : a.t === 'edit' ? 'body' : 'deleted';
  /** The target without our pending overlay for this kind of action (it has been applied or given up). */
  const clearPending = async (conversationId: string, a: MessageAction): Promise<MessageView | null> =>
    ctx.store.transaction(async (tx) => {
      const t = await messages.byIdInTx(tx, conversationId, a.target);
      if (!t?.pending || !(pendingKey(a) in t.pending)) return null;
      const { [pendingKey(a)]: _gone, ...rest } = t.pending;
      const next: MessageView = { ...t };
      if (Object.keys(rest).length) (next as { pending?: PendingAction }).pending = rest;
      else delete (next as { pending?: PendingAction }).pending;
      messages.replaceInTx(tx, next);
      return next;
    });

  /** Our action was sequenced at `seq`: applied to our store exactly as every other device applies it. */
  const ownActionSequenced = async (e: OutboxEntry, seq: number, ts: number) => {
    const a = actionOf(e.payload);
    if (!a) return;
    const own = await keys.identity();
    const moderator = a.t === 'delete' && (await groups.isModerator(e.conversationId, own.userId));
    const r = await ctx.store.transaction((tx) =>
      applyActionInTx(tx, messages, a, {
        conversationId: e.conversationId,
        actor: own.userId,
        seq,
        ts,
        moderator,
        dropOutboxInTx: (t, id) => outbox.dropInTx(t, id),
      }),
    );
    const cleared = await clearPending(e.conversationId, a);
    if (!r.ok) ctx.emit({ type: 'content_refused', conversationId: e.conversationId, id: e.clientId, code: r.code });
    const shown = new Map<string, MessageView>();
    for (const m of r.ok ? r.updated : []) shown.set(m.clientId, m);
    if (cleared) shown.set(cleared.clientId, cleared);
    for (const m of shown.values()) ctx.emit({ type: 'message_updated', message: m });
  };

  const ownActionFailed = async (e: OutboxEntry) => {
    const a = actionOf(e.payload);
    if (!a) return;
    const cleared = await clearPending(e.conversationId, a);
    if (cleared) ctx.emit({ type: 'message_updated', message: cleared });
  };

  /** Queues a payload (distributing our sender key first in a group, as a text does). */
  /**
   * Queues our sender key (pairwise, flagged for the WITHHELD retry) to the group's devices that lack it;
   * false when every device has it.
   */
  const distributeSenderKey = async (conversationId: string, order?: number): Promise<boolean> => {
    const sk = await groups.prepareSenderKey(conversationId);
    if (!sk.needs.length) return false;
    await outbox.enqueue(
      {
        ...entry(
          conversationId,
          newId(),
          encodePayload({ t: 'skd', conv: conversationId, d: sk.distribution }),
          'pairwise',
          false,
          ctx.now(),
        ),
        distributes: true,
      },
      order,
    );
    await groups.markDistributed(conversationId, sk.needs);
    return true;
  };

  /**
   * The outbox's `prepare` hook: a message queued while its conversation's log (or a member's device list) could
   * not be fetched gets, from the verified log, the refusals a send checks, the conversation's timer, our
   * profile key and sender key queued just before it, and its mode. Throws as the send would have.
   */
  const prepareDeferred = async (e: OutboxEntry): Promise<{ mode: 'pairwise' | 'group'; payload: Uint8Array }> => {
    const c = e.conversationId;
    await assertMembersSendable(c);
    let payload = e.payload;
    const r = decodeContent(e.payload);
    if (r.kind === 'ok' && (r.content.t === 'text' || r.content.t === 'att')) {
      const timer = await groups.timer(c);
      const { exp: _exp, ...content } = r.content;
      payload = encodeContent(timer > 0 ? { ...content, exp: timer } : content);
    }
    const order = e.order ?? e.createdAt * 1000;
    await beforeVisibleSend(c, order - 0.75);
    const kind = await groups.kind(c);
    if (kind === 'group') await distributeSenderKey(c, order - 0.5);
    await gossip(c, kind).catch(() => undefined);
    return { mode: kind === 'group' ? 'group' : 'pairwise', payload };
  };

  const queue = async (conversationId: string, clientId: string, payload: Uint8Array, visible: boolean, at: number) => {
    const kind = await groups.kind(conversationId);
    if (kind === 'group') await distributeSenderKey(conversationId);
    const e = entry(conversationId, clientId, payload, kind === 'group' ? 'group' : 'pairwise', visible, at);
    // A group message is delivered once those it was sent to (still members) have it — not members added later.
    const me = kind === 'group' && visible ? (await keys.identity()).userId : null;
    const audience = me ? (await groups.memberIds(conversationId)).filter((u) => u !== me) : null;
    await outbox.enqueue(audience ? { ...e, audience } : e);
  };

  /** A message to act on: ours to find by id (sequenced), not undecryptable. */
  const messageTarget = async (conversationId: string, messageId: string): Promise<MessageView> => {
    const t = await messages.byId(conversationId, messageId);
    if (!t || t.seq === null || t.status === 'undecryptable')
      throw new EngineError('unknown_message', 'no such message in this conversation');
    return t;
  };

  /** Queues an action and shows it as pending on its target until the server sequences it. */
  const sendAction = async (conversationId: string, a: MessageAction, pending: PendingAction) => {
    await assertMembersSendable(conversationId);
    const payload = encodeContent(a);
    const shown = await ctx.store.transaction(async (tx) => {
      const t = await messages.byIdInTx(tx, conversationId, a.target);
      if (!t) return null;
      const next: MessageView = { ...t, pending: { ...t.pending, ...pending } };
      messages.replaceInTx(tx, next);
      return next;
    });
    if (shown) ctx.emit({ type: 'message_updated', message: shown });
    try {
      await queue(conversationId, newId(), payload, false, ctx.now());
    } catch (err) {
      const cleared = await clearPending(conversationId, a);
      if (cleared) ctx.emit({ type: 'message_updated', message: cleared });
      throw err;
    }
    track(outbox.flush(conversationId));
  };

  /** Case- and accent-insensitive form for search. */
  const fold = (s: string) => s.normalize('NFKD').replace(/\p{M}/gu, '').toLocaleLowerCase();

  /**
   * Stores a visible message (`text` or `att`) as pending (with `extra` in the same transaction) and queues
   * its payload: pairwise to every verified device, or with our sender key for groups (distributed first,
   * pairwise, to the verified devices that lack it).
   */
  const send = async (
    conversationId: string,
    clientId: string,
    content: Extract<Content, { t: 'text' | 'att' }>,
    more: Partial<MessageView>,
    extra?: (tx: StoreTx) => void,
    /**
     * `stored`: called once the message is stored (it then shows, and its own Retry sends it again).
     * `failedView`: a send that fails after that resolves with the failed message instead of throwing.
     * `ready` false: what the send needs could not be fetched (see `sendableNow`); it is queued to be prepared.
     */
    after: { stored?: () => void; failedView?: boolean; ready?: boolean } = {},
  ): Promise<MessageView> => {
    const own = await keys.identity();
    const payload = encodeContent(content);
    const m: MessageView = {
      conversationId,
      seq: null,
      clientId,
      from: { userId: own.userId, deviceId: own.deviceId },
      outgoing: true,
      body: content.body,
      status: 'sending',
      sentAt: content.sentAt,
      receivedAt: content.sentAt,
      ...more,
    };
    await ctx.store.transaction(async (tx) => {
      await messages.putInTx(tx, m);
      extra?.(tx);
    });
    ctx.emit({ type: 'message_added', message: m });
    after.stored?.();
    try {
      let queued = false;
      if (after.ready !== false) {
        try {
          await beforeVisibleSend(conversationId);
          await queue(conversationId, clientId, payload, true, content.sentAt);
          queued = true;
        } catch (err) {
          // The network is down and something the send needs is not held (a member's device list): it waits
          // as `sending` like every offline send, completed by the outbox once that can be fetched.
          if (!isTransient(err)) throw err;
        }
      }
      if (queued) await gossip(conversationId, await groups.kind(conversationId));
      else
        await outbox.enqueue({
          ...entry(conversationId, clientId, payload, 'pairwise', true, content.sentAt),
          prepare: true,
        });
    } catch (err) {
      // Nothing was queued: the message must not stay 'sending' forever — show it as failed.
      const code = err instanceof EngineError ? err.code : 'send_failed';
      const failed = await messages.update(conversationId, { seq: null, clientId }, { status: 'failed', error: code });
      if (failed) ctx.emit({ type: 'message_updated', message: failed });
      if (after.failedView && failed) return failed;
      throw err;
    }
    track(outbox.flush(conversationId));
    return m;
  };

  /** A message carrying an uploaded attachment's pointer (kept, key included, in its own record). */
  const sendPointer = async (
    conversationId: string,
    pointer: AttachmentPointer,
    caption: string,
    after: Parameters<typeof send>[5] = {},
    clientId = newId(),
  ) => {
    const sentAt = ctx.now();
    const ready = await sendableNow(conversationId);
    const timer = ready ? await groups.timer(conversationId) : 0;
    return send(
      conversationId,
      clientId,
      {
        t: 'att',
        conv: conversationId,
        id: clientId,
        body: caption,
        sentAt,
        att: pointer,
        ...(timer > 0 ? { exp: timer } : {}),
      },
      { attachment: viewOf(pointer) },
      (tx) => messages.putAttachmentInTx(tx, conversationId, clientId, pointer),
      { ...after, ready },
    );
  };
  /** Whether the server still has an uploaded blob (a 404 says not; anything else — offline — is not a no). */
  const blobKept = async (attachmentId: string): Promise<boolean> => {
    const stop = new AbortController();
    try {
      const body = await ctx.api.downloadAttachment(attachmentId, { signal: stop.signal });
      stop.abort();
      await body.cancel().catch(() => undefined);
      return true;
    } catch (err) {
      const e = err as { name?: string; code?: string } | null;
      return !(e?.name === 'ApiError' && e.code === 'not_found');
    }
  };
  /**
   * sendAttachment's transfers, by transfer id (review R5, rule 4: one file is one message, sent once): an
   * upload done whose message is not stored yet (a retry sends the same blob, not a second one), then the
   * message it became (a repeated call returns that message: its own Retry sends it again).
   */
  const attachmentSends = new Map<
    string,
    { conversationId: string; pointer: AttachmentPointer; clientId: string; stored: boolean }
  >();
  const ATTACHMENT_SENDS_KEPT = 500;

  /**
   * A member's device set changed (a hint from the conversation's object): verify their signed list
   * again and, in a group where we already hold a sender key, give it to their new devices now — so a
   * linked device can read our next group message instead of waiting for it.
   */
  const onDevicesHint = async (conversationId: string, userId: string) => {
    await directory.refresh(userId).catch(() => null);
    if ((await groups.kind(conversationId).catch(() => null)) !== 'group') return;
    if (!(await groups.hasOwnSenderKey(conversationId))) return;
    if (await distributeSenderKey(conversationId)) await outbox.flush(conversationId);
  };

  onMembersChanged = (conversationId, members) =>
    track(outbox.membersChanged(conversationId, new Set(members)).catch(() => undefined));
  onDevicesAdded = (userId, added) =>
    track(
      (async () => {
        const me = await keys.identity();
        if (userId === me.userId) return; // our own devices are listed in Account → Devices
        const self = await own.selfConversationId();
        const at = ctx.now();
        for (const c of await groups.knownConversations()) {
          if (c === self) continue;
          const state = await groups.membership(c).catch(() => null);
          if (!state?.members.has(userId)) continue;
          const afterSeq = await messages.cursor(c);
          const fresh = await ctx.store.transaction(async (tx) => {
            const out: InfoLine[] = [];
            for (const d of added) {
              const k = infoKey.device(c, userId, d);
              if (await tx.get(k)) continue;
              const line = deviceLinkedLine(c, userId, d, afterSeq, at);
              writeJson(tx, k, line);
              out.push(line);
            }
            return out;
          });
          for (const line of fresh) ctx.emit({ type: 'info_added', line });
        }
      })(),
    );

  /** Our own sync conversation (read positions): created by whichever of our devices needs it first. */
  const ensureSelf = async (): Promise<string> => {
    const self = await own.selfConversationId();
    try {
      await groups.membership(self);
    } catch {
      await groups.create('group', [], '', self).catch(() => undefined); // another device may win: fine
    }
    return self;
  };

  // ---- read positions across our own devices (the own sync conversation) ----
  const pendingReads = new Map<string, number>();
  let readTimer: ReturnType<typeof setTimeout> | undefined;
  const syncReads = async () => {
    readTimer = undefined;
    const reads = [...pendingReads].map(([c, seq]) => ({ c, seq }));
    pendingReads.clear();
    const me = await keys.identity();
    if (!reads.length || (await directory.devices(me.userId)).length === 0) return;
    const self = await ensureSelf();
    for (let i = 0; i < reads.length; i += constants.MAX_SYNC_READS) {
      const read = reads.slice(i, i + constants.MAX_SYNC_READS);
      await outbox.enqueue(
        entry(self, newId(), encodeContent({ t: 'sync', conv: self, read }), 'pairwise', false, ctx.now()),
      );
    }
    realtime.open(self);
    await outbox.flush(self);
  };

  const engine: Engine = {
    async bootstrap(p) {
      if (!(await keys.exists())) await keys.create(p);
      return ownView();
    },
    async identity() {
      return (await keys.exists()) ? ownView() : null;
    },
    async signLoginChallenge(challenge) {
      const own = await keys.identity();
      return signLoginChallenge(ctx.curves, own.signing, challenge, own.userId, own.deviceId);
    },
    async addDeviceToList(certificate) {
      return keys.addDeviceToList(decodeDeviceCertificate(certificate));
    },
    removeDeviceFromList: (deviceId) => keys.removeDeviceFromList(deviceId),
    listWithoutThisDevice: () => keys.listWithoutThisDevice(),
    async adoptOwnDeviceList(list) {
      await keys.adoptDeviceList(list);
      return ownView();
    },
    publishPrekeys: () => keys.maintain(ctx.api),
    async createConversation(p) {
      const id = await groups.create(p.kind, p.members, p.title ?? '');
      // The people we start a conversation with are accepted: what they start with us is not a request.
      if (people.requests) {
        const own = await keys.identity();
        const others = p.members.filter((u) => u !== own.userId);
        track(people.setEntries(others.map((u) => ({ kind: SETTING_KIND.acceptUser, target: u, value: 0 }))));
      }
      return id;
    },
    addMember: (c, u) => groups.append(c, { action: 'add', target: u, role: 'member' }),
    removeMember: (c, u) => groups.append(c, { action: 'remove', target: u }),
    async members(c) {
      return [...(await groups.membership(c)).members.keys()];
    },
    conversations: async () => {
      const self = await own.selfConversationId();
      const all = await ctx.api.listConversations();
      // Our own sync conversation is never shown; its socket is kept open (read positions arrive there).
      if (all.some((c) => c.id === self)) realtime.open(self);
      const list = all.filter((c) => c.id !== self);
      // Each conversation's view read side by side (their store reads meet in one backend read), in list order.
      const views = async (ids: readonly string[], removed: boolean) =>
        (
          await Promise.all(
            ids.map((id) =>
              conversationView(id, removed).catch((e) => {
                console.error('engine: conversation', id, errorLabel(e));
                return null;
              }),
            ),
          )
        ).filter((v): v is ConversationView => v !== null);
      const out = await views(
        list.map((c) => c.id),
        false,
      );
      await groups.remember(out.map((c) => c.id));
      const listed = new Set(list.map((c) => c.id));
      const gone = (await groups.knownConversations()).filter((id) => !listed.has(id) && id !== self);
      out.push(...(await views(gone, true)));
      return out;
    },
    async infoLines(c) {
      const devices = (await listJson<InfoLine>(ctx.store, infoKey.deviceDir(c))).map((e) => e.value);
      // Stable: at the same position, membership lines first, then device lines in the order they came.
      return [...(await groups.infoLines(c)), ...devices.sort((a, b) => a.at - b.at)].sort(
        (a, b) => a.afterSeq - b.afterSeq,
      );
    },
    conversation: (c) => {
      realtime.prioritize(c); // the conversation on screen opens before the rest of a long queue
      return conversationView(c);
    },
    changeMembership: (c, change) => groups.append(c, change),
    async setTimer(c, seconds) {
      if (!isTimerSeconds(seconds)) throw new EngineError('invalid_input', 'a timer is 0 or 5 minutes to 4 weeks');
      const own = (await keys.identity()).userId;
      let state = await groups.membership(c);
      let me = state.members.get(own);
      if (!me || !canSetTimer(me, state.members.size)) {
        // Our copy of the log may be behind (a promotion we have not seen yet): verify newer entries first.
        await groups.syncLog(c).catch(() => undefined);
        state = await groups.membership(c);
        me = state.members.get(own);
      }
      if (!me || !canSetTimer(me, state.members.size))
        throw new EngineError('not_allowed', 'your role may not change the timer here');
      if ((state.timer ?? 0) === seconds) return;
      await groups.append(c, { action: 'set_timer', timer: seconds });
    },
    async departures() {
      const out: { conversationId: string; entries: Uint8Array[] }[] = [];
      for (const c of await ctx.api.listConversations()) {
        const entries = await groups.departure(c.id);
        if (entries.length) out.push({ conversationId: c.id, entries });
      }
      return out;
    },
    async exportHistory(o = {}) {
      const own = await keys.identity();
      const doc = await buildHistory({
        store: ctx.store,
        groups,
        messages,
        own: { userId: own.userId, deviceId: own.deviceId },
        now: ctx.now(),
      });
      return historyFile(doc, { ...o, rng: ctx.rng });
    },
    getPref: (k) => readJson<unknown>(ctx.store, `ui/${prefKey(k)}`),
    setPref: (k, v) => putJson(ctx.store, `ui/${prefKey(k)}`, v),
    async connect(ids) {
      await expiry.start(); // what expired while we were closed goes before anything is shown
      if (!caughtUp) {
        // Coming online: what waited for us comes through the mailbox first (see `catchUp`); a sync that
        // fails leaves it to the sockets' replay, as before.
        caughtUp = true;
        const p = syncMailboxNow()
          .catch(() => 0)
          .finally(() => {
            if (catchUp === p) catchUp = null;
          });
        catchUp = p;
        track(p);
      }
      const list = ids ?? (await ctx.api.listConversations()).map((c) => c.id);
      const gen = connections;
      const open = async () => {
        if (gen !== connections) return; // disconnected (or closed) meanwhile
        let parkedNow = false;
        for (const id of list) if (await openOrPark(id)) parkedNow = true;
        // A request that just appeared: fetch what it holds now rather than at the next tick.
        if (parkedNow) track(pollRequests());
      };
      // During the catch-up the sockets wait: their tickets and handshakes would only compete with its pages.
      if (catchUp) track(catchUp.then(open));
      else await open();
      // While online, re-check the server's counts and the signed-prekey schedule now and then (a tab
      // left open for days still rotates; a failed run is retried at the next tick).
      if (maintenanceTimer === undefined) {
        maintenanceTimer = setInterval(maintainInBackground, keys.config.maintenanceIntervalMs);
        (maintenanceTimer as { unref?: () => void }).unref?.(); // Node: never keeps a bot's process alive
      }
      if (monitorTimer === undefined) {
        track((catchUp ?? Promise.resolve()).then(() => (gen === connections ? monitorSelf() : [])));
        monitorTimer = setInterval(() => track(monitorSelf()), kt.monitorIntervalMs);
        (monitorTimer as { unref?: () => void }).unref?.();
      }
    },
    async disconnect() {
      expiry.stop();
      realtime.closeAll();
      caughtUp = false;
      connections++;
      stopRequestPoll();
      stopRecovery();
      clearInterval(maintenanceTimer);
      maintenanceTimer = undefined;
      clearInterval(monitorTimer);
      monitorTimer = undefined;
    },
    connectionStatus: async (c) => realtime.status(c),
    async sendText(conversationId, body, o = {}) {
      if (new TextEncoder().encode(body).length > MAX_TEXT_BYTES)
        throw new EngineError('too_long', `a text is at most ${MAX_TEXT_BYTES} bytes`);
      const ready = await sendableNow(conversationId);
      let reply: Quote | undefined;
      if (o.replyTo !== undefined) {
        const t = await messageTarget(conversationId, o.replyTo);
        if (t.deleted) throw new EngineError('deleted', 'that message was deleted');
        reply = { id: t.clientId, author: t.from.userId, text: quoteExcerpt(t.body ?? '') };
      }
      const clientId = newId();
      const sentAt = ctx.now();
      const timer = ready ? await groups.timer(conversationId) : 0;
      return send(
        conversationId,
        clientId,
        {
          t: 'text',
          conv: conversationId,
          id: clientId,
          body,
          sentAt,
          ...(reply ? { reply } : {}),
          ...(timer > 0 ? { exp: timer } : {}),
        },
        reply ? { quote: { id: reply.id, author: reply.author, text: reply.text } } : {},
        undefined,
        { ready },
      );
    },
    async sendAttachment(conversationId, draft, o) {
      const caption = o.caption ?? '';
      if (caption.length > MAX_CAPTION_LEN) throw new EngineError('send_failed', 'caption too long');
      // Blocked (unaccepted key change) or not a member: refused before a byte is uploaded.
      const known = attachmentSends.get(o.transferId);
      if (known && known.conversationId !== conversationId) throw new EngineError('send_failed', 'transfer id reused');
      if (known?.stored) {
        const m =
          (await messages.getPending(conversationId, known.clientId)) ??
          (await messages.byId(conversationId, known.clientId));
        if (!m) throw new EngineError('send_failed', 'this file was sent as a message that is gone');
        return m;
      }
      await assertMembersSendable(conversationId);
      let t = known;
      if (!t) {
        const pointer = await transfers.upload(o.transferId, conversationId, draft);
        t = { conversationId, pointer, clientId: newId(), stored: false };
        attachmentSends.set(o.transferId, t);
        for (const id of attachmentSends.keys()) {
          if (attachmentSends.size <= ATTACHMENT_SENDS_KEPT) break;
          attachmentSends.delete(id);
        }
      }
      const sending = t;
      // Once stored, the message is the file's one card: a failure after that resolves with it as failed.
      return sendPointer(
        conversationId,
        sending.pointer,
        caption,
        { stored: () => (sending.stored = true), failedView: true },
        sending.clientId,
      );
    },
    async openAttachment(conversationId, clientId, transferId) {
      const pointer = await messages.attachment(conversationId, clientId);
      if (!pointer) throw new EngineError('no_attachment');
      return transfers.download(transferId, pointer);
    },
    async cancelTransfer(transferId) {
      transfers.cancel(transferId);
      if (attachmentSends.get(transferId)?.stored === false) attachmentSends.delete(transferId);
    },
    async retrySend(conversationId, clientId) {
      // What would refuse the new send is checked first: the failed message stays until one is queued.
      const before = await messages.getPending(conversationId, clientId);
      // Its frame went out and no answer came within the lifespan: it may be stored, and past the server's
      // retry window a new send of it (under any id) would be delivered twice. The person decides, knowingly.
      if (before?.status === 'failed' && (await outbox.mayHaveBeenSent(clientId)))
        throw new EngineError(
          'may_have_been_sent',
          'This message may already have been delivered (it went out, but no answer came back in time), so it is not sent again. Delete it, or write it anew.',
        );
      if (before?.status === 'failed') await sendableNow(conversationId);
      // An attachment message goes out again with the same pointer: its blob is already uploaded — unless
      // the server no longer has it (its retention ended): then it is not sent pointing at nothing.
      const pointer = await messages.attachment(conversationId, clientId);
      if (pointer && before?.status === 'failed' && !(await blobKept(pointer.attachmentId)))
        throw new EngineError(
          'attachment_unavailable',
          'The file uploaded for this message is no longer on the server. Delete this message and send the file again.',
        );
      const m = await dropFailed(conversationId, clientId);
      return pointer
        ? sendPointer(conversationId, pointer, m.body ?? '')
        : engine.sendText(conversationId, m.body ?? '', m.quote ? { replyTo: m.quote.id } : {});
    },
    async react(c, id, emoji) {
      if (emoji !== '' && !isReaction(emoji)) throw new EngineError('invalid_input', 'a reaction is one emoji');
      const t = await messageTarget(c, id);
      if (t.deleted) throw new EngineError('deleted', 'that message was deleted');
      await sendAction(c, { t: 'react', conv: c, target: id, emoji }, { react: emoji });
    },
    async editMessage(c, id, body) {
      if (!body.trim()) throw new EngineError('invalid_input', 'an edit needs text');
      if (new TextEncoder().encode(body).length > MAX_TEXT_BYTES)
        throw new EngineError('too_long', `a text is at most ${MAX_TEXT_BYTES} bytes`);
      const t = await messageTarget(c, id);
      if (t.from.userId !== (await keys.identity()).userId)
        throw new EngineError('not_allowed', 'only your own messages can be edited');
      if (t.deleted) throw new EngineError('deleted', 'that message was deleted');
      if (!isEditable(t)) throw new EngineError('not_editable', 'only text messages can be edited');
      if (ctx.now() - (t.ts ?? t.sentAt) > constants.EDIT_WINDOW_MS)
        throw new EngineError('edit_window', 'messages can be edited for 24 hours');
      await sendAction(c, { t: 'edit', conv: c, target: id, body, sentAt: ctx.now() }, { body });
    },
    async deleteForEveryone(c, id) {
      const t = await messageTarget(c, id);
      if (t.deleted) return;
      const me = (await keys.identity()).userId;
      if (t.from.userId !== me && !(await groups.isModerator(c, me)))
        throw new EngineError('not_allowed', 'only the sender or a group admin can delete this for everyone');
      await sendAction(c, { t: 'delete', conv: c, target: id }, { deleted: true });
    },
    typing: (c, on) => typing.signal(c, on),
    async search(query, o = {}) {
      const q = fold(query.trim());
      if (!q) return [];
      const limit = o.limit ?? 50;
      const ids = o.conversationId ? [o.conversationId] : await groups.knownConversations();
      const hits: MessageView[] = [];
      for (const c of ids)
        for (const m of await messages.all(c)) if (m.body !== null && fold(m.body).includes(q)) hits.push(m);
      return hits.sort((a, b) => (b.ts ?? b.sentAt) - (a.ts ?? a.sentAt)).slice(0, limit);
    },
    async locate(c, id) {
      return (await messages.seqOf(c, id)) ?? null;
    },
    sweepExpired: () => expiry.sweep(),
    async discardFailed(conversationId, clientId) {
      await dropFailed(conversationId, clientId);
    },
    messages: (c, o) => messages.page(c, o),
    syncMailbox: () => syncMailboxNow(),
    flushOutbox: () => outbox.flush(),
    contact: (u) => directory.view(u),
    refreshContact: (u) => directory.refresh(u),
    async safetyNumber(u, which = 'trusted') {
      const s =
        which === 'pending' ? await directory.safetyNumber(u, 'pending') : await directory.safetyNumber(u, 'trusted');
      return s && { digits: s.digits, display: s.display, scannable: s.scannable };
    },
    async acceptIdentityChange(u) {
      const v = await directory.acceptIdentityChange(u);
      await sessions.dropUser(u);
      return v;
    },
    // ---- people ----
    async syncPeople() {
      await people.sync();
      await unpark(); // another device of ours may have accepted or unblocked
      return people.view();
    },
    people: () => people.view(),
    setProfile: (p) => people.setProfile(p),
    async profile(u, o) {
      return o?.refresh ? people.refreshProfile(u) : people.profile(u);
    },
    profiles: () => people.profiles(),
    requester: (c) => people.requester(c),
    acceptRequest: (c) => acceptConversation(c),
    async deleteRequest(c) {
      await people.setEntries([{ kind: SETTING_KIND.hideConversation, target: c, value: await messages.cursor(c) }]);
      await people.takeHeldReceipts(c);
    },
    async block(t) {
      if ('userId' in t) {
        // Our profile key rotates with the block; everyone else we shared it with gets the new one now
        // (not in a conversation the blocked person is in: profileKeyToShare refuses those).
        for (const c of await people.blockUser(t.userId)) {
          try {
            if (await shareProfileKey(c)) track(outbox.flush(c));
          } catch (e) {
            console.error('engine: profile key re-share', c, errorLabel(e)); // shared with their next message instead
          }
        }
        return;
      }
      const { kind, target } = targetOf(t, SETTING_KIND.blockUser, SETTING_KIND.blockConversation);
      await people.setEntries([{ kind, target, value: 0 }]);
      // A blocked conversation needs no socket any more (what still arrives comes by the poll, dropped).
      if ('conversationId' in t && (await isParkable(t.conversationId))) {
        realtime.close(t.conversationId);
        await openOrPark(t.conversationId);
      }
    },
    async unblock(t) {
      const { kind, target } = targetOf(t, SETTING_KIND.blockUser, SETTING_KIND.blockConversation);
      await people.setEntries([{ kind, target, value: null }]);
      await unpark();
    },
    async mute(t, until = 0) {
      const { kind, target } = targetOf(t, SETTING_KIND.muteUser, SETTING_KIND.muteConversation);
      await people.setEntries([{ kind, target, value: until }]);
    },
    async unmute(t) {
      const { kind, target } = targetOf(t, SETTING_KIND.muteUser, SETTING_KIND.muteConversation);
      await people.setEntries([{ kind, target, value: null }]);
    },
    sealDeviceName: (deviceId, name) => own.sealDeviceName(deviceId, name),
    deviceNames: (devices) => own.deviceNames(devices),
    async sealProvisioning(p) {
      // The newest list (another device may have been linked since we last looked) and the sync
      // conversation the new device will join from its first connect.
      const current = await ctx.api.fetchDeviceList((await keys.identity()).userId);
      if (current) await keys.adoptDeviceList(current.list);
      await ensureSelf();
      return own.sealProvisioning({ ...p, ephemeralKey: theirX25519(p.ephemeralKey) });
    },
    importTrust: (contacts) => own.importTrust(contacts),
    exportLinkHistory: (opts) => own.exportHistory({ ...DEFAULT_HISTORY, ...opts }),
    async importLinkHistory(chunks) {
      const r = await own.importHistory(chunks);
      ctx.emit({ type: 'history_imported', conversations: r.conversations });
      return r;
    },
    confirmRemoved: (list) => own.confirmRemoved(list),
    async markRead(conversationId, seq) {
      if (!(await own.raiseRead(conversationId, seq))) return;
      ctx.emit({ type: 'read_position', conversationId, seq });
      pendingReads.set(conversationId, Math.max(seq, pendingReads.get(conversationId) ?? 0));
      if (readTimer === undefined) {
        readTimer = setTimeout(() => track(syncReads()), 300);
        (readTimer as { unref?: () => void }).unref?.();
      }
    },
    readPosition: (c) => own.readPosition(c),
    // ---- key transparency ----
    lookupUser: (username) => kt.provenUser(username),
    setOwnUsername: (username) => kt.setOwnUsername(username),
    ktCheck: monitorSelf,
    ktAlerts: () => kt.alerts(),
    dismissKtAlert: (id) => kt.dismissAlert(id),
    on(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    async idle() {
      for (let i = 0; i < 1000 && pending.size; i++) {
        await Promise.all([...pending]);
        await new Promise((r) => setTimeout(r, 0));
      }
    },
    close() {
      expiry.stop();
      outbox.close();
      clearTimeout(readTimer);
      connections++;
      realtime.closeAll();
      stopRequestPoll();
      stopRecovery();
      clearInterval(maintenanceTimer);
      maintenanceTimer = undefined;
      clearInterval(monitorTimer);
      monitorTimer = undefined;
      listeners.clear();
    },
  };
  return engine;
}

/** Preference keys are single path segments. */
const prefKey = (k: string) => k.replace(/[^A-Za-z0-9_.-]/g, '_');

function entry(
  conversationId: string,
  clientId: string,
  payload: Uint8Array,
  mode: 'pairwise' | 'group',
  visible: boolean,
  createdAt: number,
) {
  return {
    clientId,
    conversationId,
    kind: 'message' as const,
    payload,
    mode,
    items: null,
    group: null,
    state: 'sending' as const,
    seq: null,
    attempts: 0,
    createdAt,
    visible,
  };
}

export { EngineError };
