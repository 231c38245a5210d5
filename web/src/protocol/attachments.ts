/**
 * Attachment encryption (docs/PROTOCOL.md §"Attachments"): a file is encrypted on the sender's device
 * under a fresh 32-byte key in fixed-size chunks, the way age's STREAM does it (Hoang, Reyhanitabar,
 * Rogaway, Vizár, "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", §7), with
 * AES-256-GCM:
 *
 * - `HKDF-SHA256(ikm = key, salt = 32 zero bytes, info = LABEL_ATTACHMENT_KEYS, L = 44)` → AES-256 key ‖
 *   12-byte nonce base;
 * - chunk i (0-based) holds plaintext bytes [i·C, (i+1)·C) with C = ATTACHMENT_CHUNK_SIZE; the last chunk
 *   holds the rest (1..C bytes; an empty file is one empty last chunk);
 * - nonce(i) = nonce base XOR (0x00000000 ‖ u64be(i)), so no two chunks of one key share a nonce;
 * - AAD(i) = u8 ATTACHMENT_FORMAT_VERSION ‖ u64be(i) ‖ u8 last, so a chunk moved to another position, a
 *   dropped chunk and a file cut after a chunk boundary (its new final chunk was sealed with last = 0) all
 *   fail authentication (PITFALLS 29);
 * - ciphertext = chunk 0 ‖ chunk 1 ‖ … each `AES-GCM(plaintext) ‖ tag[16]`; the message carries the
 *   digest SHA-256(SHA-256(chunk 0) ‖ … ‖ SHA-256(chunk n−1)) and the plaintext size, and the receiver
 *   checks both before it releases anything. Hashing each sealed chunk on its own lets the platform's
 *   native SHA-256 do the bulk of the work chunk by chunk (bench/RESULTS.md §Attachments: the pure-JS
 *   stream hash was the largest cost of a round trip) while the file still streams through.
 *
 * `AttachmentEncryptor` / `AttachmentDecryptor` take the bytes in pieces of any size and hold at most one
 * chunk, so a caller can stream a file of any size through them.
 *
 * Does NOT: read files, upload, download or decide what to show (the engine does, and it releases a
 * decrypted file only after `finish()` succeeded); choose the key (the caller passes an `Rng`); strip image
 * metadata (the app re-encodes images before they get here); pad the size (the server sees the ciphertext
 * length, i.e. the plaintext size plus 16 bytes per chunk).
 * @module
 */
import { concat, equal, u64be } from './bytes.js';
import {
  ATTACHMENT_CHUNK_SIZE,
  ATTACHMENT_DIGEST_LEN,
  ATTACHMENT_FORMAT_VERSION,
  ATTACHMENT_KEY_LEN,
  LABEL_ATTACHMENT_KEYS,
  MAX_ATTACHMENT_SIZE,
} from './constants.js';
import { ErrorCode, fail } from './errors.js';
import {
  AES_KEY_LEN,
  type AesGcmKey,
  aesGcmKey,
  GCM_NONCE_LEN,
  GCM_TAG_LEN,
  hkdfSha256ZeroSalt,
  type Rng,
  type Sha256Stream,
  sha256Async,
  sha256Stream,
} from './primitives.js';

const LABEL = new TextEncoder().encode(LABEL_ATTACHMENT_KEYS);

/** Where every chunk of a file of `size` plaintext bytes lies. */
export interface AttachmentLayout {
  /** Plaintext bytes. */
  readonly size: number;
  /** Number of chunks (≥ 1). */
  readonly chunks: number;
  /** Plaintext bytes of the last chunk (0 only for an empty file). */
  readonly lastChunkSize: number;
  /** Ciphertext bytes: size + 16 · chunks. This is what the server stores. */
  readonly encryptedSize: number;
}

function assertSize(size: number, operation: string): void {
  if (!Number.isSafeInteger(size) || size < 0 || size > MAX_ATTACHMENT_SIZE)
    fail(ErrorCode.LimitExceeded, operation, 'attachment size out of range');
}

export function attachmentLayout(size: number): AttachmentLayout {
  assertSize(size, 'attachmentLayout');
  const chunks = Math.max(1, Math.ceil(size / ATTACHMENT_CHUNK_SIZE));
  return {
    size,
    chunks,
    lastChunkSize: size - (chunks - 1) * ATTACHMENT_CHUNK_SIZE,
    encryptedSize: size + chunks * GCM_TAG_LEN,
  };
}

/** A fresh attachment key from the caller's randomness. */
export function generateAttachmentKey(rng: Rng): Uint8Array {
  const key = rng(ATTACHMENT_KEY_LEN);
  if (!(key instanceof Uint8Array) || key.length !== ATTACHMENT_KEY_LEN)
    fail(ErrorCode.InvalidKey, 'generateAttachmentKey', 'rng returned the wrong length');
  return key;
}

/** The AES key and nonce base of an attachment key (exported for the known-answer vectors). */
export function deriveAttachmentSecrets(key: Uint8Array): {
  readonly aesKey: Uint8Array;
  readonly nonceBase: Uint8Array;
} {
  if (!(key instanceof Uint8Array) || key.length !== ATTACHMENT_KEY_LEN)
    fail(ErrorCode.InvalidKey, 'deriveAttachmentSecrets', 'attachment key must be 32 bytes');
  const okm = hkdfSha256ZeroSalt(key, LABEL, AES_KEY_LEN + GCM_NONCE_LEN);
  return { aesKey: okm.slice(0, AES_KEY_LEN), nonceBase: okm.slice(AES_KEY_LEN) };
}

/** nonce(i) = nonce base XOR (0^4 ‖ u64be(i)). */
export function chunkNonce(nonceBase: Uint8Array, index: number): Uint8Array {
  const nonce = nonceBase.slice();
  const i = u64be(index);
  for (let b = 0; b < 8; b++) nonce[4 + b]! ^= i[b]!;
  return nonce;
}

/** AAD(i) = u8 version ‖ u64be(i) ‖ u8 last. */
export function chunkAad(index: number, last: boolean): Uint8Array {
  return concat(Uint8Array.of(ATTACHMENT_FORMAT_VERSION), u64be(index), Uint8Array.of(last ? 1 : 0));
}

/** An attachment key made ready for its chunks (the AES key imported once). */
export interface AttachmentCipher {
  readonly aead: AesGcmKey;
  readonly nonceBase: Uint8Array;
  /** SHA-256 of one sealed chunk (WebCrypto or noble, as `subtle` chose). */
  readonly hashChunk: (sealed: Uint8Array) => Promise<Uint8Array>;
}

/** `subtle`: the platform's WebCrypto by default, `null` for the pure-JS path (see primitives `aesGcmKey`). */
export async function attachmentCipher(key: Uint8Array, subtle?: SubtleCrypto | null): Promise<AttachmentCipher> {
  const { aesKey, nonceBase } = deriveAttachmentSecrets(key);
  return { aead: await aesGcmKey(aesKey, subtle), nonceBase, hashChunk: (sealed) => sha256Async(sealed, subtle) };
}

export function encryptChunk(
  c: AttachmentCipher,
  index: number,
  last: boolean,
  plaintext: Uint8Array,
): Promise<Uint8Array> {
  return c.aead.encrypt(chunkNonce(c.nonceBase, index), plaintext, chunkAad(index, last));
}

/** Throws `decryption_failed` unless the chunk was sealed at exactly this index with exactly this flag. */
export function decryptChunk(
  c: AttachmentCipher,
  index: number,
  last: boolean,
  ciphertext: Uint8Array,
): Promise<Uint8Array> {
  return c.aead.decrypt(chunkNonce(c.nonceBase, index), ciphertext, chunkAad(index, last));
}

/**
 * The blob digest, fed one sealed chunk's hash at a time in chunk order:
 * digest = SHA-256(SHA-256(sealed(0)) ‖ SHA-256(sealed(1)) ‖ … ‖ SHA-256(sealed(n−1))).
 */
class ChunkDigest {
  private readonly outer: Sha256Stream = sha256Stream();
  add(chunkHashes: Uint8Array[]): void {
    for (const h of chunkHashes) this.outer.update(h);
  }
  digest(): Uint8Array {
    return this.outer.digest();
  }
}

/** `sealed` and its hash, both started at once (WebCrypto works off the JS thread). */
async function withHash(c: AttachmentCipher, sealed: Promise<Uint8Array>): Promise<[Uint8Array, Uint8Array]> {
  const s = await sealed;
  return [s, await c.hashChunk(s)];
}

/** Plaintext bytes of chunk `index` in `layout`. */
const plainLen = (l: AttachmentLayout, index: number) =>
  index === l.chunks - 1 ? l.lastChunkSize : ATTACHMENT_CHUNK_SIZE;

/**
 * Streams a file of known `size` through the chunk cipher: `push` the plaintext in pieces of any length,
 * get back the ciphertext chunks completed so far (in order), then `finish()`. Holds at most one partial
 * chunk. More or fewer bytes than `size` is an error (`limit_exceeded` / `decode`).
 *
 * Call `push` / `finish` one at a time (each awaits its chunks); a second call while one runs throws.
 */
export class AttachmentEncryptor {
  readonly layout: AttachmentLayout;
  private index = 0;
  private fill = 0;
  private received = 0;
  private busy = false;
  private done = false;
  private readonly buf: Uint8Array;
  private readonly chain = new ChunkDigest();
  private result: Uint8Array | null = null;

  private constructor(
    private readonly cipher: AttachmentCipher,
    size: number,
  ) {
    this.layout = attachmentLayout(size);
    this.buf = new Uint8Array(Math.min(ATTACHMENT_CHUNK_SIZE, Math.max(1, size)));
  }

  static async create(key: Uint8Array, size: number, subtle?: SubtleCrypto | null): Promise<AttachmentEncryptor> {
    attachmentLayout(size);
    return new AttachmentEncryptor(await attachmentCipher(key, subtle), size);
  }

  /**
   * Encrypts the next `piece` of plaintext; returns the chunks it completed (maybe none). The call is done
   * with `piece` when it returns (WebCrypto copies its input at the call; a partial chunk is copied here),
   * so the caller may reuse the buffer at once.
   */
  async push(piece: Uint8Array): Promise<Uint8Array[]> {
    this.enter('AttachmentEncryptor.push');
    try {
      if (this.received + piece.length > this.layout.size)
        fail(ErrorCode.LimitExceeded, 'AttachmentEncryptor.push', 'more bytes than the declared size');
      this.received += piece.length;
      // Every chunk of this piece is dispatched before any is awaited: WebCrypto copies its input at the
      // call and works off the JS thread, so the chunks of one piece are encrypted concurrently.
      const sealed: Promise<[Uint8Array, Uint8Array]>[] = [];
      let off = 0;
      while (off < piece.length) {
        const want = plainLen(this.layout, this.index) - this.fill;
        const take = Math.min(want, piece.length - off);
        if (this.fill === 0 && take === want) sealed.push(this.seal(piece.subarray(off, off + take)));
        else {
          this.buf.set(piece.subarray(off, off + take), this.fill);
          this.fill += take;
          if (this.fill === plainLen(this.layout, this.index)) {
            sealed.push(this.seal(this.buf.slice(0, this.fill)));
            this.fill = 0;
          }
        }
        off += take;
      }
      return this.collect(await Promise.all(sealed));
    } finally {
      this.busy = false;
    }
  }

  /** The blob's digest (for the pointer); available once `finish()` returned. */
  get digest(): Uint8Array {
    if (!this.result) fail(ErrorCode.InvalidStructure, 'AttachmentEncryptor.digest', 'not finished');
    return this.result.slice();
  }

  /** All `size` bytes were pushed: returns the last chunk for an empty file, otherwise nothing. */
  async finish(): Promise<Uint8Array[]> {
    this.enter('AttachmentEncryptor.finish');
    try {
      if (this.received !== this.layout.size)
        fail(ErrorCode.Decode, 'AttachmentEncryptor.finish', 'fewer bytes than the declared size');
      const out = this.layout.size === 0 ? this.collect([await this.seal(new Uint8Array(0))]) : [];
      this.result = this.chain.digest();
      this.done = true;
      return out;
    } finally {
      this.busy = false;
    }
  }

  private enter(operation: string): void {
    if (this.busy) fail(ErrorCode.InvalidStructure, operation, 'one call at a time');
    if (this.done) fail(ErrorCode.InvalidStructure, operation, 'already finished');
    this.busy = true;
  }

  private seal(plaintext: Uint8Array): Promise<[Uint8Array, Uint8Array]> {
    const i = this.index++;
    return withHash(this.cipher, encryptChunk(this.cipher, i, i === this.layout.chunks - 1, plaintext));
  }

  private collect(done: [Uint8Array, Uint8Array][]): Uint8Array[] {
    this.chain.add(done.map((d) => d[1]));
    return done.map((d) => d[0]);
  }
}

/**
 * The receiving side: `push` the ciphertext as it arrives, get back the plaintext of every chunk that
 * authenticated, then `finish()`, which fails unless exactly `encryptedSize` bytes arrived and their
 * chunk-hash digest (above) equals the message's. Any failure is `decryption_failed` and final: the decryptor refuses
 * every later call. The plaintext returned before `finish()` succeeded must not be shown or saved — only
 * a successful `finish()` vouches for the whole file (the engine keeps everything until then).
 */
export class AttachmentDecryptor {
  readonly layout: AttachmentLayout;
  private index = 0;
  private fill = 0;
  private received = 0;
  private busy = false;
  private state: 'open' | 'done' | 'failed' = 'open';
  private readonly chain = new ChunkDigest();
  private readonly buf: Uint8Array;

  private constructor(
    private readonly cipher: AttachmentCipher,
    size: number,
    private readonly digest: Uint8Array,
  ) {
    this.layout = attachmentLayout(size);
    this.buf = new Uint8Array(Math.min(ATTACHMENT_CHUNK_SIZE, Math.max(0, size)) + GCM_TAG_LEN);
  }

  static async create(
    key: Uint8Array,
    size: number,
    digest: Uint8Array,
    subtle?: SubtleCrypto | null,
  ): Promise<AttachmentDecryptor> {
    attachmentLayout(size);
    if (!(digest instanceof Uint8Array) || digest.length !== ATTACHMENT_DIGEST_LEN)
      fail(ErrorCode.Decode, 'AttachmentDecryptor', 'digest must be 32 bytes');
    return new AttachmentDecryptor(await attachmentCipher(key, subtle), size, digest.slice());
  }

  /** Bytes received so far (for progress). */
  get bytesReceived(): number {
    return this.received;
  }

  /** The next ciphertext `piece`; the plaintext of the chunks it completed. Done with `piece` when it returns (as the encryptor's). */
  async push(piece: Uint8Array): Promise<Uint8Array[]> {
    return this.guard('AttachmentDecryptor.push', async () => {
      if (this.received + piece.length > this.layout.encryptedSize)
        fail(ErrorCode.DecryptionFailed, 'AttachmentDecryptor.push', 'longer than the declared size');
      this.received += piece.length;
      const opened: Promise<[Uint8Array, Uint8Array]>[] = [];
      let off = 0;
      while (off < piece.length) {
        const want = this.cipherLen(this.index) - this.fill;
        const take = Math.min(want, piece.length - off);
        if (this.fill === 0 && take === want) opened.push(this.open(piece.subarray(off, off + take)));
        else {
          this.buf.set(piece.subarray(off, off + take), this.fill);
          this.fill += take;
          if (this.fill === this.cipherLen(this.index)) {
            opened.push(this.open(this.buf.slice(0, this.fill)));
            this.fill = 0;
          }
        }
        off += take;
      }
      const done = await Promise.all(opened);
      this.chain.add(done.map((d) => d[1]));
      return done.map((d) => d[0]);
    });
  }

  /** End of the stream: every byte arrived, every chunk authenticated, and the digest matches. */
  async finish(): Promise<void> {
    await this.guard('AttachmentDecryptor.finish', async () => {
      if (this.received !== this.layout.encryptedSize || this.index !== this.layout.chunks)
        fail(ErrorCode.DecryptionFailed, 'AttachmentDecryptor.finish', 'truncated');
      if (!equal(this.chain.digest(), this.digest))
        fail(ErrorCode.DecryptionFailed, 'AttachmentDecryptor.finish', 'digest mismatch');
      this.state = 'done';
    });
  }

  private async guard<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    if (this.busy) fail(ErrorCode.InvalidStructure, operation, 'one call at a time');
    if (this.state !== 'open') fail(ErrorCode.DecryptionFailed, operation, `decryptor is ${this.state}`);
    this.busy = true;
    try {
      return await fn();
    } catch {
      this.state = 'failed';
      return fail(ErrorCode.DecryptionFailed, operation);
    } finally {
      this.busy = false;
    }
  }

  private cipherLen(index: number): number {
    return plainLen(this.layout, index) + GCM_TAG_LEN;
  }

  /** The chunk's plaintext and the hash of its ciphertext, computed side by side. */
  private open(ciphertext: Uint8Array): Promise<[Uint8Array, Uint8Array]> {
    const i = this.index++;
    return Promise.all([
      decryptChunk(this.cipher, i, i === this.layout.chunks - 1, ciphertext),
      this.cipher.hashChunk(ciphertext),
    ]);
  }
}

/** One-shot encryption of a small file held in memory (tests, vectors, thumbnails of bots). */
export async function encryptAttachment(
  key: Uint8Array,
  plaintext: Uint8Array,
  subtle?: SubtleCrypto | null,
): Promise<{ readonly ciphertext: Uint8Array; readonly digest: Uint8Array }> {
  const enc = await AttachmentEncryptor.create(key, plaintext.length, subtle);
  const ciphertext = concat(...(await enc.push(plaintext)), ...(await enc.finish()));
  return { ciphertext, digest: enc.digest };
}

/** One-shot decryption (tests, vectors): the plaintext, or `decryption_failed`. */
export async function decryptAttachment(
  key: Uint8Array,
  ciphertext: Uint8Array,
  size: number,
  digest: Uint8Array,
  subtle?: SubtleCrypto | null,
): Promise<Uint8Array> {
  const dec = await AttachmentDecryptor.create(key, size, digest, subtle);
  const parts = await dec.push(ciphertext);
  await dec.finish();
  return concat(...parts);
}
