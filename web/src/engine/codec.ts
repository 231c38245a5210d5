/**
 * Plain-data encoding for everything the engine stores or passes across the worker boundary: JSON with
 * `Uint8Array` values written as `{"$b": base64url}` — the same convention as the end-to-end payloads
 * (protocol/content.ts `encodeJson`, used here). One codec for the Store and the RPC layer keeps every
 * record and message structured-clone friendly and free of classes.
 *
 * Does NOT: encrypt (the sealed store does) or validate shapes (callers own their record types).
 * @module
 */
import { decodeJson, encodeJson } from './_protocol.js';

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

/** JSON (with bytes) → UTF-8. */
export function encodeRecord(value: unknown): Uint8Array {
  return encodeJson(value);
}

export function decodeRecord<T>(bytes: Uint8Array): T {
  return decodeJson<T>(bytes);
}

export const utf8 = (s: string): Uint8Array => enc.encode(s);
export const fromUtf8 = (b: Uint8Array): string => dec.decode(b);
