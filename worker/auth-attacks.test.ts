/**
 * The auth attack matrix: PITFALLS 22 (token forgery, refresh reuse), 23 (rate limits, TOTP replay),
 * 24 (HTTP input limits, no partial writes), 26 (no string-built SQL), username enumeration, and a scan of
 * every D1 column for secrets in clear.
 */
import { env } from 'cloudflare:workers';
import { eq } from 'drizzle-orm';
import { decodeJwt, SignJWT } from 'jose';
import * as OTPAuth from 'otpauth';
import { describe, expect, it } from 'vitest';
import { fromB64u, toB64u } from '../web/src/protocol/bytes.js';
import { AUDIENCE, ISSUER } from './auth/tokens.js';
import { canonicalRecoveryCode, totpCodeAt } from './auth/totp.js';
import { makeDb, schema } from './db.js';
import { DEFAULT_RATE_LIMITS } from './limits.js';
import { jwtKeys } from './secrets.js';
import { canonical, dumpAll, findInD1 } from './test/d1.js';
import {
  api,
  enableTotp,
  freshIp,
  freshName,
  getChallenge,
  loginBody,
  mfaToken,
  type RegisteredUser,
  refreshCookie,
  registerUser,
  registrationBody,
  rng,
  wrongPasswordLogin,
} from './test/fixtures.js';

type Json = Record<string, unknown> & { error?: { code: string; message: string; fields?: string[] } };
const json = async (res: Response) => (await res.json()) as Json;
const session = (token: string) => api('/api/auth/session', { method: 'GET', token });
const fakeChallengeId = () => toB64u(rng(32));

describe('PITFALLS 22: access tokens', () => {
  const claimsOf = (u: RegisteredUser) => {
    const p = decodeJwt(u.accessToken);
    return { did: p.did as string, fam: p.fam as string, sub: u.userId };
  };
  const sign = (
    u: RegisteredUser,
    o: { alg?: string; kid?: string; key?: Uint8Array; aud?: string; iss?: string; exp?: number; iat?: number } = {},
  ) => {
    const [k] = jwtKeys(env);
    const now = Math.floor(Date.now() / 1000);
    const c = claimsOf(u);
    return new SignJWT({ did: c.did, fam: c.fam })
      .setProtectedHeader({ alg: o.alg ?? 'HS256', kid: o.kid ?? k!.kid, typ: 'at+jwt' })
      .setSubject(c.sub)
      .setIssuer(o.iss ?? ISSUER)
      .setAudience(o.aud ?? AUDIENCE)
      .setIssuedAt(o.iat ?? now)
      .setExpirationTime(o.exp ?? now + 600)
      .sign(o.key ?? k!.key);
  };

  it('a correctly forged token works (control), every broken variant is 401 invalid_token', async () => {
    const u = await registerUser();
    expect((await session(await sign(u))).status).toBe(200);
    const [k] = jwtKeys(env);
    const now = Math.floor(Date.now() / 1000);
    const c = claimsOf(u);
    const b64 = (o: unknown) => toB64u(new TextEncoder().encode(JSON.stringify(o)));
    const body = { sub: c.sub, did: c.did, fam: c.fam, iss: ISSUER, aud: AUDIENCE, iat: now, exp: now + 600 };
    const valid = await sign(u);
    const [h, p, s] = valid.split('.') as [string, string, string];
    const flipped = s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11);
    const variants: Record<string, string> = {
      'alg none': `${b64({ alg: 'none', typ: 'at+jwt', kid: k!.kid })}.${b64(body)}.`,
      'alg none with signature': `${b64({ alg: 'none', typ: 'at+jwt', kid: k!.kid })}.${b64(body)}.${s}`,
      HS512: await sign(u, { alg: 'HS512', key: new Uint8Array([...k!.key, ...k!.key]) }),
      'bad signature': `${h}.${p}.${flipped}`,
      'payload swapped under a valid signature': `${h}.${b64({ ...body, sub: 'someone-else' })}.${s}`,
      'wrong audience': await sign(u, { aud: 'e2e-chat/other' }),
      'wrong issuer': await sign(u, { iss: 'evil' }),
      expired: await sign(u, { iat: now - 1200, exp: now - 600 }),
      'unknown kid': await sign(u, { kid: 'nope' }),
      'signed with an unknown key': await sign(u, { key: rng(32) }),
    };
    for (const [name, token] of Object.entries(variants)) {
      const res = await session(token);
      expect(res.status, name).toBe(401);
      expect((await json(res)).error?.code, name).toBe('invalid_token');
    }
    // Every configured key verifies (rotation), not just the first.
    const second = jwtKeys(env)[1]!;
    expect((await session(await sign(u, { kid: second.kid, key: second.key }))).status).toBe(200);
  });
});

describe('PITFALLS 22: refresh-token reuse', () => {
  it('a rotated token presented after the grace window revokes the whole family', async () => {
    const u = await registerUser();
    const first = await api('/api/auth/refresh', { refresh: u.cookie });
    expect(first.status).toBe(200);
    const { accessToken } = (await first.json()) as { accessToken: string };
    const successor = refreshCookie(first)!;
    // Age the rotation past LIMITS.refreshGraceMs (10 s).
    await env.DB.prepare(
      'UPDATE refresh_tokens SET rotated_at = rotated_at - 60000 WHERE rotated_at IS NOT NULL',
    ).run();
    const reuse = await api('/api/auth/refresh', { refresh: u.cookie });
    expect(reuse.status).toBe(401);
    expect((await json(reuse)).error?.code).toBe('refresh_reused');
    expect(reuse.headers.getSetCookie().join()).toMatch(/__Host-e2e_refresh=;/);
    // Everything in the family is dead: both access tokens and the successor refresh token.
    for (const t of [u.accessToken, accessToken])
      expect((await json(await session(t))).error?.code).toBe('session_revoked');
    expect((await json(await api('/api/auth/refresh', { refresh: successor }))).error?.code).toBe('session_revoked');
    const audit = await makeDb(env)
      .select()
      .from(schema.auditEvents)
      .where(eq(schema.auditEvents.userId, u.userId))
      .all();
    expect(audit.map((a) => a.event)).toContain('refresh_reuse');
    const fam = await makeDb(env)
      .select()
      .from(schema.tokenFamilies)
      .where(eq(schema.tokenFamilies.userId, u.userId))
      .get();
    expect(fam?.revokeReason).toBe('refresh_reuse');
  });

  it('within the grace window a concurrent refresh is honoured with a fresh token of the same family; the chain goes on from either', async () => {
    const u = await registerUser();
    const [a, b] = await Promise.all([
      api('/api/auth/refresh', { refresh: u.cookie }),
      api('/api/auth/refresh', { refresh: u.cookie }),
    ]);
    expect([a.status, b.status]).toEqual([200, 200]);
    const tokens = [refreshCookie(a), refreshCookie(b)];
    expect(new Set(tokens).size).toBe(2);
    // The browser's cookie jar keeps one of them; that one refreshes on. (The other: worker/hardening.test.ts.)
    expect((await api('/api/auth/refresh', { refresh: tokens[1]! })).status).toBe(200);
    const fams = await makeDb(env)
      .select()
      .from(schema.tokenFamilies)
      .where(eq(schema.tokenFamilies.userId, u.userId))
      .all();
    expect(fams).toHaveLength(1);
    expect(fams[0]!.revokedAt).toBeNull();
  });

  it('replaying a rotated token within the grace window re-issues at most once; concurrent replays cannot both get a token', async () => {
    const u = await registerUser();
    const first = await api('/api/auth/refresh', { refresh: u.cookie });
    expect(first.status).toBe(200);
    const replays = await Promise.all(Array.from({ length: 4 }, () => api('/api/auth/refresh', { refresh: u.cookie })));
    const statuses = replays.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 409, 409, 409]);
    for (const r of replays.filter((x) => x.status === 409)) {
      expect((await json(r)).error?.code).toBe('refresh_conflict');
      expect(r.headers.getSetCookie().join()).not.toMatch(/__Host-e2e_refresh=;/); // the shared cookie is kept
    }
    const live = await env.DB.prepare(
      'SELECT count(*) AS n FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id WHERE f.user_id = ? AND r.rotated_at IS NULL',
    )
      .bind(u.userId)
      .first<{ n: number }>();
    expect(live?.n).toBe(2); // the successor and the one grace re-issue, not one per replay
    const fam = await makeDb(env)
      .select()
      .from(schema.tokenFamilies)
      .where(eq(schema.tokenFamilies.userId, u.userId))
      .get();
    expect(fam?.revokedAt).toBeNull();
  });
});

describe('PITFALLS 23: rate limits and replay', () => {
  it('login is limited per account (10 / 15 min across client addresses) with Retry-After', async () => {
    const u = await registerUser();
    for (let i = 0; i < 10; i++) {
      const ip = freshIp();
      const res = await api('/api/auth/login', {
        body: { ...(await loginBody(u, { ip })), passwordPrehash: toB64u(rng(32)) },
        ip,
      });
      expect(res.status, `attempt ${i}`).toBe(401);
    }
    const ip = freshIp();
    const res = await api('/api/auth/login', { body: await loginBody(u, { ip }), ip });
    expect(res.status).toBe(429);
    expect((await json(res)).error?.code).toBe('rate_limited');
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('login failures are limited per client address (across usernames), with a higher ceiling than per account', async () => {
    const ip = freshIp();
    const attempt = () =>
      api('/api/auth/login', {
        ip,
        body: {
          username: freshName(),
          passwordPrehash: toB64u(rng(32)),
          deviceId: 'd1',
          challengeId: fakeChallengeId(),
          challengeSignature: toB64u(rng(64)),
        },
      });
    const ceiling = DEFAULT_RATE_LIMITS.loginAddress.limit;
    for (let i = 0; i < ceiling; i++) expect((await attempt()).status).toBe(401);
    const res = await attempt();
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
  });

  it('a successful login resets the account limiter', async () => {
    const u = await registerUser();
    const wrong = () => wrongPasswordLogin(u);
    for (let i = 0; i < 9; i++) expect((await wrong()).status).toBe(401);
    const ip = freshIp();
    expect((await api('/api/auth/login', { body: await loginBody(u, { ip }), ip })).status).toBe(200);
    for (let i = 0; i < 9; i++) expect((await wrong()).status).toBe(401);
  });

  it('TOTP failures are limited per account (5 / 5 min across client addresses); the enrolment code did not count', async () => {
    const u = await registerUser();
    await enableTotp(u);
    const token = await mfaToken(u);
    // The (successful) enrolment confirm does not count: five wrong codes are allowed, the sixth is not.
    for (let i = 0; i < 5; i++) {
      const res = await api('/api/auth/totp', { ip: freshIp(), body: { mfaToken: token, code: '000000' } });
      expect(res.status).toBe(401);
    }
    const res = await api('/api/auth/totp', { ip: freshIp(), body: { mfaToken: token, code: '000000' } });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('TOTP failures are limited per client address (across accounts and tokens)', async () => {
    const ip = freshIp();
    for (let i = 0; i < DEFAULT_RATE_LIMITS.totpAddress.limit; i++) {
      const res = await api('/api/auth/totp', { ip, body: { mfaToken: fakeChallengeId(), code: '123456' } });
      expect((await json(res)).error?.code).toBe('invalid_mfa_token');
    }
    const res = await api('/api/auth/totp', { ip, body: { mfaToken: fakeChallengeId(), code: '123456' } });
    expect(res.status).toBe(429);
  });

  it('a TOTP code is refused the second time even on a new login; a recovery code is single-use', async () => {
    const u = await registerUser();
    const { secret, recoveryCodes } = await enableTotp(u);
    const code = totpCodeAt(secret, Date.now() + 30_000);
    expect((await api('/api/auth/totp', { ip: freshIp(), body: { mfaToken: await mfaToken(u), code } })).status).toBe(
      200,
    );
    const replay = await api('/api/auth/totp', { ip: freshIp(), body: { mfaToken: await mfaToken(u), code } });
    expect((await json(replay)).error?.code).toBe('totp_code_used');
    const rc = recoveryCodes[0]!;
    expect(
      (await api('/api/auth/totp', { ip: freshIp(), body: { mfaToken: await mfaToken(u), recoveryCode: rc } })).status,
    ).toBe(200);
    const again = await api('/api/auth/totp', {
      ip: freshIp(),
      body: { mfaToken: await mfaToken(u), recoveryCode: rc },
    });
    expect((await json(again)).error?.code).toBe('invalid_recovery_code');
  });

  it('TOTP guesses through account deletion are limited like every code check (5 / account), and delete nothing', async () => {
    const u = await registerUser();
    await enableTotp(u);
    const del = () =>
      api('/api/account/delete', {
        token: u.accessToken,
        ip: freshIp(),
        body: { passwordPrehash: u.prehash, leave: [], code: '000000' },
      });
    for (let i = 0; i < DEFAULT_RATE_LIMITS.totp.limit; i++) {
      const res = await del();
      expect((await json(res)).error?.code).toBe('invalid_totp');
    }
    const res = await del();
    expect(res.status).toBe(429);
    expect((await json(res)).error?.code).toBe('rate_limited');
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    // The same account bucket as the sign-in step: the next MFA guess there is refused too.
    const mfa = await api('/api/auth/totp', { ip: freshIp(), body: { mfaToken: await mfaToken(u), code: '000000' } });
    expect(mfa.status).toBe(429);
    expect((await session(u.accessToken)).status).toBe(200);
  });

  it('an account deletion refused for a missing departure (409) spends no recovery code', async () => {
    const u = await registerUser();
    const { recoveryCodes } = await enableTotp(u);
    // A group with someone else in it: deletion needs a signed departure for it first.
    const other = await registerUser();
    const conv = `c_rw_${crypto.randomUUID().replaceAll('-', '')}`;
    await env.DB.prepare('INSERT INTO conversations (id, kind, head_seq, head_hash) VALUES (?1, ?2, 0, ?3)')
      .bind(conv, 'group', new Uint8Array(32))
      .run();
    for (const [userId, role] of [
      [u.userId, 'owner'],
      [other.userId, 'member'],
    ]) {
      await env.DB.prepare('INSERT INTO members (conversation_id, user_id, role, joined_seq) VALUES (?1, ?2, ?3, 0)')
        .bind(conv, userId, role)
        .run();
    }
    const res = await api('/api/account/delete', {
      token: u.accessToken,
      ip: freshIp(),
      body: { passwordPrehash: u.prehash, leave: [], recoveryCode: recoveryCodes[0] },
    });
    expect(res.status).toBe(409);
    expect((await json(res)).error?.code).toBe('leave_entries_required');
    const codes = await makeDb(env)
      .select()
      .from(schema.recoveryCodes)
      .where(eq(schema.recoveryCodes.userId, u.userId))
      .all();
    expect(codes).toHaveLength(10);
    expect(codes.filter((r) => r.usedAt !== null)).toEqual([]);
    // The code still works where it is meant to.
    const ok = await api('/api/auth/totp', {
      ip: freshIp(),
      body: { mfaToken: await mfaToken(u), recoveryCode: recoveryCodes[0] },
    });
    expect(ok.status).toBe(200);
  });
});

describe('PITFALLS 24: HTTP input', () => {
  it('bad bodies get 413/415/400 with a code, and change no D1 row except audit', async () => {
    const u = await registerUser();
    const ip = freshIp();
    const good = await loginBody(u, { ip });
    const r = await registrationBody(freshName(), ip);
    const before = canonical(await dumpAll(['audit_events']));
    const cases: [string, Parameters<typeof api>[1], number, string][] = [
      ['oversize', { raw: JSON.stringify({ ...good, pad: 'x'.repeat(70_000) }) }, 413, 'payload_too_large'],
      ['malformed JSON', { raw: '{"username": "x",' }, 400, 'invalid_json'],
      [
        'not JSON content type',
        { raw: JSON.stringify(good), contentType: 'text/plain' },
        415,
        'unsupported_media_type',
      ],
      ['wrong types', { body: { ...good, passwordPrehash: 42, deviceId: ['a'] } }, 400, 'invalid_request'],
      ['missing fields', { body: { username: u.username } }, 400, 'invalid_request'],
      ['extra field', { body: { ...good, admin: true } }, 400, 'invalid_request'],
      ['short prehash', { body: { ...good, passwordPrehash: toB64u(rng(31)) } }, 400, 'invalid_request'],
      ['array body', { body: [good] }, 400, 'invalid_request'],
    ];
    for (const [name, opts, status, code] of cases) {
      const res = await api('/api/auth/login', { ...opts, ip });
      expect(res.status, name).toBe(status);
      const text = await res.text();
      expect(JSON.parse(text).error.code, name).toBe(code);
      expect(text, name).not.toMatch(/at .*\.ts|Error:|stack/);
    }
    const wrongTypes = await api('/api/auth/login', { body: { ...good, passwordPrehash: 42 }, ip });
    expect((await json(wrongTypes)).error?.fields).toEqual(['passwordPrehash']);
    // Registration: same, and no user row appears.
    for (const body of [
      { ...r.body, userIdentityKey: 'not base64!' },
      { ...r.body, deviceList: undefined },
    ]) {
      expect((await api('/api/auth/register', { body, ip })).status).toBe(400);
    }
    expect(canonical(await dumpAll(['audit_events']))).toBe(before);
    // The good body (challenge untouched by the refused requests) still works afterwards.
    expect((await api('/api/auth/login', { body: good, ip })).status).toBe(200);
  });
});

describe('PITFALLS 26: no string-built SQL', () => {
  /**
   * Offending patterns: prepare/exec with an interpolated template literal or a concatenation, and
   * sql.raw. A reviewed exception (e.g. expanding "(?, ?, ?)" placeholders for bound values) carries the
   * marker `sql-interpolation-ok: <reason>` on the same or the preceding line.
   */
  const OFFENDERS = [/\.(prepare|exec)\(\s*`[^`]*\$\{/g, /\.(prepare|exec)\(\s*['"`][^'"`]*['"`]\s*\+/g, /sql\.raw\(/g];
  const scan = (files: Record<string, string>) => {
    const found: string[] = [];
    for (const [name, text] of Object.entries(files)) {
      const lines = text.split('\n');
      for (const re of OFFENDERS) {
        for (const m of text.matchAll(re)) {
          const line = text.slice(0, m.index).split('\n').length - 1;
          const context = `${lines[line - 1] ?? ''}\n${lines[line] ?? ''}`;
          if (!context.includes('sql-interpolation-ok:')) found.push(`${name}:${line + 1}`);
        }
      }
    }
    return found;
  };

  it('no worker source file (tests excluded) builds SQL with template interpolation or concatenation', () => {
    const files = import.meta.glob<string>(['./**/*.ts', '../schema/**/*.ts'], {
      query: '?raw',
      import: 'default',
      eager: true,
    });
    // Production code only: tests and test helpers never see user input (they may name tables).
    const source = Object.fromEntries(
      Object.entries(files).filter(([n]) => !n.endsWith('.test.ts') && !n.startsWith('./test/')),
    );
    const names = Object.keys(source);
    expect(names.length).toBeGreaterThan(15);
    expect(names).toContain('./routes/auth.ts');
    expect(names).toContain('../schema/tables.ts');
    expect(scan(source)).toEqual([]);
  });

  it('the scan itself catches offenders and honours only the marker', () => {
    const i = '${';
    expect(
      scan({
        a: `db.prepare(\`SELECT * FROM users WHERE name = ${i}name}\`)`,
        b: `db.prepare('SELECT * FROM users WHERE name = ' + name)`,
        c: `db.run(sql.raw(name))`,
        d: `// sql-interpolation-ok: placeholders only\nsql.exec(\`INSERT INTO t VALUES ${i}marks}\`, ...values)`,
        e: `db.prepare('SELECT 1 WHERE x = ?1').bind(name)`,
      }),
    ).toEqual(['a:1', 'b:1', 'c:1']);
  });
});

describe('enumeration', () => {
  it('unknown user and wrong password: identical status and body, same order of magnitude of time', async () => {
    const users = [await registerUser(), await registerUser(), await registerUser()];
    const wrong: number[] = [];
    const unknown: number[] = [];
    let wrongBody = '';
    let unknownBody = '';
    for (let i = 0; i < 20; i++) {
      const u = users[i % 3]!;
      const ip = freshIp();
      const b1 = { ...(await loginBody(u, { ip })), passwordPrehash: toB64u(rng(32)) };
      let t = performance.now();
      const r1 = await api('/api/auth/login', { body: b1, ip });
      wrong.push(performance.now() - t);
      const ip2 = freshIp();
      const b2 = { ...(await loginBody(u, { ip: ip2 })), username: freshName() };
      t = performance.now();
      const r2 = await api('/api/auth/login', { body: b2, ip: ip2 });
      unknown.push(performance.now() - t);
      expect(r1.status).toBe(401);
      expect(r2.status).toBe(401);
      wrongBody = await r1.text();
      unknownBody = await r2.text();
      expect(wrongBody).toBe(unknownBody);
    }
    expect(JSON.parse(wrongBody).error.code).toBe('invalid_credentials');
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
    const [mw, mu] = [median(wrong), median(unknown)];
    console.log(
      `enumeration timing: wrong password median ${mw.toFixed(2)} ms, unknown user median ${mu.toFixed(2)} ms`,
    );
    // Same order of magnitude only (no strict timing assertion in a shared test runner).
    expect(Math.max(mw, mu) / Math.max(0.01, Math.min(mw, mu))).toBeLessThan(10);
  });
});

describe('nothing secret in clear in D1', () => {
  it('after register, login, refresh, TOTP, recovery and password change, no column holds any secret', async () => {
    const u = await registerUser(freshName('scan'));
    const needles: (string | Uint8Array)[] = [u.prehash, fromB64u(u.prehash), u.cookie, fromB64u(u.cookie)];
    const ref = await api('/api/auth/refresh', { refresh: u.cookie });
    const rt = refreshCookie(ref)!;
    needles.push(rt, fromB64u(rt));
    const { secret, recoveryCodes } = await enableTotp(u);
    needles.push(
      secret,
      OTPAuth.Secret.fromBase32(new OTPAuth.Secret({ buffer: secret.slice().buffer }).base32).base32,
    );
    for (const c of recoveryCodes) needles.push(c, canonicalRecoveryCode(c));
    const ip = freshIp();
    const { challengeId, challenge } = await getChallenge(ip);
    needles.push(challengeId, fromB64u(challengeId), challenge, toB64u(challenge));
    const token = await mfaToken(u);
    needles.push(token, fromB64u(token));
    const done = await api('/api/auth/totp', {
      ip,
      body: { mfaToken: await mfaToken(u), recoveryCode: recoveryCodes[1] },
    });
    expect(done.status).toBe(200);
    const at = ((await done.json()) as { accessToken: string }).accessToken;
    needles.push(at, refreshCookie(done)!);
    const newPrehash = toB64u(rng(32));
    needles.push(newPrehash, fromB64u(newPrehash));
    expect(
      (await api('/api/auth/password', { token: at, body: { currentPrehash: u.prehash, newPrehash } })).status,
    ).toBe(200);
    // Control: the scan does find what is stored in clear (the username and the device list bytes).
    expect(await findInD1([u.username])).toContain('users.username');
    expect(await findInD1([u.deviceListBytes])).toContain('device_lists.list');
    expect(await findInD1(needles)).toEqual([]);
  });
});
