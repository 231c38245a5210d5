/**
 * Attachments in the engine (docs/PROTOCOL.md §"Attachments"): the pointer format inside messages, and
 * transfers — encrypt + upload before a message is sent, download + decrypt when the user opens one.
 *
 * Upload (`Transfers.upload`): an id is reserved for the ciphertext size, then the file is read in 8 MiB
 * slices and encrypted chunk by chunk under a fresh key (the protocol core's AttachmentEncryptor, which also
 * computes the digest). Up to 8 MiB of ciphertext is collected as one Blob and sent in one PUT; a larger one
 * goes up as a parts upload (docs/API.md §Attachments): each part of the server's part size is sent as soon
 * as it is encrypted, PARTS_IN_FLIGHT at once, so encryption overlaps the upload. Progress is emitted as
 * `transfer` events; `cancel(id)` aborts. A failed upload keeps its ciphertext (as Blobs — the browser keeps
 * them out of the JS heap), reservation and part receipts in memory, so `upload` with the same transfer id
 * re-sends only what the server lacks, WITHOUT the file being picked or encrypted again (the same bytes, so
 * no key/nonce pair protects anything new). An upload whose file was not encrypted whole (unreadable,
 * cancelled) keeps nothing — a retry starts with a fresh key; a cancelled one frees the reservation.
 *
 * Download (`Transfers.download`): the blob streams through the AttachmentDecryptor; decrypted chunks are
 * held back (as Blob parts) until every byte arrived and the digest matched — then the whole file is
 * returned. Any authentication, length or digest failure is `attachment_damaged` and nothing is returned.
 *
 * The pointer's key and digest stay in the engine (the store, the worker's memory); the UI sees an
 * `AttachmentView` without them.
 *
 * Does NOT: touch pixels (the app strips image metadata and makes thumbnails before `upload`), send the
 * message (engine.ts does, after `upload` resolved), or keep plaintext anywhere but in the returned Blob.
 * @module
 */
import {
  AttachmentDecryptor,
  AttachmentEncryptor,
  attachmentLayout,
  constants,
  generateAttachmentKey,
  type Rng,
} from './_protocol.js';
import { type EngineContext, EngineError, type EngineErrorCode } from './context.js';
import { ApiError, type PartReceipt, type ServerApi, type TransferOptions } from './transport.js';

/** What the encrypted message carries (payload content type `att`). */
export interface AttachmentPointer {
  readonly v: 1;
  readonly attachmentId: string;
  readonly key: Uint8Array;
  readonly digest: Uint8Array;
  /** Plaintext bytes. */
  readonly size: number;
  readonly contentType: string;
  readonly fileName: string;
  readonly width: number | null;
  readonly height: number | null;
  readonly thumbnail: Uint8Array | null;
}

/** The pointer as the UI sees it: no key, no digest. */
export type AttachmentView = Omit<AttachmentPointer, 'key' | 'digest' | 'v'>;

/** What the app hands the engine to send: the (already metadata-stripped) file and what it says about it. */
export interface AttachmentDraft {
  readonly file: Blob;
  readonly fileName: string;
  readonly contentType: string;
  readonly width?: number | null;
  readonly height?: number | null;
  readonly thumbnail?: Uint8Array | null;
}

export const MAX_CAPTION_LEN = 4096;
export const MAX_FILE_NAME_LEN = 255;
const MAX_CONTENT_TYPE_LEN = 127;
const ATTACHMENT_ID = /^[A-Za-z0-9_-]{22,64}$/;
const CONTENT_TYPE = /^[a-z0-9!#$&^_.+-]{1,63}\/[a-z0-9!#$&^_.+-]{1,63}$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
const BAD_NAME = /[/\\\u0000-\u001f\u007f]/;

export const viewOf = (p: AttachmentPointer): AttachmentView => ({
  attachmentId: p.attachmentId,
  size: p.size,
  contentType: p.contentType,
  fileName: p.fileName,
  width: p.width,
  height: p.height,
  thumbnail: p.thumbnail,
});

/** A content type to send: lower-cased `type/subtype` of token characters, or application/octet-stream. */
export function normalizeContentType(t: string): string {
  const base = (t.split(';')[0] ?? '').trim().toLowerCase();
  return CONTENT_TYPE.test(base) && base.length <= MAX_CONTENT_TYPE_LEN ? base : 'application/octet-stream';
}

/** A file name to send: no path separators or control characters, at most 255 characters. */
export function normalizeFileName(n: string): string {
  const clean = [...n.normalize('NFC')]
    .filter((ch) => !BAD_NAME.test(ch))
    .join('')
    .trim();
  const chars = [...(clean || 'file')];
  if (chars.length <= MAX_FILE_NAME_LEN) return chars.join('');
  const dot = clean.lastIndexOf('.');
  const ext = dot > 0 && clean.length - dot <= 16 ? clean.slice(dot) : '';
  return chars.slice(0, MAX_FILE_NAME_LEN - [...ext].length).join('') + ext;
}

const dim = (v: unknown) => v === null || (Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535);

/** The pointer of a received payload, or null if any field breaks a rule of PROTOCOL.md §"Attachments". */
export function parseAttachmentPointer(x: unknown): AttachmentPointer | null {
  if (!x || typeof x !== 'object' || Array.isArray(x)) return null;
  const p = x as Record<string, unknown>;
  const ok =
    p.v === 1 &&
    typeof p.attachmentId === 'string' &&
    ATTACHMENT_ID.test(p.attachmentId) &&
    p.key instanceof Uint8Array &&
    p.key.length === constants.ATTACHMENT_KEY_LEN &&
    p.digest instanceof Uint8Array &&
    p.digest.length === constants.ATTACHMENT_DIGEST_LEN &&
    Number.isSafeInteger(p.size) &&
    (p.size as number) >= 0 &&
    (p.size as number) <= constants.MAX_ATTACHMENT_SIZE &&
    typeof p.contentType === 'string' &&
    p.contentType.length <= MAX_CONTENT_TYPE_LEN &&
    CONTENT_TYPE.test(p.contentType) &&
    typeof p.fileName === 'string' &&
    p.fileName.length > 0 &&
    [...p.fileName].length <= MAX_FILE_NAME_LEN &&
    !BAD_NAME.test(p.fileName) &&
    dim(p.width) &&
    dim(p.height) &&
    (p.width === null) === (p.height === null) &&
    (p.thumbnail === null ||
      (p.thumbnail instanceof Uint8Array &&
        p.thumbnail.length > 0 &&
        p.thumbnail.length <= constants.MAX_THUMBNAIL_LEN));
  if (!ok) return null;
  return {
    v: 1,
    attachmentId: p.attachmentId as string,
    key: p.key as Uint8Array,
    digest: p.digest as Uint8Array,
    size: p.size as number,
    contentType: p.contentType as string,
    fileName: p.fileName as string,
    width: p.width as number | null,
    height: p.height as number | null,
    thumbnail: p.thumbnail as Uint8Array | null,
  };
}

/**
 * The type a decrypted file gets as a Blob: raster images the app renders keep theirs; anything else is
 * `application/octet-stream`, so a `blob:` URL of it can never be rendered as HTML, SVG or script.
 */
export function safeBlobType(contentType: string): string {
  return ['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/avif', 'image/bmp'].includes(contentType)
    ? contentType
    : 'application/octet-stream';
}

export type TransferPhase = 'encrypt' | 'upload' | 'download';

/**
 * Bytes read from the file per step (128 chunks, encrypted concurrently). Each `Blob.slice().arrayBuffer()`
 * is a round trip to the browser's blob store: 8 MiB reads cost a quarter of what 1 MiB reads do
 * (bench/RESULTS.md §Attachments, profile of Dec 4).
 */
const READ_SLICE = 128 * constants.ATTACHMENT_CHUNK_SIZE;
/** Ciphertext / plaintext gathered into one contiguous buffer before it becomes one Blob part. */
const FOLD_BYTES = 8 * 1024 * 1024;
/** Downloaded bytes gathered before they go to the decryptor in one call (its chunks run concurrently). */
const DECRYPT_BATCH = 1024 * 1024;

/**
 * Ciphertexts larger than this go up as a parts upload: parts of the server's part size, PARTS_IN_FLIGHT at
 * once, each sent as soon as it is encrypted — encryption overlaps the upload instead of preceding it.
 */
const PARTS_ABOVE = 8 * 1024 * 1024;
/** Parts uploading at once (browsers open up to 6 connections per host; the next part is encrypted meanwhile). */
export const PARTS_IN_FLIGHT = 3;

/** An upload prepared (and maybe reserved) but not completed: kept for a retry. */
interface Prepared {
  readonly conversationId: string;
  readonly file: Blob;
  readonly pointer: Omit<AttachmentPointer, 'attachmentId' | 'digest'>;
  /** The ciphertext in order, once encrypted: one Blob per part of `cutBytes` (0: FOLD_BYTES pieces of one PUT). */
  ciphertext: Blob[] | null;
  /** The part size `ciphertext` was cut at (0: one whole Blob). */
  cutBytes: number;
  attachmentId: string | null;
  /** A parts reservation: its part size, and the receipts of the parts the server has. */
  partBytes: number | null;
  receipts: (PartReceipt | undefined)[];
  digest: Uint8Array | null;
}

/**
 * Sends parts `0..count-1` (numbered from 1 on the wire) of a parts upload, `inFlight` at once in order,
 * skipping those `receipts` already holds; `part(i)` may wait (for the part to be encrypted). Stops at the
 * first failure (the parts already sent keep their receipts, so a retry sends only the rest). Used by
 * `Transfers` and, with plain bytes, by the benchmark's baseline (bench/attachments.ts).
 */
export async function sendParts(
  api: ServerApi,
  attachmentId: string,
  count: number,
  part: (i: number) => Promise<Blob>,
  receipts: (PartReceipt | undefined)[],
  opts: TransferOptions & { readonly inFlight?: number },
): Promise<PartReceipt[]> {
  const loaded = new Array<number>(count).fill(0);
  const report = () => opts.onProgress?.(loaded.reduce((a, b) => a + b, 0));
  let next = 0;
  let failure: { err: unknown } | null = null;
  const lane = async () => {
    for (;;) {
      const i = next++;
      if (i >= count || failure) return;
      if (receipts[i]) continue;
      try {
        const body = await part(i);
        if (failure) return;
        receipts[i] = await api.uploadAttachmentPart(attachmentId, i + 1, body, {
          ...(opts.signal ? { signal: opts.signal } : {}),
          onProgress: (n) => {
            loaded[i] = n;
            report();
          },
        });
        loaded[i] = body.size;
        report();
      } catch (err) {
        failure ??= { err };
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(count, opts.inFlight ?? PARTS_IN_FLIGHT) }, lane));
  if (failure) throw (failure as { err: unknown }).err;
  return receipts as PartReceipt[];
}

/** A promise with its resolve/reject at hand. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // a part never asked for must not be an unhandled rejection
  return { promise, resolve, reject };
}

/**
 * Regroups byte arrays of any sizes into `size`-byte batches (the last, shorter one from `rest`). Every batch
 * is the same buffer, valid until the generator that `push` returned is resumed — for callers done with
 * a batch at once (the Blob constructor copies it; the attachment cipher's `push` is done with its input when
 * it returns): a fresh 8 MiB array per batch costs more CPU than the copy itself (bench/RESULTS.md
 * §Attachments, Dec 5). At most one partial batch sits here.
 */
class Rebatcher {
  private buf: Uint8Array | null = null;
  private fill = 0;
  constructor(private readonly size: number) {}
  /** The batches `bytes` completes (often none), one at a time: use each up before asking for the next. */
  *push(bytes: Uint8Array): Generator<Uint8Array, void, undefined> {
    let off = 0;
    while (off < bytes.length) {
      this.buf ??= new Uint8Array(this.size);
      const take = Math.min(this.size - this.fill, bytes.length - off);
      this.buf.set(bytes.subarray(off, off + take), this.fill);
      this.fill += take;
      off += take;
      if (this.fill === this.size) {
        this.fill = 0;
        yield this.buf;
      }
    }
  }
  /** The partial batch left, if any (and the rebatcher is empty again). */
  rest(): Uint8Array | null {
    const r = this.buf && this.fill > 0 ? this.buf.subarray(0, this.fill) : null;
    this.buf = null;
    this.fill = 0;
    return r;
  }
}

/**
 * Collects byte arrays into a Blob made of few large parts (FOLD_BYTES each). A Blob built from hundreds of
 * 64 KiB arrays costs the browser several times more to build, and to upload, than one built from a few
 * large parts. One FOLD_BYTES buffer is reused (each part is copied into its Blob at once).
 */
export class BlobCollector {
  private readonly parts: Blob[] = [];
  private readonly batches = new Rebatcher(FOLD_BYTES);
  private readonly fold = (part: Uint8Array) => this.parts.push(new Blob([part as BlobPart]));
  add(chunks: readonly Uint8Array[]): void {
    for (const c of chunks) for (const part of this.batches.push(c)) this.fold(part);
  }
  blob(type = 'application/octet-stream'): Blob {
    const rest = this.batches.rest();
    if (rest) this.fold(rest);
    return new Blob(this.parts, { type });
  }
}

/**
 * Reads a byte stream once, front to back, as pieces of `size` bytes (the last one shorter): the file of an
 * upload (`file.stream()`) and the body of a download. Where the stream is a byte stream (Chromium's
 * `Blob.stream()` and fetch bodies), a BYOB reader reads straight into two buffers of our own — a tenth of
 * the CPU of the default reader, which hands out a freshly allocated array per read (bench/RESULTS.md
 * §Attachments, Dec 5); elsewhere the default reader's arrays are copied in. The two buffers alternate: a
 * piece stays valid until the piece after next is read, so the caller may read one ahead while it works on
 * one (a BYOB read takes the buffer over: never keep a piece beyond that). `cancel()` stops the stream.
 */
class PieceReader {
  private readonly byob: ReadableStreamBYOBReader | null;
  private readonly reader: ReadableStreamDefaultReader<Uint8Array> | null;
  private readonly bufs: ArrayBuffer[];
  private turn = 0;
  private carry: Uint8Array | null = null;
  constructor(
    stream: ReadableStream<Uint8Array>,
    private readonly size: number,
  ) {
    let byob: ReadableStreamBYOBReader | null = null;
    try {
      byob = stream.getReader({ mode: 'byob' });
    } catch {
      // not a byte stream: the default reader below
    }
    this.byob = byob;
    this.reader = byob ? null : stream.getReader();
    this.bufs = [new ArrayBuffer(size), new ArrayBuffer(size)];
  }
  /** The next piece, or null at the end of the stream. */
  async next(): Promise<Uint8Array | null> {
    const t = this.turn;
    this.turn ^= 1;
    let buf = this.bufs[t]!;
    let fill = 0;
    if (this.byob) {
      while (fill < this.size) {
        const { value, done } = await this.byob.read(new Uint8Array(buf, fill, this.size - fill));
        if (value) {
          buf = value.buffer as ArrayBuffer;
          fill += value.byteLength;
        }
        if (done) break;
      }
      this.bufs[t] = buf;
      return fill > 0 ? new Uint8Array(buf, 0, fill) : null;
    }
    const into = new Uint8Array(buf);
    while (fill < this.size) {
      let bytes = this.carry;
      this.carry = null;
      if (!bytes) {
        const { value, done } = await this.reader!.read();
        if (done) break;
        bytes = value;
      }
      const take = Math.min(this.size - fill, bytes.length);
      into.set(bytes.subarray(0, take), fill);
      fill += take;
      if (take < bytes.length) this.carry = bytes.subarray(take);
    }
    return fill > 0 ? into.subarray(0, fill) : null;
  }
  cancel(): Promise<void> {
    return (this.byob ?? this.reader)!.cancel().catch(() => undefined);
  }
}

function engineErrorOf(err: unknown, fallback: EngineErrorCode): EngineError {
  if (err instanceof EngineError) return err;
  if (isAbort(err)) return new EngineError('cancelled');
  if (err instanceof ApiError || (err && typeof err === 'object' && (err as { name?: string }).name === 'ApiError')) {
    const code = (err as ApiError).code;
    if (code === 'attachment_too_large' || code === 'attachment_quota_exceeded') return new EngineError(code);
    if (code === 'not_found')
      return new EngineError(fallback === 'download_failed' ? 'attachment_unavailable' : 'not_member');
  }
  return new EngineError(fallback);
}

const isAbort = (e: unknown) =>
  !!e &&
  typeof e === 'object' &&
  ((e as { name?: string }).name === 'AbortError' || (e as { code?: string }).code === 'cancelled');

export interface TransfersOptions {
  /** Largest plaintext this client sends (default DEFAULT_MAX_ATTACHMENT_SIZE). */
  readonly maxBytes?: number;
}

export class Transfers {
  private readonly prepared = new Map<string, Prepared>();
  private readonly running = new Map<string, AbortController>();
  readonly maxBytes: number;

  constructor(
    private readonly ctx: EngineContext,
    opts: TransfersOptions = {},
  ) {
    this.maxBytes = opts.maxBytes ?? constants.DEFAULT_MAX_ATTACHMENT_SIZE;
  }

  private get api(): ServerApi {
    return this.ctx.api;
  }

  private progress(id: string, phase: TransferPhase, loaded: number, total: number): void {
    this.ctx.emit({ type: 'transfer', id, phase, loaded, total });
  }

  private start(id: string): AbortSignal {
    if (this.running.has(id)) throw new EngineError('send_failed', 'this transfer is already running');
    const c = new AbortController();
    this.running.set(id, c);
    return c.signal;
  }

  /**
   * Encrypts and uploads `draft` into `conversationId` under transfer id `id`; resolves with the pointer for
   * the message once the upload completed. A ciphertext over PARTS_ABOVE goes up as a parts upload, each
   * part sent while the next is encrypted. Called again with the same id after a failure, it re-sends only
   * what the server does not have, from the ciphertext it prepared the first time (the file is not read or
   * encrypted again).
   */
  async upload(id: string, conversationId: string, draft: AttachmentDraft): Promise<AttachmentPointer> {
    const signal = this.start(id);
    try {
      let p = this.prepared.get(id);
      if (p && p.conversationId !== conversationId) throw new EngineError('send_failed', 'transfer id reused');
      if (!p) {
        p = this.prepare(conversationId, draft);
        this.prepared.set(id, p);
      }
      const total = attachmentLayout(p.pointer.size).encryptedSize;
      if (p.attachmentId === null) {
        const r = await this.api.reserveAttachment(conversationId, total, total > PARTS_ABOVE);
        p.attachmentId = r.attachmentId;
        p.partBytes = r.partBytes ?? null;
        p.receipts = [];
      }
      try {
        if (p.partBytes) await this.sendInParts(id, p, p.attachmentId, p.partBytes, total, signal);
        else {
          if (!p.ciphertext) await this.encrypt(id, p, 0, () => undefined, signal);
          await this.api.uploadAttachment(p.attachmentId, new Blob(p.ciphertext!), {
            signal,
            onProgress: (loaded) => this.progress(id, 'upload', loaded, total),
          });
        }
      } catch (err) {
        // A reservation that no longer exists (expired) is made again on the next try; a completion the
        // server refused (parts missing or replaced) sends every part again.
        if (err instanceof ApiError && err.code === 'not_found') p.attachmentId = null;
        if (err instanceof ApiError && err.code === 'upload_incomplete') p.receipts = [];
        throw err;
      }
      this.progress(id, 'upload', total, total);
      this.prepared.delete(id);
      return { ...p.pointer, attachmentId: p.attachmentId, digest: p.digest! };
    } catch (err) {
      const p = this.prepared.get(id);
      if (p && !p.ciphertext) {
        // The file was not encrypted whole (unreadable, or cancelled): nothing is kept, so a retry starts
        // with a fresh key — never the same key over bytes that may have changed.
        this.prepared.delete(id);
        if (p.attachmentId) void this.api.cancelAttachment(p.attachmentId).catch(() => undefined);
      }
      throw engineErrorOf(err, 'upload_failed');
    } finally {
      this.running.delete(id);
    }
  }

  /** Sends the parts of `p` (encrypting them first if this is the first try), then completes the upload. */
  private async sendInParts(
    id: string,
    p: Prepared,
    attachmentId: string,
    partBytes: number,
    total: number,
    signal: AbortSignal,
  ): Promise<void> {
    const count = Math.max(1, Math.ceil(total / partBytes));
    if (p.ciphertext && p.cutBytes !== partBytes) {
      // A new reservation with another part size: cut the prepared ciphertext again (slices copy nothing).
      const whole = new Blob(p.ciphertext);
      p.ciphertext = Array.from({ length: count }, (_, i) => whole.slice(i * partBytes, (i + 1) * partBytes));
      p.cutBytes = partBytes;
    }
    const ready = Array.from({ length: count }, () => deferred<Blob>());
    let encrypting: Promise<void> = Promise.resolve();
    if (p.ciphertext) for (const [i, b] of p.ciphertext.entries()) ready[i]!.resolve(b);
    else
      encrypting = this.encrypt(id, p, partBytes, (i, b) => ready[i]!.resolve(b), signal).catch((err: unknown) => {
        for (const d of ready) d.reject(err);
        throw err;
      });
    try {
      await sendParts(this.api, attachmentId, count, (i) => ready[i]!.promise, p.receipts, {
        signal,
        onProgress: (loaded) => this.progress(id, 'upload', loaded, total),
      });
    } finally {
      // Whatever happened to the upload, the ciphertext is finished (a retry sends it without the file);
      // an abort or a read error stops it (and is the error reported).
      await encrypting;
    }
    await this.api.completeAttachment(attachmentId, p.receipts as PartReceipt[]);
  }

  /** A fresh key and the pointer of `d`; nothing read or encrypted yet. */
  private prepare(conversationId: string, d: AttachmentDraft): Prepared {
    const size = d.file.size;
    if (size > this.maxBytes) throw new EngineError('attachment_too_large');
    attachmentLayout(size);
    const thumbnail = d.thumbnail && d.thumbnail.length > 0 ? d.thumbnail : null;
    if (thumbnail && thumbnail.length > constants.MAX_THUMBNAIL_LEN)
      throw new EngineError('send_failed', 'thumbnail too large');
    const width = d.width ?? null;
    const height = d.height ?? null;
    return {
      conversationId,
      file: d.file,
      ciphertext: null,
      cutBytes: 0,
      attachmentId: null,
      partBytes: null,
      receipts: [],
      digest: null,
      pointer: {
        v: 1,
        key: generateAttachmentKey(this.ctx.rng as Rng),
        size,
        contentType: normalizeContentType(d.contentType),
        fileName: normalizeFileName(d.fileName),
        width: dim(width) && dim(height) && (width === null) === (height === null) ? width : null,
        height: dim(width) && dim(height) && (width === null) === (height === null) ? height : null,
        thumbnail,
      },
    };
  }

  /**
   * Reads and encrypts the file of `p` once, into `p.ciphertext` and `p.digest`: Blobs of `cutBytes` each (the
   * parts of a parts upload, each handed to `onPart` as soon as it is complete), or of FOLD_BYTES for
   * `cutBytes` 0 (one PUT of `new Blob(p.ciphertext)`: few large parts, see BlobCollector).
   */
  private async encrypt(
    id: string,
    p: Prepared,
    cutBytes: number,
    onPart: (i: number, part: Blob) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const size = p.pointer.size;
    const enc = await AttachmentEncryptor.create(p.pointer.key, size);
    const parts: Blob[] = [];
    // Each part is copied into its Blob at once, so one part buffer is reused.
    const cut = new Rebatcher(cutBytes || FOLD_BYTES);
    const emit = (bytes: Uint8Array) => {
      const part = new Blob([bytes as BlobPart]);
      parts.push(part);
      onPart(parts.length - 1, part);
    };
    const add = (chunks: readonly Uint8Array[]) => {
      for (const c of chunks) for (const part of cut.push(c)) emit(part);
    };
    // The next piece is read while this one is encrypted and hashed (the encryptor is done with a piece
    // when its push resolves; the reader alternates two buffers).
    const file = new PieceReader(p.file.stream(), Math.max(1, Math.min(READ_SLICE, size)));
    let next = file.next();
    let done = 0;
    try {
      for (;;) {
        const piece = await next;
        if (!piece) break;
        signal.throwIfAborted();
        next = file.next();
        add(await enc.push(piece));
        done += piece.length;
        this.progress(id, 'encrypt', done, size);
      }
    } finally {
      await next.catch(() => undefined);
      await file.cancel();
    }
    add(await enc.finish());
    const rest = cut.rest();
    if (rest) emit(rest);
    p.ciphertext = parts;
    p.cutBytes = cutBytes;
    p.digest = enc.digest;
  }

  /**
   * Downloads and decrypts `pointer`'s blob; the whole file as a Blob, or `attachment_damaged` (nothing
   * partial), `attachment_unavailable` (404: expired or no longer a member), `cancelled`, `download_failed`.
   */
  async download(id: string, pointer: AttachmentPointer): Promise<Blob> {
    const signal = this.start(id);
    let pieces: PieceReader | undefined;
    try {
      const dec = await AttachmentDecryptor.create(pointer.key, pointer.size, pointer.digest);
      const total = dec.layout.encryptedSize;
      const stream = await this.api.downloadAttachment(pointer.attachmentId, { signal });
      const out = new BlobCollector();
      let damaged = false;
      // The body is read in DECRYPT_BATCH batches (their chunks are decrypted concurrently; a BYOB read
      // fills our own buffer), and the next batch is read while the previous one is decrypted. The reader's
      // two buffers are reused: the decryptor is done with a batch once its push was called (WebCrypto
      // copies its input at the call).
      let decrypting: Promise<boolean> | null = null;
      const decrypt = (batch: Uint8Array) =>
        dec.push(batch).then(
          (chunks) => {
            out.add(chunks);
            this.progress(id, 'download', dec.bytesReceived, total);
            return false;
          },
          () => true,
        );
      // Resolves true when the decryptor refused the previous batch (then the next is never pushed).
      const next = async (bytes: Uint8Array): Promise<boolean> => {
        if (decrypting && (await decrypting)) return true;
        decrypting = decrypt(bytes);
        return false;
      };
      pieces = new PieceReader(stream, Math.max(1, Math.min(DECRYPT_BATCH, total)));
      for (;;) {
        const batch = await pieces.next();
        if (!batch) break;
        if (await next(batch)) {
          damaged = true;
          break;
        }
      }
      if (!damaged && decrypting) damaged = await decrypting;
      if (!damaged)
        damaged = await dec.finish().then(
          () => false,
          () => true,
        );
      if (damaged) throw new EngineError('attachment_damaged');
      return out.blob(safeBlobType(pointer.contentType));
    } catch (err) {
      throw engineErrorOf(err, 'download_failed');
    } finally {
      await pieces?.cancel();
      this.running.delete(id);
    }
  }

  /** Aborts a running transfer; a prepared upload is dropped and its reservation freed (best effort). */
  cancel(id: string): void {
    this.running.get(id)?.abort();
    const p = this.prepared.get(id);
    this.prepared.delete(id);
    if (p?.attachmentId) void this.api.cancelAttachment(p.attachmentId).catch(() => undefined);
  }
}
