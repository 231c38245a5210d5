/**
 * The optional local passphrase lock in real Chromium against `npm run dev`: set it on the account
 * screen, raw IndexedDB then holds only wrapped key bytes (no CryptoKey that opens the records) and no
 * plaintext; a reload shows the lock screen first, a wrong passphrase is refused, the right one brings the
 * history back; "lock now" locks every tab of the browser; changing and removing the passphrase; a
 * forgotten one leads to erasing this browser's keys and the explained identity reset.
 */
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { cast, contains, PASSWORD, rawIndexedDb, register, screenshot, send, uniq, waitForText } from './browser.js';

const PASSPHRASE = 'plum tiger seven lanterns';
const NEXT_PASSPHRASE = 'quiet harbour nine kites';
const newPerson = cast(97);

async function securityTab(page: Page): Promise<void> {
  await page.goto('/account');
  await page.getByRole('tab', { name: 'Security' }).click();
  await page.getByTestId('local-lock').waitFor();
}

const lockScreen = (page: Page) => page.getByTestId('lock-screen');

async function unlock(page: Page, passphrase: string): Promise<void> {
  await page.getByLabel('Passphrase', { exact: true }).fill(passphrase);
  await page.getByRole('button', { name: 'Unlock' }).click();
}

/** No plaintext and no key that opens the records: only wrapped bytes while a passphrase is set. */
async function expectSealedWithoutKeys(page: Page, secrets: string[]): Promise<void> {
  const raw = await rawIndexedDb(page);
  expect(raw.bytes.length).toBeGreaterThan(10);
  for (const secret of secrets) {
    const needle = new TextEncoder().encode(secret);
    expect(raw.bytes.some((x) => contains(x, needle))).toBe(false);
    expect(raw.strings.some((s) => s.includes(secret))).toBe(false);
  }
  // The meta record: mode "passphrase", a salt, an iv and the wrapped key bytes — no CryptoKey at all.
  expect(raw.keys).toEqual([]);
  expect(raw.strings).toContain('passphrase');
  expect(raw.strings).toContain('wrapped');
  expect(raw.strings).not.toContain('dataKey');
  expect(raw.strings.some((s) => s.includes(PASSPHRASE))).toBe(false);
}

describe('local passphrase lock in Chromium', () => {
  it('set a passphrase, reload to the lock screen, wrong then right passphrase, lock every tab, change and remove it', async () => {
    const alice = await newPerson();
    const bob = await newPerson();
    const a = uniq('alice');
    const b = uniq('bob');
    await Promise.all([register(alice.page, a), register(bob.page, b)]);
    const page = alice.page;

    await page.getByRole('button', { name: 'New conversation' }).click();
    await page.getByRole('menuitem', { name: 'New chat' }).click();
    await page.getByRole('dialog').getByLabel('Username').fill(b);
    await page.getByRole('button', { name: 'Start chat' }).click();
    await page.waitForURL(/\/chats\/[A-Za-z0-9_-]+$/, { timeout: 30_000 });
    const conv = new URL(page.url()).pathname.split('/')[2]!;
    await send(page, 'kept behind the lock 1');
    await waitForText(page, 'kept behind the lock 1');
    await expect
      .poll(
        async () =>
          page.getByTestId('message').filter({ hasText: 'kept behind the lock 1' }).getAttribute('data-status'),
        {
          timeout: 30_000,
        },
      )
      .toMatch(/sent|delivered/);

    // Set the passphrase on the account screen (the explanation says what it protects and what a lost one costs).
    await securityTab(page);
    const section = page.getByTestId('local-lock');
    expect(await section.textContent()).toContain('If you forget it, this browser’s keys are lost.');
    await section.getByRole('button', { name: 'Set a passphrase' }).click();
    // Focus moved into the form.
    await expect.poll(() => page.evaluate(() => document.activeElement?.getAttribute('type'))).toBe('password');
    await page.getByLabel('New passphrase', { exact: true }).fill('short');
    await page.getByLabel('Confirm new passphrase').fill('short');
    await section.getByRole('button', { name: 'Set a passphrase' }).click();
    await expect.poll(() => section.getByRole('alert').textContent()).toContain('at least 8 characters');
    await page.getByLabel('New passphrase', { exact: true }).fill(PASSPHRASE);
    await page.getByLabel('Confirm new passphrase').fill(PASSPHRASE);
    await section.getByRole('button', { name: 'Set a passphrase' }).click();
    await page.getByTestId('local-lock-on').waitFor({ timeout: 30_000 });
    await screenshot(page, 'account-local-passphrase');
    await expectSealedWithoutKeys(page, ['kept behind the lock 1', a, b]);

    // A reload: the lock screen comes before anything else, whatever the route.
    await page.goto(`/chats/${conv}`);
    await lockScreen(page).waitFor({ timeout: 30_000 });
    expect(new URL(page.url()).pathname).toBe(`/chats/${conv}`);
    expect(await page.getByTestId('message-body').count()).toBe(0);
    await expect.poll(() => page.evaluate(() => document.activeElement?.getAttribute('name'))).toBe('local-passphrase');
    await screenshot(page, 'lock-screen');
    await page.emulateMedia({ colorScheme: 'dark' });
    await screenshot(page, 'lock-screen-dark');
    await page.emulateMedia({ colorScheme: 'light' });

    // Wrong passphrase: a clear error, the field focused again, still locked.
    await unlock(page, 'not the passphrase');
    await expect
      .poll(() => lockScreen(page).getByRole('alert').textContent(), { timeout: 30_000 })
      .toContain('That passphrase is not right.');
    expect(await page.getByLabel('Passphrase', { exact: true }).isEnabled()).toBe(true);
    await expect.poll(() => page.evaluate(() => document.activeElement?.getAttribute('name'))).toBe('local-passphrase');
    await screenshot(page, 'lock-screen-wrong');

    // The right one (typed, submitted with Enter): the conversation and its history are back.
    await page.getByLabel('Passphrase', { exact: true }).fill(PASSPHRASE);
    await page.getByLabel('Passphrase', { exact: true }).press('Enter');
    await waitForText(page, 'kept behind the lock 1');
    expect(await lockScreen(page).count()).toBe(0);
    await bob.page.locator(`a[href="/chats/${conv}"]`).first().waitFor({ timeout: 30_000 });
    await bob.page.locator(`a[href="/chats/${conv}"]`).first().click();
    await waitForText(bob.page, 'kept behind the lock 1');
    await send(bob.page, 'written while alice was locked');
    await waitForText(page, 'written while alice was locked');

    // Two tabs: "lock now" in one locks both; each unlocks on its own.
    const tab2 = await alice.context.newPage();
    await tab2.goto(`/chats/${conv}`);
    await lockScreen(tab2).waitFor({ timeout: 30_000 });
    await unlock(tab2, PASSPHRASE);
    await waitForText(tab2, 'written while alice was locked');
    // (No page.goto here: a reload alone locks a passphrase-protected browser.) The chat list's lock button.
    await page.getByRole('button', { name: 'Lock now' }).click();
    await lockScreen(page).waitFor({ timeout: 30_000 });
    await lockScreen(tab2).waitFor({ timeout: 30_000 });
    expect(await tab2.getByTestId('message-body').count()).toBe(0);
    await unlock(tab2, PASSPHRASE);
    await waitForText(tab2, 'kept behind the lock 1');
    await tab2.close();
    await unlock(page, PASSPHRASE);
    await waitForText(page, 'written while alice was locked');

    // Change it (current one required): afterwards only the new one unlocks.
    await page.getByRole('link', { name: 'Account & devices' }).click(); // in-app: no reload
    await page.getByRole('tab', { name: 'Security' }).click();
    await page.getByTestId('local-lock-on').waitFor({ timeout: 30_000 });
    await section.getByRole('button', { name: 'Change passphrase' }).click();
    await page.getByLabel('Current passphrase', { exact: true }).fill(PASSPHRASE);
    await page.getByLabel('New passphrase', { exact: true }).fill(NEXT_PASSPHRASE);
    await page.getByLabel('Confirm new passphrase').fill(NEXT_PASSPHRASE);
    await section.getByRole('button', { name: 'Change passphrase' }).click();
    await expect.poll(() => section.textContent(), { timeout: 30_000 }).toContain('Passphrase set.');
    await page.reload();
    await lockScreen(page).waitFor({ timeout: 30_000 });
    await unlock(page, PASSPHRASE);
    await expect
      .poll(() => lockScreen(page).getByRole('alert').textContent(), { timeout: 30_000 })
      .toContain('That passphrase is not right.');
    await unlock(page, NEXT_PASSPHRASE);
    await page.getByRole('tab', { name: 'Security' }).waitFor({ timeout: 30_000 }); // back on /account

    // Remove it (the current passphrase is required): a reload opens without asking, history intact,
    // and the store is device-bound again (non-extractable CryptoKeys in the meta record).
    await page.getByRole('tab', { name: 'Security' }).click();
    await page.getByTestId('local-lock-on').waitFor({ timeout: 30_000 });
    await section.getByRole('button', { name: 'Remove passphrase' }).click();
    await page.getByLabel('Current passphrase', { exact: true }).fill('wrong passphrase');
    await section.getByRole('button', { name: 'Remove passphrase' }).click();
    await expect
      .poll(() => section.getByRole('alert').textContent(), { timeout: 30_000 })
      .toContain('That passphrase is not right.');
    await page.getByLabel('Current passphrase', { exact: true }).fill(NEXT_PASSPHRASE);
    await section.getByRole('button', { name: 'Remove passphrase' }).click();
    await expect.poll(() => section.textContent(), { timeout: 30_000 }).toContain('Passphrase removed.');
    await page.goto(`/chats/${conv}`);
    await waitForText(page, 'written while alice was locked');
    expect(await lockScreen(page).count()).toBe(0);
    const raw = await rawIndexedDb(page);
    expect(raw.keys.length).toBeGreaterThan(0);
    expect(raw.keys.every((k) => !k.extractable)).toBe(true);
    expect(raw.strings).not.toContain('wrapped');
  }, 240_000);

  it('a forgotten passphrase: erase this browser’s keys after a warning, then sign-in explains the identity reset', async () => {
    const alice = await newPerson();
    const a = uniq('alice');
    await register(alice.page, a);
    const page = alice.page;
    await securityTab(page);
    const section = page.getByTestId('local-lock');
    await section.getByRole('button', { name: 'Set a passphrase' }).click();
    await page.getByLabel('New passphrase', { exact: true }).fill(PASSPHRASE);
    await page.getByLabel('Confirm new passphrase').fill(PASSPHRASE);
    await section.getByRole('button', { name: 'Set a passphrase' }).click();
    await page.getByTestId('local-lock-on').waitFor({ timeout: 30_000 });
    await section.getByRole('button', { name: 'Lock now' }).click();
    await lockScreen(page).waitFor({ timeout: 30_000 });

    // Another account from the lock screen; signing back in to this one meets the lock again.
    await page.getByRole('button', { name: 'Sign in to another account' }).click();
    await page.waitForURL('**/login', { timeout: 30_000 });
    expect(await page.getByLabel('Username').inputValue()).toBe('');
    await page.getByLabel('Username').fill(a);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await lockScreen(page).waitFor({ timeout: 30_000 });

    await page.getByRole('button', { name: 'Forgot the passphrase?' }).click();
    const dialog = page.getByRole('alertdialog');
    await expect.poll(() => dialog.textContent()).toContain('This cannot be undone.');
    await screenshot(page, 'lock-screen-forgot');
    await dialog.getByRole('button', { name: 'Erase keys and history' }).click();
    await page.waitForURL('**/login', { timeout: 30_000 });
    await page.getByLabel('Username').fill(a);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByTestId('device-not-linked').waitFor({ timeout: 30_000 });
    const names = (await page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name))) ?? [];
    expect(names.length).toBeLessThanOrEqual(1); // only the fresh, empty store of this sign-in attempt
  }, 240_000);
});
