/**
 * Actions on a message — reactions, edits and deletes for everyone — applied to the local store under the
 * rules of docs/PROTOCOL.md §"Content types" (PITFALLS 30). The same function runs for an action received
 * from anyone (inbox.ts) and for our own once the server has sequenced it (engine.ts), so every device
 * applies the same actions in the same (conversation) order and ends in the same state:
 *
 * - an action names its target by id within the conversation (messages.ts's id index: the first message
 *   stored under an id keeps it); an unknown target, or one sequenced after the action, is refused
 *   (`unknown_message`) — as is an undecryptable target;
 * - a reaction: one per person per message; the one with the highest seq wins; '' removes it. Not on a
 *   deleted message (`deleted`);
 * - an edit: only from the message's sender (`not_allowed`), only of a text message (`not_editable`),
 *   only within EDIT_WINDOW_MS of the message by the server's clock (`edit_window`), not after a delete
 *   (`deleted`); the edit with the highest seq wins (an older one arriving late changes nothing);
 * - a delete for everyone: from the sender, or from an owner or admin of a group (`not_allowed`
 *   otherwise). Final: the text, the quote, reactions, edits and an attachment's pointer (its key) are
 *   erased from the record (a placeholder
 *   with who deleted it remains), replies quoting it lose their excerpt, and our own outbox copy of the
 *   payload is dropped. A delete and an edit racing from two devices therefore converge on "deleted"
 *   whatever order the server chose.
 *
 * Does NOT: decrypt, check that the actor is a verified member with a verified device (the inbox did that
 * before decrypting), or emit events (callers emit after their transaction committed).
 * @module
 */
import { constants, type DeleteContent, type EditContent, type ReactContent } from './_protocol.js';
import type { MessageView } from './context.js';
import type { Messages } from './messages.js';
import type { StoreTx } from './storage.js';

export type MessageAction = ReactContent | EditContent | DeleteContent;

export type ActionRefusal = 'unknown_message' | 'not_allowed' | 'edit_window' | 'deleted' | 'not_editable';

export interface ActionContext {
  readonly conversationId: string;
  /** The verified sender of the action. */
  readonly actor: string;
  /** The action's seq and the server's time for it. */
  readonly seq: number;
  readonly ts: number;
  /** The actor is an owner or admin of a group (may delete anyone's message). */
  readonly moderator: boolean;
  /** Drops our outbox copy of a deleted message's payload (in this transaction). */
  readonly dropOutboxInTx?: (tx: StoreTx, clientId: string) => void;
}

export type ActionOutcome =
  | { readonly ok: true; readonly updated: readonly MessageView[] }
  | { readonly ok: false; readonly code: ActionRefusal };

const refuse = (code: ActionRefusal): ActionOutcome => ({ ok: false, code });

/** Whether `m` is a text message that can be edited (not an attachment, unsupported or failed message). */
export function isEditable(m: MessageView): boolean {
  return (
    m.body !== null &&
    m.unsupported === undefined &&
    !m.deleted &&
    (m.status === 'sent' || m.status === 'delivered' || m.status === 'received') &&
    !('attachment' in m && (m as { attachment?: unknown }).attachment)
  );
}

/** The record left after a delete for everyone: identity, order and timing only — nothing it said. */
export function erased(m: MessageView, by: string, seq: number, at: number): MessageView {
  return {
    conversationId: m.conversationId,
    seq: m.seq,
    clientId: m.clientId,
    from: m.from,
    outgoing: m.outgoing,
    body: null,
    status: m.status,
    sentAt: m.sentAt,
    receivedAt: m.receivedAt,
    ...(m.ts !== undefined ? { ts: m.ts } : {}),
    ...(m.expiresAt !== undefined ? { expiresAt: m.expiresAt } : {}),
    deleted: { by, seq, at },
  };
}

/** Applies one action in `tx`; returns the messages it changed, or why it was refused (nothing changed). */
export async function applyActionInTx(
  tx: StoreTx,
  messages: Messages,
  a: MessageAction,
  at: ActionContext,
): Promise<ActionOutcome> {
  const target = await messages.byIdInTx(tx, at.conversationId, a.target);
  if (!target || target.seq === null || target.seq >= at.seq || target.status === 'undecryptable')
    return refuse('unknown_message');
  switch (a.t) {
    case 'react': {
      if (target.deleted) return refuse('deleted');
      const mine = target.reactions?.find((r) => r.userId === at.actor);
      if (mine && mine.seq >= at.seq) return { ok: true, updated: [] }; // a later reaction already won
      const others = (target.reactions ?? []).filter((r) => r.userId !== at.actor);
      const reactions = a.emoji === '' ? others : [...others, { userId: at.actor, emoji: a.emoji, seq: at.seq }];
      const next: MessageView = { ...target, reactions };
      messages.replaceInTx(tx, next);
      return { ok: true, updated: [next] };
    }
    case 'edit': {
      if (target.from.userId !== at.actor) return refuse('not_allowed');
      if (target.deleted) return refuse('deleted');
      if (!isEditable(target)) return refuse('not_editable');
      if (at.ts - (target.ts ?? target.sentAt) > constants.EDIT_WINDOW_MS) return refuse('edit_window');
      if (target.edited && target.edited.seq >= at.seq) return { ok: true, updated: [] };
      const next: MessageView = { ...target, body: a.body, edited: { seq: at.seq, at: at.ts } };
      messages.replaceInTx(tx, next);
      return { ok: true, updated: [next] };
    }
    case 'delete': {
      if (target.from.userId !== at.actor && !at.moderator) return refuse('not_allowed');
      if (target.deleted) return { ok: true, updated: [] };
      const next = erased(target, at.actor, at.seq, at.ts);
      messages.replaceInTx(tx, next);
      messages.deleteAttachmentInTx(tx, at.conversationId, target.clientId); // an attachment's key goes too
      at.dropOutboxInTx?.(tx, target.clientId);
      const replies = await messages.eraseQuotesOfInTx(tx, at.conversationId, target.clientId);
      return { ok: true, updated: [next, ...replies] };
    }
  }
}
