/**
 * Accessibility checks for browser tests: axe-core (a dev dependency) run on the page as it is, in the
 * light and in the dark theme, asserting no `serious` and no `critical` violation (moderate and minor
 * ones are counted and written to test-artifacts/a11y/<name>.json, not failed on).
 *
 * Usage, in any e2e/*.test.ts, once the screen shows what you want checked (open dialogs included):
 *
 *   import { expectAccessible } from './a11y.js';
 *   await expectAccessible(page, 'account-devices');            // whole page, light + dark, screenshots
 *   await expectAccessible(page, 'new-chat', { shots: false }); // no screenshots
 *
 * The theme is switched the way the app does it (the `dark` class on <html>, plus the emulated
 * `prefers-color-scheme`) and put back afterwards. A failure message lists each serious/critical rule with
 * the first offending elements' selectors and axe's summary, so the fix is usually obvious from it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { expect } from 'vitest';
import { screenshot } from './browser.js';

const AXE_SOURCE: string = createRequire(import.meta.url)('axe-core').source;
const REPORTS = join(process.cwd(), 'test-artifacts', 'a11y');

export type Impact = 'minor' | 'moderate' | 'serious' | 'critical';

interface AxeNode {
  target: string[];
  html: string;
  failureSummary?: string;
}
interface AxeViolation {
  id: string;
  impact: Impact | null;
  help: string;
  nodes: AxeNode[];
}

export interface A11yResult {
  readonly theme: 'light' | 'dark';
  /** Violating elements per impact. */
  readonly counts: Record<Impact, number>;
  readonly violations: readonly {
    id: string;
    impact: Impact | null;
    help: string;
    targets: string[];
    /** The first offending elements' markup and axe's summary (in the JSON report). */
    nodes: { html: string; summary: string }[];
  }[];
}

/** Runs axe once on the page as it is now (no theme change, no assertion). */
export async function runAxe(page: Page): Promise<AxeViolation[]> {
  const loaded = await page.evaluate(() => typeof (window as { axe?: unknown }).axe === 'object');
  if (!loaded) await page.evaluate(AXE_SOURCE);
  return page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run: (ctx: unknown, opts: unknown) => Promise<unknown> } }).axe;
    const r = (await axe.run(document, {
      resultTypes: ['violations'],
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
    })) as { violations: AxeViolation[] };
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => ({ target: n.target, html: n.html.slice(0, 200), failureSummary: n.failureSummary })),
    }));
  });
}

/** No CSS transitions while checking: a theme switch fades colours, and axe would measure them mid-way. */
const NO_TRANSITIONS = '*,*::before,*::after{transition:none!important;animation:none!important}';

async function setTheme(page: Page, theme: 'light' | 'dark'): Promise<void> {
  await page.evaluate((css) => {
    if (document.getElementById('a11y-no-transitions')) return;
    const style = document.createElement('style');
    style.id = 'a11y-no-transitions';
    style.textContent = css;
    document.head.append(style);
  }, NO_TRANSITIONS);
  await page.emulateMedia({ colorScheme: theme });
  await page.evaluate((dark) => document.documentElement.classList.toggle('dark', dark), theme === 'dark');
}

/**
 * axe in both themes; fails on any serious or critical violation. Returns both runs' counts (for notes).
 * `shots` (default true) saves `<name>-light.png` and `<name>-dark.png` next to the other screenshots.
 */
export async function expectAccessible(
  page: Page,
  name: string,
  opts: { shots?: boolean; themes?: readonly ('light' | 'dark')[] } = {},
): Promise<A11yResult[]> {
  const wasDark = await page.evaluate(() => document.documentElement.classList.contains('dark'));
  const out: A11yResult[] = [];
  try {
    for (const theme of opts.themes ?? (['light', 'dark'] as const)) {
      await setTheme(page, theme);
      const violations = await runAxe(page);
      if (opts.shots ?? true) await screenshot(page, `${name}-${theme}`);
      const counts: Record<Impact, number> = { minor: 0, moderate: 0, serious: 0, critical: 0 };
      for (const v of violations) counts[v.impact ?? 'minor'] += v.nodes.length;
      out.push({
        theme,
        counts,
        violations: violations.map((v) => ({
          id: v.id,
          impact: v.impact,
          help: v.help,
          targets: v.nodes.map((n) => n.target.join(' ')),
          nodes: v.nodes.slice(0, 5).map((n) => ({ html: n.html, summary: n.failureSummary ?? '' })),
        })),
      });
    }
  } finally {
    await setTheme(page, wasDark ? 'dark' : 'light');
    await page.evaluate(() => document.getElementById('a11y-no-transitions')?.remove());
  }
  mkdirSync(REPORTS, { recursive: true });
  writeFileSync(join(REPORTS, `${name}.json`), JSON.stringify(out, null, 2));
  const bad = out.flatMap((r) =>
    r.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `[${r.theme}] ${v.impact} ${v.id}: ${v.help} — ${v.targets.slice(0, 4).join(' | ')}`),
  );
  expect(bad, `axe on "${name}"`).toEqual([]);
  return out;
}
