/**
 * History records carried by history chunks (docs/PROTOCOL.md §"Linking", step 4): the messages and read
 * positions a linking device sends the new one. Each chunk holds whole records; each record is its kind
 * and a length-prefixed body, so a receiver skips kinds it does not know (a newer sender's content types)
 * instead of failing the whole transfer.
 *
 * ```
 * records = u32 n ‖ n × (u8 kind ‖ bytes body)                     body ≤ MAX_HISTORY_RECORD_LEN
 * kind 1 message:        id conversationId ‖ u64 seq ‖ str clientId (1..64) ‖ id fromUser ‖ id fromDevice ‖
 *                        u8 status ‖ u64 sentAt ‖ u64 receivedAt ‖ bool hasBody [‖ str body (≤ MAX_PLAINTEXT_LEN)] ‖
 *                        bool hasError [‖ str error (≤ 64)]
 *                        status: 1 sent, 2 delivered, 3 received, 4 undecryptable, 5 failed
 * kind 2 read position:  id conversationId ‖ u64 seq
 * ```
 *
 * `packHistory` splits records into chunks of at most MAX_HISTORY_CHUNK_LEN bytes, in the given order.
 *
 * Does NOT: seal anything (transfer.ts seals each chunk), choose which messages to send (the engine applies
 * the age, count and size caps), or decide whether a message is ours (the receiver compares user ids).
 * @module
 */
import { Reader, utf8, Writer } from './bytes.js';
import { MAX_HISTORY_CHUNK_LEN, MAX_HISTORY_RECORD_LEN, MAX_PLAINTEXT_LEN } from './constants.js';
import { ErrorCode, fail } from './errors.js';
import { assertId, readId } from './identity.js';

export const HISTORY_STATUSES = ['sent', 'delivered', 'received', 'undecryptable', 'failed'] as const;
export type HistoryStatus = (typeof HISTORY_STATUSES)[number];

export interface HistoryMessage {
  readonly kind: 'message';
  readonly conversationId: string;
  readonly seq: number;
  readonly clientId: string;
  readonly fromUser: string;
  readonly fromDevice: string;
  readonly status: HistoryStatus;
  readonly sentAt: number;
  readonly receivedAt: number;
  readonly body: string | null;
  readonly error: string | null;
}

export interface HistoryReadPosition {
  readonly kind: 'read_position';
  readonly conversationId: string;
  readonly seq: number;
}

export type HistoryRecord = HistoryMessage | HistoryReadPosition;

const KIND = { message: 1, read_position: 2 } as const;
const MAX_CLIENT_ID = 64;
const MAX_ERROR = 64;

export function encodeHistoryRecord(rec: HistoryRecord): Uint8Array {
  const op = 'encodeHistoryRecord';
  assertId(rec.conversationId, 'conversationId', op);
  const w = new Writer().str(rec.conversationId).u64(rec.seq);
  if (rec.kind === 'message') {
    const cid = utf8(rec.clientId).length;
    if (cid === 0 || cid > MAX_CLIENT_ID) fail(ErrorCode.InvalidStructure, op, 'bad client id');
    assertId(rec.fromUser, 'fromUser', op);
    assertId(rec.fromDevice, 'fromDevice', op);
    if (rec.body !== null && utf8(rec.body).length > MAX_PLAINTEXT_LEN)
      fail(ErrorCode.LimitExceeded, op, 'body too long');
    if (rec.error !== null && utf8(rec.error).length > MAX_ERROR) fail(ErrorCode.LimitExceeded, op, 'error too long');
    w.str(rec.clientId)
      .str(rec.fromUser)
      .str(rec.fromDevice)
      .u8(HISTORY_STATUSES.indexOf(rec.status) + 1)
      .u64(rec.sentAt)
      .u64(rec.receivedAt)
      .bool(rec.body !== null);
    if (rec.body !== null) w.str(rec.body);
    w.bool(rec.error !== null);
    if (rec.error !== null) w.str(rec.error);
  }
  return new Writer().u8(KIND[rec.kind]).bytes(w.finish()).finish();
}

function decodeBody(kind: number, body: Uint8Array): HistoryRecord | null {
  const op = 'decodeHistoryRecord';
  const r = new Reader(body, op);
  if (kind !== KIND.message && kind !== KIND.read_position) return null;
  const conversationId = readId(r, op);
  const seq = r.u64();
  if (kind === KIND.read_position) {
    r.end();
    return { kind: 'read_position', conversationId, seq };
  }
  const clientId = r.str(MAX_CLIENT_ID);
  if (clientId.length === 0) fail(ErrorCode.Decode, op, 'empty client id');
  const fromUser = readId(r, op);
  const fromDevice = readId(r, op);
  const status = HISTORY_STATUSES[r.u8() - 1];
  if (!status) fail(ErrorCode.Decode, op, 'unknown status');
  const sentAt = r.u64();
  const receivedAt = r.u64();
  const msgBody = r.bool() ? r.str(MAX_PLAINTEXT_LEN) : null;
  const error = r.bool() ? r.str(MAX_ERROR) : null;
  r.end();
  return {
    kind: 'message',
    conversationId,
    seq,
    clientId,
    fromUser,
    fromDevice,
    status,
    sentAt,
    receivedAt,
    body: msgBody,
    error,
  };
}

/** Records of one chunk. Unknown kinds are counted in `skipped`, never an error. */
export function decodeHistoryRecords(bytes: Uint8Array): { records: HistoryRecord[]; skipped: number } {
  const op = 'decodeHistoryRecords';
  if (bytes.length > MAX_HISTORY_CHUNK_LEN) fail(ErrorCode.LimitExceeded, op, 'chunk too large');
  const r = new Reader(bytes, op);
  const n = r.u32();
  // Every record takes at least 5 bytes: a hostile count cannot make us loop far past the data.
  if (n > r.remaining / 5) fail(ErrorCode.Decode, op, 'record count exceeds the data');
  const records: HistoryRecord[] = [];
  let skipped = 0;
  for (let i = 0; i < n; i++) {
    const kind = r.u8();
    const rec = decodeBody(kind, r.bytes(MAX_HISTORY_RECORD_LEN));
    if (rec) records.push(rec);
    else skipped++;
  }
  r.end();
  return { records, skipped };
}

/** Splits records into chunk payloads (`u32 n ‖ records`) of at most MAX_HISTORY_CHUNK_LEN bytes each. */
export function packHistory(records: readonly HistoryRecord[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let cur: Uint8Array[] = [];
  let size = 4;
  const flush = () => {
    if (cur.length === 0) return;
    chunks.push(
      new Writer()
        .u32(cur.length)
        .fixed(concatAll(cur, size - 4), size - 4)
        .finish(),
    );
    cur = [];
    size = 4;
  };
  for (const rec of records) {
    const e = encodeHistoryRecord(rec);
    if (e.length > 5 + MAX_HISTORY_RECORD_LEN) fail(ErrorCode.LimitExceeded, 'packHistory', 'record too large');
    if (size + e.length > MAX_HISTORY_CHUNK_LEN) flush();
    cur.push(e);
    size += e.length;
  }
  flush();
  return chunks;
}

function concatAll(parts: Uint8Array[], len: number): Uint8Array {
  const out = new Uint8Array(len);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
