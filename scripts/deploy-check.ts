/**
 * `npm run deploy:check [-- --env staging|production]`: the offline half of a deploy, no login needed.
 * Checks wrangler.toml's environments are in step (scripts/deploy-config.ts bindingParity), builds the
 * client and the Worker for that environment, checks that no local secrets file and no reliability fault
 * hook (scripts/check-fault-hook.ts) is in the build, then runs `wrangler deploy --dry-run` into
 * <dist>/deploy-check and prints the bindings, the required secrets with their `wrangler secret put` lines,
 * any placeholders a real deploy would refuse, and the Worker bundle's size, raw and gzipped, against the
 * platform limits (3 MB free / 10 MB paid, compressed). Without --env it checks the local default.
 */
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { assertNoFaultHook } from './check-fault-hook.js';
import {
  bindingParity,
  build,
  type DeployEnv,
  DIST,
  parseEnvArg,
  placeholders,
  readRawConfig,
  requiredSecrets,
  secretPutLines,
  wrangler,
} from './deploy-config.js';
import { stripLocalSecrets } from './strip-local-secrets.js';

const OUT = join(DIST, 'deploy-check');

function fail(message: string): never {
  console.error(`deploy:check: ${message}`);
  process.exit(1);
}

const argv = process.argv.slice(2);
let env: DeployEnv | null = null;
if (argv.some((a) => a === '--env' || a === '-e' || a.startsWith('--env='))) {
  try {
    env = parseEnvArg(argv);
  } catch (err) {
    fail((err as Error).message);
  }
}

const raw = readRawConfig();
const parity = bindingParity(raw);
if (parity.length) fail(`wrangler.toml environments are out of step:\n  ${parity.join('\n  ')}`);

if (build(env) !== 0) fail('vite build failed');
stripLocalSecrets(DIST);
rmSync(OUT, { recursive: true, force: true });
// vite build writes the deployable (flattened, per-env) config next to the built Worker.
const dry = wrangler(['deploy', '--dry-run', '--config', join(DIST, 'e2e_chat/wrangler.json'), '--outdir', OUT]);
if (dry.status !== 0) fail('wrangler deploy --dry-run failed');

// The reliability fault hook (worker/faults.ts) is for `npm run dev` only: fail if the build kept it.
try {
  assertNoFaultHook(DIST);
} catch (err) {
  fail((err as Error).message);
}

const files = readdirSync(OUT, { recursive: true })
  .map(String)
  .filter((f) => /\.(m?js|wasm)$/.test(f) && statSync(join(OUT, f)).isFile());
let rawBytes = 0;
let gz = 0;
for (const f of files) {
  const buf = readFileSync(join(OUT, f));
  rawBytes += buf.length;
  gz += gzipSync(buf, { level: 9 }).length;
}
const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
console.log(`\nWorker bundle (${files.length} file${files.length === 1 ? '' : 's'} in ${OUT}):`);
console.log(`  raw     ${kib(rawBytes)}`);
console.log(`  gzipped ${kib(gz)}   (limit: 3 MiB free plan, 10 MiB paid)`);
if (env) {
  const built = JSON.parse(readFileSync(join(DIST, 'e2e_chat/wrangler.json'), 'utf8')) as { name: string };
  console.log(`\nEnvironment ${env}: Worker "${built.name}"`);
  console.log('Secrets a deploy needs (npm run deploy refuses while any is missing):');
  for (const line of secretPutLines(requiredSecrets(raw, env), env)) console.log(`  ${line}`);
  const left = placeholders(raw, env);
  if (left.length) console.log(`Placeholders a real deploy refuses:\n  ${left.join('\n  ')}`);
}
console.log(`\ndeploy:check ${env ?? 'local default'}: OK`);
