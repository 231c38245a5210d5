/**
 * Linking a device end to end on the engine over the fake server (issue 14): the new device gets the
 * account's identity, its own keys and session, the history and the contacts' trust state; contacts keep
 * the same safety number; sent messages show as ours on every own device; read positions follow; groups
 * reach the new device; a removed device confirms its removal from a signed list; and every attack the
 * issue names (tampered or dropped relay messages, a replayed token, a list not signed by the user's key,
 * the device limit, a code for another server) is refused with a stable code and changes nothing.
 */
import { describe, expect, it } from 'vitest';
import {
  encodeDeviceList,
  encodeLinkCode,
  generateEd25519,
  generateX25519,
  signDeviceList,
  toB64u,
} from './_protocol.js';
import type { EngineEvent } from './context.js';
import type { EngineOptions } from './engine.js';
import { type LinkError, LinkingDeviceLink, type LinkProgress, NewDeviceLink } from './linking.js';
import { memoryLocks } from './locks.js';
import { memoryStore } from './storage.js';
import { type Client, cryptoRng, engineOn, makeWorld, newClient, texts, until, type World } from './testing/harness.js';

const fast = { pollWaitMs: 0, stallMs: 400, backoffMs: 5 };

/** Links a new device to `existing`'s account through the whole flow; returns it with both sides' progress. */
async function link(
  w: World,
  existing: Client,
  opts: {
    deviceId?: string;
    history?: boolean;
    name?: string;
    username?: string;
    engine?: Partial<EngineOptions>;
  } = {},
) {
  const deviceId = opts.deviceId ?? `${existing.userId}-${Math.floor(Math.random() * 1e6)}`;
  const newSide: LinkProgress[] = [];
  const oldSide: LinkProgress[] = [];
  const nl = await NewDeviceLink.start({
    api: w.server.newDeviceLinkApi(),
    curves: w.curves,
    rng: cryptoRng,
    onProgress: (p) => newSide.push(p),
    timings: fast,
  });
  const linker = new LinkingDeviceLink({
    api: w.server.linkingApi(existing.userId, existing.deviceId),
    engine: existing.engine,
    username: opts.username ?? existing.userId,
    onProgress: (p) => oldSide.push(p),
    timings: fast,
  });
  const linking = linker.link(nl.code, { deviceName: opts.name ?? 'Phone', history: opts.history ?? true });
  linking.catch(() => undefined); // awaited below; a failure on the new side is reported there first
  const p = await nl.waitForProvisioning();
  const store = memoryStore();
  const locks = memoryLocks();
  const engine = engineOn(w, p.userId, deviceId, store, locks, opts.engine);
  await nl.complete(engine, deviceId);
  const imported = await nl.receiveHistory(engine);
  const outcome = await linking;
  const client: Client = { engine, store, locks, userId: p.userId, deviceId };
  return { client, imported, outcome, newSide, oldSide, provisioning: p };
}

/** Both sides of a link with no progress listeners, for tests that break it part-way. */
async function bareLink(w: World, existing: Client) {
  const nl = await NewDeviceLink.start({
    api: w.server.newDeviceLinkApi(),
    curves: w.curves,
    rng: cryptoRng,
    timings: fast,
  });
  const linker = new LinkingDeviceLink({
    api: w.server.linkingApi(existing.userId, existing.deviceId),
    engine: existing.engine,
    username: existing.userId,
    timings: fast,
  });
  return { nl, linker };
}

async function chat(w: World) {
  const alice = await newClient(w, 'alice');
  const bob = await newClient(w, 'bob');
  const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
  await alice.engine.connect();
  await bob.engine.connect();
  await until(async () => (await bob.engine.connectionStatus(conv)) === 'online', 'bob online');
  return { alice, bob, conv };
}

describe('linking a device (engine, fake server)', () => {
  it('the new device gets history, its own keys and session; contacts keep the safety number; sent shows as ours everywhere', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await chat(w);
    await alice.engine.sendText(conv, 'hi bob');
    await until(async () => (await texts(bob.engine, conv)).includes('hi bob'), 'bob gets it');
    await bob.engine.sendText(conv, 'hi alice');
    await until(async () => (await texts(alice.engine, conv)).includes('hi alice'), 'alice gets it');
    const numberBefore = (await bob.engine.safetyNumber('alice'))!.digits;
    const bobEvents: EngineEvent[] = [];
    bob.engine.on((e) => bobEvents.push(e));

    const {
      client: a2,
      imported,
      outcome,
      newSide,
      oldSide,
      provisioning,
    } = await link(w, alice, { deviceId: 'alice-2', name: 'Laptop' });
    expect(imported).toBe(2);
    expect(outcome.messages).toBe(2);
    expect(provisioning.username).toBe('alice');
    expect(newSide.map((p) => p.phase)).toEqual(
      expect.arrayContaining(['waiting', 'linking', 'linked', 'history', 'done']),
    );
    expect(oldSide.map((p) => p.phase)).toEqual(expect.arrayContaining(['linking', 'linked', 'history', 'done']));
    // History on the new device, with our own message shown as ours.
    const h = await a2.engine.messages(conv);
    expect(h.map((m) => [m.body, m.outgoing])).toEqual([
      ['hi bob', true],
      ['hi alice', false],
    ]);
    // Same user identity, a new device in a version + 1 list signed by it.
    const id1 = await alice.engine.identity();
    const id2 = await a2.engine.identity();
    expect(toB64u(id2!.userIdentityKey)).toBe(toB64u(id1!.userIdentityKey));
    expect(w.server.users.get('alice')!.list.devices.map((d) => d.deviceId)).toEqual(['alice-1', 'alice-2']);
    // The device name is ciphertext on the server; both of Alice's devices read it.
    const names = w.server.deviceNames('alice');
    const sealed = names.find((d) => d.deviceId === 'alice-2')!.name!;
    expect(new TextDecoder().decode(sealed).includes('Laptop')).toBe(false);
    expect((await alice.engine.deviceNames(names))['alice-2']).toBe('Laptop');
    expect((await a2.engine.deviceNames(names))['alice-2']).toBe('Laptop');

    // Bob's next message reaches both of Alice's devices; Bob's safety number for Alice is unchanged.
    await a2.engine.connect();
    await bob.engine.sendText(conv, 'to both');
    await until(async () => (await texts(alice.engine, conv)).includes('to both'), 'alice-1 gets it');
    await until(async () => (await texts(a2.engine, conv)).includes('to both'), 'alice-2 gets it');
    expect((await bob.engine.safetyNumber('alice'))!.digits).toBe(numberBefore);
    expect((await a2.engine.safetyNumber('bob'))!.digits).toBe(numberBefore);
    expect((await bob.engine.contact('alice')).blocked).toBe(false);
    expect(
      bobEvents.some((e) => e.type === 'devices_changed' && e.userId === 'alice' && e.added?.includes('alice-2')),
    ).toBe(true);
    // A quiet info line in Bob's conversation with Alice (no key change, nothing to accept), once.
    await until(
      async () => (await bob.engine.infoLines(conv)).some((l) => l.event.type === 'device_linked'),
      'info line',
    );
    const lines = (await bob.engine.infoLines(conv)).filter((l) => l.event.type === 'device_linked');
    expect(lines.map((l) => l.event)).toEqual([{ type: 'device_linked', userId: 'alice', deviceId: 'alice-2' }]);
    expect(bobEvents.some((e) => e.type === 'info_added' && e.line.id === 'device:alice:alice-2')).toBe(true);
    expect(bobEvents.some((e) => e.type === 'key_change')).toBe(false);

    // The new device's message shows on the first one as sent by us.
    await a2.engine.sendText(conv, 'from the laptop');
    await until(async () => (await texts(alice.engine, conv)).includes('from the laptop'), 'alice-1 sees it');
    const mine = (await alice.engine.messages(conv)).find((m) => m.body === 'from the laptop')!;
    expect([mine.outgoing, mine.from.userId, mine.from.deviceId]).toEqual([true, 'alice', 'alice-2']);
    await until(async () => (await texts(bob.engine, conv)).includes('from the laptop'), 'bob sees it');
    for (const c of [alice, bob, a2]) c.engine.close();
  });

  it('the contacts’ trust state carries over: verified marks, names, and a key change made meanwhile is not trusted on first use', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await chat(w);
    const carol = await newClient(w, 'carol');
    await alice.engine.createConversation({ kind: 'direct', members: ['carol'] });
    await alice.engine.refreshContact('bob');
    await alice.engine.refreshContact('carol');
    const bobKey = toB64u((await alice.engine.contact('bob')).identityKey);
    await alice.engine.setPref('verified', { bob: bobKey });
    await alice.engine.setPref('names', { bob: 'bob', carol: 'carol' });
    const { client: a2 } = await link(w, alice, { history: false });
    expect(await a2.engine.getPref('verified')).toEqual({ bob: bobKey });
    expect(await a2.engine.getPref('names')).toMatchObject({ bob: 'bob', carol: 'carol' });
    // Carol resets her identity after the linking device last saw her: the new device must not accept
    // the new key silently (it was pinned to the old one).
    const carolReset = await generateEd25519(w.curves, cryptoRng);
    const c2 = engineOn(w, 'carol', 'carol-9', memoryStore(), memoryLocks());
    const cid = await c2.bootstrap({
      userId: 'carol',
      deviceId: 'carol-9',
      userIdentitySecret: carolReset.secretKey,
      listVersion: w.server.users.get('carol')!.list.version + 1,
    });
    await w.server.resetIdentity(cid.deviceList);
    const view = await a2.engine.refreshContact('carol');
    expect(view.blocked).toBe(true);
    // Bob's key is unchanged: accepted through the pin, not blocked, same safety number.
    expect((await a2.engine.refreshContact('bob')).blocked).toBe(false);
    expect((await a2.engine.safetyNumber('bob'))!.digits).toBe((await alice.engine.safetyNumber('bob'))!.digits);
    for (const c of [alice, bob, carol, a2]) c.engine.close();
    c2.close();
    void conv;
  });

  it('read positions follow across own devices through the own sync conversation', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await chat(w);
    for (const t of ['one', 'two', 'three']) await bob.engine.sendText(conv, t);
    await until(async () => (await texts(alice.engine, conv)).length === 3, 'alice has three');
    const { client: a2 } = await link(w, alice);
    await a2.engine.connect();
    const seen: EngineEvent[] = [];
    a2.engine.on((e) => seen.push(e));
    const last = (await alice.engine.messages(conv)).at(-1)!.seq!;
    await alice.engine.markRead(conv, last);
    await until(async () => (await a2.engine.readPosition(conv)) === last, 'alice-2 follows the read position');
    expect(seen.some((e) => e.type === 'read_position' && e.conversationId === conv && e.seq === last)).toBe(true);
    // The sync conversation is never shown, and nobody but Alice is in it.
    expect((await a2.engine.conversations()).map((c) => c.id)).toEqual([conv]);
    const self = [...w.server.conversations.values()].find((c) => c.id.startsWith('self-'))!;
    expect([...self.members.keys()]).toEqual(['alice']);
    // Moving backwards never happens.
    await a2.engine.markRead(conv, 1);
    expect(await a2.engine.readPosition(conv)).toBe(last);
    for (const c of [alice, bob, a2]) c.engine.close();
  });

  it('in a group, members give the new device their sender keys when its list changes; nothing stays unreadable', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const g = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'team' });
    for (const c of [alice, bob, carol]) await c.engine.connect();
    await until(async () => (await bob.engine.connectionStatus(g)) === 'online', 'bob online');
    await bob.engine.sendText(g, 'before the link');
    await until(async () => (await texts(alice.engine, g)).includes('before the link'), 'alice has it');
    const { client: a2 } = await link(w, alice);
    await a2.engine.connect();
    await until(async () => (await a2.engine.connectionStatus(g)) === 'online', 'alice-2 online');
    await bob.engine.sendText(g, 'after the link');
    await carol.engine.sendText(g, 'carol too');
    await until(async () => (await texts(a2.engine, g)).includes('after the link'), 'alice-2 reads bob');
    await until(async () => (await texts(a2.engine, g)).includes('carol too'), 'alice-2 reads carol');
    expect(await texts(a2.engine, g)).toContain('before the link'); // from the history
    expect((await a2.engine.messages(g)).filter((m) => m.status === 'undecryptable')).toEqual([]);
    for (const c of [alice, bob, carol, a2]) c.engine.close();
  });

  it('a removed device confirms its removal only from a newer list signed by its own identity key', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await chat(w);
    const { client: a2 } = await link(w, alice);
    await a2.engine.connect();
    await alice.engine.adoptOwnDeviceList(w.server.users.get('alice')!.listBytes);
    const without = await alice.engine.removeDeviceFromList(a2.deviceId);
    // Before the server has it, a forged or stale list proves nothing.
    const mallory = await generateEd25519(w.curves, cryptoRng);
    const forged = encodeDeviceList(
      await signDeviceList(w.curves, mallory, {
        userId: 'alice',
        version: 9,
        devices: w.server.users.get('alice')!.list.list.devices.filter((d) => d.deviceId === 'alice-1'),
      }),
    );
    expect(await a2.engine.confirmRemoved(forged)).toBe(false);
    expect(await a2.engine.confirmRemoved(w.server.users.get('alice')!.listBytes)).toBe(false); // still in it
    await w.server.updateDeviceList(without);
    expect(await a2.engine.confirmRemoved(without)).toBe(true);
    await until(async () => (await a2.engine.connectionStatus(conv)) === 'forbidden', 'alice-2 cut off');
    // Bob's next message reaches only the remaining device.
    await bob.engine.refreshContact('alice');
    await bob.engine.sendText(conv, 'only alice-1');
    await until(async () => (await texts(alice.engine, conv)).includes('only alice-1'), 'alice-1 gets it');
    expect(w.server.pending(conv, 'alice', a2.deviceId)).toEqual([]);
    for (const c of [alice, bob, a2]) c.engine.close();
  });
});

describe('linking meets message requests and key transparency', () => {
  it('the linked device sees the same accepted and pending requests (sealed settings), and accepting on it reaches the first', async () => {
    const w = await makeWorld();
    // A request has no socket: its messages come from the mailbox poll (fast here).
    const req = { engine: { messageRequests: true, requestPollMs: 20 } };
    const alice = await newClient(w, 'alice', 'alice-1', req);
    const bob = await newClient(w, 'bob', 'bob-1', req);
    const carol = await newClient(w, 'carol', 'carol-1', req);
    const fromBob = await bob.engine.createConversation({ kind: 'direct', members: ['alice'] });
    const fromCarol = await carol.engine.createConversation({ kind: 'direct', members: ['alice'] });
    for (const c of [alice, bob, carol]) await c.engine.connect();
    await bob.engine.sendText(fromBob, 'hi alice');
    await carol.engine.sendText(fromCarol, 'buy now');
    await until(async () => (await texts(alice.engine, fromBob)).includes('hi alice'), 'bob’s request');
    await until(async () => (await texts(alice.engine, fromCarol)).includes('buy now'), 'carol’s request');
    await alice.engine.acceptRequest(fromBob);

    const { client: a2 } = await link(w, alice, { deviceId: 'alice-2', engine: req.engine });
    await a2.engine.syncPeople();
    expect((await a2.engine.conversation(fromBob)).requestState).toBe('accepted');
    expect((await a2.engine.conversation(fromCarol)).requestState).toBe('request');
    // Accepted on the new device: the first device follows from the same sealed settings.
    await a2.engine.acceptRequest(fromCarol);
    await alice.engine.syncPeople();
    expect((await alice.engine.conversation(fromCarol)).requestState).toBe('accepted');
    for (const c of [alice, a2, bob, carol]) c.engine.close();
  });

  it('the linked device monitors the log for its account like any signed-in device (a username pointed elsewhere is caught)', async () => {
    const w = await makeWorld();
    const { alice, bob } = await chat(w);
    const { client: a2 } = await link(w, alice, { deviceId: 'alice-2', username: 'alice' });
    expect(await a2.engine.ktCheck()).toEqual([]);
    // The server maps "alice" to Bob's account in the lookup that self-monitoring makes.
    w.server.ktTamper = {
      lookup: async (viewer, a) =>
        viewer === 'alice' ? { ...a, userId: 'bob', kt: await w.server.kt.prove('bob') } : a,
    };
    const raised = await a2.engine.ktCheck();
    expect(raised.map((x) => x.code)).toEqual(['own_key_replaced']);
    for (const c of [alice, a2, bob]) c.engine.close();
  });
});

describe('linking: bad input and attacks', () => {
  it('a code that is not a link code, or is for another server, is refused before anything is sent', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const linker = new LinkingDeviceLink({
      api: w.server.linkingApi('alice', 'alice-1'),
      engine: alice.engine,
      username: 'alice',
    });
    await expect(linker.link('hello', { deviceName: 'x', history: false })).rejects.toMatchObject({
      code: 'bad_link_code',
    });
    const other = encodeLinkCode({
      origin: 'https://evil.example',
      channelId: cryptoRng(16),
      ephemeralKey: (await generateX25519(w.curves, cryptoRng)).publicKey,
    });
    await expect(linker.link(other, { deviceName: 'x', history: false })).rejects.toMatchObject({
      code: 'wrong_server',
    });
    expect(w.server.channels.size).toBe(0);
    alice.engine.close();
  });

  it('a relay that tampers with the provisioning message: it fails to open and no device is added', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    w.server.tamperToNew = (data, seq) => {
      if (seq === 1) data[40] = data[40]! ^ 1;
      return data;
    };
    const { nl, linker } = await bareLink(w, alice);
    const linking = linker.link(nl.code, { deviceName: 'x', history: false });
    await expect(nl.waitForProvisioning()).rejects.toMatchObject({ code: 'provisioning_failed' });
    await nl.cancel();
    await expect(linking).rejects.toBeDefined();
    expect(w.server.users.get('alice')!.list.devices.length).toBe(1);
    alice.engine.close();
  });

  it('a dropped history chunk is reported as interrupted, nothing is imported, and a retry completes it', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await chat(w);
    // Enough history for several chunks.
    const long = 'x'.repeat(30_000);
    for (let i = 0; i < 16; i++) await bob.engine.sendText(conv, `${i}:${long}`);
    await until(async () => (await texts(alice.engine, conv)).length === 16, 'alice has the history');
    let dropped = false;
    w.server.tamperToNew = (data, seq) => {
      if (seq === 4 && !dropped) {
        dropped = true;
        return null; // the relay loses the third frame after the provisioning message
      }
      return data;
    };
    const newSide: LinkProgress[] = [];
    const nl = await NewDeviceLink.start({
      api: w.server.newDeviceLinkApi(),
      curves: w.curves,
      rng: cryptoRng,
      timings: fast,
      onProgress: (p) => newSide.push(p),
    });
    const linker = new LinkingDeviceLink({
      api: w.server.linkingApi('alice', 'alice-1'),
      engine: alice.engine,
      username: 'alice',
      timings: fast,
    });
    const linking = linker.link(nl.code, { deviceName: 'x', history: true });
    const p = await nl.waitForProvisioning();
    const a2 = engineOn(w, p.userId, 'alice-2', memoryStore(), memoryLocks());
    await nl.complete(a2, 'alice-2');
    const err = (await nl.receiveHistory(a2).catch((e) => e)) as LinkError;
    expect(err.code).toBe('history_incomplete');
    expect(newSide.some((x) => x.phase === 'interrupted')).toBe(true);
    expect(await texts(a2, conv)).toEqual([]); // never half-imported
    await nl.retryHistory();
    expect(await nl.receiveHistory(a2)).toBe(16);
    expect((await texts(a2, conv)).length).toBe(16);
    expect((await linking).messages).toBe(16);
    for (const c of [alice.engine, bob.engine, a2]) c.close();
  });

  it('a replayed linking token and a device over the limit are refused with stable codes', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const first = await link(w, alice, { history: false });
    // Replay: the token from the first provisioning message, redeemed again.
    await expect(
      w.server.newDeviceLinkApi().redeem({
        linkingToken: toB64u(first.provisioning.linkingToken),
        channelId: toB64u(cryptoRng(16)),
        channelSecret: 'x',
        deviceList: w.server.users.get('alice')!.listBytes,
        signature: new Uint8Array(64),
      }),
    ).rejects.toMatchObject({ code: 'linking_token_used' });
    // A limit of 3 (configurable like the Worker's DEVICE_LIMIT): the 4th device is refused.
    w.server.deviceLimit = 3;
    await link(w, alice, { history: false });
    const { nl: nl6, linker } = await bareLink(w, alice);
    await expect(linker.link(nl6.code, { deviceName: 'x', history: false })).rejects.toMatchObject({
      code: 'device_limit',
    });
    expect(w.server.users.get('alice')!.list.devices.length).toBe(3);
    alice.engine.close();
  });

  it('a device list not signed by the user identity key is refused by every client (the server cannot add a device)', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await chat(w);
    await bob.engine.refreshContact('alice');
    const mallory = await generateEd25519(w.curves, cryptoRng);
    const aliceList = w.server.users.get('alice')!.list;
    const forged = encodeDeviceList(
      await signDeviceList(w.curves, mallory, {
        userId: 'alice',
        version: aliceList.version + 1,
        devices: aliceList.list.devices,
      }),
    );
    // A server that serves it (it cannot sign with Alice's identity key, so it signs with its own).
    expect((await bob.engine.contact('alice')).blocked).toBe(false);
    const original = w.server.users.get('alice')!.listBytes;
    w.server.users.get('alice')!.listBytes = forged;
    // It is signed by a key the key-transparency log never recorded for Alice: refused before it is even
    // offered as a key change (kt_unproven), nothing changes.
    await expect(bob.engine.refreshContact('alice')).rejects.toMatchObject({ code: 'kt_unproven' });
    const still = await bob.engine.contact('alice');
    expect([still.blocked, still.deviceIds]).toEqual([false, ['alice-1']]);
    w.server.users.get('alice')!.listBytes = original;
    void conv;
    for (const c of [alice, bob]) c.engine.close();
  });
});
