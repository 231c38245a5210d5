/**
 * Issue 12 item 1 — "one signed-in account can freeze the server with GraphQL": list fields cost their size,
 * list arguments have ceilings, nested lists are read in batches (one query per level), every request has a
 * wall-time cap. The groups here are written straight into D1 (reads do not re-verify signatures), so a test
 * can have 60 of them without signing 60 logs.
 */
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { app } from './app.js';
import type { Env } from './env.js';
import { LIST_FIELDS } from './graphql/cost.js';
import { LIMITS } from './limits.js';
import { graphqlSchema } from './routes/graphql.js';
import { api, makeUser } from './test/directory-fixtures.js';

type Gql = {
  data?: Record<string, unknown> | null;
  errors?: { message: string; extensions: { code: string; reason?: string; cost?: number } }[];
};

let seq = 0;
/** `n` groups of `owner` with `extra` more members and `entries` log entries each, straight into D1. */
async function seedGroups(owner: string, n: number, extra = 2, entries = 3): Promise<string[]> {
  const ids: string[] = [];
  const stmts: D1PreparedStatement[] = [];
  const base = 1_800_000_000_000 + seq * 1000;
  for (let i = 0; i < n; i++) {
    const id = `gcost${++seq}`;
    ids.push(id);
    stmts.push(
      env.DB.prepare(
        'INSERT INTO conversations (id, kind, head_seq, head_hash, created_at) VALUES (?, ?, ?, ?, ?)',
      ).bind(id, 'group', entries - 1, new Uint8Array(32), base + i),
      env.DB.prepare('INSERT INTO members (conversation_id, user_id, role, joined_seq) VALUES (?, ?, ?, 0)').bind(
        id,
        owner,
        'owner',
      ),
    );
    for (let m = 0; m < extra; m++)
      stmts.push(
        env.DB.prepare('INSERT INTO members (conversation_id, user_id, role, joined_seq) VALUES (?, ?, ?, ?)').bind(
          id,
          `u_other_${m}`,
          'member',
          m + 1,
        ),
      );
    for (let s = 0; s < entries; s++)
      stmts.push(
        env.DB.prepare(
          'INSERT INTO membership_log (conversation_id, seq, entry, entry_hash, author_user_id, author_device_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
        ).bind(id, s, new Uint8Array([s]), new Uint8Array(32), owner, 'd0', base),
      );
  }
  for (let i = 0; i < stmts.length; i += 90) await env.DB.batch(stmts.slice(i, i + 90));
  return ids;
}

/** The app with `DB` wrapped to count statements (and optionally slowed down), through `app.fetch`. */
async function gqlCounted(token: string, query: string, opts: { delayMs?: number } = {}) {
  let statements = 0;
  let afterAnswer = 0;
  let answered = false;
  const slow = async <T>(p: Promise<T>) => {
    if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
    return p;
  };
  const wrapStmt = (s: D1PreparedStatement): D1PreparedStatement =>
    new Proxy(s, {
      get(t, k) {
        const v = Reflect.get(t, k, t) as unknown;
        if (k === 'bind')
          return (...a: unknown[]) => wrapStmt((v as (...x: unknown[]) => D1PreparedStatement).apply(t, a));
        if (typeof v === 'function' && ['all', 'raw', 'first', 'run'].includes(String(k)))
          return (...a: unknown[]) => {
            statements++;
            if (answered) afterAnswer++;
            return slow((v as (...x: unknown[]) => Promise<unknown>).apply(t, a));
          };
        return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
      },
    });
  const DB = new Proxy(env.DB, {
    get(t, k) {
      if (k === 'prepare') return (sql: string) => wrapStmt(t.prepare(sql));
      if (k === 'batch')
        return (stmts: D1PreparedStatement[]) => {
          statements += stmts.length;
          return slow(t.batch(stmts));
        };
      const v = Reflect.get(t, k, t) as unknown;
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
    },
  });
  const ctx = createExecutionContext();
  const t0 = Date.now();
  const res = await app.fetch(
    new Request('https://app.example/graphql', {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Authorization: `Bearer ${token}`,
        'cf-connecting-ip': '192.0.2.9',
      },
      body: JSON.stringify({ query }),
    }),
    { ...env, DB } as Env,
    ctx,
  );
  answered = true;
  const ms = Date.now() - t0;
  const body = (await res.json()) as Gql;
  await waitOnExecutionContext(ctx);
  return { status: res.status, body, statements: () => statements, afterAnswer: () => afterAnswer, ms, res };
}

const PATHOLOGICAL = `{ ${Array.from(
  { length: 15 },
  (_, i) => `a${i}: conversations { id headHash members { userId } membershipLog { seq } }`,
).join(' ')} }`;

describe('GraphQL list cost (issue 12 item 1)', () => {
  it('fifteen aliases of conversations { members membershipLog } are refused as too complex before any resolver runs', async () => {
    const u = await makeUser('gqlflood');
    await seedGroups(u.userId, 60);
    const r = await gqlCounted(await u.token(), PATHOLOGICAL);
    expect(r.status).toBe(400);
    expect(r.body.errors?.[0]?.extensions.code).toBe('QUERY_TOO_COMPLEX');
    expect(r.body.errors?.[0]?.extensions.cost).toBeGreaterThan(LIMITS.graphqlMaxCost);
    // Refused before execution: only the access-token check touched D1.
    expect(r.statements()).toBeLessThanOrEqual(2);
  });

  it('a list argument over its ceiling is 400 BAD_USER_INPUT naming the field, not its value', async () => {
    const u = await makeUser('gqlceil');
    const token = await u.token();
    for (const q of [
      '{ conversations(first: 101) { id } }',
      '{ conversations(first: 0) { id } }',
      '{ conversations(first: 5) { members(first: 257) { userId } } }',
      '{ conversations(first: 5) { membershipLog(limit: 501) { seq } } }',
      `{ usernames(ids: [${Array.from({ length: 101 }, (_, i) => `"u${i}"`).join(',')}]) { userId } }`,
    ]) {
      const res = await api('/graphql', token, { method: 'POST', json: { query: q } });
      const body = (await res.json()) as Gql;
      expect(res.status, q).toBe(400);
      expect(body.errors?.[0]?.extensions.code, q).toBe('BAD_USER_INPUT');
      expect(body.errors?.[0]?.message).toMatch(/out of range: \w+\.\w+\(\w+\)/);
    }
  });

  it('the cost multiplies by the requested sizes: the same selection passes small and is refused large', async () => {
    const u = await makeUser('gqlmult');
    const token = await u.token();
    const q = (n: number, m: number) =>
      `{ conversations(first: ${n}) { id members(first: ${m}) { userId role } membershipLog(limit: ${m}) { seq entry } } }`;
    const small = await api('/graphql', token, { method: 'POST', json: { query: q(10, 10) } });
    expect(small.status).toBe(200);
    await small.arrayBuffer();
    const large = (await (
      await api('/graphql', token, { method: 'POST', json: { query: q(100, 100) } })
    ).json()) as Gql;
    expect(large.errors?.[0]?.extensions.code).toBe('QUERY_TOO_COMPLEX');
  });

  it('nested lists are read one query per level: 5 or 60 groups cost the same number of D1 statements', async () => {
    const few = await makeUser('gqlfew');
    const many = await makeUser('gqlmany');
    await seedGroups(few.userId, 5);
    await seedGroups(many.userId, 60);
    const q =
      '{ conversations(first: 60) { id headHash members(first: 5) { userId } membershipLog(limit: 5) { seq } } }';
    const a = await gqlCounted(await few.token(), q);
    const b = await gqlCounted(await many.token(), q);
    expect(a.body.errors).toBeUndefined();
    expect(b.body.errors).toBeUndefined();
    const convs = b.body.data!.conversations as { members: unknown[]; membershipLog: unknown[] }[];
    expect(convs).toHaveLength(60);
    expect(convs.every((c) => c.members.length === 3 && c.membershipLog.length === 3)).toBe(true);
    // auth (1) + list (1) + one membership check for the level (1) + members rows (1) + log rows (1).
    expect(a.statements()).toBe(b.statements());
    expect(b.statements()).toBe(5);
  });

  it('conversations pages with first/after return every conversation exactly once, in order', async () => {
    const u = await makeUser('gqlpages');
    const ids = await seedGroups(u.userId, 23);
    const token = await u.token();
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const res = await api('/graphql', token, {
        method: 'POST',
        json: { query: 'query($a: ID) { conversations(first: 10, after: $a) { id } }', variables: { a: after } },
      });
      const page = ((await res.json()) as Gql).data!.conversations as { id: string }[];
      seen.push(...page.map((c) => c.id));
      if (page.length < 10) break;
      after = page[page.length - 1]!.id;
    }
    expect(seen).toEqual(ids);
  });

  it('a request over the wall-time cap answers 503 QUERY_TIMEOUT with Retry-After, and starts no query after', async () => {
    const u = await makeUser('gqlslow');
    await seedGroups(u.userId, 3);
    // Every D1 statement takes 2.6 s: the third level is past LIMITS.graphqlMaxWallMs (5 s).
    const r = await gqlCounted(
      await u.token(),
      '{ conversations(first: 3) { id members(first: 3) { userId } membershipLog(limit: 3) { seq } } }',
      { delayMs: 2600 },
    );
    expect(r.status).toBe(503);
    expect(r.body.errors?.[0]?.extensions.code).toBe('QUERY_TIMEOUT');
    expect(r.res.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(r.ms).toBeLessThan(LIMITS.graphqlMaxWallMs + 2600 + 1000);
    // Let whatever was in flight settle: nothing new starts once the deadline passed.
    await new Promise((res) => setTimeout(res, 3000));
    expect(r.afterAnswer()).toBe(0);
  }, 20_000);

  it('every list field of the schema has a declared size (a new list field cannot slip past the cost)', () => {
    const lists: string[] = [];
    for (const type of Object.values(graphqlSchema.getTypeMap())) {
      if (type.name.startsWith('__') || !('getFields' in type) || !('isTypeOf' in type)) continue;
      for (const f of Object.values(type.getFields())) {
        if (/\[/.test(String(f.type))) lists.push(`${type.name}.${f.name}`);
      }
    }
    expect(lists.sort()).toEqual(Object.keys(LIST_FIELDS).sort());
  });
});
