/**
 * Other users (and our own other devices) as we trust them: per user, the trusted user identity key
 * (trust on first use) and the latest verified signed device list.
 *
 * - A list is accepted only if it verifies under the trusted identity key and moves forward: the direct
 *   successor through `verifyDeviceListUpdate` (version + 1, same key). The server serves only the latest
 *   list, so a later version signed by the SAME trusted key (we missed an update) is verified in full and
 *   accepted too; older or equal versions never replace what we hold (no rollback).
 * - A list under a DIFFERENT identity key is a key change (PITFALLS 15): it is kept as pending, sending to
 *   that user is blocked (`identity_changed`) until `acceptIdentityChange`, and the safety number changes.
 *   A device added under the same key changes nothing the user must confirm.
 * - Only devices in a verified list are ever encrypted to (PITFALLS 16): `devices()` returns exactly
 *   `encryptableDevices(list)`; a device the server names that is not in it gets nothing.
 * - No identity key is trusted — on first use or as a key change — unless the key-transparency log proves
 *   it for that user (PITFALLS 31, transparency.ts): an unproven key throws `kt_unproven` and is never
 *   stored, so nothing is ever encrypted to it.
 *
 * Does NOT: fetch bundles or hold sessions (sessions.ts), or decide membership (groups.ts).
 * @module
 */
import {
  decodeDeviceList,
  deviceKeyResolver,
  encryptableDevices,
  equal,
  is,
  type SafetyNumber,
  safetyNumber,
  type VerifiedDevice,
  type VerifiedDeviceList,
  verifyDeviceList,
  verifyDeviceListUpdate,
} from './_protocol.js';
import { encodeRecord } from './codec.js';
import { type EngineContext, EngineError } from './context.js';
import type { Keystore } from './keystore.js';
import { putJson, readJson } from './storage.js';
import type { Transparency } from './transparency.js';

interface ContactRecord {
  readonly userId: string;
  readonly trustedIdentityKey: Uint8Array;
  /** Null only for a pinned contact whose key changed before we ever saw a list under the pinned key. */
  readonly list: Uint8Array | null;
  readonly version: number;
  readonly pendingChange: { readonly identityKey: Uint8Array; readonly list: Uint8Array } | null;
}

/** What the UI may show about a contact. */
export interface ContactView {
  readonly userId: string;
  readonly identityKey: Uint8Array;
  readonly deviceIds: readonly string[];
  readonly listVersion: number;
  /** True while an identity key change awaits the user's acceptance (sending is blocked). */
  readonly blocked: boolean;
  /** The new identity key of that change (verified list under it), while it awaits acceptance. */
  readonly pendingIdentityKey: Uint8Array | null;
}

const key = (userId: string) => `dir/user/${userId}`;
/**
 * A contact's identity key as another of our devices trusted it, handed over when this device was linked
 * (docs/PROTOCOL.md §"Linking"). It replaces trust on first use for that contact: the first list seen must
 * be signed by the pinned key, otherwise it is a key change the person must accept — exactly as it would
 * have been on the device that linked us.
 */
const pinKey = (userId: string) => `dir/pin/${userId}`;

export interface TrustPin {
  readonly userId: string;
  readonly identityKey: Uint8Array;
}

export class Directory {
  private readonly verified = new Map<string, { bytes: Uint8Array; list: VerifiedDeviceList }>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly keys: Keystore,
    private readonly kt: Transparency,
  ) {}

  /**
   * Fetches the user's current list from the server (or takes `listBytes`) and applies the rules above.
   * A list is fetched with the key-transparency proof of its identity key (transparency.ts), which must
   * verify before the key is trusted on first use or offered as a key change; `listBytes` (from a bundle
   * claim) is used only while it is signed by the key we already trust.
   */
  async refresh(userId: string, listBytes?: Uint8Array): Promise<ContactView> {
    const own = await this.keys.identity();
    const rec = await readJson<ContactRecord>(this.ctx.store, key(userId));
    if (userId === own.userId) {
      // Our own user: the identity key is ours; nothing else is ever trusted for it (self-monitoring
      // checks the log for our account separately).
      const bytes = listBytes ?? (await this.ctx.api.fetchDeviceList(userId))?.list;
      if (!bytes) throw new EngineError('unknown_user', `no such user ${userId}`, userId);
      const mine = decodeDeviceList(bytes);
      if (mine.userId !== userId || !equal(mine.userIdentityKey, own.userIdentity.publicKey)) return this.view(userId);
      return this.accept(userId, rec ?? null, bytes, own.userIdentity.publicKey);
    }
    let bytes = listBytes;
    if (!bytes || !rec || !equal(decodeDeviceList(bytes).userIdentityKey, rec.trustedIdentityKey)) {
      // A key we do not trust yet, or a fresh fetch: only with the log's proof (throws kt_unproven).
      const proven = await this.kt.provenDeviceList(userId);
      if (!proven) throw new EngineError('unknown_user', `no such user ${userId}`, userId);
      bytes = proven;
    }
    const next = decodeDeviceList(bytes);
    if (next.userId !== userId) throw new EngineError('unknown_user', 'device list for another user', userId);
    if (!rec) {
      const pin = await readJson<TrustPin>(this.ctx.store, pinKey(userId));
      if (pin && !equal(pin.identityKey, next.userIdentityKey)) return this.pinnedKeyChanged(userId, pin, bytes);
      // Trust on first use of a logged key (or the key our linking device pinned, also logged).
      await verifyDeviceListUpdate(this.ctx.curves, null, next);
      return this.accept(userId, null, bytes, next.userIdentityKey);
    }
    if (!equal(next.userIdentityKey, rec.trustedIdentityKey)) {
      await verifyDeviceList(this.ctx.curves, next); // a genuine list under the new (logged) key, or nothing
      if (rec.pendingChange && equal(rec.pendingChange.list, bytes)) return this.view(userId);
      await putJson(this.ctx.store, key(userId), {
        ...rec,
        pendingChange: { identityKey: next.userIdentityKey, list: bytes },
      });
      this.ctx.emit({ type: 'key_change', userId, blocked: true });
      return this.view(userId);
    }
    return this.accept(userId, rec, bytes, rec.trustedIdentityKey);
  }

  /** Pins contacts' identity keys handed over by the device that linked this one (kept if already known). */
  async pin(pins: readonly TrustPin[]): Promise<void> {
    await this.ctx.store.transaction(async (tx) => {
      for (const p of pins) {
        if (!(await tx.get(key(p.userId)))) tx.put(pinKey(p.userId), encodeRecord(p));
      }
    });
  }

  /**
   * The first list of a pinned contact is under another key: their identity changed since the device that
   * linked us last looked. We hold no list under the pinned key, so nothing is encryptable until the
   * person accepts the change (`acceptIdentityChange`), exactly as on the linking device.
   */
  private async pinnedKeyChanged(userId: string, pin: TrustPin, bytes: Uint8Array): Promise<ContactView> {
    const next = await verifyDeviceList(this.ctx.curves, decodeDeviceList(bytes)); // genuine under its own key
    await putJson(this.ctx.store, key(userId), {
      userId,
      trustedIdentityKey: pin.identityKey,
      list: null,
      version: 0,
      pendingChange: { identityKey: next.userIdentityKey, list: bytes },
    } satisfies ContactRecord);
    this.ctx.emit({ type: 'key_change', userId, blocked: true });
    return this.view(userId);
  }

  private async accept(
    userId: string,
    rec: ContactRecord | null,
    bytes: Uint8Array,
    trusted: Uint8Array,
  ): Promise<ContactView> {
    const next = decodeDeviceList(bytes);
    if (rec?.list && next.version <= rec.version) return this.view(userId); // never roll back
    let list: VerifiedDeviceList;
    if (rec?.list && next.version === rec.version + 1) {
      list = await verifyDeviceListUpdate(this.ctx.curves, (await this.loadVerified(rec))!, next);
    } else {
      list = await verifyDeviceList(this.ctx.curves, next, trusted);
    }
    await putJson(this.ctx.store, key(userId), {
      userId,
      trustedIdentityKey: trusted,
      list: bytes,
      version: list.version,
      pendingChange: rec?.pendingChange ?? null,
    } satisfies ContactRecord);
    this.verified.set(userId, { bytes, list });
    if (rec) {
      const before = new Set(rec.list ? decodeDeviceList(rec.list).devices.map((d) => d.deviceId) : []);
      const added = list.devices.map((d) => d.deviceId).filter((d) => !before.has(d));
      this.ctx.emit({ type: 'devices_changed', userId, added });
    }
    return this.view(userId);
  }

  private async loadVerified(rec: ContactRecord): Promise<VerifiedDeviceList | null> {
    if (!rec.list) return null;
    const hit = this.verified.get(rec.userId);
    if (hit && equal(hit.bytes, rec.list)) return hit.list;
    const list = await verifyDeviceList(this.ctx.curves, decodeDeviceList(rec.list), rec.trustedIdentityKey);
    this.verified.set(rec.userId, { bytes: rec.list, list });
    return list;
  }

  /** The verified list we hold for `userId` (fetching it on first use), or null if the user is unknown. */
  async list(userId: string): Promise<VerifiedDeviceList | null> {
    let rec = await readJson<ContactRecord>(this.ctx.store, key(userId));
    if (!rec) {
      try {
        await this.refresh(userId);
      } catch (e) {
        if (e instanceof EngineError && e.code === 'unknown_user') return null;
        if (is(e)) return null; // a list that does not verify is never used
        throw e;
      }
      rec = await readJson<ContactRecord>(this.ctx.store, key(userId));
      if (!rec) return null;
    }
    return this.loadVerified(rec);
  }

  /** Throws `identity_changed` while a key change for `userId` awaits acceptance. */
  async assertSendable(userId: string): Promise<void> {
    const rec = await readJson<ContactRecord>(this.ctx.store, key(userId));
    if (rec?.pendingChange) throw new EngineError('identity_changed', `identity key of ${userId} changed`, userId);
  }

  async isBlocked(userId: string): Promise<boolean> {
    return !!(await readJson<ContactRecord>(this.ctx.store, key(userId)))?.pendingChange;
  }

  /** Devices of `userId` we may encrypt to: exactly the verified list's (minus this device). */
  async devices(userId: string): Promise<readonly VerifiedDevice[]> {
    const list = await this.list(userId);
    if (!list) return [];
    const own = await this.keys.identity();
    return encryptableDevices(list).filter((d) => !(d.userId === own.userId && d.deviceId === own.deviceId));
  }

  /** The device's verified entry, if `deviceId` is in the user's verified list. */
  async device(userId: string, deviceId: string): Promise<VerifiedDevice | undefined> {
    const list = await this.list(userId);
    return list?.devices.find((d) => d.deviceId === deviceId);
  }

  /** The user explicitly accepts a changed identity key: the pending list becomes the trusted one. */
  async acceptIdentityChange(userId: string): Promise<ContactView> {
    const rec = await readJson<ContactRecord>(this.ctx.store, key(userId));
    if (!rec?.pendingChange) return this.view(userId);
    const list = await verifyDeviceList(this.ctx.curves, decodeDeviceList(rec.pendingChange.list));
    await putJson(this.ctx.store, key(userId), {
      userId,
      trustedIdentityKey: rec.pendingChange.identityKey,
      list: rec.pendingChange.list,
      version: list.version,
      pendingChange: null,
    } satisfies ContactRecord);
    this.verified.set(userId, { bytes: rec.pendingChange.list, list });
    this.ctx.emit({ type: 'key_change', userId, blocked: false });
    return this.view(userId);
  }

  /**
   * The safety number with `userId` under the identity key we currently trust, or (`pending`) under the
   * new key of a change that awaits acceptance — the number to compare BEFORE accepting it (null if no
   * change is pending).
   */
  async safetyNumber(userId: string, which: 'trusted'): Promise<SafetyNumber>;
  async safetyNumber(userId: string, which: 'pending'): Promise<SafetyNumber | null>;
  async safetyNumber(userId: string, which: 'trusted' | 'pending'): Promise<SafetyNumber | null> {
    const own = await this.keys.identity();
    if (!(await readJson<ContactRecord>(this.ctx.store, key(userId)))) await this.list(userId);
    const rec = await readJson<ContactRecord>(this.ctx.store, key(userId));
    if (!rec) throw new EngineError('unknown_user', `unknown contact ${userId}`, userId);
    const theirs = which === 'pending' ? rec.pendingChange?.identityKey : rec.trustedIdentityKey;
    if (!theirs) return null;
    return safetyNumber(own.userIdentity.publicKey, own.userId, theirs, userId);
  }

  async view(userId: string): Promise<ContactView> {
    const rec = await readJson<ContactRecord>(this.ctx.store, key(userId));
    if (!rec) throw new EngineError('unknown_user', `unknown contact ${userId}`, userId);
    return {
      userId,
      identityKey: rec.trustedIdentityKey,
      deviceIds: rec.list ? decodeDeviceList(rec.list).devices.map((d) => d.deviceId) : [],
      listVersion: rec.version,
      blocked: rec.pendingChange !== null,
      pendingIdentityKey: rec.pendingChange?.identityKey ?? null,
    };
  }

  /** A membership-log resolver over the verified lists of `userIds` (unknown users resolve to nothing). */
  async resolver(userIds: Iterable<string>) {
    const lists: VerifiedDeviceList[] = [];
    for (const u of new Set(userIds)) {
      const l = await this.list(u);
      if (l) lists.push(l);
    }
    return deviceKeyResolver(lists);
  }
}
