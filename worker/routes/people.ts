/**
 * People (domain logic in worker/domain/people.ts): the caller's sealed profile and sealed private
 * settings, over REST and GraphQL. Everything here is ciphertext to the server.
 *
 *   GET  /api/profile       → { profile: b64u | null, updatedAt }       (the caller's own sealed profile)
 *   PUT  /api/profile       { profile: b64u } → { updatedAt }            (rate limit `people`)
 *   GET  /api/users/:userId/profile → { userId, profile: b64u, updatedAt } (routes/users.ts; bucket `profile`)
 *   GET  /api/settings      → { revision, settings: b64u | null }
 *   PUT  /api/settings      { settings: b64u } → { revision }            (exactly stored + 1, else 409
 *                                                                         `revision_conflict` {revision})
 *
 * GraphQL: `profile(userId)`, `viewerProfile`, `sealedSettings`, `setProfile(profile)`,
 * `putSealedSettings(settings)` — the SDL extension and resolvers below, merged by routes/graphql.ts.
 */
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { z } from 'zod';
import { toB64u } from '../../web/src/protocol/bytes.js';
import { MAX_SEALED_SETTINGS_LEN } from '../../web/src/protocol/private-settings.js';
import { MAX_SEALED_PROFILE_LEN } from '../../web/src/protocol/profile.js';
import { requireAuth } from '../auth/middleware.js';
import type { Caller } from '../domain/common.js';
import { getPrivateSettings, getProfile, putPrivateSettings, putProfile } from '../domain/people.js';
import type { AppBindings } from '../env.js';
import { AppError } from '../errors.js';
import { b64uBytes, idString } from '../validate.js';
import { callerOf, parseInput, readJson, smallBody } from './input.js';

export const profileBody = z.object({ profile: b64uBytes({ max: MAX_SEALED_PROFILE_LEN }) });
export const settingsBody = z.object({ settings: b64uBytes({ max: MAX_SEALED_SETTINGS_LEN }) });

/** The settings body is the one JSON body above 64 KiB: the largest sealed settings in base64url, plus room. */
const settingsLimit = bodyLimit({
  maxSize: Math.ceil((MAX_SEALED_SETTINGS_LEN * 4) / 3) + 1024,
  onError: () => {
    throw new AppError(413, 'payload_too_large', 'request body too large');
  },
});

const ownProfile = async (caller: Caller) => {
  const row = await getProfile(caller, caller.auth.userId);
  return { profile: row ? toB64u(row.sealed) : null, updatedAt: row?.updatedAt ?? null };
};

const ownSettings = async (caller: Caller) => {
  const s = await getPrivateSettings(caller);
  return { revision: s.revision, settings: s.sealed ? toB64u(s.sealed) : null };
};

export const profile = new Hono<AppBindings>()
  .use('*', smallBody, requireAuth)
  .get('/', async (c) => {
    c.header('Cache-Control', 'no-store');
    return c.json(await ownProfile(callerOf(c)));
  })
  .put('/', async (c) => {
    const body = await readJson(c, profileBody);
    return c.json(await putProfile(callerOf(c), body.profile));
  });

export const settings = new Hono<AppBindings>()
  .use('*', settingsLimit, requireAuth)
  .get('/', async (c) => {
    c.header('Cache-Control', 'no-store');
    return c.json(await ownSettings(callerOf(c)));
  })
  .put('/', async (c) => {
    const body = await readJson(c, settingsBody);
    return c.json(await putPrivateSettings(callerOf(c), body.settings));
  });

/** GET /api/users/:userId/profile (mounted by routes/users.ts). */
export async function userProfile(caller: Caller, rawUserId: string) {
  const userId = parseInput(idString, rawUserId);
  const row = await getProfile(caller, userId);
  if (!row) throw new AppError(404, 'not_found', 'no profile for this user');
  return { userId, profile: toB64u(row.sealed), updatedAt: row.updatedAt };
}

// ---- GraphQL (merged into routes/graphql.ts) ----------------------------------------------------------

export const PEOPLE_SDL = /* GraphQL */ `
"A sealed profile (docs/PROTOCOL.md §Profiles): only holders of the owner's profile key can open it."
type SealedProfile {
  userId: ID!
  profile: String!
  updatedAt: Float!
}

"The viewer's sealed private settings (docs/PROTOCOL.md §Private settings); revision 0 and null before the first write."
type SealedSettings {
  revision: Int!
  settings: String
}

type ProfileUpdate {
  updatedAt: Float!
}

type SettingsRevision {
  revision: Int!
}

extend type Query {
  "Any user's sealed profile; null if they have none. Rate-limited per account (bucket profile)."
  profile(userId: ID!): SealedProfile
  "The viewer's own sealed profile; null if none."
  viewerProfile: SealedProfile
  "The viewer's sealed private settings."
  sealedSettings: SealedSettings!
}

extend type Mutation {
  "Stores the viewer's sealed profile (version 1, one of the five sealed sizes)."
  setProfile(profile: String!): ProfileUpdate!
  "Stores the viewer's sealed private settings; they must carry exactly the stored revision + 1 (else CONFLICT, reason revision_conflict)."
  putSealedSettings(settings: String!): SettingsRevision!
}
`;

const sealedObject = (r: { userId: string; sealed: Uint8Array; updatedAt: number } | null) =>
  r && { userId: r.userId, profile: toB64u(r.sealed), updatedAt: r.updatedAt };

/** Resolvers for PEOPLE_SDL; `need` turns the GraphQL context into the authenticated caller. */
export function peopleResolvers<Ctx>(need: (ctx: Ctx) => Caller) {
  return {
    profile: async (args: { userId: string }, ctx: Ctx) => {
      const caller = need(ctx);
      return sealedObject(await getProfile(caller, parseInput(idString, args.userId)));
    },
    viewerProfile: async (_: unknown, ctx: Ctx) => {
      const caller = need(ctx);
      return sealedObject(await getProfile(caller, caller.auth.userId));
    },
    sealedSettings: (_: unknown, ctx: Ctx) => ownSettings(need(ctx)),
    setProfile: (args: unknown, ctx: Ctx) => {
      const caller = need(ctx);
      return putProfile(caller, parseInput(profileBody, args).profile);
    },
    putSealedSettings: (args: unknown, ctx: Ctx) => {
      const caller = need(ctx);
      return putPrivateSettings(caller, parseInput(settingsBody, args).settings);
    },
  };
}
