/**
 * Contacts as the engine trusts them: identity key, whether a key change blocks sending, whether the
 * user marked the current key as verified (kept in the engine's sealed store), safety numbers, and the
 * userId → username names the app has learned.
 * @module
 */
import { toB64u } from '../../protocol/bytes.js';
import type { Agent } from './agent.js';
import type { Actions, ContactState, SetState, State } from './state.js';

export function createContacts(agent: () => Agent, actions: Actions, state: State, setState: SetState): void {
  let wired = false;
  let saveTimer: ReturnType<typeof setTimeout> | undefined;
  const wire = () => {
    if (wired) return;
    wired = true;
    agent().onEvent((e) => {
      if (e.type === 'key_change') {
        void actions.loadContact(e.userId);
        if (e.blocked) actions.toast(`${actions.nameOf(e.userId)}’s safety number changed.`, 'error');
      }
      if (e.type === 'devices_changed' && state.contacts[e.userId]) void actions.loadContact(e.userId);
    });
  };

  const view = (v: {
    userId: string;
    identityKey: Uint8Array;
    blocked: boolean;
    pendingIdentityKey: Uint8Array | null;
  }): ContactState => {
    const identityKey = toB64u(v.identityKey);
    const verifiedKey = state.verified[v.userId];
    const pending = v.pendingIdentityKey ? toB64u(v.pendingIdentityKey) : null;
    return {
      userId: v.userId,
      identityKey,
      blocked: v.blocked,
      // While a change is pending, nothing is verified: the number to compare is the new one.
      verified: pending === null && verifiedKey === identityKey,
      pendingIdentityKey: pending,
      verificationLost: pending !== null && verifiedKey === identityKey,
    };
  };

  Object.assign(actions, {
    async loadPrefs() {
      wire();
      const [names, verified] = await Promise.all([
        agent().engine.getPref('names'),
        agent().engine.getPref('verified'),
      ]);
      if (names && typeof names === 'object')
        setState('names', (n) => ({ ...(names as Record<string, string>), ...n }));
      if (verified && typeof verified === 'object') setState('verified', verified as Record<string, string>);
    },
    async loadContact(userId: string, opts: { refresh?: boolean } = {}) {
      wire();
      const c = view(await (opts.refresh ? agent().engine.refreshContact(userId) : agent().engine.contact(userId)));
      setState('contacts', userId, c);
      return c;
    },
    async acceptKeyChange(userId: string) {
      const c = view(await agent().engine.acceptIdentityChange(userId));
      setState('contacts', userId, c);
    },
    async setVerified(userId: string, verified: boolean) {
      const c = state.contacts[userId] ?? (await actions.loadContact(userId));
      const before = { ...state.verified };
      setState('verified', (v) => {
        const next = { ...v };
        if (verified) next[userId] = c.identityKey;
        else delete next[userId];
        return next;
      });
      setState('contacts', userId, (x) => ({ ...x, verified }));
      try {
        await agent().engine.setPref('verified', { ...state.verified });
      } catch (e) {
        setState('verified', before);
        setState('contacts', userId, (x) => ({ ...x, verified: !verified }));
        throw e;
      }
    },
    safetyNumber: (userId: string, which: 'trusted' | 'pending' = 'trusted') =>
      agent().engine.safetyNumber(userId, which),
    async verifyKeyChange(userId: string) {
      await actions.acceptKeyChange(userId);
      await actions.setVerified(userId, true);
    },
    rememberName(userId: string, username: string) {
      if (state.names[userId] === username) return;
      setState('names', userId, username);
      if (!state.me) return;
      clearTimeout(saveTimer);
      saveTimer = setTimeout(() => void agent().engine.setPref('names', { ...state.names }), 300);
    },
    nameOf(userId: string) {
      if (state.me?.userId === userId) return state.me.username;
      return state.names[userId] ?? `user ${userId.slice(0, 6)}`;
    },
  } satisfies Partial<Actions>);
}
