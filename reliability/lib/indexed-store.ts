/**
 * The engine `Store` contract (web/src/engine/storage.ts) in memory, indexed by directory: the same
 * semantics as `memoryStore()` — copies in and out, `list(dir)` = the records directly in `dir` sorted by
 * key, transactions serialised by one mutex over a `TxOverlay` and committed together — but `list` reads
 * one directory instead of filtering every key of the store. A device in the load suite holds thousands
 * of records (every message), and its engine lists a directory (outbox, sender keys, sessions) for
 * nearly every frame, so with `memoryStore()` the scans alone cost more CPU than the cryptography.
 * @module
 */
import {
  assertDir,
  dirOf,
  mutex,
  type Store,
  type StoreEntry,
  type StoreTx,
  TxOverlay,
} from '../../web/src/engine/storage.js';

export function indexedMemoryStore(): Store {
  const dirs = new Map<string, Map<string, Uint8Array>>();
  const exclusive = mutex();
  const base = {
    async get(key: string): Promise<Uint8Array | undefined> {
      const v = dirs.get(dirOf(key))?.get(key);
      return v ? v.slice() : undefined;
    },
    async list(dir: string): Promise<StoreEntry[]> {
      assertDir(dir);
      const d = dirs.get(dir);
      if (!d) return [];
      return [...d]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([key, value]) => ({ key, value: value.slice() }));
    },
  };
  const transaction = <T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> =>
    exclusive(async () => {
      const tx = new TxOverlay(base);
      const result = await fn(tx);
      for (const [k, v] of tx.writes) {
        const dir = dirOf(k);
        if (v === null) {
          const d = dirs.get(dir);
          d?.delete(k);
          if (d?.size === 0) dirs.delete(dir);
        } else {
          const d = dirs.get(dir) ?? new Map<string, Uint8Array>();
          dirs.set(dir, d);
          d.set(k, v);
        }
      }
      return result;
    });
  return {
    get: base.get,
    list: base.list,
    put: (key, value) => transaction(async (tx) => tx.put(key, value)),
    delete: (key) => transaction(async (tx) => tx.delete(key)),
    transaction,
  };
}
