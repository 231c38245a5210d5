/**
 * Accessibility in real Chromium: axe-core on every screen in the light and the dark theme (0 serious,
 * 0 critical — e2e/a11y.ts), and keyboard-only use of the new-chat dialog, of a conversation and of the
 * notification settings.
 * Screens with their own scenario are checked there too (the lock screen in lock.test.ts, two-step
 * verification and the key-change review in app.test.ts).
 */
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { expectAccessible } from './a11y.js';
import { cast, PASSWORD, register, uniq, waitForText } from './browser.js';

const newPerson = cast(41);

const focused = (page: Page) =>
  page.evaluate(() => {
    const el = document.activeElement as HTMLElement | null;
    return {
      tag: el?.tagName.toLowerCase() ?? '',
      label: el?.getAttribute('aria-label') ?? el?.textContent?.trim() ?? '',
      name: el?.getAttribute('name') ?? '',
      testid: el?.getAttribute('data-testid') ?? '',
    };
  });

/** Presses Tab until `pred` holds for the focused element (at most `max` times). */
async function tabTo(page: Page, pred: (f: Awaited<ReturnType<typeof focused>>) => boolean, max = 40) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    if (pred(await focused(page))) return;
  }
  throw new Error(`focus never reached the element (last: ${JSON.stringify(await focused(page))})`);
}

describe('accessibility in Chromium', () => {
  it('every screen has no serious or critical axe violation, light and dark', async () => {
    const alice = await newPerson();
    const bob = await newPerson();
    const a = uniq('alice');
    const b = uniq('bob');
    const page = alice.page;

    await page.goto('/');
    await page.getByRole('link', { name: 'Create an account' }).waitFor();
    await expectAccessible(page, 'a11y-home');
    await page.goto('/status');
    await expect.poll(() => page.getByTestId('roundtrip').textContent(), { timeout: 20_000 }).toMatch(/round trip/);
    await expectAccessible(page, 'a11y-status');
    await page.goto('/no-such-page');
    await expectAccessible(page, 'a11y-not-found');
    await page.goto('/login');
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await expectAccessible(page, 'a11y-login');
    await page.goto('/register');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByText('At least').first().waitFor();
    await expectAccessible(page, 'a11y-register-errors');

    await register(page, a);
    // Bob first tries Alice's name and a common password: both are reported on the form — the name when
    // he leaves the field, before any key is generated; the password with zxcvbn's reason as he types.
    await bob.page.goto('/register');
    await bob.page.getByLabel('Username').fill(a.toUpperCase());
    await bob.page.getByLabel('Password', { exact: true }).click();
    await bob.page.getByText('That username is taken — try another.').waitFor({ timeout: 30_000 });
    await bob.page.getByLabel('Password', { exact: true }).fill('password123');
    await bob.page.getByText('This is a commonly used password.').waitFor({ timeout: 30_000 });
    await expectAccessible(bob.page, 'a11y-register-taken-weak');
    await register(bob.page, b);
    await expectAccessible(page, 'a11y-chats-empty');

    await page.getByRole('button', { name: 'New conversation' }).click();
    await page.getByRole('menuitem', { name: 'New group' }).click();
    await page.getByRole('dialog').waitFor();
    await expectAccessible(page, 'a11y-new-group');
    await page.keyboard.press('Escape');
    await page.getByRole('button', { name: 'New conversation' }).click();
    await page.getByRole('menuitem', { name: 'New chat' }).click();
    await page.getByRole('dialog').getByLabel('Username').fill(b);
    await expectAccessible(page, 'a11y-new-chat');
    await page.getByRole('button', { name: 'Start chat' }).click();
    await page.waitForURL(/\/chats\/[A-Za-z0-9_-]+$/, { timeout: 30_000 });
    const conv = new URL(page.url()).pathname.split('/')[2]!;
    await page.getByTestId('composer').fill('hello, accessible world');
    await page.getByTestId('composer').press('Enter');
    await waitForText(page, 'hello, accessible world');
    await page.getByTestId('composer').fill('a second line of text');
    await page.getByTestId('composer').press('Enter');
    await bob.page.goto(`/chats/${conv}`);
    await waitForText(bob.page, 'a second line of text');
    await bob.page.getByTestId('composer').fill('an answer from bob');
    await bob.page.getByTestId('composer').press('Enter');
    await waitForText(page, 'an answer from bob');
    await expect
      .poll(() => page.getByTestId('message').first().getAttribute('data-status'), { timeout: 30_000 })
      .toBe('delivered');
    await expectAccessible(page, 'a11y-conversation');
    await expectAccessible(bob.page, 'a11y-conversation-received', { shots: false });
    await page.setViewportSize({ width: 390, height: 760 });
    await expectAccessible(page, 'a11y-conversation-mobile');
    await page.goto('/chats');
    await page.getByTestId('conversation-list').waitFor();
    await expectAccessible(page, 'a11y-chat-list-mobile');
    await page.setViewportSize({ width: 1280, height: 720 });

    await page.goto(`/chats/${conv}/info`);
    await page.getByTestId('member').first().waitFor();
    await expectAccessible(page, 'a11y-conversation-info');
    await page.getByTestId('member').filter({ hasText: b }).getByRole('button', { name: 'Safety number' }).click();
    await page.getByTestId('safety-number').waitFor({ timeout: 30_000 });
    await expectAccessible(page, 'a11y-safety-number');
    await page.keyboard.press('Escape');

    await page.goto('/account');
    await expect.poll(() => page.getByTestId('devices').locator('li').count(), { timeout: 30_000 }).toBe(1);
    await expectAccessible(page, 'a11y-account-devices');
    await page.getByRole('tab', { name: 'Security' }).click();
    await page.getByTestId('local-lock').waitFor();
    await expectAccessible(page, 'a11y-account-security');
    await page.getByRole('tab', { name: 'General' }).click();
    await expectAccessible(page, 'a11y-account-general');
    // Notifications (components/Notifications.tsx): reached and switched on from the keyboard (permission
    // granted up front: Chromium shows no prompt to a test), then its own axe run with both boxes on.
    await page.context().grantPermissions(['notifications']);
    await tabTo(page, (f) => f.testid === 'notifications-setting', 80);
    await page.keyboard.press('Space');
    await expect.poll(() => page.getByTestId('previews-setting').isEnabled(), { timeout: 15_000 }).toBe(true);
    expect(await page.getByTestId('notifications-setting').isChecked()).toBe(true);
    await page.keyboard.press('Tab');
    expect((await focused(page)).testid).toBe('previews-setting');
    await page.keyboard.press('Space');
    await expect.poll(() => page.getByTestId('previews-setting').isChecked()).toBe(true);
    await expectAccessible(page, 'a11y-notifications-on');

    // A browser without keys for the account.
    const elsewhere = await newPerson();
    await elsewhere.page.goto('/login');
    await elsewhere.page.getByLabel('Username').fill(a);
    await elsewhere.page.getByLabel('Password').fill(PASSWORD);
    await elsewhere.page.getByRole('button', { name: 'Sign in' }).click();
    await elsewhere.page.getByTestId('device-not-linked').waitFor({ timeout: 30_000 });
    await expectAccessible(elsewhere.page, 'a11y-device-not-linked');
  }, 300_000);

  it('keyboard only: the new-chat dialog opens on its field, Esc returns focus; a conversation is read and written without a mouse', async () => {
    const alice = await newPerson();
    const bob = await newPerson();
    const a = uniq('alice');
    const b = uniq('bob');
    await Promise.all([register(alice.page, a), register(bob.page, b)]);
    const page = alice.page;

    // Open the menu and the dialog from the keyboard; focus lands on the username field.
    await tabTo(page, (f) => f.label === 'New conversation');
    await page.keyboard.press('Enter');
    await expect.poll(async () => (await focused(page)).label).toBe('New chat');
    await page.keyboard.press('Enter');
    await page.getByRole('dialog').waitFor();
    await expect.poll(async () => (await focused(page)).name).toBe('peer');
    // Esc closes it and gives focus back to the button that opened the menu.
    await page.keyboard.press('Escape');
    await expect.poll(() => page.getByRole('dialog').count()).toBe(0);
    await expect.poll(async () => (await focused(page)).label).toBe('New conversation');

    await page.keyboard.press('Enter');
    await expect.poll(async () => (await focused(page)).label).toBe('New chat');
    await page.keyboard.press('Enter');
    await expect.poll(async () => (await focused(page)).name).toBe('peer');
    await page.keyboard.type(b);
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/chats\/[A-Za-z0-9_-]+$/, { timeout: 30_000 });
    const conv = new URL(page.url()).pathname.split('/')[2]!;
    // The composer has focus when a conversation opens; Enter sends.
    await expect.poll(async () => (await focused(page)).testid).toBe('composer');
    await page.keyboard.type('typed without a mouse');
    await page.keyboard.press('Enter');
    await waitForText(page, 'typed without a mouse');

    await bob.page.goto(`/chats/${conv}`);
    await waitForText(bob.page, 'typed without a mouse');
    // For Bob it is a message request: he accepts it from the keyboard, then answers.
    await bob.page.getByTestId('request-accept').press('Enter');
    await expect.poll(() => bob.page.getByTestId('request-bar').count(), { timeout: 30_000 }).toBe(0);
    await bob.page.getByTestId('composer').focus();
    for (let i = 1; i <= 3; i++) {
      await bob.page.keyboard.type(`reply ${i}`);
      await bob.page.keyboard.press('Enter');
    }
    await waitForText(page, 'reply 3');
    // The message list is reachable with Tab (and scrollable with the arrow keys once focused).
    await page.keyboard.press('Shift+Tab');
    await tabTo(page, (f) => f.testid === 'message-list');
    const before = await page.getByTestId('message-list').evaluate((el) => el.scrollTop);
    await page.keyboard.press('Home');
    await expect
      .poll(() => page.getByTestId('message-list').evaluate((el) => el.scrollTop))
      .toBeLessThanOrEqual(before);
    // Shift+Tab back to the conversation list, then into another screen: the account link.
    await tabTo(page, (f) => f.testid === 'composer');
    await page.keyboard.type('and back in the composer');
    await page.keyboard.press('Enter');
    await waitForText(bob.page, 'and back in the composer');
  }, 180_000);
});
