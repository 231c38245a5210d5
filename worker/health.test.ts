import { env, exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';

describe('GET /api/health', () => {
  it('reports D1 reachable and the latest applied migration', async () => {
    const res = await exports.default.fetch('http://example.com/api/health');
    expect(res.status).toBe(200);
    const body = (await res.json()) as { ok: boolean; db: string; migration: string };
    expect(body).toEqual({ ok: true, db: 'ok', migration: expect.stringMatching(/^\d{4}_.+\.sql$/) });
    const row = await env.DB.prepare('SELECT name FROM d1_migrations ORDER BY id DESC LIMIT 1').first<{
      name: string;
    }>();
    expect(body.migration).toBe(row?.name);
  });

  it('migrated D1 accepts a write and a read through bound parameters', async () => {
    await env.DB.prepare('INSERT INTO audit_events (event, details) VALUES (?1, ?2)').bind('probe', '{}').run();
    const row = await env.DB.prepare('SELECT event FROM audit_events WHERE event = ?1')
      .bind('probe')
      .first<{ event: string }>();
    expect(row?.event).toBe('probe');
  });

  it('answers 503 with a code, not a stack, when the migrations table is missing', async () => {
    await env.DB.prepare('DROP TABLE d1_migrations').run();
    const res = await exports.default.fetch('http://example.com/api/health');
    expect(res.status).toBe(503);
    const text = await res.text();
    expect(JSON.parse(text)).toEqual({ error: { code: 'db_unavailable', message: expect.any(String) } });
    expect(text).not.toMatch(/at .*\.ts|Error:/);
  });
});

describe('unknown routes', () => {
  it('answer 404 with a stable code', async () => {
    const res = await exports.default.fetch('http://example.com/api/nope');
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: { code: 'not_found', message: 'no such route' } });
  });
});
