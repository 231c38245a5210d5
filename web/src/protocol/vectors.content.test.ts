/**
 * Published content-type vectors (web/src/protocol/vectors/content.json, docs/PROTOCOL.md §"Content
 * types"): regenerated from their payloads and compared byte for byte; every committed vector is decoded
 * again and its canonical encoding decodes to the same content. `UPDATE_VECTORS=1` rewrites the file.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fromHex } from './bytes.js';
import { CONTENT_TYPES, decodeContent } from './content.js';
import { type ContentVector, generateContentVectors } from './vectors/generate-content.js';

const file = fileURLToPath(new URL('./vectors/content.json', import.meta.url));
const serialize = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

describe('content-type vectors', () => {
  it('regenerate byte for byte from their payloads', () => {
    const fresh = serialize(generateContentVectors());
    if (process.env.UPDATE_VECTORS) writeFileSync(file, fresh);
    expect(readFileSync(file, 'utf8')).toBe(fresh);
  });

  it('cover every version-1 type, a type and a version from the future, and a broken case of several types', () => {
    const { vectors } = JSON.parse(readFileSync(file, 'utf8')) as { vectors: ContentVector[] };
    const ok = new Set(
      vectors.flatMap((v) => (v.expected.kind === 'ok' ? [(v.expected.content as { t: string }).t] : [])),
    );
    expect([...ok].sort()).toEqual([...CONTENT_TYPES].sort());
    expect(vectors.filter((v) => v.expected.kind === 'unsupported').length).toBeGreaterThanOrEqual(3);
    expect(vectors.filter((v) => v.expected.kind === 'malformed').length).toBeGreaterThanOrEqual(8);
  });

  it('the committed payloads decode as listed; canonical encodings decode to the same content', () => {
    const { vectors } = JSON.parse(readFileSync(file, 'utf8')) as { vectors: ContentVector[] };
    for (const v of vectors) {
      const bytes = fromHex(v.payloadHex);
      expect(new TextDecoder().decode(bytes), v.name).toBe(v.payload);
      const r = decodeContent(bytes);
      expect(r.kind, v.name).toBe(v.expected.kind);
      if (v.expected.kind !== 'ok') expect(r, v.name).toEqual(v.expected);
      if (v.canonical) {
        const again = decodeContent(new TextEncoder().encode(v.canonical));
        expect(again, v.name).toEqual(r);
        expect((JSON.parse(v.canonical) as { v?: number }).v, v.name).toBeUndefined(); // version 1: no `v`
      }
    }
  });
});
