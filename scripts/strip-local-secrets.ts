/**
 * `vite build` copies `.dev.vars` next to the built Worker (dist/e2e_chat/) so that `vite preview` has the
 * local secrets. Nothing deployable may carry them: `deploy` and `deploy:check` call this first, and fail
 * if a local secrets file is still there afterwards. (`wrangler deploy` does not upload it, but dist/ is
 * what people archive and share.)
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './local-env.js';

export function stripLocalSecrets(dir = join(ROOT, 'dist')): string[] {
  if (!existsSync(dir)) return [];
  const removed: string[] = [];
  for (const f of readdirSync(dir, { recursive: true }).map(String)) {
    if (/(^|\/)\.dev\.vars(\..*)?$|(^|\/)\.env(\..*)?$/.test(f)) {
      rmSync(join(dir, f), { force: true });
      removed.push(f);
    }
  }
  const left = readdirSync(dir, { recursive: true })
    .map(String)
    .filter((f) => /(^|\/)\.dev\.vars/.test(f));
  if (left.length > 0) throw new Error(`local secrets still in dist/: ${left.join(', ')}`);
  return removed;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const removed = stripLocalSecrets();
  if (removed.length) console.log(`removed local secrets from dist/: ${removed.join(', ')}`);
}
