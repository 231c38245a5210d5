/**
 * `npm run dev` answers like production (issue 12 items 9 and 10), tested with real clients against the dev
 * server e2e/global-setup.ts started (scripts/dev-server.ts):
 *  - oversize bodies, streamed with and without Content-Length, get the Worker's 413 JSON — not Vite's
 *    500 HTML page with a stack trace, not a reset connection, and the dev server keeps running
 *    (worker/body-drain.ts);
 *  - a refused WebSocket upgrade reaches the `ws` client as the Worker's 401/403 JSON, not a dropped
 *    connection (scripts/vite-refused-upgrades.ts);
 *  - the dev server adds no CORS of its own: another local page cannot read API answers.
 */
import { describe, expect, inject, it } from 'vitest';
import { createConversation, json, register } from '../bench/lib/app-client.js';
import { streamBody, tryUpgrade } from '../reliability/lib/raw-http.js';

const base = () => inject('baseUrl');
const MiB = 1024 * 1024;

function errorCode(body: string): string | undefined {
  return (JSON.parse(body) as { error?: { code?: string } }).error?.code;
}

describe('npm run dev: oversize bodies', () => {
  it('a streamed 20 MB body gets the Worker’s 413 JSON, with and without Content-Length', async () => {
    for (const path of ['/graphql', '/api/keys/claim', '/api/auth/login']) {
      for (const contentLength of [true, false]) {
        const r = await streamBody(`${base()}${path}`, { bytes: 20 * MiB, contentLength, prefix: '{"pad":"' });
        const what = `${path} ${contentLength ? 'Content-Length' : 'chunked'}`;
        expect(r.error, what).toBeUndefined();
        expect(r.status, what).toBe(413);
        expect(r.body, what).not.toMatch(/<html|stack|\/work\//i);
        expect(errorCode(r.body), what).toBe('payload_too_large');
      }
    }
  });

  it('concurrent uploads of 4–47 MB all get 413 JSON and the dev server stays up', async () => {
    const sizes = [4, 11, 18, 25, 32, 39, 46, 47];
    const results = await Promise.all(
      sizes.map((mb, i) =>
        streamBody(`${base()}${i % 2 ? '/graphql' : '/api/keys/claim'}`, {
          bytes: mb * MiB,
          contentLength: i % 3 !== 0,
          chunkBytes: i % 4 === 0 ? 1024 : 256 * 1024,
        }),
      ),
    );
    for (const [i, r] of results.entries()) {
      expect(r.status, `${sizes[i]} MB: ${r.error ?? r.body.slice(0, 80)}`).toBe(413);
      expect(errorCode(r.body)).toBe('payload_too_large');
    }
    const health = await fetch(`${base()}/api/health`);
    expect(health.status).toBe(200);
    await health.arrayBuffer();
  });
});

describe('npm run dev: refused WebSocket upgrades', () => {
  it('a `ws` upgrade with a used ticket gets 401 invalid_ticket, not a dropped connection', async () => {
    const a = await register(base(), 'devws');
    const b = await register(base(), 'devws');
    const conv = await createConversation(base(), [a, b]);
    const t = await json(
      await fetch(`${base()}/api/conversations/${conv}/ticket`, {
        method: 'POST',
        headers: { authorization: `Bearer ${a.token}` },
      }),
      'ticket',
    );
    const url = `${base().replace(/^http/, 'ws')}/api/conversations/${conv}/ws?ticket=${t.ticket as string}`;
    expect((await tryUpgrade(url)).status).toBe(101);
    const reused = await tryUpgrade(url);
    expect(reused.error).toBeUndefined();
    expect(reused.status).toBe(401);
    expect(errorCode(reused.body)).toBe('invalid_ticket');
    // A ticket minted for another conversation is refused the same way.
    const other = await createConversation(base(), [b]);
    const foreign = await json(
      await fetch(`${base()}/api/conversations/${other}/ticket`, {
        method: 'POST',
        headers: { authorization: `Bearer ${b.token}` },
      }),
      'ticket',
    );
    const wrong = await tryUpgrade(
      `${base().replace(/^http/, 'ws')}/api/conversations/${conv}/ws?ticket=${foreign.ticket as string}`,
    );
    expect(wrong.status).toBe(401);
    expect(errorCode(wrong.body)).toBe('invalid_ticket');
    // And the refused sockets did not break the next good upgrade.
    const fresh = await json(
      await fetch(`${base()}/api/conversations/${conv}/ticket`, {
        method: 'POST',
        headers: { authorization: `Bearer ${a.token}` },
      }),
      'ticket',
    );
    expect(
      (
        await tryUpgrade(
          `${base().replace(/^http/, 'ws')}/api/conversations/${conv}/ws?ticket=${fresh.ticket as string}`,
        )
      ).status,
    ).toBe(101);
  });
});

describe('npm run dev: CORS is the Worker’s own', () => {
  it('another local page gets no CORS headers (no credentials), on the API and on the app’s files', async () => {
    for (const origin of ['http://localhost:3000', 'http://127.0.0.1:9999', 'https://evil.example']) {
      for (const path of ['/api/health', '/api/auth/session', '/', '/src/main.tsx']) {
        const res = await fetch(`${base()}${path}`, { headers: { origin } });
        await res.arrayBuffer();
        expect(res.headers.get('access-control-allow-origin'), `${path} from ${origin}`).toBeNull();
        expect(res.headers.get('access-control-allow-credentials'), `${path} from ${origin}`).toBeNull();
      }
      const preflight = await fetch(`${base()}/api/auth/session`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
      });
      await preflight.arrayBuffer();
      expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
      expect(preflight.status).toBe(403);
    }
  });
});
