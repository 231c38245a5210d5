/**
 * The app's chat-list and message-request poll: 4 s in every build (so every deployed client) and in
 * `npm run dev`; only a dev server started with E2E_CHAT_TEST_POLL_MS (the browser tests') polls faster.
 */
import { describe, expect, it } from 'vitest';
import { CLIENT_POLL_MS, DEFAULT_POLL_MS } from '../web/src/app/poll.js';
import { clientPollMsFor } from './local-env.js';

describe('client poll interval', () => {
  it('a build keeps the 4 s default even with the test variable set; so does a server without it', () => {
    expect(DEFAULT_POLL_MS).toBe(4_000);
    expect(clientPollMsFor('build', '1000')).toBeNull();
    expect(clientPollMsFor('build', undefined)).toBeNull();
    expect(clientPollMsFor('serve', undefined)).toBeNull();
    // Without the define (null in a build), the app uses its default.
    expect(CLIENT_POLL_MS).toBe(4_000);
  });

  it('only a served client takes the test value, and only a sane one (250–4000 ms)', () => {
    expect(clientPollMsFor('serve', '1000')).toBe(1000);
    expect(clientPollMsFor('serve', '250')).toBe(250);
    for (const bad of ['0', '10', '249', '4001', '99999', '1e3', ' 1000', '-500', 'abc', ''])
      expect(clientPollMsFor('serve', bad), bad).toBeNull();
  });
});
