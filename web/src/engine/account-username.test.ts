/**
 * Registration asks whether the username is free BEFORE the password pre-hash and key generation: a taken
 * name costs one GET, not seconds of argon2id and ML-KEM key generation. A server that cannot say (rate
 * limited, offline) does not stop registration — the register call decides.
 */
import { describe, expect, it } from 'vitest';
import { Account } from './account.js';
import type { EngineApi } from './engine.js';
import { HttpClient } from './http-transport.js';

function world(answer: (path: string) => Response) {
  const calls: string[] = [];
  const http = new HttpClient({
    baseUrl: 'https://chat.example',
    cookies: null,
    fetch: async (input, init) => {
      const url = new URL(String(input));
      calls.push(`${init?.method ?? 'GET'} ${url.pathname}`);
      return answer(url.pathname);
    },
  });
  const engine = {
    identity: async () => {
      calls.push('engine.identity');
      return null;
    },
    bootstrap: async () => {
      calls.push('engine.bootstrap (key generation)');
      throw new Error('stop here');
    },
  } as unknown as EngineApi;
  return { calls, account: new Account({ http, engine }) };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

describe('registration checks the username first', () => {
  it('a taken username is refused with username_taken before any hashing or key generation', async () => {
    const { calls, account } = world(() => json(200, { username: 'alice', available: false }));
    const progress: string[] = [];
    await expect(
      account.register('Alice', 'correct horse battery staple', { onProgress: (p) => progress.push(p.phase) }),
    ).rejects.toMatchObject({ code: 'username_taken' });
    expect(calls).toEqual(['GET /api/auth/username/alice']);
    expect(progress).toEqual([]);
  });

  it('a free username, or a server that cannot say (429), goes on to key generation', async () => {
    for (const answer of [
      () => json(200, { username: 'alice', available: true }),
      () => json(429, { error: { code: 'rate_limited', message: 'slow down' } }, { 'retry-after': '60' }),
    ]) {
      const { calls, account } = world(answer);
      await expect(account.register('alice', 'correct horse battery staple')).rejects.toThrow('stop here');
      expect(calls[0]).toBe('GET /api/auth/username/alice');
      expect(calls).toContain('engine.bootstrap (key generation)');
    }
  });

  it('usernameAvailable refuses a malformed name locally, without asking the server', async () => {
    const { calls, account } = world(() => json(200, {}));
    await expect(account.usernameAvailable('1 bad')).rejects.toMatchObject({ code: 'invalid_username' });
    expect(calls).toEqual([]);
  });
});
