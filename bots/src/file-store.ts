/**
 * A sealed, crash-safe engine `Store` in a directory (Node): the bot's keys, sessions, contacts, outbox and
 * message history — everything the engine persists — encrypted at rest with a 32-byte key the bot gets from
 * its environment, and written so that a crash at any moment loses nothing a transaction acknowledged.
 *
 * Layout of `dir`:
 *   LOCK              the owning process id (exclusive create): one process per state directory
 *   KEYCHECK          a sealed constant: a wrong key is refused at open instead of reading as a torn write
 *   state.<g>.snap    generation g's snapshot: every record, sealed as one blob (absent for generation 0)
 *   state.<g>.log     generation g's log: one sealed frame per committed transaction, appended in order
 *
 * Commit (`transaction`): the writes are encoded, sealed and appended as ONE frame
 * (`u32be length ‖ nonce[12] ‖ AES-256-GCM(key, nonce, writes, AD)`), the log is `fsync`ed, and only then
 * are the writes applied in memory and the call resolved — so a resolved transaction is on disk, and an
 * interrupted append leaves a torn last frame that the next open cuts off (the transaction was never
 * acknowledged). Transactions are serial (one mutex), hence serializable, as the engine's Store contract
 * requires.
 *
 * Compaction (when the log passes `compactBytes`): the whole state is sealed into `state.<g+1>.snap.tmp`,
 * fsynced, renamed to `state.<g+1>.snap` (atomic), the directory fsynced, an empty `state.<g+1>.log`
 * created, and generation g deleted. Open picks the newest complete snapshot and replays only its own log,
 * so a crash anywhere in between leaves one consistent generation.
 *
 * Sealing: AD = "e2e-chat bot state v1" ‖ kind ‖ generation ‖ frame index, so frames cannot be reordered,
 * replayed into another generation or swapped with a snapshot. A wrong key (KEYCHECK), a snapshot or a frame
 * before the last that does not open fail with `StateError`; only the LAST frame may be torn or unreadable
 * (an unfinished append) and is cut off — which someone able to write the file could also do by truncating.
 *
 * Does NOT: protect a running process's memory, hide the number and size of transactions, or let two
 * processes share a directory (the second gets `state_locked`).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { assertDir, inDir, mutex, type Store, type StoreEntry, type StoreReader, TxOverlay } from './engine.js';

export type StateErrorCode =
  | 'state_key_missing'
  | 'state_key_invalid'
  | 'state_corrupt'
  | 'state_locked'
  /** A commit failed (disk full, I/O error) and could not be undone in the file: reopen the store. */
  | 'state_write_failed';

export class StateError extends Error {
  override readonly name = 'StateError';
  constructor(
    readonly code: StateErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** The environment variable a bot reads its state key from (32 bytes, base64url): `e2e-bot keygen` makes one. */
export const STATE_KEY_ENV = 'E2E_BOT_STATE_KEY';

/** A fresh state key, base64url (what `e2e-bot keygen` prints). */
export function newStateKey(): string {
  return randomBytes(32).toString('base64url');
}

/** The 32-byte key from a base64url string (or the environment variable when none is given). */
export function stateKeyFrom(value: string | Uint8Array | undefined = process.env[STATE_KEY_ENV]): Uint8Array {
  if (value instanceof Uint8Array) {
    if (value.length !== 32) throw new StateError('state_key_invalid', 'the state key must be 32 bytes');
    return value;
  }
  if (!value) {
    throw new StateError(
      'state_key_missing',
      `no state key: set ${STATE_KEY_ENV} to 32 random bytes in base64url (\`npm run bot -- keygen\` prints one)`,
    );
  }
  const b = Buffer.from(value, 'base64url');
  if (b.length !== 32 || b.toString('base64url') !== value.replace(/=+$/, '')) {
    throw new StateError('state_key_invalid', `${STATE_KEY_ENV} must be 32 bytes in base64url`);
  }
  return new Uint8Array(b);
}

export interface FileStoreOptions {
  /** Compact once the log is larger than this (default 4 MiB). */
  readonly compactBytes?: number;
  /** Skip fsync (tests of logic only; never for a real bot). Default false. */
  readonly unsafeNoSync?: boolean;
}

export interface FileStore extends Store {
  readonly dir: string;
  /** Releases the lock file. Further use throws. */
  close(): Promise<void>;
  /** Current generation and log size (tests, diagnostics). */
  stats(): { generation: number; logBytes: number; records: number };
}

const AD_PREFIX = 'e2e-chat bot state v1';
const NONCE = 12;
const TAG = 16;

function ad(kind: 'log' | 'snap' | 'kchk', generation: number, index: number): Buffer {
  const b = Buffer.alloc(AD_PREFIX.length + 1 + 5 + 4 + 4);
  let o = b.write(AD_PREFIX, 0, 'utf8');
  o = b.writeUInt8(0, o);
  o += b.write(kind.padEnd(5, ' '), o, 'utf8');
  o = b.writeUInt32BE(generation, o);
  b.writeUInt32BE(index, o);
  return b;
}

function seal(key: Uint8Array, aad: Buffer, plain: Buffer): Buffer {
  const nonce = randomBytes(NONCE);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad);
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([nonce, body, c.getAuthTag()]);
}

function open(key: Uint8Array, aad: Buffer, sealed: Buffer): Buffer | null {
  if (sealed.length < NONCE + TAG) return null;
  try {
    const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, NONCE));
    d.setAAD(aad);
    d.setAuthTag(sealed.subarray(sealed.length - TAG));
    return Buffer.concat([d.update(sealed.subarray(NONCE, sealed.length - TAG)), d.final()]);
  } catch {
    return null;
  }
}

/** Writes: u32 count, then per write u8 op (1 put / 0 delete), u32 key length, key, [u32 value length, value]. */
function encodeWrites(writes: Iterable<[string, Uint8Array | null]>): Buffer {
  const parts: Buffer[] = [];
  let n = 0;
  for (const [k, v] of writes) {
    const kb = Buffer.from(k, 'utf8');
    const head = Buffer.alloc(1 + 4);
    head.writeUInt8(v === null ? 0 : 1, 0);
    head.writeUInt32BE(kb.length, 1);
    parts.push(head, kb);
    if (v !== null) {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(v.length, 0);
      parts.push(len, Buffer.from(v.buffer, v.byteOffset, v.byteLength));
    }
    n++;
  }
  const count = Buffer.alloc(4);
  count.writeUInt32BE(n, 0);
  return Buffer.concat([count, ...parts]);
}

function decodeWrites(b: Buffer): [string, Uint8Array | null][] {
  const out: [string, Uint8Array | null][] = [];
  let o = 0;
  const n = b.readUInt32BE(o);
  o += 4;
  for (let i = 0; i < n; i++) {
    const op = b.readUInt8(o);
    const kl = b.readUInt32BE(o + 1);
    o += 5;
    const k = b.toString('utf8', o, o + kl);
    o += kl;
    if (op === 1) {
      const vl = b.readUInt32BE(o);
      o += 4;
      out.push([k, new Uint8Array(b.subarray(o, o + vl))]);
      o += vl;
    } else out.push([k, null]);
  }
  if (o !== b.length) throw new Error('trailing bytes');
  return out;
}

const snapName = (g: number) => `state.${g}.snap`;
const logName = (g: number) => `state.${g}.log`;

async function fsyncDir(dir: string, sync: boolean): Promise<void> {
  if (!sync) return;
  const h = await fs.open(dir, constants.O_RDONLY);
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Directories this process has open (the LOCK file holds our own pid for all of them). */
const openHere = new Set<string>();

async function takeLock(dir: string): Promise<void> {
  if (openHere.has(dir)) throw new StateError('state_locked', 'the state directory is already open in this process');
  const lock = join(dir, 'LOCK');
  for (let i = 0; i < 2; i++) {
    try {
      const h = await fs.open(lock, 'wx', 0o600);
      await h.writeFile(String(process.pid));
      await h.close();
      openHere.add(dir);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number((await fs.readFile(lock, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) {
        throw new StateError('state_locked', `the state directory is in use by process ${pid}`);
      }
      // A stale lock (its process is gone): take it over.
      await fs.rm(lock, { force: true });
    }
  }
  throw new StateError('state_locked', 'could not take the state directory lock');
}

/** Opens (creating if needed) the sealed store in `dir` with `key` (32 bytes). */
export async function openFileStore(dir: string, key: Uint8Array, opts: FileStoreOptions = {}): Promise<FileStore> {
  if (key.length !== 32) throw new StateError('state_key_invalid', 'the state key must be 32 bytes');
  const sync = !opts.unsafeNoSync;
  const compactBytes = opts.compactBytes ?? 4 * 1024 * 1024;
  dir = resolve(dir);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await takeLock(dir);
  const release = async () => {
    openHere.delete(dir);
    await fs.rm(join(dir, 'LOCK'), { force: true });
  };
  const refuse = async (code: StateErrorCode, message: string): Promise<never> => {
    await release();
    throw new StateError(code, message);
  };
  const check = join(dir, 'KEYCHECK');
  const expected = Buffer.from('e2e-chat bot state key check');
  const sealedCheck = await fs.readFile(check).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw e;
  });
  if (sealedCheck === null) {
    const h = await fs.open(check, 'w', 0o600);
    await h.writeFile(seal(key, ad('kchk', 0, 0), expected));
    if (sync) await h.sync();
    await h.close();
    await fsyncDir(dir, sync);
  } else if (!open(key, ad('kchk', 0, 0), sealedCheck)?.equals(expected)) {
    await refuse('state_key_invalid', 'this state directory was sealed with another key');
  }

  const data = new Map<string, Uint8Array>();
  // The newest complete snapshot wins; generation 0 has none.
  const names = await fs.readdir(dir);
  const gens = names
    .map((n) => /^state\.(\d+)\.snap$/.exec(n)?.[1])
    .filter((g): g is string => g !== undefined)
    .map(Number)
    .sort((a, b) => b - a);
  let generation = gens[0] ?? 0;
  if (gens.length > 0) {
    const plain = open(key, ad('snap', generation, 0), await fs.readFile(join(dir, snapName(generation))));
    if (!plain) await refuse('state_corrupt', 'the state snapshot does not open (changed or damaged)');
    for (const [k, v] of decodeWrites(plain!)) if (v) data.set(k, v);
  }
  // Replay this generation's log; a torn last frame is cut off (it was never acknowledged).
  const logPath = join(dir, logName(generation));
  let log: Buffer;
  try {
    log = await fs.readFile(logPath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    log = Buffer.alloc(0);
  }
  let offset = 0;
  let index = 0;
  while (offset < log.length) {
    const complete = offset + 4 <= log.length && offset + 4 + log.readUInt32BE(offset) <= log.length;
    const len = complete ? log.readUInt32BE(offset) : 0;
    const plain = complete ? open(key, ad('log', generation, index), log.subarray(offset + 4, offset + 4 + len)) : null;
    if (!plain) {
      // Torn: incomplete, the last frame, or nothing but zeros from here on (the file grew before data landed).
      const zerosOnly = log.subarray(offset).every((b) => b === 0);
      if (complete && offset + 4 + len < log.length && !zerosOnly) {
        await refuse('state_corrupt', 'a state log frame before the last does not open (changed or damaged)');
      }
      break; // the last frame: an unfinished append, never acknowledged
    }
    for (const [k, v] of decodeWrites(plain)) {
      if (v) data.set(k, v);
      else data.delete(k);
    }
    offset += 4 + len;
    index++;
  }
  if (offset < log.length) await fs.truncate(logPath, offset);
  let handle = await fs.open(logPath, 'a', 0o600);
  if (offset === 0 && log.length === 0) await fsyncDir(dir, sync);
  let logBytes = offset;
  let closed = false;
  /** Set when a failed append could not be cut off again: the store takes no more commits. */
  let broken: StateError | null = null;

  const exclusive = mutex();
  const base: StoreReader = {
    async get(k) {
      const v = data.get(k);
      return v ? v.slice() : undefined;
    },
    async list(d) {
      assertDir(d);
      return [...data]
        .filter(([k]) => inDir(k, d))
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, value]): StoreEntry => ({ key: k, value: value.slice() }));
    },
  };

  /**
   * Compaction, after a commit is durable (so it never fails that commit: a failed one is tried again after the
   * next). Until the new generation is switched to, a failure removes its snapshot again: left behind, it would
   * win at the next open and hide every commit appended to the old log in the meantime.
   */
  const compact = async () => {
    const next = generation + 1;
    const snapPath = join(dir, snapName(next));
    const tmp = `${snapPath}.tmp`;
    let newLog: Awaited<ReturnType<typeof fs.open>> | null = null;
    try {
      const snap = seal(key, ad('snap', next, 0), encodeWrites(data));
      const h = await fs.open(tmp, 'w', 0o600);
      try {
        await h.writeFile(snap);
        if (sync) await h.sync();
      } finally {
        await h.close();
      }
      await fs.rename(tmp, snapPath);
      await fsyncDir(dir, sync);
      newLog = await fs.open(join(dir, logName(next)), 'a', 0o600);
      await fsyncDir(dir, sync);
    } catch {
      await newLog?.close().catch(() => undefined);
      try {
        await fs.rm(snapPath, { force: true });
        await fs.rm(tmp, { force: true });
        await fsyncDir(dir, sync);
      } catch {
        broken = new StateError('state_write_failed', 'a failed compaction could not be undone; reopen the store');
      }
      return;
    }
    const oldHandle = handle;
    const old = generation;
    handle = newLog;
    generation = next;
    logBytes = 0;
    index = 0;
    // The new generation is complete: what is left of the old one is only disk space.
    await oldHandle.close().catch(() => undefined);
    await fs.rm(join(dir, logName(old)), { force: true }).catch(() => undefined);
    await fs.rm(join(dir, snapName(old)), { force: true }).catch(() => undefined);
  };

  const transaction = <T>(fn: (tx: TxOverlay) => Promise<T>): Promise<T> =>
    exclusive(async () => {
      if (closed) throw new StateError('state_locked', 'the store is closed');
      const tx = new TxOverlay(base);
      const result = await fn(tx);
      if (tx.writes.size > 0) {
        if (broken) throw broken;
        const frame = seal(key, ad('log', generation, index), encodeWrites(tx.writes));
        const head = Buffer.alloc(4);
        head.writeUInt32BE(frame.length, 0);
        const bytes = Buffer.concat([head, frame]);
        try {
          // A short write (the disk filled up mid-frame) resolves without an error: it is a failure too.
          const { bytesWritten } = await handle.write(bytes);
          if (bytesWritten !== bytes.length)
            throw Object.assign(new Error('ENOSPC: short write of the state log'), { code: 'ENOSPC' });
          if (sync) await handle.datasync();
        } catch (e) {
          // Not acknowledged, so it must not come back at the next open — and the next frame (sealed with
          // this same index) must follow the last acknowledged one: cut what reached the file. If even that
          // fails, the log's end is unknown: refuse every later commit rather than append after garbage.
          try {
            await handle.truncate(logBytes);
            if (sync) await handle.datasync();
          } catch {
            broken = new StateError('state_write_failed', 'a failed state write could not be undone; reopen the store');
          }
          throw e;
        }
        index++;
        logBytes += 4 + frame.length;
        // Durable: now visible.
        for (const [k, v] of tx.writes) {
          if (v === null) data.delete(k);
          else data.set(k, v);
        }
        if (logBytes > compactBytes) await compact();
      }
      return result;
    });

  return {
    dir,
    get: base.get,
    list: base.list,
    put: (k, v) => transaction(async (tx) => tx.put(k, v)),
    delete: (k) => transaction(async (tx) => tx.delete(k)),
    transaction,
    stats: () => ({ generation, logBytes, records: data.size }),
    close: () =>
      exclusive(async () => {
        if (closed) return;
        closed = true;
        await handle.close();
        await release();
      }),
  };
}
