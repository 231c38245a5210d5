/**
 * Input validation at the edge of every route (zod). A failure is a 400 `invalid_request` naming the
 * offending fields (paths only — never echoing the values back).
 */
import { zValidator } from '@hono/zod-validator';
import type { ValidationTargets } from 'hono';
import { z } from 'zod';
import { fromB64u } from '../web/src/protocol/bytes.js';
import { AppError } from './errors.js';

export function valid<T extends z.ZodType, Target extends keyof ValidationTargets>(target: Target, schema: T) {
  return zValidator(target, schema, (result) => {
    if (!result.success) {
      const fields = result.error.issues.map((i) => i.path.join('.') || '(root)');
      throw new AppError(400, 'invalid_request', 'request failed validation', { fields: [...new Set(fields)] });
    }
  });
}

/** base64url (no padding) bytes, optionally of an exact length or at most `max` bytes. */
export const b64uBytes = (opts: { len?: number; max?: number } = {}) =>
  z
    .string()
    .max(Math.ceil(((opts.len ?? opts.max ?? 1 << 20) * 4) / 3) + 4)
    .regex(/^[A-Za-z0-9_-]*$/)
    .transform((s, ctx) => {
      let b: Uint8Array;
      try {
        b = fromB64u(s);
      } catch {
        ctx.addIssue({ code: 'custom', message: 'invalid base64url' });
        return z.NEVER;
      }
      if (opts.len !== undefined && b.length !== opts.len) {
        ctx.addIssue({ code: 'custom', message: `expected ${opts.len} bytes` });
        return z.NEVER;
      }
      if (opts.max !== undefined && b.length > opts.max) {
        ctx.addIssue({ code: 'custom', message: `at most ${opts.max} bytes` });
        return z.NEVER;
      }
      return b;
    });

/** Ids we mint or accept: 1–64 of [A-Za-z0-9_-] (the protocol core's MAX_ID_LEN). */
export const idString = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);
