import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { logIdFor } from './log-id.js';

/** The definition worker/log.ts logId implements (worker/observability.test.ts checks the Worker's side). */
const spec = (key: string, kind: string, id: string) =>
  `${kind}_${createHmac('sha256', Buffer.from(key, 'base64url')).update(`log:${kind}:${id}`).digest('base64url').slice(0, 16)}`;

describe('npm run log-id', () => {
  it('computes the log pseudonym of an account or conversation id, per key and kind', () => {
    const key = randomBytes(32).toString('base64url');
    const other = randomBytes(32).toString('base64url');
    const id = `u_${randomBytes(16).toString('hex')}`;
    expect(logIdFor(key, 'u', id)).toBe(spec(key, 'u', id));
    expect(logIdFor(key, 'c', id)).toBe(spec(key, 'c', id));
    expect(logIdFor(key, 'u', id)).toMatch(/^u_[A-Za-z0-9_-]{16}$/);
    expect(logIdFor(other, 'u', id)).not.toBe(logIdFor(key, 'u', id));
    expect(logIdFor(key, 'c', id).slice(2)).not.toBe(logIdFor(key, 'u', id).slice(2));
  });
});
