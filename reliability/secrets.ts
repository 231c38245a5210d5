/**
 * Secrets suite: while the other suites run they register what must never reach the server's logs or
 * storage — message plaintexts, private keys, passwords, access/refresh tokens and WebSocket tickets
 * (`remember`). Afterwards every log line the dev server printed and every file under its state folder
 * (local D1 and Durable Object SQLite files, WAL included, read as raw bytes) is searched for each of
 * them: raw bytes, UTF-8, base64url, base64 and hex. No SQLite tool needed.
 * @module
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { SuiteResult } from './report.js';
import { VITE_CACHE } from './server.js';

export type SecretKind = 'plaintext' | 'private key' | 'password' | 'token';
/**
 * Values the server stores by design but must never log (issue 18: logs hold hashed ids, route patterns,
 * no usernames or addresses): searched in the log output only, not in the state files.
 */
export type LogOnlyKind = 'username' | 'account id' | 'client address';

const registry = new Map<string, { kind: SecretKind; value: Buffer }>();

/** Registers a value that must not appear anywhere server-side (values shorter than 8 bytes are ignored). */
export function remember(kind: SecretKind, value: string | Uint8Array): void {
  const buf = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
  if (buf.length < 8) return;
  registry.set(`${kind}:${buf.toString('hex')}`, { kind, value: buf });
}

const logOnly = new Map<string, { kind: LogOnlyKind; value: Buffer }>();

/** Registers a value that must not appear in any server log line (values shorter than 8 bytes are ignored). */
export function rememberForLogs(kind: LogOnlyKind, value: string): void {
  const buf = Buffer.from(value, 'utf8');
  if (buf.length < 8) return;
  logOnly.set(`${kind}:${value}`, { kind, value: buf });
}

/** Everything remembered so far (a fleet worker thread sends its share to the main thread). */
export function rememberedEntries(): { kind: SecretKind; value: Uint8Array }[] {
  return [...registry.values()].map(({ kind, value }) => ({ kind, value: new Uint8Array(value) }));
}

/** Adds secrets remembered in another thread (reliability/lib/fleet.ts). */
export function absorb(entries: readonly { kind: SecretKind; value: Uint8Array }[]): void {
  for (const e of entries) remember(e.kind, e.value);
}

export function rememberedCount(): number {
  return registry.size;
}

function needles(v: Buffer): Buffer[] {
  const out = [v, Buffer.from(v.toString('base64url')), Buffer.from(v.toString('base64').replace(/=+$/, ''))];
  // Text secrets (tokens, passwords, plaintexts) are searched as text; binary ones also as hex.
  if (!/^[\x20-\x7e]*$/.test(v.toString('latin1'))) out.push(Buffer.from(v.toString('hex')));
  return out;
}

/**
 * Finds many needles (each at least 4 bytes) in one pass over a haystack: a 4-byte rolling window is
 * filtered through a 2^24-bit table of the needles' first 4 bytes, and only candidates are compared in
 * full. (One `indexOf` per needle per file took minutes after a full-size load run: thousands of secrets ×
 * tens of MB of state.)
 */
export class NeedleSearch {
  private readonly table = new Uint8Array(1 << 21);
  private readonly byPrefix = new Map<number, { id: number; bytes: Buffer }[]>();

  private static hash(k: number): number {
    return Math.imul(k, 2654435761) >>> 8;
  }

  add(id: number, bytes: Buffer): void {
    if (bytes.length < 4) throw new Error('needles must be at least 4 bytes long');
    const k = bytes.readUInt32LE(0);
    const h = NeedleSearch.hash(k);
    this.table[h >>> 3]! |= 1 << (h & 7);
    const list = this.byPrefix.get(k) ?? [];
    list.push({ id, bytes });
    this.byPrefix.set(k, list);
  }

  /** Ids of the needles that occur anywhere in `hay`. */
  find(hay: Buffer): Set<number> {
    const found = new Set<number>();
    if (hay.length < 4) return found;
    // Little-endian window hay[i..i+3]; before the loop, as if at i = -1 (its low byte is shifted out first).
    let k = ((hay[0]! << 8) | (hay[1]! << 16) | (hay[2]! << 24)) >>> 0;
    for (let i = 0; i + 4 <= hay.length; i++) {
      k = ((k >>> 8) | (hay[i + 3]! << 24)) >>> 0;
      const h = NeedleSearch.hash(k);
      if (!(this.table[h >>> 3]! & (1 << (h & 7)))) continue;
      for (const n of this.byPrefix.get(k) ?? []) {
        if (found.has(n.id) || i + n.bytes.length > hay.length) continue;
        if (hay.compare(n.bytes, 0, n.bytes.length, i, i + n.bytes.length) === 0) found.add(n.id);
      }
    }
    return found;
  }
}

function files(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name === VITE_CACHE) continue; // the dev server's bundled dependencies, not server state
    const p = join(dir, name);
    const st = statSync(p, { throwIfNoEntry: false });
    if (!st) continue;
    if (st.isDirectory()) out.push(...files(p));
    else if (st.isFile()) out.push(p);
  }
  return out;
}

export interface Haystack {
  label: string;
  bytes: Buffer;
}

export function stateHaystacks(stateDir: string): Haystack[] {
  return files(stateDir).map((p) => ({ label: p.slice(stateDir.length + 1), bytes: readFileSync(p) }));
}

const collected: { logs: string[]; stacks: Haystack[] } = { logs: [], stacks: [] };

/** Takes a copy of a dev server's log output and state files now (call it before the server's state goes). */
export function collect(server: { output: () => string; stateDir: string }): void {
  collected.logs.push(server.output());
  collected.stacks.push(
    ...stateHaystacks(server.stateDir).map((h) => ({ ...h, label: `${server.stateDir}/${h.label}` })),
  );
}

/** Searches everything `collect`ed (plus `logs` / `stacks`) for every remembered secret. */
export function secretsSuite(extraLogs: string[] = [], extraStacks: Haystack[] = []): SuiteResult {
  const logs = [...collected.logs, ...extraLogs];
  const stacks = [...collected.stacks, ...extraStacks];
  const t0 = performance.now();
  const all: Haystack[] = [...logs.map((l, i) => ({ label: `log ${i}`, bytes: Buffer.from(l, 'utf8') })), ...stacks];
  const hits: string[] = [];
  const byKind = new Map<SecretKind, number>();
  const secrets = [...registry.values()];
  const search = new NeedleSearch();
  for (const [i, { kind, value }] of secrets.entries()) {
    byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
    for (const n of needles(value)) search.add(i, n);
  }
  for (const h of all) for (const i of search.find(h.bytes)) hits.push(`${secrets[i]!.kind} found in ${h.label}`);
  // Log-only values: stored by design (usernames, ids), never in a log line; addresses never in clear.
  const logOnlyValues = [...logOnly.values()];
  const logSearch = new NeedleSearch();
  for (const [i, { value }] of logOnlyValues.entries()) logSearch.add(i, value);
  for (const [li, l] of logs.entries()) {
    for (const i of logSearch.find(Buffer.from(l, 'utf8'))) hits.push(`${logOnlyValues[i]!.kind} found in log ${li}`);
  }
  const bytes = all.reduce((s, h) => s + h.bytes.length, 0);
  const logLines = logs.reduce((s, l) => s + l.split('\n').length, 0);
  return {
    name: 'secrets',
    rows: [
      [
        'secrets searched (plaintexts / private keys / passwords / tokens)',
        `${byKind.get('plaintext') ?? 0} / ${byKind.get('private key') ?? 0} / ${byKind.get('password') ?? 0} / ${byKind.get('token') ?? 0}`,
      ],
      [
        'usernames / account ids / addresses searched in logs',
        (['username', 'account id', 'client address'] as const)
          .map((k) => logOnlyValues.filter((v) => v.kind === k).length)
          .join(' / '),
      ],
      ['log lines / state files / MB scanned', `${logLines} / ${stacks.length} / ${(bytes / 1e6).toFixed(1)}`],
      ['secrets found', String(hits.length)],
      ['wall time (s)', ((performance.now() - t0) / 1000).toFixed(1)],
    ],
    failures: [...new Set(hits)],
  };
}
