import { describe, expect, it } from 'vitest';
import { toHex } from './bytes.js';
import { passwordPrehash, passwordSalt } from './password.js';
import { argon2id } from './primitives.js';

describe('password pre-hash', () => {
  it('argon2id matches the reference implementation (phc-winner-argon2 CLI: "password", "somesalt", t=2, m=64 MiB, p=1)', async () => {
    // RFC 9106's own vector needs the secret/ad inputs our wrapper does not expose; this one is the
    // reference CLI's documented example (`echo -n password | argon2 somesalt -id -t 2 -m 16 -p 1`).
    const out = await argon2id(new TextEncoder().encode('password'), new TextEncoder().encode('somesalt'), {
      t: 2,
      m: 65536,
      p: 1,
      dkLen: 32,
    });
    expect(toHex(out)).toBe('09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7');
  });

  it('salt depends only on the normalised username and differs between users', () => {
    expect(toHex(passwordSalt('alice'))).toBe(toHex(passwordSalt('alice')));
    expect(toHex(passwordSalt('alice'))).not.toBe(toHex(passwordSalt('bob')));
    expect(passwordSalt('alice')).toHaveLength(16);
  });

  it('prehash is deterministic, 32 bytes, and changes with password or username', async () => {
    const a = await passwordPrehash('correct horse', 'alice');
    expect(a).toHaveLength(32);
    expect(toHex(await passwordPrehash('correct horse', 'alice'))).toBe(toHex(a));
    expect(toHex(await passwordPrehash('correct horsf', 'alice'))).not.toBe(toHex(a));
    expect(toHex(await passwordPrehash('correct horse', 'alicf'))).not.toBe(toHex(a));
  });

  it('reports progress for a progress bar', async () => {
    const seen: number[] = [];
    await passwordPrehash('pw', 'carol', (f) => seen.push(f));
    expect(seen.length).toBeGreaterThan(0);
    expect(Math.max(...seen)).toBeLessThanOrEqual(1);
  });
});
