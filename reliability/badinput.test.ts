/**
 * The bad-input suite's registration tables keep up with the app: every route, GraphQL field and client
 * frame type the app has (discovered from worker/app.ts, the GraphQL schema and schema/wire.ts) has its
 * generators in reliability/badinput.ts, and no registration names a surface that no longer exists.
 */
import { describe, expect, it } from 'vitest';
import { clientFrame } from '../schema/wire.js';
import { coverage, ROUTE_GENERATORS } from './badinput.js';
import { discoverSurface, operationFor } from './lib/surface.js';

describe('bad-input suite surface discovery', () => {
  it('finds the routes, GraphQL fields and frame types from the app itself', async () => {
    const s = await discoverSurface();
    const keys = s.routes.map((r) => r.key);
    // A sample of each kind, including routes the old hand-written list missed.
    expect(keys).toEqual(
      expect.arrayContaining(['POST /api/auth/logout', 'GET /api/users/names', 'GET /api/conversations/:id/ws']),
    );
    expect(keys.some((k) => k.endsWith('*'))).toBe(false); // middleware is not a route
    expect(s.graphql.map((g) => g.key)).toEqual(
      expect.arrayContaining(['Query.conversations', 'Mutation.createConversation']),
    );
    // CLIENT_FRAME_TYPES is exactly the set of `type` literals the wire schema accepts.
    const literals = new Set<string>();
    const walk = (z: unknown): void => {
      const def = (z as { def?: { type?: string; options?: unknown[]; shape?: Record<string, unknown> } }).def;
      if (def?.options) for (const o of def.options) walk(o);
      const t = def?.shape?.type as { def?: { values?: unknown[] } } | undefined;
      for (const v of t?.def?.values ?? []) literals.add(String(v));
    };
    walk(clientFrame);
    expect([...s.frameTypes].sort()).toEqual([...literals].sort());
  });

  it('every discovered surface has registered generators, and nothing stale is registered', async () => {
    const c = coverage(await discoverSurface());
    expect(c.unregistered, 'add these to ROUTE_GENERATORS / GRAPHQL_GENERATORS / FRAME_GENERATORS').toEqual([]);
    expect(c.stale, 'these registrations name nothing the app has').toEqual([]);
  });

  it('builds a valid operation for every GraphQL field from the schema', async () => {
    const { parse, validate } = await import('graphql');
    const s = await discoverSurface();
    for (const g of s.graphql) {
      const doc = parse(operationFor(g));
      expect(validate(s.schema, doc), g.key).toEqual([]);
    }
  });

  it('registers a JSON body for every route that reads one', () => {
    for (const [k, g] of Object.entries(ROUTE_GENERATORS))
      if (g.json) expect(g.keys?.length ?? 0, k).toBeGreaterThan(0);
  });
});
