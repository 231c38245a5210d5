/**
 * Issue 12 (hardening from an outside probe): each attack the probe found, named after the attack, and the
 * fix's effect. Rate-limit, lockout and flood attacks live further down in this file; the GraphQL cost
 * attacks in worker/graphql-cost.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { api, registerUser } from './test/fixtures.js';

describe('item 8: the small ones', () => {
  it('a mailbox ack with a non-JSON Content-Type is refused with 415 like every other JSON route', async () => {
    const u = await registerUser();
    const body = JSON.stringify({ acks: [{ conversationId: 'c_x', upTo: 1 }] });
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', null]) {
      const res = await api('/api/mailbox/ack', { raw: body, contentType: type, token: u.accessToken, ip: u.ip });
      expect(res.status, String(type)).toBe(415);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unsupported_media_type');
    }
    const ok = await api('/api/mailbox/ack', { raw: body, token: u.accessToken, ip: u.ip });
    expect(ok.status).toBe(204);
  });

  it('an Authorization header with a lower-case `bearer` scheme (RFC 9110) authenticates', async () => {
    const u = await registerUser();
    for (const scheme of ['bearer', 'BEARER', 'Bearer']) {
      const res = await api('/api/auth/session', {
        method: 'GET',
        headers: { authorization: `${scheme} ${u.accessToken}` },
        ip: u.ip,
      });
      expect(res.status, scheme).toBe(200);
      await res.arrayBuffer();
    }
    const gql = await api('/graphql', {
      body: { query: '{ viewer { id } }' },
      headers: { authorization: `bearer ${u.accessToken}` },
      ip: u.ip,
    });
    expect(((await gql.json()) as { data: { viewer: { id: string } } }).data.viewer.id).toBe(u.userId);
  });

  it('a GraphQL subscription operation is a 400 request error, as the docs promise for validation errors', async () => {
    const u = await registerUser();
    const res = await api('/graphql', {
      body: { query: 'subscription { viewer { id } }' },
      token: u.accessToken,
      ip: u.ip,
    });
    expect(res.status).toBe(400);
    const b = (await res.json()) as { errors: { extensions: { code: string } }[]; data?: unknown };
    expect(b.errors[0]!.extensions.code).toBe('BAD_REQUEST');
    expect(b.data).toBeUndefined();
  });
});
