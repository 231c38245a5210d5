/**
 * Pairwise sessions per remote device, with exactly one writer per session (PITFALLS 12).
 *
 * Sending to a device, under the lock `session:<user>:<device>` (Web Locks across tabs, a mutex in Node):
 * load the record and the persisted send-generation high-water mark → `assertNotStale` → encrypt →
 * persist the record and raise the mark with compare-and-set in ONE transaction → only then return the
 * ciphertext. A record older than the mark (restored from an older copy) is never sent from: a new
 * session is established from a fresh bundle instead, so no (key, nonce) is used twice. A session the peer
 * has not acknowledged for SESSION_UNACKED_MAX_AGE_MS (`isSessionExpired`, PITFALLS 13), or one marked
 * for repair after a decryption failure, is replaced the same way. Bundles are verified (`verifyBundle`
 * against the trusted identity key and the verified device list) before any key agreement.
 *
 * Receiving: decrypt under the same lock; the record and the deletion of a consumed one-time prekey's
 * private half (EC and ML-KEM, PITFALLS 6) commit together, inside the caller's transaction that also
 * stores the message and advances the cursor (all-or-nothing: see `decrypt`).
 *
 * Does NOT: decide which devices to encrypt to (directory.ts / outbox.ts), keep records in memory between
 * calls (every operation reloads under the lock — another tab may have advanced the session), or send.
 * @module
 */
import {
  assertNotStale,
  decodeBundle,
  decrypt,
  deserializeSessionRecord,
  emptySessionRecord,
  encrypt,
  equal,
  initiateSession,
  is,
  isSessionExpired,
  type SessionRecord,
  serializeSessionRecord,
  type VerifiedBundle,
  type VerifiedDevice,
  verifyBundle,
} from './_protocol.js';
import type { EngineContext, ReceiveChain } from './context.js';
import type { Directory } from './directory.js';
import type { Keystore } from './keystore.js';
import { readJson, type StoreTx, writeJson } from './storage.js';

const K = {
  record: (u: string, d: string) => `sess/${u}/${d}`,
  dir: (u: string) => `sess/${u}/`,
  mark: (u: string, d: string) => `hwm/${u}/${d}`,
  repair: (u: string, d: string) => `repair/${u}/${d}`,
};

export interface Encrypted {
  readonly deviceId: string;
  readonly ciphertext: Uint8Array;
}

export class Sessions {
  constructor(
    private readonly ctx: EngineContext,
    private readonly keys: Keystore,
    private readonly directory: Directory,
  ) {}

  private lockName(u: string, d: string): string {
    return `session:${u}:${d}`;
  }

  /** The stored session record with `u`/`d`, or null. */
  private async loadRecord(u: string, d: string): Promise<SessionRecord | null> {
    const bytes = await this.ctx.store.get(K.record(u, d));
    return bytes ? deserializeSessionRecord(bytes) : null;
  }

  private async load(u: string, d: string) {
    const record = await this.loadRecord(u, d);
    const mark = (await readJson<number>(this.ctx.store, K.mark(u, d))) ?? 0;
    const repair = (await this.ctx.store.get(K.repair(u, d))) !== undefined;
    return { record, mark, repair };
  }

  /** Whether a send to this device can use the stored session (else a new one is established). */
  private usable(s: { record: SessionRecord | null; mark: number; repair: boolean }): boolean {
    const cur = s.record?.current;
    if (!s.record || !cur || s.repair) return false;
    if (isSessionExpired(cur, this.ctx.now())) return false;
    try {
      assertNotStale(s.record, s.mark);
    } catch (e) {
      if (is(e)) return false;
      throw e;
    }
    return true;
  }

  /**
   * Encrypts `plaintext` once per device of `userId` in `devices` (all from the user's verified list).
   * Devices for which no session exists and no bundle could be claimed are left out of the result.
   */
  async encryptFor(userId: string, devices: readonly VerifiedDevice[], plaintext: Uint8Array): Promise<Encrypted[]> {
    const need: VerifiedDevice[] = [];
    for (const d of devices) if (!this.usable(await this.load(userId, d.deviceId))) need.push(d);
    const bundles = need.length ? await this.claim(userId, need) : new Map<string, VerifiedBundle>();
    const out: Encrypted[] = [];
    for (const d of devices) {
      const c = await this.encryptOne(userId, d.deviceId, plaintext, bundles.get(d.deviceId) ?? null);
      if (c) out.push({ deviceId: d.deviceId, ciphertext: c });
    }
    return out;
  }

  /**
   * Encrypts only to devices we already have a usable session with — never claims a bundle or starts a
   * session (ephemeral signals such as typing must not spend anyone's one-time prekeys).
   */
  async encryptExisting(
    userId: string,
    devices: readonly VerifiedDevice[],
    plaintext: Uint8Array,
  ): Promise<Encrypted[]> {
    const out: Encrypted[] = [];
    for (const d of devices) {
      const c = await this.encryptOne(userId, d.deviceId, plaintext, null);
      if (c) out.push({ deviceId: d.deviceId, ciphertext: c });
    }
    return out;
  }

  /** One claim for the user; verified bundles for the devices we need (others are discarded). */
  private async claim(userId: string, need: readonly VerifiedDevice[]): Promise<Map<string, VerifiedBundle>> {
    const claim = await this.ctx.api.claimBundles(userId);
    await this.directory.refresh(userId, claim.deviceList);
    await this.directory.assertSendable(userId);
    const list = await this.directory.list(userId);
    const out = new Map<string, VerifiedBundle>();
    if (!list) return out;
    for (const b of claim.devices) {
      const wanted = need.find((d) => d.deviceId === b.deviceId);
      if (!wanted) continue;
      try {
        const vb = await verifyBundle(this.ctx.curves, decodeBundle(b.bundle), list.userIdentityKey, list);
        if (equal(vb.device.identityKey, wanted.identityKey)) out.set(b.deviceId, vb);
      } catch (e) {
        if (!is(e)) throw e; // a bundle that does not verify is never used (PITFALLS 1)
      }
    }
    return out;
  }

  private encryptOne(u: string, d: string, plaintext: Uint8Array, bundle: VerifiedBundle | null) {
    return this.ctx.locks.request(this.lockName(u, d), async (): Promise<Uint8Array | null> => {
      const s = await this.load(u, d);
      let record: SessionRecord;
      if (this.usable(s)) record = s.record!;
      else {
        if (!bundle) return null;
        // Re-establish; a stale record's generation is lifted to the mark so the new lineage is current.
        const base = s.record ?? emptySessionRecord();
        const lifted = { ...base, sendGeneration: Math.max(base.sendGeneration, s.mark) };
        record = await initiateSession(
          this.ctx.curves,
          this.ctx.rng,
          await this.keys.local(),
          bundle,
          this.ctx.now(),
          lifted,
        );
      }
      assertNotStale(record, s.mark);
      const r = encrypt(record, plaintext, this.ctx.now());
      const ok = await this.ctx.store.transaction(async (tx) => {
        const mark = (await readJson<number>(tx, K.mark(u, d))) ?? 0;
        if (mark !== s.mark) return false; // someone without the lock advanced it: never send
        tx.put(K.record(u, d), serializeSessionRecord(r.record));
        writeJson(tx, K.mark(u, d), r.record.sendGeneration);
        tx.delete(K.repair(u, d));
        return true;
      });
      if (!ok) throw new Error('session high-water mark moved under the lock');
      return r.message;
    });
  }

  /**
   * Decrypts a pairwise message from (u, d) and hands the plaintext to `then` while STILL holding the
   * session lock. Nothing is persisted here: `then` must call `commit(tx)` inside the one Store
   * transaction that also stores what the message carried and advances the cursor, so the advanced
   * session (and the consumed one-time prekeys) is durable exactly when the message is — a crash before
   * that commit leaves the old record, and the redelivered envelope decrypts again. Throws the protocol's
   * public errors (nothing is committed then).
   */
  decrypt<T>(
    u: string,
    d: string,
    message: Uint8Array,
    then: (r: { plaintext: Uint8Array; newSession: boolean; commit: (tx: StoreTx) => Promise<void> }) => Promise<T>,
  ): Promise<T> {
    return this.ctx.locks.request(this.lockName(u, d), async () => {
      // Only the record: the send-side mark and repair flag play no part in decrypting (one read, not three).
      const record = await this.loadRecord(u, d);
      const local = await this.keys.local();
      const r = await decrypt(
        this.ctx.curves,
        this.ctx.rng,
        record ?? emptySessionRecord(),
        message,
        {
          ours: local,
          remote: { userId: u, deviceId: d },
          responderKeys: (ids) => this.keys.responderKeys(this.ctx.store, ids),
          isTrustedIdentity: async (ik) => {
            if (await this.directory.isBlocked(u)) return false;
            let dev = await this.directory.device(u, d);
            if (!dev) {
              await this.directory.refresh(u).catch(() => undefined);
              dev = await this.directory.device(u, d);
            }
            return !!dev && equal(dev.identityKey, ik);
          },
        },
        this.ctx.now(),
      );
      const commit = async (tx: StoreTx) => {
        tx.put(K.record(u, d), serializeSessionRecord(r.record));
        if (r.newSession) {
          await this.keys.consumeInTx(tx, {
            oneTimePrekeyId: r.consumedOneTimePrekeyId,
            kemPrekeyId: r.consumedKemPrekeyId,
          });
        }
      };
      return then({ plaintext: r.plaintext, newSession: r.newSession, commit });
    });
  }

  /**
   * The session with (u, d) as a receiving chain for the inbox's batch path (which holds `lock` and one
   * transaction for a run of envelopes, see ReceiveChain). Only messages of an existing session decrypt here:
   * a message that would start a new session fails (no prekeys are offered and no identity is trusted), so the
   * caller hands it to `decrypt`, which checks the identity, consumes the prekeys and commits them with it.
   */
  async receiveChain(u: string, d: string): Promise<ReceiveChain<SessionRecord>> {
    const local = await this.keys.local();
    return {
      lock: this.lockName(u, d),
      load: async (tx) => {
        const bytes = await tx.get(K.record(u, d));
        return bytes ? deserializeSessionRecord(bytes) : emptySessionRecord();
      },
      decrypt: async (record, message) => {
        const r = await decrypt(
          this.ctx.curves,
          this.ctx.rng,
          record,
          message,
          {
            ours: local,
            remote: { userId: u, deviceId: d },
            responderKeys: async () => null,
            isTrustedIdentity: async () => false,
          },
          this.ctx.now(),
        );
        if (r.newSession) throw new Error('sessions: a new session is not established in a batch');
        return { plaintext: r.plaintext, next: r.record };
      },
      save: (tx, record) => tx.put(K.record(u, d), serializeSessionRecord(record)),
    };
  }

  /** After a decryption failure: the next send to this device starts a new session (a prekey message). */
  async markForRepair(u: string, d: string): Promise<void> {
    await this.ctx.store.put(K.repair(u, d), new Uint8Array([1]));
  }

  /** Forget every session with `userId` (after an accepted identity change). */
  async dropUser(userId: string): Promise<void> {
    const entries = await this.ctx.store.list(K.dir(userId));
    const dir = K.dir(userId);
    // Each device's record under its session lock: a decryption holding it commits its advanced record in
    // its own transaction, which would otherwise write a session of the old identity back after this delete.
    for (const d of new Set(entries.map((e) => e.key.slice(dir.length)))) {
      await this.ctx.locks.request(this.lockName(userId, d), () =>
        this.ctx.store.transaction(async (tx) => tx.delete(K.record(userId, d))),
      );
    }
  }
}
