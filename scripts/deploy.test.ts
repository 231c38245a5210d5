/**
 * Environments and deploy (issue 18): wrangler.toml's env sections stay in step with the top level, each
 * env's offline dry run passes, and `npm run deploy` stops before building or uploading anything when a
 * secret is missing — then, with every secret set, runs migrations before the upload.
 * The real wrangler runs offline (`--dry-run`); account calls go to a stand-in (E2E_CHAT_WRANGLER).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  bindingParity,
  DEPLOY_ENVS,
  envSection,
  parseEnvArg,
  placeholders,
  readRawConfig,
  requiredSecrets,
  secretPutLines,
} from './deploy-config.js';
import { LOCAL_SECRETS, QUIET_ENV, ROOT } from './local-env.js';

const raw = readRawConfig(join(ROOT, 'wrangler.toml'));
const tmp = mkdtempSync(join(tmpdir(), 'e2e-chat-deploy-'));
const testConfig = join(ROOT, `.wrangler-test-${process.pid}.toml`);
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
  rmSync(testConfig, { force: true });
});

/** A stand-in wrangler: logs each call; `secret list` answers FAKE_SECRETS; `deploy` runs the real one --dry-run. */
const FAKE = join(tmp, 'fake-wrangler.mjs');
writeFileSync(
  FAKE,
  `import { appendFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
const args = process.argv.slice(2);
appendFileSync(process.env.FAKE_LOG, JSON.stringify(args) + '\\n');
if (args[0] === 'secret' && args[1] === 'list') {
  console.log(JSON.stringify(process.env.FAKE_SECRETS.split(',').filter(Boolean).map((name) => ({ name, type: 'secret_text' }))));
} else if (args[0] === 'd1' && args[1] === 'time-travel') {
  console.log(JSON.stringify({ bookmark: '00000085-0000024c-00004c6d-8e61117bf38d7adb71b934ebbf891683' }));
} else if (args[0] === 'deploy') {
  const r = spawnSync(process.execPath, [process.env.REAL_WRANGLER, ...args, '--dry-run', '--outdir', process.env.FAKE_OUT], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
`,
);

function runScript(script: string, args: string[], env: Record<string, string>) {
  return spawnSync(process.execPath, [join(ROOT, 'node_modules/tsx/dist/cli.mjs'), join(ROOT, script), ...args], {
    cwd: ROOT,
    env: { ...QUIET_ENV, ...env },
    encoding: 'utf8',
  });
}

describe('wrangler.toml environments', () => {
  it('staging and production repeat every top-level binding and var, each with its own resources', () => {
    expect(bindingParity(raw)).toEqual([]);
    for (const env of DEPLOY_ENVS) {
      const sec = envSection(raw, env);
      expect((sec.vars as Record<string, string>).APP_ENV).toBe(env);
      const obs = sec.observability as {
        logs: { enabled: boolean; destinations: string[] };
        traces: { enabled: boolean };
      };
      expect(obs.logs.enabled && obs.traces.enabled).toBe(true);
      expect(obs.logs.destinations.length).toBeGreaterThan(0);
    }
  });

  it('a binding added at the top level but not in an env (or a shared resource) is reported by name', () => {
    const broken = structuredClone(raw) as Record<string, unknown>;
    broken.r2_buckets = [{ binding: 'ATTACHMENTS', bucket_name: 'e2e-chat-attachments' }];
    (broken.vars as Record<string, string>).NEW_VAR = 'x';
    broken.queues = { producers: [{ binding: 'WEBHOOKS', queue: 'hooks' }], consumers: [{ queue: 'hooks' }] };
    const env = broken.env as Record<string, Record<string, unknown>>;
    env.staging!.r2_buckets = [{ binding: 'ATTACHMENTS', bucket_name: 'e2e-chat-attachments-staging' }];
    env.staging!.queues = {
      producers: [{ binding: 'WEBHOOKS', queue: 'hooks-staging' }],
      consumers: [{ queue: 'hooks-staging' }],
    };
    env.production!.queues = { producers: [{ binding: 'WEBHOOKS', queue: 'hooks' }] };
    delete env.production!.r2_buckets;
    const problems = bindingParity(broken).join('\n');
    expect(problems).toMatch(/\[env\.production\] r2_buckets: has \[\] but the top level has \[ATTACHMENTS\]/);
    expect(problems).not.toMatch(/\[env\.staging\] r2_buckets/);
    expect(problems).toMatch(/\[env\.staging\] vars: .*NEW_VAR/);
    expect(problems).toMatch(/\[env\.production\] vars: .*NEW_VAR/);
    expect(problems).toMatch(/\[env\.production\] queues: has \[producer:WEBHOOKS\] but .*consumer:WEBHOOKS/);
    expect(problems).toMatch(/\[env\.production\] queues: queue hooks is also used by the top level/);
    expect(problems).not.toMatch(/\[env\.staging\] queues/);
  });

  it('each env requires exactly the secrets the Worker reads, and DEPLOY.md has a put line for each', () => {
    const secrets = Object.keys(LOCAL_SECRETS).filter((k) => k !== 'APP_ENV');
    const deployMd = readFileSync(join(ROOT, 'docs/DEPLOY.md'), 'utf8');
    for (const env of DEPLOY_ENVS) {
      expect(requiredSecrets(raw, env).sort()).toEqual([...secrets].sort());
      for (const line of secretPutLines(secrets, env)) expect(deployMd).toContain(line);
    }
  });

  it('a fresh clone still has placeholders, and --env takes only staging or production', () => {
    expect(placeholders(raw, 'production').join('\n')).toMatch(/database_id is a placeholder[\s\S]*chat\.example\.com/);
    expect(parseEnvArg(['--env', 'staging'])).toBe('staging');
    expect(parseEnvArg(['--env=production'])).toBe('production');
    expect(() => parseEnvArg(['--env', 'prod'])).toThrow(/--env staging\|production/);
    expect(() => parseEnvArg([])).toThrow(/choose an environment/);
  });
});

/** A key-transparency log public key for the test copy's environments (any 32 bytes, base64url). */
const TEST_KT_KEY = Buffer.alloc(32, 7).toString('base64url');

describe('npm run deploy', () => {
  // A copy of wrangler.toml (next to it, so relative paths hold) with the placeholders filled in.
  writeFileSync(
    testConfig,
    readFileSync(join(ROOT, 'wrangler.toml'), 'utf8')
      .replace(/00000000-0000-4000-8000-00000000000([12])/g, '1234abcd-0000-4000-8000-00000000000$1')
      .replaceAll('example.com', 'chat-test.invalid')
      .replaceAll('KT_LOG_PUBLIC_KEY = ""', `KT_LOG_PUBLIC_KEY = "${TEST_KT_KEY}"`),
  );
  const secrets = requiredSecrets(raw, 'staging');

  it('with a secret missing, stops before building, migrating or uploading, and prints its put line', () => {
    const log = join(tmp, 'missing.log');
    const dist = join(tmp, 'dist-missing');
    const r = runScript('scripts/deploy.ts', ['--env', 'staging'], {
      E2E_CHAT_WRANGLER: FAKE,
      E2E_CHAT_WRANGLER_CONFIG: testConfig,
      E2E_CHAT_DIST_DIR: dist,
      FAKE_LOG: log,
      FAKE_SECRETS: secrets.filter((s) => s !== 'TOKEN_HASH_KEY').join(','),
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('missing secret for staging: TOKEN_HASH_KEY');
    expect(r.stderr).toContain(secretPutLines(['TOKEN_HASH_KEY'], 'staging')[0]);
    const calls = readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as string[]);
    expect(calls.map((c) => c.slice(0, 2).join(' '))).toEqual(['secret list']);
    expect(existsSync(dist)).toBe(false);
  });

  it('refuses the placeholders a fresh clone ships with before asking the account anything', () => {
    const log = join(tmp, 'placeholders.log');
    const r = runScript('scripts/deploy.ts', ['--env', 'production'], {
      E2E_CHAT_WRANGLER: FAKE,
      FAKE_LOG: log,
      FAKE_SECRETS: secrets.join(','),
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/not ready for production[\s\S]*database_id is a placeholder/);
    expect(existsSync(log)).toBe(false);
  });

  it('with every secret set: builds for staging, applies migrations, then deploys (real wrangler --dry-run)', {
    timeout: 240_000,
  }, () => {
    const log = join(tmp, 'full.log');
    const out = join(tmp, 'dry-staging');
    const dist = join(tmp, 'dist-staging');
    const r = runScript('scripts/deploy.ts', ['--env', 'staging'], {
      E2E_CHAT_WRANGLER: FAKE,
      E2E_CHAT_WRANGLER_CONFIG: testConfig,
      E2E_CHAT_DIST_DIR: dist,
      REAL_WRANGLER: join(ROOT, 'node_modules/wrangler/bin/wrangler.js'),
      FAKE_LOG: log,
      FAKE_OUT: out,
      FAKE_SECRETS: secrets.join(','),
    });
    expect(r.status, r.stderr).toBe(0);
    const calls = readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as string[]);
    expect(calls.map((c) => c.slice(0, 3).join(' '))).toEqual([
      'secret list --config',
      'd1 time-travel info',
      'd1 migrations apply',
      `deploy --config ${join(dist, 'e2e_chat/wrangler.json')}`,
    ]);
    expect(r.stdout).toContain(
      'wrangler d1 time-travel restore DB --env staging --bookmark=00000085-0000024c-00004c6d-8e61117bf38d7adb71b934ebbf891683',
    );
    expect(calls[2]).toEqual([
      'd1',
      'migrations',
      'apply',
      'DB',
      '--remote',
      '--config',
      testConfig,
      '--env',
      'staging',
    ]);
    // The dry run uploaded nothing and bound the staging resources.
    expect(r.stdout).toContain('env.DB (e2e-chat-staging)');
    expect(r.stdout).toContain('env.METRICS (e2e_chat_staging)');
    expect(r.stdout).toContain('--dry-run: exiting now.');
    const built = JSON.parse(readFileSync(join(dist, 'e2e_chat/wrangler.json'), 'utf8'));
    expect(built.name).toBe('e2e-chat-staging');
    expect(built.observability.traces.head_sampling_rate).toBe(1);
    expect(existsSync(join(dist, 'e2e_chat/.dev.vars'))).toBe(false);
    // The client is built with the staging log key (the Worker checks its secret against the same var).
    const client = readdirSync(join(dist, 'client/assets'))
      .filter((f) => f.endsWith('.js'))
      .map((f) => readFileSync(join(dist, 'client/assets', f), 'utf8'))
      .join('\n');
    expect(client).toContain(TEST_KT_KEY);
    expect(built.vars.KT_LOG_PUBLIC_KEY).toBe(TEST_KT_KEY);
  });
});

describe('npm run deploy:check', () => {
  it('--env production builds and dry-runs offline with the production resources', { timeout: 240_000 }, () => {
    const dist = join(tmp, 'dist-production');
    const r = runScript('scripts/deploy-check.ts', ['--env', 'production'], { E2E_CHAT_DIST_DIR: dist });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('env.DB (e2e-chat-production)');
    expect(r.stdout).toContain('env.METRICS (e2e_chat_production)');
    expect(r.stdout).toContain('Environment production: Worker "e2e-chat-production"');
    for (const line of secretPutLines(requiredSecrets(raw, 'production'), 'production'))
      expect(r.stdout).toContain(line);
    expect(r.stdout).toMatch(/Placeholders a real deploy refuses/);
    expect(r.stdout).toContain('deploy:check production: OK');
    const built = JSON.parse(readFileSync(join(dist, 'e2e_chat/wrangler.json'), 'utf8'));
    expect(built.observability.logs.head_sampling_rate).toBe(0.25);
    expect(built.secrets.required.length).toBeGreaterThan(0);
  });
});
