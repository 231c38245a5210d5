/**
 * The UI's one connection to the outside world: the engine worker (engine.worker.ts), created on first
 * use, spoken to through the engine's worker-client (messages, conversations, contacts) and the session
 * RPC (sign-in, account). Nothing on the UI thread does cryptography or holds a token.
 *
 * `terminate` ends the worker for good (locking the local store: the keys in its memory go with it); every
 * pending call then rejects with code `locked`, and the next `getAgent` starts a fresh worker.
 *
 * Does NOT: restart a crashed worker (a reload does).
 * @module
 */
import type { EngineEvent } from '../../engine/context.js';
import { type EngineClient, engineClient } from '../../engine/worker-client.js';
import { AppError, type LinkProgressView, type Progress, type SessionApi, sessionClient } from '../session-api.js';

/** What another tab did to the store this tab's engine uses (see engine.worker.ts). */
export type StoreNotice = 'rekeyed' | 'locked' | 'erased';

export interface Agent {
  readonly engine: EngineClient;
  readonly session: SessionApi;
  onEvent(listener: (e: EngineEvent) => void): () => void;
  onProgress(listener: (p: Progress) => void): () => void;
  /**
   * The server ended the session for good (refresh refused or a request answered `session_revoked`), with
   * why: identity_reset, device_revoked, password_changed, logout_all, signed_out_by_user, logout,
   * refresh_reuse, refresh_reused, refresh_expired, invalid_refresh.
   */
  onSignedOut(listener: (reason: string) => void): void;
  /** Another tab re-keyed, locked or erased the store: this tab's engine has closed. */
  onStoreChanged(listener: (notice: StoreNotice) => void): void;
  /** Linking progress: this browser being linked (`in`) or linking another device (`out`). */
  onLink(listener: (side: 'in' | 'out', p: LinkProgressView) => void): void;
  /** This device was removed from the account (checked against a signed list) and its store erased. */
  onRemoved(listener: () => void): void;
  /** Terminates the worker (and with it every key in its memory). */
  terminate(): void;
}

let agent: Agent | undefined;

export function getAgent(): Agent {
  if (agent) return agent;
  const worker = new Worker(new URL('../engine.worker.ts', import.meta.url), { type: 'module', name: 'engine' });
  const progress = new Set<(p: Progress) => void>();
  const engine = engineClient(worker);
  const session = sessionClient(worker, (p) => {
    for (const l of progress) l(p);
  });
  const signedOut = new Set<(reason: string) => void>();
  const storeChanged = new Set<(n: StoreNotice) => void>();
  const link = new Set<(side: 'in' | 'out', p: LinkProgressView) => void>();
  const removed = new Set<() => void>();
  worker.addEventListener('message', (ev) => {
    const d = ev.data as {
      signedOut?: string;
      storeChanged?: StoreNotice;
      link?: LinkProgressView;
      linkOut?: LinkProgressView;
      removed?: boolean;
    } | null;
    if (typeof d?.signedOut === 'string') for (const l of signedOut) l(d.signedOut);
    if (d?.storeChanged) for (const l of storeChanged) l(d.storeChanged);
    if (d?.link) for (const l of link) l('in', d.link);
    if (d?.linkOut) for (const l of link) l('out', d.linkOut);
    if (d?.removed) for (const l of removed) l();
  });
  const self: Agent = {
    engine,
    session,
    onEvent: (l) => engine.on(l),
    onProgress(l) {
      progress.add(l);
      return () => progress.delete(l);
    },
    onSignedOut: (l) => void signedOut.add(l),
    onStoreChanged: (l) => void storeChanged.add(l),
    onLink: (l) => void link.add(l),
    onRemoved: (l) => void removed.add(l),
    terminate() {
      worker.terminate();
      const gone = new AppError('locked', 'the local store is locked');
      engine.dispose(gone);
      session.dispose(gone);
      if (agent === self) agent = undefined;
    },
  };
  agent = self;
  return agent;
}
