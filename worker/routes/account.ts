/**
 * /api/account — the user's data (issue 18; README §Your data; docs/API.md):
 *  - GET /export[?cursor=]: everything D1 holds about the signed-in account, as JSON pages of bounded size
 *    (domain/account.ts exportAccount: per-table and per-page caps, `truncated` + `next` cursor);
 *  - POST /delete: after the password (and the second factor if TOTP is on), appends the client-signed
 *    departures (group and direct conversations: [transfer_ownership]?, leave), then deletes the account
 *    everywhere (domain/account.ts deleteAccountData).
 */
import { eq } from 'drizzle-orm';
import { Hono } from 'hono';
import { accountDeleteRequest, accountExportQuery } from '../../schema/auth-api.js';
import { requireAuth } from '../auth/middleware.js';
import { clientKey } from '../context.js';
import { makeDb, schema } from '../db.js';
import { deleteAccountData, exportAccount } from '../domain/account.js';
import { appendEntry, assertDeparture, checkDepartures } from '../domain/conversations.js';
import type { AppBindings } from '../env.js';
import { AppError } from '../errors.js';
import { valid } from '../validate.js';
import { checkLimitedSecondFactor, reprovePassword, totpEnabled } from './auth.js';
import { callerOf, jsonBody, parseInput } from './input.js';

export const account = new Hono<AppBindings>()
  .use('*', requireAuth)
  .get('/export', async (c) => {
    c.header('Cache-Control', 'no-store');
    c.header('Content-Disposition', 'attachment; filename="e2e-chat-account.json"');
    const q = parseInput(accountExportQuery, c.req.query());
    return c.json(await exportAccount(c.env, c.get('auth').userId, q.cursor));
  })
  .post('/delete', jsonBody, valid('json', accountDeleteRequest), async (c) => {
    const a = c.get('auth');
    const body = c.req.valid('json');
    const db = makeDb(c.env);
    const now = Date.now();
    const client = clientKey(c);
    await reprovePassword(c.env, db, a, client, body.passwordPrehash, 'account_delete_failed', now);
    // Every conversation it is in with someone else — group or direct — must get its signed departure:
    // [transfer_ownership]?, leave (the server cannot sign one). Checked whole before anything is appended,
    // and before the second factor, so a refused request does not spend a code.
    const given = new Map(body.leave.map((l) => [l.conversationId, l.entries]));
    for (const [conversationId, entries] of given) assertDeparture(conversationId, entries);
    const groups = await db
      .select({ id: schema.conversations.id, kind: schema.conversations.kind })
      .from(schema.members)
      .innerJoin(schema.conversations, eq(schema.conversations.id, schema.members.conversationId))
      .where(eq(schema.members.userId, a.userId));
    const missing: string[] = [];
    for (const g of groups) {
      if (given.has(g.id)) continue;
      const others = await db
        .select({ u: schema.members.userId })
        .from(schema.members)
        .where(eq(schema.members.conversationId, g.id));
      if (others.some((o) => o.u !== a.userId)) missing.push(g.id);
    }
    if (missing.length) {
      throw new AppError(409, 'leave_entries_required', 'sign a departure for every conversation others are in first', {
        conversations: missing,
      });
    }
    // Every entry checked (signature, chain, rules) before any is appended: a refusal changes nothing.
    const caller = callerOf(c);
    await checkDepartures(caller, given);
    // The second factor under the same failure limits as every other code check (buckets totp, totpAddress).
    // Departures and deletion are not one D1 batch: the code is spent first (a concurrent request with it
    // loses here, before anything changed) and put back if the deletion then fails.
    let spent: { undo(): Promise<void> } | null = null;
    if (await totpEnabled(db, a.userId)) {
      const factor = await checkLimitedSecondFactor(
        c.env,
        db,
        a.userId,
        client,
        { code: body.code, recoveryCode: body.recoveryCode },
        now,
      );
      spent = await factor.spendNow();
    }
    try {
      for (const [conversationId, entries] of given) {
        for (const e of entries) await appendEntry(caller, conversationId, e, { departure: true });
      }
      await deleteAccountData(c.env, db, a.userId, now);
    } catch (err) {
      await spent?.undo();
      throw err;
    }
    return c.json({ ok: true as const, deleted: true as const });
  });
