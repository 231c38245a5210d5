/**
 * Account deletion and direct conversations (issue 18; docs/PROTOCOL.md §"Conversation membership log",
 * direct conversations): a direct log takes the deleting account's signed departure — `transfer_ownership`
 * to the other person when it created the chat, then `leave` — only inside POST /api/account/delete, and
 * nothing at all after that `leave`; the other person's copy stays verifiable and names the departure.
 */
import { describe, expect, it } from 'vitest';
import { toB64u } from '../web/src/protocol/bytes.js';
import {
  applyEntry,
  decodeMembershipEntry,
  encodeMembershipEntry,
  type MembershipEntry,
  type MembershipState,
  nextEntry,
  verifyLog,
} from '../web/src/protocol/index.js';
import { theirEd25519 } from '../web/src/protocol/keys.js';
import { api, curves, freshName, type RegisteredUser, registerUser } from './test/fixtures.js';

type Change = Omit<Parameters<typeof nextEntry>[4], 'authorUserId' | 'authorDeviceId' | 'timestamp'>;

/** A conversation's log as a client holds it: entries it signs are applied with the protocol's own rules. */
class Log {
  state: MembershipState | null = null;
  readonly entries: MembershipEntry[] = [];
  constructor(
    readonly id: string,
    private readonly people: RegisteredUser[],
  ) {}
  private resolve = (u: string, d: string) => {
    const p = this.people.find((x) => x.userId === u && x.deviceId === d);
    return p ? theirEd25519(p.device.signing.publicKey) : undefined;
  };
  /** Signs `change` as `u` on top of the head (`apply` adds it to this copy). */
  async sign(u: RegisteredUser, change: Change): Promise<MembershipEntry> {
    return nextEntry(await curves(), u.device.signing, this.state, this.id, {
      ...change,
      authorUserId: u.userId,
      authorDeviceId: u.deviceId,
      timestamp: Date.now(),
    } as Parameters<typeof nextEntry>[4]);
  }
  async apply(e: MembershipEntry): Promise<void> {
    this.state = await applyEntry(await curves(), this.state, e, this.resolve);
    this.entries.push(e);
  }
}

const b64 = (e: MembershipEntry) => toB64u(encodeMembershipEntry(e));

/** `a` opens a direct chat with `b` through the API. */
async function direct(a: RegisteredUser, b: RegisteredUser): Promise<Log> {
  const log = new Log(`d_${crypto.randomUUID().replaceAll('-', '').slice(0, 20)}`, [a, b]);
  await log.apply(await log.sign(a, { action: 'create', title: `${a.username} ${b.username}` } as Change));
  await log.apply(await log.sign(a, { action: 'add', target: b.userId, role: 'member' } as Change));
  const res = await api('/api/conversations', {
    token: a.accessToken,
    body: { kind: 'direct', entries: log.entries.map(b64) },
  });
  expect(res.status, await res.clone().text()).toBe(201);
  return log;
}

async function appendOutside(u: RegisteredUser, log: Log, e: MembershipEntry) {
  const r = await api(`/api/conversations/${log.id}/log`, { token: u.accessToken, body: { entry: b64(e) } });
  return { status: r.status, code: ((await r.json()) as { error?: { code: string } }).error?.code };
}

async function deleteAccount(u: RegisteredUser, leave: { conversationId: string; entries: string[] }[]) {
  const r = await api('/api/account/delete', { token: u.accessToken, body: { passwordPrehash: u.prehash, leave } });
  return { status: r.status, body: (await r.json()) as { error?: { code: string; conversations?: string[] } } };
}

describe('account deletion in direct conversations', () => {
  it('a deleting account leaves each direct chat with signed entries; the peer keeps a verifiable, closed log', async () => {
    const carol = await registerUser(freshName('carol'));
    const dave = await registerUser(freshName('dave'));
    const erin = await registerUser(freshName('erin'));
    const mine = await direct(carol, dave); // carol created it: she owns it
    const theirs = await direct(erin, carol); // erin created it: carol is a member

    // Outside a deletion a direct log takes neither a leave nor a handover.
    const handover = await mine.sign(carol, { action: 'transfer_ownership', target: dave.userId } as Change);
    expect(await appendOutside(carol, mine, handover)).toEqual({ status: 422, code: 'direct_conversation_closed' });
    const memberLeave = await theirs.sign(carol, { action: 'leave' } as Change);
    expect(await appendOutside(carol, theirs, memberLeave)).toEqual({
      status: 422,
      code: 'direct_conversation_closed',
    });

    // The deletion needs a departure for both direct chats, and each must end with the account's leave.
    const none = await deleteAccount(carol, []);
    expect(none.status).toBe(409);
    expect(none.body.error?.code).toBe('leave_entries_required');
    expect(none.body.error?.conversations?.sort()).toEqual([mine.id, theirs.id].sort());
    const noLeave = await deleteAccount(carol, [
      { conversationId: mine.id, entries: [b64(handover)] },
      { conversationId: theirs.id, entries: [b64(memberLeave)] },
    ]);
    expect([noLeave.status, noLeave.body.error?.code]).toEqual([422, 'invalid_departure']);

    await mine.apply(handover);
    const ownerLeave = await mine.sign(carol, { action: 'leave' } as Change);
    await mine.apply(ownerLeave);
    await theirs.apply(memberLeave);
    const done = await deleteAccount(carol, [
      { conversationId: mine.id, entries: [b64(handover), b64(ownerLeave)] },
      { conversationId: theirs.id, entries: [b64(memberLeave)] },
    ]);
    expect(done.status, JSON.stringify(done.body)).toBe(200);

    // Each peer: the log ends with carol's leave, verifies from its first entry, and they are alone in it.
    for (const [peer, log] of [
      [dave, mine],
      [erin, theirs],
    ] as const) {
      const got = (await (
        await api(`/api/conversations/${log.id}/log`, { method: 'GET', token: peer.accessToken })
      ).json()) as { entries: { entry: string }[] };
      const entries = got.entries.map((e) => decodeMembershipEntry(Uint8Array.from(Buffer.from(e.entry, 'base64url'))));
      expect(entries.map((e) => e.action).at(-1)).toBe('leave');
      expect(entries.at(-1)!.authorUserId).toBe(carol.userId);
      const state = await verifyLog(await curves(), entries, (u, d) => {
        const p = [carol, dave, erin].find((x) => x.userId === u && x.deviceId === d);
        return p ? theirEd25519(p.device.signing.publicKey) : undefined;
      });
      // Both are owners now: dave by carol's handover, erin since she created hers.
      expect([...state.members]).toEqual([[peer.userId, 'owner']]);
      const view = (await (
        await api(`/api/conversations/${log.id}`, { method: 'GET', token: peer.accessToken })
      ).json()) as { members: { userId: string }[] };
      expect(view.members.map((m) => m.userId)).toEqual([peer.userId]);
    }

    // Closed: not even the timer may change after the leave.
    const timer = await mine.sign(dave, { action: 'set_timer', timer: 3600 } as Change);
    expect(await appendOutside(dave, mine, timer)).toEqual({ status: 422, code: 'direct_conversation_closed' });
  });
});
