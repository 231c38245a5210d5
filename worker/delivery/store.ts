/**
 * The ConversationDO's own SQLite store: the ordered message log, the per-device delivery state (pairwise
 * envelopes, group ack cursors, recipient-set epochs) and the acknowledgements still to be applied to D1.
 *
 * Responsibilities: assign `seq`/`ts` in the SAME transaction that persists a message (so the counter
 * survives evictions and is gap-free), answer idempotent retries with the original seq, derive a device's
 * pending envelopes, hand out outbox batches for the D1 flush, prune what is older than the retention, and
 * drop every envelope older than the conversation's disappearing-message timer (expire).
 * Does NOT: talk to D1 or to sockets, check membership, or see plaintext (every `c` is ciphertext bytes).
 *
 * A sender-key (group) message costs ONE row: its log row (ciphertext, epoch). Who it is for is its
 * recipient-set epoch (every live device of every member when it was sent, stored once per change of that
 * set) minus the sending device; what a device still has to receive is "group messages after its ack
 * cursor whose epoch contains it". A pairwise message to ONE device (a 1:1 conversation's every message) is
 * one log row too: its ciphertext and that device (`dest`), pending for it while after its ack cursor —
 * as a group message is. A pairwise message to several devices keeps one row per recipient device (each
 * has its own ciphertext), deleted when that device acks.
 *
 * Tables (all SQL below uses bound parameters; multi-row statements only repeat `(?,?,?,?)` placeholders):
 *   state          one row: conversation id, last seq and ts (a copy written by prune: the live value is the
 *                  log's newest row), pruned-through seq, group-flushed-through seq (every group message ≤ it
 *                  has been copied to D1 for the devices behind then),
 *                  events-through seq (webhook `message.created` events are queued for every message ≤ it),
 *                  the disappearing-message timer (ms, 0 = off), expired-through seq (every envelope ≤ it
 *                  was older than the timer and is gone here) and whether D1 still has to follow (issue 17)
 *   log            one row per message: seq, ts, sender, client id, kind/status, sender-key ciphertext and
 *                  epoch (group), or the one recipient's ciphertext in `group_c` and its device key in
 *                  `dest` (pairwise to one device: "direct"), or NULL, NULL (pairwise to several); for a
 *                  pairwise message the recipient user ids (`rcpt`, space-separated, the sender's own
 *                  account left out) for its webhook event
 *   epochs         one row per recipient set: epoch id, first seq it applies to
 *   epoch_devices  (epoch, user, device): the devices of an epoch; a revoked device's rows are deleted
 *   cursors        (user, device) → acked_through: the device processed every envelope ≤ it
 *   pairwise       one row per (recipient device, seq) of a pairwise message to several devices: its ciphertext, flush state
 *                  0 = only here, 2 = being copied to D1, 1 = also in D1; deleted when the device acks
 *   pending_acks   highest acked seq per device whose envelopes may already be in D1
 *   deliveries     (VIEW) what the D1 flush still has to look at: pairwise rows with their flush state and
 *                  one row (flushed = 0) per group or direct message not yet flushed — for inspection and tests
 */
import { deviceKey } from './device-set.js';

export interface AppendInput {
  senderUser: string;
  senderDevice: string;
  clientId: string;
  kind: 'message' | 'receipt';
  status: 'delivered' | 'read' | null;
  /** Sender-key ciphertext and its recipient-set epoch (group), or null (pairwise: `recipients`). */
  group: { c: Uint8Array; epoch: number } | null;
  /** Pairwise recipients, each with its own ciphertext (empty for a group message). */
  recipients: { u: string; d: string; c: Uint8Array }[];
  /** Pairwise `message`s: the recipient user ids other than the sender's (webhook audience), or null. */
  rcpt?: string | null;
}

export interface AppendResult {
  seq: number;
  ts: number;
  duplicate: boolean;
}

export interface ReplayRow {
  seq: number;
  ts: number;
  sender_user: string;
  sender_device: string;
  client_id: string;
  kind: 'message' | 'receipt';
  status: 'delivered' | 'read' | null;
  c: ArrayBuffer | null;
  /** 1 when `c` is the message's sender-key ciphertext, 0 when it is this device's pairwise one. */
  grp: number;
}

export interface OutboxRow {
  seq: number;
  user_id: string;
  device_id: string;
  ts: number;
  sender_user: string;
  sender_device: string;
  client_id: string;
  kind: 'message' | 'receipt';
  status: 'delivered' | 'read' | null;
  /** Pairwise ciphertext, or null for a group message (its ciphertext is in `groups`). */
  c: ArrayBuffer | null;
}

export interface OutboxBatch {
  rows: OutboxRow[];
  groups: { seq: number; ts: number; c: ArrayBuffer }[];
  /** True when the batch stopped at a size limit and more rows are waiting. */
  more: boolean;
}

/** What a `message.created` event is built from. */
export interface EventRow {
  seq: number;
  ts: number;
  sender_user: string;
  sender_device: string;
  /** Group message: its recipient-set epoch (the audience); pairwise: null. */
  epoch: number | null;
  /** Pairwise message: recipient user ids other than the sender's, space-separated; group: null. */
  rcpt: string | null;
}

export interface PendingAck {
  user_id: string;
  device_id: string;
  up_to: number;
}

export interface StoreState {
  conversationId: string | null;
  lastSeq: number;
  lastTs: number;
  prunedThrough: number;
}

/** A recipient-set epoch: its id and its devices as `deviceKey`s (user "\n" device). */
export interface Epoch {
  id: number;
  /** Sorted device keys joined by "\t": equal sets have equal keys. */
  key: string;
  devices: Set<string>;
}

/** DO SQLite allows 100 bound parameters per statement; log rows have 11, pairwise 4, epoch_devices 3. */
const LOG_ROWS_PER_INSERT = 9;
const PAIRWISE_ROWS_PER_INSERT = 25;
const EPOCH_ROWS_PER_INSERT = 33;
/** Client ids looked up per statement by findDuplicates (plus the sender's user and device). */
const DUP_IDS_PER_QUERY = 98;
/**
 * Client ids a sender device's in-memory id set holds at most (appendBatch's duplicate check): past it the
 * device's sends are looked up in the log again (until a prune shrinks the log). 4,096 ids of ≤ 64 chars
 * per device is under 0.5 MB; the log keeps a day (DELIVERY_DEFAULTS.logRetentionMs).
 */
export const KNOWN_IDS_PER_DEVICE = 4_096;
/** Cap on ciphertext bytes held in memory by one outbox batch (DO isolate memory is 128 MB). */
const OUTBOX_BATCH_BYTES = 8 * 1024 * 1024;
/** Group messages looked at per outbox batch (most need no D1 row: every recipient acked in time). */
const GROUP_SCAN_PER_BATCH = 5_000;

type Row = Record<string, SqlStorageValue>;

const NO_RECIPIENTS: AppendInput['recipients'] = [];

const LOG_INSERT =
  'INSERT INTO log (seq, ts, sender_user, sender_device, client_id, kind, status, group_c, epoch, rcpt, dest) VALUES ';
const LOG_TUPLE = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), ';
const LOG_TUPLE_LAST = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';
const PW_INSERT = 'INSERT INTO pairwise (user_id, device_id, seq, c) VALUES ';
const PW_TUPLE = '(?, ?, ?, ?), ';
const PW_TUPLE_LAST = '(?, ?, ?, ?)';

/** The multi-row INSERT texts by row count (built once each). */
const LOG_INSERTS = Array.from({ length: LOG_ROWS_PER_INSERT + 1 }, (_, n) =>
  n === 0 ? '' : `${LOG_INSERT}${LOG_TUPLE.repeat(n - 1)}${LOG_TUPLE_LAST}`,
);
const PW_INSERTS = Array.from({ length: PAIRWISE_ROWS_PER_INSERT + 1 }, (_, n) =>
  n === 0 ? '' : `${PW_INSERT}${PW_TUPLE.repeat(n - 1)}${PW_TUPLE_LAST}`,
);
function logInsert(rows: number): string {
  return LOG_INSERTS[rows]!;
}
function pairwiseInsert(rows: number): string {
  return PW_INSERTS[rows]!;
}

/** SQLite BLOB parameter: the exact bytes of the view as an ArrayBuffer. */
function blob(b: Uint8Array | null): ArrayBuffer | null {
  if (b === null) return null;
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer) return b.buffer;
  return b.slice().buffer as ArrayBuffer;
}

/** Same key as device-set.ts `deviceKey`: the DO compares socket keys with epoch members. */
const keyOf = deviceKey;
/** A send's key: its sender device and client id (the log's unique index). */
const sendKey = (u: string, d: string, clientId: string) => `${keyOf(u, d)}\n${clientId}`;

export class DeliveryStore {
  private readonly sql: SqlStorage;
  /** Cached copies of rows that change only here (the object is the only writer of its storage). */
  private lastSeqCache: number | null = null;
  /** The last seq and ts (appendBatch reads them once, then keeps them: it is their only writer). */
  private lastCache: { seq: number; ts: number } | null = null;
  private latestEpoch: Epoch | null | undefined = undefined;
  private readonly epochCache = new Map<number, Set<string>>();
  /** Group messages ≤ this are being copied to D1 by the flush in progress (null: none). */
  private groupInFlight: number | null = null;
  /**
   * Per sender device (`deviceKey`): a set holding every client id the log has for it (a superset: pruned
   * ids may stay), so an id not in it is certainly new and appendBatch needs no duplicate SELECT; `null`
   * once it outgrew `knownIdsCap` (the log is asked again). Absent: not loaded since this object started
   * (a wake from hibernation starts with none). Loaded from the log with one query the first time a batch
   * holds a send of that device; only appendBatch adds to it, after its transaction held.
   */
  private readonly knownIds = new Map<string, Set<string> | null>();

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly knownIdsCap: number = KNOWN_IDS_PER_DEVICE,
  ) {
    this.sql = storage.sql;
  }

  /** Creates (or upgrades) the tables; returns rows interrupted mid-flush (state 2) to the outbox. Idempotent. */
  init(): void {
    this.lastSeqCache = null;
    this.lastCache = null;
    this.knownIds.clear();
    // Storage may have been erased (ConversationDO.erase): nothing cached from it survives.
    this.latestEpoch = undefined;
    this.epochCache.clear();
    this.groupInFlight = null;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS state (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      conversation_id TEXT,
      last_seq INTEGER NOT NULL,
      last_ts INTEGER NOT NULL,
      pruned_through INTEGER NOT NULL DEFAULT 0,
      group_flushed INTEGER NOT NULL DEFAULT 0,
      events_through INTEGER NOT NULL DEFAULT 0)`);
    this.sql.exec('INSERT OR IGNORE INTO state (id, conversation_id, last_seq, last_ts) VALUES (1, NULL, 0, 0)');
    this.sql.exec(`CREATE TABLE IF NOT EXISTS log (
      seq INTEGER PRIMARY KEY,
      ts INTEGER NOT NULL,
      sender_user TEXT NOT NULL,
      sender_device TEXT NOT NULL,
      client_id TEXT NOT NULL,
      kind TEXT NOT NULL,
      status TEXT,
      group_c BLOB,
      epoch INTEGER,
      rcpt TEXT,
      dest TEXT)`);
    this.sql.exec('CREATE UNIQUE INDEX IF NOT EXISTS log_client_uq ON log (sender_user, sender_device, client_id)');
    // Storage written before epochs existed (local development only; nothing was deployed): upgrade it.
    const old = this.sql
      .exec<{ type: string }>("SELECT type FROM sqlite_master WHERE name = 'deliveries'")
      .toArray()[0]?.type;
    if (old === 'table') {
      this.sql.exec('ALTER TABLE deliveries RENAME TO pairwise');
      this.sql.exec('DROP INDEX IF EXISTS deliveries_outbox_idx');
      for (const alter of [
        'ALTER TABLE log ADD COLUMN epoch INTEGER',
        'ALTER TABLE state ADD COLUMN group_flushed INTEGER NOT NULL DEFAULT 0',
      ]) {
        try {
          this.sql.exec(alter);
        } catch {
          // column already there
        }
      }
    }
    // Storage written before webhook events (local development only): no events for messages stored then.
    const stateCols = this.sql.exec<{ name: string }>('PRAGMA table_info(state)').toArray();
    if (!stateCols.some((c) => c.name === 'events_through')) {
      this.sql.exec('ALTER TABLE state ADD COLUMN events_through INTEGER NOT NULL DEFAULT 0');
      this.sql.exec('UPDATE state SET events_through = last_seq WHERE id = 1');
    }
    // Storage written before disappearing messages reached the server (issue 17): timer off.
    if (!stateCols.some((c) => c.name === 'timer_ms')) {
      this.sql.exec('ALTER TABLE state ADD COLUMN timer_ms INTEGER NOT NULL DEFAULT 0');
      this.sql.exec('ALTER TABLE state ADD COLUMN expired_through INTEGER NOT NULL DEFAULT 0');
      this.sql.exec('ALTER TABLE state ADD COLUMN expire_d1 INTEGER NOT NULL DEFAULT 0');
    }
    const logCols = this.sql.exec<{ name: string }>('PRAGMA table_info(log)').toArray();
    if (!logCols.some((c) => c.name === 'rcpt')) this.sql.exec('ALTER TABLE log ADD COLUMN rcpt TEXT');
    // Storage written before direct rows: every pairwise message there has its pairwise rows.
    if (!logCols.some((c) => c.name === 'dest')) this.sql.exec('ALTER TABLE log ADD COLUMN dest TEXT');
    // The last seq/ts are the log's newest row; the state row keeps them only for when prune() empties the
    // log (it writes them there first). A per-row trigger kept them in the state row on every insert: one
    // UPDATE per message and one more page per commit (bench:delivery); storage written then drops it.
    this.sql.exec('DROP TRIGGER IF EXISTS log_last');
    this.sql.exec(`CREATE TABLE IF NOT EXISTS epochs (
      epoch INTEGER PRIMARY KEY,
      from_seq INTEGER NOT NULL)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS epoch_devices (
      epoch INTEGER NOT NULL,
      user_id TEXT NOT NULL,
      device_id TEXT NOT NULL,
      PRIMARY KEY (epoch, user_id, device_id)) WITHOUT ROWID`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS cursors (
      user_id TEXT NOT NULL,
      device_id TEXT NOT NULL,
      acked_through INTEGER NOT NULL,
      PRIMARY KEY (user_id, device_id)) WITHOUT ROWID`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS pairwise (
      user_id TEXT NOT NULL,
      device_id TEXT NOT NULL,
      seq INTEGER NOT NULL,
      c BLOB,
      flushed INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (user_id, device_id, seq)) WITHOUT ROWID`);
    this.sql.exec('CREATE INDEX IF NOT EXISTS pairwise_outbox_idx ON pairwise (flushed, seq)');
    this.sql.exec(`CREATE TABLE IF NOT EXISTS pending_acks (
      user_id TEXT NOT NULL,
      device_id TEXT NOT NULL,
      up_to INTEGER NOT NULL,
      PRIMARY KEY (user_id, device_id)) WITHOUT ROWID`);
    // Storage written before direct rows has the view without them: replaced (once).
    const view = this.sql
      .exec<{ sql: string }>("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = 'deliveries'")
      .toArray()[0]?.sql;
    if (view !== undefined && !view.includes('dest')) this.sql.exec('DROP VIEW deliveries');
    this.sql.exec(`CREATE VIEW IF NOT EXISTS deliveries AS
      SELECT user_id, device_id, seq, flushed FROM pairwise
      UNION ALL
      SELECT NULL, NULL, seq, 0 FROM log
      WHERE (epoch IS NOT NULL OR dest IS NOT NULL) AND seq > (SELECT group_flushed FROM state WHERE id = 1)`);
    this.sql.exec('UPDATE pairwise SET flushed = 0 WHERE flushed = 2');
  }

  state(): StoreState {
    const r = this.sql
      .exec<{ conversation_id: string | null; pruned_through: number }>(
        'SELECT conversation_id, pruned_through FROM state WHERE id = 1',
      )
      .one();
    const last = this.readLast();
    this.lastSeqCache = last.seq;
    this.lastCache = last;
    return {
      conversationId: r.conversation_id,
      lastSeq: last.seq,
      lastTs: last.ts,
      prunedThrough: r.pruned_through,
    };
  }

  /**
   * The last assigned seq and its ts: the log's newest row, or the state row's copy when prune() left the
   * log without one as new (prune writes the copy before it deletes; seqs are never reused).
   */
  private readLast(): { seq: number; ts: number } {
    const st = this.sql
      .exec<{ last_seq: number; last_ts: number }>('SELECT last_seq, last_ts FROM state WHERE id = 1')
      .one();
    const newest = this.sql
      .exec<{ seq: number; ts: number }>('SELECT seq, ts FROM log ORDER BY seq DESC LIMIT 1')
      .toArray()[0];
    return newest && newest.seq > st.last_seq ? newest : { seq: st.last_seq, ts: st.last_ts };
  }

  /** The last assigned seq (cached: only appendBatch() changes it). */
  lastSeq(): number {
    return this.lastSeqCache ?? this.state().lastSeq;
  }

  // ---- disappearing messages (issue 17) ------------------------------------------------------------------

  /** The conversation's disappearing-message timer in ms (0: off), as the DO last read it from D1. */
  timerMs(): number {
    return this.sql.exec<{ t: number }>('SELECT timer_ms AS t FROM state WHERE id = 1').one().t;
  }

  /** Records a changed timer; D1 must then be swept once with it (`expireD1Pending`). Returns true if it changed. */
  setTimer(ms: number): boolean {
    if (ms === this.timerMs()) return false;
    this.sql.exec('UPDATE state SET timer_ms = ?, expire_d1 = ? WHERE id = 1', ms, ms > 0 ? 1 : 0);
    return true;
  }

  /**
   * Drops every envelope of a message older than `cutoffTs` (its ts < cutoff): pairwise rows (flushed or
   * not) and sender-key ciphertexts. The log rows stay without ciphertext (seq order, retry detection and
   * webhook events need them; the prune removes them later). Marks D1 for a sweep when anything new expired.
   * Returns the expired-through seq.
   */
  expire(cutoffTs: number): number {
    const st = this.sql.exec<{ e: number }>('SELECT expired_through AS e FROM state WHERE id = 1').one();
    const r = { s: this.lastSeqBefore(cutoffTs, false) };
    if (r.s === null || r.s <= st.e) return st.e;
    const through = r.s;
    this.storage.transactionSync(() => {
      this.sql.exec('DELETE FROM pairwise WHERE seq <= ?', through);
      this.sql.exec('UPDATE log SET group_c = NULL WHERE seq <= ? AND group_c IS NOT NULL', through);
      this.sql.exec('UPDATE state SET expired_through = ?, expire_d1 = 1 WHERE id = 1', through);
    });
    return through;
  }

  /** The seq through which envelopes have expired here (0: none). */
  expiredThrough(): number {
    return this.sql.exec<{ e: number }>('SELECT expired_through AS e FROM state WHERE id = 1').one().e;
  }

  /** True while D1 may still hold envelopes this store has expired (or a changed timer was not applied there). */
  expireD1Pending(): boolean {
    return this.sql.exec<{ p: number }>('SELECT expire_d1 AS p FROM state WHERE id = 1').one().p === 1;
  }

  /** The D1 sweep for `through` succeeded (a later expire() sets the mark again). */
  clearExpireD1(through: number): void {
    this.sql.exec('UPDATE state SET expire_d1 = 0 WHERE id = 1 AND expired_through <= ?', through);
  }

  /** When the next message expires under `timerMs` (its ts + timer), or null when none is waiting. */
  nextExpiryAt(timerMs: number): number | null {
    if (timerMs <= 0) return null;
    const t = this.sql
      .exec<{ t: number }>('SELECT ts AS t FROM log WHERE seq > ? ORDER BY seq LIMIT 1', this.expiredThrough())
      .toArray()[0]?.t;
    return t === undefined ? null : t + timerMs;
  }

  /**
   * The highest logged seq whose ts is < `cutoffTs` (≤ when `inclusive`), or null. ts rises strictly with seq
   * (appendBatch), so this is a binary search over seq by the primary key — O(log n) point reads instead of
   * a scan of the whole log (the alarm asks several times per run, and the log holds a day).
   */
  private lastSeqBefore(cutoffTs: number, inclusive: boolean): number | null {
    const ok = (ts: number) => (inclusive ? ts <= cutoffTs : ts < cutoffTs);
    const edge = (desc: boolean) =>
      this.sql
        .exec<{ seq: number; ts: number }>(
          desc ? 'SELECT seq, ts FROM log ORDER BY seq DESC LIMIT 1' : 'SELECT seq, ts FROM log ORDER BY seq LIMIT 1',
        )
        .toArray()[0];
    const first = edge(false);
    if (first === undefined || !ok(first.ts)) return null;
    const last = edge(true)!;
    if (ok(last.ts)) return last.seq;
    // lo: a logged seq that qualifies; every logged seq ≥ hi does not.
    let lo = first.seq;
    let hi = last.seq;
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      const r = this.sql
        .exec<{ seq: number; ts: number }>('SELECT seq, ts FROM log WHERE seq >= ? ORDER BY seq LIMIT 1', mid)
        .one();
      if (ok(r.ts)) lo = r.seq;
      else hi = mid;
    }
    return lo;
  }

  private groupFlushed(): number {
    return this.sql.exec<{ g: number }>('SELECT group_flushed AS g FROM state WHERE id = 1').one().g;
  }

  setConversationId(id: string): void {
    this.sql.exec('UPDATE state SET conversation_id = ? WHERE id = 1 AND conversation_id IS NULL', id);
  }

  // ---- recipient-set epochs ----------------------------------------------------------------------------

  /** The devices of an epoch (cached; a revoked device leaves every epoch, see forgetDevice). */
  epochDevices(epoch: number): Set<string> {
    let devices = this.epochCache.get(epoch);
    if (!devices) {
      devices = new Set(
        this.sql
          .exec<{ user_id: string; device_id: string }>(
            'SELECT user_id, device_id FROM epoch_devices WHERE epoch = ?',
            epoch,
          )
          .toArray()
          .map((r) => keyOf(r.user_id, r.device_id)),
      );
      this.epochCache.set(epoch, devices);
    }
    return devices;
  }

  /**
   * The epoch for this recipient set (every live device of every current member, as `{u, d}`): the latest
   * one if it has exactly these devices, otherwise a new one (one row plus one row per device, written
   * only when the set changed).
   */
  epochFor(devices: { u: string; d: string }[]): Epoch {
    const keys = devices.map((x) => keyOf(x.u, x.d)).sort();
    const key = keys.join('\t');
    if (this.latestEpoch === undefined) {
      const r = this.sql.exec<{ e: number | null }>('SELECT max(epoch) AS e FROM epochs').one().e;
      if (r === null) this.latestEpoch = null;
      else {
        const set = this.epochDevices(r);
        this.latestEpoch = { id: r, key: [...set].sort().join('\t'), devices: set };
      }
    }
    if (this.latestEpoch && this.latestEpoch.key === key) return this.latestEpoch;
    const id = (this.latestEpoch?.id ?? 0) + 1;
    this.storage.transactionSync(() => {
      this.sql.exec('INSERT INTO epochs (epoch, from_seq) VALUES (?, ?)', id, this.lastSeq() + 1);
      for (let i = 0; i < devices.length; i += EPOCH_ROWS_PER_INSERT) {
        const chunk = devices.slice(i, i + EPOCH_ROWS_PER_INSERT);
        const params: SqlStorageValue[] = [];
        for (const x of chunk) params.push(id, x.u, x.d);
        // sql-interpolation-ok: expands "(?, ?, ?)" placeholders only; every value is bound.
        this.sql.exec(
          `INSERT OR IGNORE INTO epoch_devices (epoch, user_id, device_id) VALUES ${chunk.map(() => '(?, ?, ?)').join(', ')}`,
          ...params,
        );
      }
    });
    const epoch: Epoch = { id, key, devices: new Set(keys) };
    this.epochCache.set(id, epoch.devices);
    this.latestEpoch = epoch;
    return epoch;
  }

  // ---- messages ---------------------------------------------------------------------------------------

  /** The seq/ts a sender device's client id was accepted with, if still in the log. */
  findDuplicate(senderUser: string, senderDevice: string, clientId: string): { seq: number; ts: number } | null {
    const rows = this.sql
      .exec<{ seq: number; ts: number }>(
        'SELECT seq, ts FROM log WHERE sender_user = ? AND sender_device = ? AND client_id = ?',
        senderUser,
        senderDevice,
        clientId,
      )
      .toArray();
    return rows[0] ?? null;
  }

  /**
   * findDuplicate for many sends at once: one statement per sender device (≤ DUP_IDS_PER_QUERY ids each)
   * instead of one per send. Keys are `user\ndevice\nclientId`.
   */
  findDuplicates(
    inputs: readonly { senderUser: string; senderDevice: string; clientId: string }[],
  ): Map<string, { seq: number; ts: number }> {
    const bySender = new Map<string, { u: string; d: string; ids: string[] }>();
    for (const x of inputs) {
      const k = keyOf(x.senderUser, x.senderDevice);
      const g = bySender.get(k);
      if (g) g.ids.push(x.clientId);
      else bySender.set(k, { u: x.senderUser, d: x.senderDevice, ids: [x.clientId] });
    }
    const found = new Map<string, { seq: number; ts: number }>();
    for (const { u, d, ids } of bySender.values()) {
      for (let i = 0; i < ids.length; i += DUP_IDS_PER_QUERY) {
        const chunk = ids.slice(i, i + DUP_IDS_PER_QUERY);
        const rows = this.sql.exec<{ client_id: string; seq: number; ts: number }>(
          // sql-interpolation-ok: repeats a fixed placeholder only; every value is bound.
          `SELECT client_id, seq, ts FROM log WHERE sender_user = ? AND sender_device = ? AND client_id IN (${chunk.map(() => '?').join(', ')})`,
          u,
          d,
          ...chunk,
        );
        for (const r of rows) found.set(sendKey(u, d, r.client_id), { seq: r.seq, ts: r.ts });
      }
    }
    return found;
  }

  /**
   * Persists a batch of messages in ONE transaction (the DO's group commit) — a group message as its log
   * row only, a pairwise one plus one row per recipient device. Each gets the next seq and a strictly
   * increasing ts (max(now, last + 1)), in input order (the last seq/ts are the log's newest row: no state
   * write per batch). A client id already in the log, or earlier in the same batch, returns the original seq/ts
   * with `duplicate` and writes nothing (the log's unique index backs that up: a refused row rolls the
   * whole batch back, so no seq is ever skipped). An id is looked up in the log only when its device's
   * in-memory id set (`knownIds`) cannot prove it new. All or nothing: if any statement throws, nothing of
   * the batch is stored — a batch of one statement needs no savepoint for that (SQLite statements are
   * atomic); more statements run in `transactionSync`.
   */
  appendBatch(inputs: readonly AppendInput[], now: number): AppendResult[] {
    // The last seq/ts are read once per object (a statement per batch cost as much as the log insert).
    const st = this.lastCache ?? this.readLast();
    // Client ids the devices' id sets cannot prove new are looked up in the log at once (one statement per
    // sender device).
    const unsure: AppendInput[] = [];
    for (const input of inputs) {
      const known = this.knownIdsOf(input.senderUser, input.senderDevice);
      if (known === null || known.has(input.clientId)) unsure.push(input);
    }
    const logged = unsure.length > 0 ? this.findDuplicates(unsure) : null;
    let seq = st.seq;
    let ts = st.ts;
    const out: AppendResult[] = [];
    const inBatch = new Map<string, AppendResult>();
    // Statements to run: [text, params] (no closures here: the bundle wraps each in a naming helper per call).
    const texts: string[] = [];
    const statements: SqlStorageValue[][] = [];
    let logParams: SqlStorageValue[] = [];
    let logRows = 0;
    let pwParams: SqlStorageValue[] = [];
    let pwRows = 0;
    for (const input of inputs) {
      const key = sendKey(input.senderUser, input.senderDevice, input.clientId);
      const prior = inBatch.get(key) ?? logged?.get(key) ?? null;
      if (prior) {
        out.push({ seq: prior.seq, ts: prior.ts, duplicate: true });
        continue;
      }
      seq += 1;
      ts = Math.max(now, ts + 1);
      // A pairwise message to one device is a direct row: its ciphertext in the log row, no pairwise row.
      const direct = input.group === null && input.recipients.length === 1 ? input.recipients[0]! : null;
      logParams.push(
        seq,
        ts,
        input.senderUser,
        input.senderDevice,
        input.clientId,
        input.kind,
        input.status,
        input.group ? blob(input.group.c) : direct ? blob(direct.c) : null,
        input.group ? input.group.epoch : null,
        input.rcpt ?? null,
        direct ? keyOf(direct.u, direct.d) : null,
      );
      if (++logRows === LOG_ROWS_PER_INSERT) {
        texts.push(logInsert(logRows));
        statements.push(logParams);
        logParams = [];
        logRows = 0;
      }
      for (const r of direct ? NO_RECIPIENTS : input.recipients) {
        pwParams.push(r.u, r.d, seq, blob(r.c));
        if (++pwRows === PAIRWISE_ROWS_PER_INSERT) {
          texts.push(pairwiseInsert(pwRows));
          statements.push(pwParams);
          pwParams = [];
          pwRows = 0;
        }
      }
      const res = { seq, ts, duplicate: false };
      inBatch.set(key, res);
      out.push(res);
    }
    if (logRows > 0) {
      texts.push(logInsert(logRows));
      statements.push(logParams);
    }
    if (pwRows > 0) {
      texts.push(pairwiseInsert(pwRows));
      statements.push(pwParams);
    }
    try {
      if (texts.length > 1) this.storage.transactionSync(() => this.run(texts, statements));
      else if (texts.length === 1) this.run(texts, statements);
    } catch (err) {
      // Whatever failed (a full disk, a row the log refused), the id sets are loaded again from the log.
      this.knownIds.clear();
      throw err;
    }
    // Only after the statements held: a batch that threw left the row (and so the cache) as it was.
    this.lastSeqCache = seq;
    this.lastCache = { seq, ts };
    for (const [i, input] of inputs.entries()) {
      if (out[i]!.duplicate) continue;
      const k = keyOf(input.senderUser, input.senderDevice);
      const known = this.knownIds.get(k);
      if (!known) continue;
      if (known.size >= this.knownIdsCap) this.knownIds.set(k, null);
      else known.add(input.clientId);
    }
    return out;
  }

  private run(texts: string[], statements: SqlStorageValue[][]): void {
    for (let i = 0; i < texts.length; i++) {
      // sql-interpolation-ok: repeats a fixed placeholder tuple only (logInsert / pairwiseInsert); every value is bound.
      this.sql.exec(texts[i]!, ...statements[i]!);
    }
  }

  /**
   * A sender device's id set (see `knownIds`), loaded from the log on first use: null when the device has
   * more ids in the log than the cap (then every send of it is looked up in the log).
   */
  private knownIdsOf(u: string, d: string): Set<string> | null {
    const k = keyOf(u, d);
    let known = this.knownIds.get(k);
    if (known === undefined) {
      const rows = this.sql
        .exec<{ client_id: string }>(
          'SELECT client_id FROM log WHERE sender_user = ? AND sender_device = ? LIMIT ?',
          u,
          d,
          this.knownIdsCap + 1,
        )
        .toArray();
      known = rows.length > this.knownIdsCap ? null : new Set(rows.map((r) => r.client_id));
      this.knownIds.set(k, known);
    }
    return known;
  }

  // ---- acknowledgements -------------------------------------------------------------------------------

  /** A device's ack cursor: it processed every envelope ≤ it (0 if it never acked). */
  cursor(userId: string, deviceId: string): number {
    const r = this.sql
      .exec<{ a: number }>(
        'SELECT acked_through AS a FROM cursors WHERE user_id = ? AND device_id = ?',
        userId,
        deviceId,
      )
      .toArray();
    return r[0]?.a ?? 0;
  }

  /**
   * A device acknowledged everything up to `upTo` (clamped to the last seq): its pairwise rows are deleted
   * and its cursor raised (one upsert). Returns true when some of those envelopes may already be in D1
   * (flushed or being flushed), i.e. a D1 delete must follow (recorded in pending_acks).
   */
  ack(userId: string, deviceId: string, upTo: number): boolean {
    const through = Math.min(upTo, this.lastSeq());
    if (through <= 0) return false;
    const rows = this.sql
      .exec<{ n: number }>(
        'SELECT count(*) AS n FROM pairwise WHERE user_id = ? AND device_id = ? AND seq <= ? AND flushed != 0',
        userId,
        deviceId,
        through,
      )
      .one();
    this.sql.exec('DELETE FROM pairwise WHERE user_id = ? AND device_id = ? AND seq <= ?', userId, deviceId, through);
    const prev = this.cursor(userId, deviceId);
    if (through > prev) {
      this.sql.exec(
        `INSERT INTO cursors (user_id, device_id, acked_through) VALUES (?, ?, ?)
         ON CONFLICT (user_id, device_id) DO UPDATE SET acked_through = max(acked_through, excluded.acked_through)`,
        userId,
        deviceId,
        through,
      );
    }
    // Group messages in (prev, through] that the flush already expanded may have a D1 row for this device.
    const groupMark = Math.max(this.groupFlushed(), this.groupInFlight ?? 0);
    const inD1 = rows.n > 0 || prev < Math.min(through, groupMark);
    if (inD1) this.addPendingAck(userId, deviceId, through);
    return inD1;
  }

  addPendingAck(userId: string, deviceId: string, upTo: number): void {
    this.sql.exec(
      `INSERT INTO pending_acks (user_id, device_id, up_to) VALUES (?, ?, ?)
       ON CONFLICT (user_id, device_id) DO UPDATE SET up_to = max(up_to, excluded.up_to)`,
      userId,
      deviceId,
      upTo,
    );
  }

  pendingAcks(): PendingAck[] {
    return this.sql.exec<{ user_id: string; device_id: string; up_to: number }>('SELECT * FROM pending_acks').toArray();
  }

  /** Drops applied acks (a larger ack recorded meanwhile stays for the next flush). */
  clearAcks(applied: PendingAck[]): void {
    for (const a of applied) {
      this.sql.exec(
        'DELETE FROM pending_acks WHERE user_id = ? AND device_id = ? AND up_to <= ?',
        a.user_id,
        a.device_id,
        a.up_to,
      );
    }
  }

  /**
   * A device's envelopes after `after`, oldest first (the resume replay): its pairwise rows, the direct
   * messages to it after max(after, its cursor), and the group messages after that whose epoch contains it
   * and that it did not send.
   */
  pendingFor(userId: string, deviceId: string, after: number, limit: number): ReplayRow[] {
    const groupAfter = Math.max(after, this.cursor(userId, deviceId));
    return this.sql
      .exec<Row & ReplayRow>(
        `SELECT * FROM (
           SELECT p.seq AS seq, l.ts AS ts, l.sender_user AS sender_user, l.sender_device AS sender_device,
                  l.client_id AS client_id, l.kind AS kind, l.status AS status,
                  coalesce(p.c, l.group_c) AS c, p.c IS NULL AS grp
           FROM pairwise p JOIN log l ON l.seq = p.seq
           WHERE p.user_id = ? AND p.device_id = ? AND p.seq > ?
           UNION ALL
           SELECT l.seq, l.ts, l.sender_user, l.sender_device, l.client_id, l.kind, l.status, l.group_c, 1
           FROM log l JOIN epoch_devices e ON e.epoch = l.epoch AND e.user_id = ? AND e.device_id = ?
           WHERE l.seq > ? AND l.group_c IS NOT NULL AND NOT (l.sender_user = ? AND l.sender_device = ?)
           UNION ALL
           SELECT seq, ts, sender_user, sender_device, client_id, kind, status, group_c, 0
           FROM log WHERE seq > ? AND dest = ? AND group_c IS NOT NULL
         ) ORDER BY seq LIMIT ?`,
        userId,
        deviceId,
        after,
        userId,
        deviceId,
        groupAfter,
        userId,
        deviceId,
        groupAfter,
        keyOf(userId, deviceId),
        limit,
      )
      .toArray();
  }

  // ---- the D1 outbox ----------------------------------------------------------------------------------

  /**
   * Takes the oldest un-flushed envelopes of messages written at or before `writtenBefore` (whole
   * messages only, ≤ maxRows rows unless one message is larger, ≤ OUTBOX_BATCH_BYTES of ciphertext):
   * pairwise rows, marked in flight (2), and group messages expanded into one row per recipient device
   * still behind its cursor now (most have none left: acked in time, so nothing reaches D1). Younger
   * envelopes wait. Follow with commitOutbox() after D1 accepted them, or releaseOutbox() if it did not.
   *
   * A batch is always a seq PREFIX of what is left, its rows in seq order: pairwise and group/direct
   * messages are taken in one seq-ordered pass that stops at the first message that does not fit. A
   * device reading its D1 mailbox acks what it read, and the flush never copies a message below a
   * device's cursor — so a higher seq in D1 before a lower one would lose the lower one for good.
   */
  takeOutbox(maxRows: number, writtenBefore: number): OutboxBatch {
    const empty: OutboxBatch = { rows: [], groups: [], more: false };
    this.groupInFlight = null;
    // One batch is in flight at a time (the alarm's flush, which commits or releases it): rows still
    // marked by one that failed before either are not in D1.
    this.sql.exec('UPDATE pairwise SET flushed = 0 WHERE flushed = 2');
    const cutoff = this.lastSeqBefore(writtenBefore, true);
    if (cutoff === null) return empty;

    // Pairwise rows, oldest first, read lazily and only as far as one batch can go.
    const cursor = this.sql.exec<Row & OutboxRow>(
      `SELECT p.seq, p.user_id, p.device_id, l.ts, l.sender_user, l.sender_device, l.client_id, l.kind, l.status, p.c
       FROM pairwise p JOIN log l ON l.seq = p.seq
       WHERE p.flushed = 0 AND p.seq <= ? ORDER BY p.seq`,
      cutoff,
    );
    const pairs: OutboxRow[] = [];
    let pairBytes = 0;
    let pairLast = -1;
    let pairsCut = false;
    for (const r of cursor) {
      if (r.seq !== pairLast && (pairs.length >= maxRows || pairBytes >= OUTBOX_BATCH_BYTES)) {
        pairsCut = true;
        break;
      }
      pairLast = r.seq;
      pairBytes += r.c ? r.c.byteLength : 0;
      pairs.push(r);
    }
    // Every pairwise row at or below `bound` is in `pairs`.
    const bound = pairsCut ? pairLast : cutoff;

    // Group and direct messages up to the same bound.
    const mark = this.groupFlushed();
    const msgs = this.sql
      .exec<Omit<ReplayRow, 'c' | 'grp'> & { epoch: number | null; n: number | null; dest: string | null }>(
        `SELECT seq, ts, sender_user, sender_device, client_id, kind, status, epoch, length(group_c) AS n, dest
         FROM log WHERE seq > ? AND seq <= ? AND (epoch IS NOT NULL OR dest IS NOT NULL) ORDER BY seq LIMIT ?`,
        mark,
        bound,
        GROUP_SCAN_PER_BATCH,
      )
      .toArray();
    // Every group/direct message at or below `known` is in `msgs`.
    const scanCut = msgs.length === GROUP_SCAN_PER_BATCH;
    const known = scanCut ? msgs[msgs.length - 1]!.seq : bound;
    const cursors =
      msgs.length === 0
        ? new Map<string, number>()
        : new Map(
            this.sql
              .exec<{ user_id: string; device_id: string; acked_through: number }>('SELECT * FROM cursors')
              .toArray()
              .map((c) => [keyOf(c.user_id, c.device_id), c.acked_through]),
          );

    // One pass in seq order over both, whole messages only.
    const rows: OutboxRow[] = [];
    let bytes = 0;
    let more = pairsCut || scanCut;
    let pairTaken = -1; // the last pairwise seq taken
    let through: number | null = null; // the last group/direct seq taken
    const wanted = new Map<number, number>(); // seq → ts
    const direct: number[] = []; // indexes in `rows` of direct messages' rows
    const legacyGroups = new Set<number>(); // pairwise rows with NULL c: written before epochs existed
    let pi = 0;
    let gi = 0;
    for (;;) {
      const p = pi < pairs.length && pairs[pi]!.seq <= known ? pairs[pi]! : undefined;
      const m = gi < msgs.length ? msgs[gi]! : undefined;
      if (p === undefined && m === undefined) {
        if (pi < pairs.length) more = true; // pairwise rows above the scanned group messages wait
        break;
      }
      if (p !== undefined && (m === undefined || p.seq < m.seq)) {
        if (rows.length > 0 && (rows.length >= maxRows || bytes >= OUTBOX_BATCH_BYTES)) {
          more = true;
          break;
        }
        const seq = p.seq;
        for (; pi < pairs.length && pairs[pi]!.seq === seq; pi++) {
          const r = pairs[pi]!;
          bytes += r.c ? r.c.byteLength : 0;
          if (r.c === null) legacyGroups.add(seq);
          rows.push(r);
        }
        pairTaken = seq;
        continue;
      }
      const g = m!;
      const sender = keyOf(g.sender_user, g.sender_device);
      const behind: string[] = [];
      if (g.dest !== null) {
        if ((cursors.get(g.dest) ?? 0) < g.seq) behind.push(g.dest);
      } else {
        for (const k of this.epochDevices(g.epoch!)) {
          if (k !== sender && (cursors.get(k) ?? 0) < g.seq) behind.push(k);
        }
      }
      if (
        behind.length > 0 &&
        rows.length > 0 &&
        (rows.length + behind.length > maxRows || bytes >= OUTBOX_BATCH_BYTES)
      ) {
        more = true;
        break;
      }
      gi++;
      through = g.seq;
      if (behind.length === 0 || g.n === null) continue; // acked in time, or expired (no ciphertext left)
      if (g.dest === null) wanted.set(g.seq, g.ts);
      else direct.push(rows.length); // its row, about to be pushed: gets the ciphertext below
      bytes += g.n;
      for (const k of behind) {
        const i = k.indexOf('\n');
        rows.push({
          seq: g.seq,
          user_id: k.slice(0, i),
          device_id: k.slice(i + 1),
          ts: g.ts,
          sender_user: g.sender_user,
          sender_device: g.sender_device,
          client_id: g.client_id,
          kind: g.kind,
          status: g.status,
          c: null,
        });
      }
    }
    this.groupInFlight = through;
    for (const i of direct) {
      const r = rows[i]!;
      r.c = this.sql.exec<{ c: ArrayBuffer }>('SELECT group_c AS c FROM log WHERE seq = ?', r.seq).one().c;
    }
    for (const seq of legacyGroups) if (!wanted.has(seq)) wanted.set(seq, 0);
    const groups: OutboxBatch['groups'] = [];
    for (const seq of wanted.keys()) {
      const g = this.sql
        .exec<{ seq: number; ts: number; c: ArrayBuffer | null }>(
          'SELECT seq, ts, group_c AS c FROM log WHERE seq = ?',
          seq,
        )
        .toArray()[0];
      if (g?.c) groups.push({ seq: g.seq, ts: g.ts, c: g.c });
    }
    // Marked last: nothing above can leave rows marked for a batch that was never returned.
    if (pairTaken >= 0) this.sql.exec('UPDATE pairwise SET flushed = 2 WHERE flushed = 0 AND seq <= ?', pairTaken);
    if (rows.length === 0 && this.groupInFlight === null) return { ...empty, more };
    return { rows, groups, more };
  }

  /** True while a taken batch moves the group-flushed mark (commitOutbox() must follow even without rows). */
  hasOutboxInFlight(): boolean {
    return this.groupInFlight !== null;
  }

  commitOutbox(): void {
    this.sql.exec('UPDATE pairwise SET flushed = 1 WHERE flushed = 2');
    if (this.groupInFlight !== null) {
      this.sql.exec('UPDATE state SET group_flushed = max(group_flushed, ?) WHERE id = 1', this.groupInFlight);
    }
    this.groupInFlight = null;
  }

  releaseOutbox(): void {
    this.sql.exec('UPDATE pairwise SET flushed = 0 WHERE flushed = 2');
    this.groupInFlight = null;
  }

  /** When the alarm has D1 work: now for pending acks, else the oldest un-flushed write + `delayMs`; null: none. */
  nextFlushAt(now: number, delayMs: number): number | null {
    if (this.sql.exec<{ n: number }>('SELECT count(*) AS n FROM pending_acks').one().n > 0) return now;
    const pairwise = this.sql
      .exec<{ ts: number | null }>(
        'SELECT l.ts AS ts FROM log l WHERE l.seq = (SELECT min(seq) FROM pairwise WHERE flushed = 0)',
      )
      .toArray()[0]?.ts;
    const group = this.sql
      .exec<{ ts: number }>(
        'SELECT ts FROM log WHERE seq > ? AND (epoch IS NOT NULL OR dest IS NOT NULL) ORDER BY seq LIMIT 1',
        this.groupFlushed(),
      )
      .toArray()[0]?.ts;
    const oldest = [pairwise, group].filter((t): t is number => typeof t === 'number');
    return oldest.length === 0 ? null : Math.max(now, Math.min(...oldest) + delayMs);
  }

  /**
   * A revoked device gets nothing more from this DO: its pairwise envelopes, cursor and pending acks are
   * dropped and it leaves every epoch (so no group message is pending for it or expanded for it in D1).
   */
  /** A deleted account's sent messages stay for their recipients under the `tombstone` sender id. */
  forgetSender(userId: string, tombstone: string): void {
    this.sql.exec(
      "UPDATE log SET sender_user = ?, sender_device = ?, client_id = 'deleted-' || seq WHERE sender_user = ?",
      tombstone,
      tombstone,
      userId,
    );
    // …and it is no longer named as a recipient of anyone's pairwise message (the webhook audience list).
    this.sql.exec(
      "UPDATE log SET rcpt = trim(replace(' ' || rcpt || ' ', ' ' || ? || ' ', ' ')) WHERE instr(' ' || rcpt || ' ', ' ' || ? || ' ') > 0",
      userId,
      userId,
    );
    this.sql.exec('DELETE FROM epoch_devices WHERE user_id = ?', userId);
    this.sql.exec('DELETE FROM cursors WHERE user_id = ?', userId);
    this.sql.exec('DELETE FROM pairwise WHERE user_id = ?', userId);
    // Direct messages to its devices: their ciphertext and its id go (the row stays for seq order and retries).
    this.sql.exec(
      'UPDATE log SET group_c = NULL, dest = NULL WHERE substr(dest, 1, ?) = ?',
      userId.length + 1,
      `${userId}\n`,
    );
    this.sql.exec('DELETE FROM pending_acks WHERE user_id = ?', userId);
    this.epochCache.clear();
    this.latestEpoch = undefined;
    // The tombstone "device" now has log rows its id set (if one was ever loaded) does not hold.
    this.knownIds.delete(keyOf(tombstone, tombstone));
  }

  forgetDevice(userId: string, deviceId: string): void {
    this.sql.exec('DELETE FROM pairwise WHERE user_id = ? AND device_id = ?', userId, deviceId);
    this.sql.exec('UPDATE log SET group_c = NULL, dest = NULL WHERE dest = ?', keyOf(userId, deviceId));
    this.sql.exec('DELETE FROM pending_acks WHERE user_id = ? AND device_id = ?', userId, deviceId);
    this.sql.exec('DELETE FROM epoch_devices WHERE user_id = ? AND device_id = ?', userId, deviceId);
    this.sql.exec('DELETE FROM cursors WHERE user_id = ? AND device_id = ?', userId, deviceId);
    this.epochCache.clear();
    this.latestEpoch = undefined;
  }

  /**
   * Drops what is older than `cutoffTs` and already safe in D1: flushed pairwise envelopes, then log rows
   * no pairwise envelope refers to (group messages once the flush has passed them; any message only once its
   * webhook event is queued), then epochs no log row
   * uses (except the latest). Un-flushed envelopes (D1 unreachable) are kept however old. Returns the new
   * pruned-through seq (resume below it reads the D1 mailbox).
   */
  prune(cutoffTs: number): number {
    const r = { s: this.lastSeqBefore(cutoffTs, false) };
    const state = this.state();
    if (r.s === null || r.s <= state.prunedThrough) return state.prunedThrough;
    const through = r.s;
    const groupMark = this.groupFlushed();
    this.storage.transactionSync(() => {
      // The last seq/ts survive the log rows they are read from (see readLast).
      this.sql.exec('UPDATE state SET last_seq = ?, last_ts = ? WHERE id = 1', state.lastSeq, state.lastTs);
      this.sql.exec('DELETE FROM pairwise WHERE flushed = 1 AND seq <= ?', through);
      this.sql.exec(
        `DELETE FROM log WHERE seq <= ? AND NOT EXISTS (SELECT 1 FROM pairwise p WHERE p.seq = log.seq)
           AND ((epoch IS NULL AND dest IS NULL) OR seq <= ?) AND seq <= (SELECT events_through FROM state WHERE id = 1)`,
        through,
        groupMark,
      );
      // Epochs only grow with seq: those before the oldest remaining group message's are unused.
      const oldest = this.sql
        .exec<{ e: number }>('SELECT epoch AS e FROM log WHERE epoch IS NOT NULL ORDER BY seq LIMIT 1')
        .toArray()[0]?.e;
      const keepFrom = oldest ?? this.sql.exec<{ e: number | null }>('SELECT max(epoch) AS e FROM epochs').one().e;
      if (keepFrom !== null) {
        this.sql.exec('DELETE FROM epoch_devices WHERE epoch < ?', keepFrom);
        this.sql.exec('DELETE FROM epochs WHERE epoch < ?', keepFrom);
      }
      this.sql.exec('UPDATE state SET pruned_through = ? WHERE id = 1', through);
    });
    this.epochCache.clear();
    // Devices whose id set outgrew the cap may fit again in the smaller log: loaded again on their next send.
    for (const [k, known] of this.knownIds) if (known === null) this.knownIds.delete(k);
    return through;
  }

  // ---- webhook events (worker/webhooks/emit.ts) ----------------------------------------------------------

  /** Events are queued for every message ≤ this seq. */
  eventsThrough(): number {
    return this.sql.exec<{ e: number }>('SELECT events_through AS e FROM state WHERE id = 1').one().e;
  }

  setEventsThrough(seq: number): void {
    this.sql.exec('UPDATE state SET events_through = max(events_through, ?) WHERE id = 1', seq);
  }

  /**
   * The highest seq such that every message ≤ it can be fetched by each recipient device that has not
   * acked it: its pairwise rows are in D1 or acked (none left at flush state 0 or 2 below it), and the D1
   * flush has passed every group message below it. `message.created` for a message is sent only then, so a
   * bot that syncs its mailbox on the event finds the envelope.
   */
  eventsReadyThrough(): number {
    const last = this.lastSeq();
    const pw = this.sql
      .exec<{ s: number | null }>(
        'SELECT min(s) AS s FROM (SELECT min(seq) AS s FROM pairwise WHERE flushed = 0 UNION ALL SELECT min(seq) FROM pairwise WHERE flushed = 2)',
      )
      .one().s;
    const grp = this.sql
      .exec<{ s: number }>(
        'SELECT seq AS s FROM log WHERE seq > ? AND (epoch IS NOT NULL OR dest IS NOT NULL) ORDER BY seq LIMIT 1',
        this.groupFlushed(),
      )
      .toArray()[0]?.s;
    return Math.min(last, pw === null ? last : pw - 1, grp === undefined ? last : grp - 1);
  }

  /** Messages (kind `message`) in (after, through], oldest first, at most `limit`: what their events need. */
  eventRows(after: number, through: number, limit: number): EventRow[] {
    return this.sql
      .exec<Row & EventRow>(
        `SELECT seq, ts, sender_user, sender_device, epoch, rcpt FROM log
         WHERE seq > ? AND seq <= ? AND kind = 'message' ORDER BY seq LIMIT ?`,
        after,
        through,
        limit,
      )
      .toArray();
  }

  /** Oldest log timestamp (for scheduling the next prune), or null when the log is empty. */
  oldestTs(): number | null {
    return this.sql.exec<{ t: number }>('SELECT ts AS t FROM log ORDER BY seq LIMIT 1').toArray()[0]?.t ?? null;
  }
}
