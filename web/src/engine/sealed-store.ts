/**
 * A `Store` whose every record is sealed before it reaches the backing key-value store (IndexedDB in the
 * browser, `memoryRawKv` in tests):
 *
 *   raw id    = B64U(HMAC(idKey, "d:" ‖ dir)[0..16]) "." B64U(HMAC(idKey, "k:" ‖ key)[0..16])
 *   raw value = 0x01 ‖ iv[12] ‖ AES-256-GCM(dataKey, iv, u32(len key) ‖ key ‖ value, aad = raw id)
 *
 * so neither names (user, device and conversation ids) nor contents leak, a record cannot be moved to
 * another slot (the id is the AAD), and a directory can still be listed (one raw range per directory).
 * `dataKey` and `idKey` are WebCrypto keys that are NOT extractable. Without a passphrase they are kept
 * as CryptoKey objects in the backend's meta record (IndexedDB stores CryptoKeys without exposing their
 * bytes). With a passphrase the meta record holds only the 64 key bytes wrapped (AES-256-GCM) under a key
 * derived with argon2id from the passphrase (`passwordPrehash` with a random per-store salt label); the
 * store is unusable until `openSealedStore` is given the passphrase.
 *
 * Transactions are optimistic: reads remember the raw bytes they saw, and the commit is one atomic backend
 * write that first checks those bytes are unchanged (another tab did not write them) — else the
 * transaction function runs again. Within one process a mutex keeps transactions serial.
 *
 * Caches (in memory, per key set; dropped by `lock`, a re-key and a stale epoch): the raw id of each key name
 * (two HMACs, a pure function of the name and `idKey`), and the opened record of each raw id together with
 * the exact sealed bytes it came from. A read still reads the backend every time; it skips AES-GCM only
 * when the backend returned the very bytes that were opened (or sealed by this instance) before — the IV
 * is random per write, so equal sealed bytes are the same record. What a read returns is therefore
 * exactly what it returned without the caches, another tab's writes included.
 *
 * Re-keying (`setPassphrase`) changes every raw id, so a second instance (another tab) still holding the
 * old keys would read nothing and write records nobody can open — e.g. an older ratchet state. Every
 * commit therefore also checks the `!epoch` record (random bytes, rewritten by each re-key): an instance
 * whose keys are stale fails its next write with StoreLockedError('stale') and forgets its keys.
 *
 * Does NOT: hide record sizes, the number of records per directory, or access patterns; protect against
 * code running in the page (it can use the keys, as the app does).
 * @module
 */
import { passwordPrehash, toB64u, toHex } from './_protocol.js';
import { fromUtf8, utf8 } from './codec.js';
import {
  assertDir,
  dirOf,
  mutex,
  type Store,
  type StoreEntry,
  type StoreReader,
  type StoreTx,
  TxOverlay,
} from './storage.js';

/** The backend: opaque ids → opaque bytes, one meta value, and an atomic checked commit. */
export interface RawKv {
  get(id: string): Promise<Uint8Array | undefined>;
  /** Several records at once (one backend read: IndexedDB answers them in one transaction). */
  getMany(ids: readonly string[]): Promise<(Uint8Array | undefined)[]>;
  /** Every record whose id starts with `prefix`. */
  range(prefix: string): Promise<{ id: string; value: Uint8Array }[]>;
  /** Atomically: if every check holds (undefined = absent), apply writes (null = delete) and meta. */
  commit(
    checks: readonly { id: string; expected: Uint8Array | undefined }[],
    writes: readonly { id: string; value: Uint8Array | null }[],
    meta?: SealMeta,
  ): Promise<boolean>;
  getMeta(): Promise<SealMeta | undefined>;
}

export type SealMeta =
  | { readonly mode: 'device'; readonly dataKey: CryptoKey; readonly idKey: CryptoKey }
  | { readonly mode: 'passphrase'; readonly salt: string; readonly iv: Uint8Array; readonly wrapped: Uint8Array };

export class StoreLockedError extends Error {
  override readonly name = 'StoreLockedError';
  /** locked: needs the passphrase; bad_passphrase: it was wrong; stale: re-keyed by another instance. */
  constructor(readonly code: 'locked' | 'bad_passphrase' | 'stale') {
    super(code);
  }
}

interface Keys {
  readonly dataKey: CryptoKey;
  readonly idKey: CryptoKey;
}

/** Most raw ids, and opened records, kept in memory per key set (least recently used dropped first). */
export const SEALED_ID_CACHE_MAX = 8192;
export const SEALED_RECORD_CACHE_MAX = 1024;
/** Most transactions committed together in one backend write (group commit, see `transaction`). */
export const SEALED_GROUP_COMMIT_MAX = 64;
/** Records larger than this are never kept opened in memory. */
export const SEALED_RECORD_CACHE_VALUE_MAX = 64 * 1024;

/** The caches that belong to one key set (see the module header). */
interface Cache {
  readonly ids: Map<string, string>;
  readonly records: Map<string, { readonly sealed: Uint8Array; readonly key: string; readonly value: Uint8Array }>;
  /** The reader of reads outside a transaction (its batches span callers). */
  outside?: StoreReader;
}

/** Map get that marks the entry most recently used. */
function lruGet<K, V>(m: Map<K, V>, k: K): V | undefined {
  const v = m.get(k);
  if (v !== undefined) {
    m.delete(k);
    m.set(k, v);
  }
  return v;
}

function lruSet<K, V>(m: Map<K, V>, k: K, v: V, max: number): void {
  m.delete(k);
  m.set(k, v);
  while (m.size > max) m.delete(m.keys().next().value as K);
}

const subtle = () => globalThis.crypto.subtle;
const random = (n: number) => globalThis.crypto.getRandomValues(new Uint8Array(n));
const buf = (b: Uint8Array) => b as Uint8Array<ArrayBuffer>;

async function importKeys(raw: Uint8Array): Promise<Keys> {
  const dataKey = await subtle().importKey('raw', buf(raw.slice(0, 32)), 'AES-GCM', false, ['encrypt', 'decrypt']);
  const idKey = await subtle().importKey('raw', buf(raw.slice(32, 64)), { name: 'HMAC', hash: 'SHA-256' }, false, [
    'sign',
  ]);
  raw.fill(0);
  return { dataKey, idKey };
}

/** argon2id progress, 0..1 (deriving the key from a passphrase takes a noticeable moment). */
export type OnProgress = (fraction: number) => void;

/** The raw id of the epoch record (outside every directory: sealed ids are base64url). */
export const EPOCH_ID = '!epoch';

async function passphraseKey(passphrase: string, salt: string, onProgress?: OnProgress): Promise<CryptoKey> {
  const k = await passwordPrehash(passphrase, `e2e-chat local store ${salt}`, onProgress);
  return subtle().importKey('raw', buf(k), 'AES-GCM', false, ['encrypt', 'decrypt']);
}

async function passphraseMeta(passphrase: string, raw: Uint8Array, onProgress?: OnProgress): Promise<SealMeta> {
  const salt = toHex(random(16));
  const iv = random(12);
  const wrapKey = await passphraseKey(passphrase, salt, onProgress);
  const wrapped = new Uint8Array(await subtle().encrypt({ name: 'AES-GCM', iv: buf(iv) }, wrapKey, buf(raw)));
  return { mode: 'passphrase', salt, iv, wrapped };
}

async function unlock(meta: SealMeta, passphrase: string | undefined, onProgress?: OnProgress): Promise<Keys> {
  if (meta.mode === 'device') return { dataKey: meta.dataKey, idKey: meta.idKey };
  if (passphrase === undefined) throw new StoreLockedError('locked');
  const wrapKey = await passphraseKey(passphrase, meta.salt, onProgress);
  try {
    const raw = new Uint8Array(
      await subtle().decrypt({ name: 'AES-GCM', iv: buf(meta.iv) }, wrapKey, buf(meta.wrapped)),
    );
    return await importKeys(raw);
  } catch {
    throw new StoreLockedError('bad_passphrase');
  }
}

export interface SealedStore extends Store {
  /** Re-seals every record under fresh keys, wrapped by `passphrase` (or device-bound if null). */
  setPassphrase(passphrase: string | null, opts?: { onProgress?: OnProgress }): Promise<void>;
  /** Whether the keys are wrapped by a passphrase (as of this instance's last open or re-key). */
  hasPassphrase(): boolean;
  /** Throws StoreLockedError('bad_passphrase') unless `passphrase` unwraps the stored keys. */
  checkPassphrase(passphrase: string, opts?: { onProgress?: OnProgress }): Promise<void>;
  /** Forgets the keys: every later call fails until the store is opened again. */
  lock(): void;
}

/** Opens (creating keys on first use) a sealed store over `raw`. Throws StoreLockedError if locked. */
export async function openSealedStore(
  raw: RawKv,
  opts: { passphrase?: string; onProgress?: OnProgress } = {},
): Promise<SealedStore> {
  let meta = await raw.getMeta();
  if (!meta) {
    const dataKey = await subtle().generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
    const idKey = (await subtle().generateKey({ name: 'HMAC', hash: 'SHA-256', length: 256 }, false, [
      'sign',
    ])) as CryptoKey;
    meta = { mode: 'device', dataKey, idKey };
    if (opts.passphrase !== undefined) meta = await passphraseMeta(opts.passphrase, random(64), opts.onProgress);
    if (!(await raw.commit([], [], meta))) throw new Error('sealed store: could not initialise');
  }
  let keys: Keys | null = await unlock(meta, opts.passphrase, opts.onProgress);
  let mode = meta.mode;
  // The epoch this instance's keys belong to (undefined: never re-keyed).
  let epoch = await raw.get(EPOCH_ID);
  const sameBytes = (a: Uint8Array | undefined, b: Uint8Array | undefined) =>
    a === b || (!!a && !!b && a.length === b.length && a.every((x, i) => x === b[i]));
  /** After a failed commit: if another instance re-keyed the store, our keys are worthless. */
  const checkEpoch = async () => {
    if (sameBytes(await raw.get(EPOCH_ID), epoch)) return;
    forget(keys);
    keys = null;
    throw new StoreLockedError('stale');
  };
  const exclusive = mutex();
  // One cache per key set: a read that started under old keys fills only the old (dropped) cache.
  const caches = new WeakMap<Keys, Cache>();
  const cacheOf = (k: Keys): Cache => {
    let c = caches.get(k);
    if (!c) {
      c = { ids: new Map(), records: new Map() };
      caches.set(k, c);
    }
    return c;
  };
  const forget = (k: Keys | null) => {
    if (!k) return;
    const c = caches.get(k);
    c?.ids.clear();
    c?.records.clear();
  };
  const need = () =>
    keys ??
    (() => {
      throw new StoreLockedError('locked');
    })();

  const mac = async (k: Keys, s: string) => {
    const ids = cacheOf(k).ids;
    const hit = lruGet(ids, s);
    if (hit !== undefined) return hit;
    const id = toB64u(new Uint8Array(await subtle().sign('HMAC', k.idKey, buf(utf8(s)))).slice(0, 16));
    lruSet(ids, s, id, SEALED_ID_CACHE_MAX);
    return id;
  };
  const dirId = (k: Keys, dir: string) => mac(k, `d:${dir}`).then((d) => `${d}.`);
  const rawId = async (k: Keys, key: string) => `${await dirId(k, dirOf(key))}${await mac(k, `k:${key}`)}`;

  const seal = async (k: Keys, id: string, key: string, value: Uint8Array): Promise<Uint8Array> => {
    const kb = utf8(key);
    const pt = new Uint8Array(4 + kb.length + value.length);
    new DataView(pt.buffer).setUint32(0, kb.length);
    pt.set(kb, 4);
    pt.set(value, 4 + kb.length);
    const iv = random(12);
    const ct = new Uint8Array(
      await subtle().encrypt({ name: 'AES-GCM', iv: buf(iv), additionalData: buf(utf8(id)) }, k.dataKey, buf(pt)),
    );
    const out = new Uint8Array(1 + 12 + ct.length);
    out[0] = 1;
    out.set(iv, 1);
    out.set(ct, 13);
    return out;
  };
  /** Remembers what `sealed` (stored under `id`) opens to. */
  const remember = (k: Keys, id: string, sealed: Uint8Array, key: string, value: Uint8Array) => {
    const records = cacheOf(k).records;
    if (value.length > SEALED_RECORD_CACHE_VALUE_MAX) records.delete(id);
    else lruSet(records, id, { sealed: sealed.slice(), key, value: value.slice() }, SEALED_RECORD_CACHE_MAX);
  };
  const unseal = async (k: Keys, id: string, sealed: Uint8Array): Promise<StoreEntry> => {
    const hit = lruGet(cacheOf(k).records, id);
    if (hit && sameBytes(hit.sealed, sealed)) return { key: hit.key, value: hit.value.slice() };
    const e = await unsealRaw(k, id, sealed);
    remember(k, id, sealed, e.key, e.value);
    return e;
  };
  const unsealRaw = async (k: Keys, id: string, sealed: Uint8Array): Promise<StoreEntry> => {
    if (sealed[0] !== 1) throw new Error('sealed store: unknown record version');
    const pt = new Uint8Array(
      await subtle().decrypt(
        { name: 'AES-GCM', iv: buf(sealed.slice(1, 13)), additionalData: buf(utf8(id)) },
        k.dataKey,
        buf(sealed.slice(13)),
      ),
    );
    const len = new DataView(pt.buffer).getUint32(0);
    return { key: fromUtf8(pt.slice(4, 4 + len)), value: pt.slice(4 + len) };
  };

  /**
   * Reads records for one transaction (`seen` remembers what it saw) or outside any. The gets asked for in
   * one turn of the event loop (e.g. a batch's `Promise.all` of lookups) reach the backend together, as one
   * `getMany` (one IndexedDB transaction instead of one each); each answer is what a lone get would return.
   */
  const reader = (k: Keys, seen: Map<string, Uint8Array | undefined> | null): StoreReader => {
    type Read = { key: string; resolve: (v: Uint8Array | undefined) => void; reject: (e: unknown) => void };
    let queued: Read[] | null = null;
    const flush = async (batch: Read[]) => {
      let ids: string[];
      let values: (Uint8Array | undefined)[];
      try {
        ids = await Promise.all(batch.map((b) => rawId(k, b.key)));
        values = await raw.getMany(ids);
      } catch (e) {
        for (const b of batch) b.reject(e);
        return;
      }
      batch.forEach((b, i) => {
        const id = ids[i]!;
        const v = values[i];
        seen?.set(id, v);
        if (v === undefined) b.resolve(undefined);
        else unseal(k, id, v).then((e) => b.resolve(e.value), b.reject);
      });
    };
    return {
      get: (key) =>
        new Promise<Uint8Array | undefined>((resolve, reject) => {
          if (!queued) {
            const batch: Read[] = [];
            queued = batch;
            queueMicrotask(() => {
              queued = null;
              void flush(batch);
            });
          }
          (queued as Read[]).push({ key, resolve, reject });
        }),
      async list(dir) {
        assertDir(dir);
        const rows = await raw.range(await dirId(k, dir));
        const out: StoreEntry[] = [];
        for (const r of rows) {
          seen?.set(r.id, r.value);
          out.push(await unseal(k, r.id, r.value));
        }
        return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      },
    };
  };

  /**
   * A read outside a transaction: if a re-key replaced the keys while it ran (its ids were computed with
   * the old ones, so it may have found nothing), it runs again with the new keys.
   */
  const outside = async <T>(read: (k: Keys) => Promise<T>): Promise<T> => {
    for (;;) {
      const k = need();
      const result = await read(k);
      if (keys === k) return result;
    }
  };

  /**
   * Group commit: the transactions that are waiting when the store becomes free run one after another,
   * each over the writes of the ones before it (its own overlay on a shared one), and commit in ONE backend
   * write — the same outcome as committing them one by one in that order, with one IndexedDB transaction.
   * A function that throws has its writes dropped (the others are unaffected); on a conflict every function of
   * the group runs again, throwers included; every caller's promise — resolved or rejected — settles only
   * after the commit, so no answer rests on another member's writes that never committed.
   */
  interface Pending {
    readonly fn: (tx: StoreTx) => Promise<unknown>;
    readonly resolve: (v: unknown) => void;
    readonly reject: (e: unknown) => void;
  }
  const waiting: Pending[] = [];
  const runGroup = async () => {
    const group = waiting.splice(0, SEALED_GROUP_COMMIT_MAX);
    try {
      for (let attempt = 0; attempt < 10; attempt++) {
        const k = need();
        const seen = new Map<string, Uint8Array | undefined>();
        const shared = new TxOverlay(reader(k, seen));
        // Every outcome waits for the commit: one that threw may have read an earlier member's writes, and a
        // conflict re-runs the whole group (throwers included), as the serial order would have.
        const outcomes: { p: Pending; ok: boolean; value: unknown }[] = [];
        for (const p of group) {
          const own = new TxOverlay(shared);
          try {
            const value = await p.fn(own);
            for (const [key, v] of own.writes) {
              if (v === null) shared.delete(key);
              else shared.put(key, v);
            }
            outcomes.push({ p, ok: true, value });
          } catch (e) {
            outcomes.push({ p, ok: false, value: e });
          }
        }
        const settle = () => {
          for (const o of outcomes) (o.ok ? o.p.resolve : o.p.reject)(o.value);
        };
        if (!outcomes.some((o) => o.ok)) return settle(); // nothing to commit, nothing read from the others
        // Ids and seals of every write at once (WebCrypto works off the thread; one await, not two per record).
        const entries = [...shared.writes];
        const writes = await Promise.all(
          entries.map(async ([key, v]) => {
            const id = await rawId(k, key);
            return { id, value: v === null ? null : await seal(k, id, key, v) };
          }),
        );
        const opened = new Map<string, { key: string; value: Uint8Array }>();
        entries.forEach(([key, v], i) => {
          if (v !== null) opened.set(writes[i]!.id, { key, value: v });
        });
        const checks = [...seen].map(([id, expected]) => ({ id, expected }));
        checks.push({ id: EPOCH_ID, expected: epoch });
        if (await raw.commit(checks, writes)) {
          for (const w of writes) {
            const o = opened.get(w.id);
            if (w.value !== null && o) remember(k, w.id, w.value, o.key, o.value);
          }
          return settle();
        }
        await checkEpoch();
      }
      throw new Error('sealed store: too many conflicting transactions');
    } catch (e) {
      for (const p of group) p.reject(e);
    }
  };
  const transaction = <T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      waiting.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      // One turn of the mutex per call; a turn that finds its transaction already taken by a group is a no-op.
      void exclusive(runGroup);
    });

  const outsideReader = (k: Keys) => {
    const c = cacheOf(k);
    c.outside ??= reader(k, null);
    return c.outside;
  };

  return {
    get: (key) => outside((k) => outsideReader(k).get(key)),
    list: (dir) => outside((k) => outsideReader(k).list(dir)),
    put: (key, value) => transaction(async (tx) => tx.put(key, value)),
    delete: (key) => transaction(async (tx) => tx.delete(key)),
    transaction,
    lock() {
      forget(keys);
      keys = null;
    },
    hasPassphrase: () => mode === 'passphrase',
    async checkPassphrase(passphrase, o = {}) {
      need();
      const m = await raw.getMeta();
      if (m?.mode !== 'passphrase') throw new StoreLockedError('bad_passphrase');
      await unlock(m, passphrase, o.onProgress);
    },
    setPassphrase: (passphrase, o = {}) =>
      exclusive(async () => {
        const old = need();
        await checkEpoch(); // a stale instance cannot even read the records it would re-seal
        const material = random(64);
        const nextMeta = passphrase === null ? null : await passphraseMeta(passphrase, material.slice(), o.onProgress);
        const next = await importKeys(material);
        const all = (await raw.range('')).filter((r) => r.id !== EPOCH_ID);
        const writes: { id: string; value: Uint8Array | null }[] = [];
        for (const r of all) {
          const e = await unsealRaw(old, r.id, r.value);
          const id = await rawId(next, e.key);
          writes.push({ id: r.id, value: null }, { id, value: await seal(next, id, e.key, e.value) });
        }
        // Deletions of old ids first, then the new records (ids never collide: different HMAC keys).
        const ordered = [...writes.filter((w) => w.value === null), ...writes.filter((w) => w.value !== null)];
        const nextEpoch = random(16);
        ordered.push({ id: EPOCH_ID, value: nextEpoch });
        const checks = [...all.map((r) => ({ id: r.id, expected: r.value })), { id: EPOCH_ID, expected: epoch }];
        const m: SealMeta = nextMeta ?? { mode: 'device', ...next };
        if (!(await raw.commit(checks, ordered, m))) {
          await checkEpoch();
          throw new Error('sealed store: concurrent write during re-key');
        }
        forget(old);
        keys = next;
        epoch = nextEpoch;
        mode = m.mode;
      }),
  };
}

/** In-memory RawKv (tests, and a model of what IndexedDB holds). */
export function memoryRawKv(): RawKv & { dump(): { id: string; value: Uint8Array }[]; meta(): SealMeta | undefined } {
  const data = new Map<string, Uint8Array>();
  let meta: SealMeta | undefined;
  const same = (a: Uint8Array | undefined, b: Uint8Array | undefined) =>
    a === b || (!!a && !!b && a.length === b.length && a.every((x, i) => x === b[i]));
  return {
    get: async (id) => data.get(id)?.slice(),
    getMany: async (ids) => ids.map((id) => data.get(id)?.slice()),
    range: async (prefix) =>
      [...data].filter(([id]) => id.startsWith(prefix)).map(([id, value]) => ({ id, value: value.slice() })),
    async commit(checks, writes, m) {
      if (!checks.every((c) => same(data.get(c.id), c.expected))) return false;
      for (const w of writes) {
        if (w.value === null) data.delete(w.id);
        else data.set(w.id, w.value.slice());
      }
      if (m) meta = m;
      return true;
    },
    getMeta: async () => meta,
    dump: () => [...data].map(([id, value]) => ({ id, value: value.slice() })),
    meta: () => meta,
  };
}
