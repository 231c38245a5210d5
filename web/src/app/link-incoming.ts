/**
 * This browser being linked (the /link page, "link instead" at sign-in): what the engine worker does once the
 * provisioning message says whose account this browser becomes (engine.worker.ts `runIncoming` runs it).
 *
 * - A store this browser already holds for that account (keys and history of an earlier sign-in, signed out
 *   or locked with a passphrase) is never deleted to make room (review R13): the link is cancelled and the
 *   page gets `failed` / `local_data_exists` with the username, so it can say what is there and offer an
 *   erase the person confirms, or signing in instead. Only the leftover of an earlier link attempt that
 *   never completed (marked by `LINK_ATTEMPT_KEY`, written before the attempt writes anything else) is
 *   replaced without asking: it holds nothing but the keys of a device that never became one.
 * - An attempt that fails or is cancelled before the device is linked erases the store it wrote (review R7):
 *   the account's identity secret and the new device's keys never outlive it. If the server had already
 *   registered the device (redeemed), the device is first removed from the account's list. (A tab closed mid-attempt
 *   leaves the marked leftover, replaced by the next attempt.)
 *
 * Does NOT: open IndexedDB or post to the page itself (the worker's `deps` do), or receive the history
 * (`deps.linked` does, after 'linked').
 * @module
 */
import type { EngineApi } from '../engine/engine.js';
import type { NewDeviceLinkApi } from '../engine/link-transport.js';
import { LinkError, type NewDeviceLink } from '../engine/linking.js';
import type { OpenedProvisioning } from '../protocol/index.js';

/** Written into a store before a link attempt writes keys there; deleted once the device is linked. */
export const LINK_ATTEMPT_KEY = 'app/link-attempt';

export interface IncomingOpened {
  readonly engine: EngineApi;
  readonly store: {
    get(key: string): Promise<Uint8Array | undefined>;
    put(key: string, value: Uint8Array): Promise<void>;
    delete(key: string): Promise<void>;
  };
}

export interface IncomingDeps<O extends IncomingOpened> {
  /** Opens (or creates) the account's store; throws (code `locked`) for one locked with a passphrase. */
  open(username: string): Promise<O>;
  /** Closes the account's store if it is open (its keys forgotten); the store stays. */
  close(username: string): void;
  /** Closes and deletes the account's store. */
  erase(username: string): Promise<void>;
  redeemApi(o: O): NewDeviceLinkApi;
  deviceId(): string;
  /**
   * Removes this browser's new device from the account (a list without it, signed by the identity `complete`
   * stored): the server registered it, but the attempt then failed or was cancelled and its keys are erased.
   */
  revoke(o: O, deviceId: string): Promise<void>;
  /** Whether this is still the page's link (not cancelled or replaced by a new code). */
  isCurrent(): boolean;
  failed(code: string, username?: string): void;
  /** The device is linked: report it and receive the history. */
  linked(o: O, p: OpenedProvisioning): Promise<void>;
}

type Link = Pick<NewDeviceLink, 'waitForProvisioning' | 'complete' | 'cancel'>;

const codeOf = (e: unknown, fallback: string) => (e as { code?: string } | null)?.code ?? fallback;

export async function runIncomingLink<O extends IncomingOpened>(link: Link, deps: IncomingDeps<O>): Promise<void> {
  let p: OpenedProvisioning;
  try {
    p = await link.waitForProvisioning();
  } catch (e) {
    if (deps.isCurrent()) deps.failed(codeOf(e, 'link_failed'));
    return;
  }
  const refuse = async (code: string) => {
    // The other device is told, and nothing of this browser's store is touched.
    await link.cancel('local_data_exists').catch(() => undefined);
    if (deps.isCurrent()) deps.failed(code, p.username);
  };
  let o: O;
  try {
    o = await deps.open(p.username);
  } catch (e) {
    if (codeOf(e, '') === 'locked') return refuse('local_data_exists');
    await link.cancel('link_failed').catch(() => undefined);
    if (deps.isCurrent()) deps.failed(codeOf(e, 'link_failed'));
    return;
  }
  try {
    if (await o.engine.identity()) {
      if (!(await o.store.get(LINK_ATTEMPT_KEY))) {
        deps.close(p.username);
        return refuse('local_data_exists');
      }
      // An earlier attempt that never completed: only its unused keys are there.
      await deps.erase(p.username);
      o = await deps.open(p.username);
    }
  } catch (e) {
    if (deps.isCurrent()) deps.failed(codeOf(e, 'link_failed'));
    return;
  }
  // From here the store is this attempt's: on failure or cancel it is erased, with the identity secret and
  // device keys `complete` wrote (review R7) — not kept until the next attempt.
  const deviceId = deps.deviceId();
  let redeemed = false;
  try {
    await o.store.put(LINK_ATTEMPT_KEY, new Uint8Array([1]));
    const api = deps.redeemApi(o);
    await link.complete(o.engine, deviceId, {
      ...api,
      redeem: async (r) => {
        const out = await api.redeem(r);
        redeemed = true;
        return out;
      },
    });
    if (!deps.isCurrent()) throw new LinkError('cancelled', 'cancelled on this device');
    await o.store.delete(LINK_ATTEMPT_KEY);
  } catch (e) {
    // The server registered the device before the failure (or the cancel): it leaves the account's list
    // before its keys are erased — never a device in the account that no one holds (best effort).
    if (redeemed) await deps.revoke(o, deviceId).catch(() => undefined);
    await deps.erase(p.username).catch(() => undefined);
    if (deps.isCurrent()) deps.failed(codeOf(e, 'link_failed'));
    return;
  }
  try {
    await deps.linked(o, p);
  } catch (e) {
    const code = codeOf(e, 'link_failed');
    if (deps.isCurrent() && code !== 'history_incomplete') deps.failed(code);
  }
}
