/**
 * `npm run dev`: generate local secrets if needed, apply local D1 migrations, then serve the Worker, its
 * Durable Objects, local D1 and the SolidJS app on one origin with Vite + workerd.
 */
import { spawn } from 'node:child_process';
import { applyLocalMigrations, ensureDevVars, QUIET_ENV, ROOT } from './local-env.js';

const vars = ensureDevVars();
if (vars.added.length) process.stdout.write(`.dev.vars: generated ${vars.added.join(', ')}\n`);
applyLocalMigrations();

const child = spawn(process.execPath, [`${ROOT}node_modules/vite/bin/vite.js`, ...process.argv.slice(2)], {
  cwd: ROOT,
  env: QUIET_ENV,
  stdio: 'inherit',
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
child.on('exit', (code) => process.exit(code ?? 0));
