/**
 * D1 schema (drizzle-orm). Every change here is followed by `npm run db:generate`, which writes a new
 * SQL migration into schema/migrations/ — never edit a generated migration by hand.
 *
 * The walking skeleton has one table; accounts, devices, key directory, conversations and mailboxes
 * arrive with their issues.
 */
import { sql } from 'drizzle-orm';
import { integer, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';

export const users = sqliteTable(
  'users',
  {
    id: text('id').primaryKey(),
    /** Normalised username (NFKC, case-folded). */
    username: text('username').notNull(),
    createdAt: integer('created_at', { mode: 'number' }).notNull().default(sql`(unixepoch() * 1000)`),
  },
  (t) => [uniqueIndex('users_username_uq').on(t.username)],
);
