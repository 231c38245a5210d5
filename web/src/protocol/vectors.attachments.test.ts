/**
 * Published attachment vectors (web/src/protocol/vectors/attachments.json): regenerated from their seeds on
 * both AES paths (WebCrypto, noble) and compared byte for byte; then every committed vector is decrypted
 * independently from its listed inputs. `UPDATE_VECTORS=1` rewrites the file.
 */
import { createCipheriv, createHash, hkdfSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  attachmentCipher,
  chunkAad,
  chunkNonce,
  decryptAttachment,
  deriveAttachmentSecrets,
  encryptChunk,
} from './attachments.js';
import { concat, fromHex, toHex } from './bytes.js';
import { sha256 } from './primitives.js';
import { generateAttachmentVectors, patternPlaintext } from './vectors/generate-attachments.js';

const file = fileURLToPath(new URL('./vectors/attachments.json', import.meta.url));
const serialize = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

interface Vector {
  name: string;
  key: string;
  plaintext: { hex: string } | { pattern: string; length: number; sha256: string };
  size: number;
  aesKey: string;
  nonceBase: string;
  chunks: {
    index: number;
    last: boolean;
    nonce: string;
    aad: string;
    plaintextLength: number;
    tag: string;
    sealedSha256: string;
  }[];
  encryptedSize: number;
  digest: string;
  ciphertext?: string;
}

const plaintextOf = (v: Vector): Uint8Array =>
  'hex' in v.plaintext ? fromHex(v.plaintext.hex) : patternPlaintext(v.plaintext.length);

describe('attachment known-answer vectors', () => {
  it('attachments.json regenerates byte for byte from its seeds, on WebCrypto and on noble', async () => {
    const web = serialize(await generateAttachmentVectors(crypto.subtle));
    if (process.env.UPDATE_VECTORS === '1') writeFileSync(file, web);
    expect(web).toBe(readFileSync(file, 'utf8'));
    expect(serialize(await generateAttachmentVectors(null))).toBe(web);
  });

  it('every committed vector decrypts from its listed inputs, and its intermediates follow from the spec', async () => {
    const { vectors } = JSON.parse(readFileSync(file, 'utf8')) as { vectors: Vector[] };
    expect(vectors.map((v) => v.name)).toEqual(['empty', 'short', 'one-full-chunk', 'three-chunks']);
    for (const v of vectors) {
      const key = fromHex(v.key);
      const plaintext = plaintextOf(v);
      if (!('hex' in v.plaintext)) expect(toHex(sha256(plaintext))).toBe(v.plaintext.sha256);
      const secrets = deriveAttachmentSecrets(key);
      expect(toHex(secrets.aesKey)).toBe(v.aesKey);
      expect(toHex(secrets.nonceBase)).toBe(v.nonceBase);
      // Each chunk's nonce, AAD and tag, recomputed chunk by chunk from the plaintext.
      const cipher = await attachmentCipher(key);
      const sealed: Uint8Array[] = [];
      let off = 0;
      for (const ch of v.chunks) {
        expect(toHex(chunkNonce(secrets.nonceBase, ch.index))).toBe(ch.nonce);
        expect(toHex(chunkAad(ch.index, ch.last))).toBe(ch.aad);
        const out = await encryptChunk(cipher, ch.index, ch.last, plaintext.subarray(off, off + ch.plaintextLength));
        off += ch.plaintextLength;
        expect(toHex(out.subarray(out.length - 16))).toBe(ch.tag);
        expect(toHex(sha256(out))).toBe(ch.sealedSha256);
        sealed.push(out);
      }
      const ciphertext = concat(...sealed);
      expect(ciphertext.length).toBe(v.encryptedSize);
      expect(toHex(sha256(concat(...sealed.map((c) => sha256(c)))))).toBe(v.digest);
      // Not the hash of the blob itself: a reader who hashes the whole blob gets a different value.
      expect(toHex(sha256(ciphertext))).not.toBe(v.digest);
      if (v.ciphertext !== undefined) expect(toHex(ciphertext)).toBe(v.ciphertext);
      for (const subtle of [crypto.subtle, null]) {
        const opened = await decryptAttachment(key, ciphertext, v.size, fromHex(v.digest), subtle);
        expect(toHex(opened)).toBe(toHex(plaintext));
      }
    }
  });

  it('an independent implementation from the spec alone (node:crypto HKDF, AES-256-GCM, SHA-256) agrees', () => {
    const { vectors, chunkSize } = JSON.parse(readFileSync(file, 'utf8')) as { vectors: Vector[]; chunkSize: number };
    for (const v of vectors) {
      const plaintext = plaintextOf(v);
      const okm = Buffer.from(
        hkdfSync('sha256', fromHex(v.key), Buffer.alloc(32), Buffer.from('e2e-chat/v1 attachment keys'), 44),
      );
      const nonceBase = okm.subarray(32);
      const chunks = Math.max(1, Math.ceil(plaintext.length / chunkSize));
      // digest = SHA-256 of the SHA-256 of every sealed chunk, in order.
      const hash = createHash('sha256');
      let total = 0;
      for (let i = 0; i < chunks; i++) {
        const last = i === chunks - 1;
        const nonce = Buffer.from(nonceBase);
        nonce.writeBigUInt64BE(nonce.readBigUInt64BE(4) ^ BigInt(i), 4);
        const aad = Buffer.alloc(10);
        aad[0] = 1;
        aad.writeBigUInt64BE(BigInt(i), 1);
        aad[9] = last ? 1 : 0;
        const c = createCipheriv('aes-256-gcm', okm.subarray(0, 32), nonce);
        c.setAAD(aad);
        const body = Buffer.concat([c.update(plaintext.subarray(i * chunkSize, (i + 1) * chunkSize)), c.final()]);
        const tag = c.getAuthTag();
        expect(tag.toString('hex')).toBe(v.chunks[i]!.tag);
        hash.update(createHash('sha256').update(body).update(tag).digest());
        total += body.length + tag.length;
      }
      expect(total).toBe(v.encryptedSize);
      expect(hash.digest('hex')).toBe(v.digest);
    }
  });
});
