/**
 * The app's one store (solid-realworld style): `StoreProvider` builds a single Solid store and hands each
 * area's factory the agent (the engine worker), the shared `actions`, the state and its setter. Pages and
 * components read `state` and call `actions` through `useStore()`.
 *
 * Does NOT: talk to the network or do cryptography itself (the agent's worker does).
 * @module
 */
import { createContext, type JSX, useContext } from 'solid-js';
import { createStore } from 'solid-js/store';
import { type Agent, getAgent } from './agent.js';
import { createAttachments } from './attachments.js';
import { createContacts } from './contacts.js';
import { createConversations } from './conversations.js';
import { createDevices } from './devices.js';
import { createMessageActions } from './message-actions.js';
import { createMessages } from './messages.js';
import { createPeople } from './people.js';
import { createSession } from './session.js';
import { type Actions, initialState, type State } from './state.js';
import { createTransparency } from './transparency.js';
import { createUi } from './ui.js';

export type { Actions, State };

export interface StoreValue {
  readonly state: State;
  readonly actions: Actions;
}

const StoreContext = createContext<StoreValue>();

/** `agent` is created lazily (the worker loads only when an action needs it); tests pass a fake. */
export function StoreProvider(props: { children: JSX.Element; agent?: () => Agent }) {
  const [state, setState] = createStore<State>(initialState());
  const actions = {} as Actions;
  const agent = props.agent ?? getAgent;
  createUi(actions, state, setState);
  createSession(agent, actions, state, setState);
  createConversations(agent, actions, state, setState);
  createMessages(agent, actions, state, setState);
  createAttachments(agent, actions, state, setState);
  createMessageActions(agent, actions, state, setState);
  createContacts(agent, actions, state, setState);
  createDevices(agent, actions, state, setState);
  createPeople(agent, actions, state, setState);
  createTransparency(agent, actions, state, setState);
  return <StoreContext.Provider value={{ state, actions }}>{props.children}</StoreContext.Provider>;
}

export function useStore(): StoreValue {
  const v = useContext(StoreContext);
  if (!v) throw new Error('useStore outside StoreProvider');
  return v;
}
