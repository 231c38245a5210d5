/**
 * A verifiable web client (issue 18): two clean builds of the same tree in different folders give
 * identical bytes; the build's asset-manifest.json lists the SHA-256 of every served file; index.html
 * carries Subresource Integrity for every script and style; `npm run verify:client` says OK for a site
 * serving that build and names exactly the file a tampered site changed.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AssetManifest, MANIFEST_FILE, sha256, subresources } from './asset-manifest.js';
import { QUIET_ENV, ROOT } from './local-env.js';
import { verifyClient } from './verify-client.js';

const base = mkdtempSync(join(tmpdir(), 'e2e-chat-repro-'));
const trees = [join(base, 'a'), join(base, 'elsewhere', 'b')];
afterAll(() => rmSync(base, { recursive: true, force: true }), 120_000);

/**
 * The working tree's files (tracked + untracked, not ignored) into the first folder, that folder into the
 * second (so an edit made meanwhile cannot reach only one), node_modules hard-linked (the same bytes).
 */
function copyTrees(): void {
  const [a, b] = trees as [string, string];
  const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: ROOT, encoding: 'utf8' })
    .split('\0')
    .filter((f) => f && statSync(join(ROOT, f), { throwIfNoEntry: false })?.isFile());
  for (const f of files) cpSync(join(ROOT, f), join(a, f));
  mkdirSync(b, { recursive: true });
  cpSync(a, b, { recursive: true });
  for (const t of trees) {
    const linked = spawnSync('cp', ['-al', join(ROOT, 'node_modules'), join(t, 'node_modules')]);
    if (linked.status !== 0) cpSync(join(ROOT, 'node_modules'), join(t, 'node_modules'), { recursive: true });
  }
}

/** `vite build` in `tree` (asynchronous, so the two builds run side by side: npm test time). */
function build(tree: string): Promise<void> {
  const env: NodeJS.ProcessEnv = { ...QUIET_ENV, E2E_CHAT_COMMIT: 'test-commit' };
  for (const k of ['E2E_CHAT_DIST_DIR', 'E2E_CHAT_WRANGLER_CONFIG', 'CLOUDFLARE_ENV']) delete env[k];
  const child = spawn(process.execPath, [join(tree, 'node_modules/vite/bin/vite.js'), 'build'], { cwd: tree, env });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  child.stdout.resume();
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`build in ${tree} failed:\n${stderr}`))));
  });
}

function hashes(dist: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else {
        let bytes: Buffer | string = readFileSync(p);
        // The flattened Worker config records the absolute path of the wrangler.toml it came from.
        if (relative(dist, p) === join('e2e_chat', 'wrangler.json')) {
          const j = JSON.parse(bytes.toString('utf8'));
          j.configPath = j.userConfigPath = '<tree>/wrangler.toml';
          bytes = JSON.stringify(j);
        }
        out[relative(dist, p)] = sha256(bytes);
      }
    }
  };
  walk(dist);
  return out;
}

describe('reproducible build and verifiable client', () => {
  beforeAll(async () => {
    copyTrees();
    await Promise.all(trees.map(build));
  }, 600_000);

  it('two clean builds in different folders are byte-identical (client and Worker)', () => {
    const [a, b] = trees.map((t) => hashes(join(t, 'dist')));
    expect(Object.keys(a!).length).toBeGreaterThan(10);
    expect(Object.keys(a!).some((f) => f.startsWith('e2e_chat'))).toBe(true);
    expect(b).toEqual(a);
  });

  it('the manifest lists the SHA-256 of every served file, and index.html has SRI on every script and style', () => {
    const client = join(trees[0]!, 'dist', 'client');
    const m = JSON.parse(readFileSync(join(client, MANIFEST_FILE), 'utf8')) as AssetManifest;
    expect(m.commit).toBe('test-commit');
    const served = Object.keys(hashes(client))
      .filter((f) => !['.assetsignore', '_headers', MANIFEST_FILE].includes(f))
      .map((f) => `/${f}`)
      .sort();
    expect(Object.keys(m.files).sort()).toEqual(served);
    for (const [path, hash] of Object.entries(m.files)) expect(sha256(readFileSync(join(client, path)))).toBe(hash);
    const html = readFileSync(join(client, 'index.html'), 'utf8');
    const subs = subresources(html);
    expect(subs.filter((s) => s.tag === 'script').length).toBeGreaterThanOrEqual(1);
    expect(subs.some((s) => /\.css$/.test(s.url))).toBe(true);
    for (const s of subs) {
      const bytes = readFileSync(join(client, s.url));
      expect(s.integrity, s.url).toBe(`sha384-${createHash('sha384').update(bytes).digest('base64')}`);
    }
  });

  describe('npm run verify:client against a local server', () => {
    let server: Server;
    let url = '';
    /** path → replacement bytes: what a compromised host would serve instead. */
    const tampered = new Map<string, Buffer>();
    beforeAll(async () => {
      const root = join(trees[0]!, 'dist', 'client');
      server = createServer((req, res) => {
        const path = new URL(req.url ?? '/', 'http://x').pathname;
        const file = path === '/' ? '/index.html' : path;
        const body =
          tampered.get(file) ??
          (() => {
            try {
              return readFileSync(join(root, file));
            } catch {
              return null;
            }
          })();
        if (!body || file.includes('..')) {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200).end(body);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(() => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    });

    it('prints OK for a site serving a build of the same tree (CLI, reusing the second build)', async () => {
      // Asynchronously: the server answering it runs in this process.
      const cli = [join(ROOT, 'node_modules/tsx/dist/cli.mjs'), join(ROOT, 'scripts/verify-client.ts')];
      const child = spawn(process.execPath, [...cli, url, '--dist', join(trees[1]!, 'dist')], {
        cwd: ROOT,
        env: QUIET_ENV,
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => {
        out += d;
      });
      child.stderr.on('data', (d) => {
        err += d;
      });
      const code = await new Promise<number | null>((r) => child.on('close', r));
      expect(out.trim().split('\n').at(-1), err).toBe('OK');
      expect(out).toContain('site built from commit test-commit');
      expect(code).toBe(0);
    }, 120_000);

    it('names the one file a tampered site serves differently, and a script it adds', async () => {
      const client = join(trees[1]!, 'dist', 'client');
      const m = JSON.parse(readFileSync(join(client, MANIFEST_FILE), 'utf8')) as AssetManifest;
      const victim = Object.keys(m.files).find((f) => /\/assets\/Chats-.*\.js$/.test(f))!;
      tampered.set(victim, Buffer.concat([readFileSync(join(client, victim)), Buffer.from('\n;fetch("//evil")')]));
      const r1 = await verifyClient(url, client);
      expect(r1.ok).toBe(false);
      expect(r1.lines.filter((l) => l !== 'OK' && !l.startsWith('site built') && !l.startsWith('local build'))).toEqual(
        [expect.stringMatching(new RegExp(`^${victim.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: served bytes differ`))],
      );
      tampered.clear();
      const html = readFileSync(join(client, 'index.html'), 'utf8').replace(
        '</head>',
        '<script src="/x.js"></script></head>',
      );
      tampered.set('/index.html', Buffer.from(html));
      const r2 = await verifyClient(url, client);
      expect(r2.ok).toBe(false);
      expect(r2.lines).toContainEqual(expect.stringMatching(/^\/index\.html: served bytes differ/));
      expect(r2.lines).toContain('/index.html loads /x.js, which the local build does not have');
      expect(r2.lines).toContain('/index.html loads /x.js without an integrity attribute');
      tampered.clear();
    });
  });
});
