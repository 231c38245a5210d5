import { describe, expect, it } from 'vitest';
import {
  createHttpApi,
  HttpApiError,
  HttpClient,
  isApiError,
  MAX_PART_BYTES,
  MIN_PART_BYTES,
  memoryCookieJar,
} from './http-transport.js';

type Call = { url: string; init: RequestInit };

/** A scripted server: each handler answers one request, in order. */
function scripted(...answers: ((c: Call) => Response)[]) {
  const calls: Call[] = [];
  const fetchFn = (async (url: string, init: RequestInit) => {
    const c = { url, init };
    calls.push(c);
    const next = answers.shift();
    if (!next) throw new Error(`unexpected request ${url}`);
    return next(c);
  }) as unknown as typeof fetch;
  return { calls, fetchFn };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });
const tokens = (t: string) => ({ accessToken: t, expiresIn: 600, userId: 'u1', deviceId: 'd1' });
const header = (c: Call, name: string) => new Headers(c.init.headers).get(name);

describe('HttpClient', () => {
  it('refreshes once with the cookie on 401 invalid_token and retries; the cookie jar rotates', async () => {
    const { calls, fetchFn } = scripted(
      () => json(401, { error: { code: 'invalid_token', message: 'expired' } }),
      () => json(200, tokens('fresh'), { 'set-cookie': '__Host-e2e_refresh=r2; Path=/; HttpOnly; Secure; Max-Age=60' }),
      () => json(200, { ok: true }),
    );
    const jar = memoryCookieJar();
    jar.store(['__Host-e2e_refresh=r1; Path=/; Max-Age=60']);
    const http = new HttpClient({ baseUrl: 'http://x', fetch: fetchFn, cookies: jar });
    http.setTokens(tokens('stale'));
    expect(await http.request('GET', '/api/thing')).toEqual({ ok: true });
    expect(calls.map((c) => c.url)).toEqual(['http://x/api/thing', 'http://x/api/auth/refresh', 'http://x/api/thing']);
    expect(header(calls[0]!, 'authorization')).toBe('Bearer stale');
    expect(header(calls[1]!, 'cookie')).toBe('__Host-e2e_refresh=r1');
    expect(header(calls[2]!, 'authorization')).toBe('Bearer fresh');
    expect(jar.header()).toBe('__Host-e2e_refresh=r2');
  });

  it('does not retry other 401s; a revoked session or a refused refresh signs out; errors keep code, details and Retry-After', async () => {
    const ended: string[] = [];
    const { fetchFn } = scripted(
      () => json(401, { error: { code: 'session_revoked', message: 'revoked' } }),
      () => json(429, { error: { code: 'rate_limited', message: 'slow', retryAfterSec: 7 } }, { 'retry-after': '7' }),
      () =>
        json(
          401,
          { error: { code: 'refresh_reused', message: 'reused' } },
          { 'set-cookie': '__Host-e2e_refresh=; Max-Age=0' },
        ),
      () => new Response('<html>bad gateway</html>', { status: 502 }),
    );
    const http = new HttpClient({ baseUrl: 'http://x', fetch: fetchFn, onSignedOut: (e) => ended.push(e.code) });
    http.setTokens(tokens('t'));
    const revoked = await http.request('GET', '/a').catch((e) => e);
    expect(isApiError(revoked, 'session_revoked')).toBe(true);
    // A revoked session is over: forgotten, and the owner told (it shows the reason on the sign-in screen).
    expect(http.session).toBeNull();
    expect(ended).toEqual(['session_revoked']);
    http.setTokens(tokens('t'));
    const limited = (await http.request('POST', '/b', { json: {} }).catch((e) => e)) as HttpApiError;
    expect(limited).toBeInstanceOf(HttpApiError);
    expect([limited.status, limited.code, limited.retryAfter, limited.details.retryAfterSec]).toEqual([
      429,
      'rate_limited',
      7,
      7,
    ]);
    await expect(http.refresh()).rejects.toMatchObject({ code: 'refresh_reused' });
    expect(ended).toEqual(['session_revoked', 'refresh_reused']);
    expect(http.session).toBeNull();
    const bad = await http.request('GET', '/c', { auth: false }).catch((e) => e);
    expect(bad).toMatchObject({ status: 502, code: 'http_502' });
  });

  it('device_mismatch details are typed lists', () => {
    const e = new HttpApiError(409, 'device_mismatch', 'm', { missing: [{ u: 'a', d: '1' }], stale: [] });
    expect(e.mismatch).toEqual({ missing: [{ u: 'a', d: '1' }], extra: [], stale: [] });
    expect(new HttpApiError(400, 'x', 'm').mismatch).toBeNull();
  });

  it('concurrent requests without a token share one refresh', async () => {
    let refreshes = 0;
    const fetchFn = (async (url: string) => {
      if (url.endsWith('/api/auth/refresh')) {
        refreshes++;
        await new Promise((r) => setTimeout(r, 5));
        return json(200, tokens('one'));
      }
      return json(200, { ok: true });
    }) as unknown as typeof fetch;
    const http = new HttpClient({ baseUrl: 'http://x', fetch: fetchFn, cookies: memoryCookieJar() });
    await Promise.all([http.request('GET', '/a'), http.request('GET', '/b'), http.request('GET', '/c')]);
    expect(refreshes).toBe(1);
  });

  it('a parts reservation whose part size or count a malicious server made absurd is refused before any byte is sent', async () => {
    const MiB = 1024 * 1024;
    const size = 50 * MiB;
    const id = 'A'.repeat(22);
    const answers: [unknown, unknown][] = [
      [8 * 1024 * 1024 * 1024, 1], // one 8 GiB part: the client would allocate it
      [2 ** 53, 1], // not a safe integer
      [MAX_PART_BYTES + 1, 1],
      [1, size], // 52 million one-byte requests
      [MIN_PART_BYTES - 1, 11],
      [8 * MiB + 0.5, 7], // not an integer
      ['8388608', 7], // not a number
      [undefined, undefined], // no part size at all for a parts reservation
      [8 * MiB, 6], // a count that does not match ⌈size ÷ partBytes⌉ (7)
      [8 * MiB, undefined],
      [-8 * MiB, 7],
    ];
    for (const [partBytes, parts] of answers) {
      const { calls, fetchFn } = scripted(() => json(201, { attachmentId: id, size, partBytes, parts }));
      const http = new HttpClient({ baseUrl: 'http://x', fetch: fetchFn });
      http.setTokens(tokens('t'));
      const err = await createHttpApi(http)
        .reserveAttachment('c1', size, true)
        .catch((e: unknown) => e);
      expect(isApiError(err, 'invalid_server_response'), `partBytes ${String(partBytes)}`).toBe(true);
      expect((err as Error).message).toMatch(/part size/);
      expect(calls).toHaveLength(1);
    }
    // What the Worker answers is accepted: 8 MiB parts (7 for 50 MiB), 64 MiB (one part), 5 MiB (10 parts).
    for (const [partBytes, parts] of [
      [8 * MiB, 7],
      [MAX_PART_BYTES, 1],
      [MIN_PART_BYTES, 10],
    ] as const) {
      const { fetchFn } = scripted(() => json(201, { attachmentId: id, size, partBytes, parts }));
      const http = new HttpClient({ baseUrl: 'http://x', fetch: fetchFn });
      http.setTokens(tokens('t'));
      expect(await createHttpApi(http).reserveAttachment('c1', size, true)).toEqual({ attachmentId: id, partBytes });
    }
    // A whole-upload reservation has no parts to check.
    const { fetchFn } = scripted(() => json(201, { attachmentId: id, size: 100 }));
    const http = new HttpClient({ baseUrl: 'http://x', fetch: fetchFn });
    http.setTokens(tokens('t'));
    expect(await createHttpApi(http).reserveAttachment('c1', 100)).toEqual({ attachmentId: id });
  });
});
