import { createExecutionContext, createScheduledController, waitOnExecutionContext } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { and, eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { schema } from './db.js';
import {
  ATTACHMENT_DEFAULTS,
  cleanupAttachments,
  deleteUserAttachments,
  reserveAttachment,
  storeAttachment,
} from './domain/attachments.js';
import type { Env } from './env.js';
import worker from './index.js';
import { BLOB_CSP } from './routes/attachments.js';
import { api, db, makeConversation, makeUser, type TestMember } from './test/delivery-fixtures.js';

const MiB = 1024 * 1024;

/** Byte equality without vitest's element-wise diff (slow on megabytes). */
async function sameBytes(got: Response | R2ObjectBody | ArrayBuffer, want: Uint8Array): Promise<boolean> {
  const a = new Uint8Array(got instanceof ArrayBuffer ? got : await got.arrayBuffer());
  if (a.length !== want.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== want[i]) return false;
  return true;
}
const token = (m: TestMember, i = 0) => m.devices[i]!.token;

function blob(n: number, seed = 7): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 131 + seed) & 0xff;
  return out;
}

/** A stream of `data` in `piece`-byte chunks, with no Content-Length (chunked upload). */
function streamOf(data: Uint8Array, piece = 64 * 1024): ReadableStream<Uint8Array> {
  let off = 0;
  return new ReadableStream({
    pull(ctl) {
      if (off >= data.length) return ctl.close();
      ctl.enqueue(data.slice(off, off + piece));
      off += piece;
    },
  });
}

async function reserve(m: TestMember, conversationId: string, size: number) {
  const res = await api('/api/attachments', token(m), { method: 'POST', json: { conversationId, size } });
  return { res, body: (await res.clone().json()) as { attachmentId: string; error?: { code: string } } };
}

function put(m: TestMember, id: string, body: BodyInit | null, headers: Record<string, string> = {}) {
  return api(`/api/attachments/${id}`, token(m), {
    method: 'PUT',
    body,
    headers: { 'content-type': 'application/octet-stream', ...headers },
  });
}

const get = (m: TestMember, id: string) => api(`/api/attachments/${id}`, token(m), { method: 'GET' });
const errorCode = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;
const row = (id: string) => db().select().from(schema.attachments).where(eq(schema.attachments.id, id)).get();

async function trio() {
  const [alice, bob, carol] = await Promise.all([makeUser('alice'), makeUser('bob'), makeUser('carol')]);
  const conv = await makeConversation([alice, bob, carol]);
  return { alice, bob, carol, conv };
}

describe('attachments: upload and download', () => {
  it('a member reserves an id, uploads exactly its bytes, and every current member downloads the same bytes as an opaque attachment', async () => {
    const { alice, bob, carol, conv } = await trio();
    const data = blob(200_000);
    const { res, body } = await reserve(alice, conv, data.length);
    expect(res.status).toBe(201);
    expect(body.attachmentId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    const up = await put(alice, body.attachmentId, data);
    expect(up.status, await up.clone().text()).toBe(200);
    expect((await row(body.attachmentId))?.uploadedAt).toBeTypeOf('number');
    for (const m of [alice, bob, carol]) {
      const r = await get(m, body.attachmentId);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('application/octet-stream');
      expect(r.headers.get('content-disposition')).toMatch(/^attachment/);
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
      expect(r.headers.get('content-security-policy')).toBe(BLOB_CSP);
      expect(r.headers.get('content-security-policy')).toContain('sandbox');
      expect(r.headers.get('cache-control')).toContain('no-store');
      expect(await sameBytes(r, data)).toBe(true);
    }
  });

  it('an upload larger than the global JSON body limit streams through (chunked, no Content-Length)', async () => {
    const { alice, bob, conv } = await trio();
    const data = blob(3 * MiB + 5, 3);
    const { body } = await reserve(alice, conv, data.length);
    expect((await put(alice, body.attachmentId, streamOf(data))).status).toBe(200);
    expect(await sameBytes(await get(bob, body.attachmentId), data)).toBe(true);
  });

  it('non-members, removed members, strangers’ ids and reservations not yet uploaded all get the same 404 (no existence leak)', async () => {
    const { alice, bob, conv } = await trio();
    const outsider = await makeUser('outsider');
    const { body } = await reserve(alice, conv, 1000);
    const pending = await get(bob, body.attachmentId);
    expect(pending.status).toBe(404);
    const pendingBody = await pending.text();
    await put(alice, body.attachmentId, blob(1000));
    const answers: [number, string][] = [];
    for (const r of [
      await get(outsider, body.attachmentId),
      await get(outsider, 'AAAAAAAAAAAAAAAAAAAAAA'),
      await get(bob, 'AAAAAAAAAAAAAAAAAAAAAA'),
      await get(bob, '..%2F..%2Fsecrets'),
    ])
      answers.push([r.status, await r.text()]);
    // Bob is removed from the conversation: from then on the same 404.
    await db()
      .delete(schema.members)
      .where(and(eq(schema.members.conversationId, conv), eq(schema.members.userId, bob.userId)));
    const removed = await get(bob, body.attachmentId);
    answers.push([removed.status, await removed.text()]);
    for (const [status, text] of answers) {
      expect(status).toBe(404);
      expect(text).toBe(pendingBody);
    }
    expect(JSON.parse(pendingBody)).toEqual({ error: { code: 'not_found', message: 'no such attachment' } });
    // Nor can an outsider reserve in the conversation (same answer as a conversation that does not exist).
    const r1 = await reserve(outsider, conv, 100);
    const r2 = await reserve(outsider, 'c_nope', 100);
    expect([r1.res.status, r2.res.status]).toEqual([404, 404]);
    expect(await r1.res.text()).toBe(await r2.res.text());
  });

  it('only the uploader may upload into a reservation; a completed one cannot be overwritten', async () => {
    const { alice, bob, conv } = await trio();
    const data = blob(500);
    const { body } = await reserve(alice, conv, data.length);
    const byBob = await put(bob, body.attachmentId, data);
    expect(byBob.status).toBe(404);
    expect(await env.ATTACHMENTS.head(body.attachmentId)).toBeNull();
    expect((await put(alice, body.attachmentId, data)).status).toBe(200);
    const again = await put(alice, body.attachmentId, blob(500, 9));
    expect(again.status).toBe(409);
    expect(await errorCode(again)).toBe('already_uploaded');
    expect(await sameBytes(await get(bob, body.attachmentId), data)).toBe(true);
  });
});

describe('attachments: the size contract', () => {
  for (const [what, delta] of [
    ['one byte more', 1],
    ['one byte less', -1],
    ['a whole chunk more', 65_536],
    ['nothing', -Infinity],
  ] as const) {
    it(`an upload of ${what} than reserved is refused with size_mismatch and nothing is kept — declared or streamed`, async () => {
      const { alice, bob, conv } = await trio();
      const size = 100_000;
      const n = delta === -Infinity ? 0 : size + delta;
      const { body } = await reserve(alice, conv, size);
      // With a (wrong) Content-Length: refused before a byte is read.
      const declared = await put(alice, body.attachmentId, blob(n));
      expect(declared.status).toBe(400);
      expect(await errorCode(declared)).toBe('size_mismatch');
      // Streamed without a Content-Length: counted and cut off.
      const streamed = await put(alice, body.attachmentId, streamOf(blob(n), 7_000));
      expect(streamed.status).toBe(400);
      expect(await errorCode(streamed)).toBe('size_mismatch');
      expect(await env.ATTACHMENTS.head(body.attachmentId)).toBeNull();
      expect((await row(body.attachmentId))?.uploadedAt).toBeNull();
      expect((await get(bob, body.attachmentId)).status).toBe(404);
      // The reservation is still good for the right bytes.
      expect((await put(alice, body.attachmentId, streamOf(blob(size)))).status).toBe(200);
      expect(await sameBytes(await get(bob, body.attachmentId), blob(size))).toBe(true);
    });
  }

  it('large files go to R2 as a multipart upload of equal parts; one byte too many aborts it and keeps nothing', async () => {
    const { alice, conv } = await trio();
    const calls: { parts: number[]; aborted: number; completed: number; created: number } = {
      parts: [],
      aborted: 0,
      completed: 0,
      created: 0,
    };
    const bucket = env.ATTACHMENTS;
    const spy = {
      ...bucket,
      head: bucket.head.bind(bucket),
      get: bucket.get.bind(bucket),
      put: bucket.put.bind(bucket),
      delete: bucket.delete.bind(bucket),
      async createMultipartUpload(key: string) {
        calls.created++;
        const u = await bucket.createMultipartUpload(key);
        return {
          ...u,
          key: u.key,
          uploadId: u.uploadId,
          uploadPart: (n: number, v: Uint8Array) => {
            calls.parts.push(v.byteLength);
            return u.uploadPart(n, v);
          },
          abort: () => {
            calls.aborted++;
            return u.abort();
          },
          complete: (p: R2UploadedPart[]) => {
            calls.completed++;
            return u.complete(p);
          },
        };
      },
    } as unknown as R2Bucket;
    const e = { ...env, ATTACHMENTS: spy, ATTACHMENT_LIMITS: JSON.stringify({ multipartThresholdBytes: MiB }) } as Env;
    const size = 2 * 5 * MiB + 12_345;
    const data = blob(size, 11);
    const r = await reserveAttachment(e, alice.userId, conv, size);
    await expect(storeAttachment(e, alice.userId, r.attachmentId, streamOf(data, 300_000), null)).resolves.toEqual({
      attachmentId: r.attachmentId,
      size,
    });
    expect(calls).toEqual({ parts: [8 * MiB, size - 8 * MiB], aborted: 0, completed: 1, created: 1 });
    expect(await sameBytes((await env.ATTACHMENTS.get(r.attachmentId))!, data)).toBe(true);

    const over = await reserveAttachment(e, alice.userId, conv, size);
    const err = await storeAttachment(
      e,
      alice.userId,
      over.attachmentId,
      streamOf(blob(size + 1), 300_000),
      null,
    ).catch((x: unknown) => x);
    expect(err).toMatchObject({ status: 400, code: 'size_mismatch' });
    expect(calls.aborted).toBe(1);
    expect(calls.completed).toBe(1);
    expect(await env.ATTACHMENTS.head(over.attachmentId)).toBeNull();
    const under = await reserveAttachment(e, alice.userId, conv, size);
    const err2 = await storeAttachment(
      e,
      alice.userId,
      under.attachmentId,
      streamOf(blob(size - 1), 300_000),
      null,
    ).catch((x: unknown) => x);
    expect(err2).toMatchObject({ status: 400, code: 'size_mismatch' });
    expect(calls.aborted).toBe(2);
    expect(await env.ATTACHMENTS.head(under.attachmentId)).toBeNull();
  });

  it('a wrong content type is refused with 415 before anything is read', async () => {
    const { alice, conv } = await trio();
    const { body } = await reserve(alice, conv, 100);
    for (const type of ['application/json', 'image/png', 'text/plain', '']) {
      const r = await api(`/api/attachments/${body.attachmentId}`, token(alice), {
        method: 'PUT',
        body: blob(100),
        headers: type ? { 'content-type': type } : {},
      });
      expect(r.status).toBe(415);
      expect(await errorCode(r)).toBe('unsupported_media_type');
    }
    expect(await env.ATTACHMENTS.head(body.attachmentId)).toBeNull();
  });

  it('a cancelled reservation is gone for good and its quota is free again; a completed one cannot be cancelled', async () => {
    const { alice, conv } = await trio();
    const { body } = await reserve(alice, conv, 100);
    const del = await api(`/api/attachments/${body.attachmentId}`, token(alice), { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect(await row(body.attachmentId)).toBeUndefined();
    expect((await put(alice, body.attachmentId, blob(100))).status).toBe(404);
    const done = await reserve(alice, conv, 100);
    await put(alice, done.body.attachmentId, blob(100));
    const late = await api(`/api/attachments/${done.body.attachmentId}`, token(alice), { method: 'DELETE' });
    expect(late.status).toBe(409);
  });
});

describe('attachments: parts uploads', () => {
  const part = (m: TestMember, id: string, n: number | string, body: BodyInit | null, headers = {}) =>
    api(`/api/attachments/${id}/parts/${n}`, token(m), {
      method: 'PUT',
      body,
      headers: { 'content-type': 'application/octet-stream', ...headers },
    });
  const complete = (m: TestMember, id: string, parts: unknown) =>
    api(`/api/attachments/${id}/complete`, token(m), { method: 'POST', json: { parts } });
  async function reserveParts(m: TestMember, conversationId: string, size: number) {
    const res = await api('/api/attachments', token(m), {
      method: 'POST',
      json: { conversationId, size, parts: true },
    });
    expect(res.status).toBe(201);
    return (await res.json()) as { attachmentId: string; partBytes: number; parts: number };
  }
  type Etag = { partNumber: number; etag: string };

  it('parts sent at once and out of order, one of them sent again, then completed: every member downloads exactly the bytes', async () => {
    const { alice, bob, conv } = await trio();
    const size = ATTACHMENT_DEFAULTS.partBytes + 1000;
    const data = blob(size, 3);
    const r = await reserveParts(alice, conv, size);
    expect(r).toMatchObject({ partBytes: ATTACHMENT_DEFAULTS.partBytes, parts: 2 });
    expect(await env.ATTACHMENTS.head(`parts/${r.attachmentId}`)).not.toBeNull();
    const [p2, p1] = await Promise.all([
      part(alice, r.attachmentId, 2, data.slice(r.partBytes)),
      part(alice, r.attachmentId, 1, streamOf(data.subarray(0, r.partBytes), 500_000)),
    ]);
    expect([p1.status, p2.status]).toEqual([200, 200]);
    expect((await get(bob, r.attachmentId)).status).toBe(404); // not complete yet
    const again = await part(alice, r.attachmentId, 2, data.slice(r.partBytes));
    expect(again.status).toBe(200);
    const etags = [(await p1.json()) as Etag, (await again.json()) as Etag];
    expect(etags.map((e) => e.partNumber)).toEqual([1, 2]);
    const done = await complete(alice, r.attachmentId, etags);
    expect(done.status, await done.clone().text()).toBe(200);
    expect(await done.json()).toEqual({ attachmentId: r.attachmentId, size });
    expect((await row(r.attachmentId))?.uploadedAt).toBeTypeOf('number');
    expect(await env.ATTACHMENTS.head(`parts/${r.attachmentId}`)).toBeNull();
    for (const m of [alice, bob]) expect(await sameBytes(await get(m, r.attachmentId), data)).toBe(true);
    const late = await complete(alice, r.attachmentId, etags);
    expect([late.status, await errorCode(late)]).toEqual([409, 'already_uploaded']);
    const latePart = await part(alice, r.attachmentId, 2, data.slice(r.partBytes));
    expect([latePart.status, await errorCode(latePart)]).toEqual([409, 'already_uploaded']);
  });

  it('parts of the wrong size or number, the wrong mode, a stranger, and a completion missing a part are refused with stable codes; nothing is downloadable', async () => {
    const { alice, bob, conv } = await trio();
    const size = 100_000; // one part (the last may be short)
    const r = await reserveParts(alice, conv, size);
    expect(r.parts).toBe(1);
    const cases: [string, Promise<Response>, number, string][] = [
      ['one byte less', part(alice, r.attachmentId, 1, blob(size - 1)), 400, 'size_mismatch'],
      ['one byte more', part(alice, r.attachmentId, 1, blob(size + 1)), 400, 'size_mismatch'],
      ['a longer chunked stream', part(alice, r.attachmentId, 1, streamOf(blob(size + 1))), 400, 'size_mismatch'],
      ['no body', part(alice, r.attachmentId, 1, null), 400, 'size_mismatch'],
      ['part 0', part(alice, r.attachmentId, 0, blob(size)), 400, 'invalid_part'],
      ['part 2 of 1', part(alice, r.attachmentId, 2, blob(size)), 400, 'invalid_part'],
      ['a part that is not a number', part(alice, r.attachmentId, 'x', blob(size)), 400, 'invalid_part'],
      [
        'JSON',
        part(alice, r.attachmentId, 1, blob(size), { 'content-type': 'application/json' }),
        415,
        'unsupported_media_type',
      ],
      ['another member', part(bob, r.attachmentId, 1, blob(size)), 404, 'not_found'],
      ['the whole blob in one PUT', put(alice, r.attachmentId, blob(size)), 409, 'upload_mode_mismatch'],
      [
        'completed before any part',
        complete(alice, r.attachmentId, [{ partNumber: 1, etag: 'x' }]),
        400,
        'upload_incomplete',
      ],
      [
        'completed with too many parts',
        complete(alice, r.attachmentId, [
          { partNumber: 1, etag: 'x' },
          { partNumber: 2, etag: 'y' },
        ]),
        400,
        'invalid_part',
      ],
      ['completed with nothing', complete(alice, r.attachmentId, []), 400, 'invalid_request'],
    ];
    for (const [what, res, status, code] of cases) {
      const got = await res;
      expect([what, got.status, await errorCode(got)]).toEqual([what, status, code]);
    }
    const whole = await reserve(alice, conv, size);
    const wrongMode = await part(alice, whole.body.attachmentId, 1, blob(size));
    expect([wrongMode.status, await errorCode(wrongMode)]).toEqual([409, 'upload_mode_mismatch']);
    const wrongComplete = await complete(alice, whole.body.attachmentId, [{ partNumber: 1, etag: 'x' }]);
    expect([wrongComplete.status, await errorCode(wrongComplete)]).toEqual([409, 'upload_mode_mismatch']);
    for (const id of [r.attachmentId, whole.body.attachmentId]) {
      expect((await get(bob, id)).status).toBe(404);
      expect(await env.ATTACHMENTS.head(id)).toBeNull();
      expect((await row(id))?.uploadedAt).toBeNull();
    }
    // The reservation still takes the right bytes afterwards.
    const ok = await part(alice, r.attachmentId, 1, blob(size));
    const fin = await complete(alice, r.attachmentId, [(await ok.json()) as Etag]);
    expect(fin.status).toBe(200);
    expect(await sameBytes(await get(bob, r.attachmentId), blob(size))).toBe(true);
  });

  it('a cancelled parts upload, one abandoned past the clean-up and one of a deleted account are aborted in R2 and leave no marker', async () => {
    const { alice, conv } = await trio();
    const made = await Promise.all([0, 1, 2].map(() => reserveParts(alice, conv, 1000)));
    const uploadIds: string[] = [];
    for (const r of made) {
      expect((await part(alice, r.attachmentId, 1, blob(1000))).status).toBe(200);
      uploadIds.push((await env.ATTACHMENTS.head(`parts/${r.attachmentId}`))!.customMetadata!.uploadId!);
    }
    const [cancelled, abandoned] = made as [(typeof made)[0], (typeof made)[0]]; // the third: account deletion
    expect((await api(`/api/attachments/${cancelled.attachmentId}`, token(alice), { method: 'DELETE' })).status).toBe(
      204,
    );
    await db()
      .update(schema.attachments)
      .set({ createdAt: Date.now() - 24 * 3600 * 1000 - 1 })
      .where(eq(schema.attachments.id, abandoned.attachmentId));
    await cleanupAttachments(env as Env);
    await deleteUserAttachments(env as Env, alice.userId);
    for (const [i, r] of made.entries()) {
      expect(await row(r.attachmentId)).toBeUndefined();
      expect(await env.ATTACHMENTS.head(`parts/${r.attachmentId}`)).toBeNull();
      const resumed = env.ATTACHMENTS.resumeMultipartUpload(r.attachmentId, uploadIds[i]!);
      await expect(resumed.uploadPart(1, blob(1000))).rejects.toThrow();
    }
  });
});

describe('attachments: quotas', () => {
  it('a file above the per-file limit is refused with 413 attachment_too_large, at reservation and at upload', async () => {
    const { alice, conv } = await trio();
    const { res } = await reserve(alice, conv, ATTACHMENT_DEFAULTS.maxFileBytes + 1);
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({
      error: { code: 'attachment_too_large', maxBytes: ATTACHMENT_DEFAULTS.maxFileBytes },
    });
    const ok = await reserve(alice, conv, 1000);
    const r = await put(alice, ok.body.attachmentId, null, {
      'content-length': String(ATTACHMENT_DEFAULTS.maxFileBytes + 1),
    });
    expect(r.status).toBe(413);
    expect(await errorCode(r)).toBe('attachment_too_large');
    expect(await (await reserve(alice, conv, ATTACHMENT_DEFAULTS.maxFileBytes)).res.status).toBe(201);
  });

  it('bytes per day: reservations past the daily quota get 429 attachment_quota_exceeded with Retry-After; other accounts are unaffected', async () => {
    const { alice, bob, conv } = await trio();
    const big = ATTACHMENT_DEFAULTS.maxFileBytes;
    const n = Math.floor(ATTACHMENT_DEFAULTS.dailyBytes / big);
    for (let i = 0; i < n; i++) expect((await reserve(alice, conv, big)).res.status).toBe(201);
    const over = await reserve(alice, conv, ATTACHMENT_DEFAULTS.dailyBytes - n * big + 1);
    expect(over.res.status).toBe(429);
    expect(over.body.error?.code).toBe('attachment_quota_exceeded');
    const retry = Number(over.res.headers.get('retry-after'));
    expect(retry).toBeGreaterThan(23 * 3600);
    expect(retry).toBeLessThanOrEqual(24 * 3600);
    expect((await reserve(alice, conv, ATTACHMENT_DEFAULTS.dailyBytes - n * big)).res.status).toBe(201);
    expect((await reserve(alice, conv, 16)).res.status).toBe(429);
    expect((await reserve(bob, conv, big)).res.status).toBe(201);
  });

  it('attachments per day: the count quota refuses concurrent reservations past it exactly (no overshoot)', async () => {
    const { alice, conv } = await trio();
    const e = { ...env, ATTACHMENT_LIMITS: JSON.stringify({ dailyCount: 5 }) } as Env;
    const results = await Promise.allSettled(
      Array.from({ length: 12 }, () => reserveAttachment(e, alice.userId, conv, 100)),
    );
    expect(results.filter((r) => r.status === 'fulfilled').length).toBe(5);
    for (const r of results.filter((x) => x.status === 'rejected'))
      expect((r as PromiseRejectedResult).reason).toMatchObject({ status: 429, code: 'attachment_quota_exceeded' });
    // A day later the window has moved on.
    await expect(
      reserveAttachment(e, alice.userId, conv, 100, Date.now() + 24 * 3600 * 1000 + 1),
    ).resolves.toBeTruthy();
  });
});

describe('attachments: what the server keeps, and for how long', () => {
  it('the app’s CSP lets images come from the app and decrypted blob: URLs only (no data:, no other origin)', async () => {
    const { CSP } = await import('./security.js');
    const res = await api('/api/health', null, { method: 'GET' });
    for (const csp of [CSP, res.headers.get('content-security-policy') ?? '']) {
      const img = csp
        .split(';')
        .map((d) => d.trim())
        .find((d) => d.startsWith('img-src'));
      expect(img).toBe("img-src 'self' blob:");
      expect(csp).not.toContain('data:');
    }
  });

  it('D1 keeps only id, conversation, uploader, size and times', async () => {
    const cols = await env.DB.prepare("SELECT name FROM pragma_table_info('attachments') ORDER BY cid").all<{
      name: string;
    }>();
    expect(cols.results.map((c) => c.name)).toEqual([
      'id',
      'conversation_id',
      'uploader_user_id',
      'size',
      'created_at',
      'uploaded_at',
    ]);
  });

  it('the scheduled clean-up deletes blobs and rows past the retention period and reservations never uploaded', async () => {
    const { alice, bob, conv } = await trio();
    const old = await reserve(alice, conv, 100);
    await put(alice, old.body.attachmentId, blob(100));
    const stale = await reserve(alice, conv, 100);
    const fresh = await reserve(bob, conv, 100);
    await put(bob, fresh.body.attachmentId, blob(100));
    const pendingFresh = await reserve(bob, conv, 100);
    const day = 24 * 3600 * 1000;
    await db()
      .update(schema.attachments)
      .set({ createdAt: Date.now() - 30 * day - 1 })
      .where(eq(schema.attachments.id, old.body.attachmentId));
    await db()
      .update(schema.attachments)
      .set({ createdAt: Date.now() - day - 1 })
      .where(eq(schema.attachments.id, stale.body.attachmentId));

    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ cron: '17 * * * *' }), env, ctx);
    await waitOnExecutionContext(ctx);

    expect(await row(old.body.attachmentId)).toBeUndefined();
    expect(await env.ATTACHMENTS.head(old.body.attachmentId)).toBeNull();
    expect((await get(bob, old.body.attachmentId)).status).toBe(404);
    expect(await row(stale.body.attachmentId)).toBeUndefined();
    expect((await put(alice, stale.body.attachmentId, blob(100))).status).toBe(404);
    expect(await row(fresh.body.attachmentId)).toBeDefined();
    expect((await get(alice, fresh.body.attachmentId)).status).toBe(200);
    expect(await row(pendingFresh.body.attachmentId)).toBeDefined();
  });

  it('the retention period is configurable (ATTACHMENT_LIMITS.retentionMs)', async () => {
    const { alice, conv } = await trio();
    const r = await reserve(alice, conv, 100);
    await put(alice, r.body.attachmentId, blob(100));
    const week = { ...env, ATTACHMENT_LIMITS: JSON.stringify({ retentionMs: 7 * 24 * 3600 * 1000 }) } as Env;
    await cleanupAttachments(week, Date.now() + 6 * 24 * 3600 * 1000);
    expect(await row(r.body.attachmentId)).toBeDefined();
    await cleanupAttachments(week, Date.now() + 7 * 24 * 3600 * 1000 + 1);
    expect(await row(r.body.attachmentId)).toBeUndefined();
    expect(await env.ATTACHMENTS.head(r.body.attachmentId)).toBeNull();
  });

  it('deleting an account’s attachments removes every blob and row it uploaded, and nobody else’s', async () => {
    const { alice, bob, conv } = await trio();
    const mine = [];
    for (let i = 0; i < 3; i++) {
      const r = await reserve(alice, conv, 100);
      if (i < 2) await put(alice, r.body.attachmentId, blob(100));
      mine.push(r.body.attachmentId);
    }
    const theirs = await reserve(bob, conv, 100);
    await put(bob, theirs.body.attachmentId, blob(100));
    expect(await deleteUserAttachments(env, alice.userId)).toBe(3);
    for (const id of mine) {
      expect(await row(id)).toBeUndefined();
      expect(await env.ATTACHMENTS.head(id)).toBeNull();
    }
    expect(
      await db().select().from(schema.attachments).where(eq(schema.attachments.uploaderUserId, alice.userId)).all(),
    ).toEqual([]);
    expect((await get(alice, theirs.body.attachmentId)).status).toBe(200);
  });

  it('ATTACHMENT_LIMITS must be valid: unknown keys, non-numbers and parts under 5 MiB or over 64 MiB are refused', async () => {
    const { attachmentConfig } = await import('./domain/attachments.js');
    expect(() => attachmentConfig('{"nope": 1}')).toThrow();
    expect(() => attachmentConfig('{"dailyBytes": "1"}')).toThrow();
    expect(() => attachmentConfig('{"partBytes": 1048576}')).toThrow(/5 MiB/);
    expect(() => attachmentConfig('{"partBytes": 134217728}')).toThrow(/64 MiB/);
    expect(attachmentConfig('{"dailyBytes": 5}').dailyBytes).toBe(5);
  });
});
