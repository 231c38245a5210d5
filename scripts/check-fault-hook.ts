/**
 * The reliability fault hook (worker/faults.ts, switched on by E2E_CHAT_FAULTS in `npm run dev`) and the
 * key-transparency tampering hook of the browser tests (worker/kt-tamper.ts, E2E_CHAT_KT_TAMPER) must not
 * ship: `deploy` and `deploy:check` run this after `vite build` and fail if any built Worker file under
 * dist/ still carries it (worker/db.ts guards it with `import.meta.env.DEV`, which `vite build` replaces by
 * false, so the bundler drops it). `directD1Access` lists Worker source lines that reach the D1 binding
 * without `d1(env)` (worker/db.ts), i.e. writes the hook would not see.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from './local-env.js';

/**
 * Strings only the test hooks contain: faults.ts (its error message, class name, config field and flag name)
 * and kt-tamper.ts (its flag name, config field and key-derivation label).
 */
export const FAULT_HOOK_MARKERS = [
  'injected D1 write failure',
  'InjectedFault',
  'd1WriteFailRate',
  'E2E_CHAT_FAULTS',
  'E2E_CHAT_KT_TAMPER',
  'falseKeyFor',
  'kt tamper forged',
];

/** Built JavaScript files under `dir` that contain a fault-hook marker, with the markers found. */
export function faultHookInBuild(dir = join(ROOT, 'dist')): { file: string; markers: string[] }[] {
  if (!existsSync(dir)) return [];
  const out: { file: string; markers: string[] }[] = [];
  for (const f of readdirSync(dir, { recursive: true }).map(String)) {
    if (!/\.(m?js|cjs)$/.test(f) || f.split(/[\\/]/).includes('.vite')) continue;
    const text = readFileSync(join(dir, f), 'utf8');
    const markers = FAULT_HOOK_MARKERS.filter((m) => text.includes(m));
    if (markers.length) out.push({ file: f, markers });
  }
  return out;
}

/** Throws if a built Worker under `dir` contains the fault hook. */
export function assertNoFaultHook(dir = join(ROOT, 'dist')): void {
  const found = faultHookInBuild(dir);
  if (found.length)
    throw new Error(
      `the reliability fault hook is in the build: ${found.map((x) => `${x.file} (${x.markers.join(', ')})`).join('; ')}`,
    );
}

/** `file:line: text` for every Worker source line (tests excluded) that touches the D1 binding directly. */
export function directD1Access(workerDir = join(ROOT, 'worker')): string[] {
  const out: string[] = [];
  for (const f of readdirSync(workerDir, { recursive: true }).map(String)) {
    const rel = relative(workerDir, join(workerDir, f));
    if (!f.endsWith('.ts') || f.endsWith('.d.ts') || f.endsWith('.test.ts') || rel.startsWith('test')) continue;
    if (rel === 'db.ts') continue;
    readFileSync(join(workerDir, f), 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (/\.DB\b/.test(line) && !/^\s*(\/\/|\*)/.test(line)) out.push(`worker/${rel}:${i + 1}: ${line.trim()}`);
      });
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    assertNoFaultHook();
    console.log('dist/: no reliability fault hook in the build');
  } catch (err) {
    console.error((err as Error).message);
    process.exit(1);
  }
}
