/**
 * /api/devices — the signed-in user's devices (domain logic in worker/domain/devices.ts).
 *
 *   GET  /api/devices                     → { devices: [...], deviceList: { version, bytes } | null }
 *   POST /api/devices/challenge           → { challengeId, challenge }   (for the NEW device to sign)
 *   POST /api/devices                     { deviceList, challengeId, signature } → 201 { deviceList }
 *   POST /api/devices/:deviceId/revoke    { deviceList } → { deviceList }
 */
import { Hono } from 'hono';
import { z } from 'zod';
import { MAX_DEVICES_PER_USER } from '../../web/src/protocol/constants.js';
import { requireAuth } from '../auth/middleware.js';
import { makeDb } from '../db.js';
import {
  currentDeviceList,
  issueDeviceChallenge,
  listDevices,
  registerDevice,
  revokeDevice,
} from '../domain/devices.js';
import type { AppBindings } from '../env.js';
import { b64uBytes, idString } from '../validate.js';
import { callerOf, parseInput, readJson, smallBody } from './input.js';

/** A device list of MAX_DEVICES_PER_USER certificates is ~2 KB; leave room, refuse anything bigger. */
const LIST_MAX = 256 + MAX_DEVICES_PER_USER * 512;

export const registerDeviceBody = z.object({
  deviceList: b64uBytes({ max: LIST_MAX }),
  challengeId: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/),
  signature: b64uBytes({ len: 64 }),
});
export const revokeDeviceBody = z.object({ deviceList: b64uBytes({ max: LIST_MAX }) });

export const devices = new Hono<AppBindings>()
  .use('*', smallBody, requireAuth)
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
  .post('/:deviceId/revoke', async (c) => {
    const deviceId = parseInput(idString, c.req.param('deviceId'));
    const body = await readJson(c, revokeDeviceBody);
    return c.json({ deviceList: await revokeDevice(callerOf(c), { deviceId, deviceList: body.deviceList }) });
  });
