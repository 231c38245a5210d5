/**
 * How the engine worker ends a session the server ended (issue 14): decides between "this device was
 * removed" (the store is erased, the page shows the removed screen) and "signed out" (the sign-in screen
 * with the reason).
 *
 * The server's 401 `session_revoked` arrives once per request in flight: a removal closes every
 * conversation socket with 4403 (each asks for the session again), the chat-list poll and any other call
 * get their own 401. The decisions are therefore made one after another per store: the first one that
 * confirms the removal erases the store, and every later 401 for that store says nothing more — a later
 * check that overlapped the erase (its store locked under it, so it cannot confirm) must not turn the
 * removed screen into a sign-in page.
 *
 * Does NOT: trust the server's word for a removal (the engine checks the signed device list itself), or
 * render anything.
 * @module
 */
import { fromB64u } from '../protocol/index.js';

/** What the page is told (engine.worker → agent.ts). */
export type SessionEndMessage = { readonly removed: true } | { readonly signedOut: string };

export interface SessionEndDeps {
  /** The open engine if the open store is `dbName`, else null (closed or another account's). */
  engineFor(dbName: string): { confirmRemoved(list: Uint8Array): Promise<boolean> } | null;
  /** Tells the other tabs, closes the engine and deletes the database. */
  erase(dbName: string): Promise<void>;
  post(message: SessionEndMessage): void;
}

/**
 * Why the server ended this session, for the sign-in screen: the `reason` of a 401 `session_revoked`
 * (identity_reset, device_revoked, password_changed, logout_all, signed_out_by_user, logout, refresh_reuse),
 * else the error code (refresh_reused, refresh_expired, invalid_refresh).
 */
export function signOutReason(e: { code: string; details?: Readonly<Record<string, unknown>> }): string {
  const r = e.details?.reason;
  return typeof r === 'string' && /^[a-z_]{1,40}$/.test(r) ? r : e.code;
}

/**
 * The server ended this session. If it says the device was revoked and carries the account's signed list,
 * the engine checks that list itself (our identity key, newer than ours, without us); only then is this
 * browser's store erased and the page told `removed`. Anything else: `signedOut` with the reason. Calls for
 * one store run in order; once a removal is confirmed, later calls for that store post nothing until the
 * store is opened again (`opened`: a new link or sign-in under the same name).
 */
export interface SessionEnd {
  ended(dbName: string, e: unknown): Promise<void>;
  opened(dbName: string): void;
}

export function createSessionEnd(deps: SessionEndDeps): SessionEnd {
  const queues = new Map<string, Promise<void>>();
  const erased = new Set<string>();

  const decide = async (dbName: string, e: unknown): Promise<void> => {
    if (erased.has(dbName)) return;
    const d = (e as { details?: Record<string, unknown> } | null)?.details ?? {};
    const engine = deps.engineFor(dbName);
    if (engine && d.reason === 'device_revoked' && typeof d.deviceList === 'string') {
      let removed = false;
      try {
        removed = await engine.confirmRemoved(fromB64u(d.deviceList));
      } catch {
        removed = false;
      }
      if (erased.has(dbName)) return;
      if (removed) {
        erased.add(dbName);
        await deps.erase(dbName).catch(() => undefined);
        deps.post({ removed: true });
        return;
      }
    }
    deps.post({ signedOut: signOutReason(e as { code: string; details?: Record<string, unknown> }) });
  };

  return {
    ended(dbName, e) {
      const next = (queues.get(dbName) ?? Promise.resolve()).then(() => decide(dbName, e));
      queues.set(dbName, next);
      void next.finally(() => {
        if (queues.get(dbName) === next) queues.delete(dbName);
      });
      return next;
    },
    opened(dbName) {
      erased.delete(dbName);
    },
  };
}
