/**
 * People (issue 17) in real Chromium against `npm run dev`: a profile name and picture set on the Account
 * page reach the person you message (and the server gets neither); a first message from a stranger is a
 * request that sends nothing back until accepted; another stranger is blocked and their next message never
 * shows. Screenshots light and dark, desktop and 390 px; axe on the request and profile screens.
 */
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { expectAccessible } from './a11y.js';
import { bodies, cast, openConversation, register, screenshot, startChat, uniq, waitForText } from './browser.js';

const newPerson = cast(17);

/** A 1×1 PNG (red): the app decodes, crops and re-encodes it as a JPEG avatar in the browser. */
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==',
  'base64',
);

async function send(page: Page, text: string): Promise<void> {
  const composer = page.getByTestId('composer');
  await expect.poll(() => composer.isEnabled(), { timeout: 30_000 }).toBe(true);
  await composer.fill(text);
  await composer.press('Enter');
}

const statusOf = (page: Page, text: string) =>
  page.getByTestId('message').filter({ hasText: text }).last().getAttribute('data-status');

describe('people in Chromium', () => {
  it('a profile name and picture reach the person you message; a request is accepted, another stranger is blocked and not told', {
    timeout: 240_000, // measured: 150 s at load 14, 167 s at load 28 (three registrations dominate)
  }, async () => {
    const alice = await newPerson();
    const bob = await newPerson();
    const mallory = await newPerson();
    const a = uniq('alice');
    const b = uniq('bob');
    const m = uniq('mallory');
    await Promise.all([register(alice.page, a), register(bob.page, b), register(mallory.page, m)]);

    // Alice sets her profile; what the server receives is sealed.
    const uploads: string[] = [];
    alice.page.on('request', (r) => {
      if (r.url().includes('/api/profile') || r.url().includes('/api/settings')) uploads.push(r.postData() ?? '');
    });
    await alice.page.goto('/account');
    await alice.page.getByRole('tab', { name: 'Profile' }).click();
    await alice.page.getByTestId('profile-name-input').fill('Alice Liddell');
    await alice.page.getByTestId('avatar-input').setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: PNG });
    await alice.page.getByTestId('profile-save').click();
    await alice.page.getByText('Profile saved.').waitFor({ timeout: 30_000 });
    await expectAccessible(alice.page, 'people-profile');
    expect(uploads.length).toBeGreaterThan(0);
    for (const body of uploads) expect(body).not.toContain('Alice Liddell');

    // Alice writes to Bob: for Bob it is a request; nothing goes back until he accepts.
    await alice.page.goto('/chats');
    const conv = await startChat(alice.page, b);
    await send(alice.page, 'hello bob, it is alice');
    await expect.poll(() => statusOf(alice.page, 'hello bob, it is alice'), { timeout: 30_000 }).toBe('sent');
    await openConversation(bob.page, conv);
    await waitForText(bob.page, 'hello bob, it is alice');
    await bob.page.getByTestId('request-bar').waitFor();
    expect(await bob.page.getByTestId('request-bar').textContent()).toContain(a);
    // Bob has read it, but Alice is told nothing: no delivery receipt while it is a request.
    expect(await statusOf(alice.page, 'hello bob, it is alice')).toBe('sent');
    await expectAccessible(bob.page, 'people-request');
    await bob.page.setViewportSize({ width: 390, height: 760 });
    await screenshot(bob.page, 'people-request-mobile');
    await bob.page.setViewportSize({ width: 1280, height: 720 });

    await bob.page.getByTestId('request-accept').click();
    await expect.poll(() => bob.page.getByTestId('request-bar').count(), { timeout: 30_000 }).toBe(0);
    await expect.poll(() => statusOf(alice.page, 'hello bob, it is alice'), { timeout: 30_000 }).toBe('delivered');
    // Her profile came with her message: name next to the username, and her picture.
    await expect
      .poll(() => bob.page.getByTestId('header-profile-name').textContent(), { timeout: 30_000 })
      .toBe('Alice Liddell');
    expect(await bob.page.getByTestId('conversation').locator('header [data-testid="avatar-image"]').count()).toBe(1);
    await send(bob.page, 'hi alice');
    await waitForText(alice.page, 'hi alice');
    await screenshot(bob.page, 'people-profile-shown');
    await bob.page.emulateMedia({ colorScheme: 'dark' });
    await screenshot(bob.page, 'people-profile-shown-dark');
    await bob.page.emulateMedia({ colorScheme: 'light' });

    // Mallory writes to Bob; Bob blocks her from the request.
    await mallory.page.goto('/chats');
    const spam = await startChat(mallory.page, b);
    await send(mallory.page, 'you won a prize');
    await expect.poll(() => statusOf(mallory.page, 'you won a prize'), { timeout: 30_000 }).toBe('sent');
    await bob.page.goto('/chats');
    await openConversation(bob.page, spam);
    await waitForText(bob.page, 'you won a prize');
    await bob.page.getByTestId('request-block').click();
    await bob.page.waitForURL('**/chats', { timeout: 30_000 });
    await expect.poll(() => bob.page.locator(`a[href="/chats/${spam}"]`).count(), { timeout: 30_000 }).toBe(0);
    await screenshot(bob.page, 'people-after-block');

    // Mallory's next message is accepted by the server but dropped on Bob's device; she is not told.
    await send(mallory.page, 'hello? are you there');
    await expect.poll(() => statusOf(mallory.page, 'hello? are you there'), { timeout: 30_000 }).toBe('sent');
    // The blocked conversation has no socket on Bob's device: Mallory's message reaches it by the mailbox
    // poll (every 4 s) and is dropped (engine test: "a blocked person’s messages are dropped…"). Alice's
    // later message, shown after a few polls, bounds the wait.
    await alice.page.goto(`/chats/${conv}`);
    await send(alice.page, 'marker after the block');
    await bob.page.goto(`/chats/${conv}`);
    await waitForText(bob.page, 'marker after the block', 60_000);
    await bob.page.goto(`/chats/${spam}`);
    await expect.poll(() => bodies(bob.page), { timeout: 15_000 }).toContain('you won a prize');
    expect(await bodies(bob.page)).not.toContain('hello? are you there');
    expect(await statusOf(mallory.page, 'you won a prize')).toBe('sent');
    expect(await statusOf(mallory.page, 'hello? are you there')).toBe('sent');
    // The block list on the Account page (sealed on the server, readable by Bob's devices only).
    await bob.page.goto('/account');
    await bob.page.getByRole('tab', { name: 'Profile' }).click();
    await bob.page.getByTestId('blocked').getByText(m).waitFor({ timeout: 30_000 });
    await screenshot(bob.page, 'people-blocked-list');
  });
});
