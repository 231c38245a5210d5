/**
 * This browser being linked (link-incoming.ts, run by the engine worker's `runIncoming`) on the in-memory
 * engine and fake server: what happens to a store this browser already holds for the account.
 */
import { describe, expect, it } from 'vitest';
import type { Engine } from '../engine/engine.js';
import type { NewDeviceLinkApi } from '../engine/link-transport.js';
import { LinkingDeviceLink, NewDeviceLink } from '../engine/linking.js';
import { memoryLocks } from '../engine/locks.js';
import { memoryStore, type Store } from '../engine/storage.js';
import {
  type Client,
  cryptoRng,
  engineOn,
  makeWorld,
  newClient,
  until,
  type World,
} from '../engine/testing/harness.js';
import { ApiError } from '../engine/transport.js';
import { LINK_ATTEMPT_KEY, runIncomingLink } from './link-incoming.js';

const fast = { pollWaitMs: 0, stallMs: 400, backoffMs: 5 };

/** This browser's IndexedDB as the worker sees it: one store per account name, deleted by `erase`. */
function browser(w: World, deviceId: string) {
  const stores = new Map<string, Store>();
  const engines: Engine[] = [];
  const log: string[] = [];
  return {
    stores,
    log,
    engines,
    deps(
      link: NewDeviceLink,
      failed: { code: string; username?: string }[],
      linked: string[],
      more: { redeem?: (inner: NewDeviceLinkApi) => NewDeviceLinkApi; current?: () => boolean } = {},
    ) {
      return {
        async open(username: string) {
          log.push(`open ${username}`);
          const store = stores.get(username) ?? memoryStore();
          stores.set(username, store);
          const engine = engineOn(w, username, deviceId, store, memoryLocks());
          engines.push(engine);
          return { engine, store };
        },
        close(username: string) {
          log.push(`close ${username}`);
        },
        async erase(username: string) {
          log.push(`erase ${username}`);
          stores.delete(username);
        },
        redeemApi: () => (more.redeem ?? ((a: NewDeviceLinkApi) => a))(w.server.newDeviceLinkApi()),
        async revoke(o: { engine: Engine }, id: string) {
          log.push(`revoke ${id}`);
          await w.server.updateDeviceList(await o.engine.listWithoutThisDevice());
        },
        deviceId: () => deviceId,
        isCurrent: more.current ?? (() => true),
        failed: (code: string, username?: string) => failed.push({ code, ...(username ? { username } : {}) }),
        async linked(o: { engine: Engine }) {
          linked.push('linked');
          await link.receiveHistory(o.engine);
        },
      };
    },
  };
}

async function startLink(w: World, existing: Client) {
  const nl = await NewDeviceLink.start({
    api: w.server.newDeviceLinkApi(),
    curves: w.curves,
    rng: cryptoRng,
    timings: fast,
  });
  const linker = new LinkingDeviceLink({
    api: w.server.linkingApi(existing.userId, existing.deviceId),
    engine: existing.engine,
    username: existing.userId,
    timings: fast,
  });
  const linking = linker.link(nl.code, { deviceName: 'Laptop', history: true });
  linking.catch(() => undefined);
  return { nl, linking };
}

describe('linking this browser over a store it already holds for the account', { timeout: 60_000 }, () => {
  it('R13: a signed-out store of that account is not deleted: the link is refused (local_data_exists, with the username) and the other device told', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const b = browser(w, 'alice-9');
    // An earlier sign-in here: keys and a message of its own, then signed out (engine closed, store kept).
    const earlier = memoryStore();
    const old = engineOn(w, 'alice', 'alice-old', earlier, memoryLocks());
    const oldId = await old.bootstrap({ userId: 'alice', deviceId: 'alice-old' });
    await earlier.put('msg/only-here', new TextEncoder().encode('a message only this browser has'));
    old.close();
    b.stores.set('alice', earlier);
    const before = new Map((await earlier.list('msg/')).map((e) => [e.key, e.value]));

    const { nl, linking } = await startLink(w, alice);
    const failed: { code: string; username?: string }[] = [];
    const linked: string[] = [];
    await runIncomingLink(nl, b.deps(nl, failed, linked));
    for (const e of b.engines) e.close();

    expect(failed).toEqual([{ code: 'local_data_exists', username: 'alice' }]);
    expect(linked).toEqual([]);
    expect(b.log).not.toContain('erase alice');
    expect(b.stores.get('alice')).toBe(earlier);
    expect(new Map((await earlier.list('msg/')).map((e) => [e.key, e.value]))).toEqual(before);
    const again = engineOn(w, 'alice', 'alice-old', earlier, memoryLocks());
    expect((await again.identity())?.deviceId).toBe(oldId.deviceId);
    again.close();
    // The other device does not wait for a link that will not come.
    await expect(linking).rejects.toMatchObject({ code: 'cancelled' });
    expect(w.server.users.get('alice')!.devices.has('alice-9')).toBe(false);
    alice.engine.close();
  });

  it('R13: a store of that account locked with a passphrase is refused the same way (never erased to make room)', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const b = browser(w, 'alice-9');
    const { nl, linking } = await startLink(w, alice);
    const failed: { code: string; username?: string }[] = [];
    const deps = b.deps(nl, failed, []);
    await runIncomingLink(nl, {
      ...deps,
      open: () => Promise.reject(Object.assign(new Error('locked'), { code: 'locked' })),
    });
    expect(failed).toEqual([{ code: 'local_data_exists', username: 'alice' }]);
    expect(b.log).toEqual([]);
    await expect(linking).rejects.toMatchObject({ code: 'cancelled' });
    alice.engine.close();
  });

  it('the leftover of a link attempt that never completed is replaced without asking, and this browser is linked', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const b = browser(w, 'alice-9');
    const leftover = memoryStore();
    const crashed = engineOn(w, 'alice', 'alice-crashed', leftover, memoryLocks());
    await leftover.put(LINK_ATTEMPT_KEY, new Uint8Array([1]));
    await crashed.bootstrap({ userId: 'alice', deviceId: 'alice-crashed' });
    crashed.close();
    b.stores.set('alice', leftover);

    const { nl, linking } = await startLink(w, alice);
    const failed: { code: string; username?: string }[] = [];
    const linked: string[] = [];
    await runIncomingLink(nl, b.deps(nl, failed, linked));
    expect(failed).toEqual([]);
    expect(linked).toEqual(['linked']);
    expect(b.log).toContain('erase alice');
    await linking;
    const store = b.stores.get('alice')!;
    expect(store).not.toBe(leftover);
    expect(await store.get(LINK_ATTEMPT_KEY)).toBeUndefined();
    await until(() => w.server.users.get('alice')!.devices.has('alice-9'), 'the device is listed');
    for (const e of b.engines) e.close();
    alice.engine.close();
  });
});

describe('a link attempt that does not complete', { timeout: 60_000 }, () => {
  it('R7: a failed attempt erases the store it wrote — the account identity secret and the device keys are not left until the next attempt', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const b = browser(w, 'alice-9');
    const { nl, linking } = await startLink(w, alice);
    const failed: { code: string; username?: string }[] = [];
    let written: Store | undefined;
    await runIncomingLink(
      nl,
      b.deps(nl, failed, [], {
        redeem: (inner) => ({
          ...inner,
          async redeem() {
            written = b.stores.get('alice');
            throw new ApiError(409, 'device_limit');
          },
        }),
      }),
    );
    for (const e of b.engines) e.close();
    expect(failed).toEqual([{ code: 'device_limit' }]);
    // The attempt had written the identity (with the account's identity secret) before the redeem failed…
    expect(await written!.get('ks/identity')).toBeDefined();
    // …and this browser keeps nothing of it.
    expect(b.log.at(-1)).toBe('erase alice');
    expect(b.stores.has('alice')).toBe(false);
    await expect(linking).rejects.toBeDefined();
    alice.engine.close();
  });

  it('R7: an attempt cancelled on this device while it completes erases what it wrote, and reports nothing', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const b = browser(w, 'alice-9');
    const { nl, linking } = await startLink(w, alice);
    const failed: { code: string; username?: string }[] = [];
    let current = true;
    await runIncomingLink(
      nl,
      b.deps(nl, failed, [], {
        current: () => current,
        redeem: (inner) => ({
          ...inner,
          async redeem(req) {
            const r = await inner.redeem(req);
            current = false; // the person left the page: the worker's linkCancel
            await nl.cancel();
            return r;
          },
        }),
      }),
    );
    for (const e of b.engines) e.close();
    expect(failed).toEqual([]);
    expect(b.log.at(-1)).toBe('erase alice');
    expect(b.stores.has('alice')).toBe(false);
    await linking.catch(() => undefined);
    alice.engine.close();
  });

  it('rv11 (R7): a device the server registered before the attempt was cancelled leaves the account before its keys are erased', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const b = browser(w, 'alice-9');
    const { nl, linking } = await startLink(w, alice);
    const failed: { code: string; username?: string }[] = [];
    let current = true;
    await runIncomingLink(
      nl,
      b.deps(nl, failed, [], {
        current: () => current,
        redeem: (inner) => ({
          ...inner,
          async redeem(req) {
            const r = await inner.redeem(req);
            current = false; // the person left the page just after the server registered the device
            await nl.cancel();
            return r;
          },
        }),
      }),
    );
    for (const e of b.engines) e.close();
    expect(b.log.slice(-2)).toEqual(['revoke alice-9', 'erase alice']);
    expect(b.stores.has('alice')).toBe(false);
    // No device is left in the account whose keys nobody holds.
    const listed = w.server.users.get('alice')!.devices.get('alice-9');
    expect(listed?.revoked).toBe(true);
    await linking.catch(() => undefined);
    alice.engine.close();
  });
});
