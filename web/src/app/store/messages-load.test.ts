/**
 * The conversation view's first load racing the engine: a real engine (fake server, memory store) behind
 * the real worker RPC, and the app's real message store. The engine's read of the conversation is held
 * at a gate AFTER it has taken its snapshot, so the interleaving that made Bob miss Alice's first message
 * in the browser test happens every time: the view asks for the history, the engine reads it (nothing
 * yet), the message arrives, is stored and its event reaches the page, and only then does the (stale)
 * history answer arrive.
 */
import { createStore } from 'solid-js/store';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { EngineEvent } from '../../engine/context.js';
import { memoryStore, type Store } from '../../engine/storage.js';
import { makeWorld, newClient, texts, until } from '../../engine/testing/harness.js';
import { engineClient } from '../../engine/worker-client.js';
import { type Endpoint, hostEngine } from '../../engine/worker-host.js';
import type { Agent } from './agent.js';
import { createMessages } from './messages.js';
import { type Actions, initialState, type State } from './state.js';

function endpoint(port: MessagePort): Endpoint {
  port.start();
  return {
    postMessage: (m) => port.postMessage(m),
    addEventListener: (t, l) => port.addEventListener(t, l as (ev: MessageEvent) => void),
    removeEventListener: (t, l) => port.removeEventListener(t, l as (ev: MessageEvent) => void),
  };
}

/** A store whose next plain read of `dir` waits, after reading, until released. */
function gatedStore(inner: Store) {
  let armed: string | null = null;
  let release: () => void = () => undefined;
  let reached: () => void = () => undefined;
  const hold = async () => {
    armed = null;
    reached();
    await new Promise<void>((r) => (release = r));
  };
  // A page of messages is read by gets down from the conversation's top (a list only as a fallback): the
  // first record read under the armed dir holds the read, with the value it had.
  const store: Store = {
    ...inner,
    async get(key) {
      const value = await inner.get(key);
      if (armed !== null && value !== undefined && key.startsWith(armed) && !key.slice(armed.length).includes('/'))
        await hold();
      return value;
    },
    async list(dir) {
      const rows = await inner.list(dir);
      if (dir === armed) await hold();
      return rows;
    },
  };
  return {
    store,
    /** Arms the gate; resolves once a read in `dir` has taken its snapshot and is waiting. */
    arm(dir: string): Promise<void> {
      armed = dir;
      return new Promise<void>((r) => (reached = r));
    },
    release: () => release(),
  };
}

/**
 * A signed-in page: `engine` behind the real worker RPC (a MessageChannel), the app's message store on
 * top; `arrived` records every engine event the page received.
 */
function page(engine: Parameters<typeof hostEngine>[0]) {
  const { port1, port2 } = new MessageChannel();
  const unhost = hostEngine(engine, endpoint(port1));
  const client = engineClient(endpoint(port2));
  const arrived: EngineEvent[] = [];
  client.on((e) => arrived.push(e));
  const agent = { engine: client, onEvent: (l: (e: EngineEvent) => void) => client.on(l) } as unknown as Agent;
  const [state, setState] = createStore<State>(initialState());
  const actions = {} as Actions;
  createMessages(() => agent, actions, state, setState);
  actions.watchMessages();
  return {
    state,
    actions,
    arrived,
    close: () => {
      unhost();
      port1.close();
      port2.close();
    },
  };
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('message store: the first load of a conversation races its first message', () => {
  it('a message stored and announced while the view loads the conversation is shown', async () => {
    vi.stubGlobal('document', { visibilityState: 'visible' });
    vi.stubGlobal('BroadcastChannel', undefined); // one tab
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const gate = gatedStore(memoryStore());
    const bob = await newClient(w, 'bob', 'bob-1', { store: gate.store });

    // Alice starts the conversation and writes first (a prekey message); Bob has no socket yet.
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect([conv]);
    await alice.engine.sendText(conv, 'before the reset');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'queued for bob');

    // Bob's page: the engine behind the worker RPC, the app's message store on top.
    const { state, actions, arrived, close } = page(bob.engine);

    // Bob opens the conversation as soon as it is listed: the view loads while the socket delivers.
    actions.setActive(conv);
    const snapshot = gate.arm(`msg/${conv}/`);
    const loading = actions.loadMessages(conv);
    await snapshot; // the engine has read the (still empty) history
    await bob.engine.connect([conv]);
    await until(
      () => arrived.some((e) => e.type === 'message_added' && e.message.body === 'before the reset'),
      'the message event reached the page',
    );
    expect(await texts(bob.engine, conv)).toEqual(['before the reset']); // stored by the engine
    gate.release();
    await loading;

    expect((state.messages[conv] ?? []).map((m) => m.body)).toEqual(['before the reset']);
    expect(state.last[conv]?.body).toBe('before the reset');

    close();
    alice.engine.close();
    bob.engine.close();
  });

  it('the first message of a new conversation stays on screen when the second arrives', async () => {
    // The view has loaded the (still empty) conversation; then the first two messages arrive. The first
    // one's object was both in the list and the chat-list preview (state.last); setting the preview to the
    // second merged the second into that shared object (Solid merges an object set over an object), so the
    // first message turned into a copy of the second and left the list — a reload showed both.
    vi.stubGlobal('document', { visibilityState: 'visible' });
    vi.stubGlobal('BroadcastChannel', undefined);
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });

    const { state, actions, close } = page(bob.engine);
    actions.setActive(conv);
    await actions.loadMessages(conv);
    expect(state.messages[conv]).toEqual([]);

    await alice.engine.connect([conv]);
    await alice.engine.sendText(conv, 'first');
    await alice.engine.sendText(conv, 'second');
    await bob.engine.connect([conv]);
    await until(() => (state.messages[conv] ?? []).some((m) => m.body === 'second'), 'the second message shown');

    expect((state.messages[conv] ?? []).map((m) => m.body)).toEqual(['first', 'second']);
    expect(state.last[conv]?.body).toBe('second');
    expect(await texts(bob.engine, conv)).toEqual(['first', 'second']);

    close();
    alice.engine.close();
    bob.engine.close();
  });

  it('a newer state announced while an open conversation is re-read is not overwritten by the older read', async () => {
    vi.stubGlobal('document', { visibilityState: 'visible' });
    vi.stubGlobal('BroadcastChannel', undefined);
    const w = await makeWorld();
    const gate = gatedStore(memoryStore());
    const alice = await newClient(w, 'alice', 'alice-1', { store: gate.store });
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });

    const { state, actions, arrived, close } = page(alice.engine);
    actions.setActive(conv);
    await actions.loadMessages(conv);

    await alice.engine.connect([conv]);
    const sent = await alice.engine.sendText(conv, 'read me');
    const statusOf = () => state.messages[conv]?.find((m) => m.clientId === sent.clientId)?.status;
    await until(() => statusOf() === 'sent', 'accepted');

    // The view re-reads the conversation (reopened, or another tab changed it); Bob's receipt lands meanwhile.
    const snapshot = gate.arm(`msg/${conv}/`);
    const loading = actions.loadMessages(conv);
    await snapshot; // the engine read the message as 'sent'
    await bob.engine.connect([conv]);
    await until(
      () =>
        arrived.some(
          (e) =>
            e.type === 'message_updated' && e.message.clientId === sent.clientId && e.message.status === 'delivered',
        ),
      'the delivered event reached the page',
    );
    gate.release();
    await loading;

    expect(statusOf()).toBe('delivered');
    expect((await alice.engine.messages(conv)).find((m) => m.clientId === sent.clientId)?.status).toBe('delivered');

    close();
    alice.engine.close();
    bob.engine.close();
  });
});
