/**
 * Your data (issue 18) in Chromium, one account (and a friend with a direct chat): Account → General →
 * "Download my data" saves the server's JSON export; "Download my history…" saves this browser's history
 * encrypted with a passphrase (the file opens with the protocol core in Node; nothing of it reaches the
 * server); "Delete account…" is used from the keyboard (the form passes axe, light and dark), deletes the
 * account, erases this browser's store and shows the sign-in page; the username cannot be taken again at
 * once, and the friend's direct chat says the account was deleted (its signed leave) and turns read-only.
 * The departures the device signs are tested in web/src/engine/departures.test.ts, the server's side in
 * worker/account.test.ts and worker/account-direct.test.ts.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { openHistoryExport } from '../web/src/protocol/history-export.js';
import { expectAccessible } from './a11y.js';
import { cast, PASSWORD, register, screenshot, send, startChat, uniq, waitForText } from './browser.js';

const newPerson = cast(181);

describe('your data in the browser', () => {
  it('a person downloads their data and history, then deletes the account from the keyboard; the name stays reserved and a friend sees it deleted', async () => {
    const { page } = await newPerson();
    const a = uniq('dora');
    await register(page, a);
    // Some history: a group of one, with a note in it.
    await page.getByRole('button', { name: 'New conversation' }).click();
    await page.getByRole('menuitem', { name: 'New group' }).click();
    await page.getByLabel('Group name').fill('Notes');
    await page.getByRole('button', { name: 'Create group' }).click();
    await page.waitForURL(/\/chats\/[A-Za-z0-9_-]+$/, { timeout: 30_000 });
    const note = 'remember the milk';
    await send(page, note);
    await waitForText(page, note);
    // Someone has a direct chat with her: after the deletion it says so, signed by her device.
    const eve = await newPerson();
    await register(eve.page, uniq('eve'));
    const chat = await startChat(eve.page, a);

    await page.goto('/account');
    await page.getByRole('tab', { name: 'General' }).click();
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download my data' }).click(),
    ]);
    expect(download.suggestedFilename()).toBe(`e2e-chat-${a}-data.json`);
    const data = JSON.parse(readFileSync((await download.path())!, 'utf8')) as {
      tables: Record<string, Record<string, unknown>[]>;
    };
    expect(data.tables.users![0]).toMatchObject({ username: a, password_hash: '(withheld)' });
    expect(data.tables.devices!.length).toBe(1);

    // The history, encrypted: every request and socket frame while it is made is recorded.
    await page.getByRole('button', { name: 'Download my history…' }).click();
    const phrase = 'a long export passphrase';
    await page.getByLabel('Export passphrase').fill(phrase);
    await page.getByLabel('Repeat the passphrase').fill(phrase);
    await expectAccessible(page, 'account-history-export');
    const sent: string[] = [];
    const onRequest = (r: import('playwright-core').Request) =>
      sent.push(`${r.method()} ${r.url()} ${r.postData() ?? ''}`);
    page.on('request', onRequest);
    const [history] = await Promise.all([
      page.waitForEvent('download', { timeout: 60_000 }),
      page.getByRole('button', { name: 'Save history' }).click(),
    ]);
    expect(history.suggestedFilename()).toBe(`e2e-chat-${a}-history.e2ehist`);
    const sealed = new Uint8Array(readFileSync((await history.path())!));
    page.off('request', onRequest);
    expect(Buffer.from(sealed.subarray(0, 8)).toString()).toBe('e2e-hist');
    expect(Buffer.from(sealed).includes(note)).toBe(false);
    const doc = JSON.parse(Buffer.from(await openHistoryExport(sealed, phrase)).toString()) as {
      account: { username: string };
      conversations: { title: string; messages: { body: string }[] }[];
    };
    expect(doc.account.username).toBe(a);
    const notes = doc.conversations.filter((c) => c.title === 'Notes');
    expect(notes.map((c) => c.messages.map((m) => m.body))).toEqual([[note]]);
    // Nothing of the export went to the server: no request carried the text, the passphrase or the file.
    const salt = Buffer.from(sealed.subarray(19, 35));
    for (const r of sent)
      for (const secret of [note, phrase, salt.toString('hex'), salt.toString('base64url')])
        expect(r.includes(secret), r).toBe(false);
    await expect.poll(() => page.getByText(/Your history was downloaded, encrypted/).count()).toBe(1);

    // Keyboard only from here: Tab to "Delete account…", Enter opens the form with the password focused.
    await page.getByRole('button', { name: 'Download my data' }).focus();
    for (let i = 0; i < 5; i++) {
      await page.keyboard.press('Tab');
      if ((await page.evaluate(() => document.activeElement?.textContent?.trim())) === 'Delete account…') break;
    }
    await page.keyboard.press('Enter');
    const password = page.getByLabel('Password', { exact: true });
    await expect.poll(() => password.evaluate((el) => el === document.activeElement)).toBe(true);
    await page.keyboard.type(PASSWORD);
    const del = page.getByRole('button', { name: 'Delete my account' });
    expect(await del.isDisabled()).toBe(true); // the username is not typed yet
    await page.keyboard.press('Tab');
    await page.keyboard.type(a);
    expect(await del.isDisabled()).toBe(false);
    await expectAccessible(page, 'account-delete');
    await page.keyboard.press('Enter'); // submits the form
    await page.waitForURL('**/login', { timeout: 60_000 });
    // This browser's store is gone too.
    const dbs = await page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name));
    expect(dbs.filter((n) => n?.includes(a))).toEqual([]);

    // The name cannot be registered again right away.
    await page.goto('/register');
    await page.getByLabel('Username').fill(a);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByLabel('Confirm password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Create account' }).click();
    await expect.poll(() => page.getByText(/taken/i).count(), { timeout: 60_000 }).toBeGreaterThan(0);
    await screenshot(page, 'account-deleted-name-reserved');

    // Eve's direct chat: her app verified the signed leave and shows the account as deleted, read-only.
    await eve.page.goto(`/chats/${chat}`);
    await expect
      .poll(() => eve.page.getByTestId('info-line').allTextContents(), { timeout: 30_000 })
      .toContain(`${a} deleted their account`);
    await expect.poll(() => eve.page.getByTestId('removed-notice').textContent()).toMatch(/deleted their account/);
    expect(await eve.page.getByTestId('composer').count()).toBe(0);
    // Still named after her (from the signed title), not after eve herself.
    await expect.poll(() => eve.page.getByTestId('conversation-title').textContent()).toContain(a);
    await screenshot(eve.page, 'direct-chat-account-deleted');
  }, 300_000);
});
