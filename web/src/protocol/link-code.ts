/**
 * The link code a new device shows while it waits to be linked (docs/PROTOCOL.md §"Linking", step 1): the
 * server origin, the provisioning channel id and the new device's ephemeral X25519 public key, versioned.
 * The QR code carries exactly the text form, so a scanned code and a pasted one take the same path.
 *
 * ```
 * binary = u8 LINK_CODE_VERSION ‖ channelId[16] ‖ E_new[32] ‖ UTF-8(origin)          (49 + |origin| bytes)
 * text   = "e2echat-link:" ‖ base64url(binary)
 * ```
 *
 * `origin` is `scheme://host[:port]` exactly as `URL.origin` prints it (http or https, no path, no user
 * info); the linking device refuses a code for a server other than its own (the caller compares).
 *
 * Does NOT: generate keys or ids (the caller passes its rng's output), know which server is "ours", or carry
 * anything secret — the code may be photographed; the ephemeral key is public and the channel only relays
 * sealed bytes.
 * @module
 */
import { concat, fromB64u, fromUtf8, toB64u, utf8 } from './bytes.js';
import { LINK_CHANNEL_ID_LEN, LINK_CODE_PREFIX, LINK_CODE_VERSION, MAX_LINK_ORIGIN_LEN } from './constants.js';
import { ErrorCode, fail } from './errors.js';
import { type TheirX25519Key, theirX25519 } from './keys.js';
import { KEY_LEN } from './primitives.js';

export interface LinkCode {
  /** `scheme://host[:port]` of the server the new device talks to. */
  readonly origin: string;
  /** The channel id as its 16 raw bytes. */
  readonly channelId: Uint8Array;
  /** The new device's ephemeral X25519 public key (validated on decode). */
  readonly ephemeralKey: TheirX25519Key;
}

const HEAD = 1 + LINK_CHANNEL_ID_LEN + KEY_LEN;

/** The channel id as the server and every API spell it: base64url of the 16 bytes (22 characters). */
export const channelIdString = (channelId: Uint8Array): string => toB64u(channelId);

/** A channel id string back to its bytes (`decode` unless exactly 16 bytes of canonical base64url). */
export function channelIdBytes(id: string): Uint8Array {
  const b = fromB64u(id);
  if (b.length !== LINK_CHANNEL_ID_LEN) fail(ErrorCode.Decode, 'channelIdBytes', 'channel id must be 16 bytes');
  return b;
}

/** Canonical origin or `decode`: http(s), host, optional port; nothing else (no path, query, user info). */
export function canonicalOrigin(origin: string, op = 'canonicalOrigin'): string {
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return fail(ErrorCode.Decode, op, 'origin is not a URL');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') fail(ErrorCode.Decode, op, 'origin must be http(s)');
  if (u.origin !== origin) fail(ErrorCode.Decode, op, 'origin is not canonical');
  if (utf8(origin).length > MAX_LINK_ORIGIN_LEN) fail(ErrorCode.Decode, op, 'origin too long');
  return origin;
}

export function encodeLinkCode(code: { origin: string; channelId: Uint8Array; ephemeralKey: Uint8Array }): string {
  const op = 'encodeLinkCode';
  if (code.channelId.length !== LINK_CHANNEL_ID_LEN) fail(ErrorCode.Decode, op, 'channel id must be 16 bytes');
  theirX25519(code.ephemeralKey, op);
  const origin = utf8(canonicalOrigin(code.origin, op));
  return LINK_CODE_PREFIX + toB64u(concat(Uint8Array.of(LINK_CODE_VERSION), code.channelId, code.ephemeralKey, origin));
}

/**
 * Parses a scanned or pasted code. Whitespace anywhere is ignored (a code wrapped by a mail client still
 * works). Errors: `decode` (not a link code, wrong version, truncated, bad origin), `invalid_key`.
 */
export function decodeLinkCode(text: string): LinkCode {
  const op = 'decodeLinkCode';
  if (typeof text !== 'string' || text.length > 2 * (HEAD + MAX_LINK_ORIGIN_LEN) + LINK_CODE_PREFIX.length + 64)
    fail(ErrorCode.Decode, op, 'not a link code');
  const t = text.replace(/\s+/g, '');
  if (!t.startsWith(LINK_CODE_PREFIX)) fail(ErrorCode.Decode, op, 'not a link code');
  const bin = fromB64u(t.slice(LINK_CODE_PREFIX.length));
  if (bin.length < HEAD + 1) fail(ErrorCode.Decode, op, 'truncated link code');
  if (bin[0] !== LINK_CODE_VERSION) fail(ErrorCode.Decode, op, 'unknown link code version');
  const channelId = bin.slice(1, 1 + LINK_CHANNEL_ID_LEN);
  const ephemeralKey = theirX25519(bin.slice(1 + LINK_CHANNEL_ID_LEN, HEAD), op);
  const origin = canonicalOrigin(fromUtf8(bin.subarray(HEAD)), op);
  return { origin, channelId, ephemeralKey };
}
