/** Per-request helpers: the hashed client address (audit rows: domain/common.ts auditInsert). */
import type { Context } from 'hono';
import { toB64u } from '../web/src/protocol/bytes.js';
import { hmacSha256 } from '../web/src/protocol/primitives.js';
import type { AppBindings, Env } from './env.js';
import { secretBytes } from './secrets.js';

/**
 * The network a client address stands for: an IPv4 address as it is; an IPv6 address cut to its /64 (one
 * subscriber gets a whole /64 and rotates through it freely, so per-address limits key on the prefix).
 */
export function addressPrefix(ip: string): string {
  if (!ip.includes(':')) return ip;
  const v4Mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (v4Mapped) return v4Mapped[1]!;
  const [head = '', tail = ''] = ip.toLowerCase().split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t] : h;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

/** A keyed hash of the client's network (addressPrefix): a rate-limit key and audit value, never the address. */
export function clientKey(c: Context<AppBindings>): string {
  const ip = c.req.header('cf-connecting-ip') ?? c.req.header('x-real-ip') ?? 'local';
  return toB64u(
    hmacSha256(secretBytes(c.env, 'TOKEN_HASH_KEY'), new TextEncoder().encode(`client:${addressPrefix(ip)}`)),
  ).slice(0, 22);
}

export type { Env };
