/**
 * Channel frames after the provisioning message (docs/PROTOCOL.md §"Linking", steps 3–4): the history
 * offer and its chunks from the linking device, status reports from the new device, and a cancel from
 * either. Every frame is sealed under a per-direction key derived from the channel key that only the two
 * devices hold (provisioning.ts), with its direction and sequence number bound into nonce and AAD.
 *
 * ```
 * k_dir  = HKDF-SHA256(ikm = channelKey, salt = 0x00×32, info = LABEL_TRANSFER ‖ u8 dir, L = 32)
 *          dir 1 = linking device → new device, dir 2 = new device → linking device
 * nonce  = 0x00×8 ‖ u32 seq                                   (seq ≥ 1, strictly +1 per frame and direction)
 * aad    = u8 0x01 ‖ u8 dir ‖ u32 seq ‖ channelId[16]
 * frame  = u8 0x01 ‖ u8 dir ‖ u32 seq ‖ AES-256-GCM(k_dir, nonce, pad(body, LINK_PADDING_BLOCK), aad)
 * body   = u8 type ‖ fields:
 *   1 history_header  (dir 1)  u32 attempt ‖ u32 chunks ‖ u32 messages ‖ u64 bytes
 *   2 history_chunk   (dir 1)  u32 attempt ‖ u32 index ‖ bytes records (≤ MAX_HISTORY_CHUNK_LEN; history.ts)
 *   3 history_none    (dir 1)  —
 *   4 status          (dir 2)  u8 status ‖ u32 attempt ‖ u32 value ‖ str code (≤ 64)
 *   5 cancel          (both)   str code (≤ 64)
 * ```
 *
 * A (key, nonce) pair is used once: each direction has its own key and the sender never reuses a seq (a
 * retried transfer continues the numbering with a new `attempt`). The receiver demands exactly the next
 * seq, so a frame the relay drops, repeats or reorders is refused (`invalid_structure`) and the transfer
 * is reported as interrupted — never imported with a gap.
 *
 * Does NOT: keep the sequence counters (the caller does), fetch or store history (history.ts encodes the
 * records; the engine selects and imports them), or talk to the relay.
 * @module
 */
import { concat, Reader, u32be, utf8, Writer } from './bytes.js';
import {
  LABEL_TRANSFER,
  LINK_CHANNEL_ID_LEN,
  LINK_PADDING_BLOCK,
  MAX_HISTORY_BYTES,
  MAX_HISTORY_CHUNK_LEN,
  MAX_HISTORY_CHUNKS,
  MAX_HISTORY_MESSAGES,
  PROTOCOL_VERSION,
} from './constants.js';
import { ErrorCode, fail, ProtocolError } from './errors.js';
import { pad, unpad } from './padding.js';
import { AES_KEY_LEN, aesGcmDecrypt, aesGcmEncrypt, GCM_TAG_LEN, hkdfSha256ZeroSalt } from './primitives.js';

export const Direction = { ToNew: 1, ToExisting: 2 } as const;
export type Direction = (typeof Direction)[keyof typeof Direction];

export const TRANSFER_STATUSES = ['linked', 'progress', 'imported', 'failed', 'retry'] as const;
export type TransferStatus = (typeof TRANSFER_STATUSES)[number];

const MAX_CODE_LEN = 64;

export type TransferFrame =
  | {
      readonly type: 'history_header';
      readonly attempt: number;
      readonly chunks: number;
      readonly messages: number;
      readonly bytes: number;
    }
  | { readonly type: 'history_chunk'; readonly attempt: number; readonly index: number; readonly records: Uint8Array }
  | { readonly type: 'history_none' }
  | {
      readonly type: 'status';
      readonly status: TransferStatus;
      readonly attempt: number;
      /** linked: 0; progress: chunks received; imported: messages imported; failed / retry: 0. */
      readonly value: number;
      /** failed: why (a stable code such as `history_incomplete`); '' otherwise. */
      readonly code: string;
    }
  | { readonly type: 'cancel'; readonly code: string };

const TYPE = { history_header: 1, history_chunk: 2, history_none: 3, status: 4, cancel: 5 } as const;
const TO_NEW_ONLY = new Set<TransferFrame['type']>(['history_header', 'history_chunk', 'history_none']);

/** History frames travel to the new device only, status frames from it only; cancel either way. */
const allowed = (dir: Direction, type: TransferFrame['type']) =>
  dir === Direction.ToExisting ? !TO_NEW_ONLY.has(type) : type !== 'status';

/** The two per-direction keys of a channel. */
export interface TransferKeys {
  readonly channelId: Uint8Array;
  readonly toNew: Uint8Array;
  readonly toExisting: Uint8Array;
}

export function transferKeys(channelKey: Uint8Array, channelId: Uint8Array): TransferKeys {
  const op = 'transferKeys';
  if (channelKey.length !== AES_KEY_LEN) fail(ErrorCode.InvalidKey, op, 'channel key must be 32 bytes');
  if (channelId.length !== LINK_CHANNEL_ID_LEN) fail(ErrorCode.InvalidStructure, op, 'channel id must be 16 bytes');
  const k = (d: Direction) => hkdfSha256ZeroSalt(channelKey, concat(utf8(LABEL_TRANSFER), Uint8Array.of(d)), 32);
  return { channelId: channelId.slice(), toNew: k(Direction.ToNew), toExisting: k(Direction.ToExisting) };
}

const keyFor = (k: TransferKeys, d: Direction) => (d === Direction.ToNew ? k.toNew : k.toExisting);
const nonceFor = (seq: number) => concat(new Uint8Array(8), u32be(seq));
const prefix = (d: Direction, seq: number) => concat(Uint8Array.of(PROTOCOL_VERSION, d), u32be(seq));

function u32ok(n: number, op: string, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) fail(ErrorCode.InvalidStructure, op, `bad ${what}`);
}

export function encodeTransferBody(f: TransferFrame): Uint8Array {
  const op = 'encodeTransferBody';
  const w = new Writer().u8(TYPE[f.type]);
  switch (f.type) {
    case 'history_header':
      if (f.chunks > MAX_HISTORY_CHUNKS || f.messages > MAX_HISTORY_MESSAGES || f.bytes > MAX_HISTORY_BYTES)
        fail(ErrorCode.LimitExceeded, op, 'history too large');
      return w.u32(f.attempt).u32(f.chunks).u32(f.messages).u64(f.bytes).finish();
    case 'history_chunk':
      if (f.records.length > MAX_HISTORY_CHUNK_LEN) fail(ErrorCode.LimitExceeded, op, 'chunk too large');
      return w.u32(f.attempt).u32(f.index).bytes(f.records).finish();
    case 'history_none':
      return w.finish();
    case 'status':
      u32ok(f.value, op, 'value');
      if (utf8(f.code).length > MAX_CODE_LEN) fail(ErrorCode.LimitExceeded, op, 'code too long');
      return w
        .u8(TRANSFER_STATUSES.indexOf(f.status) + 1)
        .u32(f.attempt)
        .u32(f.value)
        .str(f.code)
        .finish();
    case 'cancel':
      if (utf8(f.code).length > MAX_CODE_LEN) fail(ErrorCode.LimitExceeded, op, 'code too long');
      return w.str(f.code).finish();
  }
}

export function decodeTransferBody(bytes: Uint8Array): TransferFrame {
  const op = 'decodeTransferBody';
  const r = new Reader(bytes, op);
  let f: TransferFrame;
  switch (r.u8()) {
    case 1: {
      const attempt = r.u32();
      const chunks = r.u32();
      const messages = r.u32();
      const total = r.u64();
      if (chunks > MAX_HISTORY_CHUNKS || messages > MAX_HISTORY_MESSAGES || total > MAX_HISTORY_BYTES)
        fail(ErrorCode.LimitExceeded, op, 'history too large');
      f = { type: 'history_header', attempt, chunks, messages, bytes: total };
      break;
    }
    case 2: {
      const attempt = r.u32();
      const index = r.u32();
      if (index >= MAX_HISTORY_CHUNKS) fail(ErrorCode.LimitExceeded, op, 'chunk index too large');
      f = { type: 'history_chunk', attempt, index, records: r.bytes(MAX_HISTORY_CHUNK_LEN) };
      break;
    }
    case 3:
      f = { type: 'history_none' };
      break;
    case 4: {
      const s = r.u8();
      const status = TRANSFER_STATUSES[s - 1];
      if (!status) fail(ErrorCode.Decode, op, 'unknown status');
      f = { type: 'status', status, attempt: r.u32(), value: r.u32(), code: r.str(MAX_CODE_LEN) };
      break;
    }
    case 5:
      f = { type: 'cancel', code: r.str(MAX_CODE_LEN) };
      break;
    default:
      return fail(ErrorCode.Decode, op, 'unknown frame type');
  }
  r.end();
  return f;
}

/** Seals one frame. The caller's `seq` for `dir` must be the previous one + 1 (starting at 1), never reused. */
export function sealTransferFrame(k: TransferKeys, dir: Direction, seq: number, frame: TransferFrame): Uint8Array {
  const op = 'sealTransferFrame';
  if (!Number.isInteger(seq) || seq < 1 || seq > 0xffffffff) fail(ErrorCode.InvalidStructure, op, 'bad seq');
  if (!allowed(dir, frame.type)) fail(ErrorCode.InvalidStructure, op, 'frame kind not allowed in this direction');
  const body = pad(encodeTransferBody(frame), LINK_PADDING_BLOCK, MAX_HISTORY_CHUNK_LEN + 64);
  const p = prefix(dir, seq);
  return concat(p, aesGcmEncrypt(keyFor(k, dir), nonceFor(seq), body, concat(p, k.channelId)));
}

/** Bytes of the largest sealed frame (a full history chunk). */
export const MAX_TRANSFER_FRAME_LEN =
  6 + (Math.floor((MAX_HISTORY_CHUNK_LEN + 64) / LINK_PADDING_BLOCK) + 1) * LINK_PADDING_BLOCK + GCM_TAG_LEN;

/**
 * Opens a frame that must travel in direction `dir` with sequence number `expectedSeq`. A wrong direction,
 * an unexpected seq (dropped, repeated or reordered by the relay) is `invalid_structure`; a failed tag or
 * malformed envelope `decryption_failed`; an authentic frame of the wrong kind for its direction
 * `invalid_structure`.
 */
export function openTransferFrame(k: TransferKeys, dir: Direction, expectedSeq: number, bytes: Uint8Array) {
  const op = 'openTransferFrame';
  if (bytes.length < 6 + GCM_TAG_LEN || bytes.length > MAX_TRANSFER_FRAME_LEN || bytes[0] !== PROTOCOL_VERSION)
    throw new ProtocolError(ErrorCode.DecryptionFailed, op);
  const r = new Reader(bytes.subarray(0, 6), op);
  r.u8();
  const d = r.u8();
  const seq = r.u32();
  if (d !== dir) fail(ErrorCode.InvalidStructure, op, 'frame for the other direction');
  if (seq !== expectedSeq) fail(ErrorCode.InvalidStructure, op, 'frame out of sequence');
  let body: Uint8Array;
  try {
    const p = bytes.subarray(0, 6);
    body = unpad(
      aesGcmDecrypt(keyFor(k, dir), nonceFor(seq), bytes.subarray(6), concat(p, k.channelId)),
      LINK_PADDING_BLOCK,
      MAX_HISTORY_CHUNK_LEN + 64,
    );
  } catch {
    throw new ProtocolError(ErrorCode.DecryptionFailed, op);
  }
  const frame = decodeTransferBody(body);
  if (!allowed(dir, frame.type)) fail(ErrorCode.InvalidStructure, op, 'frame kind not allowed in this direction');
  return frame;
}
