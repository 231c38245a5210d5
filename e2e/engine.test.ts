/**
 * The real client engine in Node against the real `npm run dev` (workerd, D1, the ConversationDO): account
 * flows over HTTP (http-transport.ts + account.ts), conversations over ticketed WebSockets (the `ws`
 * package on Node 20), offline catch-up through the mailbox and resume, groups with sender keys and a
 * removal, device_mismatch after a second device is registered through the devices API, and linking a
 * device over the provisioning channel (issue 14).
 */
import * as OTPAuth from 'otpauth';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ktLogKeyOf } from '../reliability/lib/people.js';
import { type Curve25519, defaultCurves, fromB64u, toB64u } from '../web/src/engine/_protocol.js';
import { Account } from '../web/src/engine/account.js';
import type { MessageView } from '../web/src/engine/context.js';
import { createEngine, type Engine } from '../web/src/engine/engine.js';
import {
  createHttpApi,
  createSocketFactory,
  HttpApiError,
  HttpClient,
  isApiError,
} from '../web/src/engine/http-transport.js';
import { createNewDeviceLinkApi } from '../web/src/engine/link-transport.js';
import { NewDeviceLink } from '../web/src/engine/linking.js';
import { memoryLocks } from '../web/src/engine/locks.js';
import { memoryStore, type Store } from '../web/src/engine/storage.js';
import { cryptoRng, ownIdentity, texts } from '../web/src/engine/testing/harness.js';

const PASSWORD = 'correct horse battery staple';
const run = toB64u(cryptoRng(4))
  .toLowerCase()
  .replace(/[^a-z0-9]/g, 'x');
let curves: Curve25519;

interface Person {
  readonly name: string;
  readonly http: HttpClient;
  readonly engine: Engine;
  readonly account: Account;
  readonly store: Store;
  /** Why the server ended this device's session (onSignedOut), in the order it said so. */
  readonly signedOut: unknown[];
  userId: string;
  deviceId: string;
}

const everyone: Person[] = [];

/**
 * Every person gets its own client address (local workerd keeps a CF-Connecting-IP the client sends; the
 * Cloudflare edge overwrites it), so the per-client auth limits apply per person as they would in real
 * use, without raising them for the shared dev server.
 */
let addresses = 0;
function fetchFrom(ip: string): typeof fetch {
  return (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set('cf-connecting-ip', ip);
    return fetch(input, { ...init, headers });
  };
}

async function device(name: string, store: Store = memoryStore()): Promise<Person> {
  curves ??= await defaultCurves();
  const signedOut: unknown[] = [];
  const http = new HttpClient({
    baseUrl: inject('baseUrl'),
    fetch: fetchFrom(`198.51.100.${++addresses}`),
    onSignedOut: (e) => void signedOut.push(e),
  });
  const engine = createEngine({
    store,
    api: createHttpApi(http),
    realtime: createSocketFactory(http),
    curves,
    rng: cryptoRng,
    locks: memoryLocks(),
    keystore: { batch: 8, watermark: 3 },
    backoff: { baseMs: 50, maxMs: 400 },
    kt: { logKey: await ktLogKeyOf(inject('baseUrl')) },
  });
  const p: Person = {
    name,
    http,
    engine,
    account: new Account({ http, engine }),
    store,
    signedOut,
    userId: '',
    deviceId: '',
  };
  everyone.push(p);
  return p;
}

async function registered(label: string): Promise<Person> {
  const p = await device(`${label}-${run}`);
  const r = await p.account.register(p.name, PASSWORD);
  if (r.status !== 'signed_in') throw new Error(`register ${label}: ${r.status}`);
  p.userId = r.userId;
  p.deviceId = r.deviceId;
  return p;
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const online = (p: Person, conv: string) =>
  until(async () => (await p.engine.connectionStatus(conv)) === 'online', `${p.name} online in ${conv}`);
const receives = (p: Person, conv: string, body: string) =>
  until(async () => (await texts(p.engine, conv)).includes(body), `${p.name} receives "${body}"`);
const status = async (p: Person, conv: string, clientId: string) =>
  (await p.engine.messages(conv, { limit: 1000 })).find((m) => m.clientId === clientId)?.status;

afterAll(async () => {
  for (const p of everyone) p.engine.close();
});

describe('client engine against the real server (Node)', () => {
  let alice: Person;
  let bob: Person;
  let direct: string;

  it('register, sign out, sign in again (refresh cookie jar, access-token refresh), username lookup', async () => {
    const t0 = performance.now();
    alice = await registered('alice');
    bob = await registered('bob');
    expect((await alice.account.sessionInfo()).username).toBe(alice.name);
    const found = await alice.account.lookup(bob.name.toUpperCase());
    expect(found?.userId).toBe(bob.userId);
    expect(await alice.account.lookup(`nobody-${run}`)).toBeNull();
    // The device list route serves Bob's signed list (no prekey consumed) and the engine verifies it.
    expect((await alice.engine.refreshContact(bob.userId)).deviceIds).toEqual([bob.deviceId]);

    // Refresh with the cookie: a forced refresh gives a new access token for the same device.
    const before = alice.http.session;
    await alice.http.refresh();
    expect(alice.http.session).toEqual(before);
    // Sign out, then in again with the keys this Store holds.
    await alice.account.logout();
    await expect(alice.http.refresh()).rejects.toMatchObject({ code: 'invalid_refresh' });
    const again = await alice.account.login(alice.name, PASSWORD);
    expect(again).toMatchObject({ status: 'signed_in', userId: alice.userId, deviceId: alice.deviceId });
    // Wrong password: the server's code, typed.
    const other = await device(`stranger-${run}`);
    const wrong = await other.account.login(alice.name, 'not the password').catch((e) => e);
    expect(wrong).toBeInstanceOf(HttpApiError);
    expect(wrong.code).toBe('invalid_credentials');
    // Right password from a browser without keys: device_not_linked, and no identity was created.
    const empty = await other.account.login(alice.name, PASSWORD);
    expect(empty).toMatchObject({ status: 'device_not_linked', userId: alice.userId, hasLocalKeys: false });
    expect(await other.engine.identity()).toBeNull();
    console.log(`accounts: ${(performance.now() - t0).toFixed(0)} ms`);
  });

  it('an access token the server refuses (401 invalid_token) is refreshed once and the call retried', async () => {
    const s = alice.http.session!;
    alice.http.setTokens({ accessToken: 'bogus.access.token', expiresIn: 600, ...s });
    expect((await alice.account.sessionInfo()).userId).toBe(alice.userId);
    expect(alice.http.session).toEqual(s);
  });

  it('TOTP: enrol and confirm, sign in with the continuation; identity reset from an empty store', async () => {
    const t0 = performance.now();
    const dave = await registered('dave');
    const enrol = await dave.account.totpEnroll(PASSWORD);
    const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(enrol.secret), digits: 6, period: 30 });
    const recovery = await dave.account.totpConfirm(totp.generate());
    expect(recovery).toHaveLength(10);
    await dave.account.logout();
    const first = await dave.account.login(dave.name, PASSWORD);
    if (first.status !== 'mfa_required') throw new Error(`expected mfa_required, got ${first.status}`);
    // The confirm used this time step; the next step's code is inside the accepted window.
    const done = await first.totp({ code: totp.generate({ timestamp: Date.now() + 30_000 }) });
    expect(done).toMatchObject({ status: 'signed_in', userId: dave.userId, deviceId: dave.deviceId });
    expect((await dave.account.sessionInfo()).totpEnabled).toBe(true);

    // Alice knows Dave's key; Dave loses every device and resets from a browser that holds nothing.
    const before = await alice.engine.refreshContact(dave.userId);
    const fresh = await device(dave.name);
    await expect(dave.account.resetIdentity(dave.name, PASSWORD)).rejects.toMatchObject({ code: 'store_not_empty' });
    const reset = await fresh.account.resetIdentity(dave.name, PASSWORD);
    if (reset.status !== 'mfa_required') throw new Error(`expected mfa_required, got ${reset.status}`);
    const afterReset = await reset.totp({ recoveryCode: recovery[0]! });
    expect(afterReset).toMatchObject({ status: 'signed_in', userId: dave.userId });
    const own = (await fresh.engine.identity())!;
    expect(own.deviceId).not.toBe(dave.deviceId);
    // The old device is signed out; Alice sees a key change and sending to Dave is blocked until accepted.
    await expect(dave.account.sessionInfo()).rejects.toMatchObject({ code: 'session_revoked' });
    const after = await alice.engine.refreshContact(dave.userId);
    expect(after.blocked).toBe(true);
    expect(toB64u(after.identityKey)).toBe(toB64u(before.identityKey));
    const accepted = await alice.engine.acceptIdentityChange(dave.userId);
    expect(toB64u(accepted.identityKey)).toBe(toB64u(own.userIdentityKey));
    expect(accepted.deviceIds).toEqual([own.deviceId]);
    console.log(`TOTP + identity reset: ${(performance.now() - t0).toFixed(0)} ms`);
  });

  it('1:1 over real WebSockets: both directions, delivery receipts', async () => {
    const t0 = performance.now();
    direct = await alice.engine.createConversation({ kind: 'direct', members: [bob.userId] });
    await alice.engine.connect([direct]);
    await bob.engine.connect();
    await online(alice, direct);
    await online(bob, direct);
    const hello = await alice.engine.sendText(direct, 'hello bob');
    await receives(bob, direct, 'hello bob');
    const reply = await bob.engine.sendText(direct, 'hi alice');
    await receives(alice, direct, 'hi alice');
    await until(async () => (await status(alice, direct, hello.clientId)) === 'delivered', 'receipt for hello');
    await until(async () => (await status(bob, direct, reply.clientId)) === 'delivered', 'receipt for reply');
    expect(await texts(alice.engine, direct)).toEqual(['hello bob', 'hi alice']);
    expect(await texts(bob.engine, direct)).toEqual(['hello bob', 'hi alice']);
    console.log(`1:1 round trip with receipts: ${(performance.now() - t0).toFixed(0)} ms`);
  });

  it('offline: the mailbox catches up in order, then a reconnect resumes from the last seq', async () => {
    const t0 = performance.now();
    await bob.engine.disconnect();
    const sent: MessageView[] = [];
    for (const t of ['one', 'two', 'three']) sent.push(await alice.engine.sendText(direct, t));
    await until(
      async () => (await Promise.all(sent.map((m) => status(alice, direct, m.clientId)))).every((s) => s === 'sent'),
      'accepted while bob is offline',
    );
    // The DO flushes to the D1 mailbox shortly after; poll the HTTP mailbox like a waking client.
    await until(async () => {
      await bob.engine.syncMailbox();
      return (await texts(bob.engine, direct)).includes('three');
    }, 'mailbox catch-up');
    expect(await texts(bob.engine, direct)).toEqual(['hello bob', 'hi alice', 'one', 'two', 'three']);
    // Still offline: one more, then the socket's resume replays it (nothing twice, nothing lost).
    await alice.engine.sendText(direct, 'four');
    await bob.engine.connect([direct]);
    await receives(bob, direct, 'four');
    expect(await texts(bob.engine, direct)).toEqual(['hello bob', 'hi alice', 'one', 'two', 'three', 'four']);
    expect(await bob.engine.syncMailbox()).toBe(0);
    console.log(`offline catch-up: ${(performance.now() - t0).toFixed(0)} ms`);
  });

  it('group with sender keys: a removed member stops receiving, the others go on', async () => {
    const t0 = performance.now();
    const carol = await registered('carol');
    const group = await alice.engine.createConversation({
      kind: 'group',
      members: [bob.userId, carol.userId],
      title: 'e2e',
    });
    for (const p of [alice, bob, carol]) await p.engine.connect([group]);
    for (const p of [alice, bob, carol]) await online(p, group);
    await alice.engine.sendText(group, 'hello group');
    await receives(bob, group, 'hello group');
    await receives(carol, group, 'hello group');
    await carol.engine.sendText(group, 'carol here');
    await receives(alice, group, 'carol here');
    await receives(bob, group, 'carol here');

    await alice.engine.removeMember(group, carol.userId);
    await until(async () => (await carol.engine.connectionStatus(group)) === 'forbidden', 'carol forbidden (4403)');
    await until(async () => !(await bob.engine.members(group)).includes(carol.userId), 'bob sees the removal');
    await alice.engine.sendText(group, 'after carol left');
    await receives(bob, group, 'after carol left');
    await bob.engine.sendText(group, 'bob after');
    await receives(alice, group, 'bob after');
    // Carol gets nothing more: not live, not from the mailbox, and her ticket is refused.
    await new Promise((r) => setTimeout(r, 500));
    await carol.engine.syncMailbox().catch(() => 0);
    expect(await texts(carol.engine, group)).toEqual(['hello group', 'carol here']);
    const ticket = await carol.http.request('POST', `/api/conversations/${group}/ticket`).catch((e: unknown) => e);
    expect(isApiError(ticket, 'not_member')).toBe(true);
    expect(await texts(bob.engine, group)).toEqual(['hello group', 'carol here', 'after carol left', 'bob after']);
    console.log(`group + removal: ${(performance.now() - t0).toFixed(0)} ms`);
  });

  it('device_mismatch: Bob registers a second device; Alice’s next send is re-addressed to both', async () => {
    const t0 = performance.now();
    await alice.engine.refreshContact(bob.userId); // Alice's view: Bob has one device
    const secret = (await ownIdentity(bob.store)).userIdentity.secretKey;
    const bob2 = await device(bob.name);
    const id2 = await bob2.engine.bootstrap({
      userId: bob.userId,
      deviceId: toB64u(cryptoRng(16)),
      userIdentitySecret: secret,
    });
    await bob.account.linkDevice({
      certificate: id2.deviceCertificate,
      sign: (c) => bob2.engine.signLoginChallenge(c),
    });
    const login = await bob2.account.login(bob.name, PASSWORD);
    expect(login).toMatchObject({ status: 'signed_in', userId: bob.userId, deviceId: id2.deviceId });
    expect((await bob.account.devices()).filter((d) => !d.revoked).length).toBe(2);

    // Alice sends while the new device has never connected. Registration told the ConversationDO, which
    // sends Alice's socket a devices hint (she may already have refreshed Bob's list from it); if her send
    // goes out first it is refused with device_mismatch and re-addressed. Either way the new device gets it
    // when it connects.
    const m = await alice.engine.sendText(direct, 'to both devices');
    await until(async () => (await status(alice, direct, m.clientId)) !== 'sending', 'accepted after mismatch', 30_000);
    expect([...(await alice.engine.contact(bob.userId)).deviceIds].sort()).toEqual([bob.deviceId, id2.deviceId].sort());
    await bob2.engine.connect([direct]);
    await online(bob2, direct);
    await receives(bob, direct, 'to both devices');
    await receives(bob2, direct, 'to both devices');
    // Adding a device under the same identity key is not a key change.
    expect((await alice.engine.contact(bob.userId)).blocked).toBe(false);

    // Revoking the second device: its session ends and the engine's socket is refused.
    await bob.account.revokeDevice(id2.deviceId);
    // Refused either way: the access token as revoked, or — when the engine refreshed first (its token was
    // refused while the revocation landed) — the refresh token as no longer valid (seen in CI under load).
    const refused = await bob2.account.sessionInfo().then(
      () => null,
      (e: unknown) => (e as { code?: string }).code,
    );
    expect(['session_revoked', 'invalid_refresh']).toContain(refused);
    console.log(`device_mismatch + link/revoke: ${(performance.now() - t0).toFixed(0)} ms`);
  });

  it('links a second device over the provisioning channel: history, its own session, both devices receive, removal confirmed', async () => {
    const a = await registered('linka');
    const b = await registered('linkb');
    const conv = await a.engine.createConversation({ kind: 'direct', members: [b.userId] });
    await a.engine.connect();
    await b.engine.connect();
    await online(b, conv);
    await a.engine.sendText(conv, 'before the link');
    await receives(b, conv, 'before the link');
    const number = (await b.engine.safetyNumber(a.userId))!.digits;

    const a2 = await device(`linka2-${run}`);
    const timings = { pollWaitMs: 3000, stallMs: 20_000 };
    const nl = await NewDeviceLink.start({ api: createNewDeviceLinkApi(a2.http), curves, rng: cryptoRng, timings });
    const linking = a.account.linkNewDevice(nl.code, { deviceName: 'Laptop', history: true }, { timings });
    const p = await nl.waitForProvisioning();
    expect(p.username).toBe(a.name);
    const linked = await nl.complete(a2.engine, `d2-${run}`, createNewDeviceLinkApi(a2.http));
    a2.userId = linked.userId;
    a2.deviceId = linked.deviceId;
    expect(await nl.receiveHistory(a2.engine)).toBe(1);
    expect((await linking).messages).toBe(1);
    expect(await texts(a2.engine, conv)).toEqual(['before the link']);
    expect((await a2.account.sessionInfo()).deviceId).toBe(a2.deviceId);
    const names = await a.account.devicesWithNames();
    expect(names.find((d) => d.deviceId === a2.deviceId)?.displayName).toBe('Laptop');

    await a2.engine.connect();
    await online(a2, conv);
    await b.engine.sendText(conv, 'to both');
    await receives(a, conv, 'to both');
    await receives(a2, conv, 'to both');
    expect((await b.engine.safetyNumber(a.userId))!.digits).toBe(number);

    // Removed from the first device: the second learns it from the signed list the server hands it — on
    // its refresh, or on whichever of its requests reached the server first (its connected engine may get
    // there before the refresh: the session is then already over and the refresh finds no cookie).
    await a.account.revokeDevice(a2.deviceId);
    await a2.http.refresh().catch(() => undefined);
    expect(a2.signedOut.length).toBeGreaterThan(0);
    const err = a2.signedOut[0];
    expect(err).toMatchObject({ code: 'session_revoked', details: { reason: 'device_revoked' } });
    const list = (err as { details: { deviceList: string } }).details.deviceList;
    expect(await a2.engine.confirmRemoved(fromB64u(list))).toBe(true);
  }, 120_000);
});
