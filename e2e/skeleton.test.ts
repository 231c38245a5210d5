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

  it('the page shows the health result and round-trips a frame through the probe DO', async () => {
    const { page } = alice;
    // The first screen keeps operator details off it; they are on /status.
    await page.goto('/');
    await page.getByRole('link', { name: 'Create an account' }).waitFor();
    expect(await page.getByTestId('health').count()).toBe(0);
    await page.getByRole('link', { name: 'System status' }).click();
    await page.waitForURL('**/status');
    await expect
      .poll(() => page.getByTestId('health').textContent(), { timeout: 20_000 })
      .toMatch(/^ok · migration \d{4}_/);
    await expect
      .poll(() => page.getByTestId('roundtrip').textContent(), { timeout: 20_000 })
      .toMatch(/^round trip ok \(\d+\.\d ms\)$/);
    await screenshot(page, 'skeleton-status');
  });

  it('conversation sockets are not reachable without a ticket (pitfall 21)', async () => {
    const { page } = alice;
    const result = await page.evaluate(
      () =>
        new Promise<string>((resolve) => {
          const u = new URL('/api/conversations/conv-probe/ws', location.href);
          u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
          const ws = new WebSocket(u.toString());
          ws.onopen = () => {
            ws.close();
            resolve('open');
          };
          ws.onerror = () => resolve('refused');
        }),
    );
    expect(result).toBe('refused');
  });

  it('the round trip runs again on demand', async () => {
    const { page } = alice;
    await page.getByRole('button', { name: 'Test again' }).click();
    await expect.poll(() => page.getByTestId('roundtrip').textContent(), { timeout: 20_000 }).toMatch(/^round trip ok/);
  });

  it('the status page shows the local operator counters, and the refused socket above counted as an error', async () => {
    const { page } = alice;
    await page.getByRole('button', { name: 'Test again' }).click();
    const counter = (name: string) => page.locator(`[data-counter="${name}"]`).textContent();
    await expect.poll(() => counter('mailbox_depth'), { timeout: 20_000 }).toMatch(/^\d+$/);
    // The ticketless upgrade of the previous test was refused with a stable code, counted by code.
    await expect.poll(() => counter('errors'), { timeout: 20_000 }).toMatch(/^[1-9]\d* \(.*[a-z_]+ \d+/);
    expect(await counter('messages_accepted')).toMatch(/^\d+/);
    await screenshot(page, 'status-counters');
  });
});
