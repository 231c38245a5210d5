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
import { errorLabel } from '../../engine/context.js';
import { navigate } from '../router.js';
import type { Agent } from './agent.js';
import type { Actions, SetState, State } from './state.js';

const LAST_ACCOUNT = 'e2e-chat:account';
/** Set at the first sign-in and kept after signing out: this browser goes to "Sign in", not "Create". */
export const KNOWN_BROWSER = 'e2e-chat:signed-in-before';
/** Why the server signed this browser out (read and cleared by the sign-in screen). */
export const SIGNED_OUT_REASON = 'e2e-chat:signed-out-reason';

/** What the sign-in screen says after the server ended this browser's session (null: nothing to say). */
export function signedOutText(reason: string | null): string | null {
  switch (reason) {
    case null:
    case 'invalid_refresh': // no session to end (never signed in here, or signed out here)
      return null;
    case 'identity_reset':
      return 'You were signed out because your account’s identity was reset on another device. The keys in this browser no longer work; your contacts see a new safety number.';
    case 'device_revoked':
      return 'You were signed out because this browser was removed from your account on another device.';
    case 'password_changed':
      return 'You were signed out because your password was changed on another device. Sign in with the new password.';
    case 'logout_all':
      return 'You were signed out because someone chose “Sign out everywhere” on one of your devices.';
    case 'signed_out_by_user':
      return 'You were signed out of this browser from another of your devices.';
    case 'logout':
      return 'You signed out (in another tab of this browser).';
    case 'refresh_reuse':
    case 'refresh_reused':
      return 'You were signed out to be safe: this sign-in was used from somewhere else at the same time. Sign in again.';
    case 'refresh_expired':
      return 'Your session expired. Sign in again.';
    default:
      return 'You were signed out. Sign in again.';
  }
}

const isLocked = (e: unknown) => (e as { code?: string } | null)?.code === 'locked';

export function createSession(agent: () => Agent, actions: Actions, state: State, setState: SetState): void {
  let progressWired = false;
  const withProgress = async <T>(fn: () => Promise<T>, step: 'prehash' | 'unlock' | 'seal' = 'prehash'): Promise<T> => {
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

  let removalWired = false;
  /** This device removed from the account (verified in the worker, store already erased): say so. */
  const wireRemoval = () => {
    if (removalWired) return;
    removalWired = true;
    agent().onRemoved(() => {
      localStorage.removeItem(LAST_ACCOUNT);
      // The store is erased: a restore or sign-in it interrupted fails as "locked", but there is nothing
      // left to unlock — the removed screen shows, never the lock screen over it.
      setState({ me: null, removed: true, link: null, locked: null });
      navigate('/removed', { replace: true });
    });
  };

  let watching = false;
  /** Listens for the server ending the session (also during a restore, so its reason is not lost). */
  const watch = () => {
    if (watching) return;
    watching = true;
    agent().onSignedOut((reason) => {
      if (signedOutText(reason) === null) return;
      sessionStorage.setItem(SIGNED_OUT_REASON, reason);
      if (!state.me) return;
      // A fresh page on the sign-in screen: the engine and every decrypted message go away.
      location.assign('/login');
    });
    // Another tab set, changed or removed the passphrase, locked or erased the store: this tab's
    // engine has closed; a fresh page shows the lock screen (or carries on under the new keys).
    agent().onStoreChanged(() => location.reload());
  };
  const signedIn = async (me: NonNullable<State['me']>) => {
    wireRemoval();
    watch();
    sessionStorage.removeItem(SIGNED_OUT_REASON);
    localStorage.setItem(KNOWN_BROWSER, '1');
    localStorage.setItem(LAST_ACCOUNT, me.username);
    setState({ me, authChecked: true });
    actions.rememberName(me.userId, me.username);
    actions.watchMessages();
    await actions.loadPrefs();
    // Requests and blocks come from the sealed settings: pulled alongside (a change reloads the list).
    void actions.loadPeople().catch(() => undefined);
    await actions.loadKtAlerts();
    await actions.loadConversations();
    void actions.loadLocalLock().catch(() => undefined);
  };

  Object.assign(actions, {
    async restore() {
      const username = localStorage.getItem(LAST_ACCOUNT);
      if (username) wireRemoval();
      try {
        if (username) watch();
        const me = username ? await agent().session.restore(username) : null;
        if (me) await signedIn(me);
      } catch (e) {
        if (!isLocked(e)) console.error('restore failed', errorLabel(e));
        else if (username && !state.removed) setState('locked', { username });
      } finally {
        setState('authChecked', true);
      }
    },
    usernameAvailable: (username: string) => agent().session.usernameAvailable(username),
    async linkedAs(me: NonNullable<State['me']>) {
      await signedIn(me);
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
    exportServerData: () => agent().session.exportServerData(),
    exportHistory: (p: { passphrase?: string }) => withProgress(() => agent().session.exportHistory(p), 'seal'),
    async deleteAccount(p: { password: string; code?: string; recoveryCode?: string }) {
      await withProgress(() => agent().session.deleteAccount(p));
      localStorage.removeItem(LAST_ACCOUNT);
      agent().terminate();
      location.assign('/login');
    },
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
