import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { logId } from '../worker/log.js';
import { logIdFor } from './log-id.js';

describe('npm run log-id', () => {
  it('computes the same pseudonym as the Worker’s log lines, per key and kind', () => {
    const key = randomBytes(32).toString('base64url');
    const other = randomBytes(32).toString('base64url');
    const id = `u_${randomBytes(16).toString('hex')}`;
    expect(logIdFor(key, 'u', id)).toBe(logId({ TOKEN_HASH_KEY: key }, 'u', id));
    expect(logIdFor(key, 'c', id)).toBe(logId({ TOKEN_HASH_KEY: key }, 'c', id));
    expect(logIdFor(key, 'u', id)).toMatch(/^u_[A-Za-z0-9_-]{16}$/);
    expect(logIdFor(other, 'u', id)).not.toBe(logIdFor(key, 'u', id));
    expect(logIdFor(key, 'c', id)).not.toBe(`c_${logIdFor(key, 'u', id).slice(2)}`);
  });
});
