/**
 * The app shell: the store, the routes (each page lazy-loaded), the security (key transparency) and offline
 * banners and toasts. Signed-in
 * routes wait for the session restore and send signed-out visitors to /login (or /register when this
 * browser never had an account). While the account's local store is passphrase-locked, only the lock
 * screen shows, whatever the route.
 * @module
 */
import { createEffect, createMemo, For, type JSX, lazy, Match, onMount, Show, Suspense, Switch } from 'solid-js';
import { Dynamic } from 'solid-js/web';
import { Toasts } from './components/Toasts.js';
import { Spinner } from './components/ui.js';
import { match, navigate, path } from './router.js';
import { StoreProvider, useStore } from './store/index.js';

const Register = lazy(() => import('./pages/Register.js'));
const Login = lazy(() => import('./pages/Login.js'));
const Home = lazy(() => import('./pages/Home.js'));
const Status = lazy(() => import('./pages/Status.js'));
const Chats = lazy(() => import('./pages/Chats.js'));
const Account = lazy(() => import('./pages/Account.js'));
const Lock = lazy(() => import('./pages/Lock.js'));
const LinkPage = lazy(() => import('./pages/Link.js'));
const Removed = lazy(() => import('./pages/Removed.js'));

interface Route {
  readonly pattern: string;
  readonly page: (p: { params: Record<string, string> }) => JSX.Element;
  readonly auth?: 'signed-in' | 'signed-out';
}

const ROUTES: readonly Route[] = [
  { pattern: '/', page: Home },
  { pattern: '/register', page: Register, auth: 'signed-out' },
  { pattern: '/login', page: Login, auth: 'signed-out' },
  { pattern: '/status', page: Status },
  { pattern: '/chats', page: Chats, auth: 'signed-in' },
  { pattern: '/chats/:id', page: Chats, auth: 'signed-in' },
  { pattern: '/chats/:id/info', page: Chats, auth: 'signed-in' },
  { pattern: '/account', page: Account, auth: 'signed-in' },
  // Linking (issue 14): no auth rule — the page signs this browser in half-way and stays for the history.
  { pattern: '/link', page: LinkPage },
  { pattern: '/removed', page: Removed },
];

/** Whether anyone ever signed in on this browser (signed-out visitors then go to "Sign in"). */
export const hadAccount = () =>
  typeof localStorage !== 'undefined' &&
  (!!localStorage.getItem('e2e-chat:account') || !!localStorage.getItem('e2e-chat:signed-in-before'));

function Loading() {
  return (
    <div class="flex h-full items-center justify-center text-slate-500 dark:text-slate-400" role="status">
      <Spinner class="mr-2" /> Loading…
    </div>
  );
}

function Routes() {
  const { state, actions } = useStore();
  const current = createMemo(() => {
    for (const r of ROUTES) {
      const params = match(r.pattern, path());
      if (params) return { route: r, params };
    }
    return null;
  });
  // A returning visitor's session is restored first (this loads the engine worker); a first visit
  // (no account in this browser) does not load the worker at all.
  onMount(() => void actions.restore());
  createEffect(() => {
    const c = current();
    if (!state.authChecked || !c || state.locked) return;
    if (c.route.auth === 'signed-in' && !state.me) navigate(hadAccount() ? '/login' : '/register', { replace: true });
    if (c.route.auth === 'signed-out' && state.me) navigate('/chats', { replace: true });
  });
  const needsWait = () => {
    const c = current();
    return !!c && c.route.auth === 'signed-in' && !state.authChecked;
  };
  return (
    <Switch>
      <Match when={state.locked}>
        <Suspense fallback={<Loading />}>
          <Lock />
        </Suspense>
      </Match>
      <Match when={!current()}>
        <main class="p-8">
          <h1 class="text-xl font-semibold">Page not found</h1>
          <a class="text-blue-600 underline dark:text-blue-400" href="/">
            Go home
          </a>
        </main>
      </Match>
      <Match when={needsWait()}>
        <Loading />
      </Match>
      <Match when={current()}>
        {(c) => (
          <Suspense fallback={<Loading />}>
            <Dynamic component={c().route.page} params={c().params} />
          </Suspense>
        )}
      </Match>
    </Switch>
  );
}

/**
 * Key-transparency warnings (store/transparency.ts): shown on every signed-in screen until dismissed, so a
 * forged key, a forked or rewritten log, or a new key for our own account cannot go unnoticed.
 */
function SecurityBanner() {
  const { state, actions } = useStore();
  return (
    <Show when={state.me && state.ktAlerts.length > 0}>
      <section aria-label="Security warnings" data-testid="kt-banner" class="bg-red-700 text-white">
        <For each={state.ktAlerts.slice(0, 3)}>
          {(a) => (
            <div role="alert" class="flex items-start gap-3 px-4 py-2 text-sm" data-kt-code={a.code}>
              <span aria-hidden="true" class="font-bold">
                ⚠
              </span>
              <p class="min-w-0 flex-1">
                <strong class="font-semibold">Security warning: </strong>
                {a.message}
              </p>
              <button
                type="button"
                class="shrink-0 rounded px-2 py-0.5 text-xs font-medium ring-1 ring-white/60 hover:bg-white/10 focus-visible:outline-2 focus-visible:outline-white"
                onClick={() => void actions.dismissKtAlert(a.id)}
              >
                Dismiss
              </button>
            </div>
          )}
        </For>
        <Show when={state.ktAlerts.length > 3}>
          <p class="px-4 pb-2 text-xs">and {state.ktAlerts.length - 3} more</p>
        </Show>
      </section>
    </Show>
  );
}

function OfflineBanner() {
  const { state } = useStore();
  return (
    <Show when={!state.browserOnline}>
      <section aria-label="Connection">
        <p
          role="status"
          class="bg-amber-500 px-4 py-1.5 text-center text-sm font-medium text-amber-950"
          data-testid="offline-banner"
        >
          You are offline. Messages will be sent when the connection is back.
        </p>
      </section>
    </Show>
  );
}

export function App() {
  return (
    <StoreProvider>
      <div class="flex h-full flex-col">
        <SecurityBanner />
        <OfflineBanner />
        <div class="min-h-0 flex-1">
          <Routes />
        </div>
      </div>
      <Toasts />
    </StoreProvider>
  );
}
