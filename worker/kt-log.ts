/**
 * KeyLogDO — the key-transparency log (docs/PROTOCOL.md §"Key transparency", docs/ARCHITECTURE.md §"Key
 * transparency log"): one object (`idFromName('kt-log')`), the log's single writer.
 *
 * Responsibilities:
 *  - append entries for registrations, identity resets and account deletions (`append`): each call is
 *    queued and the queue is committed by a zero-delay timer (or at once when `commitBatchMax` are
 *    waiting) in ONE SQLite transaction (kt/store.ts), so a burst of registrations costs one commit; a call
 *    resolves only after that commit (nothing is acknowledged before it is durable). Version rules per
 *    user: a key entry's version must be above the user's latest (a retry of an existing one is answered as a
 *    duplicate with its index); nothing follows a deletion. The log sets each entry's time;
 *  - publish signed tree heads (size, root, time) with the server log key: the alarm signs one
 *    `headIntervalMs` after entries were committed, and a reader is never given a head older than
 *    `headIntervalMs` or one that does not cover the entry it asked about (signed on demand);
 *  - answer proofs: a user's latest entry with its inclusion proof against a fresh head (`proveLatest`,
 *    which also appends the entry D1 says the user has if the log is behind — e.g. an append lost to a
 *    crash after the registration committed), consistency proofs between sizes, pages of heads (auditors);
 *  - on an account deletion, append a tombstone and erase the stored bytes of the user's earlier entries
 *    (their leaf hashes stay: every proof and every head still verifies, nothing personal is served).
 * Restart-safe: everything is in SQLite; the frontier is rebuilt from the stored nodes on start; a batch is
 * all or nothing.
 *
 * Does NOT: authenticate or rate-limit (the Worker does before calling), look at D1, or decide whether a
 * client trusts a key (clients verify every proof themselves).
 */
import { DurableObject } from 'cloudflare:workers';
import { z } from 'zod';
import { fromB64u, toB64u } from '../web/src/protocol/bytes.js';
import { ed25519FromSecret, type OurEd25519KeyPair } from '../web/src/protocol/keys.js';
import { defaultCurves } from '../web/src/protocol/primitives.js';
import { decodeKtEntry, encodeKtEntry, ktLeafHash, signTreeHead } from '../web/src/protocol/transparency.js';
import type { Env } from './env.js';
import { KtStore, type NewEntry, type KtStore as Store } from './kt/store.js';
import { log } from './log.js';
import { ConfigError } from './secrets.js';

export const KT_DEFAULTS = {
  /**
   * How often the log signs a head while entries arrive, and the oldest head a reader is given. Clients
   * see a new key at most this long after it was logged; each head costs one signature (~0.3 ms) and one row.
   */
  headIntervalMs: 5_000,
  /** Most appends one commit takes: a registration burst shares one transaction; the cap bounds its size. */
  commitBatchMax: 256,
  /** Heads per page of GET /api/kt/heads. */
  headsPageMax: 1_000,
} as const;
export type KtConfig = { -readonly [K in keyof typeof KT_DEFAULTS]: number };

const configSchema = z
  .object({
    headIntervalMs: z.number().int().min(1).max(3_600_000),
    commitBatchMax: z.number().int().min(1).max(10_000),
    headsPageMax: z.number().int().min(1).max(10_000),
  })
  .partial();

/** KT_CONFIG (JSON overrides of KT_DEFAULTS); an invalid value is a deployment error. */
export function ktConfig(json: string | undefined): KtConfig {
  if (!json) return { ...KT_DEFAULTS };
  const parsed = configSchema.safeParse(JSON.parse(json));
  if (!parsed.success) throw new ConfigError('KT_CONFIG is not valid JSON of KT_DEFAULTS overrides');
  return { ...KT_DEFAULTS, ...parsed.data };
}

/** What the Worker asks the log to record. The log chooses the time (and a deletion's version). */
export type KtAppend =
  | { kind: 'key'; userId: string; version: number; username: string; identityKey: Uint8Array }
  | { kind: 'deleted'; userId: string };

export type KtAppendResult =
  | { ok: true; index: number; version: number; duplicate: boolean }
  | { ok: false; reason: 'stale_version' | 'conflict' | 'deleted' | 'invalid' };

/** A user's latest entry, proven: the encoded entry, its leaf index, the signed head and the inclusion proof. */
export interface KtProof {
  entry: Uint8Array;
  index: number;
  head: Uint8Array;
  proof: Uint8Array[];
}

/** A user's newest entry: stored (`index`) or earlier in the batch being committed (`fresh`). */
interface Latest {
  version: number;
  kind: 'key' | 'deleted';
  entry: Uint8Array | null;
  index: number | null;
  fresh: number | null;
}

type AppendRow =
  | { kind: 'key'; userId: string; version: number; username: string; identityKey: Uint8Array }
  | { kind: 'deleted'; userId: string; version: number };

const equalBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

interface Queued {
  spec: KtAppend;
  resolve: (r: KtAppendResult) => void;
  reject: (e: unknown) => void;
}

/** The log's Ed25519 key from KT_LOG_SIGNING_KEY (and, when set, checked against KT_LOG_PUBLIC_KEY). */
export async function logSigningKey(env: Pick<Env, 'KT_LOG_SIGNING_KEY' | 'KT_LOG_PUBLIC_KEY'>) {
  let seed: Uint8Array;
  try {
    seed = fromB64u(env.KT_LOG_SIGNING_KEY ?? '');
  } catch {
    throw new ConfigError('KT_LOG_SIGNING_KEY is not base64url');
  }
  if (seed.length !== 32) throw new ConfigError('KT_LOG_SIGNING_KEY must be a 32-byte Ed25519 seed');
  const key = await ed25519FromSecret(await defaultCurves(), seed);
  if (env.KT_LOG_PUBLIC_KEY && env.KT_LOG_PUBLIC_KEY !== toB64u(key.publicKey))
    throw new ConfigError('KT_LOG_PUBLIC_KEY does not belong to KT_LOG_SIGNING_KEY');
  return key;
}

export class KeyLogDO extends DurableObject<Env> {
  private readonly store: Store;
  private readonly cfg: KtConfig;
  private queue: Queued[] = [];
  private drainScheduled = false;
  private alarmSet = false;
  private key: Promise<OurEd25519KeyPair> | null = null;
  private signing: Promise<{ size: number; head: Uint8Array }> | null = null;
  private commits = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.cfg = ktConfig(env.KT_CONFIG);
    this.store = new KtStore(ctx.storage);
    void ctx.blockConcurrencyWhile(async () => {
      this.store.init();
      this.alarmSet = (await ctx.storage.getAlarm()) !== null;
    });
  }

  // ---- appends (group commit) ------------------------------------------------------------------------------

  append(specs: KtAppend[]): Promise<KtAppendResult[]> {
    const out = Promise.all(
      specs.map((spec) => new Promise<KtAppendResult>((resolve, reject) => this.queue.push({ spec, resolve, reject }))),
    );
    if (this.queue.length >= this.cfg.commitBatchMax) this.drain();
    else if (!this.drainScheduled) {
      this.drainScheduled = true;
      setTimeout(() => {
        this.drainScheduled = false;
        this.drain();
      }, 0);
    }
    return out;
  }

  /** Commits up to commitBatchMax queued appends in one transaction; re-arms itself while more wait. */
  private drain(): void {
    const batch = this.queue.splice(0, this.cfg.commitBatchMax);
    if (batch.length === 0) return;
    const now = Date.now();
    const fresh: NewEntry[] = [];
    /** Per queued append: a final result, or the position in `fresh` whose index it gets after the commit. */
    const outcome: (KtAppendResult | { fresh: number; duplicate: boolean })[] = [];
    const pending = new Map<string, Latest>();
    for (const q of batch) {
      const r = this.check(q.spec, pending);
      if ('result' in r) {
        outcome.push(r.result);
      } else if ('sameAs' in r) {
        outcome.push({ fresh: r.sameAs, duplicate: true });
      } else {
        let entry: Uint8Array;
        try {
          entry = encodeKtEntry({ ...r.append, time: now });
        } catch {
          outcome.push({ ok: false, reason: 'invalid' }); // e.g. a username or user id out of bounds
          continue;
        }
        const at = fresh.push({ ...r.append, time: now, entry, leafHash: ktLeafHash(entry) }) - 1;
        pending.set(q.spec.userId, { version: r.append.version, kind: r.append.kind, entry, index: null, fresh: at });
        outcome.push({ fresh: at, duplicate: false });
      }
    }
    try {
      const indices = fresh.length ? this.store.appendBatch(fresh) : [];
      if (fresh.length) {
        this.commits++;
        this.scheduleHead();
      }
      batch.forEach((q, i) => {
        const o = outcome[i]!;
        q.resolve(
          'fresh' in o
            ? { ok: true, index: indices[o.fresh]!, version: fresh[o.fresh]!.version, duplicate: o.duplicate }
            : o,
        );
      });
    } catch (err) {
      log('error', 'kt_append_failed', { type: err instanceof Error ? err.name : 'unknown', entries: batch.length });
      for (const q of batch) q.reject(new Error('kt append failed'));
    }
    if (this.queue.length) this.drain();
  }

  /** Applies the version rules to one append against the log and the batch so far. */
  private check(
    spec: KtAppend,
    pending: Map<string, Latest>,
  ): { append: AppendRow } | { result: KtAppendResult } | { sameAs: number } {
    const stored = this.store.latestFor(spec.userId);
    const latest: Latest | null =
      pending.get(spec.userId) ??
      (stored
        ? { version: stored.version, kind: stored.kind, entry: stored.entry, index: stored.idx, fresh: null }
        : null);
    const same = (l: Latest) =>
      l.fresh !== null
        ? { sameAs: l.fresh }
        : { result: { ok: true, index: l.index!, version: l.version, duplicate: true } as KtAppendResult };
    if (spec.kind === 'deleted') {
      if (latest?.kind === 'deleted') return same(latest);
      return { append: { kind: 'deleted', userId: spec.userId, version: (latest?.version ?? 0) + 1 } };
    }
    if (!Number.isInteger(spec.version) || spec.version < 1 || spec.version > 0xffffffff)
      return { result: { ok: false, reason: 'invalid' } };
    if (latest?.kind === 'deleted') return { result: { ok: false, reason: 'deleted' } };
    if (!latest || spec.version > latest.version) return { append: { ...spec } };
    let prior: Latest | null = latest;
    if (spec.version < latest.version) {
      const e = this.store.entryFor(spec.userId, spec.version);
      prior = e ? { version: e.version, kind: e.kind, entry: e.entry, index: e.idx, fresh: null } : null;
    }
    if (!prior) return { result: { ok: false, reason: 'stale_version' } };
    const e = prior.entry ? decodeKtEntry(prior.entry) : null;
    const identical = e?.kind === 'key' && e.username === spec.username && equalBytes(e.identityKey, spec.identityKey);
    return identical ? same(prior) : { result: { ok: false, reason: 'conflict' } };
  }

  // ---- heads --------------------------------------------------------------------------------------------------

  private scheduleHead(): void {
    if (this.alarmSet) return;
    this.alarmSet = true;
    void this.ctx.storage.setAlarm(Date.now() + this.cfg.headIntervalMs);
  }

  override async alarm(): Promise<void> {
    this.alarmSet = false;
    const latest = this.store.latestHead();
    if (!latest || latest.size < this.store.treeSize) await this.signHead();
  }

  /** Signs a head over the tree as it stands now (one signing at a time; callers share it). */
  private signHead(): Promise<{ size: number; head: Uint8Array }> {
    this.signing ??= (async () => {
      try {
        this.key ??= logSigningKey(this.env);
        const key = await this.key.catch((e) => {
          this.key = null;
          throw e;
        });
        const size = this.store.treeSize;
        const root = this.store.root();
        const time = Math.max(Date.now(), (this.store.latestHead()?.time ?? 0) + 1);
        const head = await signTreeHead(await defaultCurves(), key, { size, root, time });
        this.store.putHead(size, time, head);
        return { size, head };
      } finally {
        this.signing = null;
      }
    })();
    return this.signing;
  }

  /** A head no older than headIntervalMs that covers at least `minSize` entries. */
  private async freshHead(minSize = 0): Promise<{ size: number; head: Uint8Array }> {
    const latest = this.store.latestHead();
    if (latest && latest.size >= minSize && Date.now() - latest.time < this.cfg.headIntervalMs)
      return { size: latest.size, head: latest.head };
    const signed = await this.signHead();
    return signed.size >= minSize ? signed : this.signHead();
  }

  /** The newest signed head (signed now if the last one is older than headIntervalMs). */
  async head(): Promise<Uint8Array> {
    return (await this.freshHead()).head;
  }

  /** Heads with size > `afterSize`, oldest first (for auditors). */
  heads(afterSize: number, limit: number): Uint8Array[] {
    return this.store.heads(Math.max(0, Math.floor(afterSize)), Math.max(1, Math.min(limit, this.cfg.headsPageMax)));
  }

  /** RFC 9162 consistency proof between two sizes the log has reached; null if out of range. */
  consistency(size1: number, size2: number): Uint8Array[] | null {
    if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2)) return null;
    if (size1 < 1 || size1 > size2 || size2 > this.store.treeSize) return null;
    return this.store.consistencyProof(size1, size2);
  }

  // ---- proofs -----------------------------------------------------------------------------------------------------

  /**
   * The latest entry of `userId` with its inclusion proof against a fresh head. `expect` is what D1 says
   * the user's current key is: if the log has no entry of that version yet, it is appended first (a lost
   * append heals here). Null when the log has nothing provable for the user (unknown, or deleted and erased).
   */
  async proveLatest(userId: string, expect?: KtAppend): Promise<KtProof | null> {
    let latest = this.store.latestFor(userId);
    if (expect && expect.kind === 'key' && (!latest || latest.version < expect.version)) {
      const [r] = await this.append([expect]);
      if (!r?.ok) log('error', 'kt_heal_refused', { reason: r?.ok === false ? r.reason : 'unknown' });
      latest = this.store.latestFor(userId);
    }
    if (!latest?.entry) return null;
    const { size, head } = await this.freshHead(latest.idx + 1);
    return { entry: latest.entry, index: latest.idx, head, proof: this.store.inclusionProof(latest.idx, size) };
  }

  /** Account deletion: a tombstone, then the user's earlier entries' bytes are erased (hashes stay). */
  async recordDeletion(userId: string): Promise<KtAppendResult> {
    const [r] = await this.append([{ kind: 'deleted', userId }]);
    if (r?.ok) this.store.eraseKeyEntries(userId);
    // The tombstone itself names only the user id and a version: it stays provable.
    return r!;
  }

  /** For tests and the benchmark: tree size, commits since start, the newest head's size, SQLite bytes. */
  stats(): { size: number; commits: number; latestHeadSize: number | null; databaseBytes: number } {
    return {
      size: this.store.treeSize,
      commits: this.commits,
      latestHeadSize: this.store.latestHead()?.size ?? null,
      databaseBytes: this.ctx.storage.sql.databaseSize,
    };
  }
}
