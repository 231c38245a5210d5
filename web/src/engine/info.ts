/**
 * Info lines: timeline items that are not messages — "Alice added Bob", "Bob left", "Alice renamed the
 * group to …" — shown among the messages, in conversation order, on every member's device.
 *
 * Membership lines are derived ONLY from the locally verified, signed membership log (groups.ts): what a
 * line says comes from an entry whose signature, hash chain and role rules were checked, never from
 * anything the server asserts alone. Where a line sits is the one thing the server decides (as it decides
 * message order): a live `membership` frame names the message seq it follows (`afterSeq`; the DO drains
 * queued sends first, so it is the exact cut); an entry learned otherwise (the log fetched when a
 * conversation is first seen, or a gap filled) sits after the last message this device had processed.
 * Positions are kept per entry (`info/<conv>/<logSeq>`); entries without one (the log as it was when this
 * device first saw the conversation) sit before every message.
 *
 * Disappearing-message timer changes are membership entries too (`set_timer`, #17): their lines are shown in
 * direct conversations as well, where no other entry gets a line but a `leave` — which only an account
 * deletion writes there (docs/PROTOCOL.md, direct conversations), so its line says the account was deleted.
 *
 * The union is meant to grow: linked devices (#14) and security notices
 * (#20) add their own `InfoEvent` variants and store their lines the same way (a stable `id`, an
 * `afterSeq`), and the app renders each variant.
 *
 * Does NOT: verify anything (groups.ts does, before a line exists), render text, or send.
 * @module
 */
import type { Action, Role } from './_protocol.js';

/** What an info line reports. Membership: one verified log entry. */
export type InfoEvent = MembershipInfo | DeviceLinkedInfo;

export type MembershipInfo = {
  readonly type: 'membership';
  readonly action: Action;
  /** Author of the entry (for `leave`: who left). */
  readonly actor: string;
  /** Target user: add, remove, promote, demote, transfer_ownership. */
  readonly target: string | null;
  /** Granted role (add). */
  readonly role: Role | null;
  /** New title: create, rename. */
  readonly title: string | null;
  /** The disappearing-message timer in seconds, 0 = off (set_timer; also shown in direct chats). */
  readonly timer?: number | null;
  /** A `leave` in a direct conversation: only an account deletion writes one ("… deleted their account"). */
  readonly accountDeleted?: boolean;
};

/**
 * Linked devices (issue 14): a member's signed device list gained a device ("Alice linked a new device"). A
 * quiet line, in every conversation with that person: the safety number does not change and nothing needs
 * accepting — it only says that one more device of theirs now receives what is sent there.
 */
export interface DeviceLinkedInfo {
  readonly type: 'device_linked';
  readonly userId: string;
  readonly deviceId: string;
}

/** A non-message timeline item (plain data, across the worker boundary). */
export interface InfoLine {
  readonly kind: 'info';
  readonly conversationId: string;
  /** Stable per conversation: `membership:<log seq>`, `device:<userId>:<deviceId>`. */
  readonly id: string;
  /** The message seq this line follows (0: before every message). */
  readonly afterSeq: number;
  /** The author's clock (informational). */
  readonly at: number;
  readonly event: InfoEvent;
}

export const infoKey = {
  position: (c: string, logSeq: number) => `info/${c}/${logSeq.toString().padStart(10, '0')}`,
  dir: (c: string) => `info/${c}/`,
  /** Device lines are stored whole (they are not derived from the log). */
  device: (c: string, userId: string, deviceId: string) => `infodev/${c}/${userId}:${deviceId}`,
  deviceDir: (c: string) => `infodev/${c}/`,
};

/** The line for a device a member linked, placed after the last message this device had processed. */
export function deviceLinkedLine(
  conversationId: string,
  userId: string,
  deviceId: string,
  afterSeq: number,
  at: number,
): InfoLine {
  return {
    kind: 'info',
    conversationId,
    id: `device:${userId}:${deviceId}`,
    afterSeq,
    at,
    event: { type: 'device_linked', userId, deviceId },
  };
}

/** The line for one verified membership entry. */
export function membershipLine(
  conversationId: string,
  e: {
    readonly seq: number;
    readonly action: Action;
    readonly authorUserId: string;
    readonly target: string | null;
    readonly role: Role | null;
    readonly title: string | null;
    readonly timer?: number | null;
    readonly timestamp: number;
  },
  afterSeq: number,
): InfoLine {
  return {
    kind: 'info',
    conversationId,
    id: `membership:${e.seq}`,
    afterSeq,
    at: e.timestamp,
    event: {
      type: 'membership',
      action: e.action,
      actor: e.authorUserId,
      target: e.target,
      role: e.role,
      title: e.title,
      ...(e.action === 'set_timer' ? { timer: e.timer ?? 0 } : {}),
    },
  };
}

/**
 * The line of `line`'s entry as a conversation of `kind` shows it, or null: a group shows every entry; a
 * direct conversation only timer changes and the `leave` of a deleted account (its creation, and the
 * ownership handover before that leave, are not news).
 */
export function shownLine(kind: 'direct' | 'group', line: InfoLine): InfoLine | null {
  if (kind === 'group' || line.event.type !== 'membership') return line; // device lines show in both kinds
  if (line.event.action === 'set_timer') return line;
  if (line.event.action === 'leave') return { ...line, event: { ...line.event, accountDeleted: true } };
  return null;
}
