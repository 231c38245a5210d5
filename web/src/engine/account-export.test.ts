/**
 * "Download my data": the server answers the account export in bounded pages (`truncated` + `next`,
 * docs/API.md); the engine follows them and returns one export with every table's rows joined in order.
 */
import { describe, expect, it } from 'vitest';
import { Account } from './account.js';
import type { EngineApi } from './engine.js';
import { HttpClient } from './http-transport.js';

const head = { format: 'e2e-chat account export', version: 1, userId: 'u_a', exportedAt: '2026-12-06T00:00:00.000Z' };

function world(pages: Record<string, unknown>) {
  const calls: string[] = [];
  const http = new HttpClient({
    baseUrl: 'https://chat.example',
    cookies: null,
    fetch: async (input) => {
      const url = new URL(String(input));
      const cursor = url.searchParams.get('cursor') ?? '';
      calls.push(`${url.pathname}?${cursor}`);
      return new Response(JSON.stringify(pages[cursor]), {
        status: 200,
        headers: { 'content-type': 'application/json' },
      });
    },
  });
  http.setTokens({ accessToken: 'at', expiresIn: 900, userId: 'u_a', deviceId: 'd0' });
  return { calls, account: new Account({ http, engine: {} as EngineApi }) };
}

describe('Download my data follows the export pages', () => {
  it('three pages are joined table by table, in order, into one export without truncated/next', async () => {
    const { calls, account } = world({
      '': {
        ...head,
        tables: { audit_events: [{ id: 1 }, { id: 2 }], users: [{ id: 'u_a' }] },
        truncated: true,
        next: 'c1',
      },
      c1: { ...head, tables: { audit_events: [{ id: 3 }], mailbox: [{ seq: 1 }] }, truncated: true, next: 'c2' },
      c2: { ...head, tables: { mailbox: [{ seq: 2 }] }, truncated: false, next: null },
    });
    const data = await account.exportServerData();
    expect(calls).toEqual(['/api/account/export?', '/api/account/export?c1', '/api/account/export?c2']);
    expect(data).toEqual({
      ...head,
      tables: {
        audit_events: [{ id: 1 }, { id: 2 }, { id: 3 }],
        users: [{ id: 'u_a' }],
        mailbox: [{ seq: 1 }, { seq: 2 }],
      },
    });
  });

  it('a server that answers the same cursor again does not make it loop', async () => {
    const { calls, account } = world({
      '': { ...head, tables: {}, truncated: true, next: 'c1' },
      c1: { ...head, tables: {}, truncated: true, next: 'c1' },
    });
    await expect(account.exportServerData()).rejects.toThrow('did not move on');
    expect(calls).toHaveLength(2);
  });
});
