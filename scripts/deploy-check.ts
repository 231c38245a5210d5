/**
 * `npm run deploy:check`: builds the client and the Worker, checks that no local secrets file and no
 * reliability fault hook (scripts/check-fault-hook.ts) is in dist/, then runs `wrangler deploy --dry-run`
 * offline (no login) into dist/deploy-check and prints the Worker bundle's size, raw and gzipped,
 * against the platform limits (3 MB free / 10 MB paid, compressed).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { assertNoFaultHook } from './check-fault-hook.js';
import { QUIET_ENV, ROOT } from './local-env.js';
import { stripLocalSecrets } from './strip-local-secrets.js';

const OUT = join(ROOT, 'dist', 'deploy-check');

function run(args: string[]) {
  const r = spawnSync(process.execPath, args, { cwd: ROOT, env: QUIET_ENV, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

run([join(ROOT, 'node_modules/vite/bin/vite.js'), 'build']);
stripLocalSecrets();
rmSync(OUT, { recursive: true, force: true });
// vite build writes the deployable config next to the built Worker; point wrangler at it explicitly.
run([
  join(ROOT, 'node_modules/wrangler/bin/wrangler.js'),
  'deploy',
  '--dry-run',
  '--config',
  join(ROOT, 'dist/e2e_chat/wrangler.json'),
  '--outdir',
  OUT,
]);

// The reliability fault hook (worker/faults.ts) is for `npm run dev` only: fail if the build kept it.
try {
  assertNoFaultHook();
} catch (err) {
  console.error((err as Error).message);
  process.exit(1);
}

const files = readdirSync(OUT, { recursive: true })
  .map(String)
  .filter((f) => /\.(m?js|wasm)$/.test(f) && statSync(join(OUT, f)).isFile());
let raw = 0;
let gz = 0;
for (const f of files) {
  const buf = readFileSync(join(OUT, f));
  raw += buf.length;
  gz += gzipSync(buf, { level: 9 }).length;
}
const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
console.log(`\nWorker bundle (${files.length} file${files.length === 1 ? '' : 's'} in dist/deploy-check):`);
console.log(`  raw     ${kib(raw)}`);
console.log(`  gzipped ${kib(gz)}   (limit: 3 MiB free plan, 10 MiB paid)`);
