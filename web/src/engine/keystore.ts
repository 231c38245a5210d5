/**
 * Our own keys: the user identity key (Ed25519, shared by the user's devices), this device's signing and
 * identity keys with their certificate, our signed device list, the signed prekey (rotated every
 * `spkRotationMs`, the previous one kept `spkGraceMs` for late prekey messages), one-time X25519 prekeys,
 * one-time ML-KEM prekeys and a last-resort ML-KEM prekey.
 *
 * - Private halves are persisted BEFORE the public halves are uploaded (a claimed key always has its
 *   private half), and a one-time prekey's private half is deleted in the same transaction that stores the
 *   session it created (PITFALLS 6, `consumeInTx`); last-resort keys are kept.
 * - `maintain` tops up one-time EC and ML-KEM prekeys when the server's counts fall below the watermark and
 *   rotates the signed prekey on schedule, one run at a time across tabs (lock `keystore:prekeys`). The
 *   engine runs it at sign-in, after envelopes whose new sessions consumed one of our one-time prekeys, and
 *   every `maintenanceIntervalMs` while connected.
 *
 * Does NOT: talk to the server itself except through `maintain(api)`, decide trust in other users
 * (directory.ts), or hold sessions (sessions.ts).
 * @module
 */
import {
  constants,
  type DeviceCertificate,
  decodeDeviceList,
  ed25519FromSecret,
  encodeDeviceList,
  encodePrekeyUpload,
  generateEd25519,
  generateKemPrekey,
  generateOneTimePrekeys,
  generateSignedPrekey,
  generateX25519,
  issueDeviceCertificate,
  type KemPrekeyRecord,
  kemPrekeyPublic,
  type OneTimePrekeyRecord,
  type OurEd25519KeyPair,
  type OurX25519KeyPair,
  oneTimePrekeyPublic,
  type PqxdhLocalIdentity,
  type PqxdhResponderKeys,
  type SignedPrekeyRecord,
  signDeviceList,
  signedPrekeyPublic,
  verifyDeviceList,
} from '../protocol/index.js';
import { type EngineContext, EngineError } from './context.js';
import { listJson, putJson, readJson, type StoreReader, type StoreTx, writeJson } from './storage.js';
import type { PrekeyCounts, ServerApi } from './transport.js';

export interface KeystoreConfig {
  /** One-time EC / ML-KEM prekeys generated per top-up (server limit: 100 per upload). */
  readonly batch: number;
  /** Top up when the server holds fewer than this many one-time prekeys of a kind. */
  readonly watermark: number;
  readonly spkRotationMs: number;
  readonly spkGraceMs: number;
  /** While connected, how often the engine re-checks the server's counts and the rotation schedule. */
  readonly maintenanceIntervalMs: number;
}

export const DEFAULT_KEYSTORE_CONFIG: KeystoreConfig = {
  batch: 100,
  watermark: 25,
  spkRotationMs: 7 * 24 * 3600 * 1000,
  spkGraceMs: 30 * 24 * 3600 * 1000,
  maintenanceIntervalMs: 6 * 3600 * 1000,
};

/** Web Lock / mutex name: one maintenance run at a time across tabs (they share the key store). */
const MAINTENANCE_LOCK = 'keystore:prekeys';

export interface OwnIdentity {
  readonly userId: string;
  readonly deviceId: string;
  readonly userIdentity: OurEd25519KeyPair;
  readonly signing: OurEd25519KeyPair;
  readonly identity: OurX25519KeyPair;
  readonly certificate: DeviceCertificate;
  /** Our user's current signed device list (encoded). */
  readonly deviceList: Uint8Array;
}

interface KeyMeta {
  nextSpkId: number;
  nextOtpId: number;
  nextKemId: number;
  currentSpkId: number | null;
  spkCreatedAt: number;
  lastResortKemId: number | null;
}

interface StoredSpk extends SignedPrekeyRecord {
  readonly createdAt: number;
  /** When a newer signed prekey replaced it (null while current). */
  readonly retiredAt: number | null;
}

const K = {
  identity: 'ks/identity',
  meta: 'ks/meta',
  spkDir: 'ks/spk/',
  spk: (id: number) => `ks/spk/${id}`,
  otp: (id: number) => `ks/otp/${id}`,
  kem: (id: number) => `ks/kem/${id}`,
};

export class Keystore {
  private cached: OwnIdentity | null = null;
  /** Set when a new session used one of our one-time prekeys: the server's stock went down. */
  private consumedSinceMaintenance = false;
  readonly config: KeystoreConfig;

  constructor(
    private readonly ctx: EngineContext,
    config: Partial<KeystoreConfig> = {},
  ) {
    this.config = { ...DEFAULT_KEYSTORE_CONFIG, ...config };
  }

  async exists(): Promise<boolean> {
    return (await this.ctx.store.get(K.identity)) !== undefined;
  }

  /**
   * New device keys. Without `userIdentitySecret` this is a new account (fresh user identity key, device
   * list version 1 with this device). With it, the device joins an existing account: the caller publishes
   * the list returned by `addDeviceToList` from a device that already has the identity key.
   */
  async create(p: {
    userId: string;
    deviceId: string;
    userIdentitySecret?: Uint8Array;
    /** Version of the one-device list to sign (identity reset: the server's version + 1). Default 1. */
    listVersion?: number;
    /**
     * Linking (issue 14): the account's current signed list, handed over in the provisioning message. The
     * new list is its version + 1 with this device added, signed with `userIdentitySecret`.
     */
    linkTo?: Uint8Array;
  }): Promise<OwnIdentity> {
    const { curves, rng, now } = this.ctx;
    const userIdentity = p.userIdentitySecret
      ? await ed25519FromSecret(curves, p.userIdentitySecret)
      : await generateEd25519(curves, rng);
    const signing = await generateEd25519(curves, rng);
    const identity = await generateX25519(curves, rng);
    const certificate = await issueDeviceCertificate(curves, userIdentity, {
      userId: p.userId,
      deviceId: p.deviceId,
      signingKey: signing.publicKey,
      identityKey: identity.publicKey,
      createdAt: now(),
    });
    let version = p.listVersion ?? 1;
    let devices = [certificate];
    if (p.linkTo) {
      const cur = await verifyDeviceList(curves, decodeDeviceList(p.linkTo), userIdentity.publicKey);
      if (cur.userId !== p.userId) throw new Error('keystore: the list to link to is for another user');
      version = cur.version + 1;
      devices = [...cur.list.devices.filter((d) => d.deviceId !== p.deviceId), certificate];
    }
    const list = await signDeviceList(curves, userIdentity, { userId: p.userId, version, devices });
    const own: OwnIdentity = {
      userId: p.userId,
      deviceId: p.deviceId,
      userIdentity,
      signing,
      identity,
      certificate,
      deviceList: encodeDeviceList(list),
    };
    const meta: KeyMeta = {
      nextSpkId: 1,
      nextOtpId: 1,
      nextKemId: 1,
      currentSpkId: null,
      spkCreatedAt: 0,
      lastResortKemId: null,
    };
    await this.ctx.store.transaction(async (tx) => {
      if (await tx.get(K.identity)) throw new Error('keystore: identity already exists');
      writeJson(tx, K.identity, own);
      writeJson(tx, K.meta, meta);
    });
    this.cached = own;
    return own;
  }

  async identity(): Promise<OwnIdentity> {
    if (this.cached) return this.cached;
    const own = await readJson<OwnIdentity>(this.ctx.store, K.identity);
    if (!own) throw new Error('keystore: no identity yet (bootstrap first)');
    this.cached = own;
    return own;
  }

  async local(): Promise<PqxdhLocalIdentity> {
    const own = await this.identity();
    return { userId: own.userId, deviceId: own.deviceId, identityKey: own.identity };
  }

  /** Signs the next version of our device list with `certificate` added (linking a device). */
  async addDeviceToList(certificate: DeviceCertificate): Promise<Uint8Array> {
    const own = await this.identity();
    const cur = decodeDeviceList(own.deviceList);
    const devices = [...cur.devices.filter((d) => d.deviceId !== certificate.deviceId), certificate];
    const next = await signDeviceList(this.ctx.curves, own.userIdentity, {
      userId: own.userId,
      version: cur.version + 1,
      devices,
    });
    return this.setDeviceList(encodeDeviceList(next));
  }

  /** Signs the next version of our device list without `deviceId` (revoking a device; publish the result). */
  async removeDeviceFromList(deviceId: string): Promise<Uint8Array> {
    const own = await this.identity();
    if (deviceId === own.deviceId) throw new Error('keystore: a device cannot remove itself from the list');
    const cur = decodeDeviceList(own.deviceList);
    const next = await signDeviceList(this.ctx.curves, own.userIdentity, {
      userId: own.userId,
      version: cur.version + 1,
      devices: cur.devices.filter((d) => d.deviceId !== deviceId),
    });
    return this.setDeviceList(encodeDeviceList(next));
  }

  /**
   * Our list without this device, signed (version + 1) and NOT adopted: for a device that leaves the account
   * and whose store is then erased (a link attempt that failed after the server registered it).
   */
  async listWithoutThisDevice(): Promise<Uint8Array> {
    const own = await this.identity();
    const cur = decodeDeviceList(own.deviceList);
    const next = await signDeviceList(this.ctx.curves, own.userIdentity, {
      userId: own.userId,
      version: cur.version + 1,
      devices: cur.devices.filter((d) => d.deviceId !== own.deviceId),
    });
    return encodeDeviceList(next);
  }

  /**
   * Adopts our user's list as the server holds it (after another device changed it, or a change we signed
   * was refused): only a list that verifies under OUR user identity key and still contains this device.
   */
  async adoptDeviceList(bytes: Uint8Array): Promise<Uint8Array> {
    const own = await this.identity();
    const list = await verifyDeviceList(this.ctx.curves, decodeDeviceList(bytes), own.userIdentity.publicKey);
    if (list.userId !== own.userId || !list.devices.some((d) => d.deviceId === own.deviceId)) {
      throw new Error('keystore: that device list is not for this device');
    }
    return this.setDeviceList(bytes);
  }

  /** Records our user's current device list (after it was published or fetched and verified). */
  async setDeviceList(list: Uint8Array): Promise<Uint8Array> {
    const own = { ...(await this.identity()), deviceList: list };
    await putJson(this.ctx.store, K.identity, own);
    this.cached = own;
    return list;
  }

  /**
   * Prekey maintenance: rotate the signed prekey when due, top up one-time EC / ML-KEM prekeys below the
   * watermark, make sure a last-resort ML-KEM prekey exists. Private halves are stored first; then one
   * upload. Returns the server's counts after the upload (or the counts it was given if nothing was due).
   */
  async maintain(api: ServerApi, known?: PrekeyCounts): Promise<PrekeyCounts> {
    // Under one lock across tabs: two runs reading the same `meta` would mint the same prekey ids with
    // different keys, and the second upload would overwrite private halves the server hands out.
    return this.ctx.locks.request(MAINTENANCE_LOCK, async () => {
      this.consumedSinceMaintenance = false;
      const counts = known ?? (await api.prekeyCounts());
      const upload = await this.prepareUpload(counts);
      return upload ? api.uploadPrekeys(upload) : counts;
    });
  }

  /** True (once) if a new session consumed one of our one-time prekeys since the last maintenance run. */
  takeConsumed(): boolean {
    const c = this.consumedSinceMaintenance;
    this.consumedSinceMaintenance = false;
    return c;
  }

  /** Generates and persists whatever is due; returns the encoded upload, or null if nothing is. */
  async prepareUpload(counts: PrekeyCounts): Promise<Uint8Array | null> {
    const { curves, rng, now, store } = this.ctx;
    const own = await this.identity();
    const meta = (await readJson<KeyMeta>(store, K.meta))!;
    const t = now();
    const rotate =
      meta.currentSpkId === null || !counts.signedPrekey || t - meta.spkCreatedAt >= this.config.spkRotationMs;
    const needLastResort = meta.lastResortKemId === null;
    // One upload carries at most MAX_*_PER_UPLOAD keys of a kind, the last-resort KEM key included.
    const otpCount = Math.min(
      counts.oneTime < this.config.watermark ? this.config.batch - counts.oneTime : 0,
      constants.MAX_ONE_TIME_PREKEYS_PER_UPLOAD,
    );
    const kemCount = Math.min(
      counts.kem < this.config.watermark ? this.config.batch - counts.kem : 0,
      constants.MAX_KEM_PREKEYS_PER_UPLOAD - (needLastResort ? 1 : 0),
    );
    if (!rotate && otpCount <= 0 && kemCount <= 0 && !needLastResort) return null;

    const spk = rotate ? await generateSignedPrekey(curves, rng, own.signing, meta.nextSpkId) : null;
    const otps: OneTimePrekeyRecord[] =
      otpCount > 0 ? await generateOneTimePrekeys(curves, rng, meta.nextOtpId, otpCount) : [];
    const kems: KemPrekeyRecord[] = [];
    let kemId = meta.nextKemId;
    for (let i = 0; i < Math.max(0, kemCount); i++)
      kems.push(await generateKemPrekey(curves, rng, own.signing, kemId++, false));
    const lastResort = needLastResort ? await generateKemPrekey(curves, rng, own.signing, kemId++, true) : null;

    await store.transaction(async (tx) => {
      const m = (await readJson<KeyMeta>(tx, K.meta))!;
      if (spk) {
        for (const { key, value } of await listJson<StoredSpk>(tx, K.spkDir)) {
          if (value.retiredAt === null) writeJson(tx, key, { ...value, retiredAt: t });
          else if (t - value.retiredAt > this.config.spkGraceMs) tx.delete(key);
        }
        writeJson(tx, K.spk(spk.id), { ...spk, createdAt: t, retiredAt: null } satisfies StoredSpk);
        m.currentSpkId = spk.id;
        m.spkCreatedAt = t;
        m.nextSpkId = spk.id + 1;
      }
      for (const o of otps) writeJson(tx, K.otp(o.id), o);
      for (const k of [...kems, ...(lastResort ? [lastResort] : [])]) writeJson(tx, K.kem(k.id), k);
      if (otps.length) m.nextOtpId = otps[otps.length - 1]!.id + 1;
      m.nextKemId = kemId;
      if (lastResort) m.lastResortKemId = lastResort.id;
      writeJson(tx, K.meta, m);
    });
    return encodePrekeyUpload({
      signedPrekey: spk ? signedPrekeyPublic(spk) : null,
      oneTimePrekeys: otps.map(oneTimePrekeyPublic),
      kemPrekeys: [...kems, ...(lastResort ? [lastResort] : [])].map(kemPrekeyPublic),
    });
  }

  /** Our private prekeys for a PQXDH init, or null if any is unknown (used, expired, never ours). */
  async responderKeys(
    tx: StoreReader,
    ids: { signedPrekeyId: number; oneTimePrekeyId: number | null; kemPrekeyId: number },
  ): Promise<PqxdhResponderKeys | null> {
    const spk = await readJson<StoredSpk>(tx, K.spk(ids.signedPrekeyId));
    const kem = await readJson<KemPrekeyRecord>(tx, K.kem(ids.kemPrekeyId));
    const otp =
      ids.oneTimePrekeyId === null ? null : await readJson<OneTimePrekeyRecord>(tx, K.otp(ids.oneTimePrekeyId));
    if (!spk || !kem || (ids.oneTimePrekeyId !== null && !otp)) return null;
    return {
      signedPrekey: spk.keyPair,
      oneTimePrekey: otp ? otp.keyPair : null,
      kemPrekey: kem.keyPair,
      signedPrekeyId: spk.id,
      oneTimePrekeyId: ids.oneTimePrekeyId,
      kemPrekeyId: kem.id,
    };
  }

  /**
   * Deletes the private halves of the one-time prekeys a new session used (last-resort ML-KEM is kept), read
   * in the transaction that commits the session: one another session consumed meanwhile (two first messages
   * decrypted side by side, one bundle handed out twice) refuses this one (`prekey_consumed`) — a one-time
   * prekey seeds one session only (PITFALLS 6), whatever the timing.
   */
  async consumeInTx(tx: StoreTx, ids: { oneTimePrekeyId: number | null; kemPrekeyId: number | null }): Promise<void> {
    this.consumedSinceMaintenance = true;
    if (ids.oneTimePrekeyId !== null) {
      if (!(await tx.get(K.otp(ids.oneTimePrekeyId))))
        throw new EngineError('prekey_consumed', 'this one-time prekey was used by another session');
      tx.delete(K.otp(ids.oneTimePrekeyId));
    }
    if (ids.kemPrekeyId !== null) {
      const kem = await readJson<KemPrekeyRecord>(tx, K.kem(ids.kemPrekeyId));
      if (!kem) throw new EngineError('prekey_consumed', 'this ML-KEM prekey was used by another session');
      if (!kem.lastResort) tx.delete(K.kem(ids.kemPrekeyId));
    }
  }

  /** For tests and diagnostics: which private prekeys are held. */
  async held(): Promise<{ oneTime: number[]; kem: number[]; signed: number[] }> {
    const ids = async (dir: string) => (await this.ctx.store.list(dir)).map((e) => Number(e.key.slice(dir.length)));
    return { oneTime: await ids('ks/otp/'), kem: await ids('ks/kem/'), signed: await ids(K.spkDir) };
  }
}
