/**
 * Key transparency in the engine (transparency.ts, directory.ts): every attack of issue 20 against a
 * malicious fake server — a forged inclusion proof, a tree head with a bad signature, a fork, a rollback, a
 * rewritten history, an entry for the right username with the wrong key, an identity reset that is not in
 * the log, a split view between two people — is detected, raised as an alert the app shows, and leads to
 * no session and no encryption to the unproven key. Also self-monitoring and the honest paths.
 */
import { describe, expect, it } from 'vitest';
import {
  decodeDeviceList,
  defaultCurves,
  encodeDeviceList,
  encodePrekeyUpload,
  generateEd25519,
  generateKemPrekey,
  generateOneTimePrekeys,
  generateSignedPrekey,
  issueDeviceCertificate,
  kemPrekeyPublic,
  MemoryTree,
  oneTimePrekeyPublic,
  signDeviceList,
  signedPrekeyPublic,
  x25519FromSecret,
} from './_protocol.js';
import type { EngineEvent } from './context.js';
import { createEngine } from './engine.js';
import { memoryLocks } from './locks.js';
import { memoryStore } from './storage.js';
import { FakeKtLog } from './testing/fake-kt.js';
import {
  type Client,
  cryptoRng,
  engineOn,
  ktOptions,
  makeWorld,
  newClient,
  ownIdentity,
  texts,
  until,
  type World,
} from './testing/harness.js';
import { type KtAlertCode, Transparency } from './transparency.js';
import type { KtProof, ServerApi } from './transport.js';

const code = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: { code?: string }) => e.code ?? String(e),
  );
const alertCodes = async (c: Client): Promise<KtAlertCode[]> => (await c.engine.ktAlerts()).map((a) => a.code);
const flip = (b: Uint8Array, at = b.length - 1) => {
  const c = b.slice();
  c[at]! ^= 1;
  return c;
};
/** A device-list tamper that only touches answers about `userId` (the viewer's own list stays honest). */
const aboutUser =
  (userId: string, list: Uint8Array) => (_viewer: string, a: { list: Uint8Array; kt: KtProof | null }) =>
    decodeDeviceList(a.list).userId === userId ? { ...a, list } : a;

/** No pairwise session with any of `userId`'s devices, and none of their prekeys claimed. */
async function noSession(w: World, c: Client, userId: string, deviceId = `${userId}-1`) {
  expect(await c.store.list(`sess/${userId}/`)).toEqual([]);
  expect((await w.server.api(userId, deviceId).prekeyCounts()).oneTime).toBe(4);
}

async function people(opts: { gossip?: boolean } = {}) {
  const w = await makeWorld();
  const alice = await newClient(w, 'alice', undefined, { username: 'alice', gossip: opts.gossip });
  const bob = await newClient(w, 'bob', undefined, { username: 'bob', gossip: opts.gossip });
  return { w, alice, bob };
}

/** A direct conversation from `from` to `to`, with one message sent; resolves when it is sent or failed. */
async function tryToWrite(from: Client, to: string, body = 'hi') {
  const conv = await from.engine.createConversation({ kind: 'direct', members: [to] });
  await from.engine.connect([conv]);
  const sent = await from.engine.sendText(conv, body).catch((e: { code?: string }) => e);
  await until(async () => {
    const [m] = (await from.engine.messages(conv)).filter((x) => x.body === body);
    return m !== undefined && m.status !== 'sending';
  }, 'the send to settle');
  const [m] = (await from.engine.messages(conv)).filter((x) => x.body === body);
  return { conv, sent, message: m! };
}

describe('PITFALLS 31: key transparency', () => {
  it('PITFALLS 31: a client never encrypts to an identity key it could not prove is in the log; a tree head with a bad signature, a rollback or a fork is detected and shown', async () => {
    // (1) A key the log does not prove: the server swaps Alice's key for one it made up.
    const { w, alice, bob } = await people();
    const forged = await forgedIdentity(w, 'alice');
    w.server.ktTamper = { deviceList: aboutUser('alice', forged.list) };
    const events: EngineEvent[] = [];
    bob.engine.on((e) => events.push(e));
    const r = await tryToWrite(bob, 'alice');
    expect(r.message.status).toBe('failed');
    expect(r.message.error).toBe('kt_unproven');
    await noSession(w, bob, 'alice');
    expect(w.server.pending(r.conv, 'alice', 'alice-1')).toEqual([]);
    expect(events.some((e) => e.type === 'kt_alert' && e.alert.code === 'unproven_key')).toBe(true);

    // (2) A tree head with a bad signature.
    w.server.ktTamper = { head: (_v, h) => flip(h) };
    expect(await code(bob.engine.ktCheck())).toBe('kt_log_invalid');
    // (3) A rollback to a smaller tree.
    const size = w.server.kt.tree.size;
    w.server.ktTamper = { head: () => w.server.kt.head({ size: size - 1, root: w.server.kt.tree.root(size - 1) }) };
    expect(await code(bob.engine.ktCheck())).toBe('kt_log_invalid');
    // (4) A fork: another tree of the size Bob holds.
    w.server.ktTamper = { head: () => w.server.kt.head({ size, root: new MemoryTree().root() }) };
    expect(await code(bob.engine.ktCheck())).toBe('kt_log_invalid');

    expect(await alertCodes(bob)).toEqual(
      expect.arrayContaining(['unproven_key', 'bad_signature', 'rollback', 'fork']),
    );
    // Still nothing for the forged key, and the honest log is accepted again afterwards.
    w.server.ktTamper = {};
    await noSession(w, bob, 'alice');
    expect(await bob.engine.ktCheck()).toEqual([]);
    alice.engine.close();
    bob.engine.close();
  });
});

describe('every attack of issue 20 is detected, shown, and nothing is encrypted to the unproven key', () => {
  it('a forged inclusion proof: the lookup is refused, no conversation gets a session', async () => {
    const { w, bob } = await people();
    const forge = (kt: KtProof | null) =>
      kt && { ...kt, proof: kt.proof.length ? [flip(kt.proof[0]!), ...kt.proof.slice(1)] : [new Uint8Array(32)] };
    w.server.ktTamper = {
      lookup: (_v, a) => ({ ...a, kt: forge(a.kt) }),
      deviceList: (_v, a) => ({ ...a, kt: forge(a.kt) }),
    };
    expect(await code(bob.engine.lookupUser('alice'))).toBe('kt_unproven');
    const r = await tryToWrite(bob, 'alice');
    expect(r.message).toMatchObject({ status: 'failed', error: 'kt_unproven' });
    await noSession(w, bob, 'alice');
    const [a] = await bob.engine.ktAlerts();
    expect(a).toMatchObject({ code: 'unproven_key', userId: 'alice' });
    expect(a!.message).toContain('inclusion proof does not verify');
  });

  it('a lookup without any proof is refused', async () => {
    const { w, bob } = await people();
    w.server.ktTamper = { lookup: (_v, a) => ({ ...a, kt: null }) };
    expect(await code(bob.engine.lookupUser('alice'))).toBe('kt_unproven');
    expect(await alertCodes(bob)).toEqual(['unproven_key']);
  });

  it('a tree head with a bad signature (or signed by another key) is refused before any proof is used', async () => {
    const { w, bob } = await people();
    const other = await FakeKtLog.create(w.curves, cryptoRng, Date.now);
    for (const bad of [(h: Uint8Array) => flip(h), async () => other.head()]) {
      w.server.ktTamper = {
        deviceList: async (_v, a) => ({ ...a, kt: a.kt && { ...a.kt, head: await bad(a.kt.head) } }),
      };
      const r = await tryToWrite(bob, 'alice');
      expect(r.message).toMatchObject({ status: 'failed', error: 'kt_log_invalid' });
    }
    await noSession(w, bob, 'alice');
    expect(await alertCodes(bob)).toEqual(['bad_signature']);
  });

  it('a log that forks (two heads of one size, different roots) is detected', async () => {
    const { w, bob } = await people();
    await bob.engine.lookupUser('alice'); // Bob now holds a head of the honest log
    const held = w.server.kt.tree.size;
    // A second tree of the size Bob holds — other entries — signed by the same log key.
    const other = new FakeKtLog(w.curves, w.server.kt.key, Date.now);
    for (let i = 0; i < held; i++) other.append({ kind: 'deleted', userId: `forked${i}`, version: 1 });
    w.server.ktTamper = { head: () => other.head() };
    expect(await code(bob.engine.ktCheck())).toBe('kt_log_invalid');
    const [a] = await bob.engine.ktAlerts();
    expect(a).toMatchObject({ code: 'fork' });
    expect(a!.message).toContain(`two different trees of ${held} entries`);
  });

  it('a rolled-back tree head is detected — also after a restart (the newest head is kept in the store)', async () => {
    const { w, bob } = await people();
    await bob.engine.lookupUser('alice');
    const held = w.server.kt.tree.size;
    const old = await w.server.kt.head({ size: held - 1, root: w.server.kt.tree.root(held - 1) });
    bob.engine.close();
    const again = engineOn(w, 'bob', 'bob-1', bob.store, bob.locks);
    w.server.ktTamper = { lookup: (_v, a) => ({ ...a, kt: a.kt && { ...a.kt, head: old } }) };
    expect(await code(again.lookupUser('alice'))).toBe('kt_log_invalid');
    expect((await again.ktAlerts()).map((a) => a.code)).toEqual(['rollback']);
  });

  it('a log that rewrote its history cannot prove consistency with the head we hold', async () => {
    const { w, alice, bob } = await people();
    await bob.engine.lookupUser('alice');
    // Bob is shown a log whose first entries differ (same key, more entries): no consistency proof exists.
    const rewritten = new FakeKtLog(w.curves, w.server.kt.key, Date.now);
    const aliceKey = (await ownIdentity(alice.store)).userIdentity.publicKey;
    for (let i = 0; i < 4; i++)
      rewritten.append({ kind: 'key', userId: `u${i}`, version: 1, username: `user${i}`, identityKey: aliceKey });
    rewritten.append({ kind: 'key', userId: 'alice', version: 1, username: 'alice', identityKey: aliceKey });
    w.server.forkKtView('bob', rewritten);
    expect(await code(bob.engine.lookupUser('alice'))).toBe('kt_log_invalid');
    expect(await alertCodes(bob)).toEqual(['inconsistent']);
  });

  it('an entry for the right username with the wrong key: the proven entry names another key, nothing is encrypted', async () => {
    const { w, bob } = await people();
    const forged = await forgedIdentity(w, 'alice');
    w.server.ktTamper = {
      lookup: (_v, a) => ({ ...a, identityKey: forged.identity.publicKey }),
      deviceList: aboutUser('alice', forged.list),
    };
    expect(await code(bob.engine.lookupUser('alice'))).toBe('kt_unproven');
    const r = await tryToWrite(bob, 'alice');
    expect(r.message).toMatchObject({ status: 'failed', error: 'kt_unproven' });
    await noSession(w, bob, 'alice');
    const alerts = await bob.engine.ktAlerts();
    expect(alerts.map((a) => [a.code, a.userId])).toEqual([
      ['unproven_key', 'alice'], // the device-list fetch (the same problem again would be the same alert)
      ['unproven_key', 'alice'], // the username lookup
    ]);
    for (const a of alerts) expect(a.message).toContain('the log has a different key');
  });

  it('an identity reset that is not in the log: the new key is refused (no key-change prompt), the old one stays trusted', async () => {
    const { w, alice, bob } = await people();
    const conv = await bob.engine.createConversation({ kind: 'direct', members: ['alice'] });
    await bob.engine.connect([conv]);
    await bob.engine.sendText(conv, 'before');
    await until(() => w.server.pending(conv, 'alice', 'alice-1').length === 1, 'first message');
    const trusted = (await bob.engine.contact('alice')).identityKey;
    // The server "resets" Alice's identity to a key it holds, without logging it.
    const forged = await forgedIdentity(w, 'alice', 2);
    await w.server.resetIdentity(forged.list, { log: false });
    await w.server.api('alice', 'forged-device').uploadPrekeys(forged.upload);
    const events: EngineEvent[] = [];
    bob.engine.on((e) => events.push(e));
    expect(await code(bob.engine.refreshContact('alice'))).toBe('kt_unproven');
    const view = await bob.engine.contact('alice');
    expect(view.identityKey).toEqual(trusted);
    expect(view.blocked).toBe(false);
    expect(events.filter((e) => e.type === 'key_change')).toEqual([]);
    expect(await alertCodes(bob)).toEqual(['unproven_key']);
    expect(await bob.store.list('sess/alice/')).toHaveLength(1); // only the session with the genuine device
    expect(await bob.store.get('sess/alice/forged-device')).toBeUndefined();
    alice.engine.close();
    bob.engine.close();
  });

  it('a split view: the server shows Bob a log Alice never sees; their heads, exchanged in the conversation, expose it', async () => {
    const { w, alice, bob } = await people({ gossip: true });
    const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
    await alice.engine.connect([conv]);
    await bob.engine.connect([conv]);
    await until(async () => (await bob.engine.connectionStatus(conv)) === 'online', 'bob online');
    await alice.engine.sendText(conv, 'hello');
    await until(async () => (await texts(bob.engine, conv)).includes('hello'), 'hello');
    await bob.engine.idle();
    expect(await alertCodes(bob)).toEqual([]); // one honest log: nothing to report

    // Bob's view of the log gains an entry nobody else sees (e.g. a key for Alice the server wants Bob to use).
    const bobView = w.server.forkKtView('bob');
    bobView.append({
      kind: 'key',
      userId: 'mallory',
      version: 1,
      username: 'mallory',
      identityKey: (await forgedIdentity(w, 'x')).identity.publicKey,
    });
    await bob.engine.ktCheck(); // Bob's head moves to his view's tree (consistent for him)
    await bob.engine.sendText(conv, 'hi alice');
    await until(async () => (await texts(alice.engine, conv)).includes('hi alice'), 'hi alice');
    await until(async () => (await alertCodes(alice)).includes('split_view'), 'alice sees the split view');
    const [a] = await alice.engine.ktAlerts();
    expect(a).toMatchObject({ code: 'split_view', userId: 'bob' });

    // And the other way round: Alice's head reaches Bob, whose view cannot reconcile it either.
    w.server.kt.append({
      kind: 'key',
      userId: 'zoe',
      version: 1,
      username: 'zoe',
      identityKey: (await forgedIdentity(w, 'z')).identity.publicKey,
    });
    w.server.kt.append({
      kind: 'key',
      userId: 'yan',
      version: 1,
      username: 'yan',
      identityKey: (await forgedIdentity(w, 'y')).identity.publicKey,
    });
    await alice.engine.ktCheck().catch(() => undefined);
    await alice.engine.sendText(conv, 'still there?');
    await until(async () => (await texts(bob.engine, conv)).includes('still there?'), 'still there');
    await until(async () => (await alertCodes(bob)).includes('split_view'), 'bob sees the split view');
    alice.engine.close();
    bob.engine.close();
  });
});

describe('self-monitoring', () => {
  it('someone registers a new key for our username: the next check (on connect) warns with the time and what to do', async () => {
    const { w, alice } = await people();
    expect(await alice.engine.ktCheck()).toEqual([]);
    const events: EngineEvent[] = [];
    alice.engine.on((e) => events.push(e));
    // The server logs a new key for "alice" (e.g. to show Bob) — the log must carry it, so Alice sees it.
    const forged = await forgedIdentity(w, 'alice', 2);
    w.server.kt.append({
      kind: 'key',
      userId: 'alice',
      version: 2,
      username: 'alice',
      identityKey: forged.identity.publicKey,
    });
    await alice.engine.connect([]);
    await until(() => events.some((e) => e.type === 'kt_alert'), 'the start-up check');
    const [a] = await alice.engine.ktAlerts();
    expect(a!.code).toBe('own_key_replaced');
    expect(a!.message).toMatch(/^Someone registered a new key for your account on \d{4}-\d\d-\d\dT/);
    expect(a!.message).toContain('reset your identity');
    expect(a!.entryTime).toBeGreaterThan(0);
    alice.engine.close();
  });

  it('the username is made to point at another account: the check names it', async () => {
    const { w, alice } = await people();
    w.server.ktTamper = {
      lookup: async (viewer, a) =>
        viewer === 'alice' ? { ...a, userId: 'bob', kt: await w.server.kt.prove('bob') } : a,
    };
    const raised = await alice.engine.ktCheck();
    expect(raised.map((x) => x.code)).toEqual(['own_key_replaced']);
    expect(raised[0]!.message).toContain('the username alice: the log maps it to another account');
  });

  it('an honest log raises nothing, and alerts can be dismissed', async () => {
    const { w, alice, bob } = await people({ gossip: true });
    expect(await alice.engine.ktCheck()).toEqual([]);
    expect((await bob.engine.lookupUser('alice'))?.userId).toBe('alice');
    w.server.ktTamper = { lookup: (_v, a) => ({ ...a, kt: null }) };
    await bob.engine.lookupUser('alice').catch(() => undefined);
    const [a] = await bob.engine.ktAlerts();
    await bob.engine.dismissKtAlert(a!.id);
    expect(await bob.engine.ktAlerts()).toEqual([]);
  });
});

describe('honest paths', () => {
  it('lookups verify, heads advance with consistency proofs, and a logged identity reset is offered as a key change', async () => {
    const { w, alice, bob } = await people();
    expect(await bob.engine.lookupUser('alice')).toMatchObject({ userId: 'alice', username: 'alice' });
    expect(await bob.engine.lookupUser('nobody')).toBeNull();
    // More registrations: Bob's next lookup moves to a bigger head through a consistency proof.
    for (const n of ['carol', 'dave', 'erin']) await newClient(w, n, undefined, { username: n });
    const asked: [number, number][] = [];
    w.server.ktTamper = {
      consistency: (_v, from, to, p) => {
        asked.push([from, to]);
        return p;
      },
    };
    expect((await bob.engine.lookupUser('erin'))?.userId).toBe('erin');
    expect(asked).toEqual([[2, 5]]);
    // Alice resets her identity (logged): Bob, who trusted her old key, is offered the change as before.
    expect((await bob.engine.refreshContact('alice')).blocked).toBe(false);
    const store = memoryStore();
    const newAlice = engineOn(w, 'alice', 'alice-2', store, memoryLocks());
    await newAlice.bootstrap({ userId: 'alice', deviceId: 'alice-2', listVersion: 2 });
    const id = await ownIdentity(store);
    const list = await signDeviceList(w.curves, id.userIdentity, {
      userId: 'alice',
      version: 2,
      devices: [id.certificate],
    });
    await w.server.resetIdentity(encodeDeviceList(list));
    expect((await bob.engine.refreshContact('alice')).blocked).toBe(true);
    expect(await alertCodes(bob)).toEqual([]);
    alice.engine.close();
  });

  it("a contact head newer than ours while the log's proof cannot be fetched raises no split view (nothing was learned)", async () => {
    const curves = await defaultCurves();
    const log = await FakeKtLog.create(curves, cryptoRng, Date.now);
    const entry = async (i: number) => ({
      kind: 'key' as const,
      userId: `user${i}`,
      version: 1,
      username: `user${i}`,
      identityKey: (await generateEd25519(curves, cryptoRng)).publicKey,
    });
    for (let i = 0; i < 3; i++) log.append(await entry(i));
    let online = true;
    // The log's head comes back, but its consistency proof is lost on the way (offline, 429, 5xx).
    const api = {
      ktHead: async () => log.head(),
      ktConsistency: async (from: number, to: number) => {
        if (!online) throw Object.assign(new TypeError('Failed to fetch'), { name: 'TypeError' });
        return log.consistency(from, to) ?? [];
      },
    } as unknown as ServerApi;
    const events: EngineEvent[] = [];
    const kt = new Transparency(
      {
        store: memoryStore(),
        api,
        curves,
        rng: cryptoRng,
        now: Date.now,
        locks: memoryLocks(),
        emit: (e) => events.push(e),
      },
      { logKey: log.publicKey },
    );
    await kt.refreshHead(); // ours: 3 entries
    log.append(await entry(3));
    const theirs = await log.head(); // the contact's: 4 entries
    online = false;
    await kt.onPeerHead('bob', theirs).catch(() => undefined);
    expect((await kt.alerts()).map((a) => a.code)).toEqual([]);
    expect(events).toEqual([]);
    // Control: reachable again, the same head checks out; a log that really hides the newer tree is a split view.
    online = true;
    await kt.onPeerHead('bob', theirs);
    expect(await kt.alerts()).toEqual([]);
    const hidden = await log.head({ size: 5, root: cryptoRng(32) });
    await kt.onPeerHead('bob', hidden);
    expect((await kt.alerts()).map((a) => a.code)).toEqual(['split_view']);
  });

  it('an app built without a log key refuses every key', async () => {
    const w = await makeWorld();
    await newClient(w, 'alice', undefined, { username: 'alice' });
    const bob = createEngine({
      store: memoryStore(),
      api: w.server.api('bob', 'bob-1'),
      realtime: w.server.sockets('bob', 'bob-1'),
      curves: w.curves,
      rng: cryptoRng,
      locks: memoryLocks(),
      kt: { ...ktOptions(w), logKey: new Uint8Array(0) },
    });
    const id = await bob.bootstrap({ userId: 'bob', deviceId: 'bob-1' });
    await w.server.register(id.deviceList);
    expect(await code(bob.lookupUser('alice'))).toBe('kt_log_invalid');
  });
});

/** An identity for `userId` the SERVER made up (it holds the keys): a device list and prekeys to serve. */
async function forgedIdentity(w: World, userId: string, version = 1) {
  const identity = await generateEd25519(w.curves, cryptoRng);
  const signing = await generateEd25519(w.curves, cryptoRng);
  const dh = await x25519FromSecret(w.curves, cryptoRng(32));
  const cert = await issueDeviceCertificate(w.curves, identity, {
    userId,
    deviceId: 'forged-device',
    signingKey: signing.publicKey,
    identityKey: dh.publicKey,
    createdAt: Date.now(),
  });
  const list = encodeDeviceList(await signDeviceList(w.curves, identity, { userId, version, devices: [cert] }));
  const spk = await generateSignedPrekey(w.curves, cryptoRng, signing, 1);
  const otps = await generateOneTimePrekeys(w.curves, cryptoRng, 1, 2);
  const kem = await generateKemPrekey(w.curves, cryptoRng, signing, 2, true);
  const upload = encodePrekeyUpload({
    signedPrekey: signedPrekeyPublic(spk),
    oneTimePrekeys: otps.map(oneTimePrekeyPublic),
    kemPrekeys: [kemPrekeyPublic(kem)],
  });
  return { identity, list, upload };
}
