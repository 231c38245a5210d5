/**
 * `wrangler dev` for the benchmarks (bench:delivery's relay and app, bench:kt's log): a config on a free
 * loopback port with its own state folder (removed on stop), resolved once `probePath` answers.
 * @module
 */
import { rmSync } from 'node:fs';
import { onFreePort, startSupervised } from '../../scripts/dev-server.js';
import { QUIET_ENV, ROOT } from '../../scripts/local-env.js';

/** `wrangler dev` of `config` on a free port with its own state folder; resolves once `probePath` answers. */
export async function startWrangler(
  config: string,
  probePath: string,
  state: string,
): Promise<{ url: string; stop: () => Promise<void> }> {
  return onFreePort((port) => startOn(port, config, probePath, state));
}

async function startOn(
  port: number,
  config: string,
  probePath: string,
  state: string,
): Promise<{ url: string; stop: () => Promise<void> }> {
  const { url, stop } = await startSupervised(
    [
      `${ROOT}node_modules/wrangler/bin/wrangler.js`,
      'dev',
      '--config',
      config,
      '--ip',
      '127.0.0.1',
      '--port',
      String(port),
      '--persist-to',
      state,
      '--log-level',
      'error',
      '--show-interactive-dev-session=false',
      ...(process.env.BENCH_INSPECT_PORT && config.includes('bench-app')
        ? ['--inspector-port', process.env.BENCH_INSPECT_PORT]
        : []),
    ],
    {
      port,
      env: QUIET_ENV,
      probePath,
      what: `wrangler dev (${config})`,
      cleanup: () => rmSync(state, { recursive: true, force: true }),
    },
  );
  return { url, stop };
}
