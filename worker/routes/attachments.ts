import type { Context } from 'hono';
import { Hono } from 'hono';
import { z } from 'zod';
import { requireAuth } from '../auth/middleware.js';
import {
  attachmentConfig,
  cancelAttachment,
  completeAttachment,
  openAttachment,
  reserveAttachment,
  storeAttachment,
  storeAttachmentPart,
} from '../domain/attachments.js';
import type { AppBindings } from '../env.js';
import { AppError } from '../errors.js';
import { idString } from '../validate.js';
import { readJson, smallBody } from './input.js';

const reserveBody = z.strictObject({
  conversationId: idString,
  /** Ciphertext bytes (≥ 16: the smallest blob is one empty chunk's tag). */
  size: z.number().int().min(16).max(Number.MAX_SAFE_INTEGER),
  /** Upload in numbered parts (PUT …/parts/:n, then POST …/complete) instead of one PUT. */
  parts: z.boolean().optional(),
});

const completeBody = z.strictObject({
  parts: z
    .array(z.strictObject({ partNumber: z.number().int().min(1).max(10_000), etag: z.string().min(1).max(1024) }))
    .min(1)
    .max(10_000),
});

/** The response CSP of a blob: nothing in it may run, load or be framed, whatever a browser sniffs. */
export const BLOB_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'";

/**
 * True for the two routes whose body is not JSON and is not bounded by the global body limit: the upload
 * streams up to the reserved size (ATTACHMENT_LIMITS.maxFileBytes), a part up to the part size, and each
 * counts every byte itself.
 */
export function isAttachmentUpload(c: Context): boolean {
  return c.req.method === 'PUT' && /^\/api\/attachments\/[^/]+(\/parts\/[^/]+)?$/.test(c.req.path);
}

function octetStream(c: Context<AppBindings>): void {
  if (!/^application\/octet-stream\s*(;|$)/i.test(c.req.header('content-type') ?? ''))
    throw new AppError(415, 'unsupported_media_type', 'expected Content-Type: application/octet-stream');
}

function contentLength(c: Context<AppBindings>): number | null {
  const h = c.req.header('content-length');
  if (h === undefined) return null;
  if (!/^\d{1,16}$/.test(h)) throw new AppError(400, 'invalid_request', 'bad Content-Length');
  return Number(h);
}

/**
 * Encrypted attachments (logic in worker/domain/attachments.ts):
 *
 *   POST   /api/attachments       { conversationId, size, parts? } → 201 { attachmentId, size, uploadBy, expiresAt
 *                                  (, partBytes, parts) }
 *   PUT    /api/attachments/:id   application/octet-stream, exactly `size` bytes → 200 { attachmentId, size }
 *   PUT    /api/attachments/:id/parts/:n   (a parts reservation) part n of `parts`: `partBytes` bytes, the last
 *                                  the rest → 200 { partNumber, etag }; parts may go at once, a part sent again
 *                                  replaces the one before
 *   POST   /api/attachments/:id/complete   { parts: [{ partNumber, etag }] } → 200 { attachmentId, size }
 *   GET    /api/attachments/:id   → 200 the blob (attachment disposition, nosniff, sandbox CSP)
 *   DELETE /api/attachments/:id   → 204 (the uploader cancels a reservation never completed)
 *
 * Members only: anyone else, and any id that does not exist (or is not uploaded yet, or expired), gets 404.
 */
export const attachments = new Hono<AppBindings>()
  .post('/', smallBody, requireAuth, async (c) => {
    const body = await readJson(c, reserveBody);
    const r = await reserveAttachment(
      c.env,
      c.get('auth').userId,
      body.conversationId,
      body.size,
      Date.now(),
      body.parts === true,
    );
    return c.json(r, 201);
  })
  .put('/:id', requireAuth, async (c) => {
    const body = c.req.raw.body;
    try {
      octetStream(c);
      const declared = contentLength(c);
      const max = attachmentConfig(c.env.ATTACHMENT_LIMITS).maxFileBytes;
      if (declared !== null && declared > max)
        throw new AppError(413, 'attachment_too_large', 'the attachment is larger than this server accepts', {
          maxBytes: max,
        });
      return c.json(await storeAttachment(c.env, c.get('auth').userId, c.req.param('id'), body, declared), 200);
    } catch (err) {
      await body?.cancel().catch(() => undefined); // refused: read nothing more of it
      throw err;
    }
  })
  .put('/:id/parts/:n', requireAuth, async (c) => {
    const body = c.req.raw.body;
    try {
      octetStream(c);
      const n = c.req.param('n');
      if (!/^\d{1,5}$/.test(n)) throw new AppError(400, 'invalid_part', 'no such part number for this attachment');
      const declared = contentLength(c);
      const max = attachmentConfig(c.env.ATTACHMENT_LIMITS).maxFileBytes;
      if (declared !== null && declared > max)
        throw new AppError(413, 'attachment_too_large', 'the attachment is larger than this server accepts', {
          maxBytes: max,
        });
      const userId = c.get('auth').userId;
      return c.json(await storeAttachmentPart(c.env, userId, c.req.param('id'), Number(n), body, declared), 200);
    } catch (err) {
      await body?.cancel().catch(() => undefined);
      throw err;
    }
  })
  .post('/:id/complete', smallBody, requireAuth, async (c) => {
    const body = await readJson(c, completeBody);
    return c.json(await completeAttachment(c.env, c.get('auth').userId, c.req.param('id'), body.parts), 200);
  })
  .get('/:id', requireAuth, async (c) => {
    const obj = await openAttachment(c.env, c.get('auth').userId, c.req.param('id'));
    return new Response(obj.body, {
      status: 200,
      headers: {
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(obj.size),
        'Content-Disposition': 'attachment; filename="attachment.bin"',
        'X-Content-Type-Options': 'nosniff',
        'Content-Security-Policy': BLOB_CSP,
        'Cache-Control': 'private, no-store',
      },
    });
  })
  .delete('/:id', requireAuth, async (c) => {
    await cancelAttachment(c.env, c.get('auth').userId, c.req.param('id'));
    return c.body(null, 204);
  });
