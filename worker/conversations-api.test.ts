import { env } from 'cloudflare:workers';
import { beforeAll, describe, expect, it } from 'vitest';
import { fromB64u } from '../web/src/protocol/bytes.js';
import { type Action, canPerform, type MembershipState, type Role } from '../web/src/protocol/membership.js';
import { api, auditCount, enc, entry, type Fixture, makeUser, nextList, snapshot } from './test/directory-fixtures.js';

type Conv = { id: string; kind: string; headSeq: number; headHash: string; members: { userId: string; role: Role }[] };
const state = (c: Conv): MembershipState => ({
  conversationId: c.id,
  members: new Map(c.members.map((m) => [m.userId, m.role])),
  title: '',
  headHash: fromB64u(c.headHash),
  seq: c.headSeq,
});

let O: Fixture, A: Fixture, M: Fixture, X: Fixture, Y: Fixture, Z: Fixture;
const tokens = new Map<Fixture, string>();
let n = 0;

beforeAll(async () => {
  const all = await Promise.all(['own', 'adm', 'mem', 'tmem', 'tadm', 'outsider'].map((x) => makeUser(x, 2)));
  [O, A, M, X, Y, Z] = all as [Fixture, Fixture, Fixture, Fixture, Fixture, Fixture];
  for (const f of [O, A, M, X, Y, Z]) tokens.set(f, await f.token());
});

/** A group: O owner, A admin, M member, X member, Y admin. */
async function group(): Promise<Conv> {
  const id = `g${++n}`;
  let s: MembershipState | null = null;
  const entries = [];
  const e0 = await entry(O, s, id, { action: 'create', title: 'team' });
  entries.push(e0);
  s = { conversationId: id, members: new Map(), title: '', headHash: new Uint8Array(), seq: 0 };
  let prev = e0;
  for (const [f, role] of [
    [A, 'admin'],
    [M, 'member'],
    [X, 'member'],
    [Y, 'admin'],
  ] as const) {
    const { entryHash } = await import('../web/src/protocol/membership.js');
    const e = await entry(O, { ...s, headHash: entryHash(prev), seq: prev.seq }, id, {
      action: 'add',
      target: f.userId,
      role,
    });
    entries.push(e);
    prev = e;
  }
  const res = await api('/api/conversations', tokens.get(O)!, {
    method: 'POST',
    json: { kind: 'group', entries: entries.map(enc) },
  });
  expect(res.status).toBe(201);
  return (await res.json()) as Conv;
}

async function append(by: Fixture, c: Conv, e: Awaited<ReturnType<typeof entry>>) {
  return api(`/api/conversations/${c.id}/log`, tokens.get(by)!, { method: 'POST', json: { entry: enc(e) } });
}

describe('conversations: the disappearing-message timer (issue 17)', () => {
  it('either person sets it in a direct chat, only owners and admins in a group; the server verifies the role', async () => {
    const id = `dm${++n}`;
    const { entryHash } = await import('../web/src/protocol/membership.js');
    const e0 = await entry(O, null, id, { action: 'create', title: '' });
    const st = { conversationId: id, members: new Map(), title: '', headHash: entryHash(e0), seq: 0 };
    const e1 = await entry(O, st, id, { action: 'add', target: Z.userId, role: 'member' });
    const res = await api('/api/conversations', tokens.get(O)!, {
      method: 'POST',
      json: { kind: 'direct', entries: [enc(e0), enc(e1)] },
    });
    expect(res.status).toBe(201);
    const dm = (await res.json()) as Conv;
    // Z is a plain member of the direct chat: may set the timer.
    const t = await entry(Z, state(dm), id, { action: 'set_timer', timer: 300 });
    const r = await append(Z, dm, t);
    expect(r.status).toBe(200);
    const log = (await (await api(`/api/conversations/${id}/log`, tokens.get(O)!)).json()) as { entries: unknown[] };
    expect(log.entries.length).toBe(3);
    // In a group a member may not; an admin may.
    const g = await group();
    const byMember = await append(M, g, await entry(M, state(g), g.id, { action: 'set_timer', timer: 300 }));
    expect(byMember.status).toBe(403);
    const byAdmin = await append(A, g, await entry(A, state(g), g.id, { action: 'set_timer', timer: 3600 }));
    expect(byAdmin.status).toBe(200);
    // The verified timer is what the server's mailbox clean-up enforces (worker/disappearing.test.ts).
    const timers = await env.DB.prepare('SELECT id, timer_seconds AS t FROM conversations WHERE id IN (?, ?)')
      .bind(id, g.id)
      .all<{ id: string; t: number }>();
    expect(Object.fromEntries(timers.results.map((r) => [r.id, r.t]))).toEqual({ [id]: 300, [g.id]: 3600 });
  });
});

describe('conversations: create and read', () => {
  it('creates a group from signed entries; members read it with roles and the full log; non-members get 404', async () => {
    const c = await group();
    expect(c.members.map((m) => m.role).sort()).toEqual(['admin', 'admin', 'member', 'member', 'owner']);
    const read = await api(`/api/conversations/${c.id}`, tokens.get(M)!);
    expect(read.status).toBe(200);
    const log = (await (await api(`/api/conversations/${c.id}/log`, tokens.get(M)!)).json()) as {
      entries: { seq: number }[];
    };
    expect(log.entries.map((e) => e.seq)).toEqual([0, 1, 2, 3, 4]);
    const list = (await (await api('/api/conversations', tokens.get(X)!)).json()) as {
      conversations: { id: string; role: string }[];
    };
    expect(list.conversations.find((x) => x.id === c.id)?.role).toBe('member');
    for (const path of [
      `/api/conversations/${c.id}`,
      `/api/conversations/${c.id}/log`,
      '/api/conversations/does-not-exist',
    ]) {
      const r = await api(path, tokens.get(Z)!);
      expect(r.status).toBe(404);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('not_found');
    }
    expect(await auditCount('conversation.created')).toBeGreaterThan(0);
  });

  it('direct conversations are [create, add other as member] and take no further entries', async () => {
    const id = `dm${++n}`;
    const e0 = await entry(O, null, id, { action: 'create', title: '' });
    const { entryHash } = await import('../web/src/protocol/membership.js');
    const st = { conversationId: id, members: new Map(), title: '', headHash: entryHash(e0), seq: 0 };
    const e1 = await entry(O, st, id, { action: 'add', target: Z.userId, role: 'member' });
    const res = await api('/api/conversations', tokens.get(O)!, {
      method: 'POST',
      json: { kind: 'direct', entries: [enc(e0), enc(e1)] },
    });
    expect(res.status).toBe(201);
    const c = (await res.json()) as Conv;
    expect(c.kind).toBe('direct');
    const e2 = await entry(O, state(c), id, { action: 'add', target: X.userId, role: 'member' });
    const r2 = await append(O, c, e2);
    expect(r2.status).toBe(422);
    expect(((await r2.json()) as { error: { code: string } }).error.code).toBe('direct_conversation_closed');
    // A "direct" conversation with three members is refused at creation.
    const id3 = `dm${++n}`;
    const f0 = await entry(O, null, id3, { action: 'create', title: '' });
    const f1 = await entry(O, { ...st, conversationId: id3, headHash: entryHash(f0) }, id3, {
      action: 'add',
      target: Z.userId,
      role: 'admin',
    });
    const r3 = await api('/api/conversations', tokens.get(O)!, {
      method: 'POST',
      json: { kind: 'direct', entries: [enc(f0), enc(f1)] },
    });
    expect(r3.status).toBe(422);
  });

  it('a conversation id that exists is refused with 409; a create authored by someone else is refused', async () => {
    const c = await group();
    const again = await entry(O, null, c.id, { action: 'create', title: 'again' });
    const r = await api('/api/conversations', tokens.get(O)!, {
      method: 'POST',
      json: { kind: 'group', entries: [enc(again)] },
    });
    expect(r.status).toBe(409);
    const forged = await entry(O, null, `x${++n}`, { action: 'create', title: 'not mine' });
    const r2 = await api('/api/conversations', tokens.get(M)!, {
      method: 'POST',
      json: { kind: 'group', entries: [enc(forged)] },
    });
    expect(r2.status).toBe(403);
  });
});

describe('conversations: the role × action matrix over signed entries', () => {
  const actors: [string, () => Fixture, Role][] = [
    ['owner', () => O, 'owner'],
    ['admin', () => A, 'admin'],
    ['member', () => M, 'member'],
  ];
  const targeted: Action[] = ['add', 'remove', 'promote', 'demote', 'transfer_ownership'];
  for (const [name, actor, role] of actors) {
    for (const action of targeted) {
      for (const targetRole of ['member', 'admin'] as Role[]) {
        const expected = canPerform(role, action, targetRole);
        it(`${name} ${action} on a ${targetRole}: ${expected ? 'accepted' : 'refused, nothing changed'}`, async () => {
          const c = await group();
          const target = action === 'add' ? Z : targetRole === 'member' ? X : Y;
          const p =
            action === 'add' ? { action, target: target.userId, role: targetRole } : { action, target: target.userId };
          const e = await entry(actor(), state(c), c.id, p);
          const before = await snapshot();
          const res = await append(actor(), c, e);
          if (expected) {
            expect(res.status).toBe(200);
            const after = (await res.json()) as Conv;
            expect(after.headSeq).toBe(c.headSeq + 1);
          } else {
            expect([403, 422]).toContain(res.status);
            expect(await snapshot()).toEqual(before);
          }
        });
      }
    }
    for (const action of ['rename', 'leave'] as Action[]) {
      const expected = canPerform(role, action, null);
      it(`${name} ${action}: ${expected ? 'accepted' : 'refused, nothing changed'}`, async () => {
        const c = await group();
        const e = await entry(actor(), state(c), c.id, action === 'rename' ? { action, title: 'new' } : { action });
        const before = await snapshot();
        const res = await append(actor(), c, e);
        if (expected) expect(res.status).toBe(200);
        else {
          expect(res.status).toBe(403);
          expect(await snapshot()).toEqual(before);
        }
      });
    }
    it(`${name} create after entry 0: refused`, async () => {
      const c = await group();
      const e = await entry(actor(), state(c), c.id, { action: 'create', title: 'x' });
      const res = await append(actor(), c, e);
      expect(res.status).toBe(422);
    });
  }
});

describe('conversations: forged, replayed and out-of-chain entries are refused and change nothing', () => {
  it('forged signature, replay, wrong prevHash, wrong seq, non-member author, revoked author device', async () => {
    const c = await group();
    const before = await snapshot();
    const good = await entry(O, state(c), c.id, { action: 'rename', title: 'ok' });
    const forged = { ...good, signature: good.signature.map((b, i) => (i === 0 ? b ^ 1 : b)) };
    const r1 = await append(O, c, forged);
    expect(r1.status).toBe(422);
    expect(((await r1.json()) as { error: { code: string } }).error.code).toBe('invalid_signature');
    const wrongPrev = await entry(O, { ...state(c), headHash: new Uint8Array(32).fill(9) }, c.id, {
      action: 'rename',
      title: 'x',
    });
    expect((await append(O, c, wrongPrev)).status).toBe(409);
    const wrongSeq = await entry(O, { ...state(c), seq: c.headSeq + 1 }, c.id, { action: 'rename', title: 'x' });
    expect((await append(O, c, wrongSeq)).status).toBe(409);
    // Signed by a real device of a user who is not a member, posted by a member.
    const outsider = await entry(Z, state(c), c.id, { action: 'add', target: Z.userId, role: 'member' });
    const r4 = await append(O, c, outsider);
    expect(r4.status).toBe(403);
    // Signed by a device key the user still holds but that is not in its current device list.
    const stranger = { ...(await entry(A, state(c), c.id, { action: 'rename', title: 'x' }, 1)) };
    expect(await snapshot()).toEqual(before);
    const list = await nextList(A, [A.devices[0]!]);
    const { encodeDeviceList } = await import('../web/src/protocol/identity.js');
    const { toB64u } = await import('../web/src/protocol/bytes.js');
    const rv = await api('/api/devices/d1/revoke', tokens.get(A)!, {
      method: 'POST',
      json: { deviceList: toB64u(encodeDeviceList(list)) },
    });
    expect(rv.status).toBe(200);
    A.list = list;
    const r5 = await append(A, c, stranger);
    expect(r5.status).toBe(403);
    // The good entry still applies; replaying it is refused.
    expect((await append(O, c, good)).status).toBe(200);
    const r6 = await append(O, c, good);
    expect(r6.status).toBe(409);
    const head = await env.DB.prepare('SELECT head_seq FROM conversations WHERE id = ?')
      .bind(c.id)
      .first<{ head_seq: number }>();
    expect(head?.head_seq).toBe(c.headSeq + 1);
  });

  it('a member cannot post an entry another member signed: not_entry_author (403), nothing changed', async () => {
    const c = await group();
    // O signs a valid, chain-extending removal of X but never posts it; M obtains the bytes and posts them.
    const signedByOwner = await entry(O, state(c), c.id, { action: 'remove', target: X.userId });
    const ownerOtherDevice = await O.token(1);
    const before = await snapshot();
    const r = await append(M, c, signedByOwner);
    expect(r.status).toBe(403);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('not_entry_author');
    // The author's own user on another device is not the author device either.
    const otherDevice = await api(`/api/conversations/${c.id}/log`, ownerOtherDevice, {
      method: 'POST',
      json: { entry: enc(signedByOwner) },
    });
    expect(otherDevice.status).toBe(403);
    expect(await snapshot()).toEqual(before);
    expect((await append(O, c, signedByOwner)).status).toBe(200);
  });

  it('a removed member loses read access (404) and the DO is told (membershipChanged)', async () => {
    const c = await group();
    const e = await entry(O, state(c), c.id, { action: 'remove', target: X.userId });
    expect((await append(O, c, e)).status).toBe(200);
    expect((await api(`/api/conversations/${c.id}`, tokens.get(X)!)).status).toBe(404);
    expect(await auditCount('membership.appended')).toBeGreaterThan(0);
  });
});
