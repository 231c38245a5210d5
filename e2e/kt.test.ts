/**
 * Key transparency in Chromium (issue 20): a TAMPERING server — `npm run dev` with the test-mode flag
 * E2E_CHAT_KT_TAMPER (worker/kt-tamper.ts, compiled out of production builds) — answers Bob's lookup of
 * Alice with a user identity key and device list it made up, together with the log's genuine proof for
 * Alice's real key. Bob's app must refuse: a clear error in the new-chat dialog, a security warning banner,
 * no conversation, nothing encrypted. The same app on the same server starts a chat with anyone else.
 *
 * This file starts its own dev server (the shared one must stay honest for the other browser tests).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DevServer, startDevServer } from '../scripts/dev-server.js';
import { expectAccessible } from './a11y.js';
import { cast, register, screenshot, uniq } from './browser.js';

const VICTIM_PREFIX = 'ktvictim';
let server: DevServer;
beforeAll(async () => {
  server = await startDevServer({ vars: { E2E_CHAT_KT_TAMPER: JSON.stringify({ falseKeyFor: VICTIM_PREFIX }) } });
}, 180_000);
afterAll(async () => {
  await server?.stop();
});
const newPerson = cast(20, () => server.url);

describe('key transparency in Chromium', () => {
  it('a tampering server gives Bob a false key for Alice: Bob’s app refuses it, warns, and sets nothing up', {
    timeout: 300_000,
  }, async () => {
    const alice = await newPerson();
    const bob = await newPerson();
    const carol = await newPerson();
    const a = uniq(VICTIM_PREFIX);
    const b = uniq('ktbob');
    const c = uniq('ktcarol');
    await Promise.all([register(alice.page, a), register(bob.page, b), register(carol.page, c)]);

    // Bob asks for Alice: the server answers with its own key for her (and Alice's genuine log proof).
    const page = bob.page;
    await page.getByRole('button', { name: 'New conversation' }).click();
    await page.getByRole('menuitem', { name: 'New chat' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel('Username').fill(a);
    await page.getByRole('button', { name: 'Start chat' }).click();
    const error = dialog.getByRole('alert');
    await expect.poll(() => error.textContent(), { timeout: 30_000 }).toContain('key-transparency log does not prove');
    expect(await error.textContent()).toContain(a);
    expect(await error.textContent()).toContain('It was not used');
    // The security banner names the problem, on top of every screen.
    const banner = page.getByTestId('kt-banner');
    await expect.poll(() => banner.isVisible(), { timeout: 30_000 }).toBe(true);
    // (By attribute: the open dialog hides the rest of the page from the accessibility tree.)
    expect(await banner.locator('[data-kt-code]').first().getAttribute('data-kt-code')).toBe('unproven_key');
    await screenshot(page, 'kt-refused-dialog');
    await expectAccessible(page, 'kt-refused-dialog', { shots: false });
    await page.keyboard.press('Escape');
    await expect.poll(() => dialog.count()).toBe(0);
    // No conversation was created: the list is still empty (and stays so over a reload).
    expect(new URL(page.url()).pathname).toBe('/chats');
    expect(await page.locator('a[href^="/chats/"]').count()).toBe(0);
    await page.reload();
    await page.getByText(/No conversations yet/).waitFor({ timeout: 30_000 });
    await expect.poll(() => banner.isVisible(), { timeout: 30_000 }).toBe(true);
    expect(await page.locator('a[href^="/chats/"]').count()).toBe(0);
    await screenshot(page, 'kt-warning-banner');
    await expectAccessible(page, 'kt-warning-banner', { shots: false });

    // The same app, on the same server, talks to Carol (whose key the log proves) as usual.
    await page.getByRole('button', { name: 'New conversation' }).click();
    await page.getByRole('menuitem', { name: 'New chat' }).click();
    await dialog.getByLabel('Username').fill(c);
    await page.getByRole('button', { name: 'Start chat' }).click();
    await page.waitForURL(/\/chats\/[A-Za-z0-9_-]+$/, { timeout: 30_000 });
    const composer = page.getByTestId('composer');
    await expect.poll(() => composer.isEnabled(), { timeout: 30_000 }).toBe(true);
    await composer.fill('hello carol');
    await composer.press('Enter');
    await expect
      .poll(() => page.getByTestId('message').filter({ hasText: 'hello carol' }).last().getAttribute('data-status'), {
        timeout: 30_000,
      })
      .toMatch(/sent|delivered/);

    // Dismissing the warning removes it (also from the store: it stays gone after a reload).
    await banner.getByRole('button', { name: 'Dismiss' }).first().click();
    await expect.poll(() => banner.count()).toBe(0);
    await page.reload();
    await page.getByTestId('composer').waitFor({ timeout: 30_000 });
    expect(await banner.count()).toBe(0);
  });
});
