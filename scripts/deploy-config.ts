/**
 * What `npm run deploy` and `npm run deploy:check` need to know about wrangler.toml's environments
 * (docs/DEPLOY.md), and the checks both run before anything is built or uploaded:
 *  - `bindingParity`: wrangler inherits no binding into an `[env.*]` section, so every top-level binding
 *    (D1, R2, Queues, Durable Objects, vars, Analytics Engine, services, … — any top-level key that is not
 *    plainly inheritable) must appear in every deployed environment with the same binding names, and
 *    nothing extra; each env names its own resources (database, bucket, queue, dataset);
 *  - `placeholders`: the example.com routes and all-zero database ids a fresh clone ships with;
 *  - `requiredSecrets` / `secretPutLines`: the secrets each env declares in `secrets.required`, with the
 *    `wrangler secret put` line for each.
 * The config is read with wrangler's own reader (no TOML parser of ours).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { experimental_readRawConfig } from 'wrangler';
import { QUIET_ENV, ROOT } from './local-env.js';

export const DEPLOY_ENVS = ['staging', 'production'] as const;
export type DeployEnv = (typeof DEPLOY_ENVS)[number];

type Raw = Record<string, unknown>;

/** The source config (`E2E_CHAT_WRANGLER_CONFIG` lets scripts/deploy.test.ts use a copy; vite.config.ts too). */
export const CONFIG = process.env.E2E_CHAT_WRANGLER_CONFIG ?? join(ROOT, 'wrangler.toml');

export function readRawConfig(path = CONFIG): Raw {
  return experimental_readRawConfig({ config: path }).rawConfig as Raw;
}

/** The `[env.<name>]` section of a raw config. */
export function envSection(raw: Raw, env: string): Raw {
  const e = (raw.env as Record<string, Raw> | undefined)?.[env];
  if (!e) throw new Error(`wrangler.toml has no [env.${env}] section`);
  return e;
}

/**
 * Top-level keys wrangler inherits into environments (or that are not bindings). Every OTHER top-level
 * key is treated as a binding section that each environment must repeat — so a kind of binding nobody has
 * used yet is covered too.
 */
const NOT_BINDINGS = new Set([
  'name',
  'main',
  'compatibility_date',
  'compatibility_flags',
  'send_metrics',
  'workers_dev',
  'preview_urls',
  'routes',
  'route',
  'assets',
  'migrations',
  'triggers',
  'observability',
  'limits',
  'placement',
  'minify',
  'keep_names',
  'logpush',
  'upload_source_maps',
  'build',
  'rules',
  'no_bundle',
  'base_dir',
  'find_additional_modules',
  'preserve_file_names',
  'tsconfig',
  'account_id',
  'jsx_factory',
  'jsx_fragment',
  'dev',
  'site',
  'env',
  'secrets',
  'define',
  'alias',
]);

type Named = Record<string, unknown>;
const asArray = (v: unknown): Named[] => (Array.isArray(v) ? (v as Named[]) : []);

/** Binding names of one binding section, e.g. `d1_databases` → ["DB"], `vars` → ["APP_ENV", …]. */
export function bindingNames(key: string, value: unknown): string[] {
  if (value === undefined || value === null) return [];
  if (key === 'vars') return Object.keys(value as Raw).sort();
  if (key === 'durable_objects') return asArray((value as Raw).bindings).map((b) => String(b.name));
  if (key === 'queues') {
    const q = value as { producers?: Named[]; consumers?: Named[] };
    const producerOf = new Map(asArray(q.producers).map((p) => [String(p.queue), String(p.binding)]));
    return [
      ...asArray(q.producers).map((p) => `producer:${p.binding}`),
      // A consumer is named by the producer binding of the queue it consumes (queue names differ per env).
      ...asArray(q.consumers).map((c) => `consumer:${producerOf.get(String(c.queue)) ?? String(c.queue)}`),
    ].sort();
  }
  if (Array.isArray(value)) {
    return value.map((b: Named) => String(b.binding ?? b.name ?? b.queue ?? JSON.stringify(b))).sort();
  }
  if (typeof value === 'object') {
    const o = value as Raw;
    if (typeof o.binding === 'string') return [o.binding];
    if (Array.isArray(o.bindings)) return asArray(o.bindings).map((b) => String(b.binding ?? b.name));
  }
  return [String(key)];
}

/** Resource names a binding section points at (must differ between environments). */
export function resourceNames(key: string, value: unknown): string[] {
  const out: string[] = [];
  if (key === 'queues') {
    const q = value as { producers?: Named[]; consumers?: Named[] };
    for (const p of asArray(q.producers)) out.push(`queue ${p.queue}`);
    for (const c of asArray(q.consumers)) out.push(`queue ${c.queue}`);
    return out;
  }
  for (const b of asArray(value)) {
    for (const f of ['database_name', 'database_id', 'bucket_name', 'dataset', 'id', 'index_name', 'pipeline']) {
      if (typeof b[f] === 'string') out.push(`${f} ${b[f]}`);
    }
  }
  return out;
}

/** Every way the deployed environments' bindings differ from the top level's (empty = in step). */
export function bindingParity(raw: Raw, envs: readonly string[] = DEPLOY_ENVS): string[] {
  const problems: string[] = [];
  const sections = envs.map((e) => [e, envSection(raw, e)] as const);
  const keys = new Set(Object.keys(raw).filter((k) => !NOT_BINDINGS.has(k)));
  for (const [, sec] of sections) for (const k of Object.keys(sec)) if (!NOT_BINDINGS.has(k)) keys.add(k);
  for (const key of [...keys].sort()) {
    const top = bindingNames(key, raw[key]).join(', ');
    for (const [name, sec] of sections) {
      const here = bindingNames(key, sec[key]).join(', ');
      if (here !== top) {
        problems.push(`[env.${name}] ${key}: has [${here}] but the top level has [${top}] — repeat it in every env`);
      }
    }
    // Each env points at its own resources: none shared with another env or with the local default.
    const seen = new Map<string, string>();
    for (const r of new Set(resourceNames(key, raw[key]))) seen.set(r, 'the top level');
    for (const [name, sec] of sections) {
      for (const r of new Set(resourceNames(key, sec[key]))) {
        const other = seen.get(r);
        if (other) problems.push(`[env.${name}] ${key}: ${r} is also used by ${other} — give each env its own`);
        else seen.set(r, `[env.${name}]`);
      }
    }
  }
  return problems;
}

/** Secret names the env declares in `secrets.required`. */
export function requiredSecrets(raw: Raw, env: string): string[] {
  const s = envSection(raw, env).secrets as { required?: string[] } | undefined;
  return [...(s?.required ?? [])];
}

/** How an operator makes each secret (the value never appears in any file of this repository). */
export const SECRET_RECIPES: Record<string, string> = {
  JWT_SIGNING_KEYS: `echo "k1:$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=')"`,
  TOTP_ENCRYPTION_KEY: `openssl rand -base64 32 | tr '+/' '-_' | tr -d '='`,
  TOKEN_HASH_KEY: `openssl rand -base64 32 | tr '+/' '-_' | tr -d '='`,
  // The seed from `npm run kt:keygen`; its public half goes in [env.X.vars] KT_LOG_PUBLIC_KEY.
  KT_LOG_SIGNING_KEY: `printf %s "<KT_LOG_SIGNING_KEY from npm run kt:keygen>"`,
};

/** One ready-to-paste line per secret: `<recipe> | npx wrangler secret put NAME --env <env>`. */
export function secretPutLines(names: readonly string[], env: string): string[] {
  return names.map((n) => `${SECRET_RECIPES[n] ?? 'printf %s "<value>"'} | npx wrangler secret put ${n} --env ${env}`);
}

const ZERO_ID = /^0{8}-0{4}-4000-8000-0{11}\d$/;

/** Values a fresh clone ships with that a real deploy must not use. */
export function placeholders(raw: Raw, env: string): string[] {
  const sec = envSection(raw, env);
  const out: string[] = [];
  for (const d of asArray(sec.d1_databases)) {
    if (typeof d.database_id === 'string' && ZERO_ID.test(d.database_id)) {
      out.push(
        `[env.${env}] d1_databases ${d.binding}: database_id is a placeholder (npx wrangler d1 create ${d.database_name})`,
      );
    }
  }
  const routes = [...asArray(sec.routes), ...(sec.route ? [sec.route as Named] : [])];
  for (const r of routes) {
    const pattern = typeof r === 'string' ? r : String(r.pattern);
    if (/example\.(com|org|net)/.test(pattern)) out.push(`[env.${env}] routes: ${pattern} is a placeholder domain`);
  }
  const ktKey = (sec.vars as Raw | undefined)?.KT_LOG_PUBLIC_KEY;
  if (!ktKey) {
    out.push(
      `[env.${env}] vars.KT_LOG_PUBLIC_KEY is empty: npm run kt:keygen, put the public half here and the secret with wrangler secret put KT_LOG_SIGNING_KEY`,
    );
  }
  const origin = (sec.vars as Raw | undefined)?.APP_ORIGIN;
  if (typeof origin === 'string' && /example\.(com|org|net)/.test(origin)) {
    out.push(`[env.${env}] vars.APP_ORIGIN: ${origin} is a placeholder`);
  }
  return out;
}

/** `--env staging|production` from argv, or an error message. */
export function parseEnvArg(argv: readonly string[]): DeployEnv {
  const i = argv.findIndex((a) => a === '--env' || a === '-e' || a.startsWith('--env='));
  const value = i < 0 ? undefined : argv[i]!.startsWith('--env=') ? argv[i]!.slice(6) : argv[i + 1];
  if (!value || !(DEPLOY_ENVS as readonly string[]).includes(value)) {
    throw new Error(`choose an environment: --env ${DEPLOY_ENVS.join('|')}`);
  }
  return value as DeployEnv;
}

/** The built output folder (`E2E_CHAT_DIST_DIR` lets tests build elsewhere; vite.config.ts reads it too). */
export const DIST = process.env.E2E_CHAT_DIST_DIR ?? join(ROOT, 'dist');

/**
 * Runs wrangler (or, for tests, the Node script in `E2E_CHAT_WRANGLER`) offline-quiet, inheriting stdio
 * unless `capture`. Returns the exit status and captured output.
 */
export function wrangler(args: string[], opts: { capture?: boolean; env?: NodeJS.ProcessEnv } = {}) {
  const bin = process.env.E2E_CHAT_WRANGLER ?? join(ROOT, 'node_modules/wrangler/bin/wrangler.js');
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd: ROOT,
    env: { ...QUIET_ENV, ...opts.env },
    stdio: opts.capture ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    encoding: 'utf8',
  });
  return { status: r.status ?? 1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** `vite build` for one environment (the Cloudflare plugin flattens `[env.<env>]` into dist/e2e_chat). */
export function build(env: DeployEnv | null): number {
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build'], {
    cwd: ROOT,
    env: { ...QUIET_ENV, ...(env ? { CLOUDFLARE_ENV: env } : {}), E2E_CHAT_DIST_DIR: DIST },
    stdio: 'inherit',
  });
  return r.status ?? 1;
}
