/**
 * Runs inside a dedicated Web Worker in Chromium (bundled by bench/browser.ts): answers the page's
 * requests to prepare and time one workload, so the timed section never crosses a thread boundary.
 *
 * Messages in: `{ id, key, ops }` — prepare `workloads[key](ops)` (untimed), then time `run()` with the
 * worker's `performance.now()`; answers `{ id, result: ops per second }` or `{ id, error }`.
 * On start it posts `{ ready: { keys, info } }`.
 *
 * Does NOT: import anything from Node (it runs in the browser) or measure anything but the `run()` call.
 * @module
 */
import type { Workload } from '../stats.js';

interface Request {
  readonly id: number;
  readonly key: string;
  readonly ops: number;
}

/** The worker's global scope, typed without the WebWorker lib (the bench code is typechecked with DOM). */
interface WorkerScope {
  postMessage(message: unknown): void;
  addEventListener(type: 'message', listener: (e: MessageEvent<Request>) => void): void;
}

export function serveWorkloads(workloads: Readonly<Record<string, Workload | undefined>>, info: string): void {
  const scope = globalThis as unknown as WorkerScope;
  scope.addEventListener('message', (e) => {
    const { id, key, ops } = e.data;
    void (async () => {
      try {
        const workload = workloads[key];
        if (!workload) throw new Error(`no workload ${key}`);
        const prepared = await workload(ops);
        const t0 = performance.now();
        await prepared.run();
        const ms = performance.now() - t0;
        scope.postMessage({ id, result: (prepared.ops * 1000) / ms });
      } catch (err) {
        scope.postMessage({ id, error: err instanceof Error ? err.message : String(err) });
      }
    })();
  });
  const keys = Object.keys(workloads).filter((k) => workloads[k]);
  scope.postMessage({ ready: { keys, info } });
}
