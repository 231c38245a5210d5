/**
 * `npm run deploy -- --env staging|production`: the real deploy (docs/DEPLOY.md). Order, and where it stops:
 *  1. wrangler.toml's environments in step (bindingParity) and no placeholder left (placeholders);
 *  2. every secret in `[env.X] secrets.required` is set on the Worker (`wrangler secret list`): if one is
 *     missing it prints the `wrangler secret put` line for each and exits — nothing built, migrated or
 *     uploaded (wrangler itself would also refuse the upload, but only after the migrations had run);
 *  3. build for the env, strip local secrets, refuse a build with the fault hook;
 *  4. records the database's current D1 Time Travel bookmark and prints the restore line (the undo for step 5
 *     if a migration goes wrong), then `wrangler d1 migrations apply DB --remote --env X` (migrations first: code that needs a new column
 *     never runs against an old schema; every migration is additive, see docs/DEPLOY.md §Upgrades);
 *  5. `wrangler deploy --config <dist>/e2e_chat/wrangler.json` (the build's flattened per-env config).
 * `E2E_CHAT_WRANGLER` may point at a stand-in wrangler script (scripts/deploy.test.ts).
 */
import { join } from 'node:path';
import { assertNoFaultHook } from './check-fault-hook.js';
import {
  bindingParity,
  build,
  CONFIG,
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

function fail(message: string): never {
  console.error(`deploy: ${message}`);
  process.exit(1);
}

let env: DeployEnv;
try {
  env = parseEnvArg(process.argv.slice(2));
} catch (err) {
  fail((err as Error).message);
}

const raw = readRawConfig();
const problems = [...bindingParity(raw), ...placeholders(raw, env)];
if (problems.length) fail(`wrangler.toml is not ready for ${env}:\n  ${problems.join('\n  ')}`);

// 2. Secrets, before anything else touches the account.
const required = requiredSecrets(raw, env);
const listed = wrangler(['secret', 'list', '--config', CONFIG, '--env', env, '--format', 'json'], { capture: true });
let present: string[] = [];
if (listed.status === 0) {
  try {
    present = (JSON.parse(listed.stdout) as { name: string }[]).map((s) => s.name);
  } catch {
    fail(`could not read \`wrangler secret list --env ${env}\` output:\n${listed.stdout}${listed.stderr}`);
  }
} else if (!/does not exist|not found|10007/i.test(listed.stdout + listed.stderr)) {
  // 10007 / "not found": the Worker does not exist yet (first deploy) — then every secret is missing.
  fail(`\`wrangler secret list --env ${env}\` failed (logged in? npx wrangler login):\n${listed.stderr}`);
}
const missing = required.filter((n) => !present.includes(n));
if (missing.length) {
  fail(
    `missing secret${missing.length > 1 ? 's' : ''} for ${env}: ${missing.join(', ')}. Nothing was built, migrated or uploaded.\n` +
      `Set ${missing.length > 1 ? 'each' : 'it'} (values never go in a file), then run npm run deploy -- --env ${env} again:\n  ` +
      secretPutLines(missing, env).join('\n  '),
  );
}

// 3. Build for this env.
if (build(env) !== 0) fail('vite build failed');
stripLocalSecrets(DIST);
try {
  assertNoFaultHook(DIST);
} catch (err) {
  fail((err as Error).message);
}

// 4. The undo point, migrations first, 5. then the code.
const tt = wrangler(['d1', 'time-travel', 'info', 'DB', '--config', CONFIG, '--env', env, '--json'], { capture: true });
let bookmark: string | null = null;
try {
  bookmark = (JSON.parse(tt.stdout) as { bookmark?: string }).bookmark ?? null;
} catch {
  bookmark = null;
}
if (bookmark) {
  console.log(`D1 bookmark before the migrations: ${bookmark}`);
  console.log(
    `  undo them (destructive, see docs/DEPLOY.md §Restore): npx wrangler d1 time-travel restore DB --env ${env} --bookmark=${bookmark}`,
  );
} else {
  console.warn(`could not read the D1 Time Travel bookmark (continuing): ${tt.stderr.trim().split('\n').pop() ?? ''}`);
}
if (wrangler(['d1', 'migrations', 'apply', 'DB', '--remote', '--config', CONFIG, '--env', env]).status !== 0) {
  fail('D1 migrations failed: the previous version is still serving; nothing was uploaded (docs/DEPLOY.md §Rollback)');
}
if (wrangler(['deploy', '--config', join(DIST, 'e2e_chat/wrangler.json')]).status !== 0) {
  fail('wrangler deploy failed after the migrations were applied (they are additive: the old version keeps working)');
}
console.log(`deploy ${env}: done. Check: curl -s https://<host>/api/health ; npm run verify:client -- https://<host>`);
