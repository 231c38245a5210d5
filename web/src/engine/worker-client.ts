/**
 * The UI-side proxy of an engine running in a Web Worker (worker-host.ts): every EngineApi method becomes
 * a request over the port, answered by id; engine events arrive as `{ event }` and go to `on` listeners.
 * Errors keep their `name`, `code` and `message` (e.g. an EngineError `identity_changed`).
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
  ) {
    super(message);
  }
}

export type EngineClient = EngineApi & { on(listener: (e: EngineEvent) => void): () => void };

export function engineClient(port: Endpoint): EngineClient {
  let next = 1;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  const listeners = new Set<(e: EngineEvent) => void>();
  port.addEventListener('message', (ev) => {
    const data = ev.data as RpcResponse | { event: EngineEvent };
    if ('event' in data) {
      for (const l of listeners) l(data.event);
      return;
    }
    const w = waiting.get(data.id);
    if (!w) return;
    waiting.delete(data.id);
    if (data.ok) w.resolve(data.value);
    else w.reject(new RemoteEngineError(data.error.name, data.error.code, data.error.message));
  });
  const call =
    (method: string) =>
    (...args: unknown[]) =>
      new Promise((resolve, reject) => {
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
  });
}
