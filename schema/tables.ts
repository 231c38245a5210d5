/**
 * D1 schema (drizzle-orm). Every change here is followed by `npm run db:generate`, which writes a new SQL
 * migration into schema/migrations/ — never edit a generated migration by hand.
 *
 * What the server stores: public keys, signed structures (device certificates and lists, membership
 * logs), hashes of secrets, encrypted TOTP secrets and (issue 5) ciphertext envelopes. Never a private
 * key, a plaintext, a password or a token in clear. Binary columns hold the exact bytes clients signed.
 * Times are milliseconds since the epoch (integer).
 */
import { sql } from 'drizzle-orm';
import { blob, index, integer, primaryKey, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';

const bytes = (name: string) => blob(name, { mode: 'buffer' }).$type<Uint8Array>();
const now = sql`(unixepoch() * 1000)`;

// ---- Accounts ----------------------------------------------------------------------------------------

export const users = sqliteTable(
  'users',
  {
    id: text('id').primaryKey(),
    /** Normalised username (NFKC, case-folded, documented character set). */
    username: text('username').notNull(),
    /** Ed25519 user identity public key (32 bytes). Changes only through an audited identity reset. */
    identityKey: bytes('identity_key').notNull(),
    /** Bumped on every identity reset, so clients can show a key-change notice. */
    identityVersion: integer('identity_version').notNull().default(1),
    /** Server-side hash over the client's argon2id pre-hash (see worker/auth/password.ts). */
    passwordHash: bytes('password_hash').notNull(),
    passwordSalt: bytes('password_salt').notNull(),
    /** JSON: the parameters of both hashing stages, stored with each hash so they can be raised. */
    passwordParams: text('password_params').notNull(),
    createdAt: integer('created_at').notNull().default(now),
  },
  (t) => [uniqueIndex('users_username_uq').on(t.username)],
);

export const devices = sqliteTable(
  'devices',
  {
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    deviceId: text('device_id').notNull(),
    /** The device certificate exactly as the user identity key signed it. */
    certificate: bytes('certificate').notNull(),
    /** Ed25519 device signing key (from the certificate; verifies login challenges and prekeys). */
    signingKey: bytes('signing_key').notNull(),
    /** X25519 device identity key (from the certificate). */
    identityKey: bytes('identity_key').notNull(),
    createdAt: integer('created_at').notNull().default(now),
    lastSeenAt: integer('last_seen_at'),
    revokedAt: integer('revoked_at'),
    /**
     * The device's name, encrypted by the user's devices under a key derived from the user identity secret
     * (web/src/protocol/account-keys.ts; 93 bytes, fixed length). The server never sees the name.
     */
    nameEnc: bytes('name_enc'),
  },
  (t) => [primaryKey({ columns: [t.userId, t.deviceId] })],
);

/** Each user's latest signed device list (clients verify it; the server checks version + 1 and signature). */
export const deviceLists = sqliteTable('device_lists', {
  userId: text('user_id')
    .primaryKey()
    .references(() => users.id, { onDelete: 'cascade' }),
  version: integer('version').notNull(),
  list: bytes('list').notNull(),
  updatedAt: integer('updated_at').notNull().default(now),
});

// ---- Linking devices (issue 14) -------------------------------------------------------------------------

/**
 * Single-use linking tokens: issued to a signed-in device for one provisioning channel it claimed, sealed
 * into the provisioning message, redeemed once by the new device (POST /api/devices) together with a
 * signature by the new device's key. Only HMAC(TOKEN_HASH_KEY, "linking:" ‖ token) is stored.
 */
export const linkingTokens = sqliteTable(
  'linking_tokens',
  {
    tokenHash: bytes('token_hash').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    /** The device that asked for the token (the one linking). */
    issuedBy: text('issued_by').notNull(),
    channelId: text('channel_id').notNull(),
    expiresAt: integer('expires_at').notNull(),
    usedAt: integer('used_at'),
    /** The device that redeemed it: the token is spent on exactly this device key. */
    usedBy: text('used_by'),
  },
  (t) => [index('linking_tokens_user_idx').on(t.userId), index('linking_tokens_expiry_idx').on(t.expiresAt)],
);

// ---- Key directory -------------------------------------------------------------------------------------

export const signedPrekeys = sqliteTable(
  'signed_prekeys',
  {
    userId: text('user_id').notNull(),
    deviceId: text('device_id').notNull(),
    keyId: integer('key_id').notNull(),
    publicKey: bytes('public_key').notNull(),
    signature: bytes('signature').notNull(),
    createdAt: integer('created_at').notNull().default(now),
  },
  (t) => [primaryKey({ columns: [t.userId, t.deviceId, t.keyId] })],
);

export const oneTimePrekeys = sqliteTable(
  'one_time_prekeys',
  {
    userId: text('user_id').notNull(),
    deviceId: text('device_id').notNull(),
    keyId: integer('key_id').notNull(),
    publicKey: bytes('public_key').notNull(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.deviceId, t.keyId] })],
);

/** ML-KEM-1024 prekeys: one-time ones are taken by claims; the last-resort one is reused until replaced. */
export const kemPrekeys = sqliteTable(
  'kem_prekeys',
  {
    userId: text('user_id').notNull(),
    deviceId: text('device_id').notNull(),
    keyId: integer('key_id').notNull(),
    publicKey: bytes('public_key').notNull(),
    signature: bytes('signature').notNull(),
    lastResort: integer('last_resort', { mode: 'boolean' }).notNull(),
    createdAt: integer('created_at').notNull().default(now),
  },
  (t) => [
    primaryKey({ columns: [t.userId, t.deviceId, t.keyId] }),
    index('kem_prekeys_claim_idx').on(t.userId, t.deviceId, t.lastResort),
  ],
);

// ---- Sessions, tokens, MFA -----------------------------------------------------------------------------

/** One family per signed-in device session; every refresh token descends from it. */
export const tokenFamilies = sqliteTable(
  'token_families',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    deviceId: text('device_id').notNull(),
    createdAt: integer('created_at').notNull().default(now),
    revokedAt: integer('revoked_at'),
    revokeReason: text('revoke_reason'),
    /**
     * The family's position: how many rotations it has had. A refresh token of an older generation that was
     * never rotated (the sibling a grace re-issue made, when the other sibling has moved on) is reuse.
     */
    generation: integer('generation').notNull().default(0),
    /** When `generation` last advanced. */
    generationAt: integer('generation_at'),
    /** Hash of the token the last rotation issued (lets that rotation's statements run in one batch). */
    headTokenHash: bytes('head_token_hash'),
  },
  (t) => [index('token_families_user_idx').on(t.userId, t.deviceId)],
);

/** Refresh tokens, stored as keyed hashes only. */
export const refreshTokens = sqliteTable(
  'refresh_tokens',
  {
    tokenHash: bytes('token_hash').primaryKey(),
    familyId: text('family_id')
      .notNull()
      .references(() => tokenFamilies.id, { onDelete: 'cascade' }),
    createdAt: integer('created_at').notNull().default(now),
    expiresAt: integer('expires_at').notNull(),
    /** Set when this token was exchanged for its successor; presenting it again is reuse. */
    rotatedAt: integer('rotated_at'),
    /**
     * Set when the one re-issue allowed within LIMITS.refreshGraceMs of the rotation (a second tab
     * refreshing at the same moment) was used; any further presentation in the window gets no token.
     */
    graceUsedAt: integer('grace_used_at'),
    /** The family generation this token belongs to (its successor is generation + 1). */
    generation: integer('generation').notNull().default(0),
  },
  (t) => [index('refresh_tokens_family_idx').on(t.familyId)],
);

/**
 * Single-use login challenges the device signs with its device signing key. Neither the challenge id nor
 * the challenge is stored: the row key is HMAC(TOKEN_HASH_KEY, "challenge:" ‖ id) and the challenge is
 * re-derived from the id under the same key (worker/routes/auth.ts).
 */
export const loginChallenges = sqliteTable(
  'login_challenges',
  {
    idHash: bytes('id_hash').primaryKey(),
    expiresAt: integer('expires_at').notNull(),
  },
  (t) => [index('login_challenges_expiry_idx').on(t.expiresAt)],
);

/** A login that passed password + device signature and waits for its TOTP / recovery code (single use). */
export const mfaPending = sqliteTable(
  'mfa_pending',
  {
    tokenHash: bytes('token_hash').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    deviceId: text('device_id').notNull(),
    expiresAt: integer('expires_at').notNull(),
  },
  (t) => [index('mfa_pending_user_idx').on(t.userId), index('mfa_pending_expiry_idx').on(t.expiresAt)],
);

export const totpSecrets = sqliteTable('totp_secrets', {
  userId: text('user_id')
    .primaryKey()
    .references(() => users.id, { onDelete: 'cascade' }),
  /** AES-256-GCM(TOTP_ENCRYPTION_KEY) of the secret: nonce ‖ ciphertext. */
  secretEnc: bytes('secret_enc').notNull(),
  /** Null until the user confirms enrolment with a valid code. */
  enabledAt: integer('enabled_at'),
  /** Highest time step accepted, so no code is accepted twice. */
  lastStep: integer('last_step').notNull().default(0),
});

export const recoveryCodes = sqliteTable(
  'recovery_codes',
  {
    codeHash: bytes('code_hash').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    usedAt: integer('used_at'),
  },
  (t) => [index('recovery_codes_user_idx').on(t.userId)],
);

// ---- Conversations -------------------------------------------------------------------------------------

export const conversations = sqliteTable('conversations', {
  id: text('id').primaryKey(),
  kind: text('kind', { enum: ['direct', 'group'] }).notNull(),
  /** Sequence number and hash of the latest membership-log entry (the chain head). */
  headSeq: integer('head_seq').notNull(),
  headHash: bytes('head_hash').notNull(),
  /**
   * The disappearing-message timer (seconds, 0 = off) as the last verified `set_timer` entry set it, written
   * in the same batch as that entry. The ConversationDO and the mailbox clean-up delete pending envelopes
   * older than it (issue 17: the server's mailbox TTL never outlives the timer).
   */
  timerSeconds: integer('timer_seconds').notNull().default(0),
  createdAt: integer('created_at').notNull().default(now),
});

/** The signed, hash-chained membership log, exactly as members signed it. */
export const membershipLog = sqliteTable(
  'membership_log',
  {
    conversationId: text('conversation_id')
      .notNull()
      .references(() => conversations.id, { onDelete: 'cascade' }),
    seq: integer('seq').notNull(),
    entry: bytes('entry').notNull(),
    entryHash: bytes('entry_hash').notNull(),
    authorUserId: text('author_user_id').notNull(),
    authorDeviceId: text('author_device_id').notNull(),
    createdAt: integer('created_at').notNull().default(now),
  },
  (t) => [primaryKey({ columns: [t.conversationId, t.seq] })],
);

/** Current members and roles: the fold of the membership log, kept for authorisation lookups. */
export const members = sqliteTable(
  'members',
  {
    conversationId: text('conversation_id')
      .notNull()
      .references(() => conversations.id, { onDelete: 'cascade' }),
    userId: text('user_id').notNull(),
    role: text('role', { enum: ['owner', 'admin', 'member'] }).notNull(),
    joinedSeq: integer('joined_seq').notNull(),
  },
  (t) => [primaryKey({ columns: [t.conversationId, t.userId] }), index('members_user_idx').on(t.userId)],
);

// ---- Delivery: per-device mailboxes and WebSocket tickets (issue 5) ------------------------------------

/**
 * Each recipient device's pending envelopes, written by the ConversationDO's outbox flush (idempotent on
 * conversation + seq + device: INSERT … ON CONFLICT DO NOTHING) and deleted when that device acks, when the
 * device is revoked, or after `expires_at` (DELIVERY_LIMITS.mailboxTtlMs, 30 days) by the scheduled clean-up.
 * `ciphertext` is the device's own pairwise ciphertext, or NULL for a sender-key message whose single
 * ciphertext is stored once in group_envelopes. The primary key orders a device's mailbox by
 * (conversation, seq), which is the page order of GET /api/mailbox.
 */
export const mailbox = sqliteTable(
  'mailbox',
  {
    userId: text('user_id').notNull(),
    deviceId: text('device_id').notNull(),
    conversationId: text('conversation_id').notNull(),
    seq: integer('seq').notNull(),
    ts: integer('ts').notNull(),
    senderUserId: text('sender_user_id').notNull(),
    senderDeviceId: text('sender_device_id').notNull(),
    clientMsgId: text('client_msg_id').notNull(),
    /** 'message' | 'receipt' (and the receipt's 'delivered' | 'read' status). */
    kind: text('kind', { enum: ['message', 'receipt'] }).notNull(),
    status: text('status', { enum: ['delivered', 'read'] }),
    ciphertext: bytes('ciphertext'),
    expiresAt: integer('expires_at').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.userId, t.deviceId, t.conversationId, t.seq] }),
    index('mailbox_expiry_idx').on(t.expiresAt),
    index('mailbox_conv_seq_idx').on(t.conversationId, t.seq),
  ],
);

/** Sender-key (group) ciphertexts, stored once per message instead of once per recipient device. */
export const groupEnvelopes = sqliteTable(
  'group_envelopes',
  {
    conversationId: text('conversation_id').notNull(),
    seq: integer('seq').notNull(),
    ciphertext: bytes('ciphertext').notNull(),
    expiresAt: integer('expires_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.conversationId, t.seq] }), index('group_envelopes_expiry_idx').on(t.expiresAt)],
);

/**
 * Single-use WebSocket tickets (≤ 30 s), bound to user + device + conversation. Only
 * HMAC(TOKEN_HASH_KEY, "ticket:" ‖ ticket) is stored; the upgrade consumes the row with DELETE … RETURNING.
 */
export const wsTickets = sqliteTable(
  'ws_tickets',
  {
    ticketHash: bytes('ticket_hash').primaryKey(),
    userId: text('user_id').notNull(),
    deviceId: text('device_id').notNull(),
    /** The session (token family) that minted it: the upgrade requires it still live (not signed out). */
    familyId: text('family_id').notNull(),
    conversationId: text('conversation_id').notNull(),
    expiresAt: integer('expires_at').notNull(),
  },
  (t) => [index('ws_tickets_expiry_idx').on(t.expiresAt)],
);

// ---- Attachments (issue 16) ------------------------------------------------------------------------------

/**
 * Encrypted attachment blobs in R2 (binding ATTACHMENTS, object key = id). Only what the server needs to
 * authorise, bill and expire: the id, the conversation whose current members may fetch it, the uploading
 * account, the ciphertext size and times — never a name, type, dimension or key (those travel inside the
 * end-to-end encrypted message). A row is a reservation until `uploaded_at` is set by a complete upload.
 * Deleted with its blob by the scheduled clean-up (worker/domain/attachments.ts: after the retention period,
 * or a day for reservations never uploaded) and by `deleteUserAttachments` when the account goes.
 */
export const attachments = sqliteTable(
  'attachments',
  {
    id: text('id').primaryKey(),
    conversationId: text('conversation_id').notNull(),
    uploaderUserId: text('uploader_user_id').notNull(),
    /** Ciphertext bytes the upload must carry, exactly. */
    size: integer('size').notNull(),
    createdAt: integer('created_at').notNull(),
    uploadedAt: integer('uploaded_at'),
  },
  (t) => [
    index('attachments_uploader_idx').on(t.uploaderUserId, t.createdAt),
    index('attachments_created_idx').on(t.createdAt),
  ],
);

// ---- People: profiles and private settings (issue 17) ---------------------------------------------------

/**
 * Each user's sealed profile (web/src/protocol/profile.ts): display name and avatar under a profile key the
 * server never sees. Served to any signed-in user; only the owner writes it.
 */
export const profiles = sqliteTable('profiles', {
  userId: text('user_id')
    .primaryKey()
    .references(() => users.id, { onDelete: 'cascade' }),
  /** One of the five sealed-profile lengths (285 … 32,797 bytes), version byte 1. */
  sealed: bytes('sealed').notNull(),
  updatedAt: integer('updated_at').notNull().default(now),
});

/**
 * Each user's sealed private settings (web/src/protocol/private-settings.ts): profile key, blocks, mutes,
 * accepted people and conversations — readable only by the user's own devices. `revision` is the one the
 * sealed bytes carry; a write must carry exactly revision + 1 (compare-and-swap).
 */
export const privateSettings = sqliteTable('private_settings', {
  userId: text('user_id')
    .primaryKey()
    .references(() => users.id, { onDelete: 'cascade' }),
  revision: integer('revision').notNull(),
  sealed: bytes('sealed').notNull(),
  updatedAt: integer('updated_at').notNull().default(now),
});

// ---- Audit -----------------------------------------------------------------------------------------------

/** Security-relevant events. `details` is JSON of ids and counts only — never secrets or plaintext. */
export const auditEvents = sqliteTable(
  'audit_events',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    at: integer('at').notNull().default(now),
    event: text('event').notNull(),
    userId: text('user_id'),
    deviceId: text('device_id'),
    /** Keyed hash of the client address (rate-limit and abuse forensics without storing the address). */
    clientHash: text('client_hash'),
    details: text('details'),
  },
  (t) => [index('audit_events_user_idx').on(t.userId, t.at)],
);

// ---- Account deletion (issue 18) ----------------------------------------------------------------------------

/**
 * Usernames of deleted accounts, blocked for LIMITS.usernameCooldownMs so nobody can take a name over at
 * once. Only HMAC(TOKEN_HASH_KEY, "username:" ‖ normalised name) is kept — no account id, nothing else.
 */
export const releasedUsernames = sqliteTable('released_usernames', {
  nameHash: bytes('name_hash').primaryKey(),
  blockedUntil: integer('blocked_until').notNull(),
});

// ---- Webhooks (issue 15): notify-only endpoints, their delivery log and the event outbox -----------------

/**
 * An account's webhook endpoints (at most WEBHOOK_LIMITS.maxEndpointsPerAccount). The signing secret is
 * stored only encrypted (AES-256-GCM under a key derived from TOTP_ENCRYPTION_KEY, AD = endpoint id); after
 * a rotation the previous secret keeps signing alongside the new one until `prev_expires_at` (24 h).
 */
export const webhookEndpoints = sqliteTable(
  'webhook_endpoints',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    url: text('url').notNull(),
    description: text('description').notNull().default(''),
    /** JSON array of subscribed event types (worker/webhooks/events.ts). */
    eventTypes: text('event_types').notNull(),
    /** Only events of this conversation (message and membership events); null = every conversation. */
    conversationId: text('conversation_id'),
    secretEnc: bytes('secret_enc').notNull(),
    prevSecretEnc: bytes('prev_secret_enc'),
    prevExpiresAt: integer('prev_expires_at'),
    enabled: integer('enabled', { mode: 'boolean' }).notNull().default(true),
    /** Why delivery stopped (`retries_exhausted`, `gone`), with the last failure; null while enabled. */
    disabledReason: text('disabled_reason'),
    disabledAt: integer('disabled_at'),
    lastSuccessAt: integer('last_success_at'),
    createdAt: integer('created_at').notNull().default(now),
    updatedAt: integer('updated_at').notNull().default(now),
  },
  (t) => [index('webhook_endpoints_user_idx').on(t.userId)],
);

/** Delivery attempts, newest kept: at most WEBHOOK_LIMITS.deliveriesKept per endpoint (older ones pruned). */
export const webhookDeliveries = sqliteTable(
  'webhook_deliveries',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    endpointId: text('endpoint_id')
      .notNull()
      .references(() => webhookEndpoints.id, { onDelete: 'cascade' }),
    /** The `webhook-id` (same for every attempt of one event). */
    eventId: text('event_id').notNull(),
    eventType: text('event_type').notNull(),
    attempt: integer('attempt').notNull(),
    status: text('status', { enum: ['succeeded', 'failed'] }).notNull(),
    /** The receiver's HTTP status, or null when no response came (timeout, network, refused URL). */
    httpStatus: integer('http_status'),
    /** Stable failure code (`http_status`, `timeout`, `network`, `redirect`, `url_refused`); null on success. */
    error: text('error'),
    latencyMs: integer('latency_ms').notNull(),
    /** When the next attempt is scheduled (null: succeeded, or no attempt left). */
    nextRetryAt: integer('next_retry_at'),
    at: integer('at').notNull(),
  },
  (t) => [index('webhook_deliveries_endpoint_idx').on(t.endpointId, t.id)],
);

/**
 * Events of changes made through the Worker (membership, devices, identity), written in the same D1 batch as
 * the change and deleted once the Queue accepted them; the per-minute cron re-sends rows left behind (a
 * Worker that died between commit and send). `message.created` does not use it: the ConversationDO emits
 * those from its own durable log (worker/webhooks/emit.ts).
 */
export const webhookOutbox = sqliteTable(
  'webhook_outbox',
  {
    id: text('id').primaryKey(),
    /** The queue message (JSON: event ids, types, ids of users and conversations — never content). */
    body: text('body').notNull(),
    createdAt: integer('created_at').notNull(),
  },
  (t) => [index('webhook_outbox_created_idx').on(t.createdAt)],
);
