/**
 * Runs the engine off the UI thread: a tiny RPC host over a MessagePort-like endpoint (a Web Worker's
 * `self`, a MessageChannel port). Requests are `{ id, method, args }`, answers `{ id, ok, value }` or
 * `{ id, ok: false, error: { name, code, message } }`, and engine events are pushed as `{ event }`. Only
 * plain data crosses (structured clone; Uint8Array included) — the engine API is designed for it.
 *
 * Does NOT: create the engine (the worker's entry script does, with its IndexedDB store and Web Locks),
 * or authorise callers (the port is private to the page that created the worker).
 * @module
 */
import type { Engine, EngineApi } from './engine.js';

export interface Endpoint {
  postMessage(message: unknown): void;
  addEventListener(type: 'message', listener: (ev: { data: unknown }) => void): void;
  removeEventListener?(type: 'message', listener: (ev: { data: unknown }) => void): void;
}

export interface RpcRequest {
  readonly id: number;
  readonly method: keyof EngineApi;
  readonly args: unknown[];
}

export type RpcResponse =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | {
      readonly id: number;
      readonly ok: false;
      /** `retryAfter`: seconds, from a 429's Retry-After (HttpApiError.retryAfter). */
      readonly error: { name: string; code?: string; message: string; retryAfter?: number };
    };

/** The methods callable over RPC (everything in EngineApi; nothing else on the engine). */
export const ENGINE_METHODS: readonly (keyof EngineApi)[] = [
  'bootstrap',
  'identity',
  'signLoginChallenge',
  'addDeviceToList',
  'removeDeviceFromList',
  'listWithoutThisDevice',
  'adoptOwnDeviceList',
  'publishPrekeys',
  'createConversation',
  'addMember',
  'removeMember',
  'members',
  'conversations',
  'conversation',
  'changeMembership',
  'getPref',
  'setPref',
  'connect',
  'disconnect',
  'connectionStatus',
  'sendText',
  'sendAttachment',
  'openAttachment',
  'cancelTransfer',
  'messages',
  'syncMailbox',
  'flushOutbox',
  'contact',
  'refreshContact',
  'safetyNumber',
  'infoLines',
  'retrySend',
  'discardFailed',
  'acceptIdentityChange',
  // people (people.ts)
  'syncPeople',
  'people',
  'setProfile',
  'profile',
  'profiles',
  'requester',
  'acceptRequest',
  'deleteRequest',
  'block',
  'unblock',
  'mute',
  'unmute',
  // issue 17: everyday messaging
  'react',
  'editMessage',
  'deleteForEveryone',
  'setTimer',
  'typing',
  'search',
  'locate',
  'sweepExpired',
  // own devices (linking)
  'markRead',
  'readPosition',
  // key transparency (transparency.ts)
  'lookupUser',
  'setOwnUsername',
  'ktCheck',
  'ktAlerts',
  'dismissKtAlert',
];

export function hostEngine(engine: Engine, port: Endpoint): () => void {
  const allowed = new Set<string>(ENGINE_METHODS);
  const off = engine.on((event) => port.postMessage({ event }));
  const onMessage = async (ev: { data: unknown }) => {
    const req = ev.data as RpcRequest;
    if (!req || typeof req.id !== 'number' || typeof req.method !== 'string') return;
    try {
      if (!allowed.has(req.method)) throw new Error(`unknown method ${req.method}`);
      const fn = engine[req.method] as (...a: unknown[]) => Promise<unknown>;
      const value = await fn(...(Array.isArray(req.args) ? req.args : []));
      port.postMessage({ id: req.id, ok: true, value } satisfies RpcResponse);
    } catch (e) {
      const err = e as { name?: string; code?: string; message?: string; retryAfter?: unknown };
      port.postMessage({
        id: req.id,
        ok: false,
        error: {
          name: err.name ?? 'Error',
          ...(err.code ? { code: err.code } : {}),
          message: err.message ?? String(e),
          ...(typeof err.retryAfter === 'number' && err.retryAfter > 0 ? { retryAfter: err.retryAfter } : {}),
        },
      } satisfies RpcResponse);
    }
  };
  port.addEventListener('message', onMessage);
  return () => {
    off();
    port.removeEventListener?.('message', onMessage);
  };
}
