import { describe, expect, it } from 'vitest';
import { ErrorCode, ProtocolError, publicDecryptError } from './errors.js';

describe('publicDecryptError (docs/PROTOCOL.md §"Errors")', () => {
  it('keeps duplicate, no_session, untrusted_identity and stale_state; every other code leaves as decryption_failed', () => {
    const kept = new Set<string>(['duplicate', 'no_session', 'untrusted_identity', 'stale_state']);
    for (const code of Object.values(ErrorCode)) {
      const out = publicDecryptError(new ProtocolError(code, 'inner'), 'decrypt');
      expect([code, out.code]).toEqual([code, kept.has(code) ? code : 'decryption_failed']);
    }
    expect(publicDecryptError(new TypeError('boom'), 'decrypt').code).toBe('decryption_failed');
  });
});
