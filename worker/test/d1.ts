/**
 * D1 inspection helpers for worker tests: every row of every table of schema/tables.ts, read through
 * drizzle (no SQL strings), for before/after snapshots and "nothing secret in clear" scans.
 */
import { env } from 'cloudflare:workers';
import { getTableName, is } from 'drizzle-orm';
import { SQLiteTable } from 'drizzle-orm/sqlite-core';
import { makeDb, schema } from '../db.js';

export const tables = (): SQLiteTable[] =>
  (Object.values(schema) as unknown[]).filter((t): t is SQLiteTable => is(t, SQLiteTable));

export async function dumpAll(except: string[] = []): Promise<Record<string, Record<string, unknown>[]>> {
  const db = makeDb(env);
  const out: Record<string, Record<string, unknown>[]> = {};
  for (const t of tables()) {
    const name = getTableName(t);
    if (except.includes(name)) continue;
    out[name] = (await db.select().from(t).all()) as Record<string, unknown>[];
  }
  return out;
}

/** JSON-comparable form (bytes as hex). */
export function canonical(dump: Record<string, Record<string, unknown>[]>): string {
  return JSON.stringify(dump, (_k, v) =>
    v instanceof Uint8Array || v instanceof ArrayBuffer
      ? `hex:${Array.from(new Uint8Array(v as ArrayBuffer), (b) => b.toString(16).padStart(2, '0')).join('')}`
      : v,
  );
}

function containsBytes(hay: Uint8Array, needle: Uint8Array): boolean {
  if (needle.length === 0 || needle.length > hay.length) return false;
  outer: for (let i = 0; i <= hay.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** Every (table.column) whose value contains one of the needles (strings: substring, UTF-8 and bytes). */
export async function findInD1(needles: (string | Uint8Array)[]): Promise<string[]> {
  const dump = await dumpAll();
  const hits: string[] = [];
  const enc = new TextEncoder();
  for (const [table, rows] of Object.entries(dump)) {
    for (const row of rows) {
      for (const [col, value] of Object.entries(row)) {
        if (value === null || value === undefined) continue;
        const asBytes =
          value instanceof Uint8Array || value instanceof ArrayBuffer
            ? new Uint8Array(value as ArrayBuffer)
            : enc.encode(String(value));
        const asText = typeof value === 'string' ? value : null;
        for (const n of needles) {
          const hit =
            typeof n === 'string'
              ? asText?.includes(n) === true || containsBytes(asBytes, enc.encode(n))
              : containsBytes(asBytes, n);
          if (hit) hits.push(`${table}.${col}`);
        }
      }
    }
  }
  return hits;
}
