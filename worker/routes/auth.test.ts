import { env } from 'cloudflare:workers';
import { and, eq } from 'drizzle-orm';
import * as OTPAuth from 'otpauth';
import { describe, expect, it } from 'vitest';
import { normalizeUsername } from '../../schema/auth-api.js';
import { toB64u } from '../../web/src/protocol/bytes.js';
import { encodeDeviceList, signDeviceList } from '../../web/src/protocol/identity.js';
import { makeTestDevice } from '../../web/src/protocol/testing.js';
import { tokenHash } from '../auth/tokens.js';
import { canonicalRecoveryCode, totpCodeAt } from '../auth/totp.js';
import { makeDb, schema } from '../db.js';
import { applyDeviceList } from '../device-store.js';
import { DELETED_USER } from '../domain/account.js';
import {
  api,
  curves,
  freshIp,
  freshName,
  getChallenge,
  login,
  loginBody,
  newIdentity,
  type RegisteredUser,
  refreshCookie,
  registerUser,
  registrationBody,
  rng,
  signedChallenge,
} from '../test/fixtures.js';

const db = () => makeDb(env);
type Json = Record<string, unknown> & { error?: { code: string; message: string; reason?: string } };
const json = async (res: Response) => (await res.json()) as Json;

async function enableTotp(u: RegisteredUser): Promise<{ secret: Uint8Array; recoveryCodes: string[] }> {
  const enroll = await api('/api/auth/totp/enroll', {
    token: u.accessToken,
    ip: u.ip,
    body: { currentPrehash: u.prehash },
  });
  expect(enroll.status).toBe(200);
  const e = (await enroll.json()) as { otpauthUri: string; secret: string };
  expect(e.otpauthUri).toMatch(/^otpauth:\/\/totp\/e2e-chat:.+secret=/);
  const secret = OTPAuth.Secret.fromBase32(e.secret).bytes;
  const confirm = await api('/api/auth/totp/confirm', {
    token: u.accessToken,
    ip: u.ip,
    body: { code: totpCodeAt(secret, Date.now()) },
  });
  expect(confirm.status).toBe(200);
  const { recoveryCodes } = (await confirm.json()) as { recoveryCodes: string[] };
  return { secret, recoveryCodes };
}

describe('usernames', () => {
  it('normalise with NFKC then case-folding and allow only [a-z0-9_.-], 3-32, letter first', () => {
    expect(normalizeUsername('Alice')).toBe('alice');
    expect(normalizeUsername('ＡＬＩＣＥ_01')).toBe('alice_01');
    expect(normalizeUsername('bob.smith-2')).toBe('bob.smith-2');
    for (const bad of ['ab', 'a'.repeat(33), '1abc', '_abc', 'alice smith', 'аlice', 'alice@x', 'al\u200bice', '']) {
      expect(normalizeUsername(bad), bad).toBeNull();
    }
    expect(normalizeUsername('a'.repeat(32))).toBe('a'.repeat(32));
  });

  it('an invalid username is refused with 400 invalid_username', async () => {
    const ip = freshIp();
    const r = await registrationBody('1nvalid name', ip);
    const res = await api('/api/auth/register', { body: r.body, ip });
    expect(res.status).toBe(400);
    expect((await json(res)).error?.code).toBe('invalid_username');
  });
});

describe('username availability (GET /api/auth/username/:username)', () => {
  const check = (name: string, ip: string) =>
    api(`/api/auth/username/${encodeURIComponent(name)}`, { method: 'GET', ip });

  it('says a free name is available and a taken one (in any case) is not, with nothing else', async () => {
    const ip = freshIp();
    const free = freshName('free');
    const res = await check(free.toUpperCase(), ip);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(await res.json()).toEqual({ username: free, available: true });

    const u = await registerUser(freshName('taken'));
    const taken = await check(u.username.toUpperCase(), ip);
    expect(taken.status).toBe(200);
    expect(await taken.json()).toEqual({ username: u.username, available: false });
  });

  it('a malformed name is 400 invalid_username, needs no token, and changes no row', async () => {
    const ip = freshIp();
    const before = await db().select().from(schema.users).all();
    for (const bad of ['ab', '1abc', 'alice smith', 'a'.repeat(200), 'аlice', '%00']) {
      const res = await check(bad, ip);
      expect(res.status, bad).toBe(400);
      expect((await json(res)).error?.code, bad).toBe('invalid_username');
    }
    expect(await db().select().from(schema.users).all()).toEqual(before);
  });

  it('is rate-limited per client address (its own bucket), with Retry-After; another address is not affected', async () => {
    const ip = freshIp();
    for (let i = 0; i < 100; i++) expect((await check(freshName('probe'), ip)).status).toBe(200);
    const limited = await check(freshName('probe'), ip);
    expect(limited.status).toBe(429);
    expect((await json(limited)).error?.code).toBe('rate_limited');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await check(freshName('probe'), freshIp())).status).toBe(200);
    // Its own budget: registration from the limited address still works.
    await registerUser(freshName('after'), ip);
  });
});

describe('challenge', () => {
  it('returns a 32-byte challenge, an id and an expiry, and stores neither in clear', async () => {
    const res = await api('/api/auth/challenge');
    expect(res.status).toBe(200);
    const b = (await res.json()) as { challengeId: string; challenge: string; expiresAt: number };
    expect(b.challengeId).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(b.challenge).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(b.expiresAt).toBeGreaterThan(Date.now());
    expect(b.expiresAt).toBeLessThanOrEqual(Date.now() + 2 * 60 * 1000);
    expect(res.headers.get('cache-control')).toBe('no-store');
  });
});

describe('register', () => {
  it('the tombstone id of deleted accounts ("deleted") cannot be registered: 409 user_id_taken, nothing written', async () => {
    const ip = freshIp();
    const r = await registrationBody(freshName(), ip, DELETED_USER);
    const res = await api('/api/auth/register', { body: r.body, ip });
    expect(res.status).toBe(409);
    expect((await json(res)).error?.code).toBe('user_id_taken');
    const row = await db().select().from(schema.users).where(eq(schema.users.id, DELETED_USER)).get();
    expect(row).toBeUndefined();
  });

  it('creates user, device and device list atomically and returns tokens with a __Host- cookie', async () => {
    const ip = freshIp();
    const name = freshName('Reg');
    const r = await registrationBody(name, ip);
    const res = await api('/api/auth/register', { body: r.body, ip });
    expect(res.status).toBe(201);
    const b = await json(res);
    expect(b).toEqual({ accessToken: expect.any(String), expiresIn: 600, userId: r.userId, deviceId: r.deviceId });
    const setCookie = res.headers.getSetCookie().join('\n');
    expect(setCookie).toMatch(/^__Host-e2e_refresh=[A-Za-z0-9_-]{43};/);
    expect(setCookie).toMatch(/Max-Age=2592000/);
    expect(setCookie).toMatch(/Path=\//);
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/Secure/);
    expect(setCookie).toMatch(/SameSite=Strict/);
    const user = await db().select().from(schema.users).where(eq(schema.users.id, r.userId)).get();
    expect(user?.username).toBe(name.toLowerCase());
    expect(JSON.parse(user!.passwordParams)).toEqual({
      client: { alg: 'argon2id', m: 19456, t: 2, p: 1, salt: 'sha256(label‖username)' },
      server: { alg: 'hmac-sha256', v: 1 },
    });
    const list = await db().select().from(schema.deviceLists).where(eq(schema.deviceLists.userId, r.userId)).get();
    expect(list?.version).toBe(1);
    expect(new Uint8Array(list!.list)).toEqual(r.deviceListBytes);
    const dev = await db().select().from(schema.devices).where(eq(schema.devices.userId, r.userId)).all();
    expect(dev.map((d) => d.deviceId)).toEqual([r.deviceId]);
    const audit = await db().select().from(schema.auditEvents).where(eq(schema.auditEvents.userId, r.userId)).all();
    expect(audit.map((a) => a.event)).toContain('register');
    // The access token works.
    const s = await api('/api/auth/session', { method: 'GET', token: b.accessToken as string, ip });
    expect(s.status).toBe(200);
    expect(await s.json()).toEqual({
      userId: r.userId,
      deviceId: r.deviceId,
      username: name.toLowerCase(),
      identityVersion: 1,
      totpEnabled: false,
    });
  });

  it('a taken username (in any case/width) is 409 username_taken and changes nothing', async () => {
    const u = await registerUser(freshName('taken'));
    const ip = freshIp();
    const r = await registrationBody(u.username.toUpperCase(), ip);
    const res = await api('/api/auth/register', { body: r.body, ip });
    expect(res.status).toBe(409);
    expect((await json(res)).error?.code).toBe('username_taken');
    expect(await db().select().from(schema.users).where(eq(schema.users.id, r.userId)).get()).toBeUndefined();
  });

  it('a list signed by another identity key, a version other than 1, or two devices is 422 invalid_device_list', async () => {
    const c = await curves();
    const ip = freshIp();
    // Identity key in the body differs from the list signer.
    const r1 = await registrationBody(freshName(), ip);
    const other = await newIdentity(r1.userId, 1);
    const res1 = await api('/api/auth/register', {
      body: { ...r1.body, userIdentityKey: toB64u(other.identity.publicKey) },
      ip,
    });
    expect(res1.status).toBe(422);
    expect((await json(res1)).error).toMatchObject({ code: 'invalid_device_list', reason: 'identity_mismatch' });
    // Version 2.
    const r2 = await registrationBody(freshName(), ip);
    const v2 = await signDeviceList(c, r2.keys.identity, {
      userId: r2.userId,
      version: 2,
      devices: [r2.device.certificate],
    });
    const res2 = await api('/api/auth/register', {
      body: {
        ...r2.body,
        deviceList: toB64u(encodeDeviceList(v2)),
        ...(await signedChallenge(r2.device, r2.userId, ip)),
      },
      ip,
    });
    expect((await json(res2)).error).toMatchObject({ code: 'invalid_device_list', reason: 'first_version_not_1' });
    // Two devices.
    const r3 = await registrationBody(freshName(), ip);
    const d2 = await makeTestDevice(c, rng, r3.keys.identity, r3.userId, 'second');
    const two = await signDeviceList(c, r3.keys.identity, {
      userId: r3.userId,
      version: 1,
      devices: [r3.device.certificate, d2.certificate],
    });
    const res3 = await api('/api/auth/register', {
      body: {
        ...r3.body,
        deviceList: toB64u(encodeDeviceList(two)),
        ...(await signedChallenge(r3.device, r3.userId, ip)),
      },
      ip,
    });
    expect(res3.status).toBe(422);
    expect((await json(res3)).error).toMatchObject({ code: 'invalid_device_list', reason: 'one_device_required' });
  });

  it('a challenge signed by a key other than the listed device is 401 invalid_device_signature', async () => {
    const ip = freshIp();
    const r = await registrationBody(freshName(), ip);
    const stranger = await newIdentity(r.userId, 1);
    const res = await api('/api/auth/register', {
      body: { ...r.body, ...(await signedChallenge({ ...stranger.device, deviceId: r.deviceId }, r.userId, ip)) },
      ip,
    });
    expect(res.status).toBe(401);
    expect((await json(res)).error?.code).toBe('invalid_device_signature');
  });
});

describe('login', () => {
  it('returns tokens and a refresh cookie for the right password and a linked device', async () => {
    const u = await registerUser();
    const ip = freshIp();
    const res = await api('/api/auth/login', { body: await loginBody(u, { ip }), ip });
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({
      accessToken: expect.any(String),
      expiresIn: 600,
      userId: u.userId,
      deviceId: u.deviceId,
    });
    expect(refreshCookie(res)).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('accepts the username in another case and width', async () => {
    const u = await registerUser(freshName('case'));
    const ip = freshIp();
    const body = await loginBody(u, { ip });
    const res = await api('/api/auth/login', { body: { ...body, username: u.username.toUpperCase() }, ip });
    expect(res.status).toBe(200);
  });

  it('a challenge is single-use: the second login with the same challenge is 401 invalid_challenge', async () => {
    const u = await registerUser();
    const ip = freshIp();
    const body = await loginBody(u, { ip });
    expect((await api('/api/auth/login', { body, ip })).status).toBe(200);
    const again = await api('/api/auth/login', { body, ip });
    expect(again.status).toBe(401);
    expect((await json(again)).error?.code).toBe('invalid_challenge');
  });

  it('an expired challenge is refused', async () => {
    const u = await registerUser();
    const ip = freshIp();
    const body = await loginBody(u, { ip });
    await env.DB.prepare('UPDATE login_challenges SET expires_at = ?1')
      .bind(Date.now() - 1)
      .run();
    const res = await api('/api/auth/login', { body, ip });
    expect((await json(res)).error?.code).toBe('invalid_challenge');
  });

  it('a device this account does not have is 403 device_not_linked with an explanation', async () => {
    const u = await registerUser();
    const ip = freshIp();
    const foreign = await newIdentity(u.userId, 1);
    const res = await api('/api/auth/login', { body: await loginBody(u, { device: foreign.device, ip }), ip });
    expect(res.status).toBe(403);
    const e = (await json(res)).error!;
    expect(e.code).toBe('device_not_linked');
    expect(e.message).toMatch(/holds no keys/);
    expect(e.message).toMatch(/reset/);
    // What an identity reset from an empty browser needs (only ever after a correct password).
    expect(e).toMatchObject({ userId: u.userId, deviceListVersion: 1 });
  });

  it('a signature by the wrong key for a linked device id is 401 invalid_device_signature', async () => {
    const u = await registerUser();
    const ip = freshIp();
    const foreign = await newIdentity(u.userId, 1);
    const body = await loginBody(u, { device: { signing: foreign.device.signing, deviceId: u.deviceId }, ip });
    const res = await api('/api/auth/login', { body, ip });
    expect(res.status).toBe(401);
    expect((await json(res)).error?.code).toBe('invalid_device_signature');
  });
});

describe('refresh, logout and sessions', () => {
  it('refresh rotates: the new token works, the old one is marked rotated in the same family', async () => {
    const u = await registerUser();
    const res = await api('/api/auth/refresh', { refresh: u.cookie, ip: u.ip });
    expect(res.status).toBe(200);
    const b = await json(res);
    expect(b).toMatchObject({ userId: u.userId, deviceId: u.deviceId, expiresIn: 600 });
    const next = refreshCookie(res)!;
    expect(next).not.toBe(u.cookie);
    const res2 = await api('/api/auth/refresh', { refresh: next, ip: u.ip });
    expect(res2.status).toBe(200);
    const fams = await db().select().from(schema.tokenFamilies).where(eq(schema.tokenFamilies.userId, u.userId)).all();
    expect(fams).toHaveLength(1);
    const toks = await db()
      .select()
      .from(schema.refreshTokens)
      .where(eq(schema.refreshTokens.familyId, fams[0]!.id))
      .all();
    expect(toks).toHaveLength(3);
    expect(toks.filter((t) => t.rotatedAt === null)).toHaveLength(1);
  });

  it('refresh without a cookie, or with an unknown token, is 401 invalid_refresh', async () => {
    expect((await json(await api('/api/auth/refresh'))).error?.code).toBe('invalid_refresh');
    const res = await api('/api/auth/refresh', { refresh: toB64u(rng(32)) });
    expect(res.status).toBe(401);
    expect((await json(res)).error?.code).toBe('invalid_refresh');
  });

  it('an expired refresh token is 401 refresh_expired', async () => {
    const u = await registerUser();
    await env.DB.prepare(
      'UPDATE refresh_tokens SET expires_at = ?1 WHERE family_id IN (SELECT id FROM token_families WHERE user_id = ?2)',
    )
      .bind(Date.now() - 1, u.userId)
      .run();
    const res = await api('/api/auth/refresh', { refresh: u.cookie, ip: u.ip });
    expect(res.status).toBe(401);
    expect((await json(res)).error?.code).toBe('refresh_expired');
  });

  it('a cross-origin refresh is refused', async () => {
    const u = await registerUser();
    const res = await api('/api/auth/refresh', { refresh: u.cookie, headers: { origin: 'https://evil.example' } });
    expect(res.status).toBe(403);
    expect((await json(res)).error?.code).toBe('bad_origin');
  });

  it('logout revokes the current family and clears the cookie; other sessions live on', async () => {
    const u = await registerUser();
    const other = await login(u);
    const res = await api('/api/auth/logout', { token: u.accessToken, ip: u.ip });
    expect(res.status).toBe(200);
    expect(res.headers.getSetCookie().join('\n')).toMatch(/__Host-e2e_refresh=;.*Max-Age=0/);
    const after = await api('/api/auth/session', { method: 'GET', token: u.accessToken });
    expect(after.status).toBe(401);
    expect((await json(after)).error).toMatchObject({ code: 'session_revoked', reason: 'logout' });
    expect((await api('/api/auth/refresh', { refresh: u.cookie })).status).toBe(401);
    expect((await api('/api/auth/session', { method: 'GET', token: other.accessToken })).status).toBe(200);
  });

  it('logout-all revokes every family of the user', async () => {
    const u = await registerUser();
    const other = await login(u);
    const res = await api('/api/auth/logout-all', { token: u.accessToken, ip: u.ip });
    expect(await json(res)).toEqual({ ok: true, revokedSessions: 2 });
    for (const t of [u.accessToken, other.accessToken]) {
      expect((await json(await api('/api/auth/session', { method: 'GET', token: t }))).error).toMatchObject({
        code: 'session_revoked',
        reason: 'logout_all',
      });
    }
    // The refresh of a cut-off device says why too (that device shows it on its sign-in screen).
    const refused = await api('/api/auth/refresh', { refresh: other.cookie });
    expect(refused.status).toBe(401);
    expect((await json(refused)).error).toMatchObject({ code: 'session_revoked', reason: 'logout_all' });
  });

  it('sessions/revoke signs one device out; an unknown device id is 404', async () => {
    const u = await registerUser();
    const other = await login(u);
    const res = await api('/api/auth/sessions/revoke', { token: other.accessToken, body: { deviceId: u.deviceId } });
    expect(await json(res)).toEqual({ ok: true, revokedSessions: 2 });
    expect((await json(await api('/api/auth/session', { method: 'GET', token: u.accessToken }))).error).toMatchObject({
      code: 'session_revoked',
      reason: 'signed_out_by_user',
    });
    const u2 = await registerUser();
    const nf = await api('/api/auth/sessions/revoke', { token: u2.accessToken, body: { deviceId: u.deviceId } });
    expect(nf.status).toBe(404);
    expect((await json(nf)).error?.code).toBe('unknown_device');
  });

  it('password change needs the current password, revokes every other session, and the new password logs in', async () => {
    const u = await registerUser();
    const other = await login(u);
    const newPrehash = toB64u(rng(32));
    const wrong = await api('/api/auth/password', {
      token: u.accessToken,
      body: { currentPrehash: toB64u(rng(32)), newPrehash },
    });
    expect(wrong.status).toBe(401);
    expect((await json(wrong)).error?.code).toBe('invalid_credentials');
    const res = await api('/api/auth/password', {
      token: u.accessToken,
      body: { currentPrehash: u.prehash, newPrehash },
    });
    expect(await json(res)).toEqual({ ok: true, revokedSessions: 1 });
    expect((await api('/api/auth/session', { method: 'GET', token: u.accessToken })).status).toBe(200);
    const dead = await api('/api/auth/session', { method: 'GET', token: other.accessToken });
    expect((await json(dead)).error).toMatchObject({ code: 'session_revoked', reason: 'password_changed' });
    const deadRefresh = await api('/api/auth/refresh', { refresh: other.cookie });
    expect((await json(deadRefresh)).error).toMatchObject({ code: 'session_revoked', reason: 'password_changed' });
    const ip = freshIp();
    const oldPw = await api('/api/auth/login', { body: await loginBody(u, { ip }), ip });
    expect((await json(oldPw)).error?.code).toBe('invalid_credentials');
    const newPw = await api('/api/auth/login', { body: await loginBody(u, { ip, prehash: newPrehash }), ip });
    expect(newPw.status).toBe(200);
    const audit = await db().select().from(schema.auditEvents).where(eq(schema.auditEvents.userId, u.userId)).all();
    expect(audit.map((a) => a.event)).toContain('password_changed');
  });
});

describe('TOTP', () => {
  it('enrol, confirm (10 recovery codes once), then login needs a code; disable turns it off', async () => {
    const u = await registerUser();
    const { secret, recoveryCodes } = await enableTotp(u);
    expect(recoveryCodes).toHaveLength(10);
    expect(new Set(recoveryCodes).size).toBe(10);
    for (const c of recoveryCodes) expect(c).toMatch(/^[a-z2-9]{4}(-[a-z2-9]{4}){3}$/);
    const s = await api('/api/auth/session', { method: 'GET', token: u.accessToken });
    expect((await json(s)).totpEnabled).toBe(true);

    const ip = freshIp();
    const step1 = await api('/api/auth/login', { body: await loginBody(u, { ip }), ip });
    expect(step1.status).toBe(200);
    const p = await json(step1);
    expect(p).toEqual({ mfaRequired: true, mfaToken: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) });
    expect(refreshCookie(step1)).toBeUndefined();
    // Next time step (the confirm used the current one): within the ±1 window.
    const res = await api('/api/auth/totp', {
      body: { mfaToken: p.mfaToken, code: totpCodeAt(secret, Date.now() + 30_000) },
      ip,
    });
    expect(res.status).toBe(200);
    const t = await json(res);
    expect(t).toMatchObject({ userId: u.userId, deviceId: u.deviceId });
    expect(refreshCookie(res)).toBeDefined();
    // The MFA token is single use.
    const again = await api('/api/auth/totp', { body: { mfaToken: p.mfaToken, code: '000000' }, ip });
    expect((await json(again)).error?.code).toBe('invalid_mfa_token');

    await env.DB.prepare('UPDATE totp_secrets SET last_step = 0 WHERE user_id = ?1').bind(u.userId).run();
    const off = await api('/api/auth/totp/disable', {
      token: t.accessToken as string,
      body: { code: totpCodeAt(secret, Date.now()) },
    });
    expect(off.status).toBe(200);
    const ip2 = freshIp();
    expect(await json(await api('/api/auth/login', { body: await loginBody(u, { ip: ip2 }), ip: ip2 }))).toMatchObject({
      accessToken: expect.any(String),
    });
  });

  it('TOTP enrolment with a valid token but a wrong or missing password is refused and stores no secret', async () => {
    const u = await registerUser();
    const wrong = await api('/api/auth/totp/enroll', {
      token: u.accessToken,
      body: { currentPrehash: toB64u(rng(32)) },
    });
    expect(wrong.status).toBe(401);
    expect((await json(wrong)).error?.code).toBe('invalid_credentials');
    const missing = await api('/api/auth/totp/enroll', { token: u.accessToken, body: {} });
    expect(missing.status).toBe(400);
    const row = await db().select().from(schema.totpSecrets).where(eq(schema.totpSecrets.userId, u.userId)).get();
    expect(row).toBeUndefined();
    const audit = await db()
      .select({ event: schema.auditEvents.event })
      .from(schema.auditEvents)
      .where(eq(schema.auditEvents.userId, u.userId))
      .all();
    expect(audit.map((r) => r.event)).toContain('totp_enroll_failed');
    const ok = await api('/api/auth/totp/enroll', { token: u.accessToken, body: { currentPrehash: u.prehash } });
    expect(ok.status).toBe(200);
  });

  it('a wrong confirm code leaves TOTP disabled; enrolling twice after enabling is 409', async () => {
    const u = await registerUser();
    await api('/api/auth/totp/enroll', { token: u.accessToken, body: { currentPrehash: u.prehash } });
    const bad = await api('/api/auth/totp/confirm', { token: u.accessToken, body: { code: '000000' } });
    expect(bad.status).toBe(401);
    expect((await json(bad)).error?.code).toBe('invalid_totp');
    const row = await db().select().from(schema.totpSecrets).where(eq(schema.totpSecrets.userId, u.userId)).get();
    expect(row?.enabledAt).toBeNull();
    const u2 = await registerUser();
    await enableTotp(u2);
    const twice = await api('/api/auth/totp/enroll', { token: u2.accessToken, body: { currentPrehash: u2.prehash } });
    expect((await json(twice)).error?.code).toBe('totp_already_enabled');
  });

  it('a TOTP code is never accepted twice, and a recovery code only once', async () => {
    const u = await registerUser();
    const { secret, recoveryCodes } = await enableTotp(u);
    const ip = freshIp();
    const mfa = async () =>
      (await json(await api('/api/auth/login', { body: await loginBody(u, { ip }), ip }))).mfaToken as string;
    // The code used to confirm enrolment cannot log in.
    const confirmCode = totpCodeAt(secret, Date.now());
    const replay = await api('/api/auth/totp', { body: { mfaToken: await mfa(), code: confirmCode }, ip });
    expect(replay.status).toBe(401);
    expect((await json(replay)).error?.code).toBe('totp_code_used');
    // A fresh code works once...
    const next = totpCodeAt(secret, Date.now() + 30_000);
    expect((await api('/api/auth/totp', { body: { mfaToken: await mfa(), code: next }, ip })).status).toBe(200);
    // ...and not twice.
    const twice = await api('/api/auth/totp', { body: { mfaToken: await mfa(), code: next }, ip });
    expect((await json(twice)).error?.code).toBe('totp_code_used');
    // Recovery code (any case/format) works once.
    const rc = recoveryCodes[3]!.toUpperCase().replaceAll('-', ' ');
    const ok = await api('/api/auth/totp', { body: { mfaToken: await mfa(), recoveryCode: rc }, ip });
    expect(ok.status).toBe(200);
    const reused = await api('/api/auth/totp', { body: { mfaToken: await mfa(), recoveryCode: recoveryCodes[3] }, ip });
    expect(reused.status).toBe(401);
    expect((await json(reused)).error?.code).toBe('invalid_recovery_code');
    const used = await db().select().from(schema.recoveryCodes).where(eq(schema.recoveryCodes.userId, u.userId)).all();
    expect(used.filter((r) => r.usedAt !== null)).toHaveLength(1);
  });

  it('two concurrent confirms: one enables TOTP, the other is 409 and changes nothing — the codes shown are the stored ones', async () => {
    const u = await registerUser();
    const e = (await (
      await api('/api/auth/totp/enroll', { token: u.accessToken, body: { currentPrehash: u.prehash } })
    ).json()) as { secret: string };
    const code = totpCodeAt(OTPAuth.Secret.fromBase32(e.secret).bytes, Date.now());
    const answers = await Promise.all(
      [0, 1].map(() => api('/api/auth/totp/confirm', { token: u.accessToken, ip: freshIp(), body: { code } })),
    );
    expect(answers.map((r) => r.status).sort()).toEqual([200, 409]);
    const bodies = await Promise.all(answers.map(json));
    expect(bodies.map((b) => b.error?.code ?? 'ok').sort()).toEqual(['ok', 'totp_not_pending']);
    const shown = bodies.find((b) => b.recoveryCodes)!.recoveryCodes as string[];
    const stored = await db()
      .select({ codeHash: schema.recoveryCodes.codeHash })
      .from(schema.recoveryCodes)
      .where(eq(schema.recoveryCodes.userId, u.userId))
      .all();
    expect(stored.map((r) => toB64u(new Uint8Array(r.codeHash))).sort()).toEqual(
      shown.map((c) => toB64u(tokenHash(env, canonicalRecoveryCode(c), 'recovery'))).sort(),
    );
    // And one of them signs in.
    const ip = freshIp();
    const p = await json(await api('/api/auth/login', { body: await loginBody(u, { ip }), ip }));
    const rc = await api('/api/auth/totp', { body: { mfaToken: p.mfaToken, recoveryCode: shown[0] }, ip });
    expect(rc.status).toBe(200);
  });

  it('the MFA step of a device revoked since the password step is 403 device_not_linked: no session, no code spent', async () => {
    const u = await registerUser();
    const { secret } = await enableTotp(u);
    const ip = freshIp();
    const p = await json(await api('/api/auth/login', { body: await loginBody(u, { ip }), ip }));
    const familiesBefore = await db()
      .select()
      .from(schema.tokenFamilies)
      .where(eq(schema.tokenFamilies.userId, u.userId))
      .all();
    await env.DB.prepare('UPDATE devices SET revoked_at = ?1 WHERE user_id = ?2 AND device_id = ?3')
      .bind(Date.now(), u.userId, u.deviceId)
      .run();
    const at = Date.now() + 30_000;
    const code = totpCodeAt(secret, at);
    const res = await api('/api/auth/totp', { body: { mfaToken: p.mfaToken, code }, ip });
    expect(res.status).toBe(403);
    expect((await json(res)).error?.code).toBe('device_not_linked');
    expect(refreshCookie(res)).toBeUndefined();
    const familiesAfter = await db()
      .select()
      .from(schema.tokenFamilies)
      .where(eq(schema.tokenFamilies.userId, u.userId))
      .all();
    expect(familiesAfter).toHaveLength(familiesBefore.length);
    const row = await db().select().from(schema.totpSecrets).where(eq(schema.totpSecrets.userId, u.userId)).get();
    expect(row!.lastStep).toBeLessThan(Math.floor(at / 30_000));
    // The MFA token is gone with it.
    const again = await api('/api/auth/totp', { body: { mfaToken: p.mfaToken, code }, ip });
    expect((await json(again)).error?.code).toBe('invalid_mfa_token');
  });

  it('the TOTP secret is bound to its user: moved to another account it does not decrypt', async () => {
    const a = await registerUser();
    const b = await registerUser();
    await enableTotp(a);
    const { secret: secretB } = await enableTotp(b);
    const rowA = await db().select().from(schema.totpSecrets).where(eq(schema.totpSecrets.userId, a.userId)).get();
    await db()
      .update(schema.totpSecrets)
      .set({ secretEnc: rowA!.secretEnc, lastStep: 0 })
      .where(eq(schema.totpSecrets.userId, b.userId));
    const res = await api('/api/auth/totp/disable', {
      token: b.accessToken,
      body: { code: totpCodeAt(secretB, Date.now()) },
    });
    expect(res.status).toBe(500);
    expect((await json(res)).error?.code).toBe('internal');
  });
});

describe('identity reset', () => {
  it('revokes every device and session, deletes prekeys, stores the new key, bumps identity_version, audits', async () => {
    const u = await registerUser();
    const other = await login(u);
    // A prekey row for the old device, to see it deleted.
    await db()
      .insert(schema.oneTimePrekeys)
      .values({ userId: u.userId, deviceId: u.deviceId, keyId: 1, publicKey: rng(32) });
    const fresh = await newIdentity(u.userId, 2);
    const ip = freshIp();
    const res = await api('/api/auth/reset-identity', {
      ip,
      body: {
        username: u.username,
        passwordPrehash: u.prehash,
        userIdentityKey: toB64u(fresh.identity.publicKey),
        deviceList: toB64u(fresh.listBytes),
        deviceId: fresh.deviceId,
        ...(await signedChallenge(fresh.device, u.userId, ip)),
      },
    });
    expect(res.status).toBe(200);
    const t = await json(res);
    expect(t).toMatchObject({ userId: u.userId, deviceId: fresh.deviceId });
    const user = await db().select().from(schema.users).where(eq(schema.users.id, u.userId)).get();
    expect(user?.identityVersion).toBe(2);
    expect(new Uint8Array(user!.identityKey)).toEqual(fresh.identity.publicKey);
    const devs = await db().select().from(schema.devices).where(eq(schema.devices.userId, u.userId)).all();
    expect(devs.find((d) => d.deviceId === u.deviceId)?.revokedAt).not.toBeNull();
    expect(devs.find((d) => d.deviceId === fresh.deviceId)?.revokedAt).toBeNull();
    const pk = await db().select().from(schema.oneTimePrekeys).where(eq(schema.oneTimePrekeys.userId, u.userId)).all();
    expect(pk).toHaveLength(0);
    for (const tok of [u.accessToken, other.accessToken]) {
      expect((await json(await api('/api/auth/session', { method: 'GET', token: tok }))).error).toMatchObject({
        code: 'session_revoked',
        reason: 'identity_reset',
      });
    }
    const ok = await api('/api/auth/session', { method: 'GET', token: t.accessToken as string });
    expect((await json(ok)).identityVersion).toBe(2);
    const audit = await db()
      .select()
      .from(schema.auditEvents)
      .where(and(eq(schema.auditEvents.userId, u.userId), eq(schema.auditEvents.event, 'identity_reset')))
      .all();
    expect(audit).toHaveLength(1);
    expect(JSON.parse(audit[0]!.details!)).toEqual({ identityVersion: 2, revokedDevices: 1 });
    // The old device can no longer log in.
    const ip2 = freshIp();
    const old = await api('/api/auth/login', { body: await loginBody(u, { ip: ip2 }), ip: ip2 });
    expect((await json(old)).error?.code).toBe('device_not_linked');
  });

  it('is enumeration-safe (unknown user = wrong password) and needs the second factor when TOTP is on', async () => {
    const u = await registerUser();
    const fresh = await newIdentity(u.userId, 2);
    const ip = freshIp();
    const body = async (o: Record<string, unknown>) => ({
      username: u.username,
      passwordPrehash: u.prehash,
      userIdentityKey: toB64u(fresh.identity.publicKey),
      deviceList: toB64u(fresh.listBytes),
      deviceId: fresh.deviceId,
      ...(await signedChallenge(fresh.device, u.userId, ip)),
      ...o,
    });
    const wrong = await json(
      await api('/api/auth/reset-identity', { ip, body: await body({ passwordPrehash: toB64u(rng(32)) }) }),
    );
    const unknown = await json(
      await api('/api/auth/reset-identity', { ip, body: await body({ username: freshName() }) }),
    );
    expect(wrong).toEqual(unknown);
    expect(wrong.error?.code).toBe('invalid_credentials');
    await enableTotp(u);
    const noCode = await api('/api/auth/reset-identity', { ip, body: await body({}) });
    expect(noCode.status).toBe(401);
    expect((await json(noCode)).error?.code).toBe('mfa_required');
    const user = await db().select().from(schema.users).where(eq(schema.users.id, u.userId)).get();
    expect(user?.identityVersion).toBe(1);
  });
});

describe('device-store applyDeviceList', () => {
  it('refuses rollback, skipped versions and foreign signatures with distinct reasons; applies +1 and revokes dropped devices', async () => {
    const c = await curves();
    const u = await registerUser();
    const d2 = await makeTestDevice(c, rng, u.keys.identity, u.userId, 'second');
    const sign = (version: number, devices = [u.device.certificate, d2.certificate]) =>
      signDeviceList(c, u.keys.identity, { userId: u.userId, version, devices }).then(encodeDeviceList);
    const reason = async (p: Promise<unknown>) => {
      try {
        await p;
        return 'accepted';
      } catch (e) {
        return (e as { details?: { reason?: string } }).details?.reason;
      }
    };
    const ik = u.keys.identity.publicKey;
    expect(await reason(applyDeviceList(db(), u.userId, ik, u.deviceListBytes, await sign(1)))).toBe('rollback');
    expect(await reason(applyDeviceList(db(), u.userId, ik, u.deviceListBytes, await sign(3)))).toBe('skipped_version');
    const stranger = await newIdentity(u.userId, 2);
    expect(await reason(applyDeviceList(db(), u.userId, ik, u.deviceListBytes, stranger.listBytes))).toBe(
      'identity_mismatch',
    );
    const tampered = await sign(2);
    tampered[tampered.length - 1]! ^= 1;
    expect(await reason(applyDeviceList(db(), u.userId, ik, u.deviceListBytes, tampered))).toBe('bad_signature');
    expect(await reason(applyDeviceList(db(), 'someone-else', ik, u.deviceListBytes, await sign(2)))).toBe(
      'wrong_user',
    );
    expect(await reason(applyDeviceList(db(), u.userId, ik, u.deviceListBytes, rng(40)))).toBe('decode');

    const v2 = await sign(2);
    const add = await applyDeviceList(db(), u.userId, ik, u.deviceListBytes, v2);
    expect(add.added.map((d) => d.deviceId)).toEqual(['second']);
    await db().batch(add.statements);
    // Drop the original device: revoked, its sessions end.
    const v3 = await sign(3, [d2.certificate]);
    const drop = await applyDeviceList(db(), u.userId, ik, v2, v3);
    expect(drop.revoked).toEqual([u.deviceId]);
    await db().batch(drop.statements);
    expect((await json(await api('/api/auth/session', { method: 'GET', token: u.accessToken }))).error).toMatchObject({
      code: 'session_revoked',
      reason: 'device_revoked',
    });
    // A stale update (based on v2) now loses the compare-and-swap and rolls back as a whole.
    const d3 = await makeTestDevice(c, rng, u.keys.identity, u.userId, 'third');
    const stale = await applyDeviceList(db(), u.userId, ik, v2, await sign(3, [d2.certificate, d3.certificate]));
    await expect(db().batch(stale.statements)).rejects.toThrow();
    const devs = await db().select().from(schema.devices).where(eq(schema.devices.userId, u.userId)).all();
    expect(devs.map((d) => d.deviceId).sort()).toEqual([u.deviceId, 'second'].sort());
    // A revoked device id cannot come back.
    const revive = await sign(4, [d2.certificate, u.device.certificate]);
    expect(await reason(applyDeviceList(db(), u.userId, ik, v3, revive))).toBe('device_id_reused');
  });
});

describe('challenge helper', () => {
  it('a challenge is consumed even by a failed attempt (signature over another challenge)', async () => {
    const u = await registerUser();
    const ip = freshIp();
    const { challengeId } = await getChallenge(ip);
    const body = { ...(await loginBody(u, { ip })), challengeId };
    await api('/api/auth/login', { body, ip });
    const again = await api('/api/auth/login', { body, ip });
    expect((await json(again)).error?.code).toBe('invalid_challenge');
  });
});
