/**
 * Input validation at the edge of every route (zod). A failure is a 400 `invalid_request` naming the
 * offending fields (paths only — never echoing the values back).
 */
import { zValidator } from '@hono/zod-validator';
import type { ValidationTargets } from 'hono';
import { z } from 'zod';
import { b64u } from '../schema/auth-api.js';
import { AppError } from './errors.js';

export function valid<T extends z.ZodType, Target extends keyof ValidationTargets>(target: Target, schema: T) {
  return zValidator(target, schema, (result) => {
    if (!result.success) {
      const fields = result.error.issues.map((i) => i.path.join('.') || '(root)');
      throw new AppError(400, 'invalid_request', 'request failed validation', { fields: [...new Set(fields)] });
    }
  });
}

/** base64url (no padding) bytes, optionally of an exact length or at most `max` bytes (1 MiB by default). */
export const b64uBytes = (opts: { len?: number; max?: number } = {}) => b64u({ max: 1 << 20, ...opts });

/** Ids we mint or accept: 1–64 of [A-Za-z0-9_-] (the protocol core's MAX_ID_LEN). */
export const idString = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);
