/**
 * docs/PITFALLS.md stays true: every item 1..31 is there, in order, and either names the tests that pin it
 * (each named `describe`/`it` title must occur in the named file) or says which issue owes one.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const doc = readFileSync(join(root, 'docs/PITFALLS.md'), 'utf8');
const ITEMS = 31;

/** The text of each item, keyed by its number (from `### <a id="pN"></a>N. …` to the next heading). */
function items(): Map<number, string> {
  const out = new Map<number, string>();
  const parts = doc.split(/^### <a id="p(\d+)"><\/a>/m);
  for (let i = 1; i < parts.length; i += 2) out.set(Number(parts[i]), parts[i + 1]!.split(/^## /m)[0]!);
  return out;
}

const PINNED = /^- pinned by `([^`]+)` › "(.+)"$/gm;
const PENDING = /^- pending: issue #\d+/m;

describe('docs/PITFALLS.md', () => {
  it('lists every pitfall 1..31 once, in order, each with its number in the heading', () => {
    const all = items();
    expect([...all.keys()]).toEqual(Array.from({ length: ITEMS }, (_, i) => i + 1));
    for (const [n, text] of all) expect(text.startsWith(`${n}. `), `item ${n}`).toBe(true);
  });

  it('every item names a test that pins it or the issue that owes one', () => {
    for (const [n, text] of items()) {
      const pinned = [...text.matchAll(PINNED)].length;
      expect(pinned > 0 || PENDING.test(text), `item ${n} has neither a test nor an owner`).toBe(true);
    }
  });

  it('every named test title occurs in the named test file', () => {
    const missing: string[] = [];
    let count = 0;
    for (const [n, text] of items()) {
      for (const [, file, title] of text.matchAll(PINNED)) {
        count++;
        const path = join(root, file!);
        if (!file!.endsWith('.test.ts') || !existsSync(path)) missing.push(`${n}: no test file ${file}`);
        else if (!readFileSync(path, 'utf8').includes(title!)) missing.push(`${n}: ${file} has no "${title}"`);
      }
    }
    expect(missing).toEqual([]);
    expect(count).toBeGreaterThan(ITEMS);
  });

  it('the docs point at this project-owned list, never at a pitfalls file outside the repository', () => {
    for (const name of readdirSync(join(root, 'docs'))) {
      const text = readFileSync(join(root, 'docs', name), 'utf8');
      expect([name, /shared\/PITFALLS/.test(text)]).toEqual([name, false]);
    }
  });
});
