/**
 * Issue 12 (hardening from an outside probe): each attack the probe found, named after the attack, and the
 * fix's effect. Rate-limit, lockout and flood attacks live further down in this file; the GraphQL cost
 * attacks in worker/graphql-cost.test.ts.
 */
import { createExecutionContext, runDurableObjectAlarm, waitOnExecutionContext } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { fromB64u, toB64u, utf8 } from '../web/src/protocol/bytes.js';
import { generateEd25519 } from '../web/src/protocol/keys.js';
import { entryHash, type MembershipEntry, type MembershipState } from '../web/src/protocol/membership.js';
import { hmacSha256 } from '../web/src/protocol/primitives.js';
import { makeTestDevice } from '../web/src/protocol/testing.js';
import { app } from './app.js';
import { totpCodeAt } from './auth/totp.js';
import { addressPrefix } from './context.js';
import type { Env } from './env.js';
import { limiterFor } from './limiter.js';
import { DEFAULT_RATE_LIMITS, LIMITS } from './limits.js';
import { secretBytes } from './secrets.js';
import { api as dirApi, enc, entry, type Fixture, makeUser } from './test/directory-fixtures.js';
import {
  api,
  curves,
  enableTotp,
  freshIp,
  freshName,
  loginBody,
  mfaToken,
  newIdentity,
  type RegisteredUser,
  refreshCookie,
  registerUser,
  registrationBody,
  rng,
  signedChallenge,
  wrongPasswordLogin,
} from './test/fixtures.js';

/** The login bucket's key of a username (routes/auth.ts accountKey: a keyed hash of the normalised name). */
const accountKeyOf = (name: string) =>
  `acct:${toB64u(hmacSha256(secretBytes(env as Env, 'TOKEN_HASH_KEY'), utf8(`account:${name}`))).slice(0, 22)}`;

describe('item 8: the small ones', () => {
  it('a mailbox ack with a non-JSON Content-Type is refused with 415 like every other JSON route', async () => {
    const u = await registerUser();
    const body = JSON.stringify({ acks: [{ conversationId: 'c_x', upTo: 1 }] });
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', null]) {
      const res = await api('/api/mailbox/ack', { raw: body, contentType: type, token: u.accessToken, ip: u.ip });
      expect(res.status, String(type)).toBe(415);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unsupported_media_type');
    }
    const ok = await api('/api/mailbox/ack', { raw: body, token: u.accessToken, ip: u.ip });
    expect(ok.status).toBe(204);
  });

  it('an Authorization header with a lower-case `bearer` scheme (RFC 9110) authenticates', async () => {
    const u = await registerUser();
    for (const scheme of ['bearer', 'BEARER', 'Bearer']) {
      const res = await api('/api/auth/session', {
        method: 'GET',
        headers: { authorization: `${scheme} ${u.accessToken}` },
        ip: u.ip,
      });
      expect(res.status, scheme).toBe(200);
      await res.arrayBuffer();
    }
    const gql = await api('/graphql', {
      body: { query: '{ viewer { id } }' },
      headers: { authorization: `bearer ${u.accessToken}` },
      ip: u.ip,
    });
    expect(((await gql.json()) as { data: { viewer: { id: string } } }).data.viewer.id).toBe(u.userId);
  });

  it('a GraphQL subscription operation is a 400 request error, as the docs promise for validation errors', async () => {
    const u = await registerUser();
    const res = await api('/graphql', {
      body: { query: 'subscription { viewer { id } }' },
      token: u.accessToken,
      ip: u.ip,
    });
    expect(res.status).toBe(400);
    const b = (await res.json()) as { errors: { extensions: { code: string } }[]; data?: unknown };
    expect(b.errors[0]!.extensions.code).toBe('BAD_REQUEST');
    expect(b.data).toBeUndefined();
  });
});

// ---- item 3: unconsented group floods ------------------------------------------------------------------

/** The app with the DEFAULT rate limits (the pool raises conversationCreate / memberAdd for other tests). */
async function defaultLimits(path: string, token: string, body: unknown): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await app.fetch(
    new Request(`https://app.example${path}`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Authorization: `Bearer ${token}`,
        'cf-connecting-ip': '192.0.2.77',
      },
      body: JSON.stringify(body),
    }),
    { ...env, RATE_LIMITS: '' } as Env,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return res;
}

let groupSeq = 0;
async function groupWith(owner: Fixture, targets: string[]): Promise<string[]> {
  const id = `flood${++groupSeq}_${owner.userId.slice(-6)}`;
  const entries: MembershipEntry[] = [await entry(owner, null, id, { action: 'create', title: 'You won a prize' })];
  for (const t of targets) {
    const prev = entries[entries.length - 1]!;
    const state: MembershipState = {
      conversationId: id,
      members: new Map(),
      title: '',
      headHash: entryHash(prev),
      seq: prev.seq,
    };
    entries.push(await entry(owner, state, id, { action: 'add', target: t, role: 'member' }));
  }
  return entries.map(enc);
}

describe('item 3: unconsented group floods', () => {
  it('a stranger putting a victim into group after group is refused after 30 creations an hour, with Retry-After', async () => {
    const attacker = await makeUser('flooder');
    const victim = await makeUser('floodvictim');
    const token = await attacker.token();
    const limit = DEFAULT_RATE_LIMITS.conversationCreate.limit;
    for (let i = 0; i < limit; i++) {
      const res = await defaultLimits('/api/conversations', token, {
        kind: 'group',
        entries: await groupWith(attacker, [victim.userId]),
      });
      expect(res.status, `creation ${i}`).toBe(201);
    }
    const refused = await defaultLimits('/api/conversations', token, {
      kind: 'group',
      entries: await groupWith(attacker, [victim.userId]),
    });
    expect(refused.status).toBe(429);
    const body = (await refused.json()) as { error: { code: string; retryAfterSec: number } };
    expect(body.error.code).toBe('rate_limited');
    expect(body.error.retryAfterSec).toBeGreaterThan(0);
    expect(refused.headers.get('retry-after')).toBe(String(body.error.retryAfterSec));
    // The victim is in exactly the groups that were accepted.
    const n = await env.DB.prepare('SELECT count(*) AS n FROM members WHERE user_id = ?')
      .bind(victim.userId)
      .first<{ n: number }>();
    expect(n?.n).toBe(limit);
  });

  it('member additions count per account (a 64-entry create is 63 adds): the fifth such create is refused', async () => {
    const attacker = await makeUser('addflood');
    const token = await attacker.token();
    const targets = Array.from({ length: 63 }, (_, i) => `u_nobody_${i}`);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++)
      statuses.push(
        (
          await defaultLimits('/api/conversations', token, {
            kind: 'group',
            entries: await groupWith(attacker, targets),
          })
        ).status,
      );
    // Unknown users (422) still count: every attempted addition does.
    expect(statuses).toEqual([422, 422, 422, 422, 429]);
  });

  it('an account at the conversation ceiling cannot be put into another conversation, by create or by add', async () => {
    const owner = await makeUser('ceilowner');
    const full = await makeUser('ceilfull');
    const stmts: D1PreparedStatement[] = [];
    for (let i = 0; i < LIMITS.maxConversationsPerAccount; i++) {
      const id = `ceil_${full.userId.slice(-8)}_${i}`;
      stmts.push(
        env.DB.prepare('INSERT INTO conversations (id, kind, head_seq, head_hash) VALUES (?, ?, 0, ?)').bind(
          id,
          'group',
          new Uint8Array(32),
        ),
        env.DB.prepare('INSERT INTO members (conversation_id, user_id, role, joined_seq) VALUES (?, ?, ?, 0)').bind(
          id,
          full.userId,
          'owner',
        ),
      );
    }
    for (let i = 0; i < stmts.length; i += 90) await env.DB.batch(stmts.slice(i, i + 90));
    const create = await dirApi('/api/conversations', await owner.token(), {
      method: 'POST',
      json: { kind: 'group', entries: await groupWith(owner, [full.userId]) },
    });
    expect(create.status).toBe(409);
    const body = (await create.json()) as { error: { code: string; userId: string; limit: number } };
    expect(body.error).toMatchObject({
      code: 'too_many_conversations',
      userId: full.userId,
      limit: LIMITS.maxConversationsPerAccount,
    });
    // By a later add: the group exists, the add is refused and nothing changes.
    const created = await dirApi('/api/conversations', await owner.token(), {
      method: 'POST',
      json: { kind: 'group', entries: await groupWith(owner, []) },
    });
    const conv = (await created.json()) as { id: string; headSeq: number; headHash: string };
    const state: MembershipState = {
      conversationId: conv.id,
      members: new Map([[owner.userId, 'owner']]),
      title: '',
      headHash: fromB64u(conv.headHash),
      seq: conv.headSeq,
    };
    const add = await dirApi(`/api/conversations/${conv.id}/log`, await owner.token(), {
      method: 'POST',
      json: { entry: enc(await entry(owner, state, conv.id, { action: 'add', target: full.userId, role: 'member' })) },
    });
    expect(add.status).toBe(409);
    expect(((await add.json()) as { error: { code: string } }).error.code).toBe('too_many_conversations');
    // And the full account cannot create one itself.
    const own = await dirApi('/api/conversations', await full.token(), {
      method: 'POST',
      json: { kind: 'group', entries: await groupWith(full, []) },
    });
    expect(own.status).toBe(409);
  });
});

// ---- item 2: sign-in lockout by strangers; item 4: one address, many people -----------------------------

/** A login body from a device of the attacker's (a fresh key, valid challenge, right username). */
async function strangerLogin(u: RegisteredUser, prehash = toB64u(rng(32)), ip = freshIp()) {
  const c = await curves();
  const identity = await generateEd25519(c, rng);
  const dev = await makeTestDevice(c, rng, identity, u.userId, `d_stranger_${freshName('x')}`);
  return api('/api/auth/login', {
    ip,
    body: {
      username: u.username,
      passwordPrehash: prehash,
      deviceId: dev.deviceId,
      ...(await signedChallenge({ signing: dev.signing, deviceId: dev.deviceId }, u.userId, ip)),
    },
  });
}

describe('item 2: a stranger cannot lock a user out of sign-in', () => {
  it('logins with the victim’s username and made-up challenge ids do not count against the account', async () => {
    const victim = await registerUser();
    for (let i = 0; i < 15; i++) {
      const res = await api('/api/auth/login', {
        ip: freshIp(),
        body: {
          username: victim.username,
          passwordPrehash: toB64u(rng(32)),
          deviceId: 'd1',
          challengeId: toB64u(rng(32)),
          challengeSignature: toB64u(rng(64)),
        },
      });
      expect((await res.json()) as { error: { code: string } }).toMatchObject({ error: { code: 'invalid_challenge' } });
    }
    const ip = freshIp();
    const owner = await api('/api/auth/login', { body: await loginBody(victim, { ip }), ip });
    expect(owner.status).toBe(200);
    // And a new browser (no device of the account) is not limited either: the account has no failures.
    expect((await strangerLogin(victim, victim.prehash)).status).toBe(403); // device_not_linked, not 429
  });

  it('a stranger’s failed password guesses stop new browsers, never the owner’s device, password change or identity reset', async () => {
    const victim = await registerUser();
    for (let i = 0; i < DEFAULT_RATE_LIMITS.login.limit; i++) expect((await strangerLogin(victim)).status).toBe(401);
    const blocked = await strangerLogin(victim);
    expect(blocked.status).toBe(429);
    expect(blocked.headers.get('retry-after')).toMatch(/^\d+$/);
    // The owner's device proves its key: it signs in.
    const ip = freshIp();
    const owner = await api('/api/auth/login', { body: await loginBody(victim, { ip }), ip });
    expect(owner.status).toBe(200);
    const { accessToken } = (await owner.json()) as { accessToken: string };
    // Password change re-proves the password on the signed-in device: its own bucket.
    const newPrehash = toB64u(rng(32));
    const change = await api('/api/auth/password', {
      token: accessToken,
      body: { currentPrehash: victim.prehash, newPrehash },
      ip,
    });
    expect(change.status).toBe(200);
    // Identity reset from a browser with nothing: its own bucket, so the stranger's failures do not block it.
    const list = (await api('/api/devices', { method: 'GET', token: accessToken, ip }).then((r) => r.json())) as {
      deviceList: { version: number };
    };
    const n = await newIdentity(victim.userId, list.deviceList.version + 1);
    const reset = await api('/api/auth/reset-identity', {
      ip,
      body: {
        username: victim.username,
        passwordPrehash: newPrehash,
        userIdentityKey: toB64u(n.identity.publicKey),
        deviceList: toB64u(n.listBytes),
        deviceId: n.deviceId,
        ...(await signedChallenge({ signing: n.device.signing, deviceId: n.deviceId }, victim.userId, ip)),
      },
    });
    expect(reset.status).toBe(200);
  });

  it('a device that proves its key is limited on its own failures only', async () => {
    const u = await registerUser();
    const wrong = () => wrongPasswordLogin(u);
    for (let i = 0; i < DEFAULT_RATE_LIMITS.loginDevice.limit; i++) expect((await wrong()).status).toBe(401);
    expect((await wrong()).status).toBe(429);
    // The account's bucket (new browsers) is untouched: a correct password from a new browser is not refused.
    expect((await strangerLogin(u, u.prehash)).status).toBe(403);
  });
});

describe('item 4 / issue 13 item 6: successes do not count, one address is not one attacker', () => {
  it('thirty people behind one address all sign in (only failures count per address)', async () => {
    const ip = freshIp();
    const people = await Promise.all(Array.from({ length: 30 }, () => registerUser(freshName(), freshIp())));
    for (const p of people) {
      const res = await api('/api/auth/login', { body: await loginBody(p, { ip }), ip });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
  });

  it('a household registers more than five accounts from one address; failed registrations are limited there', async () => {
    const ip = freshIp();
    for (let i = 0; i < 8; i++) expect((await registerUser(freshName(), ip)).userId).toMatch(/^u_/);
    const taken = await registerUser(freshName(), freshIp());
    const limit = DEFAULT_RATE_LIMITS.register.limit;
    for (let i = 0; i < limit; i++) {
      const r = await registrationBody(taken.username, ip);
      expect((await api('/api/auth/register', { body: r.body, ip })).status).toBe(409);
    }
    const r = await registrationBody(taken.username, ip);
    const refused = await api('/api/auth/register', { body: r.body, ip });
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { retryAfterSec: number } }).error.retryAfterSec).toBeGreaterThan(0);
  });

  it('TOTP enrolment plus a few typos does not lock the user out: only wrong codes count', async () => {
    const u = await registerUser();
    const { secret } = await enableTotp(u);
    const token = await mfaToken(u);
    for (let i = 0; i < DEFAULT_RATE_LIMITS.totp.limit - 1; i++) {
      const res = await api('/api/auth/totp', { ip: freshIp(), body: { mfaToken: token, code: '000000' } });
      expect(res.status).toBe(401);
    }
    const ok = await api('/api/auth/totp', {
      ip: freshIp(),
      body: { mfaToken: token, code: totpCodeAt(secret, Date.now() + 30_000) },
    });
    expect(ok.status).toBe(200);
  });
});

describe('item 6: draining one-time prekeys', () => {
  it('one claimer may claim one user’s bundles 10 times an hour; other claimers are not affected', async () => {
    const target = await registerUser();
    const stranger = await registerUser();
    const friend = await registerUser();
    const claim = (u: RegisteredUser) =>
      api('/api/keys/claim', { token: u.accessToken, body: { userId: target.userId }, ip: freshIp() });
    for (let i = 0; i < DEFAULT_RATE_LIMITS.claimPair.limit; i++) expect((await claim(stranger)).status).toBe(200);
    const refused = await claim(stranger);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    expect((await claim(friend)).status).toBe(200);
  });
});

describe('item 7: sign-in timing does not tell which names signed in recently', () => {
  it('a known name that just signed in and a never-seen name touch the same limiter object, which keeps nothing for a success', async () => {
    const u = await registerUser();
    const ip = freshIp();
    expect((await api('/api/auth/login', { body: await loginBody(u, { ip }), ip })).status).toBe(200);
    const unknownName = freshName('never');
    const known = accountKeyOf(u.username);
    const unknown = accountKeyOf(unknownName);
    const a = limiterFor(env, 'login', known);
    const b = limiterFor(env, 'login', unknown);
    expect(a.stub.id.toString()).toBe(b.stub.id.toString());
    expect(await a.stub.count(known)).toBe(0);
    // A failed attempt for either name is recorded in that one object, the same way.
    await strangerLogin(u);
    await api('/api/auth/login', {
      ip: freshIp(),
      body: { ...(await loginBody(u)), username: unknownName, passwordPrehash: toB64u(rng(32)) },
    });
    expect(await a.stub.count(known)).toBe(1);
    expect(await b.stub.count(unknown)).toBe(1);
  });
});

describe('item 8: challenges, IPv6 prefixes, limiter clean-up, TOTP through identity reset', () => {
  it('POST /api/auth/challenge is limited per client address (each call writes a row)', async () => {
    const ip = freshIp();
    for (let i = 0; i < DEFAULT_RATE_LIMITS.challenge.limit; i++)
      expect((await api('/api/auth/challenge', { ip })).status).toBe(200);
    const res = await api('/api/auth/challenge', { ip });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
  });

  it('addresses of one IPv6 /64 share the per-address limits; the next /64 does not', async () => {
    const limit = DEFAULT_RATE_LIMITS.challenge.limit;
    for (let i = 0; i < limit; i++)
      expect((await api('/api/auth/challenge', { ip: `2001:db8:aa:1:${(i + 1).toString(16)}::${i}` })).status).toBe(
        200,
      );
    expect((await api('/api/auth/challenge', { ip: '2001:0db8:00aa:0001:ffff:1:2:3' })).status).toBe(429);
    expect((await api('/api/auth/challenge', { ip: '2001:db8:aa:2::1' })).status).toBe(200);
    expect(addressPrefix('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressPrefix('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(addressPrefix('198.51.100.7')).toBe('198.51.100.7');
  });

  it('limiter state for a never-seen name is deleted once its window has passed', async () => {
    const key = accountKeyOf(freshName('gone'));
    const { stub } = limiterFor(env, 'login', key);
    const before = await stub.storedKeys();
    await stub.hit(key, 10, 50); // a 50 ms window
    expect(await stub.storedKeys()).toBe(before + 1);
    await new Promise((r) => setTimeout(r, 120));
    await runDurableObjectAlarm(stub);
    expect(await stub.count(key)).toBe(0);
    expect(await stub.storedKeys()).toBeLessThanOrEqual(before);
  });

  it('TOTP guesses through identity reset use the TOTP bucket, not the login one', async () => {
    const u = await registerUser();
    await enableTotp(u);
    const attempt = async () => {
      const ip = freshIp();
      const n = await newIdentity(u.userId, 2);
      return api('/api/auth/reset-identity', {
        ip,
        body: {
          username: u.username,
          passwordPrehash: u.prehash,
          userIdentityKey: toB64u(n.identity.publicKey),
          deviceList: toB64u(n.listBytes),
          deviceId: n.deviceId,
          code: '000000',
          ...(await signedChallenge({ signing: n.device.signing, deviceId: n.deviceId }, u.userId, ip)),
        },
      });
    };
    for (let i = 0; i < DEFAULT_RATE_LIMITS.totp.limit; i++) expect((await attempt()).status).toBe(401);
    expect((await attempt()).status).toBe(429); // the reset bucket (10) is not full yet: the TOTP one is
  });
});

// ---- item 5: the refresh grace split a session into two chains ------------------------------------------

/** Moves every refresh timestamp of `userId`'s families back by `ms` (the grace window passes). */
async function age(userId: string, ms: number): Promise<void> {
  await env.DB.batch([
    env.DB.prepare(
      'UPDATE refresh_tokens SET rotated_at = rotated_at - ?1, grace_used_at = grace_used_at - ?1 WHERE family_id IN (SELECT id FROM token_families WHERE user_id = ?2)',
    ).bind(ms, userId),
    env.DB.prepare('UPDATE token_families SET generation_at = generation_at - ?1 WHERE user_id = ?2').bind(ms, userId),
  ]);
}
const refresh = async (cookie: string) => {
  const res = await api('/api/auth/refresh', { refresh: cookie });
  const body = (await res.json()) as { error?: { code: string } };
  return { status: res.status, code: body.error?.code, cookie: refreshCookie(res) };
};
const familyRevoked = async (userId: string) =>
  (
    await env.DB.prepare('SELECT revoke_reason AS r FROM token_families WHERE user_id = ?')
      .bind(userId)
      .first<{ r: string | null }>()
  )?.r;

describe('item 5: a replay within the grace window cannot keep a second chain alive', () => {
  for (const order of ['the thief refreshes first', 'the victim refreshes first'] as const) {
    it(`refresh c0→c1, replay c0 within 10 s → c1′; ${order}; reusing the other chain after the window kills the family`, async () => {
      const u = await registerUser();
      const c1 = await refresh(u.cookie); // the victim's browser
      const c1b = await refresh(u.cookie); // the thief's replay of the stolen c0, within the window
      expect([c1.status, c1b.status]).toEqual([200, 200]);
      const [first, other] = order === 'the thief refreshes first' ? [c1b, c1] : [c1, c1b];
      expect((await refresh(first.cookie!)).status).toBe(200); // that chain moves on (c2)
      // Within the window the other sibling is a tab racing: 409, nothing revoked.
      const racing = await refresh(other.cookie!);
      expect([racing.status, racing.code]).toEqual([409, 'refresh_conflict']);
      expect(await familyRevoked(u.userId)).toBeNull();
      await age(u.userId, 11_000);
      const reused = await refresh(other.cookie!);
      expect([reused.status, reused.code]).toEqual([401, 'refresh_reused']);
      expect(await familyRevoked(u.userId)).toBe('refresh_reuse');
    });
  }

  it('the grace re-issue is a sibling of the current successor only: once that moved on, a late replay gets nothing', async () => {
    const u = await registerUser();
    const c1 = await refresh(u.cookie);
    expect((await refresh(c1.cookie!)).status).toBe(200); // c1 → c2: c0's successor is no longer current
    const late = await refresh(u.cookie); // c0 again, still within its window
    expect([late.status, late.code]).toEqual([409, 'refresh_conflict']);
    expect(late.cookie).toBeUndefined();
  });
});
