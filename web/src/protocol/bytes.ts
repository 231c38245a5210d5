/**
 * Byte helpers shared by every protocol module: concatenation, constant-time comparison, big-endian
 * integers, base64url/hex, and a tiny length-prefixed Writer/Reader used by every serialized structure
 * (layouts in docs/PROTOCOL.md §"Encoding conventions").
 *
 * Does NOT: import @noble (only primitives.ts does), allocate randomness, or know any structure.
 * @module
 */
import { ErrorCode, fail } from './errors.js';

export type Bytes = Uint8Array;

export function concat(...parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Constant-time equality for equal-length inputs (length itself is not secret). */
export function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

export function isAllZero(a: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < a.length; i++) acc |= a[i]!;
  return acc === 0;
}

/** Lexicographic byte comparison: negative, zero or positive (not constant-time; for public data). */
export function compare(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

export function u32be(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) fail(ErrorCode.Decode, 'u32be', 'out of range');
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n, false);
  return out;
}

/** 64-bit big-endian from a safe integer (we never need more than 2^53). */
export function u64be(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) fail(ErrorCode.Decode, 'u64be', 'out of range');
  const out = new Uint8Array(8);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, Math.floor(n / 2 ** 32), false);
  dv.setUint32(4, n >>> 0, false);
  return out;
}

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
export const utf8 = (s: string): Uint8Array => enc.encode(s);
export function fromUtf8(b: Uint8Array): string {
  try {
    return dec.decode(b);
  } catch {
    return fail(ErrorCode.Decode, 'fromUtf8', 'invalid UTF-8');
  }
}

export function toHex(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += b[i]!.toString(16).padStart(2, '0');
  return s;
}

export function fromHex(h: string): Uint8Array {
  if (h.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(h)) fail(ErrorCode.Decode, 'fromHex', 'invalid hex');
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(h.slice(i * 2, i * 2 + 2), 16);
  return out;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const B64_INV = new Int16Array(128).fill(-1);
for (let i = 0; i < B64.length; i++) B64_INV[B64.charCodeAt(i)] = i;

/** RFC 4648 §5 base64url without padding — the only text encoding of bytes on our wire. */
export function toB64u(b: Uint8Array): string {
  let s = '';
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
    s += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  const rest = b.length - i;
  if (rest === 1) {
    const n = b[i]! << 16;
    s += B64[n >> 18]! + B64[(n >> 12) & 63]!;
  } else if (rest === 2) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8);
    s += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]!;
  }
  return s;
}

/** The runtime's own decoder (TC39 `Uint8Array.fromBase64`: workerd, Chromium), where it has one. */
const nativeFromBase64 = (
  Uint8Array as unknown as {
    fromBase64?: (s: string, o: { alphabet: 'base64url'; lastChunkHandling: 'loose' }) => Uint8Array;
  }
).fromBase64;
const B64U_ONLY = /^[A-Za-z0-9_-]*$/;

/** Strict base64url decode: rejects padding, other alphabets and non-canonical trailing bits. */
export function fromB64u(s: string): Uint8Array {
  const rest = s.length % 4;
  if (rest === 1) fail(ErrorCode.Decode, 'fromB64u', 'bad length');
  if (nativeFromBase64) {
    // The native decoder skips whitespace, takes padding and does not check the unused tail bits ('loose'):
    // those refusals stay ours, the per-character work is the runtime's.
    if (!B64U_ONLY.test(s)) fail(ErrorCode.Decode, 'fromB64u', 'invalid character');
    const last = rest === 0 ? 0 : B64_INV[s.charCodeAt(s.length - 1)]!;
    if ((rest === 2 && (last & 15) !== 0) || (rest === 3 && (last & 3) !== 0))
      fail(ErrorCode.Decode, 'fromB64u', 'non-canonical');
    return nativeFromBase64(s, { alphabet: 'base64url', lastChunkHandling: 'loose' });
  }
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const v = c < 128 ? B64_INV[c]! : -1;
    if (v < 0) fail(ErrorCode.Decode, 'fromB64u', 'invalid character');
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  if (bits > 0 && (acc & ((1 << bits) - 1)) !== 0) fail(ErrorCode.Decode, 'fromB64u', 'non-canonical');
  return out;
}

/**
 * Append-only encoder. Every variable-length field is a u32 big-endian length followed by the bytes,
 * so every structure has exactly one encoding (needed wherever we sign or hash it).
 */
export class Writer {
  private parts: Uint8Array[] = [];
  u8(n: number): this {
    if (!Number.isInteger(n) || n < 0 || n > 255) fail(ErrorCode.Decode, 'Writer.u8', 'out of range');
    this.parts.push(Uint8Array.of(n));
    return this;
  }
  u32(n: number): this {
    this.parts.push(u32be(n));
    return this;
  }
  u64(n: number): this {
    this.parts.push(u64be(n));
    return this;
  }
  /** Fixed-length bytes: the reader must know the length. */
  fixed(b: Uint8Array, len: number): this {
    if (b.length !== len) fail(ErrorCode.Decode, 'Writer.fixed', `expected ${len} bytes`);
    this.parts.push(b);
    return this;
  }
  /** Length-prefixed bytes (u32 length). */
  bytes(b: Uint8Array): this {
    this.parts.push(u32be(b.length), b);
    return this;
  }
  str(s: string): this {
    return this.bytes(utf8(s));
  }
  bool(v: boolean): this {
    return this.u8(v ? 1 : 0);
  }
  finish(): Uint8Array {
    return concat(...this.parts);
  }
}

/** Strict decoder matching Writer: any truncation or trailing byte is a `decode` error. */
export class Reader {
  private off = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly op = 'decode',
  ) {}
  private take(n: number): Uint8Array {
    if (n < 0 || this.off + n > this.buf.length) fail(ErrorCode.Decode, this.op, 'truncated');
    const out = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return out;
  }
  u8(): number {
    return this.take(1)[0]!;
  }
  u32(): number {
    const b = this.take(4);
    return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, false);
  }
  u64(): number {
    const b = this.take(8);
    const dv = new DataView(b.buffer, b.byteOffset, 8);
    const hi = dv.getUint32(0, false);
    if (hi >= 2 ** 21) fail(ErrorCode.Decode, this.op, 'integer too large');
    return hi * 2 ** 32 + dv.getUint32(4, false);
  }
  /** Copy of exactly `len` bytes. */
  fixed(len: number): Uint8Array {
    return this.take(len).slice();
  }
  /** Length-prefixed bytes, bounded by `max` so a hostile length cannot make us allocate. */
  bytes(max: number): Uint8Array {
    const len = this.u32();
    if (len > max) fail(ErrorCode.Decode, this.op, 'field too long');
    return this.take(len).slice();
  }
  str(max: number): string {
    return fromUtf8(this.bytes(max));
  }
  bool(): boolean {
    const v = this.u8();
    if (v > 1) fail(ErrorCode.Decode, this.op, 'bad boolean');
    return v === 1;
  }
  get remaining(): number {
    return this.buf.length - this.off;
  }
  /** Require that every byte was consumed. */
  end(): void {
    if (this.off !== this.buf.length) fail(ErrorCode.Decode, this.op, 'trailing bytes');
  }
}
