/**
 * Conversation membership log (docs/PROTOCOL.md §"Membership"): a hash chain of entries, each signed by
 * the author's DEVICE signing key, replayed by every client and by the server with the same role × action
 * table (`ROLE_ACTIONS`). The verified state is the only source of truth for who receives keys: a member
 * the server inserts without a valid entry from a member with the right role never appears in it
 * (PITFALLS 17).
 *
 * Does NOT: fetch device lists (the caller passes a resolver built from verified device lists), read a
 * clock (timestamps are informational), or distribute sender keys.
 * @module
 */
import { concat, equal, isAllZero, Reader, Writer } from './bytes.js';
import { MAX_MEMBERS, MAX_MEMBERSHIP_ENTRIES, MAX_TITLE_LEN, PROTOCOL_VERSION, SIG_MEMBERSHIP } from './constants.js';
import { isTimerSeconds } from './content.js';
import { ErrorCode, fail } from './errors.js';
import { assertId, type DeviceKeyResolver, readId, signatureInput } from './identity.js';
import type { OurEd25519KeyPair } from './keys.js';
import { type Curve25519, SIG_LEN, sha256 } from './primitives.js';

export type Role = 'owner' | 'admin' | 'member';
export type Action =
  | 'create'
  | 'add'
  | 'remove'
  | 'promote'
  | 'demote'
  | 'rename'
  | 'leave'
  | 'transfer_ownership'
  | 'set_timer';

export const ROLES: readonly Role[] = ['owner', 'admin', 'member'];
export const ACTIONS: readonly Action[] = [
  'create',
  'add',
  'remove',
  'promote',
  'demote',
  'rename',
  'leave',
  'transfer_ownership',
  'set_timer',
];
/** Wire codes (u8). */
const ACTION_CODE: Record<Action, number> = {
  create: 1,
  add: 2,
  remove: 3,
  promote: 4,
  demote: 5,
  rename: 6,
  leave: 7,
  transfer_ownership: 8,
  set_timer: 9,
};
const ROLE_CODE: Record<Role, number> = { owner: 1, admin: 2, member: 3 };

/**
 * The role × action table. `true`/`false` for untargeted actions; for targeted actions the list of roles
 * the target may have (for `add`: the role granted; otherwise the target's current role). `create` is only
 * valid as entry 0 of a log, where its author becomes the owner. Members may not rename (decided: the title
 * is shared state that admins curate). The owner cannot leave; it must transfer ownership first, after
 * which it is an admin. There is always exactly one owner. `set_timer` (the disappearing-message timer) is
 * for owners and admins — and for a member while the conversation has at most two members (a direct chat,
 * where both people may set it; `canSetTimer`).
 */
export const ROLE_ACTIONS: Readonly<Record<Role, Readonly<Record<Action, boolean | readonly Role[]>>>> = {
  owner: {
    create: false,
    add: ['admin', 'member'],
    remove: ['admin', 'member'],
    promote: ['member'],
    demote: ['admin'],
    rename: true,
    leave: false,
    transfer_ownership: ['admin', 'member'],
    set_timer: true,
  },
  admin: {
    create: false,
    add: ['member'],
    remove: ['member'],
    promote: [],
    demote: [],
    rename: true,
    leave: true,
    transfer_ownership: [],
    set_timer: true,
  },
  member: {
    create: false,
    add: [],
    remove: [],
    promote: [],
    demote: [],
    rename: false,
    leave: true,
    transfer_ownership: [],
    set_timer: false,
  },
};

/** Whether `role` may perform `action` (on a target whose relevant role is `targetRole`, if targeted). */
export function canPerform(role: Role, action: Action, targetRole: Role | null): boolean {
  const rule = ROLE_ACTIONS[role][action];
  if (typeof rule === 'boolean') return rule && targetRole === null;
  return targetRole !== null && rule.includes(targetRole);
}

/**
 * Whether `role` may set the disappearing-message timer in a conversation of `memberCount` members: the
 * table's `set_timer` rule, plus a member while there are at most two members (a direct chat).
 */
export function canSetTimer(role: Role, memberCount: number): boolean {
  return canPerform(role, 'set_timer', null) || memberCount <= 2;
}

/** Which optional fields each action carries (any other presence is `invalid_structure`). */
const SHAPE: Record<Action, { target: boolean; role: boolean; title: boolean; timer: boolean }> = {
  create: { target: false, role: false, title: true, timer: false },
  add: { target: true, role: true, title: false, timer: false },
  remove: { target: true, role: false, title: false, timer: false },
  promote: { target: true, role: false, title: false, timer: false },
  demote: { target: true, role: false, title: false, timer: false },
  rename: { target: false, role: false, title: true, timer: false },
  leave: { target: false, role: false, title: false, timer: false },
  transfer_ownership: { target: true, role: false, title: false, timer: false },
  set_timer: { target: false, role: false, title: false, timer: true },
};

export interface MembershipEntryBody {
  readonly conversationId: string;
  /** u32, 0 for `create`, then +1 per entry. */
  readonly seq: number;
  /** entryHash of the previous entry; 32 zero bytes for seq 0. */
  readonly prevHash: Uint8Array;
  readonly action: Action;
  readonly authorUserId: string;
  readonly authorDeviceId: string;
  /** Target user id: add, remove, promote, demote, transfer_ownership. */
  readonly target: string | null;
  /** Granted role: add only ('admin' or 'member'). */
  readonly role: Role | null;
  /** create, rename. */
  readonly title: string | null;
  /**
   * set_timer only: the disappearing-message timer in seconds, 0 (off) or MIN_TIMER_SECONDS …
   * MAX_TIMER_SECONDS. Absent (undefined or null) for every other action.
   */
  readonly timer?: number | null;
  /** Author's clock, ms since epoch. Informational only. */
  readonly timestamp: number;
}

export interface MembershipEntry extends MembershipEntryBody {
  /** Ed25519 by the author device's signing key over signatureInput(SIG_MEMBERSHIP, body). */
  readonly signature: Uint8Array;
}

export interface MembershipState {
  readonly conversationId: string;
  readonly members: ReadonlyMap<string, Role>;
  readonly title: string;
  /** Disappearing-message timer in seconds, as the last `set_timer` entry set it (absent or 0: off). */
  readonly timer?: number;
  /** entryHash of the last applied entry. */
  readonly headHash: Uint8Array;
  /** seq of the last applied entry. */
  readonly seq: number;
}

const HASH_LEN = 32;
const OP = 'membership';

/**
 * version u8 ‖ str conversationId ‖ u32 seq ‖ prevHash[32] ‖ u8 action ‖ str authorUserId ‖
 * str authorDeviceId ‖ u8 hasTarget [‖ str target] ‖ u8 role (0 none) ‖ u8 hasTitle [‖ str title] ‖
 * [u32 timerSeconds, set_timer only] ‖ u64 ts
 */
export function encodeMembershipEntryBody(e: MembershipEntryBody): Uint8Array {
  assertShape(e);
  const w = new Writer()
    .u8(PROTOCOL_VERSION)
    .str(e.conversationId)
    .u32(e.seq)
    .fixed(e.prevHash, HASH_LEN)
    .u8(ACTION_CODE[e.action])
    .str(e.authorUserId)
    .str(e.authorDeviceId)
    .bool(e.target !== null);
  if (e.target !== null) w.str(e.target);
  w.u8(e.role === null ? 0 : ROLE_CODE[e.role]).bool(e.title !== null);
  if (e.title !== null) w.str(e.title);
  if (e.action === 'set_timer') w.u32(e.timer!);
  return w.u64(e.timestamp).finish();
}

/** body ‖ signature[64] */
export function encodeMembershipEntry(e: MembershipEntry): Uint8Array {
  return concat(encodeMembershipEntryBody(e), new Writer().fixed(e.signature, SIG_LEN).finish());
}

function byCode<T extends string>(table: Record<T, number>, code: number, op: string): T {
  const hit = (Object.keys(table) as T[]).find((k) => table[k] === code);
  return hit ?? fail(ErrorCode.Decode, op, 'unknown code');
}

export function decodeMembershipEntry(bytes: Uint8Array): MembershipEntry {
  const op = 'decodeMembershipEntry';
  const r = new Reader(bytes, op);
  if (r.u8() !== PROTOCOL_VERSION) fail(ErrorCode.Decode, op, 'unknown version');
  const conversationId = readId(r, op);
  const seq = r.u32();
  const prevHash = r.fixed(HASH_LEN);
  const action = byCode(ACTION_CODE, r.u8(), op);
  const authorUserId = readId(r, op);
  const authorDeviceId = readId(r, op);
  const target = r.bool() ? readId(r, op) : null;
  const roleCode = r.u8();
  const role = roleCode === 0 ? null : byCode(ROLE_CODE, roleCode, op);
  const title = r.bool() ? r.str(MAX_TITLE_LEN) : null;
  const timer = action === 'set_timer' ? r.u32() : null;
  const timestamp = r.u64();
  const signature = r.fixed(SIG_LEN);
  r.end();
  const e = {
    conversationId,
    seq,
    prevHash,
    action,
    authorUserId,
    authorDeviceId,
    target,
    role,
    title,
    ...(timer !== null ? { timer } : {}),
    timestamp,
  };
  assertShape(e);
  return { ...e, signature };
}

function assertShape(e: MembershipEntryBody): void {
  const s = SHAPE[e.action] ?? fail(ErrorCode.InvalidStructure, OP, 'unknown action');
  assertId(e.conversationId, 'conversation id', OP);
  assertId(e.authorUserId, 'author', OP);
  assertId(e.authorDeviceId, 'author device', OP);
  if (s.target !== (e.target !== null)) fail(ErrorCode.InvalidStructure, OP, 'target presence');
  if (s.role !== (e.role !== null)) fail(ErrorCode.InvalidStructure, OP, 'role presence');
  if (s.title !== (e.title !== null)) fail(ErrorCode.InvalidStructure, OP, 'title presence');
  if (s.timer !== (e.timer !== undefined && e.timer !== null)) fail(ErrorCode.InvalidStructure, OP, 'timer presence');
  if (s.timer && !isTimerSeconds(e.timer)) fail(ErrorCode.InvalidStructure, OP, 'timer out of range');
  if (e.target !== null) assertId(e.target, 'target', OP);
  if (e.title !== null && new TextEncoder().encode(e.title).length > MAX_TITLE_LEN)
    fail(ErrorCode.LimitExceeded, OP, 'title too long');
  if (!Number.isInteger(e.seq) || e.seq < 0 || e.seq > 0xffffffff) fail(ErrorCode.InvalidStructure, OP, 'bad seq');
}

/** SHA-256 of the full signed encoding (body ‖ signature). */
export function entryHash(e: MembershipEntry): Uint8Array {
  return sha256(encodeMembershipEntry(e));
}

export async function signMembershipEntry(
  curves: Curve25519,
  deviceSigningKey: OurEd25519KeyPair,
  body: MembershipEntryBody,
): Promise<MembershipEntry> {
  const msg = signatureInput(SIG_MEMBERSHIP, encodeMembershipEntryBody(body));
  return { ...body, signature: await curves.ed25519Sign(deviceSigningKey, msg) };
}

export interface EntryParams {
  readonly action: Action;
  readonly authorUserId: string;
  readonly authorDeviceId: string;
  readonly target?: string;
  readonly role?: Role;
  readonly title?: string;
  /** set_timer: seconds (0 = off). */
  readonly timer?: number;
  readonly timestamp: number;
}

/** Builds and signs the next entry after `state` (or entry 0 of `conversationId` if state is null). */
export function nextEntry(
  curves: Curve25519,
  deviceSigningKey: OurEd25519KeyPair,
  state: MembershipState | null,
  conversationId: string,
  p: EntryParams,
): Promise<MembershipEntry> {
  return signMembershipEntry(curves, deviceSigningKey, {
    conversationId,
    seq: state ? state.seq + 1 : 0,
    prevHash: state ? state.headHash : new Uint8Array(HASH_LEN),
    action: p.action,
    authorUserId: p.authorUserId,
    authorDeviceId: p.authorDeviceId,
    target: p.target ?? null,
    role: p.role ?? null,
    title: p.title ?? null,
    ...(p.action === 'set_timer' ? { timer: p.timer ?? null } : {}),
    timestamp: p.timestamp,
  });
}

async function verifyEntrySignature(
  curves: Curve25519,
  e: MembershipEntry,
  resolve: DeviceKeyResolver,
  index: number,
): Promise<void> {
  const key = resolve(e.authorUserId, e.authorDeviceId);
  if (!key) fail(ErrorCode.Forbidden, OP, `entry ${index}: unknown author device`);
  const msg = signatureInput(SIG_MEMBERSHIP, encodeMembershipEntryBody(e));
  if (!(await curves.ed25519Verify(key, msg, e.signature))) fail(ErrorCode.Signature, OP, `entry ${index}`);
}

/**
 * Applies one entry to `state` (null before entry 0) and returns the new state; `state` is not mutated.
 * Order (docs/PROTOCOL.md §"Conversation membership log", steps 1–5): shape (`invalid_structure` /
 * `limit_exceeded`), chain (`invalid_structure`), author device key from the resolver (`forbidden` if
 * unknown), signature (`signature`), then `applyRules`: author is a member (`forbidden`), no `create` after
 * entry 0, target ≠ author, target (non-)membership (`invalid_structure`), the role × action table
 * (`forbidden`), MAX_MEMBERS (`limit_exceeded`).
 */
export async function applyEntry(
  curves: Curve25519,
  state: MembershipState | null,
  entry: MembershipEntry,
  resolve: DeviceKeyResolver,
): Promise<MembershipState> {
  assertShape(entry);
  assertChain(state, entry);
  await verifyEntrySignature(curves, entry, resolve, entry.seq);
  return applyRules(state, entry, entryHash(entry));
}

/**
 * Verifies a whole log from entry 0: all signatures concurrently (each entry's author device key comes
 * from `resolve`, typically a cached map over verified device lists), then the chain and the rules in order.
 */
export async function verifyLog(
  curves: Curve25519,
  entries: readonly MembershipEntry[],
  resolve: DeviceKeyResolver,
): Promise<MembershipState> {
  if (entries.length === 0) fail(ErrorCode.InvalidStructure, OP, 'empty log');
  if (entries.length > MAX_MEMBERSHIP_ENTRIES) fail(ErrorCode.LimitExceeded, OP, 'log too long');
  entries.forEach(assertShape);
  await Promise.all(entries.map((e, i) => verifyEntrySignature(curves, e, resolve, i)));
  let state: MembershipState | null = null;
  for (const e of entries) {
    assertChain(state, e);
    state = applyRules(state, e, entryHash(e));
  }
  return state!;
}

function assertChain(state: MembershipState | null, e: MembershipEntryBody): void {
  if (state === null) {
    if (e.seq !== 0 || e.action !== 'create') fail(ErrorCode.InvalidStructure, OP, 'log must start with create');
    if (!isAllZero(e.prevHash) || e.prevHash.length !== HASH_LEN) fail(ErrorCode.InvalidStructure, OP, 'bad prevHash');
    return;
  }
  if (e.conversationId !== state.conversationId) fail(ErrorCode.InvalidStructure, OP, 'wrong conversation');
  if (e.seq !== state.seq + 1) fail(ErrorCode.InvalidStructure, OP, 'seq not contiguous');
  if (!equal(e.prevHash, state.headHash)) fail(ErrorCode.InvalidStructure, OP, 'broken hash chain');
}

function applyRules(state: MembershipState | null, e: MembershipEntryBody, hash: Uint8Array): MembershipState {
  if (state === null) {
    const members = new Map<string, Role>([[e.authorUserId, 'owner']]);
    return { conversationId: e.conversationId, members, title: e.title!, timer: 0, headHash: hash, seq: 0 };
  }
  const authorRole = state.members.get(e.authorUserId);
  if (!authorRole) fail(ErrorCode.Forbidden, OP, `entry ${e.seq}: author is not a member`);
  if (e.action === 'create') fail(ErrorCode.InvalidStructure, OP, 'create after entry 0');
  const targetRole = e.target === null ? null : state.members.get(e.target);
  if (e.target !== null && e.target === e.authorUserId) fail(ErrorCode.InvalidStructure, OP, 'author targets self');
  if (e.action === 'add' && targetRole !== undefined) fail(ErrorCode.InvalidStructure, OP, 'already a member');
  if (e.action !== 'add' && e.target !== null && targetRole === undefined)
    fail(ErrorCode.InvalidStructure, OP, 'target is not a member');
  const relevant = e.action === 'add' ? e.role : (targetRole ?? null);
  const allowed =
    e.action === 'set_timer' ? canSetTimer(authorRole, state.members.size) : canPerform(authorRole, e.action, relevant);
  if (!allowed) fail(ErrorCode.Forbidden, OP, `entry ${e.seq}: ${e.action}`);
  const members = new Map(state.members);
  let title = state.title;
  let timer = state.timer ?? 0;
  switch (e.action) {
    case 'add':
      if (members.size >= MAX_MEMBERS) fail(ErrorCode.LimitExceeded, OP, 'too many members');
      members.set(e.target!, e.role!);
      break;
    case 'remove':
      members.delete(e.target!);
      break;
    case 'promote':
      members.set(e.target!, 'admin');
      break;
    case 'demote':
      members.set(e.target!, 'member');
      break;
    case 'rename':
      title = e.title!;
      break;
    case 'leave':
      members.delete(e.authorUserId);
      break;
    case 'transfer_ownership':
      members.set(e.target!, 'owner');
      members.set(e.authorUserId, 'admin');
      break;
    case 'set_timer':
      timer = e.timer!;
      break;
  }
  return { conversationId: state.conversationId, members, title, timer, headHash: hash, seq: e.seq };
}
