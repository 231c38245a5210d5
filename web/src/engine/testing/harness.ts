/**
 * Test wiring: a fake server and engines ("clients") on it, with small prekey batches and fast reconnects.
 *
 * Does NOT: belong in production code paths (tests and the reliability suites only).
 * @module
 */
import { type Curve25519, defaultCurves, type Rng } from '../_protocol.js';
import { decodeRecord } from '../codec.js';
import { createEngine, type Engine, type EngineOptions } from '../engine.js';
import type { OwnIdentity } from '../keystore.js';
import { type EngineLocks, memoryLocks } from '../locks.js';
import { memoryStore, type Store } from '../storage.js';
import { FakeServer } from './fake-server.js';

export const cryptoRng: Rng = (n) => globalThis.crypto.getRandomValues(new Uint8Array(n));

export interface World {
  readonly curves: Curve25519;
  readonly server: FakeServer;
}

export async function makeWorld(): Promise<World> {
  const curves = await defaultCurves();
  return { curves, server: new FakeServer({ curves }) };
}

export interface Client {
  readonly engine: Engine;
  readonly store: Store;
  readonly locks: EngineLocks;
  readonly userId: string;
  readonly deviceId: string;
}

export function engineOn(
  w: World,
  userId: string,
  deviceId: string,
  store: Store,
  locks: EngineLocks,
  extra: Partial<EngineOptions> = {},
): Engine {
  return createEngine({
    store,
    api: w.server.api(userId, deviceId),
    realtime: w.server.sockets(userId, deviceId),
    curves: w.curves,
    rng: cryptoRng,
    locks,
    keystore: { batch: 4, watermark: 2 },
    backoff: { baseMs: 5, maxMs: 40 },
    ...extra,
  });
}

/** A new account (registered on the fake server) with prekeys published. */
export async function newClient(
  w: World,
  userId: string,
  deviceId = `${userId}-1`,
  opts: { store?: Store; locks?: EngineLocks; register?: boolean; engine?: Partial<EngineOptions> } = {},
): Promise<Client> {
  const store = opts.store ?? memoryStore();
  const locks = opts.locks ?? memoryLocks();
  const engine = engineOn(w, userId, deviceId, store, locks, opts.engine);
  const id = await engine.bootstrap({ userId, deviceId });
  if (opts.register !== false) {
    await w.server.register(id.deviceList);
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

export async function texts(e: Engine, conversationId: string): Promise<string[]> {
  return (await e.messages(conversationId, { limit: 1000 })).filter((m) => m.body !== null).map((m) => m.body!);
}
