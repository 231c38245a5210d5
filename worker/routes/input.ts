/**
 * Input helpers for the JSON routes (auth, devices, keys, conversations, mailbox): a JSON body that must be
 * `application/json`, parse, fit a size limit and match a zod schema — each failure a 4xx with a stable
 * code and no echo of the input — and the `Caller` the domain layer takes.
 */
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { createMiddleware } from 'hono/factory';
import type { z } from 'zod';
import { clientKey } from '../context.js';
import { makeDb } from '../db.js';
import type { Caller } from '../domain/common.js';
import type { AppBindings } from '../env.js';
import { AppError } from '../errors.js';
import { LIMITS } from '../limits.js';

/** Body limit for every JSON route except prekey uploads (LIMITS.maxBodyBytes → 413). */
export const smallBody = bodyLimit({
  maxSize: LIMITS.maxBodyBytes,
  onError: () => {
    throw new AppError(413, 'payload_too_large', 'request body too large');
  },
});

/** 415 `unsupported_media_type` unless the request says `application/json`. */
export function requireJsonType(c: Context<AppBindings>): void {
  if (!/^application\/json\s*(;|$)/i.test(c.req.header('content-type') ?? '')) {
    throw new AppError(415, 'unsupported_media_type', 'expected Content-Type: application/json');
  }
}

/** The parsed JSON body (cached by hono for later readers), or 400 `invalid_json`. */
export async function jsonOf(c: Context<AppBindings>): Promise<unknown> {
  try {
    return await c.req.json();
  } catch {
    throw new AppError(400, 'invalid_json', 'request body is not valid JSON');
  }
}

/**
 * Middleware for routes validated with hono's `valid('json', …)` (routes/auth.ts): JSON content type and a
 * parseable body before zod runs (hono would answer 500 otherwise).
 */
export const jsonBody = createMiddleware<AppBindings>(async (c, next) => {
  requireJsonType(c);
  await jsonOf(c);
  await next();
});

export async function readJson<T extends z.ZodType>(c: Context<AppBindings>, schema: T): Promise<z.output<T>> {
  requireJsonType(c);
  return parseInput(schema, await jsonOf(c));
}

export function parseInput<T extends z.ZodType>(schema: T, value: unknown): z.output<T> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const fields = parsed.error.issues.map((i) => i.path.join('.') || '(root)');
    throw new AppError(400, 'invalid_request', 'request failed validation', { fields: [...new Set(fields)] });
  }
  return parsed.data;
}

/** The authenticated caller (requireAuth must have run). */
export function callerOf(c: Context<AppBindings>): Caller {
  return { env: c.env, db: makeDb(c.env), auth: c.get('auth'), clientHash: clientKey(c) };
}
