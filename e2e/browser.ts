/** Helpers for browser tests: a fresh browser context per "person", screenshots as test artifacts. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, expect, inject } from 'vitest';
import { CHROMIUM_ARGS } from '../scripts/chromium.js';

export const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'screenshots');

export interface Person {
  context: BrowserContext;
  page: Page;
  close: () => Promise<void>;
}

/**
 * One Chromium per test file, started on the first `person()` and closed with the last person's context:
 * starting a browser per person cost ≈ 2–4 s each on 2 loaded cores (a dozen people in app.test.ts), a
 * fresh context of a running one well under a second, and fewer browser processes load the machine less.
 */
let browser: Promise<Browser> | null = null;
let open = 0;

/**
 * A separate browser context — one per simulated person, with its own IndexedDB, cookies, storage and
 * network conditions (nothing is shared between contexts) — on the shared dev server, or on `baseURL` (a
 * test's own server).
 */
export async function person(baseURL: string = inject('baseUrl')): Promise<Person> {
  browser ??= chromium.launch({ executablePath: inject('chromiumPath'), args: CHROMIUM_ARGS, headless: true });
  open++;
  let context: BrowserContext;
  try {
    context = await (await browser).newContext({ baseURL });
  } catch (err) {
    if (--open === 0) await closeBrowser();
    throw err;
  }
  const page = await context.newPage();
  let closed = false;
  return {
    context,
    page,
    close: async () => {
      if (closed) return;
      closed = true;
      try {
        await context.close();
      } finally {
        if (--open === 0) await closeBrowser();
      }
    },
  };
}

async function closeBrowser(): Promise<void> {
  const b = browser;
  browser = null;
  await (await b?.catch(() => null))?.close();
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Everything in every IndexedDB database of the page's origin, as strings/bytes, plus CryptoKey facts. */
export async function rawIndexedDb(page: Page) {
  return page.evaluate(async () => {
    const out: { bytes: number[][]; strings: string[]; keys: { extractable: boolean; type: string }[] } = {
      bytes: [],
      strings: [],
      keys: [],
    };
    const visit = (v: unknown): void => {
      if (v instanceof Uint8Array) out.bytes.push([...v]);
      else if (v instanceof ArrayBuffer) out.bytes.push([...new Uint8Array(v)]);
      else if (typeof CryptoKey !== 'undefined' && v instanceof CryptoKey)
        out.keys.push({ extractable: v.extractable, type: v.type });
      else if (typeof v === 'string') out.strings.push(v);
      else if (Array.isArray(v)) for (const x of v) visit(x);
      else if (v && typeof v === 'object')
        for (const [k, x] of Object.entries(v)) {
          out.strings.push(k);
          visit(x);
        }
    };
    for (const info of await indexedDB.databases()) {
      const db = await new Promise<IDBDatabase>((res, rej) => {
        const r = indexedDB.open(info.name!);
        r.onsuccess = () => res(r.result);
        r.onerror = () => rej(r.error);
      });
      for (const store of Array.from(db.objectStoreNames)) {
        const tx = db.transaction(store);
        const [keys, values] = await Promise.all([
          new Promise<IDBValidKey[]>((res) => {
            const r = tx.objectStore(store).getAllKeys();
            r.onsuccess = () => res(r.result);
          }),
          new Promise<unknown[]>((res) => {
            const r = tx.objectStore(store).getAll();
            r.onsuccess = () => res(r.result);
          }),
        ]);
        for (const k of keys) visit(String(k));
        for (const v of values) visit(v);
      }
      db.close();
    }
    return out;
  });
}

export function contains(hay: number[], needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** The password every test account uses. */
export const PASSWORD = 'correct horse battery staple';

/** A username no earlier run has taken. */
export const uniq = (base: string) => `${base}${Date.now().toString(36)}${Math.floor(Math.random() * 1000)}`;

/**
 * The people of one test file: each a fresh profile with its own client address (registration is
 * rate-limited per address, and every test browser is the same address locally; `salt` keeps the files'
 * addresses apart). Closed after the file. `baseURL`: a server of the file's own instead of the shared one.
 */
export function cast(salt: number, baseURL?: () => string): () => Promise<Person> {
  const people: Person[] = [];
  let counter = 0;
  afterAll(async () => {
    for (const p of people) await p.close().catch(() => undefined);
  });
  return async () => {
    const p = await person(baseURL?.());
    people.push(p);
    const n = ++counter;
    await p.context.setExtraHTTPHeaders({
      'cf-connecting-ip': `10.${((Date.now() >> 8) + salt) & 255}.${(process.pid + salt) & 255}.${n}`,
    });
    return p;
  };
}

/** Registers `username` through the register page and waits for the chat list. */
export async function register(page: Page, username: string, shot?: string): Promise<void> {
  await page.goto('/register');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByLabel('Confirm password').fill(PASSWORD);
  if (shot) await screenshot(page, shot);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.waitForURL('**/chats', { timeout: 60_000 });
  await expect.poll(() => page.getByTestId('me').textContent()).toBe(username);
}

/** The message bodies the open conversation shows. */
export const bodies = (page: Page) => page.getByTestId('message-body').allTextContents();

/** Waits for `text` among the message bodies; on a timeout a screenshot of the page is saved first. */
export async function waitForText(page: Page, text: string, timeout = 30_000): Promise<void> {
  try {
    await expect.poll(() => bodies(page), { timeout }).toContain(text);
  } catch (e) {
    await screenshot(page, `timeout-${Date.now()}`).catch(() => undefined);
    throw e;
  }
}

/** Starts a direct chat with `username` from the chat list; returns the conversation id. */
export async function startChat(page: Page, username: string): Promise<string> {
  await page.getByRole('button', { name: 'New conversation' }).click();
  await page.getByRole('menuitem', { name: 'New chat' }).click();
  await page.getByRole('dialog').getByLabel('Username').fill(username);
  await page.getByRole('button', { name: 'Start chat' }).click();
  await page.waitForURL(/\/chats\/[A-Za-z0-9_-]+$/, { timeout: 30_000 });
  return new URL(page.url()).pathname.split('/')[2]!;
}

/** Types `text` into the open conversation's composer (once it is enabled) and sends it. */
export async function send(page: Page, text: string): Promise<void> {
  const composer = page.getByTestId('composer');
  await expect.poll(() => composer.isEnabled(), { timeout: 30_000 }).toBe(true);
  await composer.fill(text);
  await composer.press('Enter');
}

/** Opens conversation `id` from the list (conversations others start appear by polling, a few seconds). */
export async function openConversation(page: Page, id: string): Promise<void> {
  await page.locator(`a[href="/chats/${id}"]`).first().waitFor({ timeout: 30_000 });
  await page.locator(`a[href="/chats/${id}"]`).first().click();
  await page.getByTestId('composer').waitFor();
}

/** The safety number with `username` as the conversation's info screen shows it (the dialog stays open). */
export async function safetyNumberWith(page: Page, conversationId: string, username: string): Promise<string> {
  await page.goto(`/chats/${conversationId}/info`);
  await page.getByTestId('member').filter({ hasText: username }).getByRole('button', { name: 'Safety number' }).click();
  const sn = page.getByTestId('safety-number');
  await sn.waitFor({ timeout: 30_000 });
  return (await sn.locator('li').allTextContents()).join(' ');
}
