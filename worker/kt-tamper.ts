/**
 * Test-mode key-transparency tampering, for the browser test in which a malicious server gives Bob a false
 * key for Alice (e2e/kt.test.ts): with `E2E_CHAT_KT_TAMPER='{"falseKeyFor":"<username prefix>"}'` the
 * username lookup and the device-list fetch of every user whose username starts with the prefix answer with
 * a user identity key and a one-device list the SERVER made up (as a server that wants to read the user's
 * messages would), while the key-transparency proof stays the genuine one — the server cannot prove a key
 * it did not log. Clients must refuse that key.
 *
 * Two independent locks keep it out of production, as for the D1 fault hook (worker/faults.ts):
 *  1. compiled out: worker/routes/users.ts calls `tamperUserAnswer` only when Vite's mode is "development"
 *     (`npm run dev`) or "test" (the Vitest workers pool); `vite build` replaces the mode by "production" and
 *     the bundler drops this file — `deploy` and `deploy:check` fail if any of it is found in dist/
 *     (scripts/check-fault-hook.ts);
 *  2. inert: even where compiled in, it acts only if APP_ENV is "development" AND the flag is set:
 *     wrangler.toml sets APP_ENV="production" and declares no such variable (worker/kt-tamper.test.ts).
 */
import { toB64u } from '../web/src/protocol/bytes.js';
import { encodeDeviceList, issueDeviceCertificate, signDeviceList } from '../web/src/protocol/identity.js';
import { ed25519FromSecret, x25519FromSecret } from '../web/src/protocol/keys.js';
import { defaultCurves, sha256 } from '../web/src/protocol/primitives.js';
import type { Env } from './env.js';
import { log } from './log.js';

export interface KtTamperConfig {
  falseKeyFor: string;
}

export function ktTamperConfig(env: Partial<Pick<Env, 'APP_ENV' | 'E2E_CHAT_KT_TAMPER'>>): KtTamperConfig | null {
  if (env.APP_ENV !== 'development' || !env.E2E_CHAT_KT_TAMPER) return null;
  try {
    const c = JSON.parse(env.E2E_CHAT_KT_TAMPER) as Partial<KtTamperConfig>;
    return typeof c.falseKeyFor === 'string' && c.falseKeyFor.length >= 3 ? { falseKeyFor: c.falseKeyFor } : null;
  } catch {
    return null;
  }
}

/** The server's made-up identity for `userId`: the same on every call (seeds derived from the id). */
async function forgedIdentity(userId: string) {
  const curves = await defaultCurves();
  const seed = (label: string) => sha256(new TextEncoder().encode(`kt tamper forged ${label} ${userId}`));
  const uik = await ed25519FromSecret(curves, seed('identity'));
  const signing = await ed25519FromSecret(curves, seed('signing'));
  const dh = await x25519FromSecret(curves, seed('dh'));
  const certificate = await issueDeviceCertificate(curves, uik, {
    userId,
    deviceId: 'forged-device',
    signingKey: signing.publicKey,
    identityKey: dh.publicKey,
    createdAt: 1_700_000_000_000,
  });
  return { uik, certificate };
}

/**
 * The tampered body of a users-route answer (`{ userId, username, identityKey, …, deviceList? }`), or the
 * body unchanged when tampering is off or the username does not match.
 */
export async function tamperUserAnswer<
  T extends { userId: string; identityKey: string; deviceList?: { version: number; bytes: string } },
>(env: Partial<Pick<Env, 'APP_ENV' | 'E2E_CHAT_KT_TAMPER'>>, username: string, body: T): Promise<T> {
  const cfg = ktTamperConfig(env);
  if (!cfg || !username.startsWith(cfg.falseKeyFor)) return body;
  log('warn', 'kt_tamper', { kind: 'false_key' });
  const forged = await forgedIdentity(body.userId);
  const out: T = { ...body, identityKey: toB64u(forged.uik.publicKey) };
  if (body.deviceList) {
    const version = body.deviceList.version;
    const list = await signDeviceList(await defaultCurves(), forged.uik, {
      userId: body.userId,
      version,
      devices: [forged.certificate],
    });
    out.deviceList = { version, bytes: toB64u(encodeDeviceList(list)) };
  }
  return out;
}
