/**
 * Encrypted attachments (issue 16; docs/API.md §"Attachments"): opaque blobs in R2 (binding ATTACHMENTS,
 * object key = attachment id), one D1 row each with only the id, the conversation, the uploading account,
 * the ciphertext size and times. The server never sees a key, name, content type or dimension — those
 * travel inside the end-to-end encrypted message (docs/PROTOCOL.md §"Attachments").
 *
 * - `reserveAttachment`: a member of a conversation reserves an id for exactly `size` ciphertext bytes;
 *   per-file size (413 `attachment_too_large`) and per-account rolling-day quotas (429
 *   `attachment_quota_exceeded`, bytes and count, reservations included) are enforced in the same INSERT,
 *   so concurrent reservations cannot overshoot.
 * - `storeAttachment`: the uploader streams exactly `size` bytes into R2 — a single `put` through a
 *   FixedLengthStream, or an R2 multipart upload of `partBytes` parts above `multipartThresholdBytes` — never
 *   holding more than one part in memory. More or fewer bytes: 400 `size_mismatch`, nothing kept.
 * - Parts uploads (`reserveAttachment(..., parts = true)`, `storeAttachmentPart`, `completeAttachment`): the
 *   client sends the blob as numbered `partBytes` parts, several at once (each streamed into R2 through the
 *   same exact-length pipe as a whole upload, never buffered), and completes it. The R2 upload id
 *   and part size live between requests in a marker object `parts/<id>` (R2 custom metadata) — D1 stays as it
 *   is, and the marker goes wherever the blob goes (cancel, clean-up, account deletion abort the upload).
 * - `openAttachment`: the blob for a CURRENT member of the conversation; anyone else gets 404 like an id
 *   that never existed (no existence leak).
 * - `cancelAttachment`: the uploader drops a reservation that was never completed (frees its quota).
 * - `cleanupAttachments` (cron) and `deleteUserAttachments` (account deletion) delete blobs first, then rows.
 *
 * Does NOT: know what is inside a blob, look at names or types, or decide who is a member (the membership
 * log does, via the `members` fold).
 * @module
 */
import { and, eq, isNull, lt, or, type SQL, sql } from 'drizzle-orm';
import { z } from 'zod';
import { attachmentLayout } from '../../web/src/protocol/attachments.js';
import { DEFAULT_MAX_ATTACHMENT_SIZE } from '../../web/src/protocol/constants.js';
import type { Db } from '../db.js';
import { makeDb, schema } from '../db.js';
import type { Env } from '../env.js';
import { AppError } from '../errors.js';
import { onAccountDeletion } from './account.js';

export const ATTACHMENT_DEFAULTS = {
  /** Largest blob (ciphertext bytes): a DEFAULT_MAX_ATTACHMENT_SIZE (100 MiB) file plus its chunk tags. */
  maxFileBytes: attachmentLayout(DEFAULT_MAX_ATTACHMENT_SIZE).encryptedSize,
  /** Bytes one account may reserve per rolling window (reservations count, uploaded or not). */
  dailyBytes: 1024 * 1024 * 1024,
  /** Attachments one account may reserve per rolling window (bounds D1 rows and R2 objects). */
  dailyCount: 1000,
  /** The rolling window of both quotas. */
  quotaWindowMs: 24 * 3600 * 1000,
  /** Blobs (and rows) are deleted this long after they were reserved. */
  retentionMs: 30 * 24 * 3600 * 1000,
  /** A reservation never completed is dropped after this long (its PUT then gets 404). */
  pendingTtlMs: 24 * 3600 * 1000,
  /** Uploads above this many bytes go to R2 as a multipart upload. */
  multipartThresholdBytes: 16 * 1024 * 1024,
  /** Multipart part size: R2 needs ≥ 5 MiB for every part but the last, all of equal size. */
  partBytes: 8 * 1024 * 1024,
  /** Rows handled per clean-up batch (R2 deletes up to 1000 keys per call). */
  cleanupBatch: 500,
} as const;

export type AttachmentConfig = { -readonly [K in keyof typeof ATTACHMENT_DEFAULTS]: number };

const MIN_PART = 5 * 1024 * 1024;
/** The largest part size the web client accepts (web/src/engine/http-transport.ts MAX_PART_BYTES). */
const MAX_PART = 64 * 1024 * 1024;
const overrides = z.strictObject(
  Object.fromEntries(
    Object.keys(ATTACHMENT_DEFAULTS).map((k) => [
      k,
      z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
    ]),
  ) as Record<keyof AttachmentConfig, z.ZodOptional<z.ZodNumber>>,
);

let cached: { json: string; config: AttachmentConfig } | undefined;

/** Defaults merged with the ATTACHMENT_LIMITS JSON (empty/undefined: defaults). Throws on invalid JSON. */
export function attachmentConfig(json: string | undefined): AttachmentConfig {
  if (!json) return { ...ATTACHMENT_DEFAULTS };
  if (cached?.json === json) return cached.config;
  const parsed = overrides.safeParse(JSON.parse(json));
  if (!parsed.success) throw new Error('ATTACHMENT_LIMITS is not valid JSON of known numeric settings');
  const config = { ...ATTACHMENT_DEFAULTS } as AttachmentConfig;
  for (const [k, v] of Object.entries(parsed.data)) if (v !== undefined) config[k as keyof AttachmentConfig] = v;
  if (config.partBytes < MIN_PART) throw new Error('ATTACHMENT_LIMITS.partBytes must be at least 5 MiB (R2)');
  if (config.partBytes > MAX_PART)
    throw new Error('ATTACHMENT_LIMITS.partBytes must be at most 64 MiB (clients refuse larger parts)');
  cached = { json, config };
  return config;
}

/** Attachment ids: 128 random bits, base64url (22 characters). */
export const ATTACHMENT_ID = /^[A-Za-z0-9_-]{22}$/;

function newId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  let s = btoa(String.fromCharCode(...b));
  s = s.replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
  return s;
}

const notFound = () => new AppError(404, 'not_found', 'no such attachment');
const sizeMismatch = () =>
  new AppError(400, 'size_mismatch', 'the upload must carry exactly the number of bytes reserved');

async function isMember(db: Db, conversationId: string, userId: string): Promise<boolean> {
  const row = await db
    .select({ one: sql<number>`1` })
    .from(schema.members)
    .where(and(eq(schema.members.conversationId, conversationId), eq(schema.members.userId, userId)))
    .get();
  return row !== undefined;
}

export interface Reservation {
  attachmentId: string;
  size: number;
  /** When a reservation not uploaded by then is dropped (ms). */
  uploadBy: number;
  /** When the blob will be deleted (ms). */
  expiresAt: number;
  /** Parts uploads only: the size of every part but the last (bytes), and how many parts. */
  partBytes?: number;
  parts?: number;
}

/** R2 key of the marker keeping a parts upload's R2 upload id and part size between requests. */
const partsKey = (id: string) => `parts/${id}`;

const partCount = (size: number, partBytes: number) => Math.max(1, Math.ceil(size / partBytes));

const modeMismatch = (parts: boolean) =>
  new AppError(
    409,
    'upload_mode_mismatch',
    parts ? 'this reservation is uploaded in parts' : 'this reservation was not made for a parts upload',
  );

/**
 * Reserves an id for `size` ciphertext bytes in `conversationId` for `userId` (a current member; anyone
 * else: 404 like a conversation that does not exist).
 */
export async function reserveAttachment(
  env: Env,
  userId: string,
  conversationId: string,
  size: number,
  now = Date.now(),
  parts = false,
): Promise<Reservation> {
  const cfg = attachmentConfig(env.ATTACHMENT_LIMITS);
  const db = makeDb(env);
  if (!(await isMember(db, conversationId, userId))) throw new AppError(404, 'not_found', 'no such conversation');
  if (size > cfg.maxFileBytes)
    throw new AppError(413, 'attachment_too_large', 'the attachment is larger than this server accepts', {
      maxBytes: cfg.maxFileBytes,
    });
  const id = newId();
  const a = schema.attachments;
  const since = now - cfg.quotaWindowMs;
  // One statement: the quota check and the insert cannot be raced by a concurrent reservation.
  const r = await db.run(
    sql`INSERT INTO ${a} (id, conversation_id, uploader_user_id, size, created_at, uploaded_at)
        SELECT ${id}, ${conversationId}, ${userId}, ${size}, ${now}, NULL
        WHERE (SELECT COALESCE(SUM(${a.size}), 0) + ${size} <= ${cfg.dailyBytes} AND COUNT(*) < ${cfg.dailyCount}
               FROM ${a} WHERE ${a.uploaderUserId} = ${userId} AND ${a.createdAt} > ${since})`,
  );
  if ((r.meta.changes ?? 0) === 0) {
    // When enough of the window's reservations age out for this one to fit (at least the oldest).
    const rows = await db
      .select({ size: a.size, createdAt: a.createdAt })
      .from(a)
      .where(and(eq(a.uploaderUserId, userId), sql`${a.createdAt} > ${since}`))
      .orderBy(a.createdAt)
      .all();
    let used = rows.reduce((n, x) => n + x.size, 0);
    let count = rows.length;
    let freeAt = now + cfg.quotaWindowMs;
    for (const x of rows) {
      if (used + size <= cfg.dailyBytes && count < cfg.dailyCount) break;
      used -= x.size;
      count -= 1;
      freeAt = x.createdAt + cfg.quotaWindowMs;
    }
    throw new AppError(429, 'attachment_quota_exceeded', 'attachment quota for today used up', {
      retryAfterSec: Math.max(1, Math.ceil((freeAt - now) / 1000)),
    });
  }
  const r0 = { attachmentId: id, size, uploadBy: now + cfg.pendingTtlMs, expiresAt: now + cfg.retentionMs };
  if (!parts) return r0;
  try {
    const upload = await env.ATTACHMENTS.createMultipartUpload(id);
    await env.ATTACHMENTS.put(partsKey(id), new Uint8Array(0), {
      customMetadata: { uploadId: upload.uploadId, partBytes: String(cfg.partBytes) },
    });
  } catch (err) {
    await db.delete(a).where(eq(a.id, id)).run(); // nothing half-made stays, the quota is freed
    throw err;
  }
  return { ...r0, partBytes: cfg.partBytes, parts: partCount(size, cfg.partBytes) };
}

/** The parts upload of `id` (from its marker), or null for a reservation uploaded whole. */
async function partsUploadOf(env: Env, id: string): Promise<{ uploadId: string; partBytes: number } | null> {
  const marker = await env.ATTACHMENTS.head(partsKey(id));
  const uploadId = marker?.customMetadata?.uploadId;
  const partBytes = Number(marker?.customMetadata?.partBytes);
  if (!uploadId || !Number.isSafeInteger(partBytes) || partBytes < 1) return null;
  return { uploadId, partBytes };
}

/** Aborts the parts upload of `id` and drops its marker, if there is one (best effort on the abort). */
async function abortParts(env: Env, id: string): Promise<void> {
  const up = await partsUploadOf(env, id);
  if (up)
    await env.ATTACHMENTS.resumeMultipartUpload(id, up.uploadId)
      .abort()
      .catch(() => undefined);
  await env.ATTACHMENTS.delete(partsKey(id));
}

type Row = typeof schema.attachments.$inferSelect;

/** The reservation `id` of `userId`, still pending, whose uploader is still a member — or 404 / 409. */
async function pendingOf(env: Env, db: Db, userId: string, id: string, now: number): Promise<Row> {
  const cfg = attachmentConfig(env.ATTACHMENT_LIMITS);
  if (!ATTACHMENT_ID.test(id)) throw notFound();
  const row = await db.select().from(schema.attachments).where(eq(schema.attachments.id, id)).get();
  if (!row || row.uploaderUserId !== userId || row.createdAt + cfg.pendingTtlMs < now) throw notFound();
  if (!(await isMember(db, row.conversationId, userId))) throw notFound();
  if (row.uploadedAt !== null) throw new AppError(409, 'already_uploaded', 'this attachment was already uploaded');
  return row;
}

/** Thrown inside the byte counter when the body goes past or stops short of the reserved size. */
class SizeMismatch extends Error {
  override readonly name = 'SizeMismatch';
}

/**
 * Streams the upload body into R2. `declaredLength` is the request's Content-Length (null if chunked): a
 * wrong one is refused before a byte is read. The body is counted as it streams and cut off at the first
 * byte past `size`; nothing is stored unless exactly `size` bytes arrived (R2 only creates the object when
 * the put / multipart upload completes, and a failed multipart upload is aborted).
 */
export async function storeAttachment(
  env: Env,
  userId: string,
  id: string,
  body: ReadableStream<Uint8Array> | null,
  declaredLength: number | null,
  now = Date.now(),
): Promise<{ attachmentId: string; size: number }> {
  const cfg = attachmentConfig(env.ATTACHMENT_LIMITS);
  const db = makeDb(env);
  let row: Row;
  try {
    row = await pendingOf(env, db, userId, id, now);
    if (declaredLength !== null && declaredLength !== row.size) throw sizeMismatch();
    if (!body) throw sizeMismatch();
    if (await partsUploadOf(env, id)) throw modeMismatch(true);
    if (row.size > cfg.multipartThresholdBytes) await multipart(env.ATTACHMENTS, id, body, row.size, cfg.partBytes);
    else await single(env.ATTACHMENTS, id, body, row.size);
  } catch (err) {
    // Refused or broken off: stop reading whatever the client still sends (nothing was stored).
    await body?.cancel().catch(() => undefined);
    if (err instanceof SizeMismatch) throw sizeMismatch();
    if (err instanceof AppError) throw err;
    // The client went away mid-upload (or R2 refused): the reservation stays pending for a retry.
    throw new AppError(400, 'upload_incomplete', 'the upload did not complete');
  }
  await markUploaded(env, db, id);
  return { attachmentId: id, size: row.size };
}

/** The blob of `id` is in R2: the row says so — unless it was cancelled meanwhile (then nothing is kept). */
async function markUploaded(env: Env, db: Db, id: string): Promise<void> {
  const done = await db
    .update(schema.attachments)
    .set({ uploadedAt: Date.now() })
    .where(and(eq(schema.attachments.id, id), isNull(schema.attachments.uploadedAt)))
    .run();
  if ((done.meta.changes ?? 0) === 0) {
    // Cancelled (or cleaned up) while the bytes were streaming: keep nothing.
    const still = await db.select().from(schema.attachments).where(eq(schema.attachments.id, id)).get();
    if (!still) {
      await env.ATTACHMENTS.delete(id);
      throw notFound();
    }
  }
}

const invalidPart = () => new AppError(400, 'invalid_part', 'no such part number for this attachment');

/**
 * Part `n` (1-based) of a parts upload: exactly `partBytes` bytes, the last part the rest. Sent again, a
 * part replaces the one before (a failed part is re-sent alone). Returns what `completeAttachment` needs.
 */
export async function storeAttachmentPart(
  env: Env,
  userId: string,
  id: string,
  n: number,
  body: ReadableStream<Uint8Array> | null,
  declaredLength: number | null,
  now = Date.now(),
): Promise<{ partNumber: number; etag: string }> {
  const db = makeDb(env);
  try {
    const row = await pendingOf(env, db, userId, id, now);
    const up = await partsUploadOf(env, id);
    if (!up) throw modeMismatch(false);
    const count = partCount(row.size, up.partBytes);
    if (!Number.isSafeInteger(n) || n < 1 || n > count) throw invalidPart();
    const length = n < count ? up.partBytes : row.size - (count - 1) * up.partBytes;
    if (declaredLength !== null && declaredLength !== length) throw sizeMismatch();
    if (!body) throw sizeMismatch();
    const upload = env.ATTACHMENTS.resumeMultipartUpload(id, up.uploadId);
    const part = await pipeExactly(body, length, (readable) => upload.uploadPart(n, readable));
    return { partNumber: part.partNumber, etag: part.etag };
  } catch (err) {
    await body?.cancel().catch(() => undefined);
    if (err instanceof SizeMismatch) throw sizeMismatch();
    if (err instanceof AppError) throw err;
    throw new AppError(400, 'upload_incomplete', 'the part did not arrive whole; send it again');
  }
}

/**
 * Completes a parts upload from the `{partNumber, etag}` its part uploads returned, every part 1..N once, in
 * order. Missing or stale parts: 400 `upload_incomplete` (send them, complete again). The blob is then
 * exactly the reserved size (each part was); should it not be, nothing is kept (400 `size_mismatch`).
 */
export async function completeAttachment(
  env: Env,
  userId: string,
  id: string,
  parts: readonly { partNumber: number; etag: string }[],
  now = Date.now(),
): Promise<{ attachmentId: string; size: number }> {
  const db = makeDb(env);
  const row = await pendingOf(env, db, userId, id, now);
  const up = await partsUploadOf(env, id);
  if (!up) throw modeMismatch(false);
  const count = partCount(row.size, up.partBytes);
  if (parts.length !== count || parts.some((p, i) => p.partNumber !== i + 1)) throw invalidPart();
  let size: number;
  try {
    size = (await env.ATTACHMENTS.resumeMultipartUpload(id, up.uploadId).complete([...parts])).size;
  } catch {
    throw new AppError(400, 'upload_incomplete', 'some parts are missing or were replaced; send them again');
  }
  await env.ATTACHMENTS.delete(partsKey(id));
  if (size !== row.size) {
    await env.ATTACHMENTS.delete(id);
    await db
      .delete(schema.attachments)
      .where(and(eq(schema.attachments.id, id), isNull(schema.attachments.uploadedAt)))
      .run();
    throw sizeMismatch();
  }
  await markUploaded(env, db, id);
  return { attachmentId: id, size: row.size };
}

/** A counting pass-through that errors at the first byte past `size`, or at the end if fewer arrived. */
function exactly(size: number): TransformStream<Uint8Array, Uint8Array> {
  let seen = 0;
  return new TransformStream({
    transform(chunk, ctl) {
      seen += chunk.byteLength;
      if (seen > size) ctl.error(new SizeMismatch());
      else ctl.enqueue(chunk);
    },
    flush(ctl) {
      if (seen !== size) ctl.error(new SizeMismatch());
    },
  });
}

/**
 * Streams exactly `size` bytes of `body` into `store` (an R2 put or part upload of a known length); more or
 * fewer → SizeMismatch, and R2 keeps nothing of a stream that did not end at its length.
 */
async function pipeExactly<T>(
  body: ReadableStream<Uint8Array>,
  size: number,
  store: (readable: ReadableStream<Uint8Array>) => Promise<T>,
): Promise<T> {
  const fixed = new FixedLengthStream(size);
  let mismatch: unknown = null;
  const pipe = body
    .pipeThrough(exactly(size))
    .pipeTo(fixed.writable)
    .catch((e: unknown) => {
      mismatch = e;
      throw e;
    });
  const [piped, put] = await Promise.allSettled([pipe, store(fixed.readable)]);
  if (mismatch instanceof SizeMismatch) throw mismatch;
  if (piped.status === 'rejected') throw piped.reason;
  if (put.status === 'rejected') throw put.reason;
  return put.value;
}

async function single(bucket: R2Bucket, id: string, body: ReadableStream<Uint8Array>, size: number): Promise<void> {
  await pipeExactly(body, size, (readable) => bucket.put(id, readable));
}

async function multipart(
  bucket: R2Bucket,
  id: string,
  body: ReadableStream<Uint8Array>,
  size: number,
  partBytes: number,
): Promise<void> {
  const upload = await bucket.createMultipartUpload(id);
  const reader = body.getReader();
  const parts: R2UploadedPart[] = [];
  let buf = new Uint8Array(Math.min(partBytes, size));
  let fill = 0;
  let seen = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += value.byteLength;
      if (seen > size) throw new SizeMismatch();
      let off = 0;
      while (off < value.byteLength) {
        const take = Math.min(buf.length - fill, value.byteLength - off);
        buf.set(value.subarray(off, off + take), fill);
        fill += take;
        off += take;
        if (fill === buf.length) {
          parts.push(await upload.uploadPart(parts.length + 1, buf));
          const left = size - parts.length * partBytes;
          buf = new Uint8Array(Math.min(partBytes, Math.max(0, left)));
          fill = 0;
        }
      }
    }
    if (seen !== size) throw new SizeMismatch();
    if (fill > 0) parts.push(await upload.uploadPart(parts.length + 1, buf.subarray(0, fill)));
    await upload.complete(parts);
  } catch (err) {
    await reader.cancel().catch(() => undefined);
    await upload.abort().catch(() => undefined);
    throw err;
  }
}

/**
 * The blob of `id` for `userId`, a current member of its conversation; otherwise 404 — the same answer as
 * for an id that never existed, a reservation not uploaded yet, or a blob already expired.
 */
export async function openAttachment(env: Env, userId: string, id: string): Promise<R2ObjectBody> {
  if (!ATTACHMENT_ID.test(id)) throw notFound();
  const db = makeDb(env);
  const row = await db.select().from(schema.attachments).where(eq(schema.attachments.id, id)).get();
  if (!row || row.uploadedAt === null || !(await isMember(db, row.conversationId, userId))) throw notFound();
  const obj = await env.ATTACHMENTS.get(id);
  if (!obj) throw notFound();
  return obj;
}

/** The uploader drops a reservation never completed (a cancelled upload): row and any partial state go. */
export async function cancelAttachment(env: Env, userId: string, id: string, now = Date.now()): Promise<void> {
  const db = makeDb(env);
  await pendingOf(env, db, userId, id, now);
  await abortParts(env, id);
  await db
    .delete(schema.attachments)
    .where(and(eq(schema.attachments.id, id), isNull(schema.attachments.uploadedAt)))
    .run();
}

/**
 * Deletes the blobs of `rows` (and aborts the parts uploads of those never completed), then the rows (a blob
 * never outlives its row: a crash between leaves a row).
 */
async function deleteRows(env: Env, db: Db, rows: { id: string; uploadedAt: number | null }[]): Promise<void> {
  if (rows.length === 0) return;
  const ids = rows.map((r) => r.id);
  for (const r of rows) if (r.uploadedAt === null) await abortParts(env, r.id);
  await env.ATTACHMENTS.delete(ids);
  for (let i = 0; i < ids.length; i += 90) {
    const chunk = ids.slice(i, i + 90);
    await db
      .delete(schema.attachments)
      .where(
        sql`${schema.attachments.id} IN (${sql.join(
          chunk.map((x) => sql`${x}`),
          sql`, `,
        )})`,
      )
      .run();
  }
}

/**
 * Cron: deletes attachments reserved more than `retentionMs` ago and reservations never uploaded within
 * `pendingTtlMs` — blob first, then row. Returns how many went.
 */
export async function cleanupAttachments(env: Env, now = Date.now()): Promise<{ attachments: number }> {
  const cfg = attachmentConfig(env.ATTACHMENT_LIMITS);
  const db = makeDb(env);
  const a = schema.attachments;
  let total = 0;
  for (let round = 0; round < 20; round++) {
    const rows = await db
      .select({ id: a.id, uploadedAt: a.uploadedAt })
      .from(a)
      .where(
        or(lt(a.createdAt, now - cfg.retentionMs), and(isNull(a.uploadedAt), lt(a.createdAt, now - cfg.pendingTtlMs))),
      )
      .limit(cfg.cleanupBatch)
      .all();
    await deleteRows(env, db, rows);
    total += rows.length;
    if (rows.length < cfg.cleanupBatch) break;
  }
  return { attachments: total };
}

/** Deletes, batch by batch (blob first, then row), every attachment row `where` selects; how many. */
async function deleteAttachmentsWhere(env: Env, where: SQL): Promise<number> {
  const cfg = attachmentConfig(env.ATTACHMENT_LIMITS);
  const db = makeDb(env);
  let total = 0;
  for (;;) {
    const rows = await db
      .select({ id: schema.attachments.id, uploadedAt: schema.attachments.uploadedAt })
      .from(schema.attachments)
      .where(where)
      .limit(cfg.cleanupBatch)
      .all();
    await deleteRows(env, db, rows);
    total += rows.length;
    if (rows.length < cfg.cleanupBatch) return total;
  }
}

/**
 * Account deletion (issue 18): every attachment `userId` uploaded — blobs and rows. Attachments other
 * people sent into conversations the user was in belong to those people and stay until they expire.
 */
export function deleteUserAttachments(env: Env, userId: string): Promise<number> {
  return deleteAttachmentsWhere(env, eq(schema.attachments.uploaderUserId, userId));
}

/**
 * The attachments of a conversation that is going whole (account deletion of its last member): nobody is
 * left who could open them.
 */
export function deleteConversationAttachments(env: Env, conversationId: string): Promise<number> {
  return deleteAttachmentsWhere(env, eq(schema.attachments.conversationId, conversationId));
}

// Account deletion (worker/domain/account.ts): BEFORE the D1 rows go — the blobs are found through them.
onAccountDeletion(
  'attachments',
  async ({ env, userId, orphanedConversationIds }) => {
    await deleteUserAttachments(env, userId);
    for (const c of orphanedConversationIds) await deleteConversationAttachments(env, c);
  },
  'before',
);
