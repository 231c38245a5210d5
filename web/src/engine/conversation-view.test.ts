import { describe, expect, it } from 'vitest';
import { makeWorld, newClient } from './testing/harness.js';

describe('conversation views and membership changes for the UI', () => {
  it('lists conversations with title, roles and our role; promote, transfer and leave follow the role table', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'Trip' });
    const [view] = await alice.engine.conversations();
    expect(view).toMatchObject({ id: conv, kind: 'group', title: 'Trip', myRole: 'owner' });
    expect(view!.members).toEqual(
      expect.arrayContaining([
        { userId: 'alice', role: 'owner' },
        { userId: 'bob', role: 'member' },
        { userId: 'carol', role: 'member' },
      ]),
    );
    await alice.engine.changeMembership(conv, { action: 'promote', target: 'bob' });
    expect((await bob.engine.conversation(conv)).myRole).toBe('admin');
    await alice.engine.changeMembership(conv, { action: 'transfer_ownership', target: 'bob' });
    expect((await alice.engine.conversation(conv)).myRole).toBe('admin');
    await alice.engine.changeMembership(conv, { action: 'leave' });
    const after = await carol.engine.conversation(conv);
    expect(after.members.map((m) => m.userId).sort()).toEqual(['bob', 'carol']);
    expect(after.members.find((m) => m.userId === 'bob')?.role).toBe('owner');
    await expect(carol.engine.removeMember(conv, 'bob')).rejects.toThrow(); // a member may not remove
    for (const c of [alice, bob, carol]) c.engine.close();
  });

  it('keeps UI preferences in the store', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    expect(await alice.engine.getPref('names')).toBeUndefined();
    await alice.engine.setPref('names', { bob: 'bob' });
    expect(await alice.engine.getPref('names')).toEqual({ bob: 'bob' });
    alice.engine.close();
  });
});
