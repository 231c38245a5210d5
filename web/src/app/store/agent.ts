/**
 * The UI's one connection to the outside world: the engine worker (engine.worker.ts), created on first
 * use, spoken to through the engine's worker-client (messages, conversations, contacts) and the session
 * RPC (sign-in, account). Nothing on the UI thread does cryptography or holds a token.
 *
 * Does NOT: restart a crashed worker (a reload does).
 * @module
 */
import type { EngineEvent } from '../../engine/context.js';
import { type EngineClient, engineClient } from '../../engine/worker-client.js';
import { type Progress, type SessionApi, sessionClient } from '../session-api.js';

export interface Agent {
  readonly engine: EngineClient;
  readonly session: SessionApi;
  onEvent(listener: (e: EngineEvent) => void): () => void;
  onProgress(listener: (p: Progress) => void): () => void;
  /** The server ended the session for good (refresh refused: signed out elsewhere, device revoked). */
  onSignedOut(listener: () => void): void;
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
  const signedOut = new Set<() => void>();
  worker.addEventListener('message', (ev) => {
    if ((ev.data as { signedOut?: boolean } | null)?.signedOut) for (const l of signedOut) l();
  });
  agent = {
    engine,
    session,
    onEvent: (l) => engine.on(l),
    onProgress(l) {
      progress.add(l);
      return () => progress.delete(l);
    },
    onSignedOut: (l) => void signedOut.add(l),
  };
  return agent;
}
