/**
 * Who may see a webhook event: the "sent to" rules of docs/API.md § Webhooks, in one place.
 *
 * The producers name an event's audience when they emit it (outbox.ts `membershipEvents` / `deviceEvent` /
 * `identityChangedEvent` from the change's own D1 batch; emit.ts for `message.created`: the recipients that
 * are still members), and the consumer's fan-out turns it into attempts. An attempt can be made much later
 * (a retry of the schedule, up to ~75 h), so EVERY attempt — first and retries — asks again, here, whether
 * the endpoint's owner is still in the audience the rule describes (`entitledNow`):
 *
 *   message.created, member_added, role_changed   a member of the event's conversation now
 *   member_removed                                 a member now, or the removed user itself
 *   device.added / device.removed                  the account itself
 *   contact.identity_changed                       shares a conversation with the user now (`contactsOf`,
 *                                                  the same lookup the fan-out resolves the audience with)
 *   webhook.test                                   the one endpoint it was asked for
 *
 * An owner no longer entitled (removed, left, account deleted — its endpoints go with it) gets nothing more:
 * the consumer drops the attempt (docs/ARCHITECTURE.md § Webhook events).
 *
 * Does NOT: look at the endpoint's own state (enabled, subscribed types, conversation filter: consumer.ts).
 */
import { sql } from 'drizzle-orm';
import type { WebhookEventBody } from '../../schema/webhooks.js';
import type { Db } from '../db.js';
import { memberOfMany } from '../domain/conversations.js';

export type AudienceRule =
  /** Members of the conversation now (plus `also`: the removed user of a member_removed). */
  | { kind: 'members'; conversationId: string; also?: string }
  | { kind: 'self'; userId: string }
  /** Everyone sharing a conversation with `userId` now. */
  | { kind: 'contactsOf'; userId: string }
  | { kind: 'endpoint'; endpointId: string };

/** The rule an event's body falls under. */
export function audienceRule(body: WebhookEventBody): AudienceRule {
  switch (body.type) {
    case 'message.created':
    case 'conversation.member_added':
    case 'conversation.role_changed':
      return { kind: 'members', conversationId: body.data.conversationId };
    case 'conversation.member_removed':
      return { kind: 'members', conversationId: body.data.conversationId, also: body.data.userId };
    case 'device.added':
    case 'device.removed':
      return { kind: 'self', userId: body.data.userId };
    case 'contact.identity_changed':
      return { kind: 'contactsOf', userId: body.data.userId };
    case 'webhook.test':
      return { kind: 'endpoint', endpointId: body.data.endpointId };
  }
}

/** Every other member of every conversation `userId` is in (the audience of contact.identity_changed). */
export async function contactsOf(db: Db, userId: string): Promise<Set<string>> {
  const rows = await db.all<{ user_id: string }>(sql`
    SELECT DISTINCT m2.user_id AS user_id FROM members m1
    JOIN members m2 ON m2.conversation_id = m1.conversation_id
    WHERE m1.user_id = ${userId} AND m2.user_id != ${userId}`);
  return new Set(rows.map((r) => r.user_id));
}

export interface EntitlementCheck {
  /** The endpoint's owner. */
  ownerId: string;
  endpointId: string;
  rule: AudienceRule;
}

/**
 * For each check, whether the owner is in the rule's audience now. Reads D1: one membership query per
 * distinct owner (per 90 conversations) and one contacts query per distinct identity-changed user.
 */
export async function entitledNow(db: Db, checks: readonly EntitlementCheck[]): Promise<boolean[]> {
  const convsByOwner = new Map<string, Set<string>>();
  const subjects = new Set<string>();
  for (const c of checks) {
    if (c.rule.kind === 'members' && c.rule.also !== c.ownerId) {
      const s = convsByOwner.get(c.ownerId) ?? new Set<string>();
      s.add(c.rule.conversationId);
      convsByOwner.set(c.ownerId, s);
    } else if (c.rule.kind === 'contactsOf') subjects.add(c.rule.userId);
  }
  const memberOf = new Map<string, Set<string>>();
  for (const [owner, convs] of convsByOwner) memberOf.set(owner, await memberOfMany(db, owner, [...convs]));
  const contacts = new Map<string, Set<string>>();
  for (const u of subjects) contacts.set(u, await contactsOf(db, u));
  return checks.map(({ ownerId, endpointId, rule }) => {
    switch (rule.kind) {
      case 'members':
        return rule.also === ownerId || memberOf.get(ownerId)?.has(rule.conversationId) === true;
      case 'self':
        return rule.userId === ownerId;
      case 'contactsOf':
        return contacts.get(rule.userId)?.has(ownerId) === true;
      case 'endpoint':
        return rule.endpointId === endpointId;
      default:
        return false;
    }
  });
}
