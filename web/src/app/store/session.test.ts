/**
 * The session store when this device is removed while a page is restoring: the worker verifies the removal,
 * erases the store and says so, and the restore it interrupted then fails as "locked" (its store is gone).
 * The removed screen must win: the lock screen over /removed would ask for a passphrase of a store that no
 * longer exists (the browser test once saw /removed with no removed screen after a signed-out reload).
 * The agent is a stand-in with the real listener shapes; state and actions are the app's own.
 */
import { createStore } from 'solid-js/store';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Agent } from './agent.js';
import { createSession } from './session.js';
import { type Actions, initialState, type State } from './state.js';

// The router is JSX (the unit project does not compile it): its navigate moves `path` here.
let path = '/login';
vi.mock('../router.js', () => ({
  navigate: (to: string) => {
    path = to;
  },
}));

function storage(): Storage {
  const m = new Map<string, string>();
  return {
    get length() {
      return m.size;
    },
    clear: () => m.clear(),
    getItem: (k) => m.get(k) ?? null,
    key: (i) => [...m.keys()][i] ?? null,
    removeItem: (k) => void m.delete(k),
    setItem: (k, v) => void m.set(k, String(v)),
  };
}

const lockedError = () => Object.assign(new Error('the local store is locked'), { code: 'locked' });

/** An agent whose restore runs `during(removed listeners)` and then fails as "locked". */
function agentWhoseRestore(during: (fireRemoved: () => void) => Promise<void>) {
  const removed: (() => void)[] = [];
  const fireRemoved = () => {
    for (const l of removed) l();
  };
  const agent = {
    onRemoved: (l: () => void) => void removed.push(l),
    onSignedOut: () => undefined,
    onStoreChanged: () => undefined,
    onProgress: () => () => undefined,
    session: {
      async restore() {
        await during(fireRemoved);
        throw lockedError();
      },
    },
  } as unknown as Agent;
  return { agent, fireRemoved };
}

function session(agent: Agent) {
  const [state, setState] = createStore<State>(initialState());
  const actions = {} as Actions;
  createSession(() => agent, actions, state, setState);
  return { state, actions };
}

describe('session: removal against the lock screen', () => {
  beforeEach(() => {
    path = '/login';
    vi.stubGlobal('localStorage', storage());
    vi.stubGlobal('sessionStorage', storage());
    vi.stubGlobal('location', { pathname: '/login', assign: vi.fn(), reload: vi.fn() });
    localStorage.setItem('e2e-chat:account', 'alice');
  });
  afterEach(() => vi.unstubAllGlobals());

  it('a device removed while its page restores shows the removed screen, not the lock screen', async () => {
    const { agent } = agentWhoseRestore(async (fireRemoved) => fireRemoved());
    const { state, actions } = session(agent);
    await actions.restore();
    expect(state.removed).toBe(true);
    expect(state.locked).toBeNull();
    expect(state.authChecked).toBe(true);
    expect(path).toBe('/removed');
    expect(localStorage.getItem('e2e-chat:account')).toBeNull();
  });

  it('a removal that arrives after a restore showed the lock screen takes the lock screen away', async () => {
    let fire: () => void = () => undefined;
    const { agent } = agentWhoseRestore(async (fireRemoved) => {
      fire = fireRemoved;
    });
    const { state, actions } = session(agent);
    await actions.restore();
    expect(state.locked).toEqual({ username: 'alice' });
    fire();
    expect(state.removed).toBe(true);
    expect(state.locked).toBeNull();
    expect(path).toBe('/removed');
  });
});
