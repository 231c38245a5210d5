/**
 * Linking a device (docs/API.md §"Linking a device", docs/PROTOCOL.md §"Linking"): provisioning channels,
 * single-use linking tokens, the device limit and encrypted device names.
 *
 * - A channel is opened by the new device (unauthenticated; `link_channel` limit per client address) and
 *   relays only sealed bytes (worker/link-channel.ts).
 * - A linking token is issued to a signed-in device for ONE channel, which that device thereby claims; it
 *   lives as long as the channel, is stored only as a keyed hash, and is refused once the account has
 *   DEVICE_LIMIT live devices (409 `device_limit`).
 * - Redemption (POST /api/devices without a bearer token) needs the token, the channel's secret (so only the
 *   device that opened the channel can use it), the next device list — signed by the account's user
 *   identity key, adding exactly one device and removing none — and that new device's signature over
 *   SHA-256(LABEL_LINKING_PROOF ‖ token). In one D1 batch: the device and list are stored, the token is
 *   spent on that device (a guard makes a second use roll the batch back), the encrypted name stored, a
 *   session opened and the event audited. The server cannot complete a link alone: without the user
 *   identity key it cannot sign the list, and every client refuses a list it did not sign.
 * - Device names are ciphertext of exactly DEVICE_NAME_SEALED_LEN bytes, set by the user's own devices.
 *
 * Does NOT: read the relayed messages, set cookies or mint access tokens (the route does, with auth.ts).
 */
import { and, eq, isNull, lt, sql } from 'drizzle-orm';
import { fromB64u, toB64u } from '../../web/src/protocol/bytes.js';
import { verifyLoginChallenge } from '../../web/src/protocol/identity.js';
import { channelIdBytes } from '../../web/src/protocol/link-code.js';
import { linkingChallenge } from '../../web/src/protocol/provisioning.js';
import { newOpaqueToken, tokenHash } from '../auth/tokens.js';
import type { Db } from '../db.js';
import { schema } from '../db.js';
import { applyDeviceList, deviceListConflict, type Statement } from '../device-store.js';
import type { Env } from '../env.js';
import { AppError } from '../errors.js';
import { enforceRateLimit } from '../limiter.js';
import { deviceLimit, LIMITS } from '../limits.js';
import type { ChannelCredential, ChannelFailure, ChannelMessage } from '../link-channel.js';
import { deviceEvent, outboxEvents } from '../webhooks/outbox.js';
import { onAccountDeletion } from './account.js';
import { asBytes, auditInsert, auditStmt, type Caller, curves, writeBatch } from './common.js';
import { deviceLimitError, notifyConversations } from './devices.js';

/** The channel's Durable Object; 400 `invalid_channel_id` unless the id is 16 bytes of canonical base64url. */
export function channelStub(env: Env, channelId: string) {
  try {
    channelIdBytes(channelId);
  } catch {
    throw new AppError(400, 'invalid_channel_id', 'a channel id is 16 random bytes in base64url (22 characters)');
  }
  return env.LINK_CHANNEL.get(env.LINK_CHANNEL.idFromName(channelId));
}

/** A channel failure as the AppError the API answers. */
function unwrap<R extends { readonly ok: boolean }>(r: R): Extract<R, { readonly ok: true }> {
  if (r.ok) return r as Extract<R, { readonly ok: true }>;
  const f = r as unknown as ChannelFailure;
  throw new AppError(
    f.status,
    f.code,
    f.message,
    f.retryAfterSec === undefined ? undefined : { retryAfterSec: f.retryAfterSec },
  );
}

async function sha256(s: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(s)));
}

/** Opens a provisioning channel for the new device; returns its secret (the only time it is shown). */
export async function openChannel(env: Env, clientHash: string, channelId: string) {
  const stub = channelStub(env, channelId);
  await enforceRateLimit(env, 'link_channel', [`client:${clientHash}`]);
  const secret = newOpaqueToken();
  const r = unwrap(await stub.open(await sha256(secret)));
  return { channelId, secret, expiresAt: r.expiresAt };
}

export async function channelSend(env: Env, channelId: string, cred: ChannelCredential, data: Uint8Array) {
  return { seq: unwrap(await channelStub(env, channelId).send(cred, data)).seq };
}

export async function channelPoll(env: Env, channelId: string, cred: ChannelCredential, after: number, waitMs: number) {
  const r = unwrap(await channelStub(env, channelId).poll(cred, after, waitMs));
  return {
    messages: r.messages.map((m: ChannelMessage) => ({ seq: m.seq, data: toB64u(m.data) })),
    peerAcked: r.peerAcked,
    linked: r.linked,
  };
}

export async function channelClose(env: Env, channelId: string, cred: ChannelCredential) {
  unwrap(await channelStub(env, channelId).close(cred));
  return { ok: true as const };
}

async function liveDeviceCount(db: Db, userId: string): Promise<number> {
  const row = await db
    .select({ n: sql<number>`count(*)` })
    .from(schema.devices)
    .where(and(eq(schema.devices.userId, userId), isNull(schema.devices.revokedAt)))
    .get();
  return row?.n ?? 0;
}

/**
 * A single-use linking token for `channelId`, which the caller's device claims. 409 `device_limit` when
 * the account is full; 403 `channel_claimed` / 409 `channel_used` / 404 / 410 from the channel.
 */
export async function issueLinkingToken(caller: Caller, channelId: string) {
  const { env, db, auth } = caller;
  const stub = channelStub(env, channelId);
  const limit = deviceLimit(env.DEVICE_LIMIT);
  if ((await liveDeviceCount(db, auth.userId)) >= limit) throw deviceLimitError(limit);
  await enforceRateLimit(env, 'link_token', [`acct:${auth.userId}`]);
  const claimed = unwrap(await stub.claim(auth.userId, auth.deviceId));
  const token = newOpaqueToken();
  const now = Date.now();
  await writeBatch(env, [
    db.insert(schema.linkingTokens).values({
      tokenHash: tokenHash(env, token, 'linking'),
      userId: auth.userId,
      issuedBy: auth.deviceId,
      channelId,
      expiresAt: Math.min(claimed.expiresAt, now + LIMITS.linkChannelTtlMs),
    }),
    auditStmt(caller, 'device.link_token_issued', { channel: channelId.slice(0, 6) }),
  ]);
  return { linkingToken: token, expiresAt: claimed.expiresAt };
}

export interface RedeemInput {
  linkingToken: string;
  channelId: string;
  channelSecret: string;
  deviceList: Uint8Array;
  signature: Uint8Array;
  name?: Uint8Array | undefined;
}

/**
 * Redeems a linking token for the new device (see the module header). `session(userId, deviceId)` gives
 * the statements that open its session, committed in the same batch. Returns the new device's ids.
 */
export async function redeemLinkingToken(
  env: Env,
  db: Db,
  clientHash: string,
  input: RedeemInput,
  session: (userId: string, deviceId: string) => Statement[],
): Promise<{ userId: string; deviceId: string; listVersion: number }> {
  const stub = channelStub(env, input.channelId);
  await enforceRateLimit(env, 'link_redeem', [`client:${clientHash}`]);
  const now = Date.now();
  const hash = tokenHash(env, input.linkingToken, 'linking');
  const token = await db.select().from(schema.linkingTokens).where(eq(schema.linkingTokens.tokenHash, hash)).get();
  if (!token) throw new AppError(401, 'invalid_linking_token', 'linking token unknown');
  if (token.usedAt !== null) throw new AppError(409, 'linking_token_used', 'this linking token was already used');
  if (token.expiresAt <= now) throw new AppError(401, 'linking_token_expired', 'this linking token expired');
  if (token.channelId !== input.channelId)
    throw new AppError(403, 'linking_token_mismatch', 'this linking token belongs to another channel');

  const user = await db
    .select({ identityKey: schema.users.identityKey })
    .from(schema.users)
    .where(eq(schema.users.id, token.userId))
    .get();
  const prev = await db
    .select({ list: schema.deviceLists.list })
    .from(schema.deviceLists)
    .where(eq(schema.deviceLists.userId, token.userId))
    .get();
  if (!user || !prev) throw new AppError(401, 'invalid_linking_token', 'linking token unknown');
  // A list for another account (wrong user id, or not signed by this account's identity key) is refused
  // by applyDeviceList with 422 invalid_device_list (`wrong_user` / `identity_mismatch`).
  const applied = await applyDeviceList(
    db,
    token.userId,
    asBytes(user.identityKey),
    asBytes(prev.list),
    input.deviceList,
    {
      now,
    },
  );
  if (applied.revoked.length > 0 || applied.added.length !== 1)
    throw new AppError(422, 'unexpected_device_change', 'linking must add exactly one device and remove none');
  const limit = deviceLimit(env.DEVICE_LIMIT);
  if (applied.verified.devices.length > limit) throw deviceLimitError(limit);
  const device = applied.added[0]!;
  let ok = false;
  try {
    ok = await verifyLoginChallenge(
      await curves(),
      device.signingKey,
      linkingChallenge(fromB64u(input.linkingToken)),
      token.userId,
      device.deviceId,
      input.signature,
    );
  } catch {
    ok = false;
  }
  if (!ok) throw new AppError(422, 'invalid_device_proof', 'the new device did not sign the linking token');
  // Only the device that opened the channel (it holds the secret) may finish, and only for the account
  // whose device claimed the channel.
  unwrap(await stub.redeem(input.channelSecret, token.userId));

  // The same webhook event as any other device registration (worker/webhooks/outbox.ts).
  const events = outboxEvents(db, [
    deviceEvent('device.added', {
      userId: token.userId,
      deviceId: device.deviceId,
      listVersion: applied.verified.version,
      at: now,
    }),
  ]);
  const statements: Statement[] = [
    ...applied.statements,
    db
      .update(schema.linkingTokens)
      .set({ usedAt: now, usedBy: device.deviceId })
      .where(and(eq(schema.linkingTokens.tokenHash, hash), isNull(schema.linkingTokens.usedAt))),
    // Guard: if the update above matched nothing (spent concurrently), this INSERT hits the primary key and
    // the whole batch — device, list, session — rolls back. Bound parameters only.
    db
      .insert(schema.linkingTokens)
      .select(
        sql`SELECT ${hash}, ${token.userId}, ${token.issuedBy}, ${token.channelId}, ${token.expiresAt}, ${now}, ${device.deviceId} WHERE NOT EXISTS (SELECT 1 FROM linking_tokens WHERE token_hash = ${hash} AND used_by = ${device.deviceId})`,
      ),
    ...(input.name
      ? [
          db
            .update(schema.devices)
            .set({ nameEnc: input.name })
            .where(and(eq(schema.devices.userId, token.userId), eq(schema.devices.deviceId, device.deviceId))),
        ]
      : []),
    ...session(token.userId, device.deviceId),
    auditInsert(
      db,
      'device.linked',
      {
        userId: token.userId,
        deviceId: device.deviceId,
        clientHash,
        details: { linkedBy: token.issuedBy, listVersion: applied.verified.version },
      },
      now,
    ),
    ...events.statements,
  ];
  try {
    await writeBatch(env, statements);
  } catch (err) {
    if (isTokenRace(err)) throw new AppError(409, 'linking_token_used', 'this linking token was already used');
    throw deviceListConflict(err) ?? err;
  }
  await events.release(env, db);
  await stub.markLinked().catch(() => undefined);
  await notifyConversations(env, db, token.userId, (s) => s.devicesChanged(token.userId));
  return { userId: token.userId, deviceId: device.deviceId, listVersion: applied.verified.version };
}

function isTokenRace(err: unknown): boolean {
  const msg = err instanceof Error ? `${err.message} ${String((err as { cause?: unknown }).cause ?? '')}` : '';
  return /constraint/i.test(msg) && msg.includes('linking_tokens.');
}

/** Stores a device name (ciphertext) for one of the caller's live devices; 404 `unknown_device` otherwise. */
export async function setDeviceName(caller: Caller, deviceId: string, name: Uint8Array): Promise<void> {
  const { db, auth } = caller;
  const rows = await db
    .update(schema.devices)
    .set({ nameEnc: name })
    .where(
      and(
        eq(schema.devices.userId, auth.userId),
        eq(schema.devices.deviceId, deviceId),
        isNull(schema.devices.revokedAt),
      ),
    )
    .returning({ deviceId: schema.devices.deviceId });
  if (rows.length !== 1) throw new AppError(404, 'unknown_device', 'no such device on this account');
}

/** Cron: linking tokens past their channel's lifetime (used or not; the audit log keeps the history). */
export async function cleanupLinkingTokens(db: Db, now = Date.now()): Promise<number> {
  const r = await db.delete(schema.linkingTokens).where(lt(schema.linkingTokens.expiresAt, now)).run();
  return r.meta.changes ?? 0;
}

// Account deletion (worker/domain/account.ts): BEFORE the D1 rows go (the channels are found through the
// account's linking tokens), every provisioning channel the account claimed is erased — the sealed bytes
// it relays and the claim that names the account. The linking_tokens rows themselves go with the other
// `user_id` tables.
onAccountDeletion(
  'linking-channels',
  async ({ env, db, userId }) => {
    const rows = await db
      .select({ channelId: schema.linkingTokens.channelId })
      .from(schema.linkingTokens)
      .where(eq(schema.linkingTokens.userId, userId));
    for (const channelId of new Set(rows.map((r) => r.channelId))) {
      await channelStub(env, channelId).eraseForAccount(userId);
    }
  },
  'before',
);
