/**
 * The IndexedDB backend's commit, over a stub database (the real IndexedDB runs in the browser suite): what it
 * asks IndexedDB for.
 */
import { expect, it } from 'vitest';
import { idbRawKv } from './idb-store.js';

it('a commit opens its readwrite transaction with strict durability: complete means on disk, before anything is sent or acked', async () => {
  const opened: unknown[][] = [];
  const written: unknown[][] = [];
  const db = {
    transaction(...args: unknown[]) {
      opened.push(args);
      const tx = {
        oncomplete: null as null | (() => void),
        objectStore: () => ({
          put: (...a: unknown[]) => written.push(a),
          delete: (...a: unknown[]) => written.push(a),
        }),
      };
      setTimeout(() => tx.oncomplete?.(), 0);
      return tx;
    },
  } as unknown as IDBDatabase;
  expect(await idbRawKv(db).commit([], [{ id: 'r1', value: new Uint8Array([1]) }])).toBe(true);
  expect(opened).toEqual([[['records', 'meta'], 'readwrite', { durability: 'strict' }]]);
  expect(written).toEqual([[new Uint8Array([1]), 'r1']]);
});
