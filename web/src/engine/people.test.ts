import { describe, expect, it, vi } from 'vitest';
import { People } from './people.js';
import { memoryStore } from './storage.js';
import {
  type Client,
  engineOn,
  makeWorld,
  newClient,
  ownIdentity,
  texts,
  until,
  type World,
} from './testing/harness.js';
import { ApiError } from './transport.js';

// A request has no socket: its messages come from the mailbox poll (fast here).
const requests = { engine: { messageRequests: true, requestPollMs: 20 } };
const PNG = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8]);

/** Frames a user sent into a conversation (receipts and profile keys are `send` frames too). */
const sendsBy = (w: World, user: string, conv: string) =>
  w.server.sentFrames.filter((f) => f.user === user && f.conversationId === conv && f.frame.type === 'send');

async function statusOf(c: Client, conv: string, clientId: string) {
  return (await c.engine.messages(conv)).find((m) => m.clientId === clientId)?.status;
}

/** Every byte the fake server holds for people (sealed profiles and settings) as one string. */
function serverPeopleBytes(w: World): string {
  const all = [...w.server.profiles.values(), ...[...w.server.privateSettings.values()].map((s) => s.sealed)];
  return all.map((b) => Buffer.from(b).toString('latin1')).join('|');
}

async function linkSecondDevice(w: World, c: Client, deviceId: string, extra = {}) {
  const secret = (await ownIdentity(c.store)).userIdentity.secretKey;
  const store = memoryStore();
  const e2 = engineOn(w, c.userId, deviceId, store, c.locks, extra);
  const id2 = await e2.bootstrap({ userId: c.userId, deviceId, userIdentitySecret: secret });
  await w.server.updateDeviceList(await c.engine.addDeviceToList(id2.deviceCertificate));
  await e2.publishPrekeys();
  return { engine: e2, store, locks: c.locks, userId: c.userId, deviceId } satisfies Client;
}

describe('profiles', () => {
  it('a profile name and avatar reach the people we talk to inside our messages; the server holds only ciphertext', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    await alice.engine.setProfile({ name: 'Alice Liddell', avatar: { type: 'png', bytes: PNG } });
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect();
    await alice.engine.sendText(conv, 'hello');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 2, 'profile key and text queued');
    expect(await bob.engine.profile('alice')).toBeNull();
    await bob.engine.syncMailbox();
    await bob.engine.idle();
    const seen = await bob.engine.profile('alice');
    expect(seen?.name).toBe('Alice Liddell');
    expect(seen?.avatar?.type).toBe('png');
    expect([...(seen?.avatar?.bytes ?? [])]).toEqual([...PNG]);
    expect(await texts(bob.engine, conv)).toEqual(['hello']); // the key message is not a visible message

    // Nothing the server holds contains the name, the avatar or the profile key.
    const held = serverPeopleBytes(w);
    expect(held).not.toContain('Alice Liddell');
    expect(held).not.toContain(Buffer.from(PNG).toString('latin1'));
    const aliceKey = (await alice.engine.syncPeople()) && w.server.privateSettings.get('alice');
    expect(aliceKey?.revision).toBe(1);
    const profileKey = (await bob.store.get('ppl/key/alice'))!;
    expect(profileKey).toBeDefined();
    // The key is sent once per conversation and profile version: a second message carries no new key.
    const before = w.server.pending(conv, 'bob', 'bob-1').length;
    await alice.engine.sendText(conv, 'again');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === before + 1, 'one envelope only');

    // A new name: the next message carries the new version; Bob's device opens it.
    await alice.engine.setProfile({ name: 'Alice L.', avatar: null });
    await alice.engine.sendText(conv, 'renamed');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === before + 3, 'key and text');
    await bob.engine.syncMailbox();
    await bob.engine.idle();
    expect((await bob.engine.profile('alice'))?.name).toBe('Alice L.');
    expect((await bob.engine.profile('alice'))?.avatar).toBeNull();
    alice.engine.close();
    bob.engine.close();
  });

  it('a message refused with our profile key (the key directory says 403) is failed; the next one carries the key again and goes out', async () => {
    const w = await makeWorld();
    const bob = await newClient(w, 'bob');
    const real = w.server.api('alice', 'alice-1');
    let refuse = false;
    const api = {
      ...real,
      claimBundles: (u: string) => (refuse ? Promise.reject(new ApiError(403, 'forbidden')) : real.claimBundles(u)),
    };
    const alice = await newClient(w, 'alice', 'alice-1', { engine: { api } });
    await alice.engine.setProfile({ name: 'Alice Liddell', avatar: null });
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect();
    refuse = true;
    const first = await alice.engine.sendText(conv, 'first try');
    await until(async () => (await statusOf(alice, conv, first.clientId)) === 'failed', 'the first message fails');
    const second = await alice.engine.sendText(conv, 'second try');
    await until(async () => (await statusOf(alice, conv, second.clientId)) === 'failed', 'the second message fails');
    expect(sendsBy(w, 'alice', conv)).toEqual([]);
    refuse = false;
    const third = await alice.engine.sendText(conv, 'third try');
    await until(async () => (await statusOf(alice, conv, third.clientId)) === 'sent', 'the third message is sent');
    await bob.engine.syncMailbox();
    await bob.engine.idle();
    expect(await texts(bob.engine, conv)).toEqual(['third try']);
    expect((await bob.engine.profile('alice'))?.name).toBe('Alice Liddell');
  });

  it('a profile the server swapped, or one sealed for another user, is not shown; the old one stays', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const mallory = await newClient(w, 'mallory');
    await alice.engine.setProfile({ name: 'Alice', avatar: null });
    await mallory.engine.setProfile({ name: 'Alice (real)', avatar: null });
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect();
    await alice.engine.sendText(conv, 'hi');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 2, 'queued');
    await bob.engine.syncMailbox();
    await bob.engine.idle();
    expect((await bob.engine.profile('alice'))?.name).toBe('Alice');
    // The server serves Mallory's sealed profile as Alice's: it does not open under Alice's key and id.
    w.server.profiles.set('alice', w.server.profiles.get('mallory')!);
    expect((await bob.engine.profile('alice', { refresh: true }))?.name).toBe('Alice');
    // A tampered byte: refused the same way.
    const t = w.server.profiles.get('mallory')!.slice();
    t[t.length - 1]! ^= 1;
    w.server.profiles.set('alice', t);
    expect((await bob.engine.profile('alice', { refresh: true }))?.name).toBe('Alice');
    alice.engine.close();
  });

  it('a name that disguises text and an oversized avatar are refused before anything is uploaded', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    await expect(alice.engine.setProfile({ name: 'evil\u202Eevil', avatar: null })).rejects.toMatchObject({
      code: 'invalid_structure',
    });
    const big = new Uint8Array(25 * 1024);
    big.set(PNG);
    await expect(alice.engine.setProfile({ name: 'A', avatar: { type: 'png', bytes: big } })).rejects.toMatchObject({
      code: 'limit_exceeded',
    });
    await expect(alice.engine.setProfile({ name: 'A', avatar: { type: 'jpeg', bytes: PNG } })).rejects.toMatchObject({
      code: 'invalid_structure',
    });
    expect(w.server.profiles.has('alice')).toBe(false);
  });

  it('a malformed profile-key payload is ignored: nothing shown, no key kept, the conversation goes on', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect();
    await alice.engine.setProfile({ name: 'A', avatar: null });
    // A modified Alice client: its profile-key payload is 3 bytes instead of 41.
    const spy = vi
      .spyOn(People.prototype, 'profileKeyToShare')
      .mockImplementation(async (c: string) => ({ payload: { t: 'pk', conv: c, k: new Uint8Array(3) }, mark: 'x' }));
    await alice.engine.sendText(conv, 'ok');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 2, 'queued');
    spy.mockRestore();
    await bob.engine.syncMailbox();
    await bob.engine.idle();
    expect(await texts(bob.engine, conv)).toEqual(['ok']);
    expect((await bob.engine.messages(conv)).map((m) => m.status)).toEqual(['received']);
    expect(await bob.store.get('ppl/key/alice')).toBeUndefined();
    expect(await bob.engine.profile('alice')).toBeNull();
    alice.engine.close();
  });
});

describe('message requests', () => {
  it('a request opens no socket and spends no ticket until accepted: its messages come from the mailbox poll', async () => {
    const w = await makeWorld();
    const mallory = await newClient(w, 'mallory', 'mallory-1', requests);
    const bob = await newClient(w, 'bob', 'bob-1', requests);
    const sockets = (conv: string) =>
      w.server.openedSockets.filter((s) => s.user === 'bob' && s.conversationId === conv);
    const conv = await mallory.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await mallory.engine.connect();
    const hi = await mallory.engine.sendText(conv, 'hi from a stranger');
    await bob.engine.connect();
    await until(async () => (await texts(bob.engine, conv)).includes('hi from a stranger'), 'polled from the mailbox');
    await mallory.engine.sendText(conv, 'and again');
    await until(async () => (await texts(bob.engine, conv)).includes('and again'), 'the next poll');
    await bob.engine.idle();
    expect(sockets(conv)).toEqual([]);
    expect((await bob.engine.connectionStatus(conv)) === 'online').toBe(false);
    expect(w.server.pending(conv, 'bob', 'bob-1')).toEqual([]); // fetched and acknowledged over HTTP
    expect(sendsBy(w, 'bob', conv)).toEqual([]);
    // A conversation Bob started connects at once, as before.
    const own = await bob.engine.createConversation({ kind: 'direct', members: ['mallory'] });
    await bob.engine.connect([own]);
    expect(sockets(own)).toHaveLength(1);

    await bob.engine.acceptRequest(conv);
    expect(sockets(conv)).toHaveLength(1);
    await until(
      async () => (await statusOf(mallory, conv, hi.clientId)) === 'delivered',
      'held receipt, on the socket',
    );
    await until(async () => (await bob.engine.connectionStatus(conv)) === 'online', 'bob online');
    mallory.engine.close();
    bob.engine.close();
  });

  it('a first message from a stranger is a request: no receipt and no profile key go back until Bob accepts', async () => {
    const w = await makeWorld();
    const mallory = await newClient(w, 'mallory', 'mallory-1', requests);
    const bob = await newClient(w, 'bob', 'bob-1', requests);
    await bob.engine.setProfile({ name: 'Bob', avatar: null });
    const conv = await mallory.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await mallory.engine.connect();
    await bob.engine.connect();
    const hi = await mallory.engine.sendText(conv, 'hi, remember me?');
    await until(async () => (await texts(bob.engine, conv)).includes('hi, remember me?'), 'bob receives');
    await bob.engine.idle();
    expect((await bob.engine.conversation(conv)).requestState).toBe('request');
    expect(await bob.engine.requester(conv)).toBe('mallory');
    expect(sendsBy(w, 'bob', conv)).toEqual([]); // no receipt, no profile key: nothing at all
    expect(await statusOf(mallory, conv, hi.clientId)).toBe('sent');

    await bob.engine.acceptRequest(conv);
    expect((await bob.engine.conversation(conv)).requestState).toBe('accepted');
    await until(
      async () => (await statusOf(mallory, conv, hi.clientId)) === 'delivered',
      'held receipt sent on accept',
    );
    // Bob's profile key goes along with his first message, not before.
    expect(await mallory.engine.profile('bob')).toBeNull();
    await bob.engine.sendText(conv, 'oh, hi');
    await until(async () => (await mallory.engine.profile('bob'))?.name === 'Bob', 'profile after reply');
    // Accepting is stored (sealed) for Bob's own devices: a conversation Mallory starts next is not a request.
    const again = await mallory.engine.createConversation({ kind: 'group', members: ['bob'], title: 'plans' });
    expect((await bob.engine.conversation(again)).requestState).toBe('accepted');
    mallory.engine.close();
    bob.engine.close();
  });

  it('a group a stranger put us in is a request; one started by someone we talk to is not', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice', 'alice-1', requests);
    const bob = await newClient(w, 'bob', 'bob-1', requests);
    const spammer = await newClient(w, 'spammer', 'spammer-1', requests);
    // Bob started a conversation with Alice: Alice is accepted.
    await bob.engine.createConversation({ kind: 'direct', members: ['alice'] });
    await bob.engine.idle();
    const fromAlice = await alice.engine.createConversation({ kind: 'group', members: ['bob'], title: 'friends' });
    const fromSpammer = await spammer.engine.createConversation({
      kind: 'group',
      members: ['bob', 'alice'],
      title: 'WIN',
    });
    const views = await bob.engine.conversations();
    expect(views.find((c) => c.id === fromAlice)?.requestState).toBe('accepted');
    expect(views.find((c) => c.id === fromSpammer)?.requestState).toBe('request');
    await spammer.engine.connect();
    await spammer.engine.sendText(fromSpammer, 'click here');
    await until(() => w.server.pending(fromSpammer, 'bob', 'bob-1').length >= 1, 'spam queued');
    await bob.engine.syncMailbox();
    await bob.engine.connect([fromSpammer]);
    await bob.engine.idle();
    expect(sendsBy(w, 'bob', fromSpammer)).toEqual([]);
    // Deleting the request hides it until something new arrives; still nothing is sent back.
    await bob.engine.deleteRequest(fromSpammer);
    expect((await bob.engine.conversation(fromSpammer)).requestState).toBe('hidden');
    await spammer.engine.sendText(fromSpammer, 'last chance');
    await until(async () => (await texts(bob.engine, fromSpammer)).includes('last chance'), 'second spam');
    expect((await bob.engine.conversation(fromSpammer)).requestState).toBe('request');
    expect(sendsBy(w, 'bob', fromSpammer)).toEqual([]);
    spammer.engine.close();
    bob.engine.close();
  });
});

describe('block and mute', () => {
  it('a blocked person’s messages are dropped on every device of ours and they are not told', async () => {
    const w = await makeWorld();
    const bob = await newClient(w, 'bob', 'bob-1', requests);
    const bob2 = await linkSecondDevice(w, bob, 'bob-2', { messageRequests: true });
    const mallory = await newClient(w, 'mallory', 'mallory-1', requests);
    const conv = await mallory.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await mallory.engine.connect();
    await mallory.engine.sendText(conv, 'first');
    await until(() => w.server.pending(conv, 'bob', 'bob-1').length === 1, 'first queued');
    await bob.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['first']);

    await bob.engine.block({ userId: 'mallory' });
    expect((await bob.engine.people()).blockedUsers).toEqual(['mallory']);
    // The block list is sealed: the server's copy names nobody.
    expect(serverPeopleBytes(w)).not.toContain('mallory');
    // Bob's other device learns it from the sealed settings.
    await bob2.engine.syncPeople();
    expect((await bob2.engine.people()).blockedUsers).toEqual(['mallory']);

    const second = await mallory.engine.sendText(conv, 'second');
    await until(async () => (await statusOf(mallory, conv, second.clientId)) === 'sent', 'second accepted');
    await bob.engine.syncMailbox();
    await bob2.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['first']);
    expect(await texts(bob2.engine, conv)).toEqual([]);
    expect((await bob.engine.conversation(conv)).requestState).toBe('blocked');
    // Acknowledged (the mailbox is empty) but nothing went back: Mallory still sees "sent".
    expect(w.server.pending(conv, 'bob', 'bob-1')).toEqual([]);
    expect(sendsBy(w, 'bob', conv)).toEqual([]);
    expect(await statusOf(mallory, conv, second.clientId)).toBe('sent');

    // Unblocked: the sessions stayed in step, so what comes next decrypts.
    await bob.engine.unblock({ userId: 'mallory' });
    const third = await mallory.engine.sendText(conv, 'third');
    await until(async () => (await statusOf(mallory, conv, third.clientId)) === 'sent', 'third accepted');
    await bob.engine.syncMailbox();
    expect(await texts(bob.engine, conv)).toEqual(['first', 'third']);
    mallory.engine.close();
  });

  it('blocking someone rotates our profile key: the others get the new key, the blocked person keeps only the old one', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const mallory = await newClient(w, 'mallory');
    await alice.engine.setProfile({ name: 'Alice', avatar: null });
    const withBob = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    const withMallory = await alice.engine.createConversation({ kind: 'direct', members: ['mallory'] });
    const all = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'mallory'], title: 'all' });
    await alice.engine.connect();
    for (const c of [withBob, withMallory, all]) await alice.engine.sendText(c, 'hi');
    await alice.engine.idle();
    for (const p of [bob, mallory]) {
      await until(
        async () => (await p.engine.syncMailbox()) >= 0 && (await p.engine.profile('alice'))?.name === 'Alice',
        `${p.userId} has the key`,
      );
    }
    const keyOf = async (c: Client) => Buffer.from((await c.store.get('ppl/key/alice'))!).toString('hex');
    const settingsKey = async () => (await alice.engine.syncPeople()) && (await alice.store.get('ppl/settings'));
    const before = { settings: await settingsKey(), bob: await keyOf(bob), mallory: await keyOf(mallory) };
    const toMallory = () =>
      w.server.sentFrames.filter((f) => f.user === 'alice' && f.conversationId !== withBob).length;
    const sentBefore = toMallory();

    await alice.engine.block({ userId: 'mallory' });
    await alice.engine.idle();
    expect(await settingsKey()).not.toEqual(before.settings); // the sealed settings hold a new key
    // Bob gets the new key at once (no message of Alice's needed); nothing goes where Mallory is a member.
    await until(async () => (await bob.engine.syncMailbox()) >= 0 && (await keyOf(bob)) !== before.bob, 'bob re-keyed');
    expect(toMallory()).toBe(sentBefore);
    // Alice's profile is sealed under the new key: Bob opens what she changes next, Mallory cannot.
    await alice.engine.setProfile({ name: 'Alice (new)', avatar: null });
    expect((await bob.engine.profile('alice', { refresh: true }))?.name).toBe('Alice (new)');
    await mallory.engine.syncMailbox();
    expect(await keyOf(mallory)).toBe(before.mallory);
    expect((await mallory.engine.profile('alice', { refresh: true }))?.name).toBe('Alice');
    // Alice keeps writing to the group with Mallory in it: still no new key goes there.
    await alice.engine.sendText(all, 'still here');
    await alice.engine.idle();
    await mallory.engine.syncMailbox();
    expect(await texts(mallory.engine, all)).toContain('still here');
    expect(await keyOf(mallory)).toBe(before.mallory);
    for (const c of [alice, bob, mallory]) c.engine.close();
  });

  it('two devices change the settings at once: both changes survive (compare-and-swap), and no rollback is adopted', async () => {
    const w = await makeWorld();
    const bob = await newClient(w, 'bob');
    const bob2 = await linkSecondDevice(w, bob, 'bob-2');
    // Separate lock managers: the two devices race on the server's revision, not on a local lock.
    const other = engineOn(w, 'bob', 'bob-2', bob2.store, (await import('./locks.js')).memoryLocks());
    await bob.engine.mute({ userId: 'carol' });
    const first = w.server.privateSettings.get('bob')!;
    await Promise.all([
      bob.engine.block({ userId: 'mallory' }),
      other.mute({ conversationId: 'noisy-group' }, 0),
      bob.engine.mute({ userId: 'eve' }, Date.now() + 60_000),
    ]);
    await bob.engine.syncPeople();
    const v = await bob.engine.people();
    expect(v.blockedUsers).toEqual(['mallory']);
    expect(v.mutedConversations.map((m) => m.conversationId)).toEqual(['noisy-group']);
    expect(v.mutedUsers.map((m) => m.userId).sort()).toEqual(['carol', 'eve']);
    expect(w.server.privateSettings.get('bob')?.revision).toBe(4);
    // A server that serves an older revision (a genuine old blob) is not believed.
    w.server.privateSettings.set('bob', first);
    await bob.engine.syncPeople();
    expect((await bob.engine.people()).blockedUsers).toEqual(['mallory']);
    await expect(bob.engine.unmute({ userId: 'eve' })).rejects.toMatchObject({ code: 'settings_rollback' });
    other.close();
  });
});

it('the profile key in our settings is the one shared: a second device of ours shows the same profile', async () => {
  const w = await makeWorld();
  const alice = await newClient(w, 'alice');
  await alice.engine.setProfile({ name: 'Alice', avatar: null });
  const alice2 = await linkSecondDevice(w, alice, 'alice-2');
  await alice2.engine.syncPeople();
  expect((await alice2.engine.profile('alice'))?.name).toBe('Alice');
});

it('after an identity reset the old sealed settings cannot be opened: the new device starts again on top of them', async () => {
  const w = await makeWorld();
  const bob = await newClient(w, 'bob');
  await bob.engine.block({ userId: 'mallory' });
  const old = w.server.privateSettings.get('bob')!;
  expect(old.revision).toBe(1);
  // An identity reset: a new device under a new user identity key, the old one revoked.
  const fresh = engineOn(w, 'bob', 'bob-new', memoryStore(), bob.locks);
  const id = await fresh.bootstrap({ userId: 'bob', deviceId: 'bob-new', listVersion: 2 });
  await w.server.resetIdentity(id.deviceList);
  expect((await fresh.syncPeople()).blockedUsers).toEqual([]);
  await fresh.mute({ userId: 'eve' });
  expect(w.server.privateSettings.get('bob')?.revision).toBe(2);
  // A device that holds settings never lets unreadable ones replace them.
  w.server.privateSettings.set('bob', { revision: 3, sealed: old.sealed });
  await expect(fresh.syncPeople()).rejects.toMatchObject({ code: 'decryption_failed' });
  expect((await fresh.people()).mutedUsers.map((m) => m.userId)).toEqual(['eve']);
  fresh.close();
});
