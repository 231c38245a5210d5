/**
 * Input helpers for the devices / keys / conversations routes: a JSON body that must be
 * `application/json`, parse, fit a size limit and match a zod schema — each failure a 4xx with a stable
 * code and no echo of the input — and the `Caller` the domain layer takes.
 */
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
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

export async function readJson<T extends z.ZodType>(c: Context<AppBindings>, schema: T): Promise<z.output<T>> {
  const type = c.req.header('content-type') ?? '';
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    throw new AppError(415, 'unsupported_media_type', 'expected Content-Type: application/json');
  }
  let body: unknown;
  try {
    body = JSON.parse(await c.req.text());
  } catch {
    throw new AppError(400, 'invalid_json', 'request body is not valid JSON');
  }
  return parseInput(schema, body);
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
