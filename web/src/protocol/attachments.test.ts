import { describe, expect, it } from 'vitest';
import {
  AttachmentDecryptor,
  AttachmentEncryptor,
  attachmentCipher,
  attachmentLayout,
  chunkNonce,
  decryptAttachment,
  decryptChunk,
  deriveAttachmentSecrets,
  encryptAttachment,
  encryptChunk,
  generateAttachmentKey,
} from './attachments.js';
import { concat, toHex } from './bytes.js';
import { ATTACHMENT_CHUNK_SIZE as C, MAX_ATTACHMENT_SIZE } from './constants.js';
import { is } from './errors.js';
import { sha256 } from './primitives.js';
import { seededRng } from './testing.js';

const T = 16;
const rng = seededRng('attachments.test');
const bytes = (n: number, seed = 1) => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
};
const failsWith = async (p: Promise<unknown>, code = 'decryption_failed') => {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(is(err), `expected ${code}, got ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
};

/** Splits `data` into pieces of pseudo-random lengths (1 byte up to 3 chunks). */
function pieces(data: Uint8Array, seed: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let x = seed;
  for (let off = 0; off < data.length; ) {
    x = (x * 1103515245 + 12345) >>> 0;
    const n = Math.min(data.length - off, 1 + (x % (3 * C)));
    out.push(data.subarray(off, off + n));
    off += n;
  }
  return out;
}

/**
 * The digest a sender (or an attacker who rewrote the blob) computes over `ct`: SHA-256 of the SHA-256 of
 * every (C + 16)-byte sealed chunk, the last one shorter (docs/PROTOCOL.md §"Attachments").
 */
function digestOf(ct: Uint8Array): Uint8Array {
  const hashes: Uint8Array[] = [];
  for (let off = 0; off < ct.length || hashes.length === 0; off += C + T)
    hashes.push(sha256(ct.subarray(off, off + C + T)));
  return sha256(concat(...hashes));
}

/** The ciphertext chunks of an encrypted file, by layout. */
function split(ciphertext: Uint8Array, size: number): Uint8Array[] {
  const l = attachmentLayout(size);
  const out: Uint8Array[] = [];
  for (let i = 0, off = 0; i < l.chunks; i++) {
    const n = (i === l.chunks - 1 ? l.lastChunkSize : C) + T;
    out.push(ciphertext.slice(off, off + n));
    off += n;
  }
  return out;
}

describe('attachment layout', () => {
  it('counts chunks and ciphertext bytes at every boundary', () => {
    expect(attachmentLayout(0)).toEqual({ size: 0, chunks: 1, lastChunkSize: 0, encryptedSize: 16 });
    expect(attachmentLayout(1)).toEqual({ size: 1, chunks: 1, lastChunkSize: 1, encryptedSize: 17 });
    expect(attachmentLayout(C)).toEqual({ size: C, chunks: 1, lastChunkSize: C, encryptedSize: C + 16 });
    expect(attachmentLayout(C + 1)).toEqual({ size: C + 1, chunks: 2, lastChunkSize: 1, encryptedSize: C + 33 });
    expect(attachmentLayout(100 * 2 ** 20).chunks).toBe(1600);
  });

  it('refuses negative, fractional and oversized sizes', () => {
    for (const s of [-1, 0.5, MAX_ATTACHMENT_SIZE + 1, Number.NaN]) expect(() => attachmentLayout(s)).toThrow(/size/);
  });
});

describe('attachment encryption', () => {
  for (const size of [0, 1, 17, C - 1, C, C + 1, 3 * C + 5]) {
    it(`a ${size}-byte file round-trips in pieces of any length, identically on WebCrypto and noble`, async () => {
      const key = generateAttachmentKey(rng);
      const plain = bytes(size, size);
      const outputs: string[] = [];
      for (const subtle of [crypto.subtle, null]) {
        const enc = await AttachmentEncryptor.create(key, size, subtle);
        const parts: Uint8Array[] = [];
        for (const p of pieces(plain, size + 7)) parts.push(...(await enc.push(p)));
        parts.push(...(await enc.finish()));
        expect(parts.length).toBe(enc.layout.chunks);
        const ct = concat(...parts);
        expect(ct.length).toBe(enc.layout.encryptedSize);
        outputs.push(toHex(ct));
        const digest = digestOf(ct);
        expect(toHex(enc.digest)).toBe(toHex(digest));
        const dec = await AttachmentDecryptor.create(key, size, digest, subtle);
        const opened: Uint8Array[] = [];
        for (const p of pieces(ct, size + 13)) opened.push(...(await dec.push(p)));
        await dec.finish();
        expect(toHex(concat(...opened))).toBe(toHex(plain));
      }
      expect(outputs[0]).toBe(outputs[1]);
    });
  }

  it('push is done with its piece when it returns: a caller may overwrite the buffer at once (WebCrypto and noble)', async () => {
    const size = 3 * C + 5;
    const key = generateAttachmentKey(rng);
    const plain = bytes(size, 3);
    const { ciphertext, digest } = await encryptAttachment(key, plain);
    for (const subtle of [crypto.subtle, null]) {
      // One reused buffer, refilled with the next piece (and scribbled over) before the last push resolved.
      const piece = new Uint8Array(C + 100);
      const enc = await AttachmentEncryptor.create(key, size, subtle);
      const sealed: Promise<Uint8Array[]>[] = [];
      let last: Promise<unknown> = Promise.resolve();
      for (let off = 0; off < size; off += piece.length) {
        await last;
        const n = Math.min(piece.length, size - off);
        piece.set(plain.subarray(off, off + n));
        const p = enc.push(piece.subarray(0, n));
        piece.fill(0xa5);
        sealed.push(p);
        last = p;
      }
      const parts = (await Promise.all(sealed)).flat();
      parts.push(...(await enc.finish()));
      expect(toHex(concat(...parts))).toBe(toHex(ciphertext));
      expect(toHex(enc.digest)).toBe(toHex(digest));
      const dec = await AttachmentDecryptor.create(key, size, digest, subtle);
      const opened: Promise<Uint8Array[]>[] = [];
      last = Promise.resolve();
      for (let off = 0; off < ciphertext.length; off += piece.length) {
        await last;
        const n = Math.min(piece.length, ciphertext.length - off);
        piece.set(ciphertext.subarray(off, off + n));
        const p = dec.push(piece.subarray(0, n));
        piece.fill(0x5a);
        opened.push(p);
        last = p;
      }
      const out = (await Promise.all(opened)).flat();
      await dec.finish();
      expect(toHex(concat(...out))).toBe(toHex(plain));
    }
  });

  it('gives every chunk of a key its own nonce, and two keys unrelated nonces', async () => {
    const { nonceBase } = deriveAttachmentSecrets(generateAttachmentKey(rng));
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) seen.add(toHex(chunkNonce(nonceBase, i)));
    expect(seen.size).toBe(5000);
    const other = deriveAttachmentSecrets(generateAttachmentKey(rng));
    expect(toHex(other.nonceBase)).not.toBe(toHex(nonceBase));
  });

  it('the same file under two fresh keys gives unrelated ciphertexts', async () => {
    const plain = bytes(1000);
    const a = await encryptAttachment(generateAttachmentKey(rng), plain);
    const b = await encryptAttachment(generateAttachmentKey(rng), plain);
    expect(toHex(a.ciphertext)).not.toBe(toHex(b.ciphertext));
    expect(toHex(a.digest)).not.toBe(toHex(b.digest));
  });

  it('the encryptor refuses more or fewer bytes than declared, and calls after finish', async () => {
    const key = generateAttachmentKey(rng);
    const more = await AttachmentEncryptor.create(key, 10);
    await failsWith(more.push(bytes(11)), 'limit_exceeded');
    const fewer = await AttachmentEncryptor.create(key, 10);
    await fewer.push(bytes(9));
    await failsWith(fewer.finish(), 'decode');
    const done = await AttachmentEncryptor.create(key, 1);
    await done.push(bytes(1));
    await done.finish();
    await failsWith(done.push(bytes(0)), 'invalid_structure');
  });

  it('keys of the wrong length and a digest of the wrong length are refused', async () => {
    await failsWith(AttachmentEncryptor.create(new Uint8Array(31), 1), 'invalid_key');
    await failsWith(AttachmentDecryptor.create(new Uint8Array(32), 1, new Uint8Array(31)), 'decode');
    expect(() => generateAttachmentKey(() => new Uint8Array(16))).toThrow();
  });
});

describe('attachment decryption refuses tampering', () => {
  const size = 3 * C + 100;
  const plain = bytes(size, 9);
  const setup = async () => {
    const key = generateAttachmentKey(rng);
    const { ciphertext, digest } = await encryptAttachment(key, plain);
    return { key, ciphertext, digest, chunks: split(ciphertext, size) };
  };

  /** Decrypts with an attacker who ALSO recomputes the digest (so only the AEAD stands in the way). */
  const withOwnDigest = (key: Uint8Array, ct: Uint8Array, n: number) => decryptAttachment(key, ct, n, digestOf(ct));

  it('PITFALLS 29: chunked AEAD binds each chunk’s index and a last-chunk flag, so a reordered, dropped or truncated file fails', async () => {
    const { key, ciphertext, digest, chunks } = await setup();
    // The untouched file opens.
    expect(toHex(await decryptAttachment(key, ciphertext, size, digest))).toBe(toHex(plain));
    // Reordered: chunks 0 and 1 swapped (same length, so the layout still fits).
    const [c0, c1, c2, c3] = chunks as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    await failsWith(withOwnDigest(key, concat(c1, c0, c2, c3), size));
    // Dropped: chunk 1 removed, size lowered to match.
    await failsWith(withOwnDigest(key, concat(c0, c2, c3), size - C));
    // Truncated at a chunk boundary: the new final chunk was sealed with last = 0.
    await failsWith(withOwnDigest(key, concat(c0, c1), 2 * C));
    await failsWith(withOwnDigest(key, c0, C));
    // Truncated inside a chunk, or cut short against the real size and digest.
    await failsWith(decryptAttachment(key, ciphertext.subarray(0, ciphertext.length - 1), size, digest));
    await failsWith(decryptAttachment(key, concat(c0, c1, c2), size, digest));
    // Extended: a byte or a whole extra chunk appended.
    await failsWith(decryptAttachment(key, concat(ciphertext, Uint8Array.of(0)), size, digest));
    await failsWith(withOwnDigest(key, concat(ciphertext, c3), size + 100));
    // The flag and the index are bound directly, too.
    const cipher = await attachmentCipher(key);
    await failsWith(decryptChunk(cipher, 3, false, c3));
    await failsWith(decryptChunk(cipher, 0, true, c0));
    await failsWith(decryptChunk(cipher, 1, false, c0));
    expect((await decryptChunk(cipher, 0, false, c0)).length).toBe(C);
  });

  it('PITFALLS 29: the digest is checked before anything is vouched for — a file whose digest differs fails', async () => {
    const { key, ciphertext, digest } = await setup();
    const wrong = digest.slice();
    wrong[0]! ^= 1;
    await failsWith(decryptAttachment(key, ciphertext, size, wrong));
  });

  it('a flip of any single bit of a small file fails, with the real digest and with a recomputed one', async () => {
    const key = generateAttachmentKey(rng);
    const small = bytes(40);
    const { ciphertext, digest } = await encryptAttachment(key, small);
    for (let bit = 0; bit < ciphertext.length * 8; bit++) {
      const t = ciphertext.slice();
      t[bit >> 3]! ^= 1 << (bit & 7);
      await failsWith(decryptAttachment(key, t, small.length, digest));
      await failsWith(withOwnDigest(key, t, small.length));
    }
  });

  it('a flipped bit in any chunk of a large file fails (one bit per chunk: first, middle and tag bytes)', async () => {
    const { key, ciphertext } = await setup();
    const l = attachmentLayout(size);
    for (let i = 0; i < l.chunks; i++) {
      const start = i * (C + T);
      const len = (i === l.chunks - 1 ? l.lastChunkSize : C) + T;
      for (const off of [0, len >> 1, len - 1]) {
        const t = ciphertext.slice();
        t[start + off]! ^= 0x80;
        await failsWith(withOwnDigest(key, t, size));
      }
    }
  });

  it('another key, or a wrong size, fails', async () => {
    const { ciphertext, digest } = await setup();
    await failsWith(decryptAttachment(generateAttachmentKey(rng), ciphertext, size, digest));
    const { key } = await setup();
    const own = await encryptAttachment(key, plain);
    await failsWith(decryptAttachment(key, own.ciphertext, size - 1, own.digest));
    await failsWith(decryptAttachment(key, own.ciphertext, size + 1, own.digest));
  });

  it('after a failure the decryptor refuses every later call (nothing more comes out)', async () => {
    const { key, ciphertext, digest } = await setup();
    const dec = await AttachmentDecryptor.create(key, size, digest);
    const t = ciphertext.slice();
    t[5]! ^= 1;
    await failsWith(dec.push(t.subarray(0, C + T)));
    await failsWith(dec.push(ciphertext.subarray(C + T)));
    await failsWith(dec.finish());
  });

  it('a single chunk moved to another index under the same key fails even when re-sealed lengths match', async () => {
    const key = generateAttachmentKey(rng);
    const cipher = await attachmentCipher(key);
    const a = await encryptChunk(cipher, 0, false, bytes(C, 1));
    await failsWith(decryptChunk(cipher, 1, false, a));
    await failsWith(decryptChunk(cipher, 0, true, a));
  });
});
