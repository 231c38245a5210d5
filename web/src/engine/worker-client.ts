/**
 * The UI-side proxy of an engine running in a Web Worker (worker-host.ts): every EngineApi method becomes
 * a request over the port, answered by id; engine events arrive as `{ event }` and go to `on` listeners.
 * Errors keep their `name`, `code` and `message` (e.g. an EngineError `identity_changed`).
 *
 * `dispose` ends the client (the app terminates the worker to lock the local store): every pending and
 * later call rejects with the given error instead of waiting forever.
 *
 * Does NOT: time out requests, or restart a crashed worker.
 * @module
 */
import type { EngineEvent } from './context.js';
import type { EngineApi } from './engine.js';
import { ENGINE_METHODS, type Endpoint, type RpcResponse } from './worker-host.js';

export class RemoteEngineError extends Error {
  constructor(
    override readonly name: string,
    readonly code: string | undefined,
    message: string,
    /** Seconds to wait (a 429's Retry-After), when the server said. */
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

export type EngineClient = EngineApi & {
  on(listener: (e: EngineEvent) => void): () => void;
  /** Rejects every pending and later call with `error` and stops delivering events. */
  dispose(error: Error): void;
};

export function engineClient(port: Endpoint): EngineClient {
  let next = 1;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  const listeners = new Set<(e: EngineEvent) => void>();
  let disposed: Error | null = null;
  port.addEventListener('message', (ev) => {
    const data = ev.data as RpcResponse | { event: EngineEvent };
    if (disposed || !data || typeof data !== 'object') return;
    if ('event' in data) {
      for (const l of listeners) l(data.event);
      return;
    }
    const w = waiting.get(data.id);
    if (!w) return;
    waiting.delete(data.id);
    if (data.ok) w.resolve(data.value);
    else w.reject(new RemoteEngineError(data.error.name, data.error.code, data.error.message, data.error.retryAfter));
  });
  const call =
    (method: string) =>
    (...args: unknown[]) =>
      new Promise((resolve, reject) => {
        if (disposed) return reject(disposed);
        const id = next++;
        waiting.set(id, { resolve, reject });
        port.postMessage({ id, method, args });
      });
  const client = Object.fromEntries(ENGINE_METHODS.map((m) => [m, call(m)])) as unknown as EngineApi;
  return Object.assign(client, {
    on(l: (e: EngineEvent) => void) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    dispose(error: Error) {
      disposed = error;
      listeners.clear();
      for (const w of waiting.values()) w.reject(error);
      waiting.clear();
    },
  });
}
