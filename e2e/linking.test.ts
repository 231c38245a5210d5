/**
 * Linking a device in real Chromium (issue 14), three browser profiles against `npm run dev`: Alice
 * registers in A and chats with Bob (C); she links B by the pasted code; her history shows in B; Bob's next
 * message reaches A and B; B's message shows in A as Alice's own; the Alice↔Bob safety number is the same
 * before and after; A removes B; B shows the removed screen with its store erased; Bob's next message
 * reaches only A. Screenshots of the link screens are written to test-artifacts/screenshots/; the link screens,
 * Account → Devices and the removed screen are checked with axe (light + dark) on the way.
 */
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { expectAccessible } from './a11y.js';
import {
  bodies,
  cast,
  openConversation,
  PASSWORD,
  rawIndexedDb,
  register,
  safetyNumberWith,
  screenshot,
  send,
  startChat,
  uniq,
  waitForText,
} from './browser.js';

const newPerson = cast(14);

async function safetyNumber(page: Page, conversationId: string, username: string): Promise<string> {
  const digits = await safetyNumberWith(page, conversationId, username);
  await page.keyboard.press('Escape');
  return digits;
}

describe('linking a device in Chromium', () => {
  it('Alice links a second browser by the pasted code: history, both devices receive, own messages, same safety number, removal', async () => {
    const A = await newPerson();
    const B = await newPerson();
    const C = await newPerson();
    const alice = uniq('alice');
    const bob = uniq('bob');
    await Promise.all([register(A.page, alice), register(C.page, bob)]);
    const conv = await startChat(A.page, bob);
    await send(A.page, 'history one from A');
    await waitForText(A.page, 'history one from A');
    await openConversation(C.page, conv);
    await waitForText(C.page, 'history one from A');
    // For Bob, Alice's first chat is a message request (#17): he accepts before answering.
    await C.page.getByTestId('request-accept').click();
    await expect.poll(() => C.page.getByTestId('request-bar').count(), { timeout: 30_000 }).toBe(0);
    await send(C.page, 'history two from Bob');
    await waitForText(A.page, 'history two from Bob');
    const before = await safetyNumber(A.page, conv, bob);
    expect(before.replace(/\D/g, '')).toHaveLength(60);

    // B: the sign-in screen offers linking; the code is shown as QR and as text.
    await B.page.goto('/login');
    await B.page.getByTestId('link-instead').click();
    await B.page.waitForURL('**/link');
    const codeBox = B.page.getByTestId('link-code');
    await codeBox.waitFor({ timeout: 60_000 });
    const code = (await codeBox.inputValue()).trim();
    expect(code.startsWith('e2echat-link:')).toBe(true);
    await expect.poll(() => B.page.getByRole('img', { name: 'Link code for this browser' }).count()).toBe(1);
    await expectAccessible(B.page, 'link-new-device-code'); // axe, light + dark, with screenshots
    // Review R9: a clipboard write the browser refuses says so (never "Copied"), and the code is selected.
    await B.page.evaluate(() => {
      navigator.clipboard.writeText = () => Promise.reject(new DOMException('denied', 'NotAllowedError'));
    });
    await B.page.getByRole('button', { name: 'Copy code' }).click();
    await B.page.getByTestId('copy-failed').waitFor({ timeout: 10_000 });
    expect(await B.page.getByRole('button', { name: 'Copied' }).count()).toBe(0);
    const selected = await codeBox.evaluate((t) => {
      const a = t as HTMLTextAreaElement;
      return a.value.slice(a.selectionStart, a.selectionEnd).trim();
    });
    expect(selected).toBe(code);

    // A: Account → Devices → Link a new device; a wrong code first, then the real one.
    await A.page.goto('/account');
    await A.page.getByTestId('link-new-device-button').click();
    const dialog = A.page.getByRole('dialog');
    await dialog.getByTestId('paste-code').fill('hello, not a code');
    await dialog.getByRole('button', { name: 'Continue' }).click();
    await expect.poll(() => dialog.getByRole('alert').textContent()).toContain('not a link code');
    await dialog.getByTestId('paste-code').fill(code);
    await screenshot(A.page, 'link-device-paste');
    await expectAccessible(A.page, 'link-device-code'); // the scan-or-paste step (ScanOrPaste), light + dark
    // From the keyboard: the field's Tab goes to Continue, Enter submits the code.
    await dialog.getByTestId('paste-code').focus();
    await A.page.keyboard.press('Tab');
    expect(await dialog.getByRole('button', { name: 'Continue' }).evaluate((b) => b === document.activeElement)).toBe(
      true,
    );
    await A.page.keyboard.press('Enter');
    await dialog.getByTestId('device-name').fill('Laptop');
    expect(await dialog.getByTestId('link-warning').textContent()).toContain('will be able to read your new messages');
    expect(await dialog.getByTestId('send-history').isChecked()).toBe(true);
    await expectAccessible(A.page, 'link-device-confirm');
    await dialog.getByTestId('confirm-link').click();
    await dialog.getByTestId('link-out-done').waitFor({ timeout: 90_000 });
    await screenshot(A.page, 'link-device-done');

    // B: linked, history imported, then the chats.
    await B.page.getByTestId('link-done').waitFor({ timeout: 90_000 });
    expect(await B.page.getByTestId('link-done').textContent()).toContain('2 messages');
    await screenshot(B.page, 'link-new-device-done');
    await B.page.getByRole('button', { name: 'Open your chats' }).click();
    await openConversation(B.page, conv);
    await waitForText(B.page, 'history one from A');
    await waitForText(B.page, 'history two from Bob');
    const own = B.page.getByTestId('message').filter({ hasText: 'history one from A' });
    expect(await own.getAttribute('data-outgoing')).toBe('true');

    // Bob's next message reaches both of Alice's devices.
    await C.page.goto(`/chats/${conv}`);
    await send(C.page, 'to both of you');
    await A.page.goto(`/chats/${conv}`);
    await waitForText(A.page, 'to both of you', 60_000);
    await waitForText(B.page, 'to both of you', 60_000);
    // Bob's conversation says, quietly, that Alice linked a device (no key-change warning).
    const line = C.page.getByTestId('info-line').filter({ hasText: 'linked a new device' });
    await expect.poll(() => line.count(), { timeout: 30_000 }).toBe(1);
    expect(await C.page.getByTestId('key-change').count()).toBe(0);
    await screenshot(C.page, 'link-info-line');

    // B's message shows in A as Alice's own, and reaches Bob.
    await send(B.page, 'from the laptop');
    await waitForText(A.page, 'from the laptop', 60_000);
    expect(
      await A.page.getByTestId('message').filter({ hasText: 'from the laptop' }).getAttribute('data-outgoing'),
    ).toBe('true');
    await waitForText(C.page, 'from the laptop', 60_000);
    await screenshot(A.page, 'link-own-message-on-other-device');

    // The Alice↔Bob safety number did not change, and B computes the same one.
    expect(await safetyNumber(A.page, conv, bob)).toBe(before);
    expect(await safetyNumber(B.page, conv, bob)).toBe(before);
    expect(await safetyNumber(C.page, conv, alice)).toBe(before);

    // Devices: both listed, this one marked, the name readable.
    await A.page.goto('/account');
    await expect.poll(() => A.page.getByTestId('device').count(), { timeout: 30_000 }).toBe(2);
    expect(await A.page.getByTestId('devices').textContent()).toContain('Laptop');
    expect(await A.page.getByTestId('devices').textContent()).toContain('This device');
    await expectAccessible(A.page, 'devices');

    // Review R13: B signs out (its keys and history stay) and starts "link instead" again. Nothing is deleted
    // unasked: A's link is refused, B's page says whose data is here; B signs in instead and has its history.
    await B.page.goto('/account');
    await B.page.getByRole('tab', { name: 'General' }).click();
    await B.page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await B.page.waitForURL('**/login', { timeout: 30_000 });
    await B.page.getByTestId('link-instead').click();
    await B.page.waitForURL('**/link');
    await codeBox.waitFor({ timeout: 60_000 });
    const again = (await codeBox.inputValue()).trim();
    await A.page.getByTestId('link-new-device-button').click();
    await dialog.getByTestId('paste-code').fill(again);
    await dialog.getByRole('button', { name: 'Continue' }).click();
    await dialog.getByTestId('device-name').fill('Again');
    await dialog.getByTestId('confirm-link').click();
    const occupied = B.page.getByTestId('link-local-data');
    await occupied.waitFor({ timeout: 60_000 });
    expect(await occupied.textContent()).toContain(`keys and messages of “${alice}”`);
    // A is told the new device stopped linking.
    await expect.poll(() => dialog.getByRole('alert').textContent(), { timeout: 30_000 }).toContain('stopped linking');
    await dialog.getByRole('button', { name: 'Close', exact: true }).last().click();
    await expect.poll(() => dialog.count(), { timeout: 10_000 }).toBe(0);
    await B.page.getByRole('button', { name: 'Sign in instead' }).click();
    await B.page.waitForURL('**/login', { timeout: 30_000 });
    await B.page.getByLabel('Username').fill(alice);
    await B.page.getByLabel('Password').fill(PASSWORD);
    await B.page.getByRole('button', { name: 'Sign in' }).click();
    await B.page.waitForURL('**/chats', { timeout: 30_000 });
    await openConversation(B.page, conv);
    await waitForText(B.page, 'from the laptop');
    expect(await A.page.getByTestId('device').count()).toBe(2);

    // A removes B: B shows the removed screen and erases its store.
    await A.page.getByRole('button', { name: 'Remove Laptop' }).click();
    await A.page.getByRole('alertdialog').getByRole('button', { name: 'Remove' }).click();
    await expect.poll(() => A.page.getByTestId('device').count(), { timeout: 30_000 }).toBe(1);
    await B.page.getByTestId('device-removed').waitFor({ timeout: 90_000 });
    await expectAccessible(B.page, 'device-removed');
    const raw = await rawIndexedDb(B.page);
    expect(raw.bytes.length + raw.strings.length).toBe(0);

    // Bob's next message reaches only A.
    await C.page.goto(`/chats/${conv}`);
    await send(C.page, 'only for A now');
    await A.page.goto(`/chats/${conv}`); // A was still on Account → Devices
    await waitForText(A.page, 'only for A now', 60_000);
    await B.page.goto('/chats');
    expect(await bodies(B.page)).not.toContain('only for A now');
  }, 480_000);
});
