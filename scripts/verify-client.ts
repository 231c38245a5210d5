/**
 * `npm run verify:client -- https://host [--dist <built dist folder>]`: is the web client a site serves the
 * one this checkout builds? Builds the client locally (into a temporary folder; `--dist` reuses a build),
 * then fetches the site's `index.html` (at `/`), its `asset-manifest.json` and every file the local build
 * lists, and compares SHA-256 hashes. Prints `OK` or exactly what differs, and exits 0 / 1.
 * What this proves and what it does not: README §Verify the web client.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AssetManifest, MANIFEST_FILE, manifestOf, sha256, subresources } from './asset-manifest.js';
import { QUIET_ENV, ROOT } from './local-env.js';

export interface VerifyResult {
  ok: boolean;
  lines: string[];
}

async function get(base: string, path: string): Promise<Uint8Array | { status: number }> {
  const res = await fetch(new URL(path, base), { redirect: 'follow', headers: { 'cache-control': 'no-cache' } });
  if (!res.ok) return { status: res.status };
  return new Uint8Array(await res.arrayBuffer());
}

/** Compares the site at `base` with the built client in `clientDir`. */
export async function verifyClient(base: string, clientDir: string): Promise<VerifyResult> {
  // File hashes recomputed from the bytes; the commit as the build recorded it.
  const local = manifestOf(clientDir, ROOT);
  try {
    const built = JSON.parse(readFileSync(join(clientDir, MANIFEST_FILE), 'utf8')) as AssetManifest;
    local.commit = built.commit;
    local.dirty = built.dirty;
  } catch {
    // a build without a manifest: keep the checkout's commit
  }
  const problems: string[] = [];
  const info: string[] = [];
  const short = (h: string) => h.slice(0, 16);

  const remoteManifestBytes = await get(base, `/${MANIFEST_FILE}`);
  let remote: AssetManifest | null = null;
  if (remoteManifestBytes instanceof Uint8Array) {
    try {
      remote = JSON.parse(new TextDecoder().decode(remoteManifestBytes)) as AssetManifest;
    } catch {
      problems.push(`/${MANIFEST_FILE}: not JSON`);
    }
  } else {
    problems.push(`/${MANIFEST_FILE}: HTTP ${remoteManifestBytes.status} (the site publishes no manifest)`);
  }
  if (remote) {
    info.push(
      `site built from commit ${remote.commit ?? 'unknown'}${remote.dirty ? ' (with uncommitted changes)' : ''}`,
    );
    info.push(`local build of commit ${local.commit ?? 'unknown'}${local.dirty ? ' (with uncommitted changes)' : ''}`);
    if (remote.commit && local.commit && remote.commit !== local.commit) {
      info.push(`  → check out ${remote.commit} (git checkout ${remote.commit} && npm ci) and run this again`);
    }
    for (const path of Object.keys(remote.files ?? {}).sort()) {
      if (!(path in local.files)) problems.push(`${path}: listed by the site's manifest, not in the local build`);
    }
    for (const [path, hash] of Object.entries(local.files)) {
      const theirs = remote.files?.[path];
      if (theirs === undefined) problems.push(`${path}: missing from the site's manifest`);
      else if (theirs !== hash)
        problems.push(`${path}: the site's manifest says ${short(theirs)}…, local build ${short(hash)}…`);
    }
  }

  // What the site actually serves (the manifest is only its claim).
  for (const [path, hash] of Object.entries(local.files)) {
    const body = await get(base, path === '/index.html' ? '/' : path);
    if (!(body instanceof Uint8Array)) {
      problems.push(`${path}: HTTP ${body.status} on the site`);
      continue;
    }
    const theirs = sha256(body);
    if (theirs !== hash) problems.push(`${path}: served bytes differ (site ${short(theirs)}…, local ${short(hash)}…)`);
    if (path === '/index.html') {
      const html = new TextDecoder().decode(body);
      for (const r of subresources(html)) {
        const p = new URL(r.url, base).pathname;
        if (new URL(r.url, base).origin !== new URL(base).origin)
          problems.push(`/index.html loads ${r.url} from another origin`);
        else if (!(p in local.files)) problems.push(`/index.html loads ${p}, which the local build does not have`);
        if (!r.integrity) problems.push(`/index.html loads ${p} without an integrity attribute`);
      }
    }
  }
  return { ok: problems.length === 0, lines: [...info, ...(problems.length ? problems : ['OK'])] };
}

/** Builds this checkout's client into a temporary folder; returns the dist folder. */
export function buildHere(): string {
  const dist = mkdtempSync(join(tmpdir(), 'e2e-chat-verify-'));
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build'], {
    cwd: ROOT,
    env: { ...QUIET_ENV, E2E_CHAT_DIST_DIR: dist },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (r.status !== 0) throw new Error('local build failed');
  return dist;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const base = args.find((a) => /^https?:\/\//.test(a));
  const i = args.indexOf('--dist');
  if (!base) {
    console.error('usage: npm run verify:client -- https://host [--dist <dist folder of a build of the same commit>]');
    process.exit(2);
  }
  const dist = i >= 0 ? args[i + 1]! : buildHere();
  try {
    const r = await verifyClient(base, join(dist, 'client'));
    for (const l of r.lines) console.log(l);
    process.exitCode = r.ok ? 0 : 1;
  } finally {
    if (i < 0) rmSync(dist, { recursive: true, force: true });
  }
}
