import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Person, person, screenshot } from './browser.js';

describe('walking skeleton in Chromium', () => {
  let alice: Person;
  beforeAll(async () => {
    alice = await person();
  });
  afterAll(async () => {
    await alice?.close();
  });

  it('the page shows the health result and round-trips a frame through the conversation DO', async () => {
    const { page } = alice;
    await page.goto('/');
    await expect
      .poll(() => page.getByTestId('health').textContent(), { timeout: 20_000 })
      .toMatch(/^ok · migration \d{4}_/);
    await expect
      .poll(() => page.getByTestId('roundtrip').textContent(), { timeout: 20_000 })
      .toMatch(/^round trip ok \(\d+\.\d ms\)$/);
    await screenshot(page, 'skeleton-status');
  });

  it('the round trip runs again on demand', async () => {
    const { page } = alice;
    await page.getByRole('button', { name: 'Test again' }).click();
    await expect.poll(() => page.getByTestId('roundtrip').textContent(), { timeout: 20_000 }).toMatch(/^round trip ok/);
  });
});
