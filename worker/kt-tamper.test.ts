/**
 * The key-transparency tampering hook (worker/kt-tamper.ts) is inert unless APP_ENV is "development" and
 * the flag is set; when on, it forges exactly what a malicious server would (a made-up identity key and a
 * device list that verifies under it) while the log's proof stays genuine — so the proof names a
 * different key, which is what clients must catch.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { fromB64u, toB64u } from '../web/src/protocol/bytes.js';
import { decodeDeviceList, verifyDeviceList } from '../web/src/protocol/identity.js';
import { defaultCurves } from '../web/src/protocol/primitives.js';
import { decodeKtEntry } from '../web/src/protocol/transparency.js';
import { ktTamperConfig, tamperUserAnswer } from './kt-tamper.js';
import { api, registerUser } from './test/fixtures.js';

const FLAG = JSON.stringify({ falseKeyFor: 'ktvictim' });

describe('E2E_CHAT_KT_TAMPER (browser-test tampering server)', () => {
  it('is ignored outside development, without the flag, and for a malformed flag', async () => {
    for (const APP_ENV of ['production', 'test'])
      expect(ktTamperConfig({ APP_ENV, E2E_CHAT_KT_TAMPER: FLAG })).toBeNull();
    expect(ktTamperConfig({ APP_ENV: 'development' })).toBeNull();
    expect(ktTamperConfig({ APP_ENV: 'development', E2E_CHAT_KT_TAMPER: '{' })).toBeNull();
    expect(ktTamperConfig({ APP_ENV: 'development', E2E_CHAT_KT_TAMPER: '{"falseKeyFor":""}' })).toBeNull();
    // The test pool runs with APP_ENV=test: a real lookup of a matching name is untouched.
    const victim = await registerUser('ktvictimreal');
    const viewer = await registerUser();
    const res = await api(`/api/users/by-name/${victim.username}`, { method: 'GET', token: viewer.accessToken });
    const body = (await res.json()) as { identityKey: string };
    expect(body.identityKey).toBe(toB64u(victim.keys.identity.publicKey));
    expect(env.APP_ENV).toBe('test');
  });

  it('in development with the flag, a matching user gets a forged key and list while the log proof stays genuine', async () => {
    const victim = await registerUser('ktvictimdev');
    const viewer = await registerUser();
    const res = await api(`/api/users/${victim.userId}/device-list`, { method: 'GET', token: viewer.accessToken });
    const genuine = (await res.json()) as {
      userId: string;
      identityKey: string;
      deviceList: { version: number; bytes: string };
      kt: { entry: string };
    };
    const dev = { APP_ENV: 'development', E2E_CHAT_KT_TAMPER: FLAG };
    const forged = await tamperUserAnswer(dev, victim.username, genuine);
    expect(forged.identityKey).not.toBe(genuine.identityKey);
    const list = await verifyDeviceList(await defaultCurves(), decodeDeviceList(fromB64u(forged.deviceList.bytes)));
    expect(toB64u(list.userIdentityKey)).toBe(forged.identityKey);
    expect(list.version).toBe(genuine.deviceList.version);
    expect(forged.kt).toBe(genuine.kt);
    const entry = decodeKtEntry(fromB64u(forged.kt.entry));
    expect(entry.kind === 'key' && toB64u(entry.identityKey)).toBe(genuine.identityKey);
    // Deterministic per user (the same forgery on every call), and other names are left alone.
    expect((await tamperUserAnswer(dev, victim.username, genuine)).identityKey).toBe(forged.identityKey);
    expect(await tamperUserAnswer(dev, 'someoneelse', genuine)).toBe(genuine);
  });
});
