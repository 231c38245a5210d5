import { defineConfig } from 'drizzle-kit';

// drizzle-kit generates SQL migrations into schema/migrations; wrangler applies them (migrations_dir).
export default defineConfig({
  dialect: 'sqlite',
  schema: './schema/tables.ts',
  out: './schema/migrations',
});
