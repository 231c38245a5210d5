/**
 * Per-request batched reads for GraphQL (one DataLoader set per request, so nothing is cached across
 * requests or callers). Nested lists resolve level by level: every `members` / `membershipLog` field of the
 * same level asks its loader in the same tick, and the loader answers all of them with one membership query
 * (shared by the level's lists) and one data query each (per 90 conversation ids and per distinct page
 * argument) — not one query per parent.
 *
 * Membership is checked here too: a Conversation object can come from a mutation (e.g. after the viewer
 * left), so every read confirms the viewer is a member and answers NOT_FOUND otherwise, like REST.
 * Every batch checks the request's deadline first (worker/routes/graphql.ts: wall-time cap).
 */
import DataLoader from 'dataloader';
import type { Db } from '../db.js';
import {
  type LogEntryView,
  logPagesOfMany,
  type MemberView,
  memberOfMany,
  membersOfMany,
} from '../domain/conversations.js';
import { AppError } from '../errors.js';

export interface Deadline {
  /** Throws QUERY_TIMEOUT once the request's wall-time budget is spent. */
  check(): void;
}

const notFound = () => new AppError(404, 'not_found', 'no such conversation');

/** Groups keys by a page argument so each distinct argument is one query. */
function byArg<K>(keys: readonly K[], arg: (k: K) => string): Map<string, K[]> {
  const m = new Map<string, K[]>();
  for (const k of keys) m.set(arg(k), [...(m.get(arg(k)) ?? []), k]);
  return m;
}

export function makeLoaders(db: Db, viewer: string, deadline: Deadline) {
  // Shared by both lists: the members and log batches of one level ask in the same tick → one query.
  const membership = new DataLoader<string, boolean>(async (ids) => {
    deadline.check();
    const set = await memberOfMany(db, viewer, ids);
    return ids.map((id) => set.has(id));
  });
  const memberOf = async (ids: readonly string[]) => {
    const flags = await membership.loadMany(ids);
    return new Set(ids.filter((_, i) => flags[i] === true));
  };
  const members = new DataLoader<{ id: string; first: number }, MemberView[], string>(
    async (keys) => {
      const allowed = await memberOf(keys.map((k) => k.id));
      const found = new Map<string, MemberView[]>();
      for (const [first, group] of byArg(keys, (k) => String(k.first))) {
        deadline.check();
        const ids = group.map((k) => k.id).filter((id) => allowed.has(id));
        for (const [id, rows] of await membersOfMany(db, ids, Number(first))) found.set(`${id}/${first}`, rows);
      }
      return keys.map((k) => (allowed.has(k.id) ? (found.get(`${k.id}/${k.first}`) ?? []) : notFound()));
    },
    { cacheKeyFn: (k) => `${k.id}/${k.first}` },
  );
  const log = new DataLoader<{ id: string; afterSeq: number; limit: number }, LogEntryView[], string>(
    async (keys) => {
      const allowed = await memberOf(keys.map((k) => k.id));
      const found = new Map<string, LogEntryView[]>();
      for (const [arg, group] of byArg(keys, (k) => `${k.afterSeq}/${k.limit}`)) {
        deadline.check();
        const [afterSeq, limit] = arg.split('/').map(Number) as [number, number];
        const ids = group.map((k) => k.id).filter((id) => allowed.has(id));
        for (const [id, rows] of await logPagesOfMany(db, ids, afterSeq, limit)) found.set(`${id}/${arg}`, rows);
      }
      return keys.map((k) => (allowed.has(k.id) ? (found.get(`${k.id}/${k.afterSeq}/${k.limit}`) ?? []) : notFound()));
    },
    { cacheKeyFn: (k) => `${k.id}/${k.afterSeq}/${k.limit}` },
  );
  return { members, log };
}

export type Loaders = ReturnType<typeof makeLoaders>;
