/**
 * Sign-in state: restore on load (refresh cookie, for the account last used in this browser), register
 * with visible progress, log in (password, then TOTP), identity reset, sign-out, password and TOTP.
 * The last username is remembered in localStorage only to find that account's sealed store again.
 * @module
 */
import type { Agent } from './agent.js';
import type { Actions, SetState, State } from './state.js';

const LAST_ACCOUNT = 'e2e-chat:account';

export function createSession(agent: () => Agent, actions: Actions, _state: State, setState: SetState): void {
  let progressWired = false;
  const withProgress = async <T>(fn: () => Promise<T>): Promise<T> => {
    if (!progressWired) {
      progressWired = true;
      agent().onProgress((p) => setState('progress', p));
    }
    setState('progress', { step: 'prehash', fraction: 0 });
    try {
      return await fn();
    } finally {
      setState('progress', null);
    }
  };

  let watching = false;
  const signedIn = async (me: NonNullable<State['me']>) => {
    if (!watching) {
      watching = true;
      agent().onSignedOut(() => {
        actions.toast('You were signed out.', 'error');
        setState('me', null);
      });
    }
    localStorage.setItem(LAST_ACCOUNT, me.username);
    setState({ me, authChecked: true });
    actions.rememberName(me.userId, me.username);
    actions.watchMessages();
    await actions.loadPrefs();
    await actions.loadConversations();
  };

  Object.assign(actions, {
    async restore() {
      const username = localStorage.getItem(LAST_ACCOUNT);
      try {
        const me = username ? await agent().session.restore(username) : null;
        if (me) await signedIn(me);
      } catch (e) {
        console.error('restore failed', e);
      } finally {
        setState('authChecked', true);
      }
    },
    async register(username: string, password: string) {
      const me = await withProgress(() => agent().session.register(username, password));
      await signedIn(me);
    },
    async login(username: string, password: string) {
      const r = await withProgress(() => agent().session.login(username, password));
      if (r.status === 'ok') await signedIn(r.me);
      return r.status;
    },
    async loginSecondFactor(p: { code?: string; recoveryCode?: string }) {
      const me = await agent().session.loginSecondFactor(p);
      await signedIn(me);
    },
    async resetIdentity(p: { username: string; password: string; code?: string; recoveryCode?: string }) {
      const me = await withProgress(() => agent().session.resetIdentity(p));
      await signedIn(me);
    },
    async logout(everywhere = false) {
      try {
        await (everywhere ? agent().session.logoutAll() : agent().session.logout());
      } finally {
        localStorage.removeItem(LAST_ACCOUNT);
        // A fresh page: the worker, its engine and every decrypted message in memory go away.
        location.assign('/login');
      }
    },
    changePassword: (current: string, next: string) => agent().session.changePassword(current, next),
    totpEnroll: () => agent().session.totpEnroll(),
    async totpConfirm(code: string) {
      const r = await agent().session.totpConfirm(code);
      setState('me', (me) => (me ? { ...me, totpEnabled: true } : me));
      return r.recoveryCodes;
    },
    async totpDisable(code: string) {
      await agent().session.totpDisable(code);
      setState('me', (me) => (me ? { ...me, totpEnabled: false } : me));
    },
  } satisfies Partial<Actions>);
}
