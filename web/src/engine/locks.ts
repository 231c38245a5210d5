/**
 * One writer per named resource (PITFALLS 12): the engine takes `session:<user>:<device>` before it loads,
 * advances and persists a session. In the browser the Web Locks API (`navigator.locks`) makes this hold
 * across tabs and workers of the origin; in Node (bots, tests) an in-process mutex does, shared by every
 * engine instance given the same `LockManager`.
 *
 * Locks are NOT re-entrant (neither is Web Locks): code holding one must never call into anything that
 * may take the same one — it would wait for itself forever. Where they nest, a session's lock is taken
 * before a sender key's (`session:` then `senderkey-recv:` / `senderkey:`, each in name order, inbox.ts), and
 * what runs under a receive lock (inbox `accept`) takes no lock and applies no membership-log entry (a
 * removal forgets the removed member's chains under their receive locks): it asks for a log sync after the
 * lock is released instead.
 *
 * Does NOT: provide isolation for Store reads/writes (Store.transaction does) or time out locks.
 * @module
 */

export interface EngineLocks {
  /** Runs `fn` while holding the exclusive lock `name`; releases it when `fn` settles. */
  request<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

/** An in-process mutex per name (FIFO). Share one instance between engines that share a Store. */
export function memoryLocks(): EngineLocks {
  const tails = new Map<string, Promise<unknown>>();
  return {
    request<T>(name: string, fn: () => Promise<T>): Promise<T> {
      const prev = tails.get(name) ?? Promise.resolve();
      const run = prev.then(fn, fn);
      const tail = run.then(
        () => undefined,
        () => undefined,
      );
      tails.set(name, tail);
      void tail.then(() => {
        if (tails.get(name) === tail) tails.delete(name);
      });
      return run;
    },
  };
}

interface WebLockManager {
  request<T>(name: string, options: { mode: 'exclusive' }, cb: () => Promise<T>): Promise<T>;
}

/** The Web Locks API (browser main thread and workers): exclusive across every tab of the origin. */
export function webLocks(
  locks: WebLockManager = (globalThis.navigator as unknown as { locks: WebLockManager }).locks,
): EngineLocks {
  return { request: (name, fn) => locks.request(`e2e-chat:${name}`, { mode: 'exclusive' }, fn) };
}
