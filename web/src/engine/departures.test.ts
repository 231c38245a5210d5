/**
 * Account deletion on the device (issue 18, README §Your data): `Engine.departures()` signs the entries
 * that take a deleting account out of every conversation others are still in — `transfer_ownership` to an
 * admin (else the first other member) before the `leave` when it owns the group — and the members'
 * engines verify them like any other entry once the server has appended them.
 */
import { describe, expect, it } from 'vitest';
import { decodeMembershipEntry } from './_protocol.js';
import { makeWorld, newClient, until, type World } from './testing/harness.js';

/** Appends `entries` as the deleting account's device would have them appended by POST /api/account/delete. */
async function appendAll(w: World, user: string, conversationId: string, entries: Uint8Array[]) {
  const api = w.server.api(user, `${user}-1`);
  for (const e of entries) await api.appendMembershipEntry(conversationId, e);
}

describe('departures of a deleting account', () => {
  it('an owner hands the group to its admin, then leaves; a member only leaves; a group of one needs nothing', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const owned = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'Club' });
    await alice.engine.changeMembership(owned, { action: 'promote', target: 'carol' });
    const joined = await bob.engine.createConversation({ kind: 'group', members: ['alice'], title: 'Bob’s' });
    const alone = await alice.engine.createConversation({ kind: 'group', members: [], title: 'Notes' });

    const out = await alice.engine.departures();
    expect(out.map((d) => d.conversationId).sort()).toEqual([owned, joined].sort());
    expect(out.some((d) => d.conversationId === alone)).toBe(false);
    const actions = (id: string) =>
      out
        .find((d) => d.conversationId === id)!
        .entries.map((b) => {
          const e = decodeMembershipEntry(b);
          return [e.action, e.target ?? null, e.authorUserId];
        });
    expect(actions(owned)).toEqual([
      ['transfer_ownership', 'carol', 'alice'],
      ['leave', null, 'alice'],
    ]);
    expect(actions(joined)).toEqual([['leave', null, 'alice']]);

    // The members are online: the appended entries reach them as membership frames.
    await bob.engine.connect();
    await carol.engine.connect();
    for (const id of [owned, joined])
      await until(async () => (await bob.engine.connectionStatus(id)) === 'online', 'bob online');
    for (const d of out) await appendAll(w, 'alice', d.conversationId, d.entries);
    await until(async () => (await bob.engine.conversation(joined)).members.length === 1, 'bob sees alice leave');
    await until(async () => (await bob.engine.conversation(owned)).members.length === 2, 'bob sees the handover');
    const seen = await bob.engine.conversation(owned);
    expect(seen.members.map((m) => [m.userId, m.role]).sort()).toEqual([
      ['bob', 'member'],
      ['carol', 'owner'],
    ]);
    expect((await carol.engine.conversation(owned)).myRole).toBe('owner');
    expect((await bob.engine.conversation(joined)).members.map((m) => m.userId)).toEqual(['bob']);
    for (const c of [alice, bob, carol]) c.engine.close();
  });
});
