/**
 * "Download my data" for an account with very many rows: GET /api/account/export answers bounded pages —
 * each table at most EXPORT_ROWS_PER_TABLE rows, the page at most EXPORT_PAGE_BYTES of row JSON — with
 * `truncated` and a `next` cursor that, followed to the end, yields every row exactly once.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import type { AccountExportPage } from '../schema/auth-api.js';
import { EXPORT_PAGE_BYTES, EXPORT_ROWS_PER_TABLE } from './domain/account.js';
import { api, makeConversation, makeUser } from './test/delivery-fixtures.js';

const AUDIT_ROWS = 2 * EXPORT_ROWS_PER_TABLE + 5;
const BIG_ROWS = 14;
const BIG_BYTES = 400_000; // ~533 KB of base64url each: 14 of them are ~7.5 MB, more than one page holds

async function page(token: string, cursor?: string): Promise<{ body: AccountExportPage; bytes: number }> {
  const q = cursor === undefined ? '' : `?cursor=${cursor}`;
  const res = await api(`/api/account/export${q}`, token, { method: 'GET' });
  const text = await res.text();
  expect(res.status, text.slice(0, 200)).toBe(200);
  return { body: JSON.parse(text) as AccountExportPage, bytes: text.length };
}

describe('account export of a large account', () => {
  it('comes in capped pages (truncated + next); following next yields every row exactly once', async () => {
    const alice = await makeUser('bigexp');
    const bob = await makeUser('bigexpb');
    const conv = await makeConversation([alice, bob]);
    await env.DB.prepare(
      `INSERT INTO audit_events (event, user_id, details)
       WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2)
       SELECT 'test.bulk', ?1, '{"i":' || i || '}' FROM n`,
    )
      .bind(alice.userId, AUDIT_ROWS)
      .run();
    // Messages she sent that wait in Bob's mailbox: big ciphertexts.
    for (let seq = 1; seq <= BIG_ROWS; seq++) {
      await env.DB.prepare(
        `INSERT INTO mailbox (user_id, device_id, conversation_id, seq, ts, sender_user_id, sender_device_id,
                              client_msg_id, kind, ciphertext, expires_at)
         VALUES (?1, 'd0', ?2, ?3, 1, ?4, 'd0', 'm' || ?3, 'message', randomblob(?5), 9999999999999)`,
      )
        .bind(bob.userId, conv, seq, alice.userId, BIG_BYTES)
        .run();
    }
    const token = alice.devices[0]!.token;

    const first = await page(token);
    expect(first.body.truncated).toBe(true);
    expect(typeof first.body.next).toBe('string');
    expect(first.body.tables.audit_events).toHaveLength(EXPORT_ROWS_PER_TABLE);
    expect(first.bytes).toBeLessThan(EXPORT_PAGE_BYTES + 64 * 1024);

    const pages = [first];
    for (let next = first.body.next; next !== null; ) {
      const p = await page(token, next);
      expect(p.bytes).toBeLessThan(EXPORT_PAGE_BYTES + 64 * 1024);
      for (const rows of Object.values(p.body.tables)) expect(rows.length).toBeLessThanOrEqual(EXPORT_ROWS_PER_TABLE);
      expect(p.body.userId).toBe(alice.userId);
      pages.push(p);
      expect(pages.length).toBeLessThan(20);
      next = p.body.next;
    }
    const last = pages.at(-1)!.body;
    expect(last.truncated).toBe(false);
    expect(last.next).toBeNull();
    expect(pages.length).toBeGreaterThanOrEqual(3);

    const all = (table: string) => pages.flatMap((p) => p.body.tables[table] ?? []);
    const bulk = all('audit_events').filter((r) => r.event === 'test.bulk');
    expect(bulk).toHaveLength(AUDIT_ROWS);
    expect(new Set(bulk.map((r) => r.id)).size).toBe(AUDIT_ROWS);
    const mail = all('mailbox');
    expect(mail.map((r) => r.seq)).toEqual(Array.from({ length: BIG_ROWS }, (_, i) => i + 1));
    expect(all('users')).toHaveLength(1);
    expect(all('users')[0]).toMatchObject({ id: alice.userId, password_hash: '(withheld)' });
    expect(all('devices').map((d) => d.device_id)).toEqual(['d0']);
    expect(all('members').map((m) => m.conversation_id)).toEqual([conv]);
    // Bob's own rows are not hers: only the mailbox rows she sent appear, nothing else of his.
    expect(JSON.stringify(all('users'))).not.toContain(bob.userId);
  }, 120_000);

  it('a small account is one page: truncated false, next null', async () => {
    const u = await makeUser('smallexp');
    const { body } = await page(u.devices[0]!.token);
    expect(body).toMatchObject({ format: 'e2e-chat account export', version: 1, truncated: false, next: null });
    expect(body.tables.users).toHaveLength(1);
  });

  it('a cursor the export did not make is 400 invalid_cursor (or invalid_request), and changes nothing', async () => {
    const u = await makeUser('badexp');
    const token = u.devices[0]!.token;
    const b64u = (s: string) => btoa(s).replaceAll('+', '-').replaceAll('/', '_').replaceAll('=', '');
    for (const [cursor, code] of [
      [b64u('[]'), 'invalid_cursor'],
      [b64u('{}'), 'invalid_cursor'],
      [b64u('{"users":"x"}'), 'invalid_cursor'],
      [b64u('{"a b":1}'), 'invalid_cursor'],
      [b64u('not json'), 'invalid_cursor'],
      ['a', 'invalid_cursor'],
      ['%21%21', 'invalid_request'],
      ['x'.repeat(5000), 'invalid_request'],
    ] as const) {
      const res = await api(`/api/account/export?cursor=${cursor}`, token, { method: 'GET' });
      expect(res.status, cursor.slice(0, 40)).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
    }
    const extra = await api('/api/account/export?after=1', token, { method: 'GET' });
    expect(extra.status).toBe(400);
    // A cursor naming only tables it has no rows in: an empty last page.
    const { body } = await page(token, b64u(`{"users":${Number.MAX_SAFE_INTEGER}}`));
    expect(body).toMatchObject({ tables: {}, truncated: false, next: null });
  });
});
