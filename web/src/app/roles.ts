/**
 * Which membership actions the UI offers: exactly what the protocol's role × action table
 * (`canPerform` / `ROLE_ACTIONS`) allows — the server and every client enforce the same table.
 * @module
 */
import { type Action, canPerform, type Role } from '../protocol/index.js';

export type MemberAction = Extract<Action, 'promote' | 'demote' | 'transfer_ownership' | 'remove'>;

/** The member actions `myRole` may perform on a member with `targetRole` (none in direct chats). */
export function allowedActions(kind: 'direct' | 'group', myRole: Role | null, targetRole: Role): MemberAction[] {
  if (kind !== 'group' || !myRole) return [];
  return (['promote', 'demote', 'transfer_ownership', 'remove'] as const).filter((a) =>
    canPerform(myRole, a, targetRole),
  );
}

export function canAddMembers(kind: 'direct' | 'group', myRole: Role | null): boolean {
  return kind === 'group' && !!myRole && canPerform(myRole, 'add', 'member');
}

export function canRename(kind: 'direct' | 'group', myRole: Role | null): boolean {
  return kind === 'group' && !!myRole && canPerform(myRole, 'rename', null);
}

export function canLeave(kind: 'direct' | 'group', myRole: Role | null): boolean {
  return kind === 'group' && !!myRole && canPerform(myRole, 'leave', null);
}
