/**
 * Plain-data encoding for everything the engine stores or passes across the worker boundary: JSON with
 * `Uint8Array` values written as `{"$b": base64url}`. One codec for the Store and the RPC layer keeps
 * every record and message structured-clone friendly and free of classes.
 *
 * Does NOT: encrypt (the sealed store does) or validate shapes (callers own their record types).
 * @module
 */
import { fromB64u, toB64u } from '../protocol/index.js';

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

function replacer(this: unknown, _key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? { $b: toB64u(value) } : value;
}

function reviver(_key: string, value: unknown): unknown {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const o = value as Record<string, unknown>;
    if (typeof o.$b === 'string' && Object.keys(o).length === 1) return fromB64u(o.$b);
  }
  return value;
}

/** JSON (with bytes) → UTF-8. */
export function encodeRecord(value: unknown): Uint8Array {
  return enc.encode(JSON.stringify(value, replacer));
}

export function decodeRecord<T>(bytes: Uint8Array): T {
  return JSON.parse(dec.decode(bytes), reviver) as T;
}

export const utf8 = (s: string): Uint8Array => enc.encode(s);
export const fromUtf8 = (b: Uint8Array): string => dec.decode(b);
