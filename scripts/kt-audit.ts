/**
 * `npm run kt:audit -- https://host [--key <base64url>] [--state <file>] [--from-start]`: a public auditor
 * for the key-transparency log (docs/PROTOCOL.md §"Key transparency"). Anyone can run it; it needs no
 * account. It downloads every signed tree head the log published (GET /api/kt/heads, oldest first), checks
 * each signature under the log key, that sizes only grow, and that every head is consistent with the one
 * before it (GET /api/kt/consistency, RFC 9162 §2.1.4) — from the very first head, or from where the last
 * run stopped (`--state`, default `.kt-audit-<host>.json`). Finally the log's current head must extend the
 * last one. Any fork, rewritten history, rollback or bad signature is printed and the exit code is 1.
 *
 * The log key: pass the one the web client is built with (`--key`, e.g. from the deployment's
 * wrangler.toml); without it the auditor takes GET /api/kt/key on first use and pins it in the state file.
 *
 * Does NOT: look at entries (they are served only to signed-in users with a lookup), or prove anything
 * about heads a server never published in its list (clients compare those among themselves).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fromB64u, toB64u } from '../web/src/protocol/bytes.js';
import { defaultCurves } from '../web/src/protocol/primitives.js';
import {
  isFork,
  type VerifiedTreeHead,
  verifyHeadConsistency,
  verifyTreeHead,
} from '../web/src/protocol/transparency.js';

export interface AuditState {
  /** The log key (base64url) this state was verified under. */
  key: string;
  /** The newest head verified so far (base64url of the signed head), or null. */
  last: string | null;
  /** Heads verified over all runs. */
  verified: number;
}

export interface AuditReport {
  state: AuditState;
  checked: number;
  first: { size: number; time: number } | null;
  latest: { size: number; time: number } | null;
  problems: string[];
}

type Get = (path: string) => Promise<unknown>;

/** A GET of the log's JSON API that waits out 429s (Retry-After) and throws on other errors. */
export function httpGetter(base: string, fetchImpl: typeof fetch = fetch): Get {
  return async (path) => {
    for (let attempt = 0; ; attempt++) {
      const res = await fetchImpl(`${base.replace(/\/$/, '')}${path}`);
      if (res.status === 429 && attempt < 20) {
        const wait = Number(res.headers.get('retry-after') ?? '1');
        await new Promise((r) => setTimeout(r, Math.max(1, wait) * 1000));
        continue;
      }
      const body = (await res.json().catch(() => null)) as { error?: { code?: string } } | null;
      if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${body?.error?.code ?? ''}`.trim());
      return body;
    }
  };
}

const facts = (h: VerifiedTreeHead) => ({ size: h.size, time: h.time });

/** Audits the log behind `get` from `state` (null: from the first head). */
export async function audit(get: Get, opts: { key?: string; state?: AuditState | null } = {}): Promise<AuditReport> {
  const curves = await defaultCurves();
  const problems: string[] = [];
  const key = opts.key ?? opts.state?.key ?? ((await get('/api/kt/key')) as { publicKey: string }).publicKey;
  const state: AuditState = opts.state && opts.state.key === key ? { ...opts.state } : { key, last: null, verified: 0 };
  if (opts.state && opts.state.key !== key) problems.push('the log key differs from the one in the state file');
  const keyBytes = fromB64u(key);
  const verify = async (b64: string, what: string) => {
    try {
      return await verifyTreeHead(curves, keyBytes, fromB64u(b64));
    } catch {
      problems.push(`${what}: not signed by the log key`);
      return null;
    }
  };
  let prev = state.last ? await verify(state.last, 'the head in the state file') : null;
  let first: { size: number; time: number } | null = null;
  let checked = 0;
  const step = async (next: VerifiedTreeHead, what: string) => {
    if (prev) {
      if (isFork(prev, next)) {
        problems.push(`${what}: FORK — two heads of ${next.size} entries with different roots`);
        return;
      }
      if (next.size < prev.size) {
        problems.push(`${what}: ROLLBACK — ${next.size} entries after a head of ${prev.size}`);
        return;
      }
      if (next.size > prev.size) {
        try {
          const proof =
            prev.size === 0
              ? []
              : ((await get(`/api/kt/consistency?from=${prev.size}&to=${next.size}`)) as { proof: string[] }).proof.map(
                  (h) => fromB64u(h),
                );
          verifyHeadConsistency(prev, next, proof);
        } catch (e) {
          problems.push(
            `${what}: REWRITTEN HISTORY — no valid consistency proof from ${prev.size} to ${next.size} entries (${(e as Error).message})`,
          );
          return;
        }
      }
    }
    if (!prev || next.size > prev.size || next.time > prev.time) prev = next;
  };

  let after = prev?.size ?? 0;
  for (;;) {
    const page = (await get(`/api/kt/heads?after=${after}&limit=1000`)) as { heads: string[]; more: boolean };
    for (const b64 of page.heads) {
      const h = await verify(b64, `head after ${after}`);
      if (!h) continue;
      first ??= facts(h);
      await step(h, `head of ${h.size} entries`);
      after = Math.max(after, h.size);
      checked++;
    }
    if (!page.more || page.heads.length === 0) break;
  }
  const current = await verify(((await get('/api/kt/head')) as { head: string }).head, 'the current head');
  if (current) {
    await step(current, 'the current head');
    checked++;
  }
  const latest = prev as VerifiedTreeHead | null;
  return {
    state: { key, last: latest ? toB64u(latest.bytes) : state.last, verified: state.verified + checked },
    checked,
    first,
    latest: latest ? facts(latest) : null,
    problems,
  };
}

async function main() {
  const args = process.argv.slice(2);
  const flag = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const base = args.find((a) => /^https?:\/\//.test(a));
  if (!base) {
    console.error('usage: npm run kt:audit -- https://host [--key <base64url>] [--state <file>] [--from-start]');
    process.exit(2);
  }
  const stateFile = flag('--state') ?? `.kt-audit-${new URL(base).host.replace(/[^A-Za-z0-9.-]/g, '_')}.json`;
  const saved =
    !args.includes('--from-start') && existsSync(stateFile)
      ? (JSON.parse(readFileSync(stateFile, 'utf8')) as AuditState)
      : null;
  const key = flag('--key');
  if (!key && !saved)
    console.warn('kt:audit: no --key given: trusting the log key the server names (pinned from now on)');
  const r = await audit(httpGetter(base), { key, state: saved });
  const when = (t: number) => new Date(t).toISOString();
  const rows: [string, string][] = [
    ['log', base],
    ['log key', r.state.key],
    ['heads checked this run', String(r.checked)],
    ['first head this run', r.first ? `${r.first.size} entries, ${when(r.first.time)}` : '—'],
    ['newest verified head', r.latest ? `${r.latest.size} entries, ${when(r.latest.time)}` : '—'],
    ['heads verified in total', String(r.state.verified)],
    ['problems', r.problems.length ? String(r.problems.length) : 'none'],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
  for (const p of r.problems) console.log(`  ✗ ${p}`);
  if (r.problems.length === 0) writeFileSync(stateFile, `${JSON.stringify(r.state, null, 2)}\n`);
  else console.log(`state not updated (${stateFile}): the log misbehaved — keep the evidence above`);
  process.exit(r.problems.length ? 1 : 0);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    console.error(`kt:audit: ${(e as Error).message}`);
    process.exit(2);
  });
}
