/**
 * The messenger in real Chromium against `npm run dev`: every person is a separate browser profile (own
 * IndexedDB, cookies). Scenarios: register, 1:1 chat both ways with delivery states, equal safety numbers,
 * offline catch-up, history after a reload, raw IndexedDB free of plaintext and key material, two tabs of
 * one user, and a three-person group with a removal.
 *
 * Each person gets its own client address header: registration is rate-limited per client (5 an hour),
 * and the local dev server sees every test browser as the same address.
 */
import { readFileSync } from 'node:fs';
import * as OTPAuth from 'otpauth';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { MAX_TEXT_BYTES } from '../web/src/engine/messages.js';
import { expectAccessible } from './a11y.js';
import {
  bodies,
  cast,
  contains,
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

const newPerson = cast(0);

/** The info lines (group changes) the open conversation shows. */
const infoLines = (page: Page) => page.getByTestId('info-line').allTextContents();

async function statusOf(page: Page, text: string): Promise<string | null> {
  const m = page.getByTestId('message').filter({ hasText: text }).last();
  return m.getAttribute('data-status');
}

describe('messenger in Chromium', () => {
  it('two people chat both ways, compare safety numbers, catch up after being offline, keep history over a reload, and store nothing readable', async () => {
    const alice = await newPerson();
    const bob = await newPerson();
    const a = uniq('alice');
    const b = uniq('bob');
    await Promise.all([register(alice.page, a, 'register'), register(bob.page, b)]);
    await screenshot(alice.page, 'chat-list-empty');

    const conv = await startChat(alice.page, b);
    // The key directory refuses (standing in for any failure before the server accepts a message): the
    // message shows as not sent, with its reason, Retry and Delete.
    await alice.context.route('**/api/keys/claim', (route) =>
      route.fulfill({
        status: 403,
        contentType: 'application/json',
        body: JSON.stringify({ error: { code: 'forbidden', message: 'refused for the test' } }),
      }),
    );
    await send(alice.page, 'first try, it fails');
    await expect.poll(() => statusOf(alice.page, 'first try, it fails'), { timeout: 30_000 }).toBe('failed');
    await send(alice.page, 'second try, delete me');
    await expect.poll(() => statusOf(alice.page, 'second try, delete me'), { timeout: 60_000 }).toBe('failed');
    expect(await alice.page.getByTestId('failure-reason').first().textContent()).toContain('Not sent.');
    await screenshot(alice.page, 'message-failed');
    await alice.context.unroute('**/api/keys/claim');
    // The composer enforces the engine's length limit as you type.
    const composer = alice.page.getByTestId('composer');
    await composer.fill('x'.repeat(MAX_TEXT_BYTES + 1));
    await expect
      .poll(() => alice.page.getByTestId('composer-count').textContent())
      .toBe('Too long to send: remove 1 character.');
    expect(await alice.page.getByRole('button', { name: 'Send' }).isDisabled()).toBe(true);
    await composer.press('Enter');
    expect((await composer.inputValue()).length).toBe(MAX_TEXT_BYTES + 1); // not sent
    await screenshot(alice.page, 'composer-too-long');
    await composer.fill('');
    await send(alice.page, 'hello bob, this is secret 1');
    await waitForText(alice.page, 'hello bob, this is secret 1');

    // The new conversation appears in Bob's list with an unread count and a preview.
    await expect.poll(() => bob.page.getByTestId('unread').first().textContent(), { timeout: 30_000 }).toContain('1');
    // … and in the tab title.
    await expect.poll(() => bob.page.title()).toBe('(1) e2e-chat');
    await expect
      .poll(async () => {
        // An undecryptable first message would show its engine error code here.
        const p = bob.page.getByTestId('preview').first();
        return `${await p.textContent()} ${(await p.getAttribute('data-error')) ?? ''}`;
      })
      .toContain('hello bob');
    await openConversation(bob.page, conv);
    await waitForText(bob.page, 'hello bob, this is secret 1');
    await expect.poll(() => bob.page.getByTestId('unread').count()).toBe(0);
    await expect.poll(() => bob.page.title()).toBe('e2e-chat');
    await expect.poll(() => bob.page.getByTestId('conversation-title').textContent()).toBe(a);
    await send(bob.page, 'hi alice, secret 2');
    await waitForText(alice.page, 'hi alice, secret 2');
    await expect.poll(() => statusOf(alice.page, 'hello bob, this is secret 1'), { timeout: 30_000 }).toBe('delivered');
    await screenshot(alice.page, 'conversation');
    await screenshot(bob.page, 'chat-list');
    await bob.page.emulateMedia({ colorScheme: 'dark' });
    await screenshot(bob.page, 'conversation-dark');
    await bob.page.setViewportSize({ width: 390, height: 760 });
    await screenshot(bob.page, 'conversation-mobile');
    await bob.page.setViewportSize({ width: 1280, height: 720 });

    // Safety numbers: the same 60 digits on both sides.
    const snA = await safetyNumberWith(alice.page, conv, b);
    const snB = await safetyNumberWith(bob.page, conv, a);
    expect(snA.replace(/\D/g, '')).toHaveLength(60);
    expect(snA).toBe(snB);
    await screenshot(alice.page, 'safety-number');
    // Alice compares by Bob's code (what his QR carries; pasted here, as from a camera-less desktop): a
    // code that is not one is refused, Bob's matches and verifies him.
    const bobsCode = await bob.page.getByTestId('safety-code').getAttribute('data-code');
    expect(bobsCode).toMatch(/^e2echat-sn:1:[A-Za-z0-9_-]{99}$/);
    await alice.page.getByRole('button', { name: 'Compare with their code' }).click();
    await alice.page.getByTestId('their-code').fill('e2echat-link:1:not-this');
    await alice.page.getByRole('button', { name: 'Compare', exact: true }).click();
    await expect.poll(() => alice.page.getByTestId('compare-outcome').getAttribute('data-outcome')).toBe('not_a_code');
    await alice.page.getByTestId('their-code').fill(bobsCode!);
    await alice.page.getByRole('button', { name: 'Compare', exact: true }).click();
    await expect.poll(() => alice.page.getByTestId('compare-outcome').getAttribute('data-outcome')).toBe('match');
    await expect.poll(() => alice.page.getByTestId('verified-state').textContent()).toContain('Verified');
    await expectAccessible(alice.page, 'safety-number-compared'); // axe, light + dark
    await alice.page.keyboard.press('Escape');
    await expect.poll(() => alice.page.getByRole('dialog').count()).toBe(0);

    // Bob goes offline; Alice writes; Bob catches up when back.
    await alice.page.goto(`/chats/${conv}`);
    await bob.page.goto(`/chats/${conv}`);
    await waitForText(bob.page, 'hi alice, secret 2');
    await bob.context.setOffline(true);
    await expect.poll(() => bob.page.getByTestId('offline-banner').isVisible()).toBe(true);
    await send(alice.page, 'while you were away, secret 3');
    await expect
      .poll(() => statusOf(alice.page, 'while you were away, secret 3'), { timeout: 30_000 })
      .toMatch(/sent|delivered/);
    expect(await bodies(bob.page)).not.toContain('while you were away, secret 3');
    await bob.context.setOffline(false);
    await waitForText(bob.page, 'while you were away, secret 3', 45_000);

    // A reload keeps the session and the history (from the local sealed store).
    await bob.page.reload();
    await waitForText(bob.page, 'hello bob, this is secret 1');
    await waitForText(bob.page, 'while you were away, secret 3');

    // Raw IndexedDB: no message text, no readable key material, only non-extractable CryptoKeys.
    for (const p of [alice.page, bob.page]) {
      const raw = await rawIndexedDb(p);
      expect(raw.bytes.length).toBeGreaterThan(10);
      for (const secret of ['secret 1', 'secret 2', 'secret 3', 'hello bob', a, b]) {
        const needle = new TextEncoder().encode(secret);
        expect(raw.bytes.some((x) => contains(x, needle))).toBe(false);
        expect(raw.strings.some((s) => s.includes(secret))).toBe(false);
      }
      for (const marker of ['"d":', 'private', 'secret', 'signing', 'identity', 'sess/', 'msg/']) {
        const needle = new TextEncoder().encode(marker);
        expect(raw.bytes.some((x) => contains(x, needle))).toBe(false);
        expect(raw.strings.some((s) => s.includes(marker))).toBe(false);
      }
      expect(raw.keys.length).toBeGreaterThan(0);
      expect(raw.keys.every((k) => !k.extractable)).toBe(true);
    }

    // After a reload the failed messages are still where they were written (before the first message that
    // went through); Delete removes one, Retry sends the other.
    await alice.page.goto(`/chats/${conv}`);
    await waitForText(alice.page, 'hello bob, this is secret 1');
    const order = await bodies(alice.page);
    expect(order.indexOf('first try, it fails')).toBeGreaterThanOrEqual(0);
    expect(order.indexOf('first try, it fails')).toBeLessThan(order.indexOf('second try, delete me'));
    expect(order.indexOf('second try, delete me')).toBeLessThan(order.indexOf('hello bob, this is secret 1'));
    const bubble = (text: string) => alice.page.getByTestId('message').filter({ hasText: text });
    await bubble('second try, delete me').getByRole('button', { name: 'Delete' }).click();
    await expect.poll(() => bodies(alice.page)).not.toContain('second try, delete me');
    await bubble('first try, it fails').getByRole('button', { name: 'Retry' }).click();
    await waitForText(bob.page, 'first try, it fails', 45_000);
    await expect.poll(() => statusOf(alice.page, 'first try, it fails'), { timeout: 30_000 }).toMatch(/sent|delivered/);
    expect(await alice.page.getByTestId('failed').count()).toBe(0);

    // The account screen.
    await alice.page.goto('/account');
    await expect.poll(() => alice.page.getByTestId('devices').locator('li').count(), { timeout: 30_000 }).toBe(1);
    // This browser has a readable name (from its user agent, computed locally).
    expect(await alice.page.getByTestId('devices').locator('li').first().textContent()).toContain('Chromium on Linux');
    await screenshot(alice.page, 'account');
  }, 240_000);

  it('two tabs of one user both send without breaking the session; history pages in as you scroll up', async () => {
    const alice = await newPerson();
    const bob = await newPerson();
    const a = uniq('alice');
    const b = uniq('bob');
    await Promise.all([register(alice.page, a), register(bob.page, b)]);
    const conv = await startChat(alice.page, b);
    await send(alice.page, 'tab one first');
    await openConversation(bob.page, conv);
    await waitForText(bob.page, 'tab one first');

    const tab2 = await alice.context.newPage();
    await tab2.goto(`/chats/${conv}`);
    await waitForText(tab2, 'tab one first');
    await send(tab2, 'tab two says hi');
    await send(alice.page, 'tab one again');
    await send(tab2, 'tab two again');
    for (const t of ['tab two says hi', 'tab one again', 'tab two again']) await waitForText(bob.page, t, 45_000);
    await send(bob.page, 'bob answers both tabs');
    await waitForText(alice.page, 'bob answers both tabs');
    await waitForText(tab2, 'bob answers both tabs');
    const statuses = await bob.page
      .getByTestId('message')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-status')));
    expect(statuses).not.toContain('undecryptable');
    await tab2.close();

    // History paging: after a reload only the newest page is rendered; scrolling up loads the rest.
    for (let i = 1; i <= 55; i++) await send(alice.page, `history ${i}`);
    await expect.poll(() => statusOf(alice.page, 'history 55'), { timeout: 60_000 }).toMatch(/sent|delivered/);
    await alice.page.reload();
    await waitForText(alice.page, 'history 55');
    const firstPage = (await bodies(alice.page)).length;
    expect(firstPage).toBe(50);
    expect(await bodies(alice.page)).not.toContain('tab one first');
    await alice.page.getByTestId('message-list').evaluate((el) => {
      el.scrollTop = 0;
    });
    await waitForText(alice.page, 'tab one first');
    expect((await bodies(alice.page)).length).toBe(60);
  }, 240_000);

  it('a browser without keys explains itself; an explicit identity reset shows the contact a blocking key-change warning', async () => {
    const alice = await newPerson();
    const bob = await newPerson();
    const a = uniq('alice');
    const b = uniq('bob');
    await Promise.all([register(alice.page, a), register(bob.page, b)]);
    const conv = await startChat(alice.page, b);
    await send(alice.page, 'before the reset');
    await waitForText(alice.page, 'before the reset');
    await openConversation(bob.page, conv);
    await waitForText(bob.page, 'before the reset');
    // Alice verifies Bob's number (compared in person).
    const oldNumber = await safetyNumberWith(alice.page, conv, b);
    await alice.page.getByRole('button', { name: 'Mark as verified' }).click();
    await expect.poll(() => alice.page.getByTestId('verified-state').textContent()).toContain('Verified');
    await alice.page.keyboard.press('Escape');

    // Bob on a new computer: the right password, but no keys here.
    const bobNew = await newPerson();
    await bobNew.page.goto('/login');
    await bobNew.page.getByLabel('Username').fill(b);
    await bobNew.page.getByLabel('Password').fill(PASSWORD);
    await bobNew.page.getByRole('button', { name: 'Sign in' }).click();
    await bobNew.page.getByTestId('device-not-linked').waitFor({ timeout: 30_000 });
    await screenshot(bobNew.page, 'device-not-linked');
    await bobNew.page.getByRole('button', { name: 'Reset identity…' }).click();
    const confirm = bobNew.page.getByRole('alertdialog');
    await expect.poll(() => confirm.textContent()).toContain('cannot be undone');
    await confirm.getByRole('button', { name: 'Reset identity' }).click();
    await bobNew.page.waitForURL('**/chats', { timeout: 60_000 });
    // Bob's old browser is cut off, and says why.
    await bob.page.waitForURL('**/login', { timeout: 30_000 });
    await expect
      .poll(() => bob.page.getByTestId('signed-out-reason').textContent(), { timeout: 30_000 })
      .toContain('identity was reset on another device');
    await screenshot(bob.page, 'signed-out-identity-reset');

    // Alice: the safety number changed; sending is blocked until she accepts.
    await alice.page.goto(`/chats/${conv}`);
    await alice.page.getByTestId('key-change').waitFor({ timeout: 30_000 });
    expect(await alice.page.getByTestId('composer').isDisabled()).toBe(true);
    await screenshot(alice.page, 'key-change-warning');
    // Review shows the NEW number, not verified, and says the earlier verification no longer applies.
    await alice.page.getByTestId('key-change').getByRole('button', { name: 'Review' }).click();
    const sn = alice.page.getByTestId('safety-number');
    await expect.poll(() => sn.getAttribute('data-pending'), { timeout: 30_000 }).toBe('true');
    const shown = (await sn.locator('li').allTextContents()).join(' ');
    expect(shown.replace(/\D/g, '')).toHaveLength(60);
    expect(shown).not.toBe(oldNumber);
    expect(await alice.page.getByTestId('verified-state').textContent()).toBe('Not verified');
    const notice = await alice.page.getByTestId('safety-number-changed').textContent();
    expect(notice).toContain('has changed');
    expect(notice).toContain('that verification no longer applies');
    await expectAccessible(alice.page, 'key-change-review');
    // It is the number Bob's new device shows.
    const bobsSide = await safetyNumberWith(bobNew.page, conv, a);
    expect(bobsSide).toBe(shown);
    // Compared and matching: verifying accepts the change and marks the new number as verified.
    await alice.page.getByRole('dialog').getByRole('button', { name: 'Mark as verified' }).click();
    await expect
      .poll(() => alice.page.getByTestId('verified-state').textContent(), { timeout: 30_000 })
      .toBe('✓ Verified');
    expect(await sn.getAttribute('data-pending')).toBe('false');
    expect((await sn.locator('li').allTextContents()).join(' ')).toBe(shown);
    await alice.page.keyboard.press('Escape');
    await expect.poll(() => alice.page.getByTestId('key-change').count(), { timeout: 30_000 }).toBe(0);
    await expect.poll(() => alice.page.getByTestId('composer').isEnabled(), { timeout: 30_000 }).toBe(true);
    await send(alice.page, 'after the reset');
    await bobNew.page.goto('/chats');
    await openConversation(bobNew.page, conv);
    await waitForText(bobNew.page, 'after the reset', 45_000);
  }, 240_000);

  it('a three-person group: everyone receives; a removed member stops receiving; promote, transfer ownership, leave', async () => {
    const alice = await newPerson();
    const bob = await newPerson();
    const carol = await newPerson();
    const [a, b, c] = [uniq('alice'), uniq('bob'), uniq('carol')];
    await Promise.all([register(alice.page, a), register(bob.page, b), register(carol.page, c)]);

    await alice.page.getByRole('button', { name: 'New conversation' }).click();
    await alice.page.getByRole('menuitem', { name: 'New group' }).click();
    await alice.page.getByLabel('Group name').fill('Trip');
    await alice.page.getByLabel('Members').fill(`${b}, ${c}`);
    await alice.page.getByRole('button', { name: 'Create group' }).click();
    await alice.page.waitForURL(/\/chats\/[A-Za-z0-9_-]+$/, { timeout: 30_000 });
    const conv = new URL(alice.page.url()).pathname.split('/')[2]!;

    await send(alice.page, 'welcome to the trip');
    await openConversation(bob.page, conv);
    await openConversation(carol.page, conv);
    await waitForText(bob.page, 'welcome to the trip');
    await waitForText(carol.page, 'welcome to the trip');
    // A group from someone Bob has never talked to is a message request: until he accepts, it has no socket
    // and its membership changes reach him only by polling, without their place between the messages.
    await bob.page.getByTestId('request-accept').click();
    await send(carol.page, 'carol is here');
    await waitForText(alice.page, 'carol is here');
    await waitForText(bob.page, 'carol is here');
    // The group's creation reads as info lines on every member's device, before the first message.
    await expect
      .poll(() => infoLines(bob.page), { timeout: 30_000 })
      .toEqual([`${a} created the group “Trip”`, `${a} added you`, `${a} added ${c}`]);

    // Alice (owner) removes Carol.
    await alice.page.goto(`/chats/${conv}/info`);
    await alice.page.getByRole('button', { name: `Actions for ${c}` }).click();
    await alice.page.getByRole('menuitem', { name: 'Remove from group' }).click();
    await alice.page.getByRole('alertdialog').getByRole('button', { name: 'Remove from group' }).click();
    await expect.poll(() => alice.page.getByTestId('member').count(), { timeout: 30_000 }).toBe(2);
    await screenshot(alice.page, 'group-info');

    await alice.page.goto(`/chats/${conv}`);
    await send(alice.page, 'only for bob now');
    await waitForText(bob.page, 'only for bob now');
    await send(bob.page, 'bob agrees');
    await waitForText(alice.page, 'bob agrees');
    // Bob sees the removal as a line between the last message Carol could see and the first she could not.
    const timeline = () =>
      bob.page
        .locator('[data-testid="message-body"], [data-testid="info-line"]')
        .evaluateAll((els) => els.map((e) => e.textContent ?? ''));
    await expect.poll(timeline, { timeout: 30_000 }).toContain(`${a} removed ${c}`);
    const t = await timeline();
    expect(t.indexOf('carol is here')).toBeLessThan(t.indexOf(`${a} removed ${c}`));
    expect(t.indexOf(`${a} removed ${c}`)).toBeLessThan(t.indexOf('only for bob now'));
    await screenshot(bob.page, 'group-info-lines');
    // Removed: read-only history and "You were removed" — no message box, no spinner; also after a reload.
    // Her device has seen the removal, and Bob has both later messages: she would have them too if she could.
    await carol.page.getByTestId('removed-notice').waitFor({ timeout: 30_000 });
    const carolSees = await bodies(carol.page);
    expect(carolSees).toContain('carol is here');
    expect(carolSees).not.toContain('only for bob now');
    expect(carolSees).not.toContain('bob agrees');
    expect(await carol.page.getByTestId('composer').count()).toBe(0);
    await carol.page.reload();
    await waitForText(carol.page, 'carol is here');
    await carol.page.getByTestId('removed-notice').waitFor({ timeout: 30_000 });
    expect(await carol.page.getByTestId('composer').count()).toBe(0);
    expect(await carol.page.getByTestId('conversation-title').textContent()).toBe('Trip');
    await expect.poll(() => carol.page.getByText('You are no longer a member').count()).toBe(1);
    await expect.poll(() => carol.page.locator(`a[href="/chats/${conv}"]`).count()).toBeGreaterThan(0);
    await expectAccessible(carol.page, 'removed-member');

    // Renaming: the owner may (ROLE_ACTIONS); everyone sees the new name and the line.
    await alice.page.goto(`/chats/${conv}/info`);
    await alice.page.getByLabel('Group name').fill('Trip to the sea');
    await alice.page.getByRole('button', { name: 'Rename' }).click();
    await expect
      .poll(() => bob.page.getByTestId('conversation-title').textContent(), { timeout: 30_000 })
      .toBe('Trip to the sea');
    await expect
      .poll(() => infoLines(bob.page), { timeout: 30_000 })
      .toContain(`${a} renamed the group to “Trip to the sea”`);

    // Roles: only what the protocol's table allows is offered. The owner promotes Bob, hands him the
    // group, and (now an admin) may leave.
    await alice.page.goto(`/chats/${conv}/info`);
    await expect.poll(() => alice.page.getByRole('button', { name: 'Leave group' }).count()).toBe(0);
    const act = async (name: string) => {
      await alice.page.getByRole('button', { name: `Actions for ${b}` }).click();
      await alice.page.getByRole('menuitem', { name }).click();
      await alice.page.getByRole('alertdialog').getByRole('button', { name }).click();
      await expect.poll(() => alice.page.getByRole('alertdialog').count(), { timeout: 30_000 }).toBe(0);
    };
    await act('Make admin');
    await expect
      .poll(() => alice.page.getByTestId('member').filter({ hasText: b }).textContent(), { timeout: 30_000 })
      .toContain('admin');
    await act('Transfer ownership');
    await expect.poll(() => alice.page.getByText('you are admin').count(), { timeout: 30_000 }).toBe(1);
    await bob.page.goto(`/chats/${conv}/info`);
    await expect.poll(() => bob.page.getByText('you are owner').count(), { timeout: 30_000 }).toBe(1);
    // Bob never looked Alice up and the group title does not name her: the member list still shows her
    // username (GET /api/users/names), not "user 1a2b3c".
    await expect.poll(() => bob.page.getByTestId('member').filter({ hasText: a }).count(), { timeout: 30_000 }).toBe(1);
    expect(
      await bob.page
        .getByTestId('member')
        .filter({ hasText: /user [A-Za-z0-9_-]{6}/ })
        .count(),
    ).toBe(0);
    await alice.page.getByRole('button', { name: 'Leave group' }).click();
    await alice.page.getByRole('alertdialog').getByRole('button', { name: 'Leave' }).click();
    await alice.page.waitForURL('**/chats', { timeout: 30_000 });
    await expect.poll(() => bob.page.getByTestId('member').count(), { timeout: 30_000 }).toBe(1);
    await bob.page.goto(`/chats/${conv}`);
    await expect
      .poll(async () => (await infoLines(bob.page)).slice(-4), { timeout: 30_000 })
      .toEqual([
        `${a} renamed the group to “Trip to the sea”`,
        `${a} made you an admin`,
        `${a} made you the owner`,
        `${a} left`,
      ]);
    // Alice, who left, reads the history without a message box.
    await alice.page.goto(`/chats/${conv}`);
    await expect
      .poll(() => alice.page.getByTestId('removed-notice').textContent(), { timeout: 30_000 })
      .toContain('You left this group.');
    expect(await alice.page.getByTestId('composer').count()).toBe(0);
  }, 300_000);

  it('two-step verification: enrol with QR and recovery codes, sign out, sign in with a recovery code', async () => {
    const alice = await newPerson();
    const a = uniq('alice');
    await register(alice.page, a);
    await alice.page.goto('/account');
    await alice.page.getByRole('tab', { name: 'Security' }).click();
    await alice.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await alice.page.getByRole('button', { name: 'Set up' }).click();
    const secret = (await alice.page.getByTestId('totp-secret').textContent())!.trim();
    await alice.page.getByRole('img', { name: 'Authenticator set-up QR code' }).waitFor();
    const code = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret) }).generate();
    await alice.page.getByLabel('6-digit code').fill(code);
    await alice.page.getByRole('button', { name: 'Turn on' }).click();
    const codes = alice.page.getByTestId('recovery-codes');
    await codes.waitFor({ timeout: 30_000 });
    const recovery = await codes.locator('li').allTextContents();
    expect(recovery).toHaveLength(10);
    await screenshot(alice.page, 'account-recovery-codes');
    // Download saves the ten codes as a text file made in the browser.
    const [download] = await Promise.all([
      alice.page.waitForEvent('download'),
      alice.page.getByRole('button', { name: 'Download' }).click(),
    ]);
    expect(download.suggestedFilename()).toBe(`e2e-chat-recovery-codes-${a}.txt`);
    const saved = readFileSync((await download.path())!, 'utf8');
    for (const code of recovery) expect(saved).toContain(code);
    await alice.page.getByRole('button', { name: 'I saved them' }).click();

    await alice.page.getByRole('tab', { name: 'General' }).click();
    await alice.page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await alice.page.waitForURL('**/login', { timeout: 30_000 });
    expect(await alice.page.getByTestId('signed-out-reason').count()).toBe(0); // signed out here: nothing to explain
    // A signed-out visitor of /chats goes to "Sign in" (this browser had an account), not "Create".
    await alice.page.goto('/chats');
    await alice.page.waitForURL('**/login', { timeout: 30_000 });
    // A rate-limited sign-in says how long to wait (the server's Retry-After).
    await alice.context.route('**/api/auth/login', (route) =>
      route.fulfill({
        status: 429,
        headers: { 'content-type': 'application/json', 'retry-after': '600' },
        body: JSON.stringify({ error: { code: 'rate_limited', message: 'too many requests', retryAfterSec: 600 } }),
      }),
    );
    await alice.page.getByLabel('Username').fill(a);
    await alice.page.getByLabel('Password').fill(PASSWORD);
    await alice.page.getByRole('button', { name: 'Sign in' }).click();
    await expect
      .poll(() => alice.page.getByRole('alert').first().textContent(), { timeout: 30_000 })
      .toMatch(/Try again in 10 minutes \(at \d/);
    await screenshot(alice.page, 'login-rate-limited');
    await alice.context.unroute('**/api/auth/login');
    await alice.page.getByLabel('Username').fill(a);
    await alice.page.getByLabel('Password').fill(PASSWORD);
    await alice.page.getByRole('button', { name: 'Sign in' }).click();
    await alice.page.getByLabel('6-digit code').waitFor({ timeout: 30_000 });
    await screenshot(alice.page, 'login-totp');
    await alice.page.getByRole('button', { name: 'Use a recovery code instead' }).click();
    await alice.page.getByLabel('Recovery code').fill(recovery[0]!);
    await alice.page.getByRole('button', { name: 'Verify' }).click();
    await alice.page.waitForURL('**/chats', { timeout: 30_000 });
    await expect.poll(() => alice.page.getByTestId('me').textContent()).toBe(a);
  }, 180_000);
});
