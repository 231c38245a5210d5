/**
 * Webhook shapes (docs/API.md § "Webhooks"), shared by the Worker (worker/webhooks/, worker/domain/webhooks.ts),
 * the bot SDK (bots/) and the tests: the event types, the JSON body of each event as it is POSTed to an
 * endpoint (Standard Webhooks: `{type, timestamp, data}`), the management API's request bodies and views,
 * and the limits. zod only — no Worker imports.
 *
 * Events are notify-only: they carry ids, sequence numbers and times — never a ciphertext, a plaintext, a
 * title, a username or a key. A bot that wants the message syncs its mailbox (GET /api/mailbox) and
 * decrypts it with its own device keys.
 */
import { z } from 'zod';

// ---- limits -----------------------------------------------------------------------------------------------

/** Endpoints one account may have. */
export const MAX_WEBHOOK_ENDPOINTS = 10;
/** Longest endpoint URL accepted. */
export const MAX_WEBHOOK_URL_CHARS = 2048;
/** Longest free-text description of an endpoint. */
export const MAX_WEBHOOK_DESCRIPTION_CHARS = 256;
/** Largest request body the Worker sends to an endpoint (events are ~300 B; the cap is a guard). */
export const MAX_WEBHOOK_BODY_BYTES = 16 * 1024;
/** Delivery attempts kept per endpoint (older ones are pruned). */
export const WEBHOOK_DELIVERIES_KEPT = 100;
/** After a rotation the previous secret keeps signing alongside the new one this long. */
export const WEBHOOK_ROTATION_OVERLAP_MS = 24 * 3600 * 1000;
/** Random bytes in a signing secret (the spec asks for 24-64). */
export const WEBHOOK_SECRET_BYTES = 32;
/** Secrets are shown as `whsec_` + base64 (standard alphabet, padded), as the spec and its libraries expect. */
export const WEBHOOK_SECRET_PREFIX = 'whsec_';

/** The three Standard Webhooks headers (lower case, as sent). */
export const WEBHOOK_HEADERS = {
  id: 'webhook-id',
  timestamp: 'webhook-timestamp',
  signature: 'webhook-signature',
} as const;

// ---- event types ------------------------------------------------------------------------------------------

/** Types an endpoint can subscribe to. `webhook.test` is sent only by "send a test event". */
export const WEBHOOK_EVENT_TYPES = [
  'message.created',
  'conversation.member_added',
  'conversation.member_removed',
  'conversation.role_changed',
  'device.added',
  'device.removed',
  'contact.identity_changed',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];
export const webhookEventType = z.enum(WEBHOOK_EVENT_TYPES);

const id = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);
const ms = z.number().int().nonnegative();
const role = z.enum(['owner', 'admin', 'member']);

/** `message.created`: an envelope of kind `message` for the subscribing account is in its mailbox. */
export const messageCreatedData = z.strictObject({
  conversationId: id,
  seq: z.number().int().positive(),
  senderUserId: id,
  senderDeviceId: id,
  /** When the server accepted the message (ms since the epoch; the envelope's `ts`). */
  ts: ms,
});
/** `conversation.member_added` / `member_removed` / `role_changed`: a signed membership-log entry was appended. */
export const memberAddedData = z.strictObject({
  conversationId: id,
  userId: id,
  role,
  byUserId: id,
  logSeq: z.number().int().nonnegative(),
});
export const memberRemovedData = z.strictObject({
  conversationId: id,
  userId: id,
  byUserId: id,
  logSeq: z.number().int().nonnegative(),
});
export const roleChangedData = z.strictObject({
  conversationId: id,
  userId: id,
  role,
  previousRole: role,
  byUserId: id,
  logSeq: z.number().int().nonnegative(),
});
/** `device.added` / `device.removed`: the subscribing account's own signed device list changed. */
export const deviceData = z.strictObject({ userId: id, deviceId: id, listVersion: z.number().int().positive() });
/** `contact.identity_changed`: someone sharing a conversation with the account reset their identity key. */
export const identityChangedData = z.strictObject({ userId: id, identityVersion: z.number().int().positive() });
/** `webhook.test`: sent on request to one endpoint. */
export const testData = z.strictObject({ endpointId: id });

const envelope = <T extends string, D extends z.ZodType>(type: T, data: D) =>
  z.strictObject({ type: z.literal(type), timestamp: z.iso.datetime(), data });

/** Every body an endpoint can receive, discriminated by `type`. */
export const webhookEventBody = z.discriminatedUnion('type', [
  envelope('message.created', messageCreatedData),
  envelope('conversation.member_added', memberAddedData),
  envelope('conversation.member_removed', memberRemovedData),
  envelope('conversation.role_changed', roleChangedData),
  envelope('device.added', deviceData),
  envelope('device.removed', deviceData),
  envelope('contact.identity_changed', identityChangedData),
  envelope('webhook.test', testData),
]);
export type WebhookEventBody = z.infer<typeof webhookEventBody>;
export type WebhookEventData<T extends WebhookEventBody['type']> = Extract<WebhookEventBody, { type: T }>['data'];

// ---- management API ---------------------------------------------------------------------------------------

/** Subscribed types: at least one, no repeats (default: every type). */
const eventTypes = z
  .array(webhookEventType)
  .min(1)
  .max(WEBHOOK_EVENT_TYPES.length)
  .refine((a) => new Set(a).size === a.length, 'duplicate event type');
const url = z
  .string()
  .min(1)
  .max(MAX_WEBHOOK_URL_CHARS * 2);
const description = z.string().max(MAX_WEBHOOK_DESCRIPTION_CHARS);

export const createWebhookBody = z.strictObject({
  url,
  events: eventTypes.optional(),
  /** Only this conversation's events (message and membership); omit for all. */
  conversationId: id.nullish(),
  description: description.optional(),
});
export type CreateWebhookInput = z.infer<typeof createWebhookBody>;

export const updateWebhookBody = z
  .strictObject({
    url: url.optional(),
    events: eventTypes.optional(),
    /** null removes the filter. */
    conversationId: id.nullable().optional(),
    description: description.optional(),
    /** true re-enables a disabled endpoint (false disables it by hand). */
    enabled: z.boolean().optional(),
  })
  .refine((b) => Object.keys(b).length > 0, 'nothing to update');
export type UpdateWebhookInput = z.infer<typeof updateWebhookBody>;

export interface WebhookEndpointView {
  id: string;
  url: string;
  description: string;
  events: WebhookEventType[];
  conversationId: string | null;
  enabled: boolean;
  /** Why delivery stopped, e.g. `retries_exhausted: 10 attempts of msg_… failed (last: HTTP 500)`. */
  disabledReason: string | null;
  disabledAt: number | null;
  lastSuccessAt: number | null;
  /** Until when the previous secret still signs (after a rotation), or null. */
  previousSecretExpiresAt: number | null;
  createdAt: number;
  updatedAt: number;
}

/** The answer to create and rotate: the only time the secret is shown. */
export interface WebhookSecretView {
  endpoint: WebhookEndpointView;
  secret: string;
}

export interface WebhookDeliveryView {
  id: number;
  eventId: string;
  eventType: string;
  attempt: number;
  status: 'succeeded' | 'failed';
  httpStatus: number | null;
  error: string | null;
  latencyMs: number;
  nextRetryAt: number | null;
  at: number;
}

/** Failure codes of a delivery attempt (WebhookDeliveryView.error). */
export const WEBHOOK_DELIVERY_ERRORS = ['http_status', 'timeout', 'network', 'redirect', 'url_refused'] as const;

/** Stable codes of a refused endpoint URL (each a 400). */
export const WEBHOOK_URL_ERRORS = [
  'webhook_url_invalid',
  'webhook_url_too_long',
  'webhook_url_scheme',
  'webhook_url_credentials',
  'webhook_url_private_address',
] as const;
export type WebhookUrlError = (typeof WEBHOOK_URL_ERRORS)[number];
