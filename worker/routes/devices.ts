/**
 * /api/devices — the signed-in user's devices (domain logic in worker/domain/devices.ts).
 *
 *   GET  /api/devices                     → { devices: [...], deviceList: { version, bytes } | null }
 *   POST /api/devices/challenge           → { challengeId, challenge }   (for the NEW device to sign)
 *   POST /api/devices                     { deviceList, challengeId, signature } → 201 { deviceList }
 *   POST /api/devices (no bearer)         { linkingToken, channelId, channelSecret, deviceList, signature, name? }
 *                                         → 201 tokens + refresh cookie (the new device links itself, issue 14)
 *   PUT  /api/devices/:deviceId/name      { name } → { ok }   (ciphertext only: account-keys.ts)
 *   POST /api/devices/:deviceId/revoke    { deviceList } → { deviceList }
 */
import { Hono } from 'hono';
import { z } from 'zod';
import { DEVICE_NAME_SEALED_LEN } from '../../web/src/protocol/account-keys.js';
import { MAX_DEVICES_PER_USER } from '../../web/src/protocol/constants.js';
import { requireAuth } from '../auth/middleware.js';
import { clientKey } from '../context.js';
import { makeDb } from '../db.js';
import {
  currentDeviceList,
  issueDeviceChallenge,
  listDevices,
  registerDevice,
  revokeDevice,
} from '../domain/devices.js';
import { redeemLinkingToken, setDeviceName } from '../domain/linking.js';
import type { AppBindings } from '../env.js';
import { b64uBytes, idString } from '../validate.js';
import { openSession, tokens } from './auth.js';
import { callerOf, parseInput, readJson, smallBody } from './input.js';

/** A device list of MAX_DEVICES_PER_USER certificates is ~2 KB; leave room, refuse anything bigger. */
const LIST_MAX = 256 + MAX_DEVICES_PER_USER * 512;

export const registerDeviceBody = z.object({
  deviceList: b64uBytes({ max: LIST_MAX }),
  challengeId: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/),
  signature: b64uBytes({ len: 64 }),
});
export const revokeDeviceBody = z.object({ deviceList: b64uBytes({ max: LIST_MAX }) });
/** The new device registering itself with a linking token instead of a bearer token (issue 14). */
export const linkDeviceBody = z.object({
  linkingToken: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
  channelId: z.string().regex(/^[A-Za-z0-9_-]{22}$/),
  channelSecret: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
  deviceList: b64uBytes({ max: LIST_MAX }),
  signature: b64uBytes({ len: 64 }),
  name: b64uBytes({ len: DEVICE_NAME_SEALED_LEN }).optional(),
});
export const deviceNameBody = z.object({ name: b64uBytes({ len: DEVICE_NAME_SEALED_LEN }) });

export const devices = new Hono<AppBindings>()
  .use('*', smallBody)
  .post('/', async (c, next) => {
    // Without a bearer token this is the new device redeeming its linking token; with one, the existing
    // flow below (requireAuth) registers a device whose key the caller already holds.
    if (c.req.header('authorization') !== undefined) return next();
    const body = await readJson(c, linkDeviceBody);
    const db = makeDb(c.env);
    let session: ReturnType<typeof openSession> | null = null;
    const now = Date.now();
    const r = await redeemLinkingToken(c.env, db, clientKey(c), body, (userId, deviceId) => {
      session = openSession(c.env, db, userId, deviceId, now);
      return session.statements;
    });
    const s = session as ReturnType<typeof openSession> | null;
    if (!s) throw new Error('linking: no session opened');
    const t = await tokens(c, {
      userId: r.userId,
      deviceId: r.deviceId,
      familyId: s.familyId,
      refreshToken: s.refreshToken,
    });
    c.header('Cache-Control', 'no-store');
    return c.json({ ...t, listVersion: r.listVersion }, 201);
  })
  .use('*', requireAuth)
  .get('/', async (c) => {
    const db = makeDb(c.env);
    const { userId } = c.get('auth');
    const [all, deviceList] = await Promise.all([listDevices(db, userId), currentDeviceList(db, userId)]);
    return c.json({ devices: all, deviceList });
  })
  .post('/challenge', async (c) => c.json(await issueDeviceChallenge(callerOf(c))))
  .post('/', async (c) => {
    const body = await readJson(c, registerDeviceBody);
    return c.json({ deviceList: await registerDevice(callerOf(c), body) }, 201);
  })
  .put('/:deviceId/name', async (c) => {
    const deviceId = parseInput(idString, c.req.param('deviceId'));
    const body = await readJson(c, deviceNameBody);
    await setDeviceName(callerOf(c), deviceId, body.name);
    return c.json({ ok: true });
  })
  .post('/:deviceId/revoke', async (c) => {
    const deviceId = parseInput(idString, c.req.param('deviceId'));
    const body = await readJson(c, revokeDeviceBody);
    return c.json({ deviceList: await revokeDevice(callerOf(c), { deviceId, deviceList: body.deviceList }) });
  });
