/**
 * Auth REST API, mounted at /api/auth (docs/API.md § "Auth (REST)").
 *
 * Responsibilities: usernames, the server half of the password scheme (auth/password.ts), device-signed
 * login challenges (auth/challenges.ts), sessions as token families with rotating refresh tokens in a
 * `__Host-` cookie, TOTP + recovery codes (auth/totp.ts), password change and the explicit identity reset.
 * Does NOT: link or revoke devices at the key level or serve the key directory (devices API); it only
 * signs sessions out. Every failure is an AppError with a stable code; nothing secret is logged or echoed.
 *
 * Enumeration: only registration (409 `username_taken`, rate-limited per client) and its look-ahead
 * `GET /username/:username` (rate-limited per client, bucket `usernameCheck`) reveal that a username
 * exists. Login and identity reset answer an unknown user and a wrong password with the same 401
 * `invalid_credentials` after the same work (an HMAC against a dummy salt for unknown users).
 */
import { and, eq, isNotNull, isNull, ne, or, sql } from 'drizzle-orm';
import { type Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { z } from 'zod';
import {
  loginRequest,
  normalizeUsername,
  passwordChangeRequest,
  registerRequest,
  resetIdentityRequest,
  revokeSessionRequest,
  totpCodeRequest,
  totpEnrollRequest,
  totpLoginRequest,
} from '../../schema/auth-api.js';
import { fromHex, toB64u, utf8 } from '../../web/src/protocol/bytes.js';
import { verifyLoginChallenge } from '../../web/src/protocol/identity.js';
import { defaultCurves, hmacSha256 } from '../../web/src/protocol/primitives.js';
import { consumeChallenge, issueChallenge } from '../auth/challenges.js';
import { requireAuth, sessionRevoked, withDeviceList } from '../auth/middleware.js';
import { checkPassword, newPasswordRecord, type PasswordRecord } from '../auth/password.js';
import { issueAccessToken, newOpaqueToken, tokenHash } from '../auth/tokens.js';
import {
  canonicalRecoveryCode,
  decryptTotpSecret,
  encryptTotpSecret,
  newRecoveryCode,
  newTotpSecret,
  otpauthUri,
  RECOVERY_CODE_COUNT,
  totpStep,
} from '../auth/totp.js';
import { clientKey } from '../context.js';
import { type Db, makeDb, schema } from '../db.js';
import { applyDeviceList, deviceListConflict, type Statement } from '../device-store.js';
import { DELETED_USER, usernameCoolingDown } from '../domain/account.js';
import { auditInsert, isConstraintError, writeBatch } from '../domain/common.js';
import { notifyConversations } from '../domain/devices.js';
import { ktRecordKey } from '../domain/kt.js';
import type { AppBindings, Env } from '../env.js';
import { AppError } from '../errors.js';
import { enforceRateLimit, type Reservation, resetRateLimit } from '../limiter.js';
import type { RateBucket } from '../limits.js';
import { LIMITS } from '../limits.js';
import { log } from '../log.js';
import { secretBytes } from '../secrets.js';
import { valid } from '../validate.js';
import { deviceEvent, identityChangedEvent, outboxEvents } from '../webhooks/outbox.js';
import { jsonBody } from './input.js';

/** Cookie name without its prefix; hono adds `__Host-` (and enforces Secure, Path=/, no Domain). */
export const REFRESH_COOKIE = 'e2e_refresh';
export const REFRESH_COOKIE_FULL = `__Host-${REFRESH_COOKIE}`;

const { users, devices, deviceLists, tokenFamilies, refreshTokens, totpSecrets, recoveryCodes, mfaPending } = schema;

// ---- helpers -------------------------------------------------------------------------------------------

function username(raw: string): string {
  const n = normalizeUsername(raw);
  if (!n) {
    throw new AppError(
      400,
      'invalid_username',
      'usernames are 3-32 characters of a-z, 0-9, "_", "." and "-", starting with a letter',
    );
  }
  return n;
}

/** Rate-limit key for an account: a keyed hash of the normalised username (works for unknown names too). */
function accountKey(env: Env, normalized: string): string {
  return `acct:${toB64u(hmacSha256(secretBytes(env, 'TOKEN_HASH_KEY'), utf8(`account:${normalized}`))).slice(0, 22)}`;
}

const invalidCredentials = () => new AppError(401, 'invalid_credentials', 'wrong username or password');
const invalidChallenge = () => new AppError(401, 'invalid_challenge', 'login challenge unknown, used or expired');
const invalidDeviceSignature = () =>
  new AppError(401, 'invalid_device_signature', 'the device signature over the login challenge is invalid');

async function deviceSignatureOk(
  signingKey: Uint8Array,
  challenge: Uint8Array,
  userId: string,
  deviceId: string,
  sig: Uint8Array,
): Promise<boolean> {
  try {
    return await verifyLoginChallenge(await defaultCurves(), signingKey, challenge, userId, deviceId, sig);
  } catch {
    return false;
  }
}

interface NewSession {
  familyId: string;
  refreshToken: string;
  statements: [Statement, ...Statement[]];
}

function refreshTokenRow(
  env: Env,
  db: Db,
  familyId: string,
  now: number,
  generation = 0,
): { token: string; stmt: Statement } {
  const token = newOpaqueToken();
  const stmt = db.insert(refreshTokens).values({
    tokenHash: tokenHash(env, token, 'refresh'),
    familyId,
    createdAt: now,
    expiresAt: now + LIMITS.refreshTokenTtlMs,
    generation,
  });
  return { token, stmt };
}

/** A new token family for (user, device) and its first refresh token. */
export function openSession(env: Env, db: Db, userId: string, deviceId: string, now: number): NewSession {
  const familyId = crypto.randomUUID();
  const first = refreshTokenRow(env, db, familyId, now);
  return {
    familyId,
    refreshToken: first.token,
    statements: [db.insert(tokenFamilies).values({ id: familyId, userId, deviceId, createdAt: now }), first.stmt],
  };
}

type Ctx = Context<AppBindings>;

function setRefreshCookie(c: Ctx, token: string): void {
  setCookie(c, REFRESH_COOKIE, token, {
    prefix: 'host',
    httpOnly: true,
    secure: true,
    sameSite: 'Strict',
    path: '/',
    maxAge: Math.floor(LIMITS.refreshTokenTtlMs / 1000),
  });
}

function clearRefreshCookie(c: Ctx): void {
  deleteCookie(c, REFRESH_COOKIE, { prefix: 'host', path: '/', secure: true, httpOnly: true, sameSite: 'Strict' });
}

export async function tokens(c: Ctx, a: { userId: string; deviceId: string; familyId: string; refreshToken: string }) {
  setRefreshCookie(c, a.refreshToken);
  const accessToken = await issueAccessToken(c.env, { userId: a.userId, deviceId: a.deviceId, familyId: a.familyId });
  return { accessToken, expiresIn: LIMITS.accessTokenTtlSec, userId: a.userId, deviceId: a.deviceId };
}

/**
 * A second factor that passed its check but is NOT spent yet (issue: a code spent before a later refusal
 * or a lost race was gone without the operation happening). The operation spends it together with its
 * effect, so a refusal after the check, or a concurrent request that wins, leaves the code usable:
 *  - `statements` go into the operation's own D1 batch: a guard INSERT that fails (and so rolls the whole
 *    batch back) unless the code is still unspent at commit time, then the spend. Map the batch's error
 *    with `secondFactorConflict` (401 `totp_code_used` / `invalid_recovery_code`: a concurrent request
 *    spent it first).
 *  - `spendNow()`, for an operation that is not one D1 batch (account deletion: departures through the
 *    conversation objects, then the deletion): spends it at once (same guard) and returns `undo`, which
 *    puts the code back — compare-and-swap on this spend only — when the operation then fails.
 */
export interface SecondFactorProof {
  readonly method: 'totp' | 'recovery';
  readonly statements: [Statement, ...Statement[]];
  spendNow(): Promise<{ undo(): Promise<void> }>;
}

const totpCodeUsed = () => new AppError(401, 'totp_code_used', 'this code was already used; wait for the next one');
const recoveryCodeRefused = () => new AppError(401, 'invalid_recovery_code', 'recovery code unknown or already used');

/** The 401 for a batch whose second-factor guard failed (the code was spent meanwhile); null for any other error. */
export function secondFactorConflict(err: unknown): AppError | null {
  if (isConstraintError(err, 'totp_secrets.')) return totpCodeUsed();
  if (isConstraintError(err, 'recovery_codes.')) return recoveryCodeRefused();
  return null;
}

function proof(
  db: Db,
  method: 'totp' | 'recovery',
  statements: [Statement, ...Statement[]],
  undo: Statement,
): SecondFactorProof {
  return {
    method,
    statements,
    async spendNow() {
      try {
        await db.batch(statements);
      } catch (err) {
        throw secondFactorConflict(err) ?? err;
      }
      return {
        async undo() {
          try {
            await db.batch([undo]);
          } catch (err) {
            log('warn', 'second_factor_undo_failed', { method, type: err instanceof Error ? err.name : 'unknown' });
          }
        },
      };
    },
  };
}

/** A TOTP code for a time step above the last accepted one (each step is accepted once). */
async function checkTotpCode(env: Env, db: Db, userId: string, code: string, now: number): Promise<SecondFactorProof> {
  const row = await db.select().from(totpSecrets).where(eq(totpSecrets.userId, userId)).get();
  const step = row ? totpStep(decryptTotpSecret(env, userId, row.secretEnc), code, now) : null;
  if (!row || step === null) throw new AppError(401, 'invalid_totp', 'wrong or expired authenticator code');
  if (step <= row.lastStep) throw totpCodeUsed();
  const T = totpSecrets;
  return proof(
    db,
    'totp',
    [
      // Guard: unless the secret is still there with last_step below this step, this INSERT fails (NOT NULL
      // secret_enc, or the primary key) and the batch rolls back. Bound parameters only (pitfall 26).
      db
        .insert(T)
        .select(
          sql`SELECT ${userId}, NULL, NULL, 0 WHERE NOT EXISTS (SELECT 1 FROM totp_secrets WHERE user_id = ${userId} AND last_step < ${step})`,
        ),
      db
        .update(T)
        .set({ lastStep: step })
        .where(and(eq(T.userId, userId), sql`${T.lastStep} < ${step}`)),
    ],
    db
      .update(T)
      .set({ lastStep: row.lastStep })
      .where(and(eq(T.userId, userId), eq(T.lastStep, step))),
  );
}

/** An unused recovery code of the account. */
async function checkRecoveryCode(
  env: Env,
  db: Db,
  userId: string,
  code: string,
  now: number,
): Promise<SecondFactorProof> {
  const R = recoveryCodes;
  const hash = tokenHash(env, canonicalRecoveryCode(code), 'recovery');
  const row = await db
    .select({ usedAt: R.usedAt })
    .from(R)
    .where(and(eq(R.codeHash, hash), eq(R.userId, userId)))
    .get();
  if (!row || row.usedAt !== null) throw recoveryCodeRefused();
  return proof(
    db,
    'recovery',
    [
      // Guard: unless the code is still there and unused, this INSERT fails (NOT NULL user_id, or the primary
      // key) and the batch rolls back.
      db
        .insert(R)
        .select(
          sql`SELECT ${hash}, NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM recovery_codes WHERE code_hash = ${hash} AND user_id = ${userId} AND used_at IS NULL)`,
        ),
      db
        .update(R)
        .set({ usedAt: now })
        .where(and(eq(R.codeHash, hash), eq(R.userId, userId), isNull(R.usedAt))),
    ],
    db
      .update(R)
      .set({ usedAt: null })
      .where(and(eq(R.codeHash, hash), eq(R.userId, userId), eq(R.usedAt, now))),
  );
}

/** Checks one second factor WITHOUT spending it (see SecondFactorProof); throws the matching 401. */
export async function checkSecondFactor(
  env: Env,
  db: Db,
  userId: string,
  f: { code?: string | undefined; recoveryCode?: string | undefined },
  now: number,
): Promise<SecondFactorProof> {
  if (f.code !== undefined) return checkTotpCode(env, db, userId, f.code, now);
  if (f.recoveryCode !== undefined) return checkRecoveryCode(env, db, userId, f.recoveryCode, now);
  throw new AppError(401, 'mfa_required', 'this account requires an authenticator or recovery code');
}

export async function totpEnabled(db: Db, userId: string): Promise<boolean> {
  const row = await db
    .select({ enabledAt: totpSecrets.enabledAt })
    .from(totpSecrets)
    .where(eq(totpSecrets.userId, userId))
    .get();
  return row?.enabledAt != null;
}

/**
 * Closes the conversation WebSockets opened under sessions that were just signed out / revoked (sockets are
 * tagged with their token family at the upgrade). Best effort, after the D1 commit: the revoked family
 * already fails every ticket, upgrade and token check; this ends the sockets that are already open.
 */
async function endSessionSockets(env: Env, db: Db, userId: string, familyIds: string[]): Promise<void> {
  if (familyIds.length === 0) return;
  try {
    await notifyConversations(env, db, userId, (stub) => stub.sessionsEnded(familyIds));
  } catch {
    log('warn', 'session_sockets_close_failed', { sessions: familyIds.length });
  }
}

/** Cookie-authenticated routes refuse cross-origin callers (SameSite=Strict is the first line). */
function checkOrigin(c: Ctx): void {
  const origin = c.req.header('origin');
  if (!origin) return;
  if (origin === new URL(c.req.url).origin || (c.env.APP_ORIGIN && origin === c.env.APP_ORIGIN)) return;
  throw new AppError(403, 'bad_origin', 'cross-origin request refused');
}

// ---- rate limits that count failures, not successes (issue 12 items 2, 4, 8; issue 13 item 6) -------

/** Reserves a hit in each (bucket, keys) — 429 with Retry-After if any is full — all or none. */
async function reserve(env: Env, limits: [RateBucket, string[]][]): Promise<Reservation[]> {
  const held: Reservation[] = [];
  try {
    for (const [bucket, keys] of limits) held.push(await enforceRateLimit(env, bucket, keys));
  } catch (err) {
    await Promise.all(held.map((r) => r.release()));
    throw err;
  }
  return held;
}
const releaseAll = (held: Reservation[]) => Promise.all(held.map((r) => r.release()));

/** A failed check (a 401 of the password / code / signature): the reserved hit stays. */
const isFailure = (err: unknown) => err instanceof AppError && err.status === 401;

/**
 * Runs `attempt` with a hit reserved in each (bucket, keys): kept if the attempt fails (throws a 401),
 * released otherwise (success, or an answer that is not a wrong guess).
 */
async function countFailures<T>(env: Env, limits: [RateBucket, string[]][], attempt: () => Promise<T>): Promise<T> {
  const held = await reserve(env, limits);
  try {
    const out = await attempt();
    await releaseAll(held);
    return out;
  } catch (err) {
    if (!isFailure(err)) await releaseAll(held);
    throw err;
  }
}

/** The TOTP failure buckets of an account: per account and per client address. */
const totpLimits = (userId: string, client: string): [RateBucket, string[]][] => [
  ['totp', [`acct:${userId}`]],
  ['totpAddress', [`client:${client}`]],
];

/**
 * checkSecondFactor under the TOTP failure limits (`totp` per account, `totpAddress` per client address):
 * every path that accepts a code outside the sign-in step uses this, so none is an unlimited guessing oracle.
 * The code is not spent yet: the caller spends it with its operation (SecondFactorProof).
 */
export function checkLimitedSecondFactor(
  env: Env,
  db: Db,
  userId: string,
  client: string,
  f: { code?: string | undefined; recoveryCode?: string | undefined },
  now: number,
): Promise<SecondFactorProof> {
  return countFailures(env, totpLimits(userId, client), () => checkSecondFactor(env, db, userId, f, now));
}

// ---- routes --------------------------------------------------------------------------------------------

export const auth = new Hono<AppBindings>();

auth.use(
  '*',
  bodyLimit({
    maxSize: LIMITS.maxBodyBytes,
    onError: () => {
      throw new AppError(413, 'payload_too_large', 'request body too large');
    },
  }),
  async (c, next) => {
    await next();
    c.header('Cache-Control', 'no-store');
  },
);

/** A fresh single-use challenge. Reveals nothing about any user. */
/** A new account or a reset identity starts with exactly one device: the one making the request. */
function onlyDevice<D extends { deviceId: string }>(list: readonly D[], deviceId: string, what: string): D {
  if (list.length !== 1) {
    throw new AppError(422, 'invalid_device_list', `${what} starts with exactly one device`, {
      reason: 'one_device_required',
    });
  }
  if (list[0]!.deviceId !== deviceId) {
    throw new AppError(422, 'invalid_device_list', 'deviceId is not the device in the list', {
      reason: 'device_not_in_list',
    });
  }
  return list[0]!;
}

auth.post('/challenge', async (c) => {
  // Each challenge writes a row: limited per client address.
  await enforceRateLimit(c.env, 'challenge', [`client:${clientKey(c)}`]);
  const { challengeId, challenge, expiresAt } = await issueChallenge(c.env, makeDb(c.env), 'login');
  return c.json({ challengeId, challenge: toB64u(challenge), expiresAt });
});

/**
 * Is a username free? Asked by the register screen BEFORE it spends seconds generating keys. Public and
 * rate-limited per client address (bucket `usernameCheck`); it reveals exactly what registration's 409
 * `username_taken` already reveals, with no key generation needed — hence its own limit. `available` is a
 * hint: registration still decides (someone may take the name in between).
 */
auth.get('/username/:username', async (c) => {
  const name = username(c.req.param('username'));
  await enforceRateLimit(c.env, 'usernameCheck', [`client:${clientKey(c)}`]);
  const taken = await makeDb(c.env).select({ id: users.id }).from(users).where(eq(users.username, name)).get();
  c.header('Cache-Control', 'no-store');
  return c.json({ username: name, available: !taken });
});

auth.post('/register', jsonBody, valid('json', registerRequest), async (c) => {
  const body = c.req.valid('json');
  const name = username(body.username);
  const db = makeDb(c.env);
  const client = clientKey(c);
  // Failed registrations (409 username_taken is the one enumeration answer) and successful ones (a ceiling
  // on mass sign-up, high enough for a household or an office) are counted apart, per client address.
  const held = await reserve(c.env, [
    ['register', [`client:${client}`]],
    ['registerAddress', [`client:${client}`]],
  ]);
  const [failures, successes] = held as [Reservation, Reservation];
  try {
    const res = await registerAccount(c, body, name, db, client);
    await failures.release();
    return res;
  } catch (err) {
    await successes.release();
    throw err;
  }
});

async function registerAccount(
  c: Ctx,
  body: z.infer<typeof registerRequest>,
  name: string,
  db: Db,
  client: string,
): Promise<Response> {
  const challenge = await consumeChallenge(c.env, db, 'login', body.challengeId);
  if (!challenge) throw invalidChallenge();

  const taken = await db.select({ id: users.id }).from(users).where(eq(users.username, name)).get();
  if (taken || (await usernameCoolingDown(c.env, db, name, Date.now()))) {
    throw new AppError(409, 'username_taken', 'this username is taken');
  }
  const idTaken = await db.select({ id: users.id }).from(users).where(eq(users.id, body.userId)).get();
  // DELETED_USER stands in for deleted accounts as the sender of messages kept for others: an account with
  // that id would be shown as their sender, and its own deletion would delete them.
  if (idTaken || body.userId === DELETED_USER)
    throw new AppError(409, 'user_id_taken', 'generate a new random user id');

  const now = Date.now();
  const applied = await applyDeviceList(db, body.userId, body.userIdentityKey, null, body.deviceList, { now });
  const device = onlyDevice(applied.verified.devices, body.deviceId, 'a new account');
  if (!(await deviceSignatureOk(device.signingKey, challenge, body.userId, body.deviceId, body.challengeSignature))) {
    throw invalidDeviceSignature();
  }

  const session = openSession(c.env, db, body.userId, body.deviceId, now);
  try {
    await db.batch([
      db.insert(users).values({
        id: body.userId,
        username: name,
        identityKey: body.userIdentityKey,
        identityVersion: 1,
        ...newPasswordRecord(body.passwordPrehash),
        createdAt: now,
      }),
      ...applied.statements,
      ...session.statements,
      auditInsert(db, 'register', { userId: body.userId, deviceId: body.deviceId, clientHash: client }, now),
    ]);
  } catch (err) {
    if (isConstraintError(err, 'users.username')) throw new AppError(409, 'username_taken', 'this username is taken');
    if (isConstraintError(err, 'users.id')) throw new AppError(409, 'user_id_taken', 'generate a new random user id');
    throw deviceListConflict(err) ?? err;
  }
  // Key transparency: the new account's key enters the log (best effort here; a lookup heals a lost append).
  await ktRecordKey(c.env, {
    userId: body.userId,
    username: name,
    identityKey: body.userIdentityKey,
    identityVersion: 1,
  });
  return c.json(await tokens(c, { userId: body.userId, deviceId: body.deviceId, ...session }), 201);
}

/**
 * The opening of every password + device-challenge step (login, identity reset): the single-use challenge
 * first. A request without a valid one is answered 401 `invalid_challenge` and counts only against its
 * client address (bucket `loginAddress`), never against the account: a stranger with made-up challenge
 * ids cannot lock anyone out (issue 12 item 2).
 */
async function challengeStep(c: Ctx, body: { username: string; challengeId: string }) {
  const name = username(body.username);
  const db = makeDb(c.env);
  const client = clientKey(c);
  const challenge = await countFailures(c.env, [['loginAddress', [`client:${client}`]]], async () => {
    const ch = await consumeChallenge(c.env, db, 'login', body.challengeId);
    if (!ch) throw invalidChallenge();
    return ch;
  });
  return { name, db, client, account: accountKey(c.env, name), challenge };
}

/** A valid Ed25519 public key (RFC 8032 test 1): unknown users and devices verify against it, and fail. */
const DUMMY_SIGNING_KEY = fromHex('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');

/**
 * Login. After the challenge: the user row and the device row are read and the challenge signature is
 * verified for every request — against a dummy key when the user or device is unknown — so every path does
 * the same work. A device that proves its key (a live device of the account, valid signature) is limited
 * on its own failures (`loginDevice`); anything else on the account's failed password checks (`login`);
 * both on the client address's failures (`loginAddress`, a higher ceiling). Successful sign-ins count
 * nowhere, so a stranger's failures never stop the owner's devices, and a household is not one attacker.
 */
auth.post('/login', jsonBody, valid('json', loginRequest), async (c) => {
  const body = c.req.valid('json');
  const { name, db, client, account, challenge } = await challengeStep(c, body);

  const now = Date.now();
  const user = await db
    .select({ id: users.id, passwordHash: users.passwordHash, passwordSalt: users.passwordSalt })
    .from(users)
    .where(eq(users.username, name))
    .get();
  const device = await db
    .select({ signingKey: devices.signingKey, revokedAt: devices.revokedAt })
    .from(devices)
    .where(and(eq(devices.userId, user?.id ?? '\u0000unknown'), eq(devices.deviceId, body.deviceId)))
    .get();
  const live = device && device.revokedAt === null ? device : undefined;
  const signed = await deviceSignatureOk(
    live ? new Uint8Array(live.signingKey) : DUMMY_SIGNING_KEY,
    challenge,
    user?.id ?? body.username,
    body.deviceId,
    body.challengeSignature,
  );
  const proven = !!(user && live && signed);
  const limits: [RateBucket, string[]][] = [
    proven ? ['loginDevice', [`device:${user!.id}:${body.deviceId}`]] : ['login', [account]],
    ['loginAddress', [`client:${client}`]],
  ];
  return countFailures(c.env, limits, async () => {
    // Same answer for an unknown user and a wrong password.
    if (!checkPassword(body.passwordPrehash, user ?? null) || !user) {
      await db.batch([auditInsert(db, 'login_failed', { userId: user?.id ?? null, clientHash: client }, now)]);
      throw invalidCredentials();
    }
    if (!live) {
      // Only after a correct password: the account's id and list version, which an identity reset from a
      // browser that holds nothing needs (its new list is signed for this user id at version + 1).
      const list = await db
        .select({ version: deviceLists.version })
        .from(deviceLists)
        .where(eq(deviceLists.userId, user.id))
        .get();
      throw new AppError(
        403,
        'device_not_linked',
        'this browser holds no keys for this account (or its device was removed): link it from a device ' +
          'you already use, or reset the account identity (new keys; your contacts will see a key change)',
        { userId: user.id, deviceListVersion: list?.version ?? 0 },
      );
    }
    if (!signed) {
      await db.batch([
        auditInsert(
          db,
          'login_bad_device_signature',
          { userId: user.id, deviceId: body.deviceId, clientHash: client },
          now,
        ),
      ]);
      throw invalidDeviceSignature();
    }

    if (await totpEnabled(db, user.id)) {
      const mfaToken = newOpaqueToken();
      await db.batch([
        db.delete(mfaPending).where(sql`${mfaPending.expiresAt} < ${now}`),
        db.insert(mfaPending).values({
          tokenHash: tokenHash(c.env, mfaToken, 'mfa'),
          userId: user.id,
          deviceId: body.deviceId,
          expiresAt: now + LIMITS.mfaPendingTtlMs,
        }),
        auditInsert(db, 'login_mfa_pending', { userId: user.id, deviceId: body.deviceId, clientHash: client }, now),
      ]);
      return c.json({ mfaRequired: true as const, mfaToken });
    }

    const session = openSession(c.env, db, user.id, body.deviceId, now);
    await db.batch([
      ...session.statements,
      db
        .update(devices)
        .set({ lastSeenAt: now })
        .where(and(eq(devices.userId, user.id), eq(devices.deviceId, body.deviceId))),
      auditInsert(db, 'login', { userId: user.id, deviceId: body.deviceId, clientHash: client }, now),
    ]);
    // The owner is in: earlier failures on the account and on this device no longer count.
    await resetRateLimit(c.env, 'login', account);
    await resetRateLimit(c.env, 'loginDevice', `device:${user.id}:${body.deviceId}`);
    return c.json(await tokens(c, { userId: user.id, deviceId: body.deviceId, ...session }));
  });
});

/**
 * Second step of a login on an account with TOTP: a code or a recovery code. Failures count per client
 * address (`totpAddress`, also for an unknown MFA token) and per account (`totp`); a correct code counts
 * nowhere.
 */
auth.post('/totp', jsonBody, valid('json', totpLoginRequest), async (c) => {
  const body = c.req.valid('json');
  const db = makeDb(c.env);
  const client = clientKey(c);
  const now = Date.now();
  const hash = tokenHash(c.env, body.mfaToken, 'mfa');
  return countFailures(c.env, [['totpAddress', [`client:${client}`]]], async () => {
    const pending = await db.select().from(mfaPending).where(eq(mfaPending.tokenHash, hash)).get();
    if (!pending || pending.expiresAt <= now) {
      throw new AppError(401, 'invalid_mfa_token', 'sign-in step expired or unknown; sign in again');
    }
    // The device may have been revoked (or the account reset) since the password step: no session for it,
    // and no code spent on it.
    const device = await db
      .select({ revokedAt: devices.revokedAt })
      .from(devices)
      .where(and(eq(devices.userId, pending.userId), eq(devices.deviceId, pending.deviceId)))
      .get();
    if (!device || device.revokedAt !== null) {
      await db.delete(mfaPending).where(eq(mfaPending.tokenHash, hash));
      throw new AppError(403, 'device_not_linked', 'this device was removed from the account; sign in again');
    }
    return countFailures(c.env, [['totp', [`acct:${pending.userId}`]]], async () => {
      let factor: SecondFactorProof;
      try {
        factor = await checkSecondFactor(c.env, db, pending.userId, body, now);
      } catch (err) {
        await db.batch([auditInsert(db, 'totp_failed', { userId: pending.userId, clientHash: client }, now)]);
        throw err;
      }
      const method = factor.method;
      const session = openSession(c.env, db, pending.userId, pending.deviceId, now);
      // One batch: the sign-in step is taken (single use: a guard fails the batch if another request took
      // it), the code is spent, the session opens. A lost race spends nothing.
      try {
        await db.batch([
          db
            .insert(mfaPending)
            .select(
              sql`SELECT ${hash}, NULL, ${pending.deviceId}, 0 WHERE NOT EXISTS (SELECT 1 FROM mfa_pending WHERE token_hash = ${hash})`,
            ),
          db.delete(mfaPending).where(eq(mfaPending.tokenHash, hash)),
          ...factor.statements,
          ...session.statements,
          auditInsert(
            db,
            method === 'recovery' ? 'login_recovery_code' : 'login',
            { userId: pending.userId, deviceId: pending.deviceId, clientHash: client, details: { mfa: method } },
            now,
          ),
        ]);
      } catch (err) {
        if (isConstraintError(err, 'mfa_pending.')) {
          throw new AppError(401, 'invalid_mfa_token', 'sign-in step expired or unknown; sign in again');
        }
        throw secondFactorConflict(err) ?? err;
      }
      const user = await db.select({ username: users.username }).from(users).where(eq(users.id, pending.userId)).get();
      if (user) await resetRateLimit(c.env, 'login', accountKey(c.env, user.username));
      await resetRateLimit(c.env, 'loginDevice', `device:${pending.userId}:${pending.deviceId}`);
      return c.json(await tokens(c, { userId: pending.userId, deviceId: pending.deviceId, ...session }));
    });
  });
});

/**
 * Rotates the refresh token (cookie only). Tokens carry their family's generation; the family records its
 * current generation (worker/../schema/tables.ts). Exactly one token per generation can be rotated, and a
 * rotation advances the family's generation (compare-and-swap, in the same batch as the new token).
 *
 * Reuse — theft: two parties hold descendants of one token — revokes the whole family:
 *  - a token presented again after its rotation, more than LIMITS.refreshGraceMs later;
 *  - a token that was never rotated but whose generation the family has passed, more than the grace
 *    window after that happened: the sibling of a grace re-issue whose other sibling moved on (issue 12
 *    item 5 — without this, refresh c0→c1, replay c0 within 10 s → c1′ gave two chains that never met).
 * Within the grace window, a family belongs to exactly one device, so a second presentation is the same
 * browser refreshing from two tabs at once: a rotated token gets ONE re-issue (`grace_used_at`) — a sibling
 * of its successor, at the successor's generation, only while that is still the family's current one — and
 * anything else gets 409 `refresh_conflict` (no token; the family and the cookie are kept, the tab retries
 * with the cookie's newer token). Whichever sibling rotates first, the other is dead from then on.
 */
auth.post('/refresh', async (c) => {
  checkOrigin(c);
  const token = getCookie(c, REFRESH_COOKIE, 'host');
  if (!token || !/^[A-Za-z0-9_-]{43}$/.test(token)) {
    throw new AppError(401, 'invalid_refresh', 'no valid refresh token; sign in again');
  }
  const db = makeDb(c.env);
  const now = Date.now();
  const hash = tokenHash(c.env, token, 'refresh');
  const row = await db
    .select({
      familyId: refreshTokens.familyId,
      expiresAt: refreshTokens.expiresAt,
      rotatedAt: refreshTokens.rotatedAt,
      generation: refreshTokens.generation,
      familyGeneration: tokenFamilies.generation,
      familyGenerationAt: tokenFamilies.generationAt,
      userId: tokenFamilies.userId,
      deviceId: tokenFamilies.deviceId,
      familyRevokedAt: tokenFamilies.revokedAt,
      familyRevokeReason: tokenFamilies.revokeReason,
      deviceRevokedAt: devices.revokedAt,
    })
    .from(refreshTokens)
    .innerJoin(tokenFamilies, eq(tokenFamilies.id, refreshTokens.familyId))
    .innerJoin(devices, and(eq(devices.userId, tokenFamilies.userId), eq(devices.deviceId, tokenFamilies.deviceId)))
    .where(eq(refreshTokens.tokenHash, hash))
    .get();
  if (!row) {
    clearRefreshCookie(c);
    throw new AppError(401, 'invalid_refresh', 'no valid refresh token; sign in again');
  }
  await enforceRateLimit(c.env, 'refresh', [`family:${row.familyId}`]);
  if (row.familyRevokedAt !== null || row.deviceRevokedAt !== null) {
    clearRefreshCookie(c);
    const ended = sessionRevoked(
      row.familyRevokedAt !== null ? row.familyRevokeReason : null,
      row.deviceRevokedAt !== null,
    );
    throw row.deviceRevokedAt !== null ? await withDeviceList(db, ended, row.userId) : ended;
  }
  if (row.expiresAt <= now) {
    clearRefreshCookie(c);
    throw new AppError(401, 'refresh_expired', 'session expired; sign in again');
  }
  const reuse = async () => {
    await db.batch([
      db
        .update(tokenFamilies)
        .set({ revokedAt: now, revokeReason: 'refresh_reuse' })
        .where(and(eq(tokenFamilies.id, row.familyId), isNull(tokenFamilies.revokedAt))),
      auditInsert(
        db,
        'refresh_reuse',
        { userId: row.userId, deviceId: row.deviceId, clientHash: clientKey(c), details: { familyId: row.familyId } },
        now,
      ),
    ]);
    await endSessionSockets(c.env, db, row.userId, [row.familyId]);
    clearRefreshCookie(c);
    return new AppError(401, 'refresh_reused', 'this sign-in was used elsewhere and has been ended; sign in again');
  };
  const conflict = () =>
    new AppError(409, 'refresh_conflict', 'this refresh token was already re-issued; retry the refresh');
  const within = (t: number | null) => t !== null && now - t <= LIMITS.refreshGraceMs;

  /** The one re-issue of a rotated token: a sibling of its successor while that is the current generation. */
  const graceReissue = async (): Promise<string> => {
    const claimed = await db
      .update(refreshTokens)
      .set({ graceUsedAt: now })
      .where(
        and(
          eq(refreshTokens.tokenHash, hash),
          isNotNull(refreshTokens.rotatedAt),
          isNull(refreshTokens.graceUsedAt),
          sql`EXISTS (SELECT 1 FROM token_families WHERE id = ${row.familyId} AND generation = ${row.generation + 1})`,
        ),
      )
      .returning({ h: refreshTokens.tokenHash });
    if (claimed.length !== 1) throw conflict();
    const sibling = refreshTokenRow(c.env, db, row.familyId, now, row.generation + 1);
    await db.batch([sibling.stmt]);
    return sibling.token;
  };

  let next: string;
  if (row.rotatedAt !== null) {
    // Rotated before: reuse after the window; within it, the one re-issue.
    if (!within(row.rotatedAt)) throw await reuse();
    next = await graceReissue();
  } else if (row.generation < row.familyGeneration) {
    // Never rotated, but the family moved past it: the other sibling of a grace re-issue went on.
    if (within(row.familyGenerationAt)) throw conflict();
    throw await reuse();
  } else {
    // The current generation: rotate. The family's generation is the compare-and-swap; the token's rotation
    // and its successor are written only if this request won it (one batch, conditioned on the new head).
    const successor = newOpaqueToken();
    const successorHash = tokenHash(c.env, successor, 'refresh');
    const won = sql`EXISTS (SELECT 1 FROM token_families WHERE id = ${row.familyId} AND head_token_hash = ${successorHash})`;
    const [advanced] = await writeBatch(c.env, [
      db
        .update(tokenFamilies)
        .set({ generation: row.generation + 1, generationAt: now, headTokenHash: successorHash })
        .where(and(eq(tokenFamilies.id, row.familyId), eq(tokenFamilies.generation, row.generation))),
      db
        .update(refreshTokens)
        .set({ rotatedAt: now })
        .where(and(eq(refreshTokens.tokenHash, hash), isNull(refreshTokens.rotatedAt), won)),
      db.run(
        sql`INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at, generation) SELECT ${successorHash}, ${row.familyId}, ${now}, ${now + LIMITS.refreshTokenTtlMs}, ${row.generation + 1} WHERE ${won}`,
      ),
    ]);
    // Lost to a concurrent refresh of the same token (another tab): that one rotated it just now, so this
    // presentation is the grace re-issue.
    next = advanced?.meta.changes === 1 ? successor : await graceReissue();
  }
  return c.json(
    await tokens(c, { userId: row.userId, deviceId: row.deviceId, familyId: row.familyId, refreshToken: next }),
  );
});

auth.get('/session', requireAuth, async (c) => {
  const a = c.get('auth');
  const db = makeDb(c.env);
  const user = await db
    .select({ username: users.username, identityVersion: users.identityVersion })
    .from(users)
    .where(eq(users.id, a.userId))
    .get();
  if (!user) throw new AppError(401, 'session_revoked', 'this session was signed out or its device revoked');
  return c.json({
    userId: a.userId,
    deviceId: a.deviceId,
    username: user.username,
    identityVersion: user.identityVersion,
    totpEnabled: await totpEnabled(db, a.userId),
  });
});

auth.post('/logout', requireAuth, async (c) => {
  const a = c.get('auth');
  const db = makeDb(c.env);
  const now = Date.now();
  await db.batch([
    db
      .update(tokenFamilies)
      .set({ revokedAt: now, revokeReason: 'logout' })
      .where(and(eq(tokenFamilies.id, a.familyId), isNull(tokenFamilies.revokedAt))),
    auditInsert(db, 'logout', { userId: a.userId, deviceId: a.deviceId, clientHash: clientKey(c) }, now),
  ]);
  await endSessionSockets(c.env, db, a.userId, [a.familyId]);
  clearRefreshCookie(c);
  return c.json({ ok: true as const });
});

auth.post('/logout-all', requireAuth, async (c) => {
  const a = c.get('auth');
  const db = makeDb(c.env);
  const now = Date.now();
  const [revoked] = await db.batch([
    db
      .update(tokenFamilies)
      .set({ revokedAt: now, revokeReason: 'logout_all' })
      .where(and(eq(tokenFamilies.userId, a.userId), isNull(tokenFamilies.revokedAt)))
      .returning({ id: tokenFamilies.id }),
    auditInsert(db, 'logout_all', { userId: a.userId, deviceId: a.deviceId, clientHash: clientKey(c) }, now),
  ]);
  await endSessionSockets(
    c.env,
    db,
    a.userId,
    revoked.map((r) => r.id),
  );
  clearRefreshCookie(c);
  return c.json({ ok: true as const, revokedSessions: revoked.length });
});

/** Signs one device out (all its sessions). Key-level device removal is the devices API. */
auth.post('/sessions/revoke', requireAuth, jsonBody, valid('json', revokeSessionRequest), async (c) => {
  const a = c.get('auth');
  const { deviceId } = c.req.valid('json');
  const db = makeDb(c.env);
  const known = await db
    .select({ d: devices.deviceId })
    .from(devices)
    .where(and(eq(devices.userId, a.userId), eq(devices.deviceId, deviceId)))
    .get();
  if (!known) throw new AppError(404, 'unknown_device', 'no such device on this account');
  const now = Date.now();
  const [revoked] = await db.batch([
    db
      .update(tokenFamilies)
      .set({ revokedAt: now, revokeReason: 'signed_out_by_user' })
      .where(
        and(eq(tokenFamilies.userId, a.userId), eq(tokenFamilies.deviceId, deviceId), isNull(tokenFamilies.revokedAt)),
      )
      .returning({ id: tokenFamilies.id }),
    auditInsert(
      db,
      'sessions_revoked',
      { userId: a.userId, deviceId: a.deviceId, clientHash: clientKey(c), details: { targetDeviceId: deviceId } },
      now,
    ),
  ]);
  await endSessionSockets(
    c.env,
    db,
    a.userId,
    revoked.map((r) => r.id),
  );
  if (deviceId === a.deviceId) clearRefreshCookie(c);
  return c.json({ ok: true as const, revokedSessions: revoked.length });
});

/**
 * A signed-in user re-proves the password before a sensitive change (password change, TOTP enrolment).
 * Failures count against the signed-in device (`loginDevice`) and the client address, never against the
 * account — a stranger's failed sign-ins cannot block the owner's password change. A failure is audited as
 * `failEvent` and answered like a failed login. Returns the username.
 */
export async function reprovePassword(
  env: Env,
  db: Db,
  who: { userId: string; deviceId: string },
  client: string,
  prehash: Uint8Array,
  failEvent: string,
  now: number,
): Promise<{ username: string }> {
  const user = await db
    .select({ username: users.username, passwordHash: users.passwordHash, passwordSalt: users.passwordSalt })
    .from(users)
    .where(eq(users.id, who.userId))
    .get();
  if (!user) throw new AppError(401, 'session_revoked', 'this session was signed out or its device revoked');
  const limits: [RateBucket, string[]][] = [
    ['loginDevice', [`device:${who.userId}:${who.deviceId}`]],
    ['loginAddress', [`client:${client}`]],
  ];
  await countFailures(env, limits, async () => {
    if (!checkPassword(prehash, user)) {
      await db.batch([auditInsert(db, failEvent, { userId: who.userId, clientHash: client }, now)]);
      throw invalidCredentials();
    }
  });
  return { username: user.username };
}

/** Change password: proves the current one, stores a new salt + hash, signs out every other session. */
auth.post('/password', requireAuth, jsonBody, valid('json', passwordChangeRequest), async (c) => {
  const a = c.get('auth');
  const body = c.req.valid('json');
  const db = makeDb(c.env);
  const client = clientKey(c);
  const now = Date.now();
  await reprovePassword(c.env, db, a, client, body.currentPrehash, 'password_change_failed', now);
  const [, revoked] = await db.batch([
    db.update(users).set(newPasswordRecord(body.newPrehash)).where(eq(users.id, a.userId)),
    db
      .update(tokenFamilies)
      .set({ revokedAt: now, revokeReason: 'password_changed' })
      .where(and(eq(tokenFamilies.userId, a.userId), ne(tokenFamilies.id, a.familyId), isNull(tokenFamilies.revokedAt)))
      .returning({ id: tokenFamilies.id }),
    db.delete(mfaPending).where(eq(mfaPending.userId, a.userId)),
    auditInsert(db, 'password_changed', { userId: a.userId, deviceId: a.deviceId, clientHash: client }, now),
  ]);
  await endSessionSockets(
    c.env,
    db,
    a.userId,
    revoked.map((r) => r.id),
  );
  return c.json({ ok: true as const, revokedSessions: revoked.length });
});

/**
 * TOTP enrolment: proves the current password first (same rate-limit bucket as login), so that a stolen
 * access token cannot enrol an authenticator of the thief's and lock the owner out of new sign-ins.
 */
auth.post('/totp/enroll', requireAuth, jsonBody, valid('json', totpEnrollRequest), async (c) => {
  const a = c.get('auth');
  const { currentPrehash } = c.req.valid('json');
  const db = makeDb(c.env);
  const client = clientKey(c);
  const now = Date.now();
  const { username } = await reprovePassword(c.env, db, a, client, currentPrehash, 'totp_enroll_failed', now);
  const existing = await db
    .select({ enabledAt: totpSecrets.enabledAt })
    .from(totpSecrets)
    .where(eq(totpSecrets.userId, a.userId))
    .get();
  if (existing?.enabledAt != null) throw new AppError(409, 'totp_already_enabled', 'disable TOTP first');
  const secret = newTotpSecret();
  const secretEnc = encryptTotpSecret(c.env, a.userId, secret);
  await db.batch([
    db
      .insert(totpSecrets)
      .values({ userId: a.userId, secretEnc, enabledAt: null, lastStep: 0 })
      .onConflictDoUpdate({ target: totpSecrets.userId, set: { secretEnc, enabledAt: null, lastStep: 0 } }),
    auditInsert(db, 'totp_enroll_started', { userId: a.userId, deviceId: a.deviceId, clientHash: client }, now),
  ]);
  const { uri, base32 } = otpauthUri(secret, username);
  return c.json({ otpauthUri: uri, secret: base32 });
});

auth.post('/totp/confirm', requireAuth, jsonBody, valid('json', totpCodeRequest), async (c) => {
  const a = c.get('auth');
  const { code } = c.req.valid('json');
  const db = makeDb(c.env);
  const client = clientKey(c);
  const row = await db.select().from(totpSecrets).where(eq(totpSecrets.userId, a.userId)).get();
  if (!row || row.enabledAt !== null) throw new AppError(409, 'totp_not_pending', 'start enrolment first');
  const now = Date.now();
  // Only wrong codes count (enrolment plus one typo must not lock anyone out).
  const step = await countFailures(c.env, totpLimits(a.userId, client), async () => {
    const s = totpStep(decryptTotpSecret(c.env, a.userId, row.secretEnc), code, now);
    if (s === null) throw new AppError(401, 'invalid_totp', 'wrong or expired authenticator code');
    return s;
  });
  const codes = Array.from({ length: RECOVERY_CODE_COUNT }, () => newRecoveryCode());
  // Guard first: if a concurrent confirm enabled TOTP (or an enrolment replaced the secret) since the read
  // above, this INSERT hits the primary key and the whole batch rolls back — the recovery codes the other
  // confirm showed stay the stored ones, and this one answers 409 having changed nothing.
  try {
    await writeBatch(c.env, [
      db.run(
        sql`INSERT INTO totp_secrets (user_id, secret_enc, enabled_at, last_step) SELECT user_id, secret_enc, enabled_at, last_step FROM totp_secrets WHERE user_id = ${a.userId} AND (enabled_at IS NOT NULL OR secret_enc != ${new Uint8Array(row.secretEnc)})`,
      ),
      db
        .update(totpSecrets)
        .set({ enabledAt: now, lastStep: step })
        .where(and(eq(totpSecrets.userId, a.userId), isNull(totpSecrets.enabledAt))),
      db.delete(recoveryCodes).where(eq(recoveryCodes.userId, a.userId)),
      db
        .insert(recoveryCodes)
        .values(
          codes.map((k) => ({ codeHash: tokenHash(c.env, canonicalRecoveryCode(k), 'recovery'), userId: a.userId })),
        ),
      auditInsert(db, 'totp_enabled', { userId: a.userId, deviceId: a.deviceId, clientHash: client }, now),
    ]);
  } catch (err) {
    if (isConstraintError(err, 'totp_secrets.')) throw new AppError(409, 'totp_not_pending', 'start enrolment first');
    throw err;
  }
  return c.json({ recoveryCodes: codes });
});

auth.post('/totp/disable', requireAuth, jsonBody, valid('json', totpCodeRequest), async (c) => {
  const a = c.get('auth');
  const { code } = c.req.valid('json');
  const db = makeDb(c.env);
  const client = clientKey(c);
  if (!(await totpEnabled(db, a.userId))) throw new AppError(409, 'totp_not_enabled', 'TOTP is not enabled');
  const now = Date.now();
  const factor = await checkLimitedSecondFactor(c.env, db, a.userId, client, { code }, now);
  // The code is spent in the same batch that disables TOTP (a concurrent disable with it wins or loses whole).
  await db
    .batch([
      auditInsert(db, 'totp_disabled', { userId: a.userId, deviceId: a.deviceId, clientHash: client }, now),
      ...factor.statements,
      db.delete(totpSecrets).where(eq(totpSecrets.userId, a.userId)),
      db.delete(recoveryCodes).where(eq(recoveryCodes.userId, a.userId)),
    ])
    .catch((err: unknown) => {
      throw secondFactorConflict(err) ?? err;
    });
  return c.json({ ok: true as const });
});

/**
 * Identity reset: for a user who lost every device. Explicit and audited: a new user identity key and a
 * one-device list signed by it (version = previous + 1); every old device is revoked, every session
 * ended, every prekey deleted, users.identity_version bumped (contacts see a key change). Needs the
 * password, a device-signed challenge from the new device, and the second factor if TOTP is enabled.
 */
auth.post('/reset-identity', jsonBody, valid('json', resetIdentityRequest), async (c) => {
  const body = c.req.valid('json');
  const { name, db, client, account, challenge } = await challengeStep(c, body);
  const now = Date.now();
  const user = await db
    .select({
      id: users.id,
      passwordHash: users.passwordHash,
      passwordSalt: users.passwordSalt,
      identityVersion: users.identityVersion,
    })
    .from(users)
    .where(eq(users.username, name))
    .get();
  // The password is a reset's only proof: failures count per account in their own bucket (a stranger's
  // failed sign-ins do not block a reset, nor the other way round) and per client address.
  return countFailures(
    c.env,
    [
      ['reset', [account]],
      ['loginAddress', [`client:${client}`]],
    ],
    () => resetIdentity(c, { body, db, client, account, challenge, user: user ?? null, name, now }),
  );
});

async function resetIdentity(
  c: Ctx,
  r: {
    body: z.infer<typeof resetIdentityRequest>;
    db: Db;
    client: string;
    account: string;
    challenge: Uint8Array;
    user: (Omit<PasswordRecord, 'passwordParams'> & { id: string; identityVersion: number }) | null;
    /** The normalised username (the key-transparency entry names it). */
    name: string;
    now: number;
  },
): Promise<Response> {
  const { body, db, client, account, challenge, name, now } = r;
  const user = r.user;
  if (!checkPassword(body.passwordPrehash, user) || !user) {
    await db.batch([auditInsert(db, 'reset_identity_failed', { userId: user?.id ?? null, clientHash: client }, now)]);
    throw invalidCredentials();
  }

  const prev = await db
    .select({ list: deviceLists.list })
    .from(deviceLists)
    .where(eq(deviceLists.userId, user.id))
    .get();
  const applied = await applyDeviceList(
    db,
    user.id,
    body.userIdentityKey,
    prev ? new Uint8Array(prev.list) : null,
    body.deviceList,
    { allowIdentityChange: true, now },
  );
  const device = onlyDevice(applied.verified.devices, body.deviceId, 'a reset identity');
  if (!(await deviceSignatureOk(device.signingKey, challenge, user.id, body.deviceId, body.challengeSignature))) {
    throw invalidDeviceSignature();
  }
  // The second factor through a reset is limited like every TOTP guess (issue 12 item 8). It is spent in
  // the reset's own batch below: a reset that then fails (a concurrent device-list change) spends nothing.
  const factor = (await totpEnabled(db, user.id))
    ? await checkLimitedSecondFactor(c.env, db, user.id, client, body, now)
    : null;

  const session = openSession(c.env, db, user.id, body.deviceId, now);
  // Webhooks: contacts learn of the new identity key; the account's own endpoints of its device changes.
  const listVersion = applied.verified.version;
  const events = outboxEvents(db, [
    identityChangedEvent({ userId: user.id, identityVersion: user.identityVersion + 1, at: now }),
    ...applied.revoked
      .filter((d) => d !== body.deviceId)
      .map((deviceId) => deviceEvent('device.removed', { userId: user.id, deviceId, listVersion, at: now })),
    ...applied.added.map((d) =>
      deviceEvent('device.added', { userId: user.id, deviceId: d.deviceId, listVersion, at: now }),
    ),
  ]);
  // A concurrent device-list change (device-store.ts guard) rolls the whole reset back: 409, not a 500.
  const reset = db.batch([
    db
      .update(users)
      .set({ identityKey: body.userIdentityKey, identityVersion: sql`${users.identityVersion} + 1` })
      .where(eq(users.id, user.id)),
    ...(factor?.statements ?? []),
    ...applied.statements,
    db
      .update(devices)
      .set({ revokedAt: now })
      .where(and(eq(devices.userId, user.id), ne(devices.deviceId, body.deviceId), isNull(devices.revokedAt))),
    // Every session ends with reason identity_reset — also those the device-list statements above just
    // ended as device_revoked (same `now`): the cut-off devices then say why.
    db
      .update(tokenFamilies)
      .set({ revokedAt: now, revokeReason: 'identity_reset' })
      .where(
        and(
          eq(tokenFamilies.userId, user.id),
          or(
            isNull(tokenFamilies.revokedAt),
            and(eq(tokenFamilies.revokedAt, now), eq(tokenFamilies.revokeReason, 'device_revoked')),
          ),
        ),
      ),
    db.delete(schema.signedPrekeys).where(eq(schema.signedPrekeys.userId, user.id)),
    db.delete(schema.oneTimePrekeys).where(eq(schema.oneTimePrekeys.userId, user.id)),
    db.delete(schema.kemPrekeys).where(eq(schema.kemPrekeys.userId, user.id)),
    db.delete(mfaPending).where(eq(mfaPending.userId, user.id)),
    ...session.statements,
    auditInsert(
      db,
      'identity_reset',
      {
        userId: user.id,
        deviceId: body.deviceId,
        clientHash: client,
        details: { identityVersion: user.identityVersion + 1, revokedDevices: applied.revoked.length },
      },
      now,
    ),
    ...events.statements,
  ]);
  await reset.catch((err: unknown) => {
    throw secondFactorConflict(err) ?? deviceListConflict(err) ?? err;
  });
  await events.release(c.env, db);
  await ktRecordKey(c.env, {
    userId: user.id,
    username: name,
    identityKey: body.userIdentityKey,
    identityVersion: user.identityVersion + 1,
  });
  // Conversations drop the old devices' sockets and mailboxes and must address the new device from now on.
  const revoked = applied.revoked.filter((d) => d !== body.deviceId);
  await notifyConversations(c.env, db, user.id, async (stub) => {
    for (const d of revoked) await stub.deviceRevoked(user.id, d);
    await stub.devicesChanged(user.id);
  });
  await resetRateLimit(c.env, 'login', account);
  return c.json(await tokens(c, { userId: user.id, deviceId: body.deviceId, ...session }));
}
