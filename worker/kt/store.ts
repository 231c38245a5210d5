/**
 * The key-transparency log's own SQLite store (inside KeyLogDO): the RFC 9162 Merkle tree as its perfect
 * subtree roots, the entries, and the signed tree heads.
 *
 * Responsibilities: append a batch of entries in ONE transaction (leaf and new interior nodes, entry rows,
 * the size) so a crash leaves either all of a batch or none of it; keep the frontier (the right edge of the
 * tree, one node per set bit of the size) in memory and rebuild it from the stored nodes after a restart;
 * answer inclusion and consistency proofs from stored nodes (merkle.ts NodeReader); keep one signed head
 * per tree size; erase a deleted account's entry bytes (their leaf hashes stay, so every proof still holds).
 * Does NOT: sign (the DO does, with the log key), decide what may be appended (version rules live in the
 * DO), or read a clock.
 *
 * Tables (bound parameters only; multi-row inserts repeat `(?,?,?)` placeholders, ≤ 100 per statement):
 *   kt_state    one row: size (number of leaves committed)
 *   kt_nodes    (level, idx) → hash: every perfect subtree root; level 0 = leaf hashes (≈ 2 rows per entry)
 *   kt_entries  idx → user id, version, kind, time, encoded entry (NULL once erased)
 *   kt_heads    size → time, signed head bytes (the newest head signed at that size)
 */
import {
  appendLeaf,
  consistencyProof,
  frontierPositions,
  frontierRoot,
  inclusionProof,
  type NodeReader,
  type TreeNode,
} from '../../web/src/protocol/merkle.js';

export interface StoredEntry {
  idx: number;
  userId: string;
  version: number;
  kind: 'key' | 'deleted';
  time: number;
  /** The encoded entry; null once erased (account deleted). */
  entry: Uint8Array | null;
}

export interface NewEntry {
  userId: string;
  version: number;
  kind: 'key' | 'deleted';
  time: number;
  entry: Uint8Array;
  leafHash: Uint8Array;
}

const NODE_ROWS_PER_STATEMENT = 33; // 3 bound parameters each, ≤ 100 per statement
const bytes = (b: ArrayBuffer | Uint8Array): Uint8Array => (b instanceof Uint8Array ? b : new Uint8Array(b));

export class KtStore {
  private readonly sql: SqlStorage;
  private size = 0;
  private frontier: Uint8Array[] = [];

  constructor(private readonly storage: DurableObjectStorage) {
    this.sql = storage.sql;
  }

  /** Creates the tables if needed and loads the size and frontier. Idempotent. */
  init(): void {
    this.sql.exec(`CREATE TABLE IF NOT EXISTS kt_state (id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL)`);
    this.sql.exec('INSERT OR IGNORE INTO kt_state (id, size) VALUES (1, 0)');
    this.sql.exec(`CREATE TABLE IF NOT EXISTS kt_nodes (
      level INTEGER NOT NULL,
      idx INTEGER NOT NULL,
      hash BLOB NOT NULL,
      PRIMARY KEY (level, idx)) WITHOUT ROWID`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS kt_entries (
      idx INTEGER PRIMARY KEY,
      user_id TEXT NOT NULL,
      version INTEGER NOT NULL,
      kind TEXT NOT NULL,
      time INTEGER NOT NULL,
      entry BLOB)`);
    this.sql.exec('CREATE UNIQUE INDEX IF NOT EXISTS kt_entries_user_version ON kt_entries (user_id, version)');
    this.sql.exec(`CREATE TABLE IF NOT EXISTS kt_heads (
      size INTEGER PRIMARY KEY,
      time INTEGER NOT NULL,
      head BLOB NOT NULL)`);
    this.size = this.sql.exec<{ size: number }>('SELECT size FROM kt_state WHERE id = 1').one().size;
    this.frontier = frontierPositions(this.size).map((p) => this.read(p.level, p.index));
  }

  get treeSize(): number {
    return this.size;
  }

  root(): Uint8Array {
    return frontierRoot(this.frontier);
  }

  readonly read: NodeReader = (level, index) => {
    const row = this.sql
      .exec<{ hash: ArrayBuffer }>('SELECT hash FROM kt_nodes WHERE level = ? AND idx = ?', level, index)
      .toArray()[0];
    if (!row) throw new Error(`kt: node ${level}/${index} missing`);
    return bytes(row.hash);
  };

  /**
   * Appends `entries` in order, in one transaction; returns their indices. The in-memory frontier moves
   * only after the commit, so a failed transaction changes nothing.
   */
  appendBatch(entries: readonly NewEntry[]): number[] {
    let frontier = this.frontier;
    let size = this.size;
    const nodes: TreeNode[] = [];
    const indices: number[] = [];
    for (const e of entries) {
      const r = appendLeaf(frontier, size, e.leafHash);
      frontier = r.frontier;
      nodes.push(...r.nodes);
      indices.push(size);
      size++;
    }
    this.storage.transactionSync(() => {
      for (let i = 0; i < nodes.length; i += NODE_ROWS_PER_STATEMENT) {
        const chunk = nodes.slice(i, i + NODE_ROWS_PER_STATEMENT);
        // sql-interpolation-ok: repeats a fixed placeholder tuple only; every value is bound.
        this.sql.exec(
          `INSERT INTO kt_nodes (level, idx, hash) VALUES ${chunk.map(() => '(?,?,?)').join(',')}`,
          ...chunk.flatMap((n) => [n.level, n.index, n.hash]),
        );
      }
      entries.forEach((e, i) => {
        this.sql.exec(
          'INSERT INTO kt_entries (idx, user_id, version, kind, time, entry) VALUES (?, ?, ?, ?, ?, ?)',
          indices[i]!,
          e.userId,
          e.version,
          e.kind,
          e.time,
          e.entry,
        );
      });
      this.sql.exec('UPDATE kt_state SET size = ? WHERE id = 1', size);
    });
    this.frontier = frontier;
    this.size = size;
    return indices;
  }

  /** The entry with the highest version for `userId` (its latest state), or null. */
  latestFor(userId: string): StoredEntry | null {
    return this.entryRow(
      this.sql
        .exec<EntryRow>('SELECT * FROM kt_entries WHERE user_id = ? ORDER BY version DESC LIMIT 1', userId)
        .toArray()[0],
    );
  }

  entryFor(userId: string, version: number): StoredEntry | null {
    return this.entryRow(
      this.sql
        .exec<EntryRow>('SELECT * FROM kt_entries WHERE user_id = ? AND version = ?', userId, version)
        .toArray()[0],
    );
  }

  /** Erases the stored bytes of every key entry of `userId` (leaf hashes stay in kt_nodes). */
  eraseKeyEntries(userId: string): number {
    return this.sql.exec(
      "UPDATE kt_entries SET entry = NULL WHERE user_id = ? AND kind = 'key' AND entry IS NOT NULL",
      userId,
    ).rowsWritten;
  }

  inclusionProof(index: number, size: number): Uint8Array[] {
    return inclusionProof(this.read, index, size);
  }

  consistencyProof(size1: number, size2: number): Uint8Array[] {
    return consistencyProof(this.read, size1, size2);
  }

  // ---- signed heads ----

  putHead(size: number, time: number, head: Uint8Array): void {
    this.sql.exec(
      `INSERT INTO kt_heads (size, time, head) VALUES (?, ?, ?)
       ON CONFLICT (size) DO UPDATE SET time = excluded.time, head = excluded.head WHERE excluded.time > kt_heads.time`,
      size,
      time,
      head,
    );
  }

  latestHead(): { size: number; time: number; head: Uint8Array } | null {
    const r = this.sql
      .exec<{ size: number; time: number; head: ArrayBuffer }>(
        'SELECT size, time, head FROM kt_heads ORDER BY size DESC LIMIT 1',
      )
      .toArray()[0];
    return r ? { size: r.size, time: r.time, head: bytes(r.head) } : null;
  }

  /** Heads with size > `afterSize`, oldest first. */
  heads(afterSize: number, limit: number): Uint8Array[] {
    return this.sql
      .exec<{ head: ArrayBuffer }>('SELECT head FROM kt_heads WHERE size > ? ORDER BY size LIMIT ?', afterSize, limit)
      .toArray()
      .map((r) => bytes(r.head));
  }

  hasHead(size: number): boolean {
    return this.sql.exec('SELECT 1 FROM kt_heads WHERE size = ?', size).toArray().length > 0;
  }

  private entryRow(r: EntryRow | undefined): StoredEntry | null {
    if (!r) return null;
    return {
      idx: r.idx,
      userId: r.user_id,
      version: r.version,
      kind: r.kind === 'deleted' ? 'deleted' : 'key',
      time: r.time,
      entry: r.entry ? bytes(r.entry) : null,
    };
  }
}

interface EntryRow extends Record<string, SqlStorageValue> {
  idx: number;
  user_id: string;
  version: number;
  kind: string;
  time: number;
  entry: ArrayBuffer | null;
}
