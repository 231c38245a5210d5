/**
 * A second factor (TOTP code or recovery code) is spent together with the operation it unlocks — in the
 * same D1 batch (sign-in step, identity reset, TOTP disable) or spent first and put back when the operation
 * fails (account deletion). A concurrent request that wins, or a refusal after the code was checked, leaves
 * the code unspent: the user does not lose a recovery code to an operation that did not happen.
 */
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { and, eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { toB64u } from '../web/src/protocol/bytes.js';
import { tokenHash } from './auth/tokens.js';
import { canonicalRecoveryCode, totpCodeAt } from './auth/totp.js';
import { makeDb, schema } from './db.js';
import worker from './index.js';
import {
  api,
  BASE,
  enableTotp,
  freshIp,
  mfaToken,
  newIdentity,
  type RegisteredUser,
  registerUser,
  signedChallenge,
} from './test/fixtures.js';

const db = () => makeDb(env);

/** Whether the recovery code has been spent (used_at set). */
async function spent(u: RegisteredUser, code: string): Promise<boolean> {
  const row = await db()
    .select({ usedAt: schema.recoveryCodes.usedAt })
    .from(schema.recoveryCodes)
    .where(
      and(
        eq(schema.recoveryCodes.userId, u.userId),
        eq(schema.recoveryCodes.codeHash, tokenHash(env, canonicalRecoveryCode(code), 'recovery')),
      ),
    )
    .get();
  if (!row) throw new Error('no such recovery code');
  return row.usedAt !== null;
}

const lastStep = async (u: RegisteredUser) =>
  (await db().select().from(schema.totpSecrets).where(eq(schema.totpSecrets.userId, u.userId)).get())!.lastStep;

const code = async (res: Response) => ((await res.clone().json()) as { error?: { code: string } }).error?.code;

/** An identity-reset body for `u` (a new identity and device, version 2), with `factor`. */
async function resetBody(u: RegisteredUser, ip: string, factor: Record<string, string>) {
  const fresh = await newIdentity(u.userId, 2);
  return {
    username: u.username,
    passwordPrehash: u.prehash,
    userIdentityKey: toB64u(fresh.identity.publicKey),
    deviceList: toB64u(fresh.listBytes),
    deviceId: fresh.deviceId,
    ...(await signedChallenge(fresh.device, u.userId, ip)),
    ...factor,
  };
}

/** Calls the Worker with D1 writes whose SQL contains `match` failing (worker/faults.ts). */
async function withFailingWrites(match: string, path: string, init: RequestInit): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request(`${BASE}${path}`, init),
    { ...env, APP_ENV: 'development', E2E_CHAT_FAULTS: JSON.stringify({ d1WriteFailRate: 1, match }) },
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return res;
}

describe('sign-in step (POST /api/auth/totp)', () => {
  it('two concurrent steps with one MFA token and two recovery codes: one signs in, the other code stays unspent', async () => {
    const u = await registerUser();
    const { recoveryCodes } = await enableTotp(u);
    const mfa = await mfaToken(u);
    const [a, b] = [recoveryCodes[0]!, recoveryCodes[1]!];
    const res = await Promise.all(
      [a, b].map((rc) => api('/api/auth/totp', { body: { mfaToken: mfa, recoveryCode: rc }, ip: freshIp() })),
    );
    const statuses = res.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 401]);
    const loser = res.findIndex((r) => r.status === 401);
    expect(await code(res[loser]!)).toBe('invalid_mfa_token');
    const [winnerCode, loserCode] = loser === 0 ? [b, a] : [a, b];
    expect(await spent(u, winnerCode)).toBe(true);
    expect(await spent(u, loserCode)).toBe(false);
    // The code the lost race did not spend still signs in.
    const again = await api('/api/auth/totp', {
      body: { mfaToken: await mfaToken(u), recoveryCode: loserCode },
      ip: freshIp(),
    });
    expect(again.status).toBe(200);
    expect(await spent(u, loserCode)).toBe(true);
  });

  it('one recovery code sent twice at once signs in once; a session is opened once', async () => {
    const u = await registerUser();
    const { recoveryCodes } = await enableTotp(u);
    const [m1, m2] = [await mfaToken(u), await mfaToken(u)];
    const rc = recoveryCodes[2]!;
    const res = await Promise.all(
      [m1, m2].map((m) => api('/api/auth/totp', { body: { mfaToken: m, recoveryCode: rc }, ip: freshIp() })),
    );
    expect(res.map((r) => r.status).sort()).toEqual([200, 401]);
    expect(await code(res.find((r) => r.status === 401)!)).toBe('invalid_recovery_code');
    const families = await db()
      .select()
      .from(schema.tokenFamilies)
      .where(eq(schema.tokenFamilies.userId, u.userId))
      .all();
    expect(families).toHaveLength(2); // registration + the one sign-in
  });
});

describe('identity reset (POST /api/auth/reset-identity)', () => {
  it('a reset refused after the code was checked (its batch fails) leaves the recovery code and the TOTP code unspent', async () => {
    const u = await registerUser();
    const { secret, recoveryCodes } = await enableTotp(u);
    const rc = recoveryCodes[4]!;
    const stepBefore = await lastStep(u);
    // The reset's batch (it bumps identity_version) fails after the factor check passed.
    const factors: Record<string, string>[] = [{ recoveryCode: rc }, { code: totpCodeAt(secret, Date.now() + 30_000) }];
    for (const factor of factors) {
      const ip = freshIp();
      const res = await withFailingWrites('identity_version', '/api/auth/reset-identity', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'cf-connecting-ip': ip },
        body: JSON.stringify(await resetBody(u, ip, factor)),
      });
      expect(res.status).toBe(500);
    }
    expect(await spent(u, rc)).toBe(false);
    expect(await lastStep(u)).toBe(stepBefore);
    const user = await db().select().from(schema.users).where(eq(schema.users.id, u.userId)).get();
    expect(user!.identityVersion).toBe(1);
    // The same recovery code then resets the identity, and is spent by it.
    const ip = freshIp();
    const ok = await api('/api/auth/reset-identity', { ip, body: await resetBody(u, ip, { recoveryCode: rc }) });
    expect(ok.status, await ok.clone().text()).toBe(200);
    expect(await spent(u, rc)).toBe(true);
  });

  it('two concurrent resets with two recovery codes: one resets, the loser’s code stays unspent', async () => {
    const u = await registerUser();
    const { recoveryCodes } = await enableTotp(u);
    const [a, b] = [recoveryCodes[5]!, recoveryCodes[6]!];
    const ips = [freshIp(), freshIp()];
    const bodies = await Promise.all([a, b].map((rc, i) => resetBody(u, ips[i]!, { recoveryCode: rc })));
    const res = await Promise.all(bodies.map((body, i) => api('/api/auth/reset-identity', { ip: ips[i], body })));
    const ok = res.filter((r) => r.status === 200);
    expect(ok).toHaveLength(1);
    const loser = res.findIndex((r) => r.status !== 200);
    expect([409, 422]).toContain(res[loser]!.status); // device_list_conflict, or the list is stale by then
    const winner = 1 - loser;
    expect(await spent(u, [a, b][winner]!)).toBe(true);
    expect(await spent(u, [a, b][loser]!)).toBe(false);
  });
});

describe('account deletion (POST /api/account/delete)', () => {
  it('a deletion that fails after the code was checked puts the recovery code back; the retry deletes with it', async () => {
    const u = await registerUser();
    const { recoveryCodes } = await enableTotp(u);
    const rc = recoveryCodes[7]!;
    const body = JSON.stringify({ passwordPrehash: u.prehash, leave: [], recoveryCode: rc });
    const init = () => ({
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${u.accessToken}`,
        'cf-connecting-ip': freshIp(),
      },
      body,
    });
    // The deletion batch (it blocks the username) fails after the code was spent.
    const failed = await withFailingWrites('released_usernames', '/api/account/delete', init());
    expect(failed.status).toBe(500);
    expect(await spent(u, rc)).toBe(false);
    const ok = await api('/api/account/delete', {
      token: u.accessToken,
      body: JSON.parse(body),
      ip: freshIp(),
    });
    expect(ok.status, await ok.clone().text()).toBe(200);
    expect(await db().select().from(schema.users).where(eq(schema.users.id, u.userId)).all()).toEqual([]);
  });
});

describe('TOTP disable (POST /api/auth/totp/disable)', () => {
  it('one code sent twice at once disables once; the other is told the code was used', async () => {
    const u = await registerUser();
    const { secret } = await enableTotp(u);
    const c = totpCodeAt(secret, Date.now() + 30_000);
    const res = await Promise.all(
      [0, 1].map(() => api('/api/auth/totp/disable', { token: u.accessToken, body: { code: c }, ip: freshIp() })),
    );
    expect(res.map((r) => r.status).sort()).toEqual([200, 401]);
    expect(await code(res.find((r) => r.status === 401)!)).toBe('totp_code_used');
    const audit = await db()
      .select()
      .from(schema.auditEvents)
      .where(and(eq(schema.auditEvents.userId, u.userId), eq(schema.auditEvents.event, 'totp_disabled')))
      .all();
    expect(audit).toHaveLength(1);
  });
});
