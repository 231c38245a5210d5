import { describe, expect, it } from 'vitest';
import { MAX_PLAINTEXT_LEN, PADDING_BLOCK } from './constants.js';
import { is } from './errors.js';
import { MAX_PADDED_LEN, pad, unpad } from './padding.js';

function codeOf(f: () => unknown): string | null {
  try {
    f();
    return null;
  } catch (e) {
    return is(e) ? e.code : 'not a ProtocolError';
  }
}

/** `n` bytes of 0x41, then 0x80 and zeros up to `total` bytes (any padding length, valid or not). */
function padded(n: number, total: number): Uint8Array {
  const out = new Uint8Array(total);
  out.fill(0x41, 0, n);
  out[n] = 0x80;
  return out;
}

describe('padding', () => {
  it('an empty or block-aligned plaintext gets a whole block of padding (0x80 and 159 zeros), and unpad takes it off', () => {
    for (const n of [0, PADDING_BLOCK, 2 * PADDING_BLOCK]) {
      const p = pad(new Uint8Array(n).fill(0x41));
      expect(p.length).toBe(n + PADDING_BLOCK);
      expect([p[n], p.subarray(n + 1).every((b) => b === 0)]).toEqual([0x80, true]);
      expect(unpad(p).length).toBe(n);
    }
    for (const [n, len] of [
      [1, 160],
      [159, 160],
      [161, 320],
    ]) {
      expect(pad(new Uint8Array(n!)).length).toBe(len);
    }
  });

  it('unpad counts the 0x80 as padding: 1 to 160 bytes are accepted, 161 are decode', () => {
    expect(unpad(padded(159, 160)).length).toBe(159); // 1 byte of padding: the 0x80 alone
    expect(unpad(padded(160, 320)).length).toBe(160); // 160 bytes: 0x80 and 159 zeros
    expect(codeOf(() => unpad(padded(159, 320)))).toBe('decode'); // 161 bytes of padding
  });

  it('unpad refuses a length that is not a non-zero multiple of 160, a missing 0x80 and a non-zero byte after it', () => {
    expect(codeOf(() => unpad(new Uint8Array(0)))).toBe('decode');
    expect(codeOf(() => unpad(padded(10, 161)))).toBe('decode');
    expect(codeOf(() => unpad(new Uint8Array(160)))).toBe('decode');
    const junk = padded(10, 160);
    junk[20] = 1;
    expect(codeOf(() => unpad(junk))).toBe('decode');
  });

  it('a peer plaintext of 65,537 bytes is limit_exceeded on receive, as on send; 65,536 bytes pass', () => {
    expect(MAX_PADDED_LEN).toBe(65_600);
    expect(unpad(pad(new Uint8Array(MAX_PLAINTEXT_LEN))).length).toBe(MAX_PLAINTEXT_LEN);
    expect(codeOf(() => pad(new Uint8Array(MAX_PLAINTEXT_LEN + 1)))).toBe('limit_exceeded');
    expect(codeOf(() => unpad(padded(MAX_PLAINTEXT_LEN + 1, MAX_PADDED_LEN)))).toBe('limit_exceeded');
    expect(codeOf(() => unpad(padded(MAX_PADDED_LEN - 1, MAX_PADDED_LEN)))).toBe('limit_exceeded');
  });
});
