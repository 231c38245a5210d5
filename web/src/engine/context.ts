/**
 * What every engine module is given: the Store, the protocol's curves and rng, a clock, the lock manager,
 * the server API and an event sink. Also the engine's own error type (stable `code`s, plain data across
 * the worker boundary) and the UI event union.
 *
 * Does NOT: hold state of its own.
 * @module
 */
import type { Curve25519, Rng } from '../protocol/index.js';
import type { AttachmentView, TransferPhase } from './attachments.js';
import type { InfoLine } from './info.js';
import type { EngineLocks } from './locks.js';
import type { Store, StoreTx } from './storage.js';
import type { KtAlert } from './transparency.js';
import type { ConnectionStatus, ServerApi } from './transport.js';

export interface EngineContext {
  readonly store: Store;
  readonly api: ServerApi;
  readonly curves: Curve25519;
  readonly rng: Rng;
  readonly now: () => number;
  readonly locks: EngineLocks;
  readonly emit: (event: EngineEvent) => void;
}

/**
 * One receiving chain — a pairwise session with a device, or a member device's sender key in a conversation —
 * as the inbox's batch path drives it (inbox.ts `batch`): it holds `lock` and one store transaction for a run
 * of envelopes, reads the state once through that transaction, decrypts envelope after envelope against the
 * state in memory (`decrypt` is pure: the state it was given is unchanged, the advanced one is returned), and
 * writes the state as the last accepted envelope left it, in the same transaction as the messages and cursor.
 */
export interface ReceiveChain<S = unknown> {
  /** The lock name every decryption (and, pairwise, every encryption) of this chain holds. */
  readonly lock: string;
  load(tx: StoreTx): Promise<S>;
  /** Throws the protocol's errors, and for anything the batch path does not do (a message that starts a session). */
  decrypt(state: S, message: Uint8Array): Promise<{ plaintext: Uint8Array; next: S }>;
  save(tx: StoreTx, state: S): void;
}

export type EngineErrorCode =
  | 'not_bootstrapped'
  | 'identity_changed'
  | 'unknown_user'
  | 'not_member'
  | 'membership_invalid'
  /** The server's membership log has a gap: not fetched again before a back-off (LOG_GAP_RETRY_BASE_MS). */
  | 'membership_gap'
  | 'no_devices'
  | 'too_long'
  | 'not_failed'
  | 'send_failed'
  /**
   * Our sender key of the conversation is marked for rotation (a member was removed since the entry was
   * queued): the outbox rotates and distributes it first, then encrypts (PITFALLS 19). Never shown.
   */
  | 'sender_key_rotation'
  /**
   * A first (prekey) message whose one-time prekey another new session consumed while it was decrypted: it
   * seeds no second session and is stored as undecryptable with this code (PITFALLS 6).
   */
  | 'prekey_consumed'
  /** An outbox entry kept failing for transient reasons (no network, 5xx, 429), or sent and never answered, past OUTBOX_TRANSIENT_LIFESPAN_MS. */
  | 'unreachable'
  /** Retry refused: the failed message's frame went out unanswered past that lifespan, so it may be stored. */
  | 'may_have_been_sent'
  // attachments (attachments.ts)
  | 'attachment_too_large'
  | 'attachment_quota_exceeded'
  | 'upload_failed'
  | 'download_failed'
  | 'attachment_damaged'
  | 'attachment_unavailable'
  | 'no_attachment'
  | 'cancelled'
  // people (people.ts)
  | 'settings_rollback'
  | 'settings_conflict'
  | 'invalid_profile'
  // ---- message actions and timers (issue 17; docs/PROTOCOL.md §"Content types") ----
  /** No message with that id in this conversation on this device (or not sent yet). */
  | 'unknown_message'
  /** Only the original sender may edit; only the sender or a group's admin may delete. */
  | 'not_allowed'
  /** An edit more than EDIT_WINDOW_MS after the message. */
  | 'edit_window'
  /** The message was deleted for everyone. */
  | 'deleted'
  /** Not a message that can be edited (an attachment, an unsupported or undecryptable message). */
  | 'not_editable'
  /** Not a valid reaction (one emoji) or timer value. */
  | 'invalid_input'
  // key transparency (transparency.ts)
  /** Key transparency: the log does not prove this user's key (transparency.ts). */
  | 'kt_unproven'
  /** Key transparency: the log itself misbehaved (bad signature, rollback, fork, rewritten history). */
  | 'kt_log_invalid';

/**
 * What a log line may say about an error: its name, stable code and HTTP status — never its message or stack
 * (rule 2: a message can carry what it was about, a stack the code path; neither belongs in a console).
 */
export function errorLabel(e: unknown): string {
  if (typeof e !== 'object' || e === null) return typeof e;
  const { name, code, status } = e as { name?: unknown; code?: unknown; status?: unknown };
  return [
    typeof name === 'string' ? name : 'Error',
    ...(typeof code === 'string' ? [code] : []),
    ...(typeof status === 'number' ? [String(status)] : []),
  ].join(' ');
}

export class EngineError extends Error {
  override readonly name = 'EngineError';
  constructor(
    readonly code: EngineErrorCode,
    message: string = code,
    readonly userId?: string,
  ) {
    super(message);
  }
}

export type MessageStatus = 'sending' | 'sent' | 'delivered' | 'failed' | 'received' | 'undecryptable';

/** A message as the UI sees it (plain data). */
export interface MessageView {
  readonly conversationId: string;
  /** Server order; null while a local message is not yet accepted. */
  readonly seq: number | null;
  readonly clientId: string;
  readonly from: { readonly userId: string; readonly deviceId: string };
  readonly outgoing: boolean;
  readonly body: string | null;
  readonly status: MessageStatus;
  readonly sentAt: number;
  readonly receivedAt: number;
  /** Why a message could not be decrypted or sent (an error code). */
  readonly error?: string;
  /** An attachment (content type `att`): what the UI may show; its key and digest stay in the engine. */
  readonly attachment?: AttachmentView;
  // ---- issue 17: everyday messaging (all optional: absent on messages stored before them) ----
  /** The server's time for the message (from its envelope, or our `accepted`): edit window and expiry. */
  readonly ts?: number;
  /** A reply: the message it quotes. */
  readonly quote?: QuoteView;
  /** At most one per person: the latest by conversation order (an empty emoji removed it). */
  readonly reactions?: readonly Reaction[];
  /** The last edit applied (by conversation order); `body` is its text. */
  readonly edited?: { readonly seq: number; readonly at: number };
  /** Deleted for everyone: the text is gone from the store; a placeholder remains. */
  readonly deleted?: { readonly by: string; readonly seq: number; readonly at: number };
  /** When it disappears from every device (the conversation's timer when it was sent), ms. */
  readonly expiresAt?: number;
  /** A content type (or version of one) this app does not understand: shown as "unsupported message". */
  readonly unsupported?: string;
  /** Our own action on this message that the server has not sequenced yet (shown until it is applied). */
  readonly pending?: PendingAction;
  /**
   * Our group message: how many of the other current members' devices have it (a receipt from any of a
   * member's devices counts that member). `status` is 'delivered' only once `to` = `of`.
   */
  readonly delivery?: { readonly to: number; readonly of: number };
}

/** The message a reply quotes, as the reply carries it or — when this device has it — as stored here. */
export interface QuoteView {
  readonly id: string;
  readonly author: string;
  /** An excerpt; null once the quoted message was deleted or has disappeared. */
  readonly text: string | null;
}

export interface Reaction {
  readonly userId: string;
  readonly emoji: string;
  /** The conversation seq of the reaction that set it (a later one replaces it). */
  readonly seq: number;
}

export interface PendingAction {
  /** Our reaction ('' = removed) until the server sequences it. */
  readonly react?: string;
  readonly body?: string;
  readonly deleted?: true;
}

export type EngineEvent =
  | { readonly type: 'message_added'; readonly message: MessageView }
  | { readonly type: 'message_updated'; readonly message: MessageView }
  /** A failed local message was deleted, or replaced by its retry. */
  | { readonly type: 'message_removed'; readonly conversationId: string; readonly clientId: string }
  /** A timeline info line (engine/info.ts), e.g. a verified membership change. */
  | { readonly type: 'info_added'; readonly line: InfoLine }
  | { readonly type: 'key_change'; readonly userId: string; readonly blocked: boolean }
  /** Someone in the conversation is typing (on) or stopped (off); ephemeral, never stored. */
  | { readonly type: 'typing'; readonly conversationId: string; readonly userId: string; readonly on: boolean }
  /**
   * A received reaction, edit, delete or signal was not applied: `code` says why (unknown_message,
   * not_allowed, edit_window, deleted, not_editable, malformed_payload, wrong_conversation). Nothing changed.
   */
  | { readonly type: 'content_refused'; readonly conversationId: string; readonly id: string; readonly code: string }
  /** A user's verified device list moved forward; `added`: device ids new in it (a device was linked). */
  | { readonly type: 'devices_changed'; readonly userId: string; readonly added?: readonly string[] }
  /** Another of our devices read this conversation up to `seq` (or this one did). */
  | { readonly type: 'read_position'; readonly conversationId: string; readonly seq: number }
  /** History from the device that linked this one was imported (reload these conversations). */
  | { readonly type: 'history_imported'; readonly conversations: readonly string[] }
  | { readonly type: 'membership_changed'; readonly conversationId: string; readonly members: readonly string[] }
  | { readonly type: 'connection'; readonly conversationId: string; readonly status: ConnectionStatus }
  /**
   * The conversation's membership log as the server answers it skips an entry (`retryAt`: its next fetch, ms),
   * or — null — a whole log was verified since. Meanwhile our messages there wait as `sending` (groups.ts).
   */
  | { readonly type: 'membership_gap'; readonly conversationId: string; readonly retryAt: number | null }
  /** Our private settings changed (blocks, mutes, accepted requests), on this device or another of ours. */
  | { readonly type: 'people_changed' }
  /** A profile (ours or a contact's) was set or opened anew. */
  | { readonly type: 'profile_changed'; readonly userId: string }
  | {
      readonly type: 'transfer';
      readonly id: string;
      readonly phase: TransferPhase;
      readonly loaded: number;
      readonly total: number;
    }
  /** A key-transparency problem to show as a security warning (transparency.ts). */
  | { readonly type: 'kt_alert'; readonly alert: KtAlert };
