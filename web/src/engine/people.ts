/**
 * People (issue 17): profiles, message requests, block and mute — on top of the sealed profile and the
 * sealed private settings of the protocol core (docs/PROTOCOL.md §"Profiles", §"Private settings").
 *
 * - Private settings (profile key, blocks, mutes, accepted people and conversations, hidden requests) are
 *   one blob under a key derived from the user identity seed, which every device of ours holds. Every
 *   change re-reads the server's latest revision, applies itself on top and writes revision + 1
 *   (compare-and-swap; on `revision_conflict` it starts again), so two devices never overwrite each other
 *   unseen; a device never adopts a revision lower than one it holds (no rollback). Entries of kinds this
 *   client does not know are kept as they are.
 * - Profiles: `setProfile` seals name + avatar under our profile key (made on first use, kept in the
 *   private settings) and stores the ciphertext on the server. The key reaches a conversation's members
 *   only inside a pairwise end-to-end message (`pk` payload, a 41-byte profile-key message), sent with our
 *   next message in a conversation that is not a request, and again after the profile changed. A key from
 *   user U is accepted only for U (the sender check happened before decryption); holders fetch and open
 *   U's sealed profile and never go back to an older `updatedAt`.
 * - Message requests: a conversation is a request until accepted when the member who added us (the
 *   author of the signed entry that added us) is neither us nor an accepted person, and the conversation
 *   was not accepted as a whole. In a request no delivery receipt goes back (they are held and sent on
 *   accept) and our profile key is not shared. Accepting (or sending in it) accepts the conversation and,
 *   for a direct one, the person. Deleting hides it (until a later message).
 * - Block: a blocked person's messages (and everything in a blocked conversation) are decrypted — so the
 *   sessions stay in step — and then dropped in the same transaction: nothing stored, no receipt, no event;
 *   they are not told. Mute is a flag (with an optional end) the UI reads for notifications and badges.
 *
 * Does NOT: send (the engine queues the `pk` payload and held receipts), decode images (the app resizes
 * and re-encodes avatars in the browser before `setProfile`), or rotate the profile key on block (a blocked
 * person who had the key can still open the profile they already could; listed in the notes).
 * @module
 */
import {
  type Avatar,
  decodeMembershipEntry,
  decodeProfileKeyMessage,
  encodeProfileKeyMessage,
  generateProfileKey,
  is,
  openPrivateSettings,
  openProfile,
  type PrivateSettings,
  privateSettingsKey,
  SETTING_KIND,
  type SettingEntry,
  sealPrivateSettings,
  sealProfile,
  toB64u,
} from './_protocol.js';
import { type EngineContext, EngineError } from './context.js';
import type { Keystore } from './keystore.js';
import { listJson, readJson, type StoreTx, writeJson } from './storage.js';
import { ApiError } from './transport.js';

/** A person's profile as this device could open it (plain data for the UI). */
export interface ProfileView {
  readonly userId: string;
  /** May be empty: show the username alone. */
  readonly name: string;
  readonly avatar: Avatar | null;
  readonly updatedAt: number;
}

/** Where a conversation stands for us. */
export type RequestState = 'accepted' | 'request' | 'hidden' | 'blocked';

/** What the UI needs of our private settings. */
export interface PeopleView {
  readonly blockedUsers: readonly string[];
  readonly blockedConversations: readonly string[];
  /** Muted people and conversations with the time the mute ends (0: until unmuted). */
  readonly mutedUsers: readonly { readonly userId: string; readonly until: number }[];
  readonly mutedConversations: readonly { readonly conversationId: string; readonly until: number }[];
  readonly acceptedUsers: readonly string[];
}

interface LocalSettings {
  readonly revision: number;
  readonly settings: PrivateSettings;
  /** Sealed under a user identity key we no longer have: never stored locally, only written over. */
  readonly unreadable?: true;
}

interface ContactKey {
  readonly key: Uint8Array;
  readonly profileUpdatedAt: number;
}

const K = {
  settings: 'ppl/settings',
  own: 'ppl/own',
  key: (u: string) => `ppl/key/${u}`,
  profile: (u: string) => `ppl/profile/${u}`,
  /** What we last shared in a conversation: `${key b64u}:${profile updatedAt}`. */
  shared: (c: string) => `ppl/shared/${c}`,
  /** Delivery receipts held while a conversation is a request. */
  held: (c: string) => `ppl/held/${c}`,
};

const EMPTY: PrivateSettings = { profileKey: null, entries: [] };
const MAX_HELD_RECEIPTS = 1000;
const CAS_ATTEMPTS = 6;

/** The `pk` payload the engine sends pairwise (inside the end-to-end ciphertext). */
export interface ProfileKeyPayload {
  readonly t: 'pk';
  readonly conv: string;
  /** The 41-byte profile-key message (docs/PROTOCOL.md §"Profiles"). */
  readonly k: Uint8Array;
}

export class People {
  constructor(
    private readonly ctx: EngineContext,
    private readonly keys: Keystore,
    /** The author of the signed membership entry that added `userId` (null if none). */
    private readonly addedBy: (conversationId: string, userId: string) => Promise<string | null>,
    /** Off (bots, the SDK's default): every conversation counts as accepted; blocks still apply. */
    private readonly requestsEnabled: boolean,
  ) {}

  // ---- private settings ----------------------------------------------------------------------------

  private async settingsKey(): Promise<{ key: Uint8Array; userId: string }> {
    const own = await this.keys.identity();
    return { key: privateSettingsKey(own.userIdentity.secretKey), userId: own.userId };
  }

  private async local(): Promise<LocalSettings> {
    return (await readJson<LocalSettings>(this.ctx.store, K.settings)) ?? { revision: 0, settings: EMPTY };
  }

  /** The settings as this device holds them (no network: `sync` pulls the latest). */
  async settings(): Promise<PrivateSettings> {
    return (await this.local()).settings;
  }

  /** Pulls our sealed settings; adopts them if newer than what this device holds. */
  async sync(): Promise<LocalSettings> {
    const remote = await this.fetchRemote();
    const held = await this.local();
    if (remote.revision <= held.revision || remote.unreadable) {
      if (!(await readJson(this.ctx.store, K.settings)))
        await this.ctx.store.transaction(async (tx) => writeJson(tx, K.settings, held));
      return held;
    }
    await this.ctx.store.transaction(async (tx) => {
      const cur = (await readJson<LocalSettings>(tx, K.settings))?.revision ?? 0;
      if (remote.revision > cur) writeJson(tx, K.settings, remote);
    });
    this.ctx.emit({ type: 'people_changed' });
    return remote;
  }

  private async fetchRemote(): Promise<LocalSettings> {
    const r = await this.ctx.api.fetchPrivateSettings();
    if (!r.sealed) return { revision: 0, settings: EMPTY };
    const { key, userId } = await this.settingsKey();
    try {
      const opened = openPrivateSettings(key, userId, r.sealed);
      return { revision: opened.revision, settings: opened.settings };
    } catch (e) {
      // Sealed under a user identity key we no longer have (an identity reset: every device of ours is new
      // and holds nothing): start again on top of the stored revision. A device that holds settings never
      // lets unreadable ones replace them.
      if (is(e, 'decryption_failed') && (await this.local()).revision === 0)
        return { revision: r.revision, settings: EMPTY, unreadable: true };
      throw e;
    }
  }

  /**
   * Applies `change` on top of the server's latest settings and writes them as the next revision
   * (compare-and-swap; a conflict starts again from the new latest). Returns the settings written.
   */
  async update(change: (s: PrivateSettings) => PrivateSettings | null): Promise<PrivateSettings> {
    return this.ctx.locks.request('people:settings', async () => {
      for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
        const latest = await this.fetchRemote();
        const held = await this.local();
        if (latest.revision < held.revision)
          throw new EngineError(
            'settings_rollback',
            'the server returned older private settings than this device holds',
          );
        const next = change(latest.settings);
        if (next === null) {
          if (latest.revision > held.revision && !latest.unreadable) await this.adopt(latest);
          return latest.settings;
        }
        const { key, userId } = await this.settingsKey();
        const revision = latest.revision + 1;
        const sealed = sealPrivateSettings(this.ctx.rng, key, userId, revision, next);
        try {
          await this.ctx.api.putPrivateSettings(sealed);
        } catch (e) {
          if (e instanceof ApiError && e.code === 'revision_conflict') continue;
          throw e;
        }
        await this.adopt({ revision, settings: next });
        return next;
      }
      throw new EngineError('settings_conflict', 'private settings kept changing on another device');
    });
  }

  private async adopt(s: LocalSettings): Promise<void> {
    await this.ctx.store.transaction(async (tx) => {
      const cur = (await readJson<LocalSettings>(tx, K.settings))?.revision ?? 0;
      if (s.revision > cur) writeJson(tx, K.settings, s);
    });
    this.ctx.emit({ type: 'people_changed' });
  }

  /** Sets (or with `value` null, removes) the entry (kind, target); null if nothing changes. */
  private static withEntry(
    s: PrivateSettings,
    kind: number,
    target: string,
    value: number | null,
    at: number,
  ): PrivateSettings | null {
    const i = s.entries.findIndex((e) => e.kind === kind && e.target === target);
    if (value === null) {
      if (i < 0) return null;
      return { ...s, entries: s.entries.filter((_, j) => j !== i) };
    }
    if (i >= 0 && s.entries[i]!.value === value) return null;
    const e: SettingEntry = { kind, target, at, value };
    return { ...s, entries: i >= 0 ? s.entries.map((x, j) => (j === i ? e : x)) : [...s.entries, e] };
  }

  /** Several entry changes in one write. */
  async setEntries(changes: readonly { kind: number; target: string; value: number | null }[]): Promise<void> {
    const at = this.ctx.now();
    await this.update((s) => {
      let cur = s;
      let changed = false;
      for (const c of changes) {
        const next = People.withEntry(cur, c.kind, c.target, c.value, at);
        if (next) {
          cur = next;
          changed = true;
        }
      }
      return changed ? cur : null;
    });
  }

  async view(): Promise<PeopleView> {
    const s = await this.settings();
    const now = this.ctx.now();
    const of = (k: number) => s.entries.filter((e) => e.kind === k);
    const live = (e: SettingEntry) => e.value === 0 || e.value > now;
    return {
      blockedUsers: of(SETTING_KIND.blockUser).map((e) => e.target),
      blockedConversations: of(SETTING_KIND.blockConversation).map((e) => e.target),
      mutedUsers: of(SETTING_KIND.muteUser)
        .filter(live)
        .map((e) => ({ userId: e.target, until: e.value })),
      mutedConversations: of(SETTING_KIND.muteConversation)
        .filter(live)
        .map((e) => ({ conversationId: e.target, until: e.value })),
      acceptedUsers: of(SETTING_KIND.acceptUser).map((e) => e.target),
    };
  }

  private static has(s: PrivateSettings, kind: number, target: string): SettingEntry | undefined {
    return s.entries.find((e) => e.kind === kind && e.target === target);
  }

  // ---- requests and blocks -------------------------------------------------------------------------

  /** Whether message requests are on (EngineOptions.messageRequests). */
  get requests(): boolean {
    return this.requestsEnabled;
  }

  /** True if what `userId` sends in `conversationId` is dropped on this device (blocked person or conversation). */
  async isDropped(conversationId: string, userId: string): Promise<boolean> {
    const s = await this.settings();
    return (
      People.has(s, SETTING_KIND.blockUser, userId) !== undefined ||
      People.has(s, SETTING_KIND.blockConversation, conversationId) !== undefined
    );
  }

  /** Where `conversationId` stands; `cursor` is the last seq this device processed in it. */
  async state(conversationId: string, cursor: number): Promise<RequestState> {
    const s = await this.settings();
    if (People.has(s, SETTING_KIND.blockConversation, conversationId)) return 'blocked';
    if (People.has(s, SETTING_KIND.acceptConversation, conversationId)) return 'accepted';
    if (!this.requestsEnabled) return 'accepted';
    const own = await this.keys.identity();
    const adder = await this.addedBy(conversationId, own.userId);
    if (adder === null || adder === own.userId || People.has(s, SETTING_KIND.acceptUser, adder)) return 'accepted';
    if (People.has(s, SETTING_KIND.blockUser, adder)) return 'blocked';
    const hidden = People.has(s, SETTING_KIND.hideConversation, conversationId);
    return hidden && cursor <= hidden.value ? 'hidden' : 'request';
  }

  /** The person who added us to a conversation (for a request: who is asking). */
  async requester(conversationId: string): Promise<string | null> {
    return this.addedBy(conversationId, (await this.keys.identity()).userId);
  }

  /** Accepts a conversation (and, for a direct one, the person who started it). */
  async accept(conversationId: string, kind: 'direct' | 'group'): Promise<void> {
    const requester = await this.requester(conversationId);
    const own = await this.keys.identity();
    await this.setEntries([
      { kind: SETTING_KIND.acceptConversation, target: conversationId, value: 0 },
      { kind: SETTING_KIND.hideConversation, target: conversationId, value: null },
      ...(kind === 'direct' && requester && requester !== own.userId
        ? [{ kind: SETTING_KIND.acceptUser, target: requester, value: 0 }]
        : []),
    ]);
  }

  /** Receipts withheld while `conversationId` was a request (in order, without duplicates). */
  holdReceiptsInTx(tx: StoreTx, conversationId: string, held: readonly string[], ids: readonly string[]): void {
    const all = [...new Set([...held, ...ids])].slice(-MAX_HELD_RECEIPTS);
    writeJson(tx, K.held(conversationId), all);
  }

  async heldReceipts(conversationId: string): Promise<string[]> {
    return (await readJson<string[]>(this.ctx.store, K.held(conversationId))) ?? [];
  }

  async holdReceipts(conversationId: string, ids: readonly string[]): Promise<void> {
    await this.ctx.store.transaction(async (tx) => {
      const held = (await readJson<string[]>(tx, K.held(conversationId))) ?? [];
      this.holdReceiptsInTx(tx, conversationId, held, ids);
    });
  }

  /** Takes the held receipts (they are the caller's to queue now). */
  async takeHeldReceipts(conversationId: string): Promise<string[]> {
    return this.ctx.store.transaction(async (tx) => {
      const held = (await readJson<string[]>(tx, K.held(conversationId))) ?? [];
      tx.delete(K.held(conversationId));
      return held;
    });
  }

  // ---- profiles ------------------------------------------------------------------------------------

  /** Our profile key, made (and stored in the private settings) on first use. */
  async profileKey(): Promise<Uint8Array> {
    const s = await this.settings();
    if (s.profileKey) return s.profileKey;
    const fresh = generateProfileKey(this.ctx.rng);
    const written = await this.update((cur) => (cur.profileKey ? null : { ...cur, profileKey: fresh }));
    return written.profileKey ?? fresh;
  }

  /** Seals and stores our profile; returns what others will see. */
  async setProfile(p: { name: string; avatar: Avatar | null }): Promise<ProfileView> {
    const own = await this.keys.identity();
    const key = await this.profileKey();
    const prev = await readJson<ProfileView>(this.ctx.store, K.own);
    // Strictly increasing, also when the clock went back: receivers never go back to an older profile.
    const updatedAt = Math.max(this.ctx.now(), (prev?.updatedAt ?? 0) + 1);
    const sealed = sealProfile(this.ctx.rng, key, own.userId, { updatedAt, name: p.name, avatar: p.avatar });
    await this.ctx.api.putProfile(sealed);
    const view: ProfileView = { userId: own.userId, name: p.name, avatar: p.avatar, updatedAt };
    await this.ctx.store.transaction(async (tx) => {
      writeJson(tx, K.own, view);
      writeJson(tx, K.profile(own.userId), view);
    });
    this.ctx.emit({ type: 'profile_changed', userId: own.userId });
    return view;
  }

  /** Our own profile (fetched and opened once on a device that has not written it, e.g. a linked one). */
  async ownProfile(): Promise<ProfileView | null> {
    const held = await readJson<ProfileView>(this.ctx.store, K.own);
    if (held) return held;
    const s = await this.settings();
    if (!s.profileKey) return null;
    const own = await this.keys.identity();
    const view = await this.fetchOpen(own.userId, s.profileKey);
    if (view)
      await this.ctx.store.transaction(async (tx) => {
        writeJson(tx, K.own, view);
        writeJson(tx, K.profile(own.userId), view);
      });
    return view;
  }

  /** A person's profile as last opened on this device (null if we hold no key or they have none). */
  async profile(userId: string): Promise<ProfileView | null> {
    const own = await this.keys.identity();
    if (userId === own.userId) return this.ownProfile();
    return (await readJson<ProfileView>(this.ctx.store, K.profile(userId))) ?? null;
  }

  /** Every profile this device holds. */
  async profiles(): Promise<ProfileView[]> {
    return (await listJson<ProfileView>(this.ctx.store, 'ppl/profile/')).map((e) => e.value);
  }

  /** Fetches and opens `userId`'s profile with the key they shared; keeps it if it is newer. */
  async refreshProfile(userId: string): Promise<ProfileView | null> {
    const own = await this.keys.identity();
    if (userId === own.userId) return this.ownProfile();
    const ck = await readJson<ContactKey>(this.ctx.store, K.key(userId));
    if (!ck) return this.profile(userId);
    const view = await this.fetchOpen(userId, ck.key);
    if (!view) return this.profile(userId);
    const kept = await this.ctx.store.transaction(async (tx) => {
      const cur = await readJson<ProfileView>(tx, K.profile(userId));
      if (cur && cur.updatedAt >= view.updatedAt) return false;
      writeJson(tx, K.profile(userId), view);
      return true;
    });
    if (kept) this.ctx.emit({ type: 'profile_changed', userId });
    return this.profile(userId);
  }

  private async fetchOpen(userId: string, key: Uint8Array): Promise<ProfileView | null> {
    const sealed = await this.ctx.api.fetchProfile(userId);
    if (!sealed) return null;
    try {
      const c = openProfile(key, userId, sealed);
      return { userId, name: c.name, avatar: c.avatar, updatedAt: c.updatedAt };
    } catch (e) {
      // A profile that does not open (rotated key, tampering, a rule broken) is not shown; nothing else changes.
      if (is(e)) return null;
      throw e;
    }
  }

  /**
   * A profile key that `from` sent us, in the transaction that stores the decrypted envelope. Returns
   * true if the key is new or the profile it announces is newer than the one held (the caller refreshes
   * the profile after the commit). `decode` for a malformed message.
   */
  async acceptProfileKeyInTx(tx: StoreTx, from: string, bytes: Uint8Array): Promise<boolean> {
    const m = decodeProfileKeyMessage(bytes);
    const cur = await readJson<ContactKey>(tx, K.key(from));
    const sameKey = cur !== undefined && toB64u(cur.key) === toB64u(m.profileKey);
    if (sameKey && cur.profileUpdatedAt >= m.profileUpdatedAt) return false;
    writeJson(tx, K.key(from), { key: m.profileKey, profileUpdatedAt: m.profileUpdatedAt } satisfies ContactKey);
    return true;
  }

  /**
   * The `pk` payload to send into `conversationId` before our next message, or null if its members
   * already have our current key and profile (or we have no profile to share).
   */
  async profileKeyToShare(
    conversationId: string,
    members: Iterable<string>,
  ): Promise<{ payload: ProfileKeyPayload; mark: string } | null> {
    const s = await this.settings();
    if (!s.profileKey) return null;
    // A pairwise payload reaches every member: never into a conversation with someone we blocked (they
    // keep only the key they had before the block; see blockUser).
    for (const u of members) if (People.has(s, SETTING_KIND.blockUser, u)) return null;
    const own = await readJson<ProfileView>(this.ctx.store, K.own);
    const updatedAt = own?.updatedAt ?? 0;
    const mark = `${toB64u(s.profileKey)}:${updatedAt}`;
    if ((await readJson<string>(this.ctx.store, K.shared(conversationId))) === mark) return null;
    const k = encodeProfileKeyMessage({ profileKey: s.profileKey, profileUpdatedAt: updatedAt });
    return { payload: { t: 'pk', conv: conversationId, k }, mark };
  }

  /**
   * Blocks `userId` and rotates our profile key in ONE settings write (docs/PROTOCOL.md §"Profiles"), then
   * re-seals our profile under the new key, so the blocked person — who keeps only the old key — cannot
   * open it any more. Returns the conversations we had shared the old key in (the caller re-shares the new
   * one where no blocked person is a member).
   */
  async blockUser(userId: string): Promise<string[]> {
    const at = this.ctx.now();
    const fresh = generateProfileKey(this.ctx.rng);
    await this.update((s) => {
      const blocked = People.withEntry(s, SETTING_KIND.blockUser, userId, 0, at);
      // Already blocked: nothing to rotate. No profile key yet: nothing was ever shared.
      if (!blocked) return null;
      return s.profileKey ? { ...blocked, profileKey: fresh } : blocked;
    });
    const own = await readJson<ProfileView>(this.ctx.store, K.own);
    if (own && (await this.settings()).profileKey !== null)
      await this.setProfile({ name: own.name, avatar: own.avatar });
    return (await listJson<string>(this.ctx.store, 'ppl/shared/')).map((e) => e.key.slice('ppl/shared/'.length));
  }

  /** A queued share of our profile key failed for good: the next visible send in `conversationId` queues it again. */
  async unmarkShared(conversationId: string): Promise<void> {
    await this.ctx.store.delete(K.shared(conversationId));
  }

  /** Records that `mark` (from profileKeyToShare) was queued into `conversationId`. */
  markSharedInTx(tx: StoreTx, conversationId: string, mark: string): void {
    writeJson(tx, K.shared(conversationId), mark);
  }
}

/** The author of the last valid membership entry that added `userId` (or created the conversation). */
export function adderFromLog(entries: readonly Uint8Array[], userId: string): string | null {
  let adder: string | null = null;
  for (const bytes of entries) {
    const e = decodeMembershipEntry(bytes);
    if (e.action === 'create' && e.authorUserId === userId) adder = userId;
    else if (e.action === 'add' && e.target === userId) adder = e.authorUserId;
  }
  return adder;
}
