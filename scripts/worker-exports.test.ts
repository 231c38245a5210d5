/**
 * workerd treats every named export of the Worker's main module as an entrypoint (a Durable Object or
 * WorkerEntrypoint class, or a handler object) and refuses to start when one is anything else — a constant
 * exported for a test is enough to make the built Worker fail at start-up (`vite preview`, `wrangler deploy`)
 * while `vite dev` still runs. This pins the rule on the source.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './local-env.js';

/** The Durable Object classes wrangler.toml binds (the entrypoints the main module must export). */
const boundClasses = () => [
  ...new Set(
    [...readFileSync(join(ROOT, 'wrangler.toml'), 'utf8').matchAll(/class_name\s*=\s*"(\w+)"/g)].map((m) => m[1]!),
  ),
];

describe('the Worker main module', () => {
  it('exports by name exactly the Durable Object classes wrangler.toml binds, and a default handler with fetch, scheduled and queue', async () => {
    // A computed specifier: the root tsconfig has no Workers types (the worker project type-checks index.ts).
    const main = (await import('../worker/index.js' as string)) as Record<string, unknown> & { default: object };
    const named = Object.entries(main).filter(([k]) => k !== 'default');
    expect(boundClasses().length).toBeGreaterThan(0);
    expect(named.map(([k]) => k).sort()).toEqual(boundClasses().sort());
    for (const [name, value] of named) expect(typeof value, name).toBe('function');
    expect(Object.keys(main.default).sort()).toEqual(['fetch', 'queue', 'scheduled']);
  });
});
