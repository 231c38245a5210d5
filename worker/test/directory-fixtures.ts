/**
 * Fixtures for the devices / key-directory / conversations / GraphQL tests: users whose keys are generated
 * in the test (so the test can sign device lists, prekeys and membership entries), stored in D1 through the
 * same device-store path the auth routes use, with access tokens per device.
 */
import { env, exports } from 'cloudflare:workers';
import { toB64u } from '../../web/src/protocol/bytes.js';
import { type DeviceList, encodeDeviceList, signDeviceList } from '../../web/src/protocol/identity.js';
import {
  type EntryParams,
  encodeMembershipEntry,
  type MembershipEntry,
  type MembershipState,
  nextEntry,
} from '../../web/src/protocol/membership.js';
import {
  encodePrekeyUpload,
  generateKemPrekey,
  generateOneTimePrekeys,
  kemPrekeyPublic,
  oneTimePrekeyPublic,
  type PrekeyUpload,
  signedPrekeyPublic,
} from '../../web/src/protocol/prekeys.js';
import { type Curve25519, defaultCurves, type Rng } from '../../web/src/protocol/primitives.js';
import {
  makeTestDevice,
  makeTestUser,
  seededRng,
  type TestDevice,
  type TestUser,
} from '../../web/src/protocol/testing.js';
import { issueAccessToken } from '../auth/tokens.js';
import { makeDb, schema } from '../db.js';
import { applyDeviceList } from '../device-store.js';

export const db = () => makeDb(env);
let counter = 0;

export interface Fixture {
  userId: string;
  username: string;
  t: TestUser;
  curves: Curve25519;
  rng: Rng;
  /** Current signed device list (updated by the helpers below). */
  list: DeviceList;
  devices: TestDevice[];
  token(deviceIndex?: number): Promise<string>;
}

/** A user with `deviceCount` devices (ids d0, d1, …) stored in D1 exactly as registration would. */
export async function makeUser(name: string, deviceCount = 1): Promise<Fixture> {
  const curves = await defaultCurves();
  const rng = seededRng(`${name}-${counter++}-${Math.random()}`);
  const userId = `u_${name}_${counter}`;
  const username = `${name}${counter}`.toLowerCase().replace(/[^a-z0-9_.-]/g, '');
  const t = await makeTestUser(
    curves,
    rng,
    userId,
    Array.from({ length: deviceCount }, (_, i) => `d${i}`),
  );
  const d = db();
  const listBytes = encodeDeviceList(t.deviceList);
  const applied = await applyDeviceList(d, userId, t.identity.publicKey, null, listBytes);
  await d.batch([
    d.insert(schema.users).values({
      id: userId,
      username,
      identityKey: t.identity.publicKey,
      passwordHash: crypto.getRandomValues(new Uint8Array(32)),
      passwordSalt: crypto.getRandomValues(new Uint8Array(16)),
      passwordParams: '{}',
    }),
    ...applied.statements,
  ]);
  const f: Fixture = {
    userId,
    username,
    t,
    curves,
    rng,
    list: t.deviceList,
    devices: [...t.devices],
    async token(i = 0) {
      const deviceId = f.devices[i]!.deviceId;
      const familyId = `fam_${userId}_${deviceId}_${counter++}`;
      await d.insert(schema.tokenFamilies).values({ id: familyId, userId, deviceId });
      return issueAccessToken(env, { userId, deviceId, familyId });
    },
  };
  return f;
}

/** The next device list (version + 1) with `devices`, signed by the user identity key. */
export async function nextList(f: Fixture, devices: TestDevice[], version = f.list.version + 1): Promise<DeviceList> {
  return signDeviceList(f.curves, f.t.identity, {
    userId: f.userId,
    version,
    devices: devices.map((x) => x.certificate),
  });
}

export async function newDevice(f: Fixture, deviceId: string): Promise<TestDevice> {
  return makeTestDevice(f.curves, f.rng, f.t.identity, f.userId, deviceId);
}

/** The device's standard upload: its signed prekey, one-time prekeys and one-time + last-resort KEM keys. */
export function fullUpload(dev: TestDevice): PrekeyUpload {
  return {
    signedPrekey: signedPrekeyPublic(dev.signedPrekey),
    oneTimePrekeys: dev.oneTimePrekeys.map(oneTimePrekeyPublic),
    kemPrekeys: [kemPrekeyPublic(dev.kemPrekey), kemPrekeyPublic(dev.lastResortKemPrekey)],
  };
}

export const uploadB64 = (u: PrekeyUpload) => toB64u(encodePrekeyUpload(u));

export async function oneTimeBatch(f: Fixture, startId: number, n: number) {
  return (await generateOneTimePrekeys(f.curves, f.rng, startId, n)).map(oneTimePrekeyPublic);
}

export async function kemBatch(f: Fixture, dev: TestDevice, startId: number, n: number, lastResort = false) {
  const out = [];
  for (let i = 0; i < n; i++)
    out.push(kemPrekeyPublic(await generateKemPrekey(f.curves, f.rng, dev.signing, startId + i, lastResort)));
  return out;
}

export function api(path: string, token: string | null, init: RequestInit & { json?: unknown; ip?: string } = {}) {
  const headers = new Headers(init.headers);
  if (token) headers.set('Authorization', `Bearer ${token}`);
  if (init.json !== undefined) headers.set('Content-Type', 'application/json');
  headers.set('cf-connecting-ip', init.ip ?? '192.0.2.1');
  return exports.default.fetch(`https://app.example${path}`, {
    ...init,
    headers,
    body: init.json !== undefined ? JSON.stringify(init.json) : init.body,
  });
}

/** Signs the next membership entry as device `deviceIndex` of `f`. */
export async function entry(
  f: Fixture,
  state: MembershipState | null,
  conversationId: string,
  p: Omit<EntryParams, 'authorUserId' | 'authorDeviceId' | 'timestamp'>,
  deviceIndex = 0,
): Promise<MembershipEntry> {
  const dev = f.devices[deviceIndex]!;
  return nextEntry(f.curves, dev.signing, state, conversationId, {
    ...p,
    authorUserId: f.userId,
    authorDeviceId: dev.deviceId,
    timestamp: 1_700_000_000_000,
  });
}

export const enc = (e: MembershipEntry) => toB64u(encodeMembershipEntry(e));

/** Every row of every app table (for "nothing changed" assertions), minus counters and audit events. */
export async function snapshot(except: string[] = ['audit_events']): Promise<Record<string, unknown[]>> {
  const tables = await env.DB.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name <> 'd1_migrations' ORDER BY name",
  ).all<{ name: string }>();
  const out: Record<string, unknown[]> = {};
  for (const { name } of tables.results) {
    if (except.includes(name)) continue;
    // sql-interpolation-ok: table names come from sqlite_master, never from input (test-only snapshot).
    const rows = await env.DB.prepare(`SELECT * FROM "${name}" ORDER BY rowid`).all();
    out[name] = rows.results.map((r) =>
      JSON.stringify(r, (_k, v) => (v instanceof ArrayBuffer ? toB64u(new Uint8Array(v)) : v)),
    );
  }
  return out;
}

export async function auditCount(event?: string): Promise<number> {
  const row = event
    ? await env.DB.prepare('SELECT count(*) AS n FROM audit_events WHERE event = ?').bind(event).first<{ n: number }>()
    : await env.DB.prepare('SELECT count(*) AS n FROM audit_events').first<{ n: number }>();
  return row?.n ?? 0;
}
