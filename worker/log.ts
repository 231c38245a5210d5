/**
 * Structured JSON logs: one object per line. Only the fields passed here are printed — never request
 * bodies, headers, query strings, tokens, tickets, keys, ciphertext, usernames, IP addresses, error
 * messages or stack traces (rule 2). Account and conversation ids appear only as `logId` hashes.
 * worker/observability.test.ts drives every route and checks every line against a list of forbidden values.
 */
import { toB64u } from '../web/src/protocol/bytes.js';
import { hmacSha256 } from '../web/src/protocol/primitives.js';
import type { Env } from './env.js';
import { secretBytes } from './secrets.js';

export type LogFields = Record<string, string | number | boolean | null | undefined>;

export function log(level: 'info' | 'warn' | 'error', event: string, fields: LogFields = {}): void {
  const line = JSON.stringify({ level, event, ...fields, ts: Date.now() });
  if (level === 'error') console.error(line);
  else if (level === 'warn') console.warn(line);
  else console.log(line);
}

const ids = new Map<string, string>();
const enc = new TextEncoder();

/**
 * A stable, keyed pseudonym for an account (`u`) or conversation (`c`) id in logs: `u_` / `c_` + 16
 * base64url characters of HMAC(TOKEN_HASH_KEY, "log:" ‖ kind ‖ ":" ‖ id). The same id gives the same
 * pseudonym within a deployment (so one account can be followed through an incident) and it cannot be
 * turned back into the id without the key. `scripts/log-id.ts` computes it for support.
 */
export function logId(env: Pick<Env, 'TOKEN_HASH_KEY'>, kind: 'u' | 'c', id: string): string {
  const cacheKey = `${env.TOKEN_HASH_KEY}\n${kind}:${id}`;
  const hit = ids.get(cacheKey);
  if (hit) return hit;
  let out: string;
  try {
    const key = secretBytes(env as Env, 'TOKEN_HASH_KEY');
    out = `${kind}_${toB64u(hmacSha256(key, enc.encode(`log:${kind}:${id}`))).slice(0, 16)}`;
  } catch {
    out = `${kind}_unavailable`;
  }
  if (ids.size > 10_000) ids.clear();
  ids.set(cacheKey, out);
  return out;
}
