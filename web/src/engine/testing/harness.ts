/**
 * Test wiring: a fake server and engines ("clients") on it, with small prekey batches and fast reconnects.
 *
 * Does NOT: belong in production code paths (tests and the reliability suites only).
 * @module
 */
import {
  type Curve25519,
  defaultCurves,
  deserializeOwnSenderKey,
  type Rng,
  senderEncrypt,
  serializeOwnSenderKey,
  toB64u,
} from '../_protocol.js';
import { decodeRecord, encodeRecord } from '../codec.js';
import type { EngineContext } from '../context.js';
import { Directory } from '../directory.js';
import { createEngine, type Engine, type EngineOptions } from '../engine.js';
import { Keystore, type OwnIdentity } from '../keystore.js';
import { type EngineLocks, memoryLocks } from '../locks.js';
import { Sessions } from '../sessions.js';
import { memoryStore, type Store } from '../storage.js';
import { Transparency } from '../transparency.js';
import { FakeServer } from './fake-server.js';

export const cryptoRng: Rng = (n) => globalThis.crypto.getRandomValues(new Uint8Array(n));

export interface World {
  readonly curves: Curve25519;
  readonly server: FakeServer;
  /** The clock of the server and of every engine made with `engineOn` (tests may move it). */
  readonly now: () => number;
}

export async function makeWorld(opts: { now?: () => number } = {}): Promise<World> {
  const curves = await defaultCurves();
  const now = opts.now ?? Date.now;
  return { curves, server: await FakeServer.create({ curves, now }), now };
}

export interface Client {
  readonly engine: Engine;
  readonly store: Store;
  readonly locks: EngineLocks;
  readonly userId: string;
  readonly deviceId: string;
}

/**
 * Key-transparency options for test engines on `w`: its log's key, and no head gossip unless asked (most
 * tests count envelopes exactly; transparency.test.ts turns gossip on).
 */
export const ktOptions = (w: World, gossip = false) => ({ logKey: w.server.ktLogKey, gossip });

export function engineOn(
  w: World,
  userId: string,
  deviceId: string,
  store: Store,
  locks: EngineLocks,
  extra: Partial<EngineOptions> & { gossip?: boolean } = {},
): Engine {
  const { gossip, ...rest } = extra;
  return createEngine({
    store,
    api: w.server.api(userId, deviceId),
    realtime: w.server.sockets(userId, deviceId),
    curves: w.curves,
    rng: cryptoRng,
    now: w.now,
    locks,
    keystore: { batch: 4, watermark: 2 },
    backoff: { baseMs: 5, maxMs: 40 },
    kt: ktOptions(w, gossip),
    ...rest,
  });
}

/** A new account (registered on the fake server) with prekeys published. */
export async function newClient(
  w: World,
  userId: string,
  deviceId = `${userId}-1`,
  opts: {
    store?: Store;
    locks?: EngineLocks;
    register?: boolean;
    username?: string;
    gossip?: boolean;
    engine?: Partial<EngineOptions>;
  } = {},
): Promise<Client> {
  const store = opts.store ?? memoryStore();
  const locks = opts.locks ?? memoryLocks();
  const engine = engineOn(w, userId, deviceId, store, locks, { ...opts.engine, gossip: opts.gossip });
  const id = await engine.bootstrap({ userId, deviceId });
  if (opts.register !== false) {
    await w.server.register(id.deviceList, opts.username);
    await engine.setOwnUsername(opts.username ?? userId);
    await engine.publishPrekeys();
  }
  return { engine, store, locks, userId, deviceId };
}

/** Our identity record as the keystore holds it (tests read secrets to scan raw storage). */
export async function ownIdentity(store: Store): Promise<OwnIdentity> {
  return decodeRecord<OwnIdentity>((await store.get('ks/identity'))!);
}

export async function until(cond: () => boolean | Promise<boolean>, what = 'condition', ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Every client connects to `conv`, and the call returns once each one's socket is online. */
export async function online(clients: readonly Client[], conv: string): Promise<void> {
  for (const c of clients) await c.engine.connect([conv]);
  for (const c of clients)
    await until(async () => (await c.engine.connectionStatus(conv)) === 'online', `${c.deviceId} online`);
}

export async function texts(e: Engine, conversationId: string): Promise<string[]> {
  return (await e.messages(conversationId, { limit: 1000 })).filter((m) => m.body !== null).map((m) => m.body!);
}

/**
 * Sends an arbitrary payload as `from` (a misbehaving or future client): pairwise, over `from`'s own
 * sessions, to every live device of every other member of `conv` and to `from`'s other devices, in one raw
 * `send` frame with client id `id`. Returns the raw socket (close it after).
 */
export async function sendRaw(w: World, from: Client, conv: string, id: string, payload: unknown) {
  const ctx: EngineContext = {
    store: from.store,
    api: w.server.api(from.userId, from.deviceId),
    curves: w.curves,
    rng: cryptoRng,
    now: w.now,
    locks: from.locks,
    emit: () => {},
  };
  const keys = new Keystore(ctx, { batch: 4, watermark: 2 });
  const directory = new Directory(ctx, keys, new Transparency(ctx, ktOptions(w)));
  const sessions = new Sessions(ctx, keys, directory);
  const bytes = encodeRecord(payload);
  const to: { u: string; d: string; c: string }[] = [];
  for (const u of w.server.conversations.get(conv)!.members.keys()) {
    await directory.refresh(u);
    for (const x of await sessions.encryptFor(u, await directory.devices(u), bytes))
      to.push({ u, d: x.deviceId, c: toB64u(x.ciphertext) });
  }
  const sock = await w.server.sockets(from.userId, from.deviceId)(conv, { onMessage: () => {}, onClose: () => {} });
  sock.send(JSON.stringify({ v: 1, type: 'send', id, to }));
  return sock;
}

/**
 * Like `sendRaw`, but a group (sender-key) message: `payload` encrypted with `from`'s current own sender key
 * of `conv` (which must exist: `from` sent in the group before), the advanced chain stored back.
 */
export async function sendRawGroup(w: World, from: Client, conv: string, id: string, payload: unknown) {
  const k = `sk/${conv}/own`;
  const rec = decodeRecord<{ key: Uint8Array; distributed: string[] }>((await from.store.get(k))!);
  const r = await senderEncrypt(w.curves, deserializeOwnSenderKey(rec.key), encodeRecord(payload));
  await from.store.put(k, encodeRecord({ ...rec, key: serializeOwnSenderKey(r.own) }));
  const sock = await w.server.sockets(from.userId, from.deviceId)(conv, { onMessage: () => {}, onClose: () => {} });
  sock.send(JSON.stringify({ v: 1, type: 'send', id, group: toB64u(r.message) }));
  return sock;
}

/** A second device of `first`'s account (same user identity secret), listed, adopted and with prekeys. */
export async function linkDevice(w: World, first: Client, deviceId: string): Promise<Client> {
  const secret = (await ownIdentity(first.store)).userIdentity.secretKey;
  const store = memoryStore();
  const locks = memoryLocks();
  const engine = engineOn(w, first.userId, deviceId, store, locks);
  const id = await engine.bootstrap({ userId: first.userId, deviceId, userIdentitySecret: secret });
  await w.server.updateDeviceList(await first.engine.addDeviceToList(id.deviceCertificate));
  await engine.adoptOwnDeviceList(w.server.users.get(first.userId)!.listBytes);
  await engine.publishPrekeys();
  return { engine, store, locks, userId: first.userId, deviceId };
}
