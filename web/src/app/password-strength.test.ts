import { describe, expect, it } from 'vitest';
import { MIN_PASSWORD } from './logic.js';
import { checkPassword, MIN_SCORE } from './password-strength.js';

// The password every browser test registers with (e2e/browser.ts PASSWORD).
const E2E_PASSWORD = 'correct horse battery staple';

describe('password strength (zxcvbn-ts)', () => {
  it('refuses "password123" (accepted before: it is 11 characters) and says why', () => {
    const s = checkPassword('password123');
    expect(s.ok).toBe(false);
    expect(s.score).toBeLessThan(MIN_SCORE);
    expect(s.reason).toMatch(/common/i);
  });

  it('a password shorter than the minimum is refused for its length before any scoring', () => {
    const s = checkPassword('Xk#9'.repeat(2));
    expect(s).toMatchObject({ ok: false, score: 0, reason: `At least ${MIN_PASSWORD} characters.` });
  });

  it('the username counts against the password: a variation of it is weak for that user only', () => {
    const pw = 'zanzibarquokka1';
    expect(checkPassword(pw).ok).toBe(true);
    expect(checkPassword(pw, ['zanzibarquokka']).ok).toBe(false);
  });

  it('a few unrelated words pass, including the browser tests’ password', () => {
    for (const pw of [E2E_PASSWORD, 'lantern orbit velvet trumpet']) {
      const s = checkPassword(pw, ['alice']);
      expect(s.ok, pw).toBe(true);
      expect(s.reason).toBe('');
    }
  });
});
