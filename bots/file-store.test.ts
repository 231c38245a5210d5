/**
 * The bot's sealed state store: durable and atomic transactions across reopen, a torn last frame cut off at
 * every byte offset, a real SIGKILL mid-stream (with compactions in between) losing nothing acknowledged,
 * refusal of a wrong key or a changed file, and one process per directory.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { newStateKey, openFileStore, StateError, stateKeyFrom } from './src/file-store.js';

const dirs: string[] = [];
async function freshDir(): Promise<string> {
  const d = await fs.mkdtemp(join(tmpdir(), 'bot-state-'));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  vi.restoreAllMocks();
  for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true });
});

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);
const key = () => stateKeyFrom(newStateKey());

async function snapshotOf(dir: string, k: Uint8Array): Promise<Record<string, string>> {
  const s = await openFileStore(dir, k);
  const out: Record<string, string> = {};
  for (const d of ['a/', 'b/', '']) {
    for (const e of await s.list(d === '' ? 'x/' : d)) out[e.key] = dec(e.value)!;
  }
  const last = await s.get('last');
  if (last) out.last = dec(last)!;
  await s.close();
  return out;
}

describe('sealed file store', () => {
  it('keeps every committed transaction across reopen; reads list directories; nothing is stored in clear', async () => {
    const dir = await freshDir();
    const k = key();
    const s = await openFileStore(dir, k);
    await s.put('a/1', enc('one'));
    await s.transaction(async (tx) => {
      tx.put('a/2', enc('two'));
      tx.put('b/x', enc('secret plaintext marker'));
      tx.delete('a/1');
    });
    expect((await s.list('a/')).map((e) => e.key)).toEqual(['a/2']);
    await s.close();
    const again = await openFileStore(dir, k);
    expect(dec(await again.get('a/1'))).toBeUndefined();
    expect(dec(await again.get('a/2'))).toBe('two');
    expect(dec(await again.get('b/x'))).toBe('secret plaintext marker');
    await again.close();
    for (const f of await fs.readdir(dir)) {
      const bytes = await fs.readFile(join(dir, f));
      expect(bytes.includes(Buffer.from('secret plaintext marker')), f).toBe(false);
      expect(bytes.includes(Buffer.from('a/2')), f).toBe(false);
    }
  });

  it('a torn last frame (cut at every byte) loses only that unacknowledged transaction; writing goes on', async () => {
    const dir = await freshDir();
    const k = key();
    const s = await openFileStore(dir, k);
    for (let i = 1; i <= 3; i++) await s.put(`a/${i}`, enc(String(i)));
    const before = s.stats().logBytes;
    await s.put('a/4', enc('4'));
    const after = s.stats().logBytes;
    await s.close();
    const log = join(dir, 'state.0.log');
    const full = await fs.readFile(log);
    for (let cut = before; cut < after; cut++) {
      await fs.writeFile(log, full.subarray(0, cut));
      const r = await openFileStore(dir, k);
      expect(
        (await r.list('a/')).map((e) => dec(e.value)),
        `cut at ${cut}`,
      ).toEqual(['1', '2', '3']);
      await r.close();
      expect((await fs.stat(log)).size).toBe(before);
    }
    // Zeros where the last frame should be (a crash after the file grew but before the data landed).
    await fs.writeFile(log, Buffer.concat([full.subarray(0, before), Buffer.alloc(after - before)]));
    const z = await openFileStore(dir, k);
    expect((await z.list('a/')).length).toBe(3);
    await z.put('a/5', enc('5'));
    await z.close();
    const last = await openFileStore(dir, k);
    expect((await last.list('a/')).map((e) => dec(e.value))).toEqual(['1', '2', '3', '5']);
    await last.close();
  });

  it('a wrong key, a changed frame before the last, or a changed snapshot is refused, not skipped', async () => {
    const dir = await freshDir();
    const k = key();
    const s = await openFileStore(dir, k, { compactBytes: 600 });
    for (let i = 0; i < 6; i++) await s.put(`a/${i}`, new Uint8Array(100).fill(i));
    await s.put('a/x', enc('x'));
    await s.put('a/y', enc('y'));
    const { generation } = s.stats();
    await s.close();
    expect(generation).toBeGreaterThan(0);
    await expect(openFileStore(dir, key())).rejects.toMatchObject({ code: 'state_key_invalid' });
    const log = join(dir, `state.${generation}.log`);
    const good = await fs.readFile(log);
    const bad = Buffer.from(good);
    bad[10] = (bad[10] ?? 0) ^ 1;
    await fs.writeFile(log, bad);
    await expect(openFileStore(dir, k)).rejects.toMatchObject({ code: 'state_corrupt' });
    await fs.writeFile(log, good);
    const snap = join(dir, `state.${generation}.snap`);
    const snapBytes = await fs.readFile(snap);
    snapBytes[20] = (snapBytes[20] ?? 0) ^ 1;
    await fs.writeFile(snap, snapBytes);
    const err = await openFileStore(dir, k).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateError);
    expect((err as StateError).code).toBe('state_corrupt');
  });

  it('compaction: a crash after the new snapshot but before the old generation is deleted opens the new one', async () => {
    const dir = await freshDir();
    const k = key();
    const s = await openFileStore(dir, k, { compactBytes: 2_000 });
    for (let i = 0; i < 5; i++) await s.put(`a/${i}`, new Uint8Array(300).fill(i));
    const g = s.stats().generation;
    const oldFiles = new Map<string, Buffer>();
    for (const f of await fs.readdir(dir)) if (f.startsWith('state.')) oldFiles.set(f, await fs.readFile(join(dir, f)));
    for (let i = 5; i < 12; i++) await s.put(`a/${i}`, new Uint8Array(300).fill(i));
    expect(s.stats().generation).toBeGreaterThan(g);
    await s.delete('a/0');
    await s.close();
    // Put the old generation back (as if its deletion never happened) plus a half-written snapshot.
    for (const [f, b] of oldFiles) await fs.writeFile(join(dir, f), b);
    await fs.writeFile(join(dir, 'state.999.snap.tmp'), Buffer.from('half'));
    const r = await openFileStore(dir, k);
    expect((await r.list('a/')).map((e) => e.key)).toEqual(Array.from({ length: 11 }, (_, i) => `a/${i + 1}`).sort());
    await r.close();
  });

  it('compaction that fails after its snapshot is in place (no new log) fails no commit and hides none', async () => {
    const dir = await freshDir();
    const k = key();
    const s = await openFileStore(dir, k, { compactBytes: 2_000 });
    const realOpen = fs.open.bind(fs);
    const open = vi.spyOn(fs, 'open').mockImplementation(((path: string, ...rest: unknown[]) => {
      if (/state\.\d+\.log$/.test(String(path)))
        return Promise.reject(Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' }));
      return (realOpen as (...a: unknown[]) => Promise<unknown>)(path, ...rest);
    }) as typeof fs.open);
    // The log passes compactBytes several times over: every compaction fails at the new log.
    for (let i = 0; i < 12; i++) await s.put(`a/${i}`, new Uint8Array(300).fill(i));
    expect(s.stats().generation).toBe(0);
    open.mockRestore();
    await s.put('a/12', new Uint8Array(300)); // compacts now
    await s.put('a/13', new Uint8Array(3));
    await s.close();
    const r = await openFileStore(dir, k);
    expect((await r.list('a/')).map((e) => e.key)).toEqual(Array.from({ length: 14 }, (_, i) => `a/${i}`).sort());
    await r.close();
  });

  it('a commit whose append fails (disk full) is not applied, and later commits stay readable after a reopen', async () => {
    const dir = await freshDir();
    const k = key();
    const s = await openFileStore(dir, k, { unsafeNoSync: false });
    await s.put('a/before', enc('1'));
    // The FileHandle class is not exported: its prototype, from a handle of our own.
    const probe = await fs.open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { write: unknown; datasync: unknown };
    await probe.close();
    const full = () => Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    // 1: the frame reached the file but the sync failed; 2: half of the frame was written, then an error.
    const sync = vi.spyOn(proto as { datasync: () => Promise<void> }, 'datasync').mockRejectedValueOnce(full());
    await expect(s.put('a/synced-not', enc('x'))).rejects.toThrow(/ENOSPC/);
    sync.mockRestore();
    const origWrite = (proto as { write: (this: unknown, b: Buffer) => Promise<unknown> }).write;
    const write = vi
      .spyOn(proto as { write: (b: Buffer) => Promise<unknown> }, 'write')
      .mockImplementationOnce(async function (this: unknown, b: Buffer) {
        await origWrite.call(this, b.subarray(0, b.length >> 1));
        throw full();
      });
    await expect(s.put('a/half', enc('y'))).rejects.toThrow(/ENOSPC/);
    // 3: a short write that resolves (what write(2) does when the disk fills mid-buffer).
    write.mockImplementationOnce(async function (this: unknown, b: Buffer) {
      return origWrite.call(this, b.subarray(0, b.length >> 1));
    });
    await expect(s.put('a/short', enc('z'))).rejects.toThrow(/ENOSPC/);
    write.mockRestore();
    expect(await s.get('a/short')).toBeUndefined();
    expect(await s.get('a/synced-not')).toBeUndefined();
    expect(await s.get('a/half')).toBeUndefined();
    await s.put('a/after1', enc('2'));
    await s.put('a/after2', enc('3'));
    await s.close();
    const r = await openFileStore(dir, k);
    expect((await r.list('a/')).map((e) => e.key)).toEqual(['a/after1', 'a/after2', 'a/before']);
    await r.close();
  });

  it('one process per directory: a second open is refused while the first holds it, a stale lock is taken over', async () => {
    const dir = await freshDir();
    const k = key();
    const s = await openFileStore(dir, k);
    await expect(openFileStore(dir, k)).rejects.toMatchObject({ code: 'state_locked' });
    await s.close();
    await fs.writeFile(join(dir, 'LOCK'), '999999999'); // a process that is gone
    const t = await openFileStore(dir, k);
    await t.close();
  });

  it('SIGKILL at arbitrary moments (compactions included): every acknowledged transaction survives, each whole', async () => {
    const dir = await freshDir();
    const keyB64 = newStateKey();
    const k = stateKeyFrom(keyB64);
    let lastAcked = 0;
    for (let round = 0; round < 3; round++) {
      const child: ChildProcess = spawn(
        process.execPath,
        ['--import', 'tsx', join(import.meta.dirname, 'test/store-writer.ts'), dir, keyB64, '6000'],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const target = lastAcked + 20 + Math.floor(Math.random() * 40);
      await new Promise<void>((resolve, reject) => {
        let buf = '';
        child.stdout!.on('data', (d: Buffer) => {
          buf += d.toString();
          for (const m of buf.matchAll(/ack (\d+)\n/g)) lastAcked = Math.max(lastAcked, Number(m[1]));
          buf = buf.slice(buf.lastIndexOf('\n') + 1);
          if (lastAcked >= target) {
            // Mid-commit most of the time: the next transaction is already being written.
            setTimeout(() => child.kill('SIGKILL'), Math.floor(Math.random() * 3));
          }
        });
        child.on('exit', () => resolve());
        child.on('error', reject);
      });
      const state = await snapshotOf(dir, k);
      const present = Object.keys(state)
        .filter((x) => x.startsWith('b/'))
        .map((x) => Number(x.slice(2)))
        .sort((a, b) => a - b);
      // Every acknowledged transaction is there; whatever is there is whole (both keys) and gap-free.
      expect(present.length).toBeGreaterThanOrEqual(lastAcked);
      expect(present).toEqual(Array.from({ length: present.length }, (_, i) => i + 1));
      for (const i of present) {
        expect(state[`a/${i}`]).toBeDefined();
        expect(state[`b/${i}`]).toBe(String(i));
      }
      expect(Number(state.last)).toBe(present.length);
      lastAcked = present.length;
    }
  }, 60_000);
});
