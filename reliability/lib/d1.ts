/**
 * Reads every row of every table of the dev server's local D1 with `wrangler d1 execute --local
 * --persist-to <stateDir>` (the same SQLite file the running workerd uses; WAL lets both read it).
 * @module
 */
import { spawnSync } from 'node:child_process';
import { QUIET_ENV, ROOT } from '../../scripts/local-env.js';

function execute(stateDir: string, sql: string): { results: Record<string, unknown>[] }[] {
  const r = spawnSync(
    process.execPath,
    [
      `${ROOT}node_modules/wrangler/bin/wrangler.js`,
      'd1',
      'execute',
      'DB',
      '--local',
      '--persist-to',
      stateDir,
      '--json',
      '--command',
      sql,
    ],
    { cwd: ROOT, env: QUIET_ENV, encoding: 'utf8', maxBuffer: 512 * 1024 * 1024 },
  );
  if (r.status !== 0) throw new Error(`wrangler d1 execute failed: ${(r.stderr || r.stdout).slice(-1000)}`);
  return JSON.parse(r.stdout) as { results: Record<string, unknown>[] }[];
}

/** table → its rows, each serialised to a canonical JSON string. */
export type Snapshot = Map<string, string[]>;

export function snapshotD1(stateDir: string): Snapshot {
  const tables = execute(stateDir, "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")[0]!
    .results.map((r) => String(r.name))
    .filter((t) => !t.toLowerCase().startsWith('_cf') && !t.startsWith('sqlite'));
  const results = execute(stateDir, tables.map((t) => `SELECT * FROM "${t}"`).join('; '));
  const snap: Snapshot = new Map();
  tables.forEach((t, i) => {
    snap.set(
      t,
      (results[i]?.results ?? []).map((row) =>
        JSON.stringify(Object.entries(row).sort(([a], [b]) => a.localeCompare(b))),
      ),
    );
  });
  return snap;
}

export interface TableDiff {
  table: string;
  added: string[];
  removed: string[];
}

export function diffSnapshots(before: Snapshot, after: Snapshot): TableDiff[] {
  const out: TableDiff[] = [];
  for (const table of new Set([...before.keys(), ...after.keys()])) {
    const a = new Set(before.get(table) ?? []);
    const b = new Set(after.get(table) ?? []);
    const added = [...b].filter((r) => !a.has(r));
    const removed = [...a].filter((r) => !b.has(r));
    if (added.length || removed.length) out.push({ table, added, removed });
  }
  return out;
}
