/**
 * Every limit, version byte and KDF label of the protocol, each with the reason for its value.
 * docs/PROTOCOL.md §"Constants" mirrors this file; change both together.
 *
 * Does NOT: contain logic. Labels are ASCII and unique per use so no two derivations can collide.
 * @module
 */

// ---- Versions -------------------------------------------------------------------------------------
/** Version byte leading every serialized protocol structure and message; bump on any layout change. */
export const PROTOCOL_VERSION = 1;
/** Version of serialized local state (sessions, sender keys); lets clients migrate stored records. */
export const STATE_VERSION = 1;

// ---- Key agreement (PQXDH, Signal PQXDH spec rev. 3) ------------------------------------------------
/** KDF info for PQXDH: names our protocol and its primitives, as PQXDH §2.2 asks. */
export const LABEL_PQXDH = 'e2e-chat/v1 PQXDH X25519 SHA-256 ML-KEM-1024';
/** 32 0xFF bytes prepended to the DH inputs (X3DH §2.2 "F") so the KDF input never starts like a scalar. */
export const PQXDH_F_LEN = 32;

// ---- Double Ratchet (Signal Double Ratchet spec rev. 4) ---------------------------------------------
/** HKDF info of KDF_RK (root key step); distinct from every other label so no derivation can collide. */
export const LABEL_ROOT = 'e2e-chat/v1 root';
/** HKDF info expanding a pairwise message-key seed into AES-256 key ‖ GCM nonce (44 bytes). */
export const LABEL_MESSAGE_KEYS = 'e2e-chat/v1 message keys';
/** Chain KDF constants (Double Ratchet §5.2 recommendation, as in libsignal): HMAC(ck, 0x01) / 0x02. */
export const CHAIN_MESSAGE_KEY_SEED = 0x01;
export const CHAIN_NEXT_KEY_SEED = 0x02;
/** Max message keys skipped in one chain: bounds work per received message (libsignal uses 2000). */
export const MAX_SKIP = 2000;
/** Max skipped keys kept per session; oldest evicted first (libsignal keeps 2000 as well). */
export const MAX_SKIPPED_KEYS = 2000;
/** Old receiving chains kept for late messages after a DH step (libsignal: 5). */
export const MAX_RECEIVER_CHAINS = 5;
/** Previous sessions kept per remote device for late messages after re-keying (libsignal: 40). */
export const MAX_ARCHIVED_SESSIONS = 40;
/** A session not acknowledged by the peer for this long must not be used to send (PITFALLS 13). */
export const SESSION_UNACKED_MAX_AGE_MS = 30 * 24 * 3600 * 1000;
/** Archived sessions are dropped after this long (late messages older than this are lost). */
export const ARCHIVED_SESSION_MAX_AGE_MS = 30 * 24 * 3600 * 1000;

// ---- Sender keys (groups) -------------------------------------------------------------------------
/** Prefix of the sender-chain HMAC inputs (‖ 0x01 / 0x02): separates group chains from pairwise chains. */
export const LABEL_SENDER_CHAIN = 'e2e-chat/v1 sender chain';
/** HKDF info expanding a sender-key message seed into AES-256 key ‖ GCM nonce (44 bytes). */
export const LABEL_SENDER_MESSAGE_KEYS = 'e2e-chat/v1 sender message keys';
/** Max indices skipped in one sender chain (libsignal: 2000). */
export const MAX_SENDER_SKIP = 2000;
/** Skipped sender message keys kept per sender state. */
export const MAX_SENDER_SKIPPED_KEYS = 2000;
/** Sender-key states kept per (sender device, conversation) for late messages after rotation. */
export const MAX_SENDER_KEY_STATES = 5;

// ---- Identities, devices, membership --------------------------------------------------------------
/** Domain-separation prefixes for every signature, so no signed structure can be replayed as another. */
export const SIG_DEVICE_CERT = 'e2e-chat/v1 device certificate';
export const SIG_DEVICE_LIST = 'e2e-chat/v1 device list';
export const SIG_SIGNED_PREKEY = 'e2e-chat/v1 signed prekey';
export const SIG_KEM_PREKEY = 'e2e-chat/v1 kem prekey';
export const SIG_MEMBERSHIP = 'e2e-chat/v1 membership entry';
export const SIG_SENDER_MESSAGE = 'e2e-chat/v1 sender key message';
export const SIG_LOGIN_CHALLENGE = 'e2e-chat/v1 login challenge';
/** Devices per user: bounds device-list size and pairwise fan-out (Signal allows 5 linked devices + 1). */
export const MAX_DEVICES_PER_USER = 10;
/** Members per conversation: bounds pairwise fan-out and membership log verification cost. */
export const MAX_MEMBERS = 256;
/** Max bytes of a user id, device id or conversation id in any structure. */
export const MAX_ID_LEN = 64;
/** Max bytes of a conversation title in a membership entry. */
export const MAX_TITLE_LEN = 256;
/** Login challenge bytes: at least 128 bits so a signature cannot be precomputed, bounded for the server. */
export const LOGIN_CHALLENGE_MIN_LEN = 16;
export const LOGIN_CHALLENGE_MAX_LEN = 256;
/** Entries in one membership log verification: bounds server and client work per conversation. */
export const MAX_MEMBERSHIP_ENTRIES = 100_000;
/** One-time X25519 prekeys per upload (Signal uploads 100 at a time): bounds request size and server work. */
export const MAX_ONE_TIME_PREKEYS_PER_UPLOAD = 100;
/** ML-KEM prekeys per upload: each is 1.6 KB public + 64 B signature, so 100 ≈ 165 KB per request. */
export const MAX_KEM_PREKEYS_PER_UPLOAD = 100;

// ---- People: profiles and private settings (profile.ts, private-settings.ts) ---------------------------
/** HKDF info turning a 32-byte profile key into the AES-256 key that seals its owner's profile. */
export const LABEL_PROFILE = 'e2e-chat/v1 profile';
/** AEAD label of a sealed profile (bound with the owner's user id: a profile cannot be moved to another user). */
export const LABEL_PROFILE_AAD = 'e2e-chat/v1 profile aad';
/** Bytes of a profile key (random, shared only inside end-to-end encrypted messages). */
export const PROFILE_KEY_LEN = 32;
/** Max UTF-8 bytes of a display name (Signal allows 26 + 26 characters; this leaves room for any script). */
export const MAX_PROFILE_NAME_LEN = 128;
/** Max bytes of an avatar image: the client resizes to 128 × 128 and re-encodes, which stays far below. */
export const MAX_AVATAR_LEN = 24 * 1024;
/**
 * Padded profile sizes: a profile is padded to the smallest bucket that fits, so the server learns only
 * "no avatar" / "small avatar" / "larger avatar", never the name's length or the image's exact size.
 */
export const PROFILE_BUCKETS = [256, 1024, 4096, 16384, 32768] as const;
/** HKDF info deriving the private-settings key from the user identity seed every own device holds. */
export const LABEL_PRIVATE_SETTINGS = 'e2e-chat/v1 private settings';
/** AEAD label of the sealed private settings (bound with the user id and the revision). */
export const LABEL_PRIVATE_SETTINGS_AAD = 'e2e-chat/v1 private settings aad';
/** Entries (blocks, mutes, accepted people and conversations, hidden requests) in the private settings. */
export const MAX_SETTINGS_ENTRIES = 2048;
/** Padded private-settings sizes (as PROFILE_BUCKETS): the server learns the size class only. */
export const SETTINGS_BUCKETS = [1024, 4096, 16384, 65536, 131072] as const;

// ---- Linking a device (docs/PROTOCOL.md §"Linking") -----------------------------------------------
/** Version byte of the link code the new device shows (QR and text); bumped on any change of its layout. */
export const LINK_CODE_VERSION = 1;
/** Prefix of the link code's text form (the QR carries the same text), so a pasted code is recognisable. */
export const LINK_CODE_PREFIX = 'e2echat-link:';
/** Raw bytes of a provisioning channel id (128 bits from the new device's rng; 22 base64url characters). */
export const LINK_CHANNEL_ID_LEN = 16;
/** Max UTF-8 bytes of the server origin in a link code (scheme, host and port only). */
export const MAX_LINK_ORIGIN_LEN = 255;
/** HKDF info of the provisioning message's key, nonce and channel key (one X25519 exchange, used once). */
export const LABEL_PROVISIONING = 'e2e-chat/v1 provisioning';
/**
 * Prefix of the value the new device signs (as a login challenge) when it redeems its linking token:
 * SHA-256(LABEL_LINKING_PROOF ‖ token). Binds the single-use token to the new device's signing key.
 */
export const LABEL_LINKING_PROOF = 'e2e-chat/v1 linking token proof';
/** HKDF info of the per-direction keys that seal every channel frame after the provisioning message. */
export const LABEL_TRANSFER = 'e2e-chat/v1 transfer';
/** HKDF info of the keys derived from the user identity secret for data only the user's devices read. */
export const LABEL_ACCOUNT_KEYS = 'e2e-chat/v1 account keys';
/** AEAD associated-data label of an encrypted device name. */
export const LABEL_DEVICE_NAME = 'e2e-chat/v1 device name';
/** HMAC input label of the id of the user's own sync conversation (read positions across own devices). */
export const LABEL_SELF_CONVERSATION = 'e2e-chat/v1 self conversation';
/** Device names are padded to this many bytes before encryption, so the server learns not even their length. */
export const DEVICE_NAME_PADDED_LEN = 64;
/** Max UTF-8 bytes of a device name (one byte of the padded length is the 0x80 padding marker). */
export const MAX_DEVICE_NAME_LEN = DEVICE_NAME_PADDED_LEN - 1;
/** Max bytes of a single-use linking token inside a provisioning message (the server issues 32). */
export const MAX_LINKING_TOKEN_LEN = 64;
/** Max UTF-8 bytes of a username inside a provisioning message (the server allows 3–32 ASCII). */
export const MAX_LINK_USERNAME_LEN = 64;
/** Contacts' trust state carried by one provisioning message (≈ 140 B each): bounds its size (~140 KB). */
export const MAX_LINK_CONTACTS = 1000;
/** Max bytes of the device list inside a provisioning message (10 certificates are ≈ 2 KB). */
export const MAX_LINK_DEVICE_LIST_LEN = 8192;
/** Provisioning messages and channel frames are padded (0x80 then zeros) to a multiple of this. */
export const LINK_PADDING_BLOCK = 1024;
/** Max record bytes in one history chunk: a sealed chunk stays well under the relay's per-message limit. */
export const MAX_HISTORY_CHUNK_LEN = 192 * 1024;
/** Max messages in one history transfer (the sender's cap; the receiver refuses more). */
export const MAX_HISTORY_MESSAGES = 10_000;
/** Max record bytes in one history transfer (the sender's cap; the receiver refuses more). */
export const MAX_HISTORY_BYTES = 50 * 1024 * 1024;
/**
 * Max chunks in one history transfer. Records never straddle chunks, so a chunk may close early (by up to one
 * record, MAX_HISTORY_RECORD_LEN): 50 MiB / (192 − 65) KiB ≈ 404 in the worst case.
 */
export const MAX_HISTORY_CHUNKS = 512;
/** Max bytes of one record body in a history chunk (a message of MAX_PLAINTEXT_LEN plus its fields). */
export const MAX_HISTORY_RECORD_LEN = 64 * 1024 + 1024;
// ---- Key transparency (RFC 9162 Merkle tree; see merkle.ts, transparency.ts) ------------------------
/** Signature label of a signed tree head (the log key signs nothing else). */
export const SIG_KT_TREE_HEAD = 'e2e-chat/v1 kt tree head';
/** Hashes in one inclusion or consistency proof: a tree of < 2^53 leaves needs at most 2·53. */
export const KT_MAX_PROOF_HASHES = 128;
/** Bytes of the username in a log entry (normalised usernames are 3–32 ASCII characters). */
export const KT_MAX_USERNAME_LEN = 64;

// ---- Safety numbers (Signal NumericFingerprintGenerator) ------------------------------------------
/** SHA-512 iterations (libsignal's value; makes a targeted second-preimage search expensive). */
export const FINGERPRINT_ITERATIONS = 5200;
/** Fingerprint format version (Signal: 0), as the 2-byte big-endian prefix of the hash input. */
export const FINGERPRINT_VERSION = 0;
/** Scannable fingerprint payload version. */
export const SCANNABLE_FINGERPRINT_VERSION = 1;
/**
 * Text form of the scannable payload in a QR code (QR readers — BarcodeDetector, jsQR — return text, and the
 * payload is binary): SAFETY_QR_PREFIX ‖ decimal SAFETY_QR_TEXT_VERSION ‖ ":" ‖ base64url(payload).
 */
export const SAFETY_QR_PREFIX = 'e2echat-sn:';
export const SAFETY_QR_TEXT_VERSION = 1;
/** Key type byte prefixed to the Ed25519 user identity key in fingerprints (Signal's 0x05 is for X25519). */
export const FINGERPRINT_KEY_TYPE_ED25519 = 0x06;

// ---- Sizes ----------------------------------------------------------------------------------------
/** Max plaintext bytes in one message (text now; attachments travel as encrypted blobs later). */
export const MAX_PLAINTEXT_LEN = 64 * 1024;
/** Plaintexts are padded (0x80 then zeros, no randomness) to a multiple of this: Signal's 160-byte block. */
export const PADDING_BLOCK = 160;

// ---- Attachments (attachments.ts; docs/PROTOCOL.md §"Attachments") ----------------------------------
/** Version byte leading every chunk's AAD; bump on any change of the chunk format. */
export const ATTACHMENT_FORMAT_VERSION = 1;
/** HKDF info expanding the 32-byte attachment key into AES-256 key ‖ 12-byte nonce base (44 bytes). */
export const LABEL_ATTACHMENT_KEYS = 'e2e-chat/v1 attachment keys';
/** Bytes of the fresh random key per attachment (it travels inside the encrypted message). */
export const ATTACHMENT_KEY_LEN = 32;
/**
 * Plaintext bytes per chunk (the last one may be shorter): 64 KiB like age's STREAM; small enough that a
 * receiver holds one chunk at a time, large enough that per-chunk overhead (16-byte tag, one AEAD call)
 * stays under 0.03 %.
 */
export const ATTACHMENT_CHUNK_SIZE = 64 * 1024;
/** The blob digest (SHA-256 of the SHA-256 of every sealed chunk), carried in the message and checked before anything is shown. */
export const ATTACHMENT_DIGEST_LEN = 32;
/**
 * Largest plaintext a sender offers by default (the engine's `maxAttachmentBytes` and the server's
 * ATTACHMENT_LIMITS can lower or raise it per deployment).
 */
export const DEFAULT_MAX_ATTACHMENT_SIZE = 100 * 1024 * 1024;
/** Largest plaintext size a receiver accepts in a pointer (format limit, far above any deployment's). */
export const MAX_ATTACHMENT_SIZE = 2 ** 32;
/** Largest thumbnail carried inside the encrypted message (a few KB is the aim; the message is ≤ 64 KiB). */
export const MAX_THUMBNAIL_LEN = 16 * 1024;
// ---- History export (history-export.ts; docs/PROTOCOL.md §"History export") -------------------------
/** The 8 bytes every passphrase-encrypted history export starts with: ASCII "e2e-hist". */
export const HISTORY_EXPORT_MAGIC = 'e2e-hist';
/** Format version (byte 8 of the header); bump on any change of the header, the derivation or the chunks. */
export const HISTORY_EXPORT_VERSION = 1;
/** KDF identifier (byte 9 of the header): 1 = argon2id version 0x13 (RFC 9106). */
export const HISTORY_EXPORT_KDF_ARGON2ID = 1;
/** HKDF info expanding the argon2id output into AES-256 key ‖ 12-byte nonce base ‖ 16-byte key check. */
export const LABEL_HISTORY_EXPORT = 'e2e-chat/v1 history export';
/** Bytes of the fresh random argon2id salt per export (so no two exports share a key, hence a nonce). */
export const HISTORY_EXPORT_SALT_LEN = 16;
/** Bytes of the key check in the header: tells a wrong passphrase from a damaged file. */
export const HISTORY_EXPORT_CHECK_LEN = 16;
/** Plaintext bytes per chunk (the last one may be shorter), as for attachments. */
export const HISTORY_EXPORT_CHUNK_SIZE = 64 * 1024;
/**
 * argon2id cost a writer uses by default: RFC 9106 §4's second recommended option (m = 64 MiB, t = 3) with
 * one lane, since the pure-JS implementation runs one thread; ≈ 2–3 s on a laptop core. An export leaves the
 * device and may be attacked offline for ever, so it costs more than the password pre-hash.
 */
export const HISTORY_EXPORT_ARGON2 = { m: 64 * 1024, t: 3, p: 1 } as const;
/**
 * What a reader accepts in a header (anything outside is `limit_exceeded` before any argon2id runs, so a
 * crafted file cannot make a device allocate gigabytes or spin): m ≤ 1 GiB (and ≥ 8·p, RFC 9106), t ≤ 16,
 * p ≤ 16.
 */
export const MAX_HISTORY_EXPORT_ARGON2 = { m: 1024 * 1024, t: 16, p: 16 } as const;
/** Largest plaintext a history export holds (the whole document is built and read in memory). */
export const MAX_HISTORY_EXPORT_SIZE = 1024 * 1024 * 1024;

// ---- Content types (content.ts; docs/PROTOCOL.md §"Content types") --------------------------------
/**
 * The highest version of each content type this implementation understands. A payload without `v` is
 * version 1; a payload whose `v` is above this for its type is treated like an unknown type (shown as an
 * unsupported message if it has an `id`, otherwise ignored), never guessed at.
 */
export const CONTENT_VERSIONS = {
  text: 1,
  react: 1,
  edit: 1,
  delete: 1,
  typing: 1,
  receipt: 1,
  skd: 1,
  att: 1,
  pk: 1,
  sync: 1,
  kth: 1,
} as const;
/** Longest content type name (`t`): bounds what an unsupported message records. */
export const MAX_CONTENT_TYPE_LEN = 32;
/**
 * Longest text body (and edited body), in UTF-8 bytes: half the plaintext limit, so the payload around
 * it, the padding, the ratchet header and a prekey message's KEM ciphertext always fit.
 */
export const MAX_TEXT_BYTES = MAX_PLAINTEXT_LEN / 2;
/** Longest quoted excerpt a reply carries (UTF-8 bytes); senders quote the first ~200 characters. */
export const MAX_QUOTE_BYTES = 1024;
/** Longest reaction (UTF-8 bytes): one emoji grapheme, ZWJ sequences and skin tones included. */
export const MAX_REACTION_BYTES = 32;
/** Most message ids one receipt covers (≈ 1.5 KB per member device, far below a frame's limit). */
export const MAX_RECEIPT_IDS = 64;
/** Most read positions one own-device `sync` payload carries (linking, issue 14; ≈ 40 B each). */
export const MAX_SYNC_READS = 100;
/** An edit is honoured only if the server time between the message and the edit is at most this. */
export const EDIT_WINDOW_MS = 24 * 3600 * 1000;
/** Disappearing-message timer bounds (seconds), besides 0 = off: 5 minutes … 4 weeks. */
export const MIN_TIMER_SECONDS = 5 * 60;
export const MAX_TIMER_SECONDS = 28 * 24 * 3600;

// ---- Client delivery (the engine's outbox) -------------------------------------------------------------
/**
 * Preparing a queued message (a bundle claim, a device list) failed for a transient reason — no network,
 * 5xx, 429: it is tried again after OUTBOX_RETRY_BASE_MS, doubling up to OUTBOX_RETRY_MAX_MS (and at once
 * when a socket comes back), and stays `sending` until its age passes OUTBOX_TRANSIENT_LIFESPAN_MS — like
 * Signal's one-day job lifespan — after which its next transient failure fails it.
 * A message whose frame went out but was never answered (the socket dropped before `accepted`) is not sent
 * again past the same age, measured from its creation on this device's clock: the server recognises a
 * retried id only while its log keeps it (logRetentionMs, 24 h after the stored ts, which is never before
 * the creation), and a resend after that would be stored and delivered twice. 20 h leaves 4 h of margin
 * (this device's clock set back, a late prune is harmless: the server only ever keeps ids longer).
 * A send the server refused for now (`rate_limited`, `unavailable`, `internal`) waits its `retryAfterMs`,
 * kept within [OUTBOX_RETRY_BASE_MS, OUTBOX_RETRY_MAX_MS].
 */
export const OUTBOX_RETRY_BASE_MS = 250;
export const OUTBOX_RETRY_MAX_MS = 30_000;
export const OUTBOX_TRANSIENT_LIFESPAN_MS = 20 * 3600 * 1000;

/**
 * A conversation whose processing failed (a store error, a fetch that failed) resumes from its durable cursor.
 * The first PROCESS_FAILURE_SOCKET_RESTARTS consecutive failures restart its socket (each open spends a server
 * ticket from the budget every conversation shares); after that its socket stays closed and the failed
 * envelope is tried again through the mailbox, with back-off — no ticket — until it is processed; then the
 * socket opens again (one ticket). So a failure that repeats costs at most this many tickets plus one.
 */
export const PROCESS_FAILURE_SOCKET_RESTARTS = 1;

// ---- Client membership log (the engine's groups.ts) ----------------------------------------------------
/**
 * The server answered a membership-log fetch with a gap (an entry missing before those it returned): nothing
 * past it can be verified. That conversation's log is then not fetched again for LOG_GAP_RETRY_BASE_MS,
 * doubling with each such answer up to LOG_GAP_RETRY_MAX_MS — every sync meanwhile fails at once with
 * `membership_gap`, without a fetch — and an answer without a gap ends the back-off. Never a refetch loop.
 */
export const LOG_GAP_RETRY_BASE_MS = 1_000;
export const LOG_GAP_RETRY_MAX_MS = 5 * 60_000;

// ---- Passwords (client-side pre-hash; see password.ts) -------------------------------------------------
/** Domain-separates the username-derived argon2id salt. */
export const LABEL_PASSWORD_SALT = 'e2e-chat/v1 password salt';
/** argon2id cost: OWASP's minimum (m = 19 MiB, t = 2, p = 1); ≈ 0.4–0.5 s in pure JS on a laptop core. */
export const PASSWORD_ARGON2 = { m: 19 * 1024, t: 2, p: 1, dkLen: 32 } as const;

// ---- Primitives ----------------------------------------------------------------------------------------
/** Public-key CryptoKey imports the WebCrypto curves keep by key bytes, per curve (peers' long-lived keys). */
export const PUBLIC_KEY_IMPORT_CACHE = 512;
