/**
 * The local passphrase lock below the UI: the sealed store's lock operations as the engine worker uses
 * them (two instances over one backend = two tabs of one browser), and the worker RPC plumbing (error
 * codes across the port, terminated workers rejecting pending calls).
 */
import { describe, expect, it } from 'vitest';
import { fromUtf8, utf8 } from '../engine/codec.js';
import { EPOCH_ID, memoryRawKv, openSealedStore, type RawKv, StoreLockedError } from '../engine/sealed-store.js';
import { engineClient } from '../engine/worker-client.js';
import { AppError, hostSession, type SessionApi, sessionClient } from './session-api.js';

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

function channel() {
  const ch = new MessageChannel();
  const wrap = (p: MessagePort) => ({
    postMessage: (m: unknown) => p.postMessage(m),
    addEventListener: (t: 'message', l: (ev: { data: unknown }) => void) => {
      p.addEventListener(t, l as (ev: MessageEvent) => void);
      p.start();
    },
  });
  const close = () => {
    ch.port1.close();
    ch.port2.close();
  };
  return { ui: wrap(ch.port1), worker: wrap(ch.port2), close };
}

describe('local passphrase lock: sealed store', () => {
  it('set, check, change and remove a passphrase; argon2id reports progress; nothing readable at rest', async () => {
    const raw = memoryRawKv();
    const s = await openSealedStore(raw);
    expect(s.hasPassphrase()).toBe(false);
    await s.put('msg/c1/0001', utf8('PLAINTEXT-7f3a'));
    const progress: number[] = [];
    await s.setPassphrase('first passphrase', { onProgress: (f) => progress.push(f) });
    expect(progress.length).toBeGreaterThan(0);
    expect(s.hasPassphrase()).toBe(true);
    // The meta record holds only wrapped bytes: no CryptoKey, nothing that opens the records by itself.
    const meta = raw.meta()!;
    expect(meta.mode).toBe('passphrase');
    expect(Object.values(meta).some((v) => typeof CryptoKey !== 'undefined' && v instanceof CryptoKey)).toBe(false);
    for (const r of raw.dump()) expect(contains(r.value, utf8('PLAINTEXT-7f3a'))).toBe(false);
    await expect(s.checkPassphrase('wrong one')).rejects.toMatchObject({ code: 'bad_passphrase' });
    await s.checkPassphrase('first passphrase');

    await expect(openSealedStore(raw)).rejects.toMatchObject({ code: 'locked' });
    await expect(openSealedStore(raw, { passphrase: 'nope' })).rejects.toMatchObject({ code: 'bad_passphrase' });
    const again = await openSealedStore(raw, { passphrase: 'first passphrase' });
    expect(fromUtf8((await again.get('msg/c1/0001'))!)).toBe('PLAINTEXT-7f3a');
    expect(again.hasPassphrase()).toBe(true);

    await again.setPassphrase('second passphrase');
    await expect(openSealedStore(raw, { passphrase: 'first passphrase' })).rejects.toMatchObject({
      code: 'bad_passphrase',
    });
    const third = await openSealedStore(raw, { passphrase: 'second passphrase' });
    await third.setPassphrase(null);
    expect(third.hasPassphrase()).toBe(false);
    expect(raw.meta()!.mode).toBe('device');
    const plain = await openSealedStore(raw);
    expect(fromUtf8((await plain.get('msg/c1/0001'))!)).toBe('PLAINTEXT-7f3a');
    await expect(plain.checkPassphrase('second passphrase')).rejects.toBeInstanceOf(StoreLockedError);
    // A locked instance refuses everything.
    plain.lock();
    await expect(plain.get('msg/c1/0001')).rejects.toMatchObject({ code: 'locked' });
  }, 60_000);

  it('a second tab with the old keys cannot write after a re-key (its writes would be unreadable and stale)', async () => {
    const raw = memoryRawKv();
    const tabA = await openSealedStore(raw);
    const tabB = await openSealedStore(raw);
    await tabA.put('sess/bob/1', utf8('ratchet state v1'));
    expect(fromUtf8((await tabB.get('sess/bob/1'))!)).toBe('ratchet state v1');
    await tabA.setPassphrase('a good passphrase');
    // Tab B still holds the device keys of before: it must not persist an "advanced" state nobody can
    // read (tab A would later send from the older copy).
    await expect(tabB.put('sess/bob/1', utf8('ratchet state v2 (stale tab)'))).rejects.toMatchObject({
      code: 'stale',
    });
    await expect(tabB.get('sess/bob/1')).rejects.toMatchObject({ code: 'locked' });
    const count = raw.dump().length;
    expect(fromUtf8((await tabA.get('sess/bob/1'))!)).toBe('ratchet state v1');
    // Tab A keeps writing; a fresh open with the passphrase sees exactly its data.
    await tabA.put('sess/bob/1', utf8('ratchet state v2'));
    expect(raw.dump().length).toBe(count);
    const reopened = await openSealedStore(raw, { passphrase: 'a good passphrase' });
    expect(fromUtf8((await reopened.get('sess/bob/1'))!)).toBe('ratchet state v2');
    // The stale tab cannot re-key either.
    const tabC = await openSealedStore(raw, { passphrase: 'a good passphrase' });
    await reopened.setPassphrase(null);
    await expect(tabC.setPassphrase('another')).rejects.toMatchObject({ code: 'stale' });
  }, 60_000);
});

describe('local passphrase lock: reads racing a re-key', () => {
  it('a read whose ids were computed with the old keys runs again with the new ones', async () => {
    const base = memoryRawKv();
    let hold: Promise<void> | null = null;
    const held = async (ids: readonly string[]) => {
      if (hold && !ids.includes(EPOCH_ID)) {
        const h = hold;
        hold = null;
        await h; // the re-key commits meanwhile: this old id is gone
      }
    };
    const raw: RawKv = {
      ...base,
      async get(id) {
        await held([id]);
        return base.get(id);
      },
      async getMany(ids) {
        await held(ids);
        return base.getMany(ids);
      },
    };
    const s = await openSealedStore(raw);
    await s.put('ui/names', utf8('alice'));
    let release: () => void = () => {};
    hold = new Promise<void>((r) => {
      release = r;
    });
    const read = s.get('ui/names');
    await s.setPassphrase('racing passphrase');
    release();
    expect(fromUtf8((await read)!)).toBe('alice');
  }, 30_000);
});

describe('local passphrase lock: worker RPC', () => {
  it('lock codes cross the session port; the passphrase is only an argument', async () => {
    const { ui, worker, close } = channel();
    const seen: unknown[] = [];
    let locked = true;
    const api = {
      async restore() {
        if (locked) throw new StoreLockedError('locked');
        return null;
      },
      async unlock(username: string, passphrase: string) {
        seen.push([username, passphrase]);
        worker.postMessage({ progress: { step: 'unlock', fraction: 0.5 } });
        if (passphrase !== 'right one') throw new StoreLockedError('bad_passphrase');
        locked = false;
        return { userId: 'u1', deviceId: 'd1', username, totpEnabled: false };
      },
      async localLock() {
        return { passphrase: !locked };
      },
    } as unknown as SessionApi;
    hostSession(api, worker);
    const progress: unknown[] = [];
    const client = sessionClient(ui, (p) => progress.push(p));
    await expect(client.restore('alice')).rejects.toMatchObject({ code: 'locked' });
    const bad = await client.unlock('alice', 'wrong').catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(AppError);
    expect(bad).toMatchObject({ code: 'bad_passphrase' });
    // The error that comes back names the problem, never the passphrase.
    expect(JSON.stringify({ m: (bad as Error).message })).not.toContain('wrong');
    expect(await client.unlock('alice', 'right one')).toMatchObject({ username: 'alice' });
    expect(progress).toContainEqual({ step: 'unlock', fraction: 0.5 });
    expect(await client.localLock()).toEqual({ passphrase: true });
    expect(seen).toEqual([
      ['alice', 'wrong'],
      ['alice', 'right one'],
    ]);
    close();
  });

  it('a terminated worker: pending and later calls reject with code locked instead of hanging', async () => {
    const { ui, close } = channel();
    const session = sessionClient(ui, () => undefined);
    const engine = engineClient(ui);
    const pendingSession = session.devices();
    const pendingEngine = engine.conversations();
    const gone = new AppError('locked', 'the local store is locked');
    session.dispose(gone);
    engine.dispose(gone);
    await expect(pendingSession).rejects.toMatchObject({ code: 'locked' });
    await expect(pendingEngine).rejects.toMatchObject({ code: 'locked' });
    await expect(session.lookup('bob')).rejects.toBe(gone);
    await expect(engine.messages('c1', {})).rejects.toBe(gone);
    close();
  });
});
