import { describe, expect, it } from 'vitest';
import { toHex, utf8 } from './bytes.js';
import { HISTORY_EXPORT_CHUNK_SIZE } from './constants.js';
import { ErrorCode, is } from './errors.js';
import {
  HISTORY_EXPORT_HEADER_LEN,
  isHistoryExportContainer,
  openHistoryExport,
  parseHistoryExportHeader,
  sealHistoryExport,
} from './history-export.js';
import { seededRng } from './testing.js';

/** A cheap argon2id cost for tests (the format accepts any cost within the reader's bounds). */
const kdf = { m: 64, t: 1, p: 1 };
const PASS = 'correct horse battery staple';
const C = HISTORY_EXPORT_CHUNK_SIZE;
const pattern = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) % 256);

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (is(e)) return e.code;
    throw e;
  }
  return 'opened';
}

describe('passphrase-encrypted history export', () => {
  it('round-trips an empty, a short, an exactly one-chunk, a chunk-aligned and a multi-chunk document', async () => {
    for (const n of [0, 1, 100, C - 1, C, C + 1, 2 * C, 3 * C + 17]) {
      const plain = pattern(n);
      const file = await sealHistoryExport(plain, PASS, seededRng(`rt ${n}`), { kdf });
      expect(isHistoryExportContainer(file)).toBe(true);
      expect(file.length).toBe(HISTORY_EXPORT_HEADER_LEN + n + 16 * Math.max(1, Math.ceil(n / C)));
      expect(toHex(await openHistoryExport(file, PASS))).toBe(toHex(plain));
    }
  });

  it('WebCrypto and pure-JS AES-GCM write the same bytes, and each opens the other', async () => {
    const plain = pattern(C + 5);
    const a = await sealHistoryExport(plain, PASS, seededRng('paths'), { kdf, subtle: crypto.subtle });
    const b = await sealHistoryExport(plain, PASS, seededRng('paths'), { kdf, subtle: null });
    expect(toHex(a)).toBe(toHex(b));
    expect(toHex(await openHistoryExport(a, PASS, { subtle: null }))).toBe(toHex(plain));
  });

  it('two exports of the same history under the same passphrase share no key: fresh salt, different bytes', async () => {
    const plain = utf8('same history');
    const rng = seededRng('two exports');
    const a = await sealHistoryExport(plain, PASS, rng, { kdf });
    const b = await sealHistoryExport(plain, PASS, rng, { kdf });
    expect(toHex(parseHistoryExportHeader(a).salt)).not.toBe(toHex(parseHistoryExportHeader(b).salt));
    expect(toHex(a.subarray(HISTORY_EXPORT_HEADER_LEN))).not.toBe(toHex(b.subarray(HISTORY_EXPORT_HEADER_LEN)));
  });

  it('a wrong passphrase is a typed wrong_passphrase error, and nothing is returned', async () => {
    const file = await sealHistoryExport(pattern(C + 9), PASS, seededRng('wrong'), { kdf });
    expect(await code(openHistoryExport(file, 'correct horse battery stapler'))).toBe(ErrorCode.WrongPassphrase);
    expect(await code(openHistoryExport(file, ''))).toBe(ErrorCode.Decode);
  });

  it('the passphrase is NFKC-normalised: the decomposed spelling opens what the precomposed one sealed', async () => {
    const file = await sealHistoryExport(utf8('x'), 'pässphrase', seededRng('nfkc'), { kdf });
    expect(await code(openHistoryExport(file, 'pa\u0308ssphrase'))).toBe('opened');
  });

  it('any changed byte, a truncation (mid-chunk or at a chunk boundary), an extension or swapped chunks fail whole', async () => {
    const plain = pattern(2 * C + 40);
    const file = await sealHistoryExport(plain, PASS, seededRng('tamper'), { kdf });
    const full = C + 16;
    const body = HISTORY_EXPORT_HEADER_LEN;
    const flipped = (i: number) => {
      const f = file.slice();
      f[i]! ^= 1;
      return f;
    };
    // Every byte of every chunk body and tag is authenticated.
    for (const i of [body, body + 1000, body + full - 1, body + full, body + 2 * full + 3, file.length - 1])
      expect(await code(openHistoryExport(flipped(i), PASS)), `byte ${i}`).toBe(ErrorCode.DecryptionFailed);
    // The header: magic/version/kdf id do not parse; a cost out of bounds is refused; another cost or salt
    // gives another key (the check differs: indistinguishable from a wrong passphrase), the check itself too.
    expect(await code(openHistoryExport(flipped(0), PASS))).toBe(ErrorCode.Decode);
    expect(await code(openHistoryExport(flipped(8), PASS))).toBe(ErrorCode.Decode);
    expect(await code(openHistoryExport(flipped(9), PASS))).toBe(ErrorCode.Decode);
    expect(await code(openHistoryExport(flipped(17), PASS))).toBe(ErrorCode.LimitExceeded); // t = 0
    for (const i of [13, 19, 34, 35, 50])
      expect(await code(openHistoryExport(flipped(i), PASS)), `header byte ${i}`).toBe(ErrorCode.WrongPassphrase);
    // Truncations and extensions.
    const cut = (n: number) => file.subarray(0, n);
    expect(await code(openHistoryExport(cut(file.length - 1), PASS))).toBe(ErrorCode.DecryptionFailed);
    expect(await code(openHistoryExport(cut(body + 2 * full), PASS))).toBe(ErrorCode.DecryptionFailed);
    expect(await code(openHistoryExport(cut(body + full), PASS))).toBe(ErrorCode.DecryptionFailed);
    expect(await code(openHistoryExport(cut(body + full + 10), PASS))).toBe(ErrorCode.DecryptionFailed);
    expect(await code(openHistoryExport(cut(body + 15), PASS))).toBe(ErrorCode.Decode);
    const longer = new Uint8Array(file.length + 1);
    longer.set(file);
    expect(await code(openHistoryExport(longer, PASS))).toBe(ErrorCode.DecryptionFailed);
    // Chunks 0 and 1 swapped (both full).
    const swapped = file.slice();
    swapped.set(file.subarray(body + full, body + 2 * full), body);
    swapped.set(file.subarray(body, body + full), body + full);
    expect(await code(openHistoryExport(swapped, PASS))).toBe(ErrorCode.DecryptionFailed);
    // The untouched file still opens.
    expect(toHex(await openHistoryExport(file, PASS))).toBe(toHex(plain));
  });

  it('a header asking for more memory, passes or lanes than a reader allows is refused before any argon2id runs', async () => {
    const file = await sealHistoryExport(utf8('x'), PASS, seededRng('bounds'), { kdf });
    const withCost = (m: number, t: number, p: number) => {
      const f = file.slice();
      const v = new DataView(f.buffer);
      v.setUint32(10, m);
      v.setUint32(14, t);
      f[18] = p;
      return f;
    };
    const started = Date.now();
    expect(await code(openHistoryExport(withCost(0xffffffff, 1, 1), PASS))).toBe(ErrorCode.LimitExceeded);
    expect(await code(openHistoryExport(withCost(64, 1000, 1), PASS))).toBe(ErrorCode.LimitExceeded);
    expect(await code(openHistoryExport(withCost(64, 1, 0), PASS))).toBe(ErrorCode.LimitExceeded);
    expect(await code(openHistoryExport(withCost(7, 1, 1), PASS))).toBe(ErrorCode.LimitExceeded);
    expect(Date.now() - started).toBeLessThan(5_000); // a 4 GiB argon2id would not get here
    expect(await code(sealHistoryExport(utf8('x'), PASS, seededRng('w'), { kdf: { m: 64, t: 0, p: 1 } }))).toBe(
      ErrorCode.LimitExceeded,
    );
    expect(() => parseHistoryExportHeader(utf8('{"format":"e2e-chat history"}'))).toThrow(/not a history export/);
  });

  it('the default cost is argon2id m = 64 MiB, t = 3, p = 1, written in the header', async () => {
    const file = await sealHistoryExport(utf8('x'), PASS, seededRng('default'));
    expect(parseHistoryExportHeader(file).kdf).toEqual({ m: 65536, t: 3, p: 1 });
  });
});
