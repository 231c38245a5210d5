/**
 * The web client's asset manifest (issue 18, README §Verify the web client): `vite build` writes
 * `asset-manifest.json` next to `index.html` with the SHA-256 of every file the site serves, so anyone can
 * compare a deployed site with a build of the same commit (`npm run verify:client`). Also a Vite plugin
 * (vite.config.ts) and the helpers the verifier and the tests share.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import type { Plugin } from 'vite';

export const MANIFEST_FILE = 'asset-manifest.json';
/** Build files Cloudflare reads but never serves. */
const NOT_SERVED = new Set(['.assetsignore', '_headers', '_redirects', MANIFEST_FILE]);

export interface AssetManifest {
  version: 1;
  /** The git commit the build was made from (null outside a git checkout); `dirty` if files were changed. */
  commit: string | null;
  dirty: boolean;
  /** URL path → lowercase hex SHA-256 of the bytes served there. `/index.html` is also served at `/`. */
  files: Record<string, string>;
}

export const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

function gitState(cwd: string): { commit: string | null; dirty: boolean } {
  if (process.env.E2E_CHAT_COMMIT) return { commit: process.env.E2E_CHAT_COMMIT, dirty: false };
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], {
      cwd,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    const status = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return { commit, dirty: status.trim() !== '' };
  } catch {
    return { commit: null, dirty: false };
  }
}

/** The manifest of a built client folder (`dist/client`). */
export function manifestOf(clientDir: string, cwd = clientDir): AssetManifest {
  const files: Record<string, string> = {};
  for (const p of walk(clientDir).sort()) {
    const rel = relative(clientDir, p).split(sep).join('/');
    if (NOT_SERVED.has(rel)) continue;
    files[`/${rel}`] = sha256(readFileSync(p));
  }
  return { version: 1, ...gitState(cwd), files };
}

/** Every `<script src>` and `<link href>` of an HTML page, with its integrity attribute (or null). */
export function subresources(html: string): { tag: string; url: string; integrity: string | null }[] {
  const out: { tag: string; url: string; integrity: string | null }[] = [];
  for (const m of html.matchAll(/<(script|link)\b([^>]*)>/gi)) {
    const attrs = m[2]!;
    const url = /\b(?:src|href)=["']([^"']+)["']/i.exec(attrs)?.[1];
    if (!url) continue;
    if (m[1]!.toLowerCase() === 'link' && !/\brel=["']?(stylesheet|modulepreload)/i.test(attrs)) continue;
    out.push({ tag: m[1]!.toLowerCase(), url, integrity: /\bintegrity=["']([^"']+)["']/i.exec(attrs)?.[1] ?? null });
  }
  return out;
}

/** Vite plugin: after the client build, writes `asset-manifest.json` into the client output folder. */
export function assetManifest(root: string): Plugin {
  return {
    name: 'e2e-chat:asset-manifest',
    apply: 'build',
    closeBundle: {
      order: 'post',
      sequential: true,
      handler() {
        const env = (this as unknown as { environment?: { name: string; config: { build: { outDir: string } } } })
          .environment;
        if (env && env.name !== 'client') return;
        const outDir = env?.config.build.outDir;
        if (!outDir || !existsSync(join(outDir, 'index.html'))) return;
        writeFileSync(join(outDir, MANIFEST_FILE), `${JSON.stringify(manifestOf(outDir, root), null, 2)}\n`);
      },
    },
  };
}
