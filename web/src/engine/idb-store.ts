/**
 * The browser backend of the sealed store: an IndexedDB database with two object stores, `records`
 * (opaque id → sealed bytes, see sealed-store.ts) and `meta` (the non-extractable CryptoKeys, or the
 * passphrase-wrapped key bytes). Raw IndexedDB contents therefore hold no plaintext message, no private
 * key and no readable record name.
 *
 * `commit` runs its checks and writes in ONE readwrite transaction, with strict durability (rules 4 and 5:
 * what it resolves is on disk before a ciphertext is sent or an ack goes out); the checks compare bytes inside
 * request callbacks (no awaits on anything but IndexedDB requests, so the transaction cannot auto-commit
 * half-way) and abort the transaction on a mismatch.
 *
 * Does NOT: seal (sealed-store.ts), or run in Node (tests exercise the sealed layer over memoryRawKv; the
 * real IndexedDB is covered by the browser suite).
 * @module
 */
import { type OnProgress, openSealedStore, type RawKv, type SealedStore, type SealMeta } from './sealed-store.js';

const RECORDS = 'records';
const META = 'meta';
const META_KEY = 'keys';

function req<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

/**
 * Opens (creating) the database. When another context deletes or upgrades it (an identity reset or an
 * erase in another tab), this connection closes instead of blocking that; later calls then fail.
 */
export async function openIdb(name: string, factory: IDBFactory = indexedDB): Promise<IDBDatabase> {
  const open = factory.open(name, 1);
  open.onupgradeneeded = () => {
    open.result.createObjectStore(RECORDS);
    open.result.createObjectStore(META);
  };
  const db = await req(open);
  db.onversionchange = () => db.close();
  return db;
}

const same = (a: Uint8Array | undefined, b: Uint8Array | undefined) =>
  a === b || (!!a && !!b && a.length === b.length && a.every((x, i) => x === b[i]));

export function idbRawKv(db: IDBDatabase): RawKv {
  return {
    async get(id) {
      const v = await req(db.transaction(RECORDS).objectStore(RECORDS).get(id));
      return v instanceof Uint8Array ? v : undefined;
    },
    getMany(ids) {
      return new Promise((resolve, reject) => {
        if (ids.length === 0) return resolve([]);
        const tx = db.transaction(RECORDS);
        const store = tx.objectStore(RECORDS);
        const out: (Uint8Array | undefined)[] = new Array(ids.length);
        tx.onabort = () => reject(tx.error);
        // Requests of one transaction succeed in the order they were made: the last one answers for all.
        ids.forEach((id, i) => {
          const r = store.get(id);
          r.onsuccess = () => {
            out[i] = r.result instanceof Uint8Array ? r.result : undefined;
            if (i === ids.length - 1) resolve(out);
          };
          r.onerror = () => reject(r.error);
        });
      });
    },
    async range(prefix) {
      const store = db.transaction(RECORDS).objectStore(RECORDS);
      const range = prefix ? IDBKeyRange.bound(prefix, `${prefix}\uffff`) : undefined;
      const [keys, values] = await Promise.all([req(store.getAllKeys(range)), req(store.getAll(range))]);
      return keys.map((k, i) => ({ id: String(k), value: values[i] as Uint8Array }));
    },
    commit(checks, writes, meta) {
      return new Promise<boolean>((resolve, reject) => {
        // Strict: `complete` only once the writes are on disk. Chrome ≥ 121 (and Firefox, Safari) default to
        // relaxed — complete once handed to the OS — and a power loss then rolls back a ratchet step whose
        // ciphertext already left ((key, nonce) reuse at the next send) or envelopes already acked.
        const tx = db.transaction([RECORDS, META], 'readwrite', { durability: 'strict' });
        const records = tx.objectStore(RECORDS);
        let ok = true;
        tx.oncomplete = () => resolve(ok);
        tx.onabort = () => (ok ? reject(tx.error) : resolve(false));
        tx.onerror = () => undefined;
        let pending = checks.length;
        const apply = () => {
          for (const w of writes) {
            if (w.value === null) records.delete(w.id);
            else records.put(w.value, w.id);
          }
          if (meta) tx.objectStore(META).put(meta, META_KEY);
        };
        if (pending === 0) return apply();
        for (const c of checks) {
          const r = records.get(c.id);
          r.onsuccess = () => {
            if (!ok) return;
            if (!same(r.result as Uint8Array | undefined, c.expected)) {
              ok = false;
              tx.abort();
              return;
            }
            if (--pending === 0) apply();
          };
        }
      });
    },
    async getMeta() {
      return (await req(db.transaction(META).objectStore(META).get(META_KEY))) as SealMeta | undefined;
    },
  };
}

/** The engine's browser Store: sealed records in IndexedDB `name`. */
export async function openIdbStore(
  name: string,
  opts: { passphrase?: string; onProgress?: OnProgress; factory?: IDBFactory } = {},
): Promise<SealedStore> {
  const db = await openIdb(name, opts.factory);
  try {
    return await openSealedStore(idbRawKv(db), {
      ...(opts.passphrase === undefined ? {} : { passphrase: opts.passphrase }),
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    });
  } catch (e) {
    db.close(); // locked or a wrong passphrase: do not keep a connection that blocks a later erase
    throw e;
  }
}
