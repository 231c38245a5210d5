/**
 * The engine's persistence contract. Every piece of client state — keys, sessions, the send-generation
 * high-water marks, the outbox, messages — lives in a `Store` of byte values under string keys shaped
 * like paths (`sess/<user>/<device>`). `list(dir)` returns the records directly inside one directory (the
 * sealed IndexedDB store can list a directory without revealing key names; it cannot scan arbitrary
 * prefixes). `transaction` is atomic and serializable, which is what the session high-water mark's
 * compare-and-set (PITFALLS 12) and "store the message, then ack" rely on.
 *
 * Implementations: `memoryStore()` here (Node, bots, tests) and the sealed store over IndexedDB
 * (`sealed-store.ts`, `idb-store.ts`) in the browser.
 *
 * Does NOT: encrypt (the sealed store does), interpret values (callers use `readJson` / `writeJson`), or
 * take cross-resource locks (locks.ts).
 * @module
 */
import { decodeRecord, encodeRecord } from './codec.js';

export interface StoreEntry {
  readonly key: string;
  readonly value: Uint8Array;
}

export interface StoreReader {
  get(key: string): Promise<Uint8Array | undefined>;
  /** Records whose key is `dir` + a name without '/', sorted by key. `dir` must end with '/'. */
  list(dir: string): Promise<StoreEntry[]>;
}

export interface StoreTx extends StoreReader {
  put(key: string, value: Uint8Array): void;
  delete(key: string): void;
}

export interface Store extends StoreReader {
  put(key: string, value: Uint8Array): Promise<void>;
  delete(key: string): Promise<void>;
  /**
   * Runs `fn` against a consistent view; its writes commit together or not at all. `fn` may be run more
   * than once (optimistic implementations retry on conflict), so it must do nothing but Store work.
   * Never call the Store itself from inside `fn` — use `tx`.
   */
  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T>;
}

export function assertDir(dir: string): void {
  if (!dir.endsWith('/')) throw new Error(`Store.list: "${dir}" is not a directory (must end with '/')`);
}

export function inDir(key: string, dir: string): boolean {
  return key.startsWith(dir) && !key.slice(dir.length).includes('/');
}

/** The directory part of a key (up to and including its last '/'); '' for a top-level key. */
export function dirOf(key: string): string {
  return key.slice(0, key.lastIndexOf('/') + 1);
}

export async function readJson<T>(r: StoreReader, key: string): Promise<T | undefined> {
  const v = await r.get(key);
  return v === undefined ? undefined : decodeRecord<T>(v);
}

export function writeJson(tx: StoreTx, key: string, value: unknown): void {
  tx.put(key, encodeRecord(value));
}

export async function putJson(store: Store, key: string, value: unknown): Promise<void> {
  await store.put(key, encodeRecord(value));
}

export async function listJson<T>(r: StoreReader, dir: string): Promise<{ key: string; value: T }[]> {
  return (await r.list(dir)).map((e) => ({ key: e.key, value: decodeRecord<T>(e.value) }));
}

/**
 * Compare-and-set of a numeric counter: sets `key` to `next` iff it currently holds `expected` (absent = 0).
 * Returns whether it did. Used for the send-generation high-water mark.
 */
export function compareAndSet(store: Store, key: string, expected: number, next: number): Promise<boolean> {
  return store.transaction(async (tx) => {
    const cur = (await readJson<number>(tx, key)) ?? 0;
    if (cur !== expected) return false;
    writeJson(tx, key, next);
    return true;
  });
}

/**
 * A view of `tx` that reads each key at most once: a later read of a key this view did not write is answered
 * with what the first read returned (a copy); writes go to `tx`, and a written key is read from `tx` again.
 * For a batch that reads the keys it will need all at once, up front, and then again one by one as it writes
 * (the same reads inside one transaction, so the answers are the same).
 */
export function readOnce(tx: StoreTx): StoreTx {
  const read = new Map<string, Promise<Uint8Array | undefined>>();
  const written = new Set<string>();
  return {
    get(key) {
      if (written.has(key)) return tx.get(key);
      let p = read.get(key);
      if (!p) {
        p = tx.get(key);
        read.set(key, p);
      }
      return p.then((v) => v?.slice());
    },
    list: (dir) => tx.list(dir),
    put(key, value) {
      written.add(key);
      tx.put(key, value);
    },
    delete(key) {
      written.add(key);
      tx.delete(key);
    },
  };
}

/** A FIFO async mutex (one in-flight critical section at a time). */
export function mutex(): <T>(fn: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => Promise<T>) => {
    const run = tail.then(fn, fn);
    tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  };
}

/** Overlay of a transaction's pending writes over a base reader. */
export class TxOverlay implements StoreTx {
  readonly writes = new Map<string, Uint8Array | null>();
  constructor(private readonly base: StoreReader) {}
  async get(key: string): Promise<Uint8Array | undefined> {
    if (this.writes.has(key)) return this.writes.get(key) ?? undefined;
    return this.base.get(key);
  }
  async list(dir: string): Promise<StoreEntry[]> {
    assertDir(dir);
    const out = new Map((await this.base.list(dir)).map((e) => [e.key, e.value]));
    for (const [k, v] of this.writes) {
      if (!inDir(k, dir)) continue;
      if (v === null) out.delete(k);
      else out.set(k, v);
    }
    return [...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, value]) => ({ key, value }));
  }
  put(key: string, value: Uint8Array): void {
    this.writes.set(key, value.slice());
  }
  delete(key: string): void {
    this.writes.set(key, null);
  }
}

export interface MemoryStore extends Store {
  /** Every record as stored (tests inspect raw contents). */
  dump(): StoreEntry[];
}

/** In-memory Store: a Map and one mutex, so transactions are serial and therefore serializable. */
export function memoryStore(): MemoryStore {
  const data = new Map<string, Uint8Array>();
  const exclusive = mutex();
  const base: StoreReader = {
    async get(key) {
      const v = data.get(key);
      return v ? v.slice() : undefined;
    },
    async list(dir) {
      assertDir(dir);
      return [...data]
        .filter(([k]) => inDir(k, dir))
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([key, value]) => ({ key, value: value.slice() }));
    },
  };
  const transaction = <T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> =>
    exclusive(async () => {
      const tx = new TxOverlay(base);
      const result = await fn(tx);
      for (const [k, v] of tx.writes) {
        if (v === null) data.delete(k);
        else data.set(k, v);
      }
      return result;
    });
  return {
    get: base.get,
    list: base.list,
    put: (key, value) => transaction(async (tx) => tx.put(key, value)),
    delete: (key) => transaction(async (tx) => tx.delete(key)),
    transaction,
    dump: () => [...data].map(([key, value]) => ({ key, value: value.slice() })),
  };
}
