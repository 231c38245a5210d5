/** Per-request helpers: the hashed client address (audit rows: domain/common.ts auditInsert). */
import type { Context } from 'hono';
import { toB64u } from '../web/src/protocol/bytes.js';
import { hmacSha256 } from '../web/src/protocol/primitives.js';
import type { AppBindings, Env } from './env.js';
import { secretBytes } from './secrets.js';

/** A keyed hash of the client address: usable as a rate-limit key and in audit rows, never the address. */
export function clientKey(c: Context<AppBindings>): string {
  const ip = c.req.header('cf-connecting-ip') ?? c.req.header('x-real-ip') ?? 'local';
  return toB64u(hmacSha256(secretBytes(c.env, 'TOKEN_HASH_KEY'), new TextEncoder().encode(`client:${ip}`))).slice(
    0,
    22,
  );
}

export type { Env };
