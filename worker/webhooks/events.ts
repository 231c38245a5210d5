/**
 * Webhook events inside the system: how an event is described on its way through the queue (who may see
 * it, its deterministic or random `webhook-id`), the internal queue messages, and the exact JSON body an
 * endpoint receives (schema/webhooks.ts `webhookEventBody`).
 *
 * Queue messages (JSON, validated by the consumer like any input):
 *   {k:"fanout", events:[…]}   events to match against endpoints (from the ConversationDO's log or the
 *                              D1 outbox); each names its audience — user ids, or "everyone who shares a
 *                              conversation with user X" — never a recipient's URL
 *   {k:"attempt", …}           one delivery attempt of one event to one endpoint (first attempts past the
 *                              inline budget, and every retry, delayed with `delaySeconds`)
 * Both carry only ids, types, sequence numbers and times: no ciphertext, plaintext, title or key.
 *
 * Does NOT: decide who may see an event (the producers name the audience by the rules in docs/API.md), sign
 * (signing.ts) or send (consumer.ts).
 */
import { z } from 'zod';
import { MAX_WEBHOOK_BODY_BYTES, type WebhookEventBody, webhookEventBody } from '../../schema/webhooks.js';
import { toB64u } from '../../web/src/protocol/bytes.js';
import { sha256 } from '../../web/src/protocol/primitives.js';

const id = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);
/** A `webhook-id`: `msg_` + base64url (no `.`, as the spec requires of ids that are signed). */
export const eventId = z.string().regex(/^msg_[A-Za-z0-9_-]{8,64}$/);

export const audience = z.union([
  z.strictObject({ users: z.array(id).max(1000) }),
  /** Every other member of every conversation `contactsOf` is in (contact.identity_changed). */
  z.strictObject({ contactsOf: id }),
]);
export type Audience = z.infer<typeof audience>;

/** One event as it travels to the fan-out: its id, when it happened, its type and data, and who may see it. */
export const fanoutEvent = z.strictObject({
  id: eventId,
  ts: z.number().int().nonnegative(),
  /** Set for conversation events (message and membership): the endpoints' conversation filter applies. */
  conversationId: id.optional(),
  audience,
  // type + data, checked against the public body schema when the body is built
  type: z.string().max(64),
  data: z.record(z.string(), z.unknown()),
});
export type FanoutEvent = z.infer<typeof fanoutEvent>;

export const attemptJob = z.strictObject({
  k: z.literal('attempt'),
  endpointId: id,
  eventId,
  type: z.string().max(64),
  /** The exact body, the same for every attempt (only the signature's timestamp changes). */
  body: z.string().max(MAX_WEBHOOK_BODY_BYTES),
  /** 1-based. */
  attempt: z.number().int().positive().max(100),
  /** When the first attempt was made (disabling compares it with the endpoint's last success). */
  firstAt: z.number().int().nonnegative(),
  /** Not before this time (a delay longer than one queue message can carry hops through the queue). */
  notBefore: z.number().int().nonnegative().optional(),
});
export type AttemptJob = z.infer<typeof attemptJob>;

export const queueMessage = z.discriminatedUnion('k', [
  z.strictObject({ k: z.literal('fanout'), events: z.array(fanoutEvent).min(1).max(500) }),
  attemptJob,
]);
export type QueueMessage = z.infer<typeof queueMessage>;

/** Events per fan-out queue message (a message.created event is ~250 B of JSON; queue messages ≤ 128 KB). */
export const FANOUT_EVENTS_PER_MESSAGE = 200;

/** A random event id (events of the D1 outbox: the id is stored with the event, so re-sends keep it). */
export function randomEventId(): string {
  return `msg_${toB64u(crypto.getRandomValues(new Uint8Array(16)))}`;
}

/**
 * The id of `message.created` for one message: derived from (conversation, seq), so an emission repeated
 * after a crash carries the same `webhook-id` and receivers drop the copy.
 */
export function messageEventId(conversationId: string, seq: number): string {
  const digest = sha256(new TextEncoder().encode(`e2e-chat/v1 webhook message.created\n${conversationId}\n${seq}`));
  return `msg_${toB64u(digest.subarray(0, 18))}`;
}

/**
 * The body an endpoint receives, minified JSON exactly as signed: `{type, timestamp (ISO 8601), data}`.
 * Checked against the public schema (so no field outside it — content in particular — can ever be sent)
 * and against MAX_WEBHOOK_BODY_BYTES.
 */
export function eventBody(e: Pick<FanoutEvent, 'type' | 'ts' | 'data'>): string {
  const body: WebhookEventBody = webhookEventBody.parse({
    type: e.type,
    timestamp: new Date(e.ts).toISOString(),
    data: e.data,
  });
  const json = JSON.stringify(body);
  if (new TextEncoder().encode(json).byteLength > MAX_WEBHOOK_BODY_BYTES) {
    throw new Error('webhook body over MAX_WEBHOOK_BODY_BYTES');
  }
  return json;
}

/** Splits fan-out events into queue messages of at most FANOUT_EVENTS_PER_MESSAGE events. */
export function fanoutMessages(events: FanoutEvent[]): QueueMessage[] {
  const out: QueueMessage[] = [];
  for (let i = 0; i < events.length; i += FANOUT_EVENTS_PER_MESSAGE) {
    out.push({ k: 'fanout', events: events.slice(i, i + FANOUT_EVENTS_PER_MESSAGE) });
  }
  return out;
}
