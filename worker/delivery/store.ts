/**
 * The ConversationDO's own SQLite store: the ordered message log, the per-device delivery outbox and the
 * acknowledgements still to be applied to D1.
 *
 * Responsibilities: assign `seq`/`ts` in the SAME transaction that persists a message and its per-device
 * envelopes (so the counter survives evictions and is gap-free), answer idempotent retries with the
 * original seq, hand out outbox batches for the D1 flush, and prune what is older than the retention.
 * Does NOT: talk to D1 or to sockets, check membership, or see plaintext (every `c` is ciphertext bytes).
 *
 * Tables (all SQL below uses bound parameters; multi-row statements only repeat `(?,?,?,?)` placeholders):
 *   state       one row: conversation id, last seq, last ts, pruned-through seq
 *   log         one row per message: seq, ts, sender, client id, kind/status, sender-key ciphertext or NULL
 *   deliveries  one row per (recipient device, seq): pairwise ciphertext or NULL (group), flush state
 *               0 = only here, 2 = being copied to D1, 1 = also in D1; deleted when the device acks
 *   pending_acks  highest acked seq per device whose envelopes may already be in D1 (flushed ≠ 0)
 */

export interface AppendInput {
  senderUser: string;
  senderDevice: string;
  clientId: string;
  kind: 'message' | 'receipt';
  status: 'delivered' | 'read' | null;
  /** Sender-key ciphertext (group mode) or null (pairwise: one ciphertext per recipient). */
  group: Uint8Array | null;
  recipients: { u: string; d: string; c: Uint8Array | null }[];
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

/** DO SQLite allows 100 bound parameters per statement; deliveries rows have 4. */
const DELIVERY_ROWS_PER_INSERT = 25;
/** Cap on ciphertext bytes held in memory by one outbox batch (DO isolate memory is 128 MB). */
const OUTBOX_BATCH_BYTES = 8 * 1024 * 1024;

type Row = Record<string, SqlStorageValue>;

/** SQLite BLOB parameter: the exact bytes of the view as an ArrayBuffer. */
function blob(b: Uint8Array | null): ArrayBuffer | null {
  if (b === null) return null;
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer) return b.buffer;
  return b.slice().buffer as ArrayBuffer;
}

export class DeliveryStore {
  private readonly sql: SqlStorage;

  constructor(private readonly storage: DurableObjectStorage) {
    this.sql = storage.sql;
  }

  /** Creates the tables; returns rows interrupted mid-flush (state 2) to the outbox. Idempotent. */
  init(): void {
    this.sql.exec(`CREATE TABLE IF NOT EXISTS state (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      conversation_id TEXT,
      last_seq INTEGER NOT NULL,
      last_ts INTEGER NOT NULL,
      pruned_through INTEGER NOT NULL DEFAULT 0)`);
    this.sql.exec('INSERT OR IGNORE INTO state (id, conversation_id, last_seq, last_ts) VALUES (1, NULL, 0, 0)');
    this.sql.exec(`CREATE TABLE IF NOT EXISTS log (
      seq INTEGER PRIMARY KEY,
      ts INTEGER NOT NULL,
      sender_user TEXT NOT NULL,
      sender_device TEXT NOT NULL,
      client_id TEXT NOT NULL,
      kind TEXT NOT NULL,
      status TEXT,
      group_c BLOB)`);
    this.sql.exec('CREATE UNIQUE INDEX IF NOT EXISTS log_client_uq ON log (sender_user, sender_device, client_id)');
    this.sql.exec(`CREATE TABLE IF NOT EXISTS deliveries (
      user_id TEXT NOT NULL,
      device_id TEXT NOT NULL,
      seq INTEGER NOT NULL,
      c BLOB,
      flushed INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (user_id, device_id, seq)) WITHOUT ROWID`);
    this.sql.exec('CREATE INDEX IF NOT EXISTS deliveries_outbox_idx ON deliveries (flushed, seq)');
    this.sql.exec(`CREATE TABLE IF NOT EXISTS pending_acks (
      user_id TEXT NOT NULL,
      device_id TEXT NOT NULL,
      up_to INTEGER NOT NULL,
      PRIMARY KEY (user_id, device_id)) WITHOUT ROWID`);
    this.sql.exec('UPDATE deliveries SET flushed = 0 WHERE flushed = 2');
  }

  state(): StoreState {
    const r = this.sql
      .exec<{ conversation_id: string | null; last_seq: number; last_ts: number; pruned_through: number }>(
        'SELECT conversation_id, last_seq, last_ts, pruned_through FROM state WHERE id = 1',
      )
      .one();
    return {
      conversationId: r.conversation_id,
      lastSeq: r.last_seq,
      lastTs: r.last_ts,
      prunedThrough: r.pruned_through,
    };
  }

  setConversationId(id: string): void {
    this.sql.exec('UPDATE state SET conversation_id = ? WHERE id = 1 AND conversation_id IS NULL', id);
  }

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
   * Persists one message and its envelopes and assigns the next seq and a strictly increasing ts
   * (max(now, last + 1)) in one transaction. A client id already in the log returns its original seq and
   * writes nothing.
   */
  append(input: AppendInput, now: number): AppendResult {
    return this.storage.transactionSync(() => {
      const dup = this.findDuplicate(input.senderUser, input.senderDevice, input.clientId);
      if (dup) return { ...dup, duplicate: true };
      const next = this.sql
        .exec<{ last_seq: number; last_ts: number }>(
          'UPDATE state SET last_seq = last_seq + 1, last_ts = max(?, last_ts + 1) WHERE id = 1 RETURNING last_seq, last_ts',
          now,
        )
        .one();
      const seq = next.last_seq;
      const ts = next.last_ts;
      this.sql.exec(
        'INSERT INTO log (seq, ts, sender_user, sender_device, client_id, kind, status, group_c) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        seq,
        ts,
        input.senderUser,
        input.senderDevice,
        input.clientId,
        input.kind,
        input.status,
        blob(input.group),
      );
      for (let i = 0; i < input.recipients.length; i += DELIVERY_ROWS_PER_INSERT) {
        const chunk = input.recipients.slice(i, i + DELIVERY_ROWS_PER_INSERT);
        const params: SqlStorageValue[] = [];
        for (const r of chunk) params.push(r.u, r.d, seq, blob(r.c));
        // sql-interpolation-ok: expands "(?, ?, ?, ?)" placeholders only; every value is bound.
        this.sql.exec(
          `INSERT INTO deliveries (user_id, device_id, seq, c) VALUES ${chunk.map(() => '(?, ?, ?, ?)').join(', ')}`,
          ...params,
        );
      }
      return { seq, ts, duplicate: false };
    });
  }

  /**
   * A device acknowledged everything up to `upTo`: its envelopes leave the DO. Returns true when some of
   * them may already be in D1 (flushed or being flushed), i.e. a D1 delete must follow.
   */
  ack(userId: string, deviceId: string, upTo: number): boolean {
    const rows = this.sql
      .exec<{ n: number }>(
        'SELECT count(*) AS n FROM deliveries WHERE user_id = ? AND device_id = ? AND seq <= ? AND flushed != 0',
        userId,
        deviceId,
        upTo,
      )
      .one();
    this.sql.exec('DELETE FROM deliveries WHERE user_id = ? AND device_id = ? AND seq <= ?', userId, deviceId, upTo);
    if (rows.n > 0) this.addPendingAck(userId, deviceId, upTo);
    return rows.n > 0;
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

  /** A device's envelopes after `after`, oldest first (the resume replay). */
  pendingFor(userId: string, deviceId: string, after: number, limit: number): ReplayRow[] {
    return this.sql
      .exec<Row & ReplayRow>(
        `SELECT d.seq, l.ts, l.sender_user, l.sender_device, l.client_id, l.kind, l.status,
                coalesce(d.c, l.group_c) AS c, d.c IS NULL AS grp
         FROM deliveries d JOIN log l ON l.seq = d.seq
         WHERE d.user_id = ? AND d.device_id = ? AND d.seq > ?
         ORDER BY d.seq LIMIT ?`,
        userId,
        deviceId,
        after,
        limit,
      )
      .toArray();
  }

  /**
   * Takes the oldest un-flushed envelopes of messages written at or before `writtenBefore` (whole
   * messages only, ≤ maxRows rows unless one message is larger, ≤ OUTBOX_BATCH_BYTES of ciphertext) and
   * marks them in flight (2). Younger envelopes wait: most are acked first and never reach D1. Follow with
   * commitOutbox() after D1 accepted them, or releaseOutbox() if it did not.
   */
  takeOutbox(maxRows: number, writtenBefore: number): OutboxBatch {
    const cutoff = this.sql
      .exec<{ s: number | null }>('SELECT max(seq) AS s FROM log WHERE ts <= ?', writtenBefore)
      .one().s;
    if (cutoff === null) return { rows: [], groups: [], more: false };
    const cursor = this.sql.exec<Row & OutboxRow>(
      `SELECT d.seq, d.user_id, d.device_id, l.ts, l.sender_user, l.sender_device, l.client_id, l.kind, l.status, d.c
       FROM deliveries d JOIN log l ON l.seq = d.seq
       WHERE d.flushed = 0 AND d.seq <= ? ORDER BY d.seq`,
      cutoff,
    );
    const rows: OutboxRow[] = [];
    let bytes = 0;
    let lastSeq = -1;
    let more = false;
    for (const r of cursor) {
      if (r.seq !== lastSeq && (rows.length >= maxRows || bytes >= OUTBOX_BATCH_BYTES)) {
        more = true;
        break;
      }
      lastSeq = r.seq;
      bytes += r.c ? r.c.byteLength : 0;
      rows.push(r);
    }
    if (rows.length === 0) return { rows, groups: [], more: false };
    const first = rows[0]!.seq;
    this.sql.exec('UPDATE deliveries SET flushed = 2 WHERE flushed = 0 AND seq <= ?', lastSeq);
    const wanted = new Set(rows.filter((r) => r.c === null).map((r) => r.seq));
    const groups =
      wanted.size === 0
        ? []
        : this.sql
            .exec<{ seq: number; ts: number; c: ArrayBuffer }>(
              'SELECT seq, ts, group_c AS c FROM log WHERE seq BETWEEN ? AND ? AND group_c IS NOT NULL',
              first,
              lastSeq,
            )
            .toArray()
            .filter((g) => wanted.has(g.seq));
    return { rows, groups, more };
  }

  commitOutbox(): void {
    this.sql.exec('UPDATE deliveries SET flushed = 1 WHERE flushed = 2');
  }

  releaseOutbox(): void {
    this.sql.exec('UPDATE deliveries SET flushed = 0 WHERE flushed = 2');
  }

  /** When the alarm has D1 work: now for pending acks, else the oldest un-flushed write + `delayMs`; null: none. */
  nextFlushAt(now: number, delayMs: number): number | null {
    if (this.sql.exec<{ n: number }>('SELECT count(*) AS n FROM pending_acks').one().n > 0) return now;
    const r = this.sql
      .exec<{ ts: number | null }>(
        'SELECT l.ts AS ts FROM log l WHERE l.seq = (SELECT min(seq) FROM deliveries WHERE flushed = 0)',
      )
      .toArray();
    const ts = r[0]?.ts;
    return ts === undefined || ts === null ? null : Math.max(now, ts + delayMs);
  }

  /** A revoked device gets nothing more from this DO: its envelopes and pending acks are dropped. */
  forgetDevice(userId: string, deviceId: string): void {
    this.sql.exec('DELETE FROM deliveries WHERE user_id = ? AND device_id = ?', userId, deviceId);
    this.sql.exec('DELETE FROM pending_acks WHERE user_id = ? AND device_id = ?', userId, deviceId);
  }

  /**
   * Drops what is older than `cutoffTs` and already safe in D1: flushed envelopes and then log rows no
   * envelope refers to. Un-flushed envelopes (D1 unreachable) are kept however old. Returns the new
   * pruned-through seq (resume below it reads the D1 mailbox).
   */
  prune(cutoffTs: number): number {
    const r = this.sql.exec<{ s: number | null }>('SELECT max(seq) AS s FROM log WHERE ts < ?', cutoffTs).one();
    const state = this.state();
    if (r.s === null || r.s <= state.prunedThrough) return state.prunedThrough;
    const through = r.s;
    this.storage.transactionSync(() => {
      this.sql.exec('DELETE FROM deliveries WHERE flushed = 1 AND seq <= ?', through);
      this.sql.exec(
        'DELETE FROM log WHERE seq <= ? AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = log.seq)',
        through,
      );
      this.sql.exec('UPDATE state SET pruned_through = ? WHERE id = 1', through);
    });
    return through;
  }

  /** Oldest log timestamp (for scheduling the next prune), or null when the log is empty. */
  oldestTs(): number | null {
    return this.sql.exec<{ t: number | null }>('SELECT min(ts) AS t FROM log').one().t;
  }
}
