/**
 * Browser-suite set-up: find (or install, on Debian) a system Chromium and start `npm run dev` on a free
 * port with fresh local state. Fails loudly — the browser suite is never silently skipped.
 */
import type { TestProject } from 'vitest/node';
import { ensureChromium } from '../scripts/chromium.js';
import { type DevServer, startDevServer } from '../scripts/dev-server.js';

let server: DevServer | undefined;

export default async function setup(project: TestProject) {
  const chromium = ensureChromium();
  // A loaded machine (several suites and dev servers at once) can take minutes to start Vite + workerd.
  // The app polls the chat list and message requests every second instead of 4 s on this server only (a test's
  // wait for a new chat was mostly poll time); builds and every other server keep 4 s (scripts/local-env.ts).
  server = await startDevServer({ timeoutMs: 300_000, env: { E2E_CHAT_TEST_POLL_MS: '1000' } });
  project.provide('baseUrl', server.url);
  project.provide('chromiumPath', chromium);
  project.provide('stateDir', server.stateDir);
  return async () => {
    await server?.stop();
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    baseUrl: string;
    chromiumPath: string;
    /** The dev server's local state folder (D1, R2, DOs), for tests that inspect or change it. */
    stateDir: string;
  }
}
