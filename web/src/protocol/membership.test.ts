import { beforeAll, describe, expect, it } from 'vitest';
import { toHex } from './bytes.js';
import { is } from './errors.js';
import { type DeviceKeyResolver, deviceKeyResolver, verifyDeviceList } from './identity.js';
import {
  ACTIONS,
  type Action,
  applyEntry,
  decodeMembershipEntry,
  type EntryParams,
  encodeMembershipEntry,
  entryHash,
  type MembershipEntry,
  type MembershipState,
  nextEntry,
  ROLES,
  type Role,
  verifyLog,
} from './membership.js';
import type { Curve25519 } from './primitives.js';
import { makeTestUser, seededRng, type TestUser, webCryptoTestCurves } from './testing.js';

let curves: Curve25519;
const users: Record<string, TestUser> = {};
let resolve: DeviceKeyResolver;
let base: MembershipState;
let baseLog: MembershipEntry[];
const CONV = 'conv-1';
const NAMES = ['owner', 'admin', 'admin2', 'member', 'member2', 'outsider'];

const signer = (u: string) => users[u]!.devices[0]!.signing;
const params = (
  author: string,
  p: Omit<EntryParams, 'authorUserId' | 'authorDeviceId' | 'timestamp'>,
): EntryParams => ({
  ...p,
  authorUserId: author,
  authorDeviceId: users[author]!.devices[0]!.deviceId,
  timestamp: 1_700_000_000_000,
});
async function append(
  log: MembershipEntry[],
  state: MembershipState | null,
  author: string,
  p: Omit<EntryParams, 'authorUserId' | 'authorDeviceId' | 'timestamp'>,
) {
  const e = await nextEntry(curves, signer(author), state, CONV, params(author, p));
  const s = await applyEntry(curves, state, e, resolve);
  log.push(e);
  return s;
}

beforeAll(async () => {
  curves = (await webCryptoTestCurves())!;
  const rng = seededRng('membership.test');
  for (const n of NAMES) users[n] = await makeTestUser(curves, rng, n, [`${n}-d1`]);
  const lists = await Promise.all(NAMES.map((n) => verifyDeviceList(curves, users[n]!.deviceList)));
  resolve = deviceKeyResolver(lists);
  baseLog = [];
  let s = await append(baseLog, null, 'owner', { action: 'create', title: 'Team' });
  s = await append(baseLog, s, 'owner', { action: 'add', target: 'admin', role: 'admin' });
  s = await append(baseLog, s, 'owner', { action: 'add', target: 'admin2', role: 'admin' });
  s = await append(baseLog, s, 'owner', { action: 'add', target: 'member', role: 'member' });
  base = await append(baseLog, s, 'owner', { action: 'add', target: 'member2', role: 'member' });
});

/** Expected outcome per (author role, action, target role) — written out from docs/PROTOCOL.md, not from the code. */
const EXPECTED: Record<Role, Record<string, boolean>> = {
  owner: {
    'add:admin': true,
    'add:member': true,
    'add:owner': false,
    'remove:admin': true,
    'remove:member': true,
    'promote:admin': false,
    'promote:member': true,
    'demote:admin': true,
    'demote:member': false,
    rename: true,
    leave: false,
    'transfer_ownership:admin': true,
    'transfer_ownership:member': true,
    create: false,
    set_timer: true,
  },
  admin: {
    'add:admin': false,
    'add:member': true,
    'add:owner': false,
    'remove:admin': false,
    'remove:member': true,
    'remove:owner': false,
    'promote:admin': false,
    'promote:member': false,
    'demote:admin': false,
    'demote:member': false,
    'demote:owner': false,
    rename: true,
    leave: true,
    'transfer_ownership:admin': false,
    'transfer_ownership:member': false,
    create: false,
    set_timer: true,
  },
  member: {
    'add:admin': false,
    'add:member': false,
    'add:owner': false,
    'remove:admin': false,
    'remove:member': false,
    'remove:owner': false,
    'promote:admin': false,
    'promote:member': false,
    'demote:admin': false,
    'demote:member': false,
    rename: false,
    leave: true,
    'transfer_ownership:admin': false,
    'transfer_ownership:member': false,
    'transfer_ownership:owner': false,
    create: false,
    // In a conversation of more than two members (this one has five); see the set_timer tests below.
    set_timer: false,
  },
};
const AUTHOR_OF: Record<Role, string> = { owner: 'owner', admin: 'admin', member: 'member' };
/** A target (other than the author) currently holding `role`. */
const TARGET_WITH: Record<Role, string> = { owner: 'owner', admin: 'admin2', member: 'member2' };

describe('membership role × action matrix', () => {
  it('covers every role × every action', () => {
    for (const r of ROLES)
      for (const a of ACTIONS) expect(Object.keys(EXPECTED[r]).some((k) => k.split(':')[0] === a)).toBe(true);
  });

  for (const role of ROLES) {
    for (const [key, allowed] of Object.entries(EXPECTED[role])) {
      it(`${role} ${key} is ${allowed ? 'allowed' : 'refused'}`, async () => {
        const [action, targetRole] = key.split(':') as [Action, Role | undefined];
        const author = AUTHOR_OF[role];
        const p: Omit<EntryParams, 'authorUserId' | 'authorDeviceId' | 'timestamp'> =
          action === 'add'
            ? { action, target: 'outsider', role: targetRole! }
            : targetRole
              ? { action, target: TARGET_WITH[targetRole] }
              : action === 'rename' || action === 'create'
                ? { action, title: 'New' }
                : action === 'set_timer'
                  ? { action, timer: 3600 }
                  : { action };
        const e = await nextEntry(curves, signer(author), base, CONV, params(author, p));
        const result = await applyEntry(curves, base, e, resolve).catch((err) => err);
        if (allowed) {
          expect(result.seq).toBe(base.seq + 1);
        } else {
          // A member's `create` after entry 0 is a shape error; everything else the table refuses is forbidden.
          expect(result.code).toBe(action === 'create' ? 'invalid_structure' : 'forbidden');
        }
      });
    }
  }

  it('effects: transfer makes the target owner and the old owner admin; then the old owner can leave', async () => {
    const log = [...baseLog];
    let s = await append(log, base, 'owner', { action: 'transfer_ownership', target: 'member' });
    expect(s.members.get('member')).toBe('owner');
    expect(s.members.get('owner')).toBe('admin');
    expect([...s.members.values()].filter((r) => r === 'owner')).toHaveLength(1);
    s = await append(log, s, 'owner', { action: 'leave' });
    expect(s.members.has('owner')).toBe(false);
    s = await append(log, s, 'member', { action: 'rename', title: 'Renamed' });
    expect(s.title).toBe('Renamed');
    const replayed = await verifyLog(curves, log, resolve);
    expect(toHex(replayed.headHash)).toBe(toHex(s.headHash));
    expect([...replayed.members]).toEqual([...s.members]);
  });
});

describe('membership log integrity (pitfall 17)', () => {
  it('verifyLog reproduces the incremental state', async () => {
    const s = await verifyLog(curves, baseLog, resolve);
    expect(s.seq).toBe(4);
    expect(toHex(s.headHash)).toBe(toHex(entryHash(baseLog[4]!)));
    expect(Object.fromEntries(s.members)).toEqual({
      owner: 'owner',
      admin: 'admin',
      admin2: 'admin',
      member: 'member',
      member2: 'member',
    });
  });

  it('a member added by the server alone (entry signed by a non-member device) is refused and absent', async () => {
    const e = await nextEntry(
      curves,
      signer('outsider'),
      base,
      CONV,
      params('outsider', { action: 'add', target: 'outsider', role: 'member' }),
    );
    const err = await verifyLog(curves, [...baseLog, e], resolve).catch((x) => x);
    expect(is(err, 'forbidden')).toBe(true);
    const s = await verifyLog(curves, baseLog, resolve);
    expect(s.members.has('outsider')).toBe(false);
  });

  it('an entry claiming the owner as author but signed by another key is refused (signature)', async () => {
    const e = await nextEntry(
      curves,
      signer('outsider'),
      base,
      CONV,
      params('owner', { action: 'add', target: 'outsider', role: 'member' }),
    );
    const err = await applyEntry(curves, base, e, resolve).catch((x) => x);
    expect(is(err, 'signature')).toBe(true);
  });

  it('an entry from a device absent from the verified device lists is refused (forbidden)', async () => {
    const e = await nextEntry(curves, signer('owner'), base, CONV, {
      ...params('owner', { action: 'rename', title: 'x' }),
      authorDeviceId: 'rogue',
    });
    const err = await applyEntry(curves, base, e, resolve).catch((x) => x);
    expect(is(err, 'forbidden')).toBe(true);
  });

  it('a tampered entry (target changed after signing) fails signature verification', async () => {
    const e = await nextEntry(
      curves,
      signer('owner'),
      base,
      CONV,
      params('owner', { action: 'add', target: 'outsider', role: 'member' }),
    );
    const err = await applyEntry(curves, base, { ...e, role: 'admin' }, resolve).catch((x) => x);
    expect(is(err, 'signature')).toBe(true);
  });

  it('broken chain, gap, replay, wrong conversation and reordering are invalid_structure', async () => {
    const good = await nextEntry(
      curves,
      signer('owner'),
      base,
      CONV,
      params('owner', { action: 'rename', title: 'x' }),
    );
    const wrongPrev = await nextEntry(
      curves,
      signer('owner'),
      { ...base, headHash: new Uint8Array(32).fill(1) },
      CONV,
      params('owner', { action: 'rename', title: 'x' }),
    );
    const gap = await nextEntry(
      curves,
      signer('owner'),
      { ...base, seq: base.seq + 1 },
      CONV,
      params('owner', { action: 'rename', title: 'x' }),
    );
    const otherConv = await nextEntry(
      curves,
      signer('owner'),
      base,
      'conv-2',
      params('owner', { action: 'rename', title: 'x' }),
    );
    expect(good.seq).toBe(5);
    for (const e of [wrongPrev, gap, otherConv, baseLog[4]!]) {
      const err = await applyEntry(curves, base, e, resolve).catch((x) => x);
      expect(is(err, 'invalid_structure')).toBe(true);
    }
    const swapped = [baseLog[0]!, baseLog[2]!, baseLog[1]!, ...baseLog.slice(3)];
    expect(is(await verifyLog(curves, swapped, resolve).catch((x) => x), 'invalid_structure')).toBe(true);
    expect(is(await verifyLog(curves, baseLog.slice(1), resolve).catch((x) => x), 'invalid_structure')).toBe(true);
  });

  it('target rules: adding an existing member, removing a non-member, targeting oneself are refused', async () => {
    for (const p of [
      { action: 'add', target: 'member', role: 'member' },
      { action: 'remove', target: 'outsider' },
      { action: 'demote', target: 'owner' },
    ] as const) {
      const e = await nextEntry(curves, signer('owner'), base, CONV, params('owner', p));
      expect(is(await applyEntry(curves, base, e, resolve).catch((x) => x), 'invalid_structure')).toBe(true);
    }
  });

  it('step 5 order: a non-member author is forbidden before anything else, even for a create after entry 0', async () => {
    const create = (author: string) =>
      nextEntry(curves, signer(author), base, CONV, params(author, { action: 'create', title: 'again' }));
    expect((await applyEntry(curves, base, await create('outsider'), resolve).catch((x) => x)).code).toBe('forbidden');
    expect((await applyEntry(curves, base, await create('member'), resolve).catch((x) => x)).code).toBe(
      'invalid_structure',
    );
  });

  it('step 5 order: target rules (invalid_structure) come before the role table (forbidden)', async () => {
    // A member may neither remove nor add anyone; the target rule is what refuses these entries.
    for (const p of [
      { action: 'remove', target: 'member' },
      { action: 'add', target: 'admin', role: 'member' },
      { action: 'remove', target: 'outsider' },
    ] as const) {
      const e = await nextEntry(curves, signer('member'), base, CONV, params('member', p));
      expect([p, (await applyEntry(curves, base, e, resolve).catch((x) => x)).code]).toEqual([p, 'invalid_structure']);
    }
  });

  it('nobody can be added as owner, not even by the owner (forbidden)', async () => {
    const e = await nextEntry(
      curves,
      signer('owner'),
      base,
      CONV,
      params('owner', { action: 'add', target: 'outsider', role: 'owner' }),
    );
    expect((await applyEntry(curves, base, e, resolve).catch((x) => x)).code).toBe('forbidden');
  });

  it('the role byte is 0 for every action but add; another value there is invalid_structure, an unknown code decode', () => {
    const create = encodeMembershipEntry(baseLog[0]!);
    // u8 version ‖ id conv ‖ u32 seq ‖ prevHash[32] ‖ u8 action ‖ id author ‖ id device ‖ bool hasTarget ‖ u8 role
    const at = 1 + (4 + CONV.length) + 4 + 32 + 1 + (4 + 'owner'.length) + (4 + 'owner-d1'.length) + 1;
    expect([create[at - 1], create[at]]).toEqual([0, 0]);
    const withRole = (code: number) => create.map((b, i) => (i === at ? code : b));
    for (const code of [1, 2, 3]) {
      expect(() => decodeMembershipEntry(withRole(code))).toThrow(
        expect.objectContaining({ code: 'invalid_structure' }),
      );
    }
    expect(() => decodeMembershipEntry(withRole(4))).toThrow(expect.objectContaining({ code: 'decode' }));
  });

  it('entries round-trip through the binary encoding; malformed shapes are refused', async () => {
    for (const e of baseLog) {
      const d = decodeMembershipEntry(encodeMembershipEntry(e));
      expect(toHex(encodeMembershipEntry(d))).toBe(toHex(encodeMembershipEntry(e)));
    }
    const enc = encodeMembershipEntry(baseLog[1]!);
    expect(() => decodeMembershipEntry(enc.slice(0, -1))).toThrow();
    expect(() => decodeMembershipEntry(new Uint8Array([...enc, 0]))).toThrow();
    await expect(
      nextEntry(curves, signer('owner'), base, CONV, params('owner', { action: 'leave', target: 'member' })),
    ).rejects.toThrow(/target presence/);
  });
});

describe('disappearing-message timer entries (set_timer)', () => {
  it('a member may set the timer while the conversation has two members, not in a larger group', async () => {
    const log: MembershipEntry[] = [];
    let s = await append(log, null, 'owner', { action: 'create', title: '' });
    s = await append(log, s, 'owner', { action: 'add', target: 'member', role: 'member' });
    s = await append(log, s, 'member', { action: 'set_timer', timer: 300 });
    expect(s.timer).toBe(300);
    s = await append(log, s, 'owner', { action: 'set_timer', timer: 0 });
    expect(s.timer).toBe(0);
    s = await append(log, s, 'owner', { action: 'add', target: 'member2', role: 'member' });
    const e = await nextEntry(
      curves,
      signer('member'),
      s,
      CONV,
      params('member', { action: 'set_timer', timer: 60 * 60 }),
    );
    expect((await applyEntry(curves, s, e, resolve).catch((x) => x)).code).toBe('forbidden');
    const replayed = await verifyLog(curves, log, resolve);
    expect(replayed.timer).toBe(0);
  });

  it('the timer travels as a u32 after the title, only in set_timer entries, and decodes to the same entry', async () => {
    const e = await nextEntry(
      curves,
      signer('owner'),
      base,
      CONV,
      params('owner', { action: 'set_timer', timer: 604_800 }),
    );
    const bytes = encodeMembershipEntry(e);
    const back = decodeMembershipEntry(bytes);
    expect(back.timer).toBe(604_800);
    expect(toHex(encodeMembershipEntry(back))).toBe(toHex(bytes));
    // … u8 hasTitle = 0 ‖ u32 timer ‖ u64 timestamp ‖ signature[64]
    const tail = bytes.slice(bytes.length - 64 - 8 - 4 - 1, bytes.length - 64 - 8);
    expect(toHex(tail)).toBe('00' + '00093a80');
    // Other actions carry no timer bytes (the existing layout is unchanged).
    const rename = await nextEntry(
      curves,
      signer('owner'),
      base,
      CONV,
      params('owner', { action: 'rename', title: 'x' }),
    );
    expect(decodeMembershipEntry(encodeMembershipEntry(rename)).timer).toBeUndefined();
  });

  it('a timer outside 0 or 5 minutes … 4 weeks is refused when signing and when decoding', async () => {
    for (const timer of [1, 299, 2_419_201, -1, 1.5]) {
      const err = await nextEntry(
        curves,
        signer('owner'),
        base,
        CONV,
        params('owner', { action: 'set_timer', timer }),
      ).catch((x) => x);
      expect(is(err, 'invalid_structure'), String(timer)).toBe(true);
    }
    // A valid entry with its timer bytes rewritten to 299 s no longer decodes.
    const e = await nextEntry(
      curves,
      signer('owner'),
      base,
      CONV,
      params('owner', { action: 'set_timer', timer: 300 }),
    );
    const bytes = encodeMembershipEntry(e);
    const at = bytes.length - 64 - 8 - 4;
    bytes.set([0, 0, 0x01, 0x2b], at);
    expect(
      is(
        catching(() => decodeMembershipEntry(bytes)),
        'invalid_structure',
      ),
    ).toBe(true);
    // A set_timer without its timer, or another action with one, is a shape error.
    const noTimer = { ...e, timer: null };
    expect(
      is(
        catching(() => encodeMembershipEntry(noTimer)),
        'invalid_structure',
      ),
    ).toBe(true);
    const renameWithTimer = { ...e, action: 'rename' as const, title: 't', timer: 300 };
    expect(
      is(
        catching(() => encodeMembershipEntry(renameWithTimer)),
        'invalid_structure',
      ),
    ).toBe(true);
  });
});

function catching(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return null;
}
