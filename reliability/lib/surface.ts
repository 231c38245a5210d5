/**
 * The app's attack surface, discovered from the app itself so that a new route, GraphQL field or frame
 * type is fuzzed the day it lands (reliability/badinput.ts):
 *   - HTTP routes: the Hono app's `routes` (worker/app.ts), middleware entries (`ALL …/*`) left out;
 *   - GraphQL operations: every field of the schema's Query, Mutation and Subscription types
 *     (`graphqlSchema` in worker/routes/graphql.ts), each with its arguments and return type;
 *   - WebSocket frame types: `CLIENT_FRAME_TYPES` (schema/wire.ts).
 * The Worker's modules import `cloudflare:workers` (Durable Object base classes); outside workerd that
 * specifier resolves to reliability/lib/workerd-stub.mjs (a Node resolve hook here; an alias in
 * vitest.config.ts). Nothing is executed against the stub.
 * @module
 */
import { register } from 'node:module';
import {
  type GraphQLArgument,
  type GraphQLField,
  type GraphQLNamedType,
  type GraphQLOutputType,
  type GraphQLSchema,
  getNamedType,
  isEnumType,
  isInputObjectType,
  isLeafType,
  isListType,
  isNonNullType,
  isObjectType,
} from 'graphql';
import { CLIENT_FRAME_TYPES } from '../../schema/wire.js';

const STUB = new URL('./workerd-stub.mjs', import.meta.url).href;
let hooked = false;
function hookWorkerdModules(): void {
  if (hooked || process.env.VITEST) return; // vitest resolves the alias itself
  hooked = true;
  register(
    `data:text/javascript,${encodeURIComponent(
      `export async function resolve(s, c, n) { return s === 'cloudflare:workers' ? { url: ${JSON.stringify(STUB)}, shortCircuit: true } : n(s, c); }`,
    )}`,
  );
}

export interface RouteSurface {
  /** GET, POST, … or ALL (a handler for every method). */
  method: string;
  /** Hono path with `:param`s, e.g. `/api/conversations/:id/log`. */
  path: string;
  /** `METHOD path`: the key of ROUTE_GENERATORS. */
  key: string;
}

export interface GraphqlSurface {
  operation: 'query' | 'mutation' | 'subscription';
  /** `Query.conversations`: the key of GRAPHQL_GENERATORS. */
  key: string;
  field: GraphQLField<unknown, unknown>;
}

export interface AppSurface {
  routes: RouteSurface[];
  graphql: GraphqlSurface[];
  schema: GraphQLSchema;
  frameTypes: readonly string[];
}

/** Walks the app. Cached: the modules are loaded once per process. */
let cached: Promise<AppSurface> | undefined;
export function discoverSurface(): Promise<AppSurface> {
  cached ??= (async () => {
    hookWorkerdModules();
    // Through a variable specifier: the Worker is type-checked by worker/tsconfig.json (workerd types), not
    // by the Node-side project this module belongs to.
    const load = (p: string) => import(/* @vite-ignore */ new URL(p, import.meta.url).href);
    const { app } = (await load('../../worker/app.ts')) as { app: { routes: { method: string; path: string }[] } };
    const { graphqlSchema } = (await load('../../worker/routes/graphql.ts')) as { graphqlSchema: GraphQLSchema };
    const seen = new Map<string, RouteSurface>();
    for (const r of app.routes) {
      // `app.use('*')` / `sub.use('*')` middleware are registered as ALL on a wildcard path.
      if (r.method === 'ALL' && r.path.endsWith('*')) continue;
      const key = `${r.method} ${r.path}`;
      if (!seen.has(key)) seen.set(key, { method: r.method, path: r.path, key });
    }
    const graphql: GraphqlSurface[] = [];
    for (const [operation, type] of [
      ['query', graphqlSchema.getQueryType()],
      ['mutation', graphqlSchema.getMutationType()],
      ['subscription', graphqlSchema.getSubscriptionType()],
    ] as const) {
      if (!type) continue;
      for (const field of Object.values(type.getFields()))
        graphql.push({ operation, key: `${type.name}.${field.name}`, field });
    }
    return { routes: [...seen.values()], graphql, schema: graphqlSchema, frameTypes: CLIENT_FRAME_TYPES };
  })();
  return cached;
}

// ---- GraphQL documents built from the schema ----------------------------------------------------------

/** A selection set for `type`: every leaf field, objects `depth` levels down; fields with required args are skipped. */
export function selectionFor(type: GraphQLOutputType, depth = 2): string {
  const named = getNamedType(type) as GraphQLNamedType;
  if (isLeafType(named) || !isObjectType(named)) return '';
  const parts: string[] = [];
  for (const f of Object.values(named.getFields())) {
    if (f.args.some((a) => isNonNullType(a.type) && a.defaultValue === undefined)) continue;
    const inner = getNamedType(f.type);
    if (isLeafType(inner)) parts.push(f.name);
    else if (depth > 0) {
      const sub = selectionFor(f.type, depth - 1);
      if (sub) parts.push(`${f.name} ${sub}`);
    }
  }
  return parts.length ? `{ ${parts.join(' ')} }` : '{ __typename }';
}

/** `query($a: ID!) { field(a: $a) { … } }` with one variable per argument, named after it. */
export function operationFor(s: GraphqlSurface, depth = 2): string {
  const vars = s.field.args.map((a) => `$${a.name}: ${a.type.toString()}`);
  const args = s.field.args.map((a) => `${a.name}: $${a.name}`);
  return `${s.operation}${vars.length ? `(${vars.join(', ')})` : ''} { ${s.field.name}${
    args.length ? `(${args.join(', ')})` : ''
  } ${selectionFor(s.field.type, depth)} }`;
}

/** What kind of value an argument takes, for the type-driven variable generators. */
export function argKind(a: GraphQLArgument): { base: string; list: boolean; enumValues?: string[] } {
  let t = a.type;
  if (isNonNullType(t)) t = t.ofType;
  const list = isListType(t);
  const named = getNamedType(t);
  if (isEnumType(named)) return { base: 'enum', list, enumValues: named.getValues().map((v) => v.name) };
  if (isInputObjectType(named)) return { base: 'object', list };
  return { base: named.name, list };
}
