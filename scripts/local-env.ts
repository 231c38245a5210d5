/**
 * Local set-up shared by `npm run dev`, the browser tests and the benchmarks:
 *  - a git-ignored `.dev.vars` with freshly generated local secrets (never committed; a deploy uses
 *    `wrangler secret put` instead), extended in place when a new secret is introduced;
 *  - local D1 migrations applied to `.wrangler/state` (the folder the Vite plugin's workerd uses).
 * Nothing here needs a Cloudflare login or the network.
 */

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ed25519 } from '@noble/curves/ed25519.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Local workerd state (D1, DOs). Tests and benchmarks point it at a fresh temporary folder. */
export const STATE_DIR = process.env.E2E_CHAT_STATE_DIR ?? `${ROOT}.wrangler/state`;

/** Keep wrangler offline and quiet in every child process. */
export const QUIET_ENV = {
  ...process.env,
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  WRANGLER_HIDE_BANNER: 'true',
  WRANGLER_SEND_METRICS: 'false',
  NO_UPDATE_NOTIFIER: '1',
};

const b64u = (n: number) => randomBytes(n).toString('base64url');

/** Every local secret the Worker reads, with a generator. Add new secrets here. */
export const LOCAL_SECRETS: Record<string, () => string> = {
  APP_ENV: () => 'development',
  /** HMAC key for access tokens, `kid:secret` pairs, newest first (rotation: prepend a new pair). */
  JWT_SIGNING_KEYS: () => `dev-${b64u(4)}:${b64u(32)}`,
  /** AES-256-GCM key that encrypts TOTP secrets at rest. */
  TOTP_ENCRYPTION_KEY: () => b64u(32),
  /** Pepper mixed into stored token hashes. */
  TOKEN_HASH_KEY: () => b64u(32),
  /** Key-transparency log key (Ed25519 seed); ensureDevVars adds its public half, KT_LOG_PUBLIC_KEY. */
  KT_LOG_SIGNING_KEY: () => b64u(32),
};

/** The log key's public half (base64url) for a base64url Ed25519 seed. */
export function ktPublicKeyOf(seedB64u: string): string {
  return Buffer.from(ed25519.getPublicKey(Buffer.from(seedB64u, 'base64url'))).toString('base64url');
}

/** `KEY=value` lines of a .dev.vars-style file (quotes stripped); {} if it does not exist. */
export function readVars(path: string): Record<string, string> {
  if (!existsSync(path)) return {};
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^\s*([A-Z0-9_]+)\s*=\s*(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.trim().replace(/^(['"])(.*)\1$/, '$2');
  }
  return out;
}

/**
 * The chat-list / message-request poll (ms) a client is built with (vite.config.ts `define`, read by
 * web/src/app/poll.ts, whose default is 4 s): `E2E_CHAT_TEST_POLL_MS` (250–4000) only when Vite serves
 * (`command === 'serve'`: the dev server e2e/global-setup.ts starts for the browser tests sets it); every
 * `vite build`, and so every deployed client, ignores it. Anything else: null (the app's default).
 */
export function clientPollMsFor(command: string, raw = process.env.E2E_CHAT_TEST_POLL_MS): number | null {
  if (command !== 'serve' || raw === undefined || !/^\d{3,4}$/.test(raw)) return null;
  const ms = Number(raw);
  return ms >= 250 && ms <= 4_000 ? ms : null;
}

/**
 * The key-transparency log's public key the client is built with (vite.config.ts): `KT_LOG_PUBLIC_KEY` from
 * the environment; else, when building for a deployed environment (CLOUDFLARE_ENV names an `[env.*]` of
 * wrangler.toml), that env's var — never a local key; else the top-level var; else — local development and
 * tests — the local `.dev.vars`. Empty
 * when none is set: such a build refuses every key (no key is trusted without the log).
 */
export function ktLogPublicKeyForBuild(wranglerToml = process.env.E2E_CHAT_WRANGLER_CONFIG ?? `${ROOT}wrangler.toml`): {
  key: string;
  source: string;
} {
  if (process.env.KT_LOG_PUBLIC_KEY) return { key: process.env.KT_LOG_PUBLIC_KEY, source: 'environment' };
  const toml = existsSync(wranglerToml) ? readFileSync(wranglerToml, 'utf8') : '';
  const env = process.env.CLOUDFLARE_ENV;
  if (env && toml.includes(`[env.${env}.vars]`)) {
    const section = toml.split(`[env.${env}.vars]`)[1]!.split(/^\[/m)[0]!;
    return {
      key: /^KT_LOG_PUBLIC_KEY\s*=\s*"([^"]*)"/m.exec(section)?.[1] ?? '',
      source: `wrangler.toml [env.${env}.vars]`,
    };
  }
  const top = toml.split(/^\[vars\]/m)[1]?.split(/^\[/m)[0] ?? '';
  const fromToml = /^KT_LOG_PUBLIC_KEY\s*=\s*"([^"]*)"/m.exec(top)?.[1];
  if (fromToml) return { key: fromToml, source: 'wrangler.toml [vars]' };
  const vars = readVars(`${ROOT}.dev.vars`);
  if (vars.KT_LOG_PUBLIC_KEY) return { key: vars.KT_LOG_PUBLIC_KEY, source: 'local .dev.vars' };
  return { key: '', source: 'none' };
}

export function ensureDevVars(path = `${ROOT}.dev.vars`): { created: boolean; added: string[] } {
  const existing = existsSync(path) ? readFileSync(path, 'utf8') : '';
  const have = new Set(
    existing
      .split('\n')
      .map((l) => l.split('=')[0]?.trim())
      .filter(Boolean),
  );
  const added = Object.keys(LOCAL_SECRETS).filter((k) => !have.has(k));
  // Not a secret, but local: the log key's public half (the Worker checks it; the client build embeds it).
  if (!have.has('KT_LOG_PUBLIC_KEY')) added.push('KT_LOG_PUBLIC_KEY');
  if (added.length > 0) {
    const values: Record<string, string> = {};
    for (const k of added) if (LOCAL_SECRETS[k]) values[k] = LOCAL_SECRETS[k]();
    if (added.includes('KT_LOG_PUBLIC_KEY'))
      values.KT_LOG_PUBLIC_KEY = ktPublicKeyOf(values.KT_LOG_SIGNING_KEY ?? readVars(path).KT_LOG_SIGNING_KEY ?? '');
    const lines = added.map((k) => `${k}="${values[k]}"`);
    const header = existing ? '' : '# Local secrets generated by scripts/local-env.ts. Git-ignored; never commit.\n';
    writeFileSync(
      path,
      `${existing}${existing && !existing.endsWith('\n') ? '\n' : ''}${header}${lines.join('\n')}\n`,
      {
        mode: 0o600,
      },
    );
  }
  return { created: existing === '', added };
}

export function applyLocalMigrations(): void {
  const r = spawnSync(
    process.execPath,
    [
      `${ROOT}node_modules/wrangler/bin/wrangler.js`,
      'd1',
      'migrations',
      'apply',
      'DB',
      '--local',
      '--persist-to',
      STATE_DIR,
    ],
    { cwd: ROOT, env: QUIET_ENV, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' },
  );
  if (r.status !== 0) {
    process.stderr.write(r.stdout + r.stderr);
    throw new Error('applying local D1 migrations failed');
  }
  const applied = /No migrations to apply/.test(r.stdout) ? 'up to date' : 'applied';
  process.stdout.write(`local D1 migrations: ${applied}\n`);
}
