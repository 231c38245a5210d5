import { env } from 'cloudflare:workers';
import { eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { makeDb, schema } from './db.js';
import { faultConfig } from './faults.js';

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
});
