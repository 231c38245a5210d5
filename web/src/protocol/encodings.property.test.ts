import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toHex } from './bytes.js';
import { ACTIONS, decodeMembershipEntry, encodeMembershipEntry, type MembershipEntry } from './membership.js';
import { decodePqxdhInit, encodePqxdhInit, type PqxdhInitMessage } from './pqxdh.js';

const id = fc.string({ minLength: 1, maxLength: 20 });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
// canonical X25519 public keys: top bit clear and well below p
const x25519Key = bytes(32).map((b) => {
  b[31] = b[31]! & 0x3f;
  return b;
});

describe('encodings are injective and strict (property)', () => {
  it('PQXDH init: decode(encode(m)) = m, and every strict prefix fails to decode', () => {
    const init = fc.record({
      initiatorUserId: id,
      initiatorDeviceId: id,
      initiatorIdentityKey: x25519Key,
      ephemeralKey: x25519Key,
      signedPrekeyId: u32,
      oneTimePrekeyId: fc.option(u32, { nil: null }),
      kemPrekeyId: u32,
      kemCiphertext: bytes(1568),
    });
    fc.assert(
      fc.property(init, fc.nat(), (m: PqxdhInitMessage, cut) => {
        const enc = encodePqxdhInit(m);
        expect(toHex(encodePqxdhInit(decodePqxdhInit(enc)))).toBe(toHex(enc));
        expect(() => decodePqxdhInit(enc.subarray(0, cut % enc.length))).toThrow();
      }),
      { numRuns: 50 },
    );
  });

  it('membership entry: decode(encode(e)) = e for every action shape', () => {
    const timerArb = fc.oneof(fc.constantFrom(0, 300, 2_419_200), fc.integer({ min: 300, max: 2_419_200 }));
    const entry = fc.constantFrom(...ACTIONS).chain((action) =>
      fc.record({
        ...(action === 'set_timer' ? { timer: timerArb } : {}),
        conversationId: id,
        seq: u32,
        prevHash: bytes(32),
        action: fc.constant(action),
        authorUserId: id,
        authorDeviceId: id,
        target: ['add', 'remove', 'promote', 'demote', 'transfer_ownership'].includes(action) ? id : fc.constant(null),
        role: action === 'add' ? fc.constantFrom('admin' as const, 'member' as const) : fc.constant(null),
        title: action === 'create' || action === 'rename' ? fc.string({ maxLength: 40 }) : fc.constant(null),
        timestamp: fc.nat(),
        signature: bytes(64),
      }),
    );
    fc.assert(
      fc.property(entry, (e: MembershipEntry) => {
        const enc = encodeMembershipEntry(e);
        expect(decodeMembershipEntry(enc)).toEqual(e);
      }),
      { numRuns: 200 },
    );
  });
});
