/**
 * The realtime wire schema (version 1): every JSON frame a client and a ConversationDO exchange over a
 * conversation WebSocket, as zod schemas shared by the Worker, the Durable Object, the web client, the
 * tests and the benchmark. docs/ARCHITECTURE.md §"Wire frames" has an example of each.
 *
 * To the server every `c` is an opaque base64url ciphertext (a pairwise Double Ratchet message or a
 * sender-key group message, produced by web/src/protocol); the only cleartext is routing metadata:
 * ids, sequence numbers, timestamps, the frame type and a receipt's status.
 *
 * `typing` (both directions) is the one ephemeral frame: relayed to live sockets, never given a seq, never
 * stored, lost when nobody is listening.
 *
 * Does NOT: encrypt, decide who may send (the DO checks membership and the device set), or carry the
 * `{"type":"ping"}` / `{"type":"pong"}` keep-alive pair, which the runtime answers by exact string match
 * without waking the object (WIRE_PING / WIRE_PONG).
 */
import { z } from 'zod';

export const WIRE_VERSION = 1;

/** Keep-alive: clients send WIRE_PING every PING_INTERVAL_MS; the runtime answers WIRE_PONG. */
export const WIRE_PING = '{"type":"ping"}';
export const WIRE_PONG = '{"type":"pong"}';
export const PING_INTERVAL_MS = 30_000;
/**
 * A client that sent a `send` / `receipt` frame and got neither `accepted` nor an `error` with its id after
 * this long, on a socket that stayed open, sends the same frame again (the id makes the retry idempotent).
 */
export const SEND_ANSWER_TIMEOUT_MS = 30_000;

/** Largest decoded ciphertext of one envelope (a padded text message with attachments by reference). */
export const MAX_CIPHERTEXT_BYTES = 64 * 1024;
/** Largest frame handled normally; above it the DO answers `error` `frame_too_large` and keeps the socket. */
export const MAX_FRAME_BYTES = 256 * 1024;
/** Past this hard cap the DO does not even look at the frame: it closes the socket with CLOSE.tooBig. */
export const HARD_FRAME_BYTES = 1024 * 1024;
/** Most recipient devices of one pairwise send (larger groups use sender keys). */
export const MAX_PAIRWISE_RECIPIENTS = 256;
/**
 * Largest decoded ciphertext of one typing signal: a padded one-block payload as a pairwise Message, or as
 * a PreKeyMessage while the session is unacknowledged (≈ 2.3 KB), or as a sender-key message.
 */
export const MAX_TYPING_CIPHERTEXT_BYTES = 4096;
/** Most envelopes in one `deliver` frame (resume replays, and the group commit fans out, in batches of this size). */
export const MAX_DELIVER_BATCH = 100;

/** Most entries in one `accepted_batch` frame (a socket's answers of one commit, in frames of this size). */
export const MAX_ACCEPTED_BATCH = 100;

/** WebSocket close codes the server uses (4000-4999 are application codes). */
export const CLOSE = {
  normal: 1000,
  /** The frame exceeded HARD_FRAME_BYTES (RFC 6455 "message too big"). */
  tooBig: 1009,
  /** Unexpected server condition; reconnect with back-off and resume. */
  internal: 1011,
  /** The member was removed from the conversation or this device was revoked: do not reconnect. */
  forbidden: 4403,
  /** No keep-alive ping for too long: the server reaped the socket; reconnect and resume. */
  stale: 4408,
} as const;

/** Ids we mint or accept: 1-64 of [A-Za-z0-9_-] (the protocol core's MAX_ID_LEN). */
export const wireId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);
/** base64url without padding, at most MAX_CIPHERTEXT_BYTES once decoded (checked by length only). */
export const ciphertextB64u = z
  .string()
  .min(1)
  .max(Math.ceil((MAX_CIPHERTEXT_BYTES * 4) / 3))
  .regex(/^[A-Za-z0-9_-]+$/);
const seq = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const v = z.literal(WIRE_VERSION);

/** One recipient device of a pairwise send and its own ciphertext. */
export const pairwiseItem = z.strictObject({ u: wireId, d: wireId, c: ciphertextB64u });
export type PairwiseItem = z.infer<typeof pairwiseItem>;

/** A send's body: EITHER one ciphertext per recipient device (`to`) OR one sender-key ciphertext (`group`). */
const pairwiseBody = { to: z.array(pairwiseItem).min(1).max(MAX_PAIRWISE_RECIPIENTS) };
const groupBody = { group: ciphertextB64u };

export const receiptStatus = z.enum(['delivered', 'read']);
export type ReceiptStatus = z.infer<typeof receiptStatus>;

// ---- client → server ------------------------------------------------------------------------------------

/** A message; `id` is the sender device's client message id (idempotency key). */
export const sendFrame = z.union([
  z.strictObject({ v, type: z.literal('send'), id: wireId, ...pairwiseBody }),
  z.strictObject({ v, type: z.literal('send'), id: wireId, ...groupBody }),
]);
/** A delivered/read receipt: which messages it covers is inside the ciphertext; sequenced like a send. */
export const receiptFrame = z.union([
  z.strictObject({ v, type: z.literal('receipt'), id: wireId, status: receiptStatus, ...pairwiseBody }),
  z.strictObject({ v, type: z.literal('receipt'), id: wireId, status: receiptStatus, ...groupBody }),
]);
/** "I have processed every envelope up to and including `upTo`": deletes them from this device's mailbox. */
export const ackFrame = z.strictObject({ v, type: z.literal('ack'), upTo: seq });
/** "The last seq I processed is `after`": the server replays everything after it, in order. */
export const resumeRequestFrame = z.strictObject({ v, type: z.literal('resume'), after: seq });

// ---- typing (issue 17): ephemeral — relayed to live sockets only, never sequenced or stored ------------
const typingCiphertext = z
  .string()
  .min(1)
  .max(Math.ceil((MAX_TYPING_CIPHERTEXT_BYTES * 4) / 3))
  .regex(/^[A-Za-z0-9_-]+$/);
/**
 * "I am typing / I stopped": an encrypted `typing` payload (docs/PROTOCOL.md §"Content types"), either one
 * ciphertext per device we already have a session with (`to`, a subset of the recipients) or one
 * sender-key ciphertext (`group`). The DO relays it to the addressed devices' live sockets and forgets it.
 */
export const typingFrame = z.union([
  z.strictObject({
    v,
    type: z.literal('typing'),
    to: z
      .array(z.strictObject({ u: wireId, d: wireId, c: typingCiphertext }))
      .min(1)
      .max(MAX_PAIRWISE_RECIPIENTS),
  }),
  z.strictObject({ v, type: z.literal('typing'), group: typingCiphertext }),
]);
export type TypingFrame = z.infer<typeof typingFrame>;

export const clientFrame = z.union([sendFrame, receiptFrame, ackFrame, resumeRequestFrame, typingFrame]);
export type ClientFrame = z.infer<typeof clientFrame>;
export type SendFrame = z.infer<typeof sendFrame>;
export type ReceiptFrame = z.infer<typeof receiptFrame>;
export const CLIENT_FRAME_TYPES = ['send', 'receipt', 'ack', 'resume', 'typing'] as const;

// ---- server → client ------------------------------------------------------------------------------------

/** The message is durably stored with this `seq`/`ts`; `duplicate` when the id was seen before. */
export const acceptedFrame = z.strictObject({
  v,
  type: z.literal('accepted'),
  id: wireId,
  seq,
  ts: z.number().int(),
  duplicate: z.literal(true).optional(),
});

/**
 * The answer to several sends of one socket stored by the same commit: one entry per send, in the order
 * they were sent (a new message's seq rises with it), each meaning what an `accepted` frame means; a lone
 * answer is still an `accepted` frame. One frame instead of one per message: the platform's per-frame cost
 * is the largest single item of a busy conversation's object.
 */
export const acceptedBatchFrame = z.strictObject({
  v,
  type: z.literal('accepted_batch'),
  accepted: z
    .array(z.strictObject({ id: wireId, seq, ts: z.number().int(), duplicate: z.literal(true).optional() }))
    .min(2)
    .max(MAX_ACCEPTED_BATCH),
});

/** One envelope as a recipient device sees it (live, on resume, and from GET /api/mailbox). */
export const envelope = z.strictObject({
  seq,
  ts: z.number().int(),
  from: z.strictObject({ u: wireId, d: wireId }),
  id: wireId,
  kind: z.enum(['message', 'receipt']),
  status: receiptStatus.optional(),
  mode: z.enum(['pairwise', 'group']),
  c: ciphertextB64u,
});
export type Envelope = z.infer<typeof envelope>;

/** One envelope of a GET /api/mailbox page: the wire `envelope` and its conversation. */
export const mailboxEnvelope = envelope.extend({ conversationId: wireId });
export type MailboxEnvelope = z.infer<typeof mailboxEnvelope>;
/** Where the following GET /api/mailbox page starts (after this conversation and seq). */
export const mailboxCursor = z.strictObject({ afterConversation: z.union([wireId, z.literal('')]), afterSeq: seq });
export type MailboxCursor = z.infer<typeof mailboxCursor>;
/**
 * GET /api/mailbox's answer; `next` is null on the last page. A client checks the page's shape as a whole and
 * each envelope on its own (`mailboxEnvelope`): one malformed row does not cost the rest of the page.
 */
export const mailboxPage = z.strictObject({ envelopes: z.array(z.unknown()), next: mailboxCursor.nullable() });
export type MailboxPage = { envelopes: MailboxEnvelope[]; next: MailboxCursor | null };

export const deliverFrame = z.strictObject({
  v,
  type: z.literal('deliver'),
  envelopes: z.array(envelope).min(1).max(MAX_DELIVER_BATCH),
});

/** A membership change: the signed log entry (base64url), who was removed, and the seq it follows. */
export const membershipFrame = z.strictObject({
  v,
  type: z.literal('membership'),
  entry: z.string(),
  removed: z.array(wireId),
  afterSeq: seq,
});

/**
 * A member's device set changed (a device was linked, registered or removed; issue 14): a hint to fetch
 * and verify that user's signed device list again, so their new device gets sender keys at once. Clients
 * never trust the frame itself — only a list signed by the identity key they trust.
 */
export const devicesFrame = z.strictObject({ v, type: z.literal('devices'), userId: wireId });

/** End of a resume replay: everything up to `through` was sent; `more` means resume again from it. */
export const resumedFrame = z.strictObject({
  v,
  type: z.literal('resume'),
  after: seq,
  through: seq,
  more: z.boolean(),
});

/** A typing signal relayed from a live member device (never stored; lost if this socket was not live). */
export const typingRelayFrame = z.strictObject({
  v,
  type: z.literal('typing'),
  from: z.strictObject({ u: wireId, d: wireId }),
  mode: z.enum(['pairwise', 'group']),
  c: typingCiphertext,
});

export const ERROR_CODES = [
  'bad_frame',
  'unknown_type',
  'unsupported_version',
  'frame_too_large',
  'device_mismatch',
  'duplicate_recipient',
  'rate_limited',
  'not_member',
  'unavailable',
  'internal',
] as const;
export type WireErrorCode = (typeof ERROR_CODES)[number];

const deviceRef = z.strictObject({ u: wireId, d: wireId });
export const errorFrame = z.strictObject({
  v,
  type: z.literal('error'),
  code: z.enum(ERROR_CODES),
  message: z.string(),
  /** The client message id the error refers to, when known. */
  id: wireId.optional(),
  /** device_mismatch: current devices not addressed / addressed devices that are not recipients / revoked. */
  missing: z.array(deviceRef).optional(),
  extra: z.array(deviceRef).optional(),
  stale: z.array(deviceRef).optional(),
  retryAfterMs: z.number().int().nonnegative().optional(),
});

export const serverFrame = z.union([
  acceptedFrame,
  acceptedBatchFrame,
  deliverFrame,
  membershipFrame,
  resumedFrame,
  errorFrame,
  typingRelayFrame,
  devicesFrame,
]);
export type ServerFrame = z.infer<typeof serverFrame>;
export type AcceptedFrame = z.infer<typeof acceptedFrame>;
export type AcceptedBatchFrame = z.infer<typeof acceptedBatchFrame>;
export type DeliverFrame = z.infer<typeof deliverFrame>;
export type MembershipFrame = z.infer<typeof membershipFrame>;
export type ResumedFrame = z.infer<typeof resumedFrame>;
export type ErrorFrame = z.infer<typeof errorFrame>;
export type TypingRelayFrame = z.infer<typeof typingRelayFrame>;
export type DevicesFrame = z.infer<typeof devicesFrame>;
export type DeviceRef = z.infer<typeof deviceRef>;
