/**
 * Passphrase-encrypted history export (docs/PROTOCOL.md §"History export"): the container a person's
 * device writes when they take their decrypted history off it with a passphrase, and reads back.
 *
 * - header (51 bytes) = "e2e-hist" ‖ u8 version (1) ‖ u8 kdf (1 = argon2id) ‖ u32be m (KiB) ‖ u32be t ‖
 *   u8 p ‖ salt[16] ‖ check[16];
 * - passKey = argon2id(UTF-8(NFKC(passphrase)), salt, m, t, p, 32 bytes) (RFC 9106, version 0x13);
 * - `HKDF-SHA256(ikm = passKey, salt = 32 zero bytes, info = LABEL_HISTORY_EXPORT, L = 60)` → AES-256 key ‖
 *   12-byte nonce base ‖ 16-byte check; the header carries the check, so a wrong passphrase is told apart
 *   from a damaged file (`wrong_passphrase` vs `decryption_failed`) without decrypting anything;
 * - the plaintext is cut into chunks of HISTORY_EXPORT_CHUNK_SIZE (the last holds the rest, 0..C bytes;
 *   an empty plaintext is one empty last chunk), each sealed with AES-256-GCM under
 *   nonce(i) = nonce base XOR (0^4 ‖ u64be(i)) and AAD(i) = header ‖ u64be(i) ‖ u8 last — age's STREAM
 *   construction, as for attachments — so a changed header byte, a chunk moved, dropped or cut off, and a
 *   file cut at a chunk boundary all fail; the file is header ‖ chunk 0 ‖ chunk 1 ‖ …
 *
 * Opening is all-or-nothing: the plaintext is returned only after every chunk authenticated.
 * A fresh salt per export gives a fresh key, hence no (key, nonce) pair is ever used twice.
 *
 * Does NOT: decide what the history document holds (the engine builds it — its JSON shape is described in
 * PROTOCOL.md beside the container — and the plain export is that document unencrypted), stream (the whole
 * document is in memory on both sides; chunks bound each AEAD call and let a reader reject a damaged file
 * early), hide the plaintext's size (the file is 51 + size + 16·chunks bytes), or judge the passphrase's
 * strength (the app asks for one of at least 8 characters; the argon2id cost is what slows guessing).
 * @module
 */
import { chunkNonce } from './attachments.js';
import { concat, equal, u32be, u64be, utf8 } from './bytes.js';
import {
  HISTORY_EXPORT_ARGON2,
  HISTORY_EXPORT_CHECK_LEN,
  HISTORY_EXPORT_CHUNK_SIZE,
  HISTORY_EXPORT_KDF_ARGON2ID,
  HISTORY_EXPORT_MAGIC,
  HISTORY_EXPORT_SALT_LEN,
  HISTORY_EXPORT_VERSION,
  LABEL_HISTORY_EXPORT,
  MAX_HISTORY_EXPORT_ARGON2,
  MAX_HISTORY_EXPORT_SIZE,
} from './constants.js';
import { ErrorCode, fail } from './errors.js';
import {
  AES_KEY_LEN,
  type AesGcmKey,
  aesGcmKey,
  argon2id,
  GCM_NONCE_LEN,
  GCM_TAG_LEN,
  hkdfSha256ZeroSalt,
  type Rng,
} from './primitives.js';

const MAGIC = utf8(HISTORY_EXPORT_MAGIC);
/** Header bytes before the key check (magic, version, kdf, m, t, p, salt). */
const PREFIX_LEN = MAGIC.length + 1 + 1 + 4 + 4 + 1 + HISTORY_EXPORT_SALT_LEN;
/** Header bytes: 51. */
export const HISTORY_EXPORT_HEADER_LEN = PREFIX_LEN + HISTORY_EXPORT_CHECK_LEN;

/** argon2id cost parameters as the header carries them (m in KiB). */
export interface HistoryExportKdf {
  readonly m: number;
  readonly t: number;
  readonly p: number;
}

export interface HistoryExportHeader {
  readonly version: number;
  readonly kdf: HistoryExportKdf;
  readonly salt: Uint8Array;
  readonly check: Uint8Array;
  /** The header's 51 bytes exactly as read (they are every chunk's AAD prefix). */
  readonly bytes: Uint8Array;
}

export interface HistoryExportOptions {
  /** argon2id cost (writer only; default HISTORY_EXPORT_ARGON2). */
  readonly kdf?: HistoryExportKdf;
  /** 0..1 while argon2id runs (the long part). */
  readonly onProgress?: (fraction: number) => void;
  /** The platform's WebCrypto by default, `null` for the pure-JS AES-GCM path (see primitives `aesGcmKey`). */
  readonly subtle?: SubtleCrypto | null;
}

function assertKdf(k: HistoryExportKdf, operation: string): void {
  const ok = (n: number, lo: number, hi: number) => Number.isSafeInteger(n) && n >= lo && n <= hi;
  if (!ok(k.p, 1, MAX_HISTORY_EXPORT_ARGON2.p) || !ok(k.t, 1, MAX_HISTORY_EXPORT_ARGON2.t))
    fail(ErrorCode.LimitExceeded, operation, 'argon2id t or p out of range');
  if (!ok(k.m, 8 * k.p, MAX_HISTORY_EXPORT_ARGON2.m))
    fail(ErrorCode.LimitExceeded, operation, 'argon2id memory out of range');
}

/** True when `bytes` starts like a passphrase-encrypted export (the magic); a plain export is JSON. */
export function isHistoryExportContainer(bytes: Uint8Array): boolean {
  return bytes.length >= MAGIC.length && equal(bytes.subarray(0, MAGIC.length), MAGIC);
}

/** Parses and bounds-checks the header (no key derived yet). `decode` / `limit_exceeded` on a bad one. */
export function parseHistoryExportHeader(file: Uint8Array): HistoryExportHeader {
  const op = 'parseHistoryExportHeader';
  if (!isHistoryExportContainer(file)) fail(ErrorCode.Decode, op, 'not a history export');
  if (file.length < HISTORY_EXPORT_HEADER_LEN + GCM_TAG_LEN) fail(ErrorCode.Decode, op, 'truncated');
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  let o = MAGIC.length;
  const version = file[o++]!;
  if (version !== HISTORY_EXPORT_VERSION) fail(ErrorCode.Decode, op, `unknown version ${version}`);
  const kdfId = file[o++]!;
  if (kdfId !== HISTORY_EXPORT_KDF_ARGON2ID) fail(ErrorCode.Decode, op, `unknown kdf ${kdfId}`);
  const m = view.getUint32(o);
  const t = view.getUint32(o + 4);
  const p = file[o + 8]!;
  o += 9;
  const kdf = { m, t, p };
  assertKdf(kdf, op);
  const salt = file.slice(o, o + HISTORY_EXPORT_SALT_LEN);
  const check = file.slice(PREFIX_LEN, HISTORY_EXPORT_HEADER_LEN);
  return { version, kdf, salt, check, bytes: file.slice(0, HISTORY_EXPORT_HEADER_LEN) };
}

/** The export's secrets from the passphrase and the header's KDF fields (exported for the vectors). */
export async function deriveHistoryExportSecrets(
  passphrase: string,
  salt: Uint8Array,
  kdf: HistoryExportKdf,
  onProgress?: (fraction: number) => void,
): Promise<{ readonly aesKey: Uint8Array; readonly nonceBase: Uint8Array; readonly check: Uint8Array }> {
  const op = 'deriveHistoryExportSecrets';
  if (passphrase.length === 0) fail(ErrorCode.Decode, op, 'empty passphrase');
  if (!(salt instanceof Uint8Array) || salt.length !== HISTORY_EXPORT_SALT_LEN) fail(ErrorCode.Decode, op, 'salt');
  assertKdf(kdf, op);
  const passKey = await argon2id(utf8(passphrase.normalize('NFKC')), salt, { ...kdf, dkLen: 32 }, onProgress);
  const okm = hkdfSha256ZeroSalt(
    passKey,
    utf8(LABEL_HISTORY_EXPORT),
    AES_KEY_LEN + GCM_NONCE_LEN + HISTORY_EXPORT_CHECK_LEN,
  );
  return {
    aesKey: okm.slice(0, AES_KEY_LEN),
    nonceBase: okm.slice(AES_KEY_LEN, AES_KEY_LEN + GCM_NONCE_LEN),
    check: okm.slice(AES_KEY_LEN + GCM_NONCE_LEN),
  };
}

/** nonce(i) = nonce base XOR (0^4 ‖ u64be(i)), the attachments' rule (exported for the vectors). */
export const historyChunkNonce = chunkNonce;

/** AAD(i) = header ‖ u64be(i) ‖ u8 last (exported for the vectors). */
export const historyChunkAad = (header: Uint8Array, index: number, last: boolean) =>
  concat(header, u64be(index), Uint8Array.of(last ? 1 : 0));

/** Chunks of a plaintext of `size` bytes (≥ 1: an empty plaintext is one empty last chunk). */
const chunkCount = (size: number) => Math.max(1, Math.ceil(size / HISTORY_EXPORT_CHUNK_SIZE));

/**
 * Encrypts `plaintext` (the history document) under `passphrase` into a container file. The salt comes
 * from `rng`; nothing else is random.
 */
export async function sealHistoryExport(
  plaintext: Uint8Array,
  passphrase: string,
  rng: Rng,
  opts: HistoryExportOptions = {},
): Promise<Uint8Array> {
  const op = 'sealHistoryExport';
  if (plaintext.length > MAX_HISTORY_EXPORT_SIZE) fail(ErrorCode.LimitExceeded, op, 'history too large');
  const kdf = opts.kdf ?? HISTORY_EXPORT_ARGON2;
  assertKdf(kdf, op);
  const salt = rng(HISTORY_EXPORT_SALT_LEN);
  if (!(salt instanceof Uint8Array) || salt.length !== HISTORY_EXPORT_SALT_LEN)
    fail(ErrorCode.InvalidKey, op, 'rng returned the wrong length');
  const s = await deriveHistoryExportSecrets(passphrase, salt, kdf, opts.onProgress);
  const header = concat(
    MAGIC,
    Uint8Array.of(HISTORY_EXPORT_VERSION, HISTORY_EXPORT_KDF_ARGON2ID),
    u32be(kdf.m),
    u32be(kdf.t),
    Uint8Array.of(kdf.p),
    salt,
    s.check,
  );
  const aead = await aesGcmKey(s.aesKey, opts.subtle);
  const n = chunkCount(plaintext.length);
  const chunks: Promise<Uint8Array>[] = [];
  for (let i = 0; i < n; i++) {
    const piece = plaintext.subarray(i * HISTORY_EXPORT_CHUNK_SIZE, (i + 1) * HISTORY_EXPORT_CHUNK_SIZE);
    chunks.push(aead.encrypt(historyChunkNonce(s.nonceBase, i), piece, historyChunkAad(header, i, i === n - 1)));
  }
  return concat(header, ...(await Promise.all(chunks)));
}

/**
 * Decrypts a container file: the whole plaintext, or a typed error and nothing — `decode` / `limit_exceeded`
 * for a header that does not parse, `wrong_passphrase` when the key check differs, `decryption_failed` when
 * any chunk fails to authenticate (tampered, reordered, truncated or extended).
 */
export async function openHistoryExport(
  file: Uint8Array,
  passphrase: string,
  opts: Omit<HistoryExportOptions, 'kdf'> = {},
): Promise<Uint8Array> {
  const op = 'openHistoryExport';
  const h = parseHistoryExportHeader(file);
  const s = await deriveHistoryExportSecrets(passphrase, h.salt, h.kdf, opts.onProgress);
  if (!equal(s.check, h.check)) fail(ErrorCode.WrongPassphrase, op, 'the passphrase does not open this export');
  const body = file.subarray(HISTORY_EXPORT_HEADER_LEN);
  const full = HISTORY_EXPORT_CHUNK_SIZE + GCM_TAG_LEN;
  // Every chunk but the last is full; the last holds 0..C plaintext bytes (a full last chunk is possible).
  const n = Math.max(1, Math.ceil(body.length / full));
  const lastLen = body.length - (n - 1) * full;
  if (lastLen < GCM_TAG_LEN || body.length - n * GCM_TAG_LEN > MAX_HISTORY_EXPORT_SIZE)
    fail(ErrorCode.DecryptionFailed, op, 'truncated');
  const aead: AesGcmKey = await aesGcmKey(s.aesKey, opts.subtle);
  const parts: Promise<Uint8Array>[] = [];
  for (let i = 0; i < n; i++) {
    const c = body.subarray(i * full, Math.min(body.length, (i + 1) * full));
    parts.push(aead.decrypt(historyChunkNonce(s.nonceBase, i), c, historyChunkAad(h.bytes, i, i === n - 1)));
  }
  const settled = await Promise.allSettled(parts);
  if (settled.some((r) => r.status === 'rejected')) fail(ErrorCode.DecryptionFailed, op);
  return concat(...settled.map((r) => (r as PromiseFulfilledResult<Uint8Array>).value));
}
