/**
 * Sign-in state: restore on load (refresh cookie, for the account last used in this browser), register
 * with visible progress, log in (password, then TOTP), identity reset, sign-out, password and TOTP.
 * The last username is remembered in localStorage only to find that account's sealed store again.
 *
 * The local passphrase lock: a restore or sign-in that finds the store locked sets `state.locked` (the app
 * then shows only the lock screen); `unlock` hands the passphrase to the worker and continues. "Lock now",
 * a re-key or erase in another tab, and an erase here all end with a fresh page: the worker (and every
 * key in it) is terminated, and so is every decrypted message the UI thread held.
 * @module
 */
import { navigate } from '../router.js';
import type { Agent } from './agent.js';
import type { Actions, SetState, State } from './state.js';

const LAST_ACCOUNT = 'e2e-chat:account';

const isLocked = (e: unknown) => (e as { code?: string } | null)?.code === 'locked';

export function createSession(agent: () => Agent, actions: Actions, state: State, setState: SetState): void {
  let progressWired = false;
  const withProgress = async <T>(fn: () => Promise<T>, step: 'prehash' | 'unlock' = 'prehash'): Promise<T> => {
    if (!progressWired) {
      progressWired = true;
      agent().onProgress((p) => setState('progress', p));
    }
    setState('progress', { step, fraction: 0 });
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
      // Another tab set, changed or removed the passphrase, locked or erased the store: this tab's
      // engine has closed; a fresh page shows the lock screen (or carries on under the new keys).
      agent().onStoreChanged(() => location.reload());
    }
    localStorage.setItem(LAST_ACCOUNT, me.username);
    setState({ me, authChecked: true });
    actions.rememberName(me.userId, me.username);
    actions.watchMessages();
    await actions.loadPrefs();
    await actions.loadConversations();
    void actions.loadLocalLock().catch(() => undefined);
  };

  Object.assign(actions, {
    async restore() {
      const username = localStorage.getItem(LAST_ACCOUNT);
      try {
        const me = username ? await agent().session.restore(username) : null;
        if (me) await signedIn(me);
      } catch (e) {
        if (isLocked(e) && username) setState('locked', { username });
        else console.error('restore failed', e);
      } finally {
        setState('authChecked', true);
      }
    },
    async register(username: string, password: string) {
      const me = await withProgress(() => agent().session.register(username, password));
      await signedIn(me);
    },
    async login(username: string, password: string) {
      try {
        const r = await withProgress(() => agent().session.login(username, password));
        if (r.status === 'ok') await signedIn(r.me);
        return r.status;
      } catch (e) {
        if (isLocked(e)) setState('locked', { username: username.normalize('NFKC').toLowerCase().trim() });
        throw e;
      }
    },
    async unlock(passphrase: string) {
      const locked = state.locked;
      if (!locked) return;
      const me = await withProgress(() => agent().session.unlock(locked.username, passphrase), 'unlock');
      if (me) {
        // Signed in first, then the lock screen goes: the route on screen (say /chats/:id) stays.
        await signedIn(me);
        setState('locked', null);
      } else {
        setState('locked', null);
        actions.toast('Unlocked. Sign in to continue.');
        navigate('/login', { replace: true });
      }
    },
    async loadLocalLock() {
      const r = await agent().session.localLock();
      setState('localPassphrase', r.passphrase);
    },
    async setLocalPassphrase(next: string | null, current?: string) {
      await withProgress(() => agent().session.setLocalPassphrase(next, current), 'unlock');
      setState('localPassphrase', next !== null);
    },
    async lockNow() {
      // Ask the worker to forget its keys and tell the other tabs, but never wait long: terminating it
      // drops the keys either way.
      await Promise.race([agent().session.lock(), new Promise((r) => setTimeout(r, 2000))]).catch(() => undefined);
      agent().terminate();
      location.reload();
    },
    otherAccount() {
      localStorage.removeItem(LAST_ACCOUNT);
      setState('locked', null);
      navigate('/login', { replace: true });
    },
    async eraseLocal() {
      const locked = state.locked;
      if (!locked) return;
      await agent().session.eraseLocal(locked.username);
      agent().terminate();
      location.assign('/login');
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
    totpEnroll: (password: string) => agent().session.totpEnroll(password),
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
