/**
 * Content types (docs/PROTOCOL.md §"Content types"): the plaintext INSIDE every pairwise or sender-key
 * message — what a message says, after decryption and unpadding. A payload is a UTF-8 JSON object
 * (bytes written as `{"$b": base64url}`) with a content type `t`, an optional content version `v`
 * (absent = 1) and the conversation it belongs to (`conv`, so the server cannot replay a ciphertext into
 * another conversation). Field tables, limits and the versioning rule are in PROTOCOL.md; the published
 * vectors are `vectors/content.json`.
 *
 * Types of version 1:
 *  - timeline messages (carry an `id`, the sender's client message id): `text` (with an optional quoted
 *    `reply` and the sender's disappearing timer `exp` as a hint) and `att` (an attachment pointer with a
 *    caption; the pointer's fields are checked by the engine's attachment layer);
 *  - actions on a message (refer to it by `target`, its id within the conversation): `react`, `edit`,
 *    `delete`;
 *  - signals: `typing` (ephemeral, never stored by the server), `receipt`, `skd` (a sender-key
 *    distribution), `pk` (the sender's profile key, pairwise; people.ts), `sync` (read positions between
 *    the user's own devices, in their own sync conversation only; linking), `kth` (the newest
 *    key-transparency tree head the sender verified; its bytes are checked by transparency.ts).
 *
 * Versioning: a receiver ignores fields it does not know (adding an optional field needs no new
 * version); a change an older receiver would misread raises the type's `v`. A payload of an unknown type,
 * or of a known type with a higher `v` than `CONTENT_VERSIONS` lists, decodes as `unsupported`: shown as
 * "unsupported message" when it carries an `id` (a timeline message), ignored when it does not (a
 * signal). So a new type must carry an `id` exactly when it is something a person should see.
 *
 * Does NOT: decide whether an action is allowed (who may edit or delete what: the engine applies the
 * rules of §"Content types" against its store), encrypt, or read a clock.
 * @module
 */
import { fromB64u, toB64u } from './bytes.js';
import {
  CONTENT_VERSIONS,
  MAX_CONTENT_TYPE_LEN,
  MAX_ID_LEN,
  MAX_QUOTE_BYTES,
  MAX_REACTION_BYTES,
  MAX_RECEIPT_IDS,
  MAX_SYNC_READS,
  MAX_TEXT_BYTES,
  MAX_TIMER_SECONDS,
  MIN_TIMER_SECONDS,
} from './constants.js';
import { ErrorCode, fail } from './errors.js';

export type ContentType = keyof typeof CONTENT_VERSIONS;
export const CONTENT_TYPES = Object.keys(CONTENT_VERSIONS) as ContentType[];

/** A quoted message inside a reply: its id, its author and an excerpt of its text (sender-provided). */
export interface Quote {
  readonly id: string;
  readonly author: string;
  readonly text: string;
}

export interface TextContent {
  readonly t: 'text';
  readonly conv: string;
  readonly id: string;
  readonly body: string;
  /** Sender's clock, ms (informational). */
  readonly sentAt: number;
  readonly reply?: Quote;
  /** The sender's disappearing-message timer in seconds (a hint: the receiver uses its verified log's). */
  readonly exp?: number;
}
/**
 * An attachment (docs/PROTOCOL.md §"Attachments"): a caption and the pointer to the encrypted blob. The
 * pointer's own field rules (key, digest, size, media type, thumbnail) are checked by the engine's
 * attachment layer before anything uses it; here it only has to be an object.
 */
export interface AttContent {
  readonly t: 'att';
  readonly conv: string;
  readonly id: string;
  /** Caption (may be empty). */
  readonly body: string;
  readonly sentAt: number;
  readonly att: unknown;
  readonly exp?: number;
}
export interface ReactContent {
  readonly t: 'react';
  readonly conv: string;
  readonly target: string;
  /** One emoji; '' removes the sender's reaction. */
  readonly emoji: string;
}
export interface EditContent {
  readonly t: 'edit';
  readonly conv: string;
  readonly target: string;
  readonly body: string;
  readonly sentAt: number;
}
export interface DeleteContent {
  readonly t: 'delete';
  readonly conv: string;
  readonly target: string;
}
export interface TypingContent {
  readonly t: 'typing';
  readonly conv: string;
  /** true: started (or still) typing; false: stopped. */
  readonly on: boolean;
}
export interface ReceiptContent {
  readonly t: 'receipt';
  readonly conv: string;
  readonly status: 'delivered' | 'read';
  readonly ids: readonly string[];
}
export interface DistributionContent {
  readonly t: 'skd';
  readonly conv: string;
  readonly d: Uint8Array;
}

/** Our profile key, sent pairwise only (docs/PROTOCOL.md §"Profiles"; its bytes are checked by profile.ts). */
export interface ProfileKeyContent {
  readonly t: 'pk';
  readonly conv: string;
  readonly k: Uint8Array;
}

/**
 * Own-device sync (docs/PROTOCOL.md §"Linking a device"): read positions per conversation, sent only into
 * the user's own sync conversation and applied only from the user's own devices (the engine checks both).
 */
export interface SyncContent {
  readonly t: 'sync';
  readonly conv: string;
  readonly read: readonly { readonly c: string; readonly seq: number }[];
}

/**
 * Key-transparency gossip (docs/PROTOCOL.md §"Key transparency", step 3): the newest signed tree head the
 * sender verified, never shown; the receiver compares it with its own view of the log.
 */
export interface KtHeadContent {
  readonly t: 'kth';
  readonly conv: string;
  readonly head: Uint8Array;
}

export type Content =
  | ProfileKeyContent
  | SyncContent
  | KtHeadContent
  | TextContent
  | AttContent
  | ReactContent
  | EditContent
  | DeleteContent
  | TypingContent
  | ReceiptContent
  | DistributionContent;

/** Types that refer to another message (`target`). */
export const ACTION_TYPES: readonly ContentType[] = ['react', 'edit', 'delete'];

export type DecodedContent =
  | { readonly kind: 'ok'; readonly content: Content }
  /** A type (or a version of it) this implementation does not know; `id` set if it is a timeline message. */
  | { readonly kind: 'unsupported'; readonly t: string; readonly conv: string; readonly id: string | null }
  /**
   * Not a payload we can use: not JSON, no `t`/`conv`, or a known type breaking its field rules. `t` is the
   * type it claimed (null if none), so a caller can tell a broken signal from a broken message.
   */
  | { readonly kind: 'malformed'; readonly t: string | null; readonly conv: string | null; readonly reason: string };

// ---- JSON with bytes -----------------------------------------------------------------------------------

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function replacer(this: unknown, _key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? { $b: toB64u(value) } : value;
}

function reviver(_key: string, value: unknown): unknown {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const o = value as Record<string, unknown>;
    if (typeof o.$b === 'string' && Object.keys(o).length === 1) return fromB64u(o.$b);
  }
  return value;
}

/** JSON with `Uint8Array` values as `{"$b": base64url}`, UTF-8 encoded (also the engine's record codec). */
export function encodeJson(value: unknown): Uint8Array {
  return enc.encode(JSON.stringify(value, replacer));
}

/** The inverse of `encodeJson`; throws on invalid UTF-8, JSON or base64url. */
export function decodeJson<T>(bytes: Uint8Array): T {
  return JSON.parse(dec.decode(bytes), reviver) as T;
}

// ---- field rules ---------------------------------------------------------------------------------------

const ID = /^[A-Za-z0-9_-]+$/;
const isId = (x: unknown): x is string => typeof x === 'string' && x.length <= MAX_ID_LEN && ID.test(x);
const bytesOf = (s: string) => enc.encode(s).length;
const isText = (x: unknown, max: number): x is string => typeof x === 'string' && bytesOf(x) <= max;
const isTime = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

/** A timer value: 0 (off) or MIN_TIMER_SECONDS … MAX_TIMER_SECONDS. */
export function isTimerSeconds(x: unknown): x is number {
  return Number.isInteger(x) && (x === 0 || ((x as number) >= MIN_TIMER_SECONDS && (x as number) <= MAX_TIMER_SECONDS));
}

const graphemes =
  typeof Intl !== 'undefined' && 'Segmenter' in Intl ? new Intl.Segmenter('en', { granularity: 'grapheme' }) : null;
const PICTOGRAPHIC = /\p{Extended_Pictographic}|\p{Regional_Indicator}|\u20e3/u;
// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
const CONTROL_OR_SPACE = /[\u0000-\u001f\u007f-\u009f\s]/u;

/**
 * A reaction: exactly one grapheme cluster of at most MAX_REACTION_BYTES UTF-8 bytes that contains an
 * emoji code point (Extended_Pictographic, a regional indicator, or the keycap mark), no space or control
 * character. '' (removal) is handled by the caller.
 */
export function isReaction(x: unknown): x is string {
  if (typeof x !== 'string' || x.length === 0 || bytesOf(x) > MAX_REACTION_BYTES) return false;
  if (CONTROL_OR_SPACE.test(x) || !PICTOGRAPHIC.test(x)) return false;
  if (!graphemes) return true;
  let n = 0;
  for (const _ of graphemes.segment(x)) if (++n > 1) return false;
  return n === 1;
}

function isQuote(x: unknown): x is Quote {
  if (!x || typeof x !== 'object' || Array.isArray(x)) return false;
  const q = x as Record<string, unknown>;
  return isId(q.id) && isId(q.author) && isText(q.text, MAX_QUOTE_BYTES);
}

type Checked = { ok: true; content: Content } | { ok: false; reason: string };
const bad = (reason: string): Checked => ({ ok: false, reason });

/** Checks a payload of a known type (version ≤ ours) against its field table; unknown fields are dropped. */
function check(t: ContentType, conv: string, o: Record<string, unknown>): Checked {
  switch (t) {
    case 'text':
    case 'att': {
      // Timeline messages: the fields both carry, then each type's own (field order = canonical encoding).
      if (!isId(o.id)) return bad('id');
      if (!isText(o.body, MAX_TEXT_BYTES)) return bad('body');
      if (!isTime(o.sentAt)) return bad('sentAt');
      if (o.exp !== undefined && !isTimerSeconds(o.exp)) return bad('exp');
      const common = { conv, id: o.id, body: o.body, sentAt: o.sentAt };
      const exp = o.exp ? { exp: o.exp as number } : {};
      if (t === 'att') {
        if (!o.att || typeof o.att !== 'object' || Array.isArray(o.att)) return bad('att');
        return { ok: true, content: { t, ...common, att: o.att, ...exp } };
      }
      if (o.reply !== undefined && !isQuote(o.reply)) return bad('reply');
      const q = o.reply as Quote | undefined;
      const reply = q ? { reply: { id: q.id, author: q.author, text: q.text } } : {};
      return { ok: true, content: { t, ...common, ...reply, ...exp } };
    }
    case 'react':
      if (!isId(o.target)) return bad('target');
      if (o.emoji !== '' && !isReaction(o.emoji)) return bad('emoji');
      return { ok: true, content: { t, conv, target: o.target, emoji: o.emoji as string } };
    case 'edit':
      if (!isId(o.target)) return bad('target');
      if (!isText(o.body, MAX_TEXT_BYTES)) return bad('body');
      if (!isTime(o.sentAt)) return bad('sentAt');
      return { ok: true, content: { t, conv, target: o.target, body: o.body, sentAt: o.sentAt } };
    case 'delete':
      if (!isId(o.target)) return bad('target');
      return { ok: true, content: { t, conv, target: o.target } };
    case 'typing':
      if (typeof o.on !== 'boolean') return bad('on');
      return { ok: true, content: { t, conv, on: o.on } };
    case 'receipt':
      if (o.status !== 'delivered' && o.status !== 'read') return bad('status');
      if (!Array.isArray(o.ids) || o.ids.length > MAX_RECEIPT_IDS || !o.ids.every(isId)) return bad('ids');
      return { ok: true, content: { t, conv, status: o.status, ids: [...(o.ids as string[])] } };
    case 'skd':
      if (!(o.d instanceof Uint8Array)) return bad('d');
      return { ok: true, content: { t, conv, d: o.d } };
    case 'pk':
      if (!(o.k instanceof Uint8Array)) return bad('k');
      return { ok: true, content: { t, conv, k: o.k } };
    case 'sync': {
      if (!Array.isArray(o.read) || o.read.length > MAX_SYNC_READS) return bad('read');
      const read: { c: string; seq: number }[] = [];
      for (const r of o.read as unknown[]) {
        const e = r as Record<string, unknown> | null;
        if (!e || typeof e !== 'object' || !isId(e.c) || !Number.isSafeInteger(e.seq) || (e.seq as number) < 0)
          return bad('read');
        read.push({ c: e.c, seq: e.seq as number });
      }
      return { ok: true, content: { t, conv, read } };
    }
    case 'kth':
      if (!(o.head instanceof Uint8Array)) return bad('head');
      return { ok: true, content: { t, conv, head: o.head } };
  }
}

/**
 * Decodes and checks a payload. Never throws: anything unusable is `malformed` (with the reason), a type
 * or version from the future is `unsupported`.
 */
export function decodeContent(bytes: Uint8Array): DecodedContent {
  let raw: unknown;
  try {
    raw = decodeJson<unknown>(bytes);
  } catch {
    return { kind: 'malformed', t: null, conv: null, reason: 'json' };
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw))
    return { kind: 'malformed', t: null, conv: null, reason: 'object' };
  const o = raw as Record<string, unknown>;
  const t = typeof o.t === 'string' && o.t.length > 0 && o.t.length <= MAX_CONTENT_TYPE_LEN ? o.t : null;
  const conv = isId(o.conv) ? o.conv : null;
  if (t === null || conv === null) return { kind: 'malformed', t, conv, reason: t === null ? 't' : 'conv' };
  const v = o.v === undefined ? 1 : o.v;
  if (!Number.isSafeInteger(v) || (v as number) < 1) return { kind: 'malformed', t, conv, reason: 'v' };
  const known = Object.hasOwn(CONTENT_VERSIONS, t) ? (t as ContentType) : null;
  if (known === null || (v as number) > CONTENT_VERSIONS[known]) {
    if (o.id !== undefined && !isId(o.id)) return { kind: 'malformed', t, conv, reason: 'id' };
    return { kind: 'unsupported', t, conv, id: (o.id as string | undefined) ?? null };
  }
  const r = check(known, conv, o);
  return r.ok ? { kind: 'ok', content: r.content } : { kind: 'malformed', t, conv, reason: r.reason };
}

/**
 * Encodes a payload after checking it against its field table (`invalid_structure`, or `limit_exceeded`
 * for an over-long text, quote or reaction). Version-1 payloads are written without `v`.
 */
export function encodeContent(c: Content): Uint8Array {
  const op = 'encodeContent';
  if (!isId(c.conv)) fail(ErrorCode.InvalidStructure, op, 'conv');
  const r = check(c.t, c.conv, c as unknown as Record<string, unknown>);
  if (!r.ok) {
    const tooLong =
      (r.reason === 'body' && typeof (c as TextContent).body === 'string') ||
      (r.reason === 'reply' && isQuoteShape((c as TextContent).reply)) ||
      (r.reason === 'emoji' &&
        typeof (c as ReactContent).emoji === 'string' &&
        bytesOf((c as ReactContent).emoji) > MAX_REACTION_BYTES);
    fail(tooLong ? ErrorCode.LimitExceeded : ErrorCode.InvalidStructure, op, r.reason);
  }
  return encodeJson(r.content);
}

function isQuoteShape(q: unknown): boolean {
  const x = q as Partial<Quote> | undefined;
  return !!x && isId(x.id) && isId(x.author) && typeof x.text === 'string';
}

/** The first `maxChars` characters of `text` (whole code points), within MAX_QUOTE_BYTES: a reply's excerpt. */
export function quoteExcerpt(text: string, maxChars = 200): string {
  let out = '';
  let n = 0;
  for (const ch of text) {
    if (n >= maxChars || bytesOf(out + ch) > MAX_QUOTE_BYTES) break;
    out += ch;
    n++;
  }
  return out;
}
