/**
 * Worker test fixtures: real accounts created through the public API with real keys from the protocol
 * core (user identity key, device certificate, signed device list, device-signed login challenge).
 *
 * The password pre-hash is 32 random bytes standing in for argon2id(password) — the server only ever
 * sees the 32-byte pre-hash, and real argon2id would cost ~0.4 s per call.
 *
 * Every helper takes an optional client address (`cf-connecting-ip`) so tests that are not about rate
 * limits can spread their requests over distinct rate-limit keys.
 */
import { exports } from 'cloudflare:workers';
import * as OTPAuth from 'otpauth';
import { fromB64u, toB64u } from '../../web/src/protocol/bytes.js';
import {
  type DeviceList,
  encodeDeviceList,
  signDeviceList,
  signLoginChallenge,
} from '../../web/src/protocol/identity.js';
import { generateEd25519, type OurEd25519KeyPair } from '../../web/src/protocol/keys.js';
import { type Curve25519, defaultCurves, type Rng } from '../../web/src/protocol/primitives.js';
import { makeTestDevice, makeTestUser, type TestDevice, type TestUser } from '../../web/src/protocol/testing.js';
import { totpCodeAt } from '../auth/totp.js';

export const BASE = 'http://example.com';
export const rng: Rng = (n) => crypto.getRandomValues(new Uint8Array(n));
export const curves = (): Promise<Curve25519> => defaultCurves();

let counter = 0;
/** A fresh client address per call (distinct rate-limit key). */
export function freshIp(): string {
  counter++;
  return `198.51.${(counter >> 8) & 255}.${counter & 255}`;
}
/** A fresh unique username with the given prefix (letters first, valid charset). */
export function freshName(prefix = 'user'): string {
  return `${prefix}${crypto.randomUUID().replaceAll('-', '').slice(0, 12)}`;
}

export interface ApiOptions {
  method?: string;
  body?: unknown;
  /** Raw body (sent as-is, JSON content type unless `contentType` says otherwise). */
  raw?: string;
  contentType?: string | null;
  token?: string;
  /** Value of the refresh cookie (without the name). */
  refresh?: string;
  ip?: string;
  headers?: Record<string, string>;
}

export function api(path: string, o: ApiOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...(o.headers ?? {}) };
  if (o.body !== undefined || o.raw !== undefined) {
    if (o.contentType !== null) headers['content-type'] = o.contentType ?? 'application/json';
  }
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (o.refresh) headers.cookie = `__Host-e2e_refresh=${o.refresh}`;
  headers['cf-connecting-ip'] = o.ip ?? '203.0.113.1';
  return exports.default.fetch(`${BASE}${path}`, {
    method: o.method ?? 'POST',
    headers,
    body: o.raw ?? (o.body !== undefined ? JSON.stringify(o.body) : undefined),
  });
}

/** The refresh token from a response's Set-Cookie, or undefined. */
export function refreshCookie(res: Response): string | undefined {
  for (const c of res.headers.getSetCookie()) {
    const m = /^__Host-e2e_refresh=([^;]*)/.exec(c);
    if (m) return m[1] || undefined;
  }
  return undefined;
}

export async function getChallenge(ip?: string): Promise<{ challengeId: string; challenge: Uint8Array }> {
  const res = await api('/api/auth/challenge', { ip });
  if (res.status !== 200) throw new Error(`challenge: ${res.status}`);
  const b = (await res.json()) as { challengeId: string; challenge: string };
  return { challengeId: b.challengeId, challenge: fromB64u(b.challenge) };
}

/** A fresh challenge signed by `device` for (userId, deviceId). */
export async function signedChallenge(
  device: { signing: OurEd25519KeyPair; deviceId: string },
  userId: string,
  ip?: string,
): Promise<{ challengeId: string; challengeSignature: string }> {
  const { challengeId, challenge } = await getChallenge(ip);
  const sig = await signLoginChallenge(await curves(), device.signing, challenge, userId, device.deviceId);
  return { challengeId, challengeSignature: toB64u(sig) };
}

export interface RegisteredUser {
  userId: string;
  deviceId: string;
  username: string;
  /** Stand-in for the client's argon2id pre-hash (base64url). */
  prehash: string;
  keys: TestUser;
  device: TestDevice;
  deviceListBytes: Uint8Array;
  accessToken: string;
  /** The refresh-cookie value. */
  cookie: string;
  ip: string;
}

/** The request body `POST /api/auth/register` expects, for a fresh user (nothing sent yet). */
export async function registrationBody(
  name = freshName(),
  ip?: string,
  userId = `u_${crypto.randomUUID().replaceAll('-', '')}`,
) {
  const deviceId = `d_${crypto.randomUUID().replaceAll('-', '').slice(0, 16)}`;
  const keys = await makeTestUser(await curves(), rng, userId, [deviceId]);
  const device = keys.devices[0]!;
  const deviceListBytes = encodeDeviceList(keys.deviceList);
  const prehash = toB64u(rng(32));
  const body = {
    userId,
    username: name,
    passwordPrehash: prehash,
    userIdentityKey: toB64u(keys.identity.publicKey),
    deviceList: toB64u(deviceListBytes),
    deviceId,
    ...(await signedChallenge(device, userId, ip)),
  };
  return { body, userId, deviceId, keys, device, deviceListBytes, prehash };
}

/** Registers `name` (default: a fresh name) through the API and returns its keys and tokens. */
export async function registerUser(name = freshName(), ip = freshIp()): Promise<RegisteredUser> {
  const r = await registrationBody(name, ip);
  const res = await api('/api/auth/register', { body: r.body, ip });
  if (res.status !== 201) throw new Error(`register: ${res.status} ${await res.text()}`);
  const b = (await res.json()) as { accessToken: string };
  const cookie = refreshCookie(res);
  if (!cookie) throw new Error('register: no refresh cookie');
  const { body: _body, ...rest } = r;
  return { ...rest, username: name.normalize('NFKC').toLowerCase(), accessToken: b.accessToken, cookie, ip };
}

/** A login request body for `u` (fresh challenge signed by its device unless another device is given). */
export async function loginBody(
  u: Pick<RegisteredUser, 'username' | 'userId' | 'prehash' | 'device'>,
  o: { prehash?: string; device?: { signing: OurEd25519KeyPair; deviceId: string }; ip?: string } = {},
) {
  const device = o.device ?? u.device;
  return {
    username: u.username,
    passwordPrehash: o.prehash ?? u.prehash,
    deviceId: device.deviceId,
    ...(await signedChallenge(device, u.userId, o.ip)),
  };
}

/** A login by `u`'s own device with a random (wrong) password, from a fresh client address. */
export async function wrongPasswordLogin(u: RegisteredUser): Promise<Response> {
  const ip = freshIp();
  return api('/api/auth/login', { body: { ...(await loginBody(u, { ip })), passwordPrehash: toB64u(rng(32)) }, ip });
}

/** Logs `u` in again from its device; returns the token response and refresh cookie. */
export async function login(u: RegisteredUser, ip = freshIp()): Promise<{ accessToken: string; cookie: string }> {
  const res = await api('/api/auth/login', { body: await loginBody(u, { ip }), ip });
  if (res.status !== 200) throw new Error(`login: ${res.status} ${await res.text()}`);
  const b = (await res.json()) as { accessToken: string };
  return { accessToken: b.accessToken, cookie: refreshCookie(res)! };
}

/** A brand-new identity key and one-device list (version `version`) for an identity reset of `userId`. */
export async function newIdentity(userId: string, version: number) {
  const c = await curves();
  const identity = await generateEd25519(c, rng);
  const deviceId = `d_${crypto.randomUUID().replaceAll('-', '').slice(0, 16)}`;
  const device = await makeTestDevice(c, rng, identity, userId, deviceId);
  const list: DeviceList = await signDeviceList(c, identity, { userId, version, devices: [device.certificate] });
  return { identity, device, deviceId, list, listBytes: encodeDeviceList(list) };
}

/** Enrols and confirms TOTP for `u`; returns the secret and the recovery codes. */
export async function enableTotp(u: RegisteredUser): Promise<{ secret: Uint8Array; recoveryCodes: string[] }> {
  const e = (await (
    await api('/api/auth/totp/enroll', { token: u.accessToken, body: { currentPrehash: u.prehash } })
  ).json()) as { secret: string };
  const secret = OTPAuth.Secret.fromBase32(e.secret).bytes;
  const c = await api('/api/auth/totp/confirm', {
    token: u.accessToken,
    body: { code: totpCodeAt(secret, Date.now()) },
  });
  return { secret, ...((await c.json()) as { recoveryCodes: string[] }) };
}

/** The first step of a login on a TOTP account: its MFA token. */
export async function mfaToken(u: RegisteredUser): Promise<string> {
  const ip = freshIp();
  const res = await api('/api/auth/login', { body: await loginBody(u, { ip }), ip });
  return ((await res.json()) as { mfaToken: string }).mfaToken;
}
