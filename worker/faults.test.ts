import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { makeDb, schema } from './db.js';
import { faultConfig } from './faults.js';
import worker from './index.js';
import { fullUpload, makeUser, snapshot, uploadB64 } from './test/directory-fixtures.js';

const FAULTS = '{"d1WriteFailRate":1}';
const event = (name: string) => ({ event: name, details: '{}' });

describe('E2E_CHAT_FAULTS (reliability fault injection)', () => {
  it('is ignored outside development: production and test environments write normally', async () => {
    for (const APP_ENV of ['production', 'test']) {
      expect(faultConfig({ APP_ENV, E2E_CHAT_FAULTS: FAULTS })).toBeNull();
      const db = makeDb({ ...env, APP_ENV, E2E_CHAT_FAULTS: FAULTS });
      await db.insert(schema.auditEvents).values(event(`faults-off-${APP_ENV}`));
      const rows = await db
        .select()
        .from(schema.auditEvents)
        .where(eq(schema.auditEvents.event, `faults-off-${APP_ENV}`));
      expect(rows).toHaveLength(1);
    }
    // The deploy config declares no such variable, so a production Worker never sees one.
    expect(faultConfig({ APP_ENV: 'development' })).toBeNull();
  });

  it('in development with the flag, writes (single and batched) fail and reads still work', async () => {
    const db = makeDb({ ...env, APP_ENV: 'development', E2E_CHAT_FAULTS: FAULTS });
    await expect(db.insert(schema.auditEvents).values(event('faults-on'))).rejects.toMatchObject({
      cause: { name: 'InjectedFault' },
    });
    await expect(
      db.batch([db.insert(schema.auditEvents).values(event('faults-on')), db.select().from(schema.auditEvents)]),
    ).rejects.toThrow();
    expect(await db.select().from(schema.auditEvents).where(eq(schema.auditEvents.event, 'faults-on'))).toEqual([]);
    // A filter limits the faults to matching statements.
    const scoped = makeDb({
      ...env,
      APP_ENV: 'development',
      E2E_CHAT_FAULTS: '{"d1WriteFailRate":1,"match":"mailbox"}',
    });
    await scoped.insert(schema.auditEvents).values(event('faults-scoped'));
    const ok = makeDb({ ...env, APP_ENV: 'development', E2E_CHAT_FAULTS: '{"d1WriteFailRate":0}' });
    await ok.batch([ok.insert(schema.auditEvents).values(event('faults-zero')), ok.select().from(schema.auditEvents)]);
  });

  it('covers writeBatch (domain/common.ts): a prekey upload under 100 % write failures is a generic 500, nothing written', async () => {
    const bob = await makeUser('faulty');
    const token = await bob.token();
    const upload = () =>
      new Request('https://app.example/api/keys', {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${token}`,
          'Content-Type': 'application/json',
          'cf-connecting-ip': '192.0.2.77',
        },
        body: JSON.stringify({ upload: uploadB64(fullUpload(bob.devices[0]!)) }),
      });
    const before = await snapshot([]); // audit_events included: the audit row is in the same batch
    const ctx = createExecutionContext();
    const res = await worker.fetch(upload(), { ...env, APP_ENV: 'development', E2E_CHAT_FAULTS: FAULTS }, ctx);
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(500);
    // Stable code, fixed message: no SQL, no fault name, no stack.
    expect(await res.json()).toEqual({ error: { code: 'internal', message: 'internal error' } });
    expect(await snapshot([])).toEqual(before);
    // The same request without the flag is accepted: the failure above was the hook's.
    const ctx2 = createExecutionContext();
    const ok = await worker.fetch(upload(), env, ctx2);
    await waitOnExecutionContext(ctx2);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ oneTime: 2, kem: 1, signedPrekey: true });
  });
});
