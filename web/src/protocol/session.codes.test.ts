/**
 * The internal error codes behind `decrypt`'s public `decryption_failed` (docs/PROTOCOL.md §"Errors"). Here
 * `publicDecryptError` is replaced by the identity, so the code each check raises reaches the test; every
 * other file sees the collapsed codes.
 */
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { equal, utf8 } from './bytes.js';
import { is, publicDecryptError } from './errors.js';
import { verifyBundle } from './prekeys.js';
import type { Curve25519 } from './primitives.js';
import { type DecryptContext, decrypt, emptySessionRecord, encrypt, initiateSession } from './session.js';
import {
  makeTestUser,
  seededRng,
  type TestUser,
  testBundle,
  testLocalIdentity,
  webCryptoTestCurves,
} from './testing.js';

vi.mock('./errors.js', async (importOriginal) => ({
  ...(await importOriginal<typeof import('./errors.js')>()),
  publicDecryptError: (e: unknown) => e,
}));

const T0 = 1_700_000_000_000;
let wc: Curve25519;
let alice: TestUser;
let bob: TestUser;
let carol: TestUser;

beforeAll(async () => {
  wc = (await webCryptoTestCurves())!;
  const rng = seededRng('session.codes.test');
  alice = await makeTestUser(wc, rng, 'alice', ['a1']);
  bob = await makeTestUser(wc, rng, 'bob', ['b1']);
  carol = await makeTestUser(wc, rng, 'carol', ['c1']);
});

describe('decrypt: internal error codes', () => {
  it('the mock is in place: errors leave decrypt uncollapsed', () => {
    const e = new Error('x');
    expect(publicDecryptError(e, 'op')).toBe(e);
  });

  it("a PreKeyMessage whose init names another sender than the transport's is sender_mismatch", async () => {
    const rng = seededRng('codes sender');
    const [a, b, c] = [alice.devices[0]!, bob.devices[0]!, carol.devices[0]!];
    const bundle = await verifyBundle(wc, testBundle(b), bob.identity.publicKey);
    const m = encrypt(await initiateSession(wc, rng, testLocalIdentity(a), bundle, T0), utf8('x'), T0);
    const ctx: DecryptContext = {
      ours: testLocalIdentity(b),
      remote: { userId: c.userId, deviceId: c.deviceId },
      responderKeys: () => null,
      isTrustedIdentity: (k) => equal(k, c.identity.publicKey),
    };
    const err = await decrypt(wc, rng, emptySessionRecord(), m.message, ctx, T0).catch((e: unknown) => e);
    expect(is(err) && err.code).toBe('sender_mismatch');
  });
});
