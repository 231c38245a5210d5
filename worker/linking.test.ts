/**
 * Linking a device (issue 14) in workerd: the provisioning channel's lifetime and single use, the relay,
 * the single-use linking token bound to the account, the channel and the new device's key, the device
 * limit, and device names stored only as ciphertext. Every refusal has its stable code and changes nothing.
 */
import { runDurableObjectAlarm } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { accountKeys, openDeviceName, sealDeviceName } from '../web/src/protocol/account-keys.js';
import { fromB64u, toB64u, toHex, utf8 } from '../web/src/protocol/bytes.js';
import {
  decodeDeviceList,
  encodeDeviceList,
  signLoginChallenge,
  verifyDeviceList,
} from '../web/src/protocol/identity.js';
import { ed25519FromSecret } from '../web/src/protocol/keys.js';
import { linkingChallenge } from '../web/src/protocol/provisioning.js';
import { verifyEntryInclusion, verifyTreeHead } from '../web/src/protocol/transparency.js';
import { makeDb } from './db.js';
import { cleanupLinkingTokens, issueLinkingToken } from './domain/linking.js';
import type { Env } from './env.js';
import type { AppError } from './errors.js';
import { LIMITS } from './limits.js';
import { api, auditCount, type Fixture, makeUser, newDevice, nextList, snapshot } from './test/directory-fixtures.js';

const rand = (n: number) => crypto.getRandomValues(new Uint8Array(n));
const newChannelId = () => toB64u(rand(16));
let ipCounter = 0;
const freshIp = () => `198.18.${(++ipCounter >> 8) & 255}.${ipCounter & 255}`;

async function json(r: Response): Promise<Record<string, unknown> & { error?: { code: string } }> {
  return (await r.json()) as Record<string, unknown> & { error?: { code: string } };
}

async function openChannel(ip = freshIp()) {
  const channelId = newChannelId();
  const r = await api('/api/link/channels', null, { method: 'POST', json: { channelId }, ip });
  expect(r.status).toBe(201);
  const b = (await r.json()) as { secret: string; expiresAt: number };
  return { channelId, secret: b.secret, expiresAt: b.expiresAt };
}

async function token(f: Fixture, channelId: string, device = 0) {
  return api('/api/link/token', await f.token(device), { method: 'POST', json: { channelId } });
}

/** Everything the new device sends to redeem: its list (version + 1 with it added) and its proof. */
async function redeemBody(
  f: Fixture,
  ch: { channelId: string; secret: string },
  linkingToken: string,
  deviceId = `n${rand(3).join('')}`,
) {
  const dev = await newDevice(f, deviceId);
  const list = await nextList(f, [...f.devices, dev]);
  const signature = await signLoginChallenge(
    f.curves,
    dev.signing,
    linkingChallenge(fromB64u(linkingToken)),
    f.userId,
    dev.deviceId,
  );
  const name = sealDeviceName(rand, accountKeys(f.t.identity.secretKey), f.userId, dev.deviceId, 'Phone of Alice');
  return {
    dev,
    list,
    body: {
      linkingToken,
      channelId: ch.channelId,
      channelSecret: ch.secret,
      deviceList: toB64u(encodeDeviceList(list)),
      signature: toB64u(signature),
      name: toB64u(name),
    },
  };
}

/** Opens a channel, gets a token for `f` and redeems it: `f` gains the new device. */
async function link(f: Fixture) {
  const ch = await openChannel();
  const t = (await json(await token(f, ch.channelId))) as { linkingToken: string };
  const r = await redeemBody(f, ch, t.linkingToken);
  const res = await api('/api/devices', null, { method: 'POST', json: r.body, ip: freshIp() });
  return { ch, token: t.linkingToken, res, ...r };
}

const expectError = async (res: Response, status: number, code: string) => {
  const b = await json(res);
  expect([res.status, b.error?.code]).toEqual([status, code]);
  return b;
};

describe('provisioning channel', () => {
  it('is opened by the new device, relays sealed bytes both ways in order, and deletes what was acknowledged', async () => {
    const alice = await makeUser('chan');
    const ch = await openChannel();
    expect(ch.secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(ch.expiresAt - Date.now()).toBeLessThanOrEqual(LIMITS.linkChannelTtlMs);
    expect((await token(alice, ch.channelId)).status).toBe(201);
    const at = await alice.token();
    for (const data of ['first', 'second'])
      expect(
        (
          await api(`/api/link/channels/${ch.channelId}/existing/send`, at, {
            method: 'POST',
            json: { data: toB64u(utf8(data)) },
          })
        ).status,
      ).toBe(200);
    const p1 = await json(
      await api(`/api/link/channels/${ch.channelId}/new/poll`, null, {
        method: 'POST',
        json: { secret: ch.secret, after: 0 },
      }),
    );
    expect(
      (p1.messages as { seq: number; data: string }[]).map((m) => [m.seq, new TextDecoder().decode(fromB64u(m.data))]),
    ).toEqual([
      [1, 'first'],
      [2, 'second'],
    ]);
    // The reply travels the other way; the new device's cursor 2 acknowledges (deletes) both messages.
    expect(
      (
        await api(`/api/link/channels/${ch.channelId}/new/send`, null, {
          method: 'POST',
          json: { secret: ch.secret, data: toB64u(utf8('ok')) },
        })
      ).status,
    ).toBe(200);
    const p2 = await json(
      await api(`/api/link/channels/${ch.channelId}/new/poll`, null, {
        method: 'POST',
        json: { secret: ch.secret, after: 2 },
      }),
    );
    expect(p2.messages).toEqual([]);
    const back = await json(
      await api(`/api/link/channels/${ch.channelId}/existing/poll`, at, { method: 'POST', json: { after: 0 } }),
    );
    expect(back.peerAcked).toBe(2);
    expect((back.messages as unknown[]).length).toBe(1);
  });

  it('a long poll waits for the next message and returns as soon as it is sent', async () => {
    const alice = await makeUser('chanwait');
    const ch = await openChannel();
    await token(alice, ch.channelId);
    const at = await alice.token();
    const started = Date.now();
    const poll = api(`/api/link/channels/${ch.channelId}/new/poll`, null, {
      method: 'POST',
      json: { secret: ch.secret, after: 0, waitMs: 20_000 },
    });
    await new Promise((r) => setTimeout(r, 200));
    await api(`/api/link/channels/${ch.channelId}/existing/send`, at, {
      method: 'POST',
      json: { data: toB64u(utf8('late')) },
    });
    const b = await json(await poll);
    expect((b.messages as unknown[]).length).toBe(1);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('refuses an unknown, malformed, wrong-secret, expired or closed channel with distinct codes', async () => {
    const alice = await makeUser('chanbad');
    await expectError(
      await api(`/api/link/channels/${newChannelId()}/new/poll`, null, {
        method: 'POST',
        json: { secret: 'A'.repeat(43), after: 0 },
      }),
      404,
      'channel_not_found',
    );
    await expectError(
      await api('/api/link/channels', null, { method: 'POST', json: { channelId: 'A'.repeat(21) }, ip: freshIp() }),
      400,
      'invalid_request',
    );
    // 22 characters that are not the canonical encoding of 16 bytes.
    await expectError(
      await api('/api/link/channels', null, {
        method: 'POST',
        json: { channelId: `${'A'.repeat(21)}B` },
        ip: freshIp(),
      }),
      400,
      'invalid_channel_id',
    );
    const ch = await openChannel();
    await expectError(
      await api('/api/link/channels', null, { method: 'POST', json: { channelId: ch.channelId }, ip: freshIp() }),
      409,
      'channel_exists',
    );
    await expectError(
      await api(`/api/link/channels/${ch.channelId}/new/poll`, null, {
        method: 'POST',
        json: { secret: 'B'.repeat(43), after: 0 },
      }),
      403,
      'channel_forbidden',
    );
    // The linking side must claim it (by asking for a token) before relaying.
    await expectError(
      await api(`/api/link/channels/${ch.channelId}/existing/send`, await alice.token(), {
        method: 'POST',
        json: { data: 'AA' },
      }),
      409,
      'channel_unclaimed',
    );

    // Expired: ten minutes later the object answers 410 and deletes itself; after the alarm it is unknown.
    const stub = env.LINK_CHANNEL.get(env.LINK_CHANNEL.idFromName(ch.channelId));
    const late = await stub.poll({ side: 'new', secret: ch.secret }, 0, 0, Date.now() + LIMITS.linkChannelTtlMs + 1);
    expect(late).toMatchObject({ ok: false, status: 410, code: 'channel_expired' });
    await expectError(
      await api(`/api/link/channels/${ch.channelId}/new/poll`, null, {
        method: 'POST',
        json: { secret: ch.secret, after: 0 },
      }),
      404,
      'channel_not_found',
    );

    const ch2 = await openChannel();
    expect(await runDurableObjectAlarm(env.LINK_CHANNEL.get(env.LINK_CHANNEL.idFromName(ch2.channelId)))).toBe(true);
    await expectError(
      await api(`/api/link/channels/${ch2.channelId}/new/poll`, null, {
        method: 'POST',
        json: { secret: ch2.secret, after: 0 },
      }),
      404,
      'channel_not_found',
    );

    const ch3 = await openChannel();
    expect(
      (
        await api(`/api/link/channels/${ch3.channelId}/new/close`, null, {
          method: 'POST',
          json: { secret: ch3.secret },
        })
      ).status,
    ).toBe(200);
    await expectError(
      await api(`/api/link/channels/${ch3.channelId}/new/poll`, null, {
        method: 'POST',
        json: { secret: ch3.secret, after: 0 },
      }),
      410,
      'channel_closed',
    );
    await expectError(await token(alice, ch3.channelId), 410, 'channel_closed');
  });

  it('bounds what one message and one channel carry, and what may wait unread', async () => {
    const alice = await makeUser('chansize');
    const ch = await openChannel();
    await token(alice, ch.channelId);
    const at = await alice.token();
    await expectError(
      await api(`/api/link/channels/${ch.channelId}/existing/send`, at, {
        method: 'POST',
        json: { data: toB64u(new Uint8Array(LIMITS.linkMaxMessageBytes + 1)) },
      }),
      400,
      'invalid_request',
    );
    await expectError(
      await api(`/api/link/channels/${ch.channelId}/new/send`, null, {
        method: 'POST',
        json: { secret: ch.secret, data: toB64u(new Uint8Array(LIMITS.linkMaxReplyBytes + 1)) },
      }),
      400,
      'invalid_request',
    );
    // Fill the queue to the new device up to its limit: the next message must wait (429 with Retry-After).
    const big = toB64u(new Uint8Array(LIMITS.linkMaxMessageBytes));
    const fit = Math.floor(LIMITS.linkMaxQueuedBytes / LIMITS.linkMaxMessageBytes);
    for (let i = 0; i < fit; i++)
      expect(
        (await api(`/api/link/channels/${ch.channelId}/existing/send`, at, { method: 'POST', json: { data: big } }))
          .status,
      ).toBe(200);
    const full = await api(`/api/link/channels/${ch.channelId}/existing/send`, at, {
      method: 'POST',
      json: { data: big },
    });
    await expectError(full, 429, 'channel_full');
    expect(full.headers.get('retry-after')).toBe('1');
    // Once the new device acknowledged, there is room again.
    await api(`/api/link/channels/${ch.channelId}/new/poll`, null, {
      method: 'POST',
      json: { secret: ch.secret, after: fit },
    });
    expect(
      (await api(`/api/link/channels/${ch.channelId}/existing/send`, at, { method: 'POST', json: { data: big } }))
        .status,
    ).toBe(200);
  });

  it('a flood of channel opens from one address gets 429; another address is unaffected', async () => {
    const ip = freshIp();
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++)
      statuses.push(
        (await api('/api/link/channels', null, { method: 'POST', json: { channelId: newChannelId() }, ip })).status,
      );
    expect(statuses.slice(0, 10).every((s) => s === 201)).toBe(true);
    expect(statuses.slice(10)).toEqual([429, 429]);
    expect(
      (await api('/api/link/channels', null, { method: 'POST', json: { channelId: newChannelId() }, ip: freshIp() }))
        .status,
    ).toBe(201);
  });
});

describe('linking token', () => {
  it('links the new device: list v+1 stored, token spent, name stored as ciphertext, its own session issued', async () => {
    const alice = await makeUser('linkok');
    const { res, dev, token: t, list, body } = await link(alice);
    expect(res.status).toBe(201);
    const b = (await res.json()) as { accessToken: string; userId: string; deviceId: string; listVersion: number };
    expect([b.userId, b.deviceId, b.listVersion]).toEqual([alice.userId, dev.deviceId, 2]);
    expect(res.headers.getSetCookie().some((c) => c.startsWith('__Host-e2e_refresh='))).toBe(true);
    // The new device is signed in as itself.
    const s = await json(await api('/api/auth/session', b.accessToken, { method: 'GET' }));
    expect([s.userId, s.deviceId]).toEqual([alice.userId, dev.deviceId]);
    // The stored list is exactly the one the user identity key signed.
    const row = await env.DB.prepare('SELECT version, list FROM device_lists WHERE user_id = ?')
      .bind(alice.userId)
      .first<{ version: number; list: ArrayBuffer }>();
    expect(row!.version).toBe(2);
    expect(toB64u(new Uint8Array(row!.list))).toBe(toB64u(encodeDeviceList(list)));
    const verified = await verifyDeviceList(
      alice.curves,
      decodeDeviceList(new Uint8Array(row!.list)),
      alice.t.identity.publicKey,
    );
    expect(verified.devices.map((d) => d.deviceId)).toContain(dev.deviceId);
    const tok = await env.DB.prepare('SELECT used_by FROM linking_tokens WHERE used_at IS NOT NULL AND user_id = ?')
      .bind(alice.userId)
      .first<{ used_by: string }>();
    expect(tok!.used_by).toBe(dev.deviceId);
    expect(await auditCount('device.linked')).toBeGreaterThan(0);
    // Replayed: the same token (and proof) again.
    const again = await redeemBody(alice, { channelId: body.channelId, secret: body.channelSecret }, t);
    await expectError(
      await api('/api/devices', null, { method: 'POST', json: again.body, ip: freshIp() }),
      409,
      'linking_token_used',
    );
    // The channel cannot be claimed again.
    await expectError(await token(alice, body.channelId), 409, 'channel_used');
  });

  it('key transparency: linking appends nothing; the device-list fetch proves the same logged identity key, which signs the new list', async () => {
    const alice = await makeUser('linkkt');
    const viewer = await makeUser('linkktview');
    const logKey = (await ed25519FromSecret(alice.curves, fromB64u(env.KT_LOG_SIGNING_KEY))).publicKey;
    const fetchList = async () => {
      const res = await api(`/api/users/${alice.userId}/device-list`, await viewer.token(), { method: 'GET' });
      expect(res.status).toBe(200);
      const b = (await res.json()) as {
        deviceList: { version: number; bytes: string };
        kt: { entry: string; index: number; head: string; proof: string[] };
      };
      // Verified as a client does: a head signed by the log key, the entry included in it.
      const head = await verifyTreeHead(alice.curves, logKey, fromB64u(b.kt.head));
      const entry = verifyEntryInclusion(head, b.kt.index, fromB64u(b.kt.entry), b.kt.proof.map(fromB64u));
      return { list: fromB64u(b.deviceList.bytes), version: b.deviceList.version, kt: b.kt, entry };
    };
    const before = await fetchList();
    const { res, dev } = await link(alice);
    expect(res.status).toBe(201);
    const after = await fetchList();
    expect(after.version).toBe(before.version + 1);
    // The same entry (index and bytes): the identity key and its version did not change.
    expect([after.kt.index, after.kt.entry]).toEqual([before.kt.index, before.kt.entry]);
    expect(after.entry).toMatchObject({ kind: 'key', userId: alice.userId, username: alice.username, version: 1 });
    const logged = after.entry.kind === 'key' ? after.entry.identityKey : new Uint8Array(0);
    expect(toB64u(logged)).toBe(toB64u(alice.t.identity.publicKey));
    // The list with the linked device verifies under exactly the logged key.
    const verified = await verifyDeviceList(alice.curves, decodeDeviceList(after.list), logged);
    expect(verified.devices.map((d) => d.deviceId)).toContain(dev.deviceId);
  });

  it('device names are stored only as ciphertext: only the user’s devices can read them', async () => {
    const alice = await makeUser('linkname');
    const { res, dev, body } = await link(alice);
    expect(res.status).toBe(201);
    // Scan every column of every table for the plaintext name (and its UTF-16 / base64url forms).
    const needles = ['Phone of Alice', toB64u(utf8('Phone of Alice')), toHex(utf8('Phone of Alice'))];
    const all = await snapshot([]);
    for (const rows of Object.values(all))
      for (const r of rows) for (const n of needles) expect(String(r).includes(n)).toBe(false);
    const list = (await json(await api('/api/devices', await alice.token(), { method: 'GET' }))).devices as {
      deviceId: string;
      name: string | null;
    }[];
    const named = list.find((d) => d.deviceId === dev.deviceId)!;
    expect(named.name).toBe(body.name);
    expect(
      openDeviceName(accountKeys(alice.t.identity.secretKey), alice.userId, dev.deviceId, fromB64u(named.name!)),
    ).toBe('Phone of Alice');
    // Renaming: ciphertext of the exact length only, and only for the account's own live devices.
    const at = await alice.token();
    const renamed = toB64u(sealDeviceName(rand, accountKeys(alice.t.identity.secretKey), alice.userId, 'd0', 'Laptop'));
    expect((await api('/api/devices/d0/name', at, { method: 'PUT', json: { name: renamed } })).status).toBe(200);
    await expectError(
      await api('/api/devices/d0/name', at, { method: 'PUT', json: { name: toB64u(utf8('Laptop')) } }),
      400,
      'invalid_request',
    );
    await expectError(
      await api('/api/devices/nope/name', at, { method: 'PUT', json: { name: renamed } }),
      404,
      'unknown_device',
    );
  });

  it('refuses a wrong, tampered, replayed, expired or foreign token and a bad proof, changing nothing', async () => {
    const alice = await makeUser('linkbad');
    const bob = await makeUser('linkbad2');
    const ch = await openChannel();
    const t = ((await json(await token(alice, ch.channelId))) as { linkingToken: string }).linkingToken;
    const before = await snapshot();
    const post = (body: unknown) => api('/api/devices', null, { method: 'POST', json: body, ip: freshIp() });

    // Unknown / tampered token.
    const wrong = await redeemBody(alice, ch, toB64u(rand(32)));
    await expectError(await post(wrong.body), 401, 'invalid_linking_token');
    // The token used for another account: Bob's next list with Alice's token.
    const foreign = await redeemBody(bob, ch, t);
    await expectError(await post(foreign.body), 422, 'invalid_device_list');
    // Another channel (and its secret) with Alice's token.
    const other = await openChannel();
    const moved = await redeemBody(alice, other, t);
    await expectError(await post(moved.body), 403, 'linking_token_mismatch');
    // The right token, but not the channel's secret: only the device that opened the channel may finish.
    const noSecret = await redeemBody(alice, { channelId: ch.channelId, secret: other.secret }, t);
    await expectError(await post(noSecret.body), 403, 'channel_forbidden');
    // A proof signed by a key that is not the new device's, or over another token.
    const r = await redeemBody(alice, ch, t);
    const otherDev = await newDevice(alice, 'zz');
    const badSig = await signLoginChallenge(
      alice.curves,
      otherDev.signing,
      linkingChallenge(fromB64u(t)),
      alice.userId,
      r.dev.deviceId,
    );
    await expectError(await post({ ...r.body, signature: toB64u(badSig) }), 422, 'invalid_device_proof');
    const otherTok = await signLoginChallenge(
      alice.curves,
      r.dev.signing,
      linkingChallenge(rand(32)),
      alice.userId,
      r.dev.deviceId,
    );
    await expectError(await post({ ...r.body, signature: toB64u(otherTok) }), 422, 'invalid_device_proof');
    // A list that removes a device, or adds two.
    const extra = await newDevice(alice, 'two');
    const two = await nextList(alice, [...alice.devices, r.dev, extra]);
    await expectError(
      await post({ ...r.body, deviceList: toB64u(encodeDeviceList(two)) }),
      422,
      'unexpected_device_change',
    );
    // Malformed bodies.
    await expectError(await post({ ...r.body, linkingToken: 'short' }), 400, 'invalid_request');
    await expectError(await post({ ...r.body, name: toB64u(utf8('Phone')) }), 400, 'invalid_request');

    expect(await snapshot()).toEqual(before);
    // Expired: the token row outlives its channel's ten minutes by nothing.
    await env.DB.prepare('UPDATE linking_tokens SET expires_at = ? WHERE user_id = ?')
      .bind(Date.now() - 1, alice.userId)
      .run();
    await expectError(await post(r.body), 401, 'linking_token_expired');
  });

  it('a second account cannot claim a channel another account’s device claimed', async () => {
    const alice = await makeUser('claim1', 2);
    const bob = await makeUser('claim2');
    const ch = await openChannel();
    expect((await token(alice, ch.channelId)).status).toBe(201);
    expect((await token(alice, ch.channelId)).status).toBe(201); // the same device may ask again
    await expectError(await token(alice, ch.channelId, 1), 403, 'channel_claimed');
    await expectError(await token(bob, ch.channelId), 403, 'channel_claimed');
    await expectError(
      await api(`/api/link/channels/${ch.channelId}/existing/poll`, await bob.token(), {
        method: 'POST',
        json: { after: 0 },
      }),
      403,
      'channel_claimed',
    );
  });
});

describe('device limit', () => {
  it('a 6th device is refused with 409 device_limit when asking for a token and when registering', async () => {
    const alice = await makeUser('limit5', 5);
    const ch = await openChannel();
    const b = await expectError(await token(alice, ch.channelId), 409, 'device_limit');
    expect(b.error).toMatchObject({ limit: 5 });
    // The older registration path (a device whose key the caller holds) is limited too.
    const sixth = await newDevice(alice, 'd5');
    const list = await nextList(alice, [...alice.devices, sixth]);
    const at = await alice.token();
    const chResp = (await json(await api('/api/devices/challenge', at, { method: 'POST' }))) as {
      challengeId: string;
      challenge: string;
    };
    const signature = await signLoginChallenge(
      alice.curves,
      sixth.signing,
      fromB64u(chResp.challenge),
      alice.userId,
      'd5',
    );
    const res = await api('/api/devices', at, {
      method: 'POST',
      json: {
        deviceList: toB64u(encodeDeviceList(list)),
        challengeId: chResp.challengeId,
        signature: toB64u(signature),
      },
    });
    await expectError(res, 409, 'device_limit');
  });

  it('is configurable with DEVICE_LIMIT', async () => {
    const alice = await makeUser('limit2', 2);
    const ch = await openChannel();
    const caller = {
      env: { ...env, DEVICE_LIMIT: '2' } as Env,
      db: makeDb(env),
      auth: { userId: alice.userId, deviceId: 'd0', familyId: 'f' },
      clientHash: 'x',
    };
    const err = (await issueLinkingToken(caller, ch.channelId).catch((e) => e)) as AppError;
    expect([err.status, err.code]).toEqual([409, 'device_limit']);
    const ok = await issueLinkingToken({ ...caller, env: { ...env, DEVICE_LIMIT: '3' } as Env }, ch.channelId);
    expect(ok.linkingToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});

describe('removal', () => {
  it('a removed device’s refresh and its requests say device_revoked and carry the signed list without it', async () => {
    const alice = await makeUser('removed');
    const { res, dev } = await link(alice);
    const b2 = (await res.clone().json()) as { accessToken: string };
    const cookie = res.headers
      .getSetCookie()
      .find((c) => c.startsWith('__Host-e2e_refresh='))!
      .split(';')[0]!
      .split('=')[1]!;
    alice.devices.push(dev);
    alice.list = await nextList(alice, alice.devices);
    const without = await nextList(alice, [alice.devices[0]!]);
    const rv = await api(`/api/devices/${dev.deviceId}/revoke`, await alice.token(), {
      method: 'POST',
      json: { deviceList: toB64u(encodeDeviceList(without)) },
    });
    expect(rv.status).toBe(200);
    const r = await api('/api/auth/refresh', null, {
      method: 'POST',
      headers: { cookie: `__Host-e2e_refresh=${cookie}` },
    });
    const b = await expectError(r, 401, 'session_revoked');
    expect(b.error).toMatchObject({ reason: 'device_revoked', deviceList: toB64u(encodeDeviceList(without)) });
    // Any other request of the removed device says the same (its access token is still unexpired).
    const r2 = await api('/api/devices', b2.accessToken, { method: 'GET' });
    const e2 = await expectError(r2, 401, 'session_revoked');
    expect(e2.error).toMatchObject({ reason: 'device_revoked', deviceList: toB64u(encodeDeviceList(without)) });
  });
});

describe('clean-up', () => {
  it('the hourly cron deletes linking tokens past their channel’s lifetime, used or not', async () => {
    const alice = await makeUser('cleanup');
    const ch = await openChannel();
    expect((await token(alice, ch.channelId)).status).toBe(201);
    const count = async () =>
      (await env.DB.prepare('SELECT count(*) AS n FROM linking_tokens WHERE user_id = ?')
        .bind(alice.userId)
        .first<{ n: number }>())!.n;
    expect(await count()).toBe(1);
    expect(await cleanupLinkingTokens(makeDb(env))).toBeGreaterThanOrEqual(0);
    expect(await count()).toBe(1);
    await cleanupLinkingTokens(makeDb(env), Date.now() + LIMITS.linkChannelTtlMs + 1);
    expect(await count()).toBe(0);
  });
});
