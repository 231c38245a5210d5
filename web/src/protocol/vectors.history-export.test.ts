/**
 * Published history-export vectors (web/src/protocol/vectors/history-export.json): regenerated from their
 * inputs on both AES paths (WebCrypto, noble) and compared byte for byte; then every committed vector is
 * re-derived from its listed inputs with node:crypto (HKDF, AES-256-GCM) from the spec alone, and opened
 * with the module. `UPDATE_VECTORS=1` rewrites the file.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { concat, fromHex, toHex, u32be, utf8 } from './bytes.js';
import { openHistoryExport } from './history-export.js';
import { argon2id } from './primitives.js';
import { patternPlaintext } from './vectors/generate-attachments.js';
import { generateHistoryExportVectors } from './vectors/generate-history-export.js';

const file = fileURLToPath(new URL('./vectors/history-export.json', import.meta.url));
const serialize = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

interface Vector {
  name: string;
  passphrase: string;
  passphraseUtf8: string;
  salt: string;
  kdf: { m: number; t: number; p: number };
  plaintext: { hex: string } | { pattern: string; length: number; sha256: string };
  passKey: string;
  aesKey: string;
  nonceBase: string;
  check: string;
  header: string;
  chunks: { index: number; last: boolean; nonce: string; aad: string; plaintextLength: number; tag: string }[];
  fileLength: number;
  fileSha256: string;
  file?: string;
}

describe('history export known-answer vectors', () => {
  it('history-export.json regenerates byte for byte from its inputs, on WebCrypto and on noble', async () => {
    const web = serialize(await generateHistoryExportVectors(crypto.subtle));
    if (process.env.UPDATE_VECTORS === '1') writeFileSync(file, web);
    expect(web).toBe(readFileSync(file, 'utf8'));
    expect(serialize(await generateHistoryExportVectors(null))).toBe(web);
  });

  it('every committed vector follows from the spec with node:crypto, and the module opens it', async () => {
    const { vectors } = JSON.parse(readFileSync(file, 'utf8')) as { vectors: Vector[] };
    expect(vectors.map((v) => v.name)).toEqual(['short', 'empty', 'two-chunks']);
    for (const v of vectors) {
      const plaintext = 'hex' in v.plaintext ? fromHex(v.plaintext.hex) : patternPlaintext(v.plaintext.length);
      if (!('hex' in v.plaintext))
        expect(createHash('sha256').update(plaintext).digest('hex')).toBe(v.plaintext.sha256);
      expect(toHex(utf8(v.passphrase.normalize('NFKC')))).toBe(v.passphraseUtf8);
      const passKey = await argon2id(fromHex(v.passphraseUtf8), fromHex(v.salt), { ...v.kdf, dkLen: 32 });
      expect(toHex(passKey)).toBe(v.passKey);
      const okm = new Uint8Array(
        hkdfSync('sha256', passKey, new Uint8Array(32), 'e2e-chat/v1 history export', 60) as ArrayBuffer,
      );
      expect([toHex(okm.slice(0, 32)), toHex(okm.slice(32, 44)), toHex(okm.slice(44))]).toEqual([
        v.aesKey,
        v.nonceBase,
        v.check,
      ]);
      // The header, byte by byte from the table in PROTOCOL.md.
      const header = concat(
        utf8('e2e-hist'),
        Uint8Array.of(1, 1),
        u32be(v.kdf.m),
        u32be(v.kdf.t),
        Uint8Array.of(v.kdf.p),
        fromHex(v.salt),
        fromHex(v.check),
      );
      expect(toHex(header)).toBe(v.header);
      // Each chunk: nonce = nonceBase XOR (0^4 ‖ u64be(i)), AAD = header ‖ u64be(i) ‖ u8 last; decrypt with node.
      const out: Uint8Array[] = [];
      const sealedChunks: Uint8Array[] = [];
      for (const c of v.chunks) {
        const nonce = fromHex(v.nonceBase);
        const idx = new Uint8Array(8);
        new DataView(idx.buffer).setBigUint64(0, BigInt(c.index));
        for (let b = 0; b < 8; b++) nonce[4 + b]! ^= idx[b]!;
        expect(toHex(nonce)).toBe(c.nonce);
        const aad = concat(header, idx, Uint8Array.of(c.last ? 1 : 0));
        expect(toHex(aad)).toBe(c.aad);
        const plain = plaintext.subarray(c.index * 65536, c.index * 65536 + c.plaintextLength);
        const d = createDecipheriv('aes-256-gcm', fromHex(v.aesKey), nonce);
        d.setAAD(aad);
        // Re-encrypt with node to get the ciphertext, then check node decrypts it under the listed tag.
        const e = createCipheriv('aes-256-gcm', fromHex(v.aesKey), nonce);
        e.setAAD(aad);
        const ct = concat(new Uint8Array(e.update(plain)), new Uint8Array(e.final()));
        expect(toHex(new Uint8Array(e.getAuthTag()))).toBe(c.tag);
        d.setAuthTag(fromHex(c.tag));
        out.push(concat(new Uint8Array(d.update(ct)), new Uint8Array(d.final())));
        sealedChunks.push(concat(ct, fromHex(c.tag)));
      }
      expect(toHex(concat(...out))).toBe(toHex(plaintext));
      const whole = concat(header, ...sealedChunks);
      expect(whole.length).toBe(v.fileLength);
      expect(createHash('sha256').update(whole).digest('hex')).toBe(v.fileSha256);
      if (v.file) expect(toHex(whole)).toBe(v.file);
      expect(toHex(await openHistoryExport(whole, v.passphrase))).toBe(toHex(plaintext));
    }
  });
});
