/**
 * How often the app polls the chat list (while visible) and the mailbox of message requests (which get no
 * socket until accepted): 4 s. Built in (vite.config.ts `define`, scripts/local-env.ts `clientPollMsFor`):
 * every `vite build` — so every deployed client — and `npm run dev` use 4 s; only the dev server the browser
 * tests start (e2e/global-setup.ts) polls faster, so a test's wait for a new chat is not mostly poll time.
 */
declare const __CLIENT_POLL_MS__: number;

export const DEFAULT_POLL_MS = 4_000;

export const CLIENT_POLL_MS: number =
  typeof __CLIENT_POLL_MS__ === 'number' && __CLIENT_POLL_MS__ > 0 ? __CLIENT_POLL_MS__ : DEFAULT_POLL_MS;
