/**
 * GraphQL query cost that scales with list sizes (issue 12 item 1: 15 aliases of
 * `conversations { members { … } membershipLog { … } }` over 200 groups froze the server, because the cost
 * limit counted a list field once whatever its length).
 *
 * Every list field has a size: its `first` / `limit` argument (checked against a ceiling) or a fixed bound
 * (`LIST_FIELDS`). A field costs 1, a list field costs size × (1 + the cost of one item's selection), nested
 * lists multiply; aliases and fragments count every time they select (graphql-query-complexity walks the
 * document with the request's variables). Introspection (`__schema`, `__type`, …) costs nothing here: it is
 * bounded by the document size and token limits. A list field that is not in `LIST_FIELDS` is a programming
 * error (a unit test walks the schema).
 */
import { type DocumentNode, GraphQLError, type GraphQLSchema } from 'graphql';
import { getComplexity } from 'graphql-query-complexity';
import { MAX_WEBHOOK_ENDPOINTS, WEBHOOK_DELIVERIES_KEPT, WEBHOOK_EVENT_TYPES } from '../../schema/webhooks.js';
import { MAX_DEVICES_PER_USER, MAX_MEMBERS } from '../../web/src/protocol/constants.js';
import { MAX_LOG_PAGE } from '../domain/conversations.js';
import { MAX_NAME_IDS } from '../domain/users.js';

export interface ListSize {
  /** The argument that sets the size (the schema gives its default). */
  arg?: string;
  /** The largest size: an argument above it is refused (400 BAD_USER_INPUT), a fixed list is at most this. */
  max: number;
}

/** Every list-typed field of the schema, by `Type.field`. */
export const LIST_FIELDS: Record<string, ListSize> = {
  'Query.conversations': { arg: 'first', max: 100 },
  'Query.usernames': { arg: 'ids', max: MAX_NAME_IDS },
  'Conversation.members': { arg: 'first', max: MAX_MEMBERS },
  'Conversation.membershipLog': { arg: 'limit', max: MAX_LOG_PAGE },
  'Viewer.devices': { max: MAX_DEVICES_PER_USER },
  'ClaimResult.devices': { max: MAX_DEVICES_PER_USER },
  'ClaimResult.unavailable': { max: MAX_DEVICES_PER_USER },
  'Query.webhooks': { max: MAX_WEBHOOK_ENDPOINTS },
  'WebhookEndpoint.events': { max: WEBHOOK_EVENT_TYPES.length },
  'WebhookEndpoint.deliveries': { arg: 'limit', max: WEBHOOK_DELIVERIES_KEPT },
};

export interface CostResult {
  cost: number;
  /** Arguments outside their range, as `Type.field(arg)`. */
  badArguments: string[];
}

export function queryCost(
  schema: GraphQLSchema,
  document: DocumentNode,
  variables: Record<string, unknown> | undefined,
  operationName: string | undefined,
): CostResult {
  const badArguments: string[] = [];
  const cost = getComplexity({
    schema,
    query: document,
    variables: variables ?? {},
    ...(operationName ? { operationName } : {}),
    estimators: [
      ({ type, field, args, childComplexity }) => {
        if (type.name.startsWith('__') || field.name.startsWith('__')) return 0;
        const key = `${type.name}.${field.name}`;
        const list = LIST_FIELDS[key];
        if (!list) return 1 + childComplexity;
        let size = list.max;
        if (list.arg) {
          const v = args[list.arg] as unknown;
          const n = Array.isArray(v) ? v.length : typeof v === 'number' ? v : Number.NaN;
          if (!Number.isInteger(n) || n < (Array.isArray(v) ? 0 : 1) || n > list.max) {
            badArguments.push(`${key}(${list.arg})`);
            return 0;
          }
          size = n;
        }
        return size * (1 + childComplexity);
      },
    ],
  });
  return { cost, badArguments };
}

/** A GraphQLError for arguments outside their range (the caller answers 400 BAD_USER_INPUT). */
export function badArgumentError(badArguments: string[]): GraphQLError {
  return new GraphQLError(`list size argument out of range: ${badArguments.join(', ')}`);
}
