/** Helpers for browser tests: a fresh Chromium profile per "person", screenshots as test artifacts. */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { inject } from 'vitest';
import { CHROMIUM_ARGS } from '../scripts/chromium.js';

export const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'screenshots');

export interface Person {
  context: BrowserContext;
  page: Page;
  close: () => Promise<void>;
}

/** A separate browser profile (its own IndexedDB, cookies, storage) — one per simulated person. */
export async function person(): Promise<Person> {
  const dir = mkdtempSync(join(tmpdir(), 'e2e-chat-profile-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: inject('chromiumPath'),
    args: CHROMIUM_ARGS,
    headless: true,
    baseURL: inject('baseUrl'),
  });
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    close: async () => {
      await context.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}
