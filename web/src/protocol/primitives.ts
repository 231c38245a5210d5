/**
 * Cryptographic primitives — the ONLY module that imports `@noble/*` or touches WebCrypto.
 *
 * - Hashing, HMAC, HKDF (RFC 5869) and AES-256-GCM (NIST SP 800-38D): @noble, sync.
 * - ML-KEM-1024 (FIPS 203): the sync noble functions (`mlkemKeygen`, …: the reference) and the async
 *   `MlKem1024` provider the protocol uses, `curves.mlkem`: WebCrypto where the platform has ML-KEM-1024
 *   (Chromium: 0.24 ms keygen / 0.08 ms decapsulation against noble's 3.8 / 1.8 ms), noble otherwise.
 *   Keys come from a caller's 64-byte seed on both paths (same public key); decapsulation imports the seed;
 *   encapsulation takes m from the caller's rng, except that WebCrypto draws m itself when the caller passes
 *   exactly `platformRng` (its API takes no m), so seeded rngs reproduce the vectors on every path.
 * - Bulk data (attachments): `aesGcmKey` prepares an AES-256-GCM key once for many chunks — WebCrypto where
 *   the platform has it (hardware AES, off the JS thread), noble otherwise, byte-identical — and
 *   `sha256Stream` hashes data that is never in memory whole.
 * - X25519 (RFC 7748) and Ed25519 (RFC 8032): behind the async `Curve25519` interface, with two
 *   implementations that must agree byte for byte: `nobleCurves` (pure JS, the reference and fallback)
 *   and `webCryptoCurves()` (3–15× faster where the platform has it: browsers, Node, workerd).
 *   Secret keys always come from caller-supplied randomness and are *imported*, so fixed seeds reproduce
 *   the published vectors on both paths.
 * - Ed25519 verification is strict and identical on both paths (docs/PROTOCOL.md §"Encoding conventions"
 *   rule 4): S < L; A and R canonical (y < p) and not one of the 8 small-order points; A must decompress;
 *   the cofactorless equation encode([S]B − [k]A) = R, k = SHA-512(R ‖ A ‖ M) mod L. noble's own
 *   `verify` checks the cofactored equation, so the noble path computes the cofactorless one itself, and a
 *   WebCrypto platform is used only if it refuses a signature that passes only the cofactored equation.
 * - Every X25519 output that is all zeros throws `zero_shared_secret` (RFC 7748 §6.1).
 *
 * Does NOT: generate randomness (callers pass an `Rng`; `platformRng` is one they may pass), read a clock, or
 * keep any state other than caches of imported CryptoKeys: our secrets keyed by the caller's own key arrays
 * (WeakMaps), public keys also by their bytes (bounded, `PUBLIC_KEY_IMPORT_CACHE`).
 * @module
 */
import { gcm } from '@noble/ciphers/aes.js';
import { ED25519_TORSION_SUBGROUP, ed25519, x25519 } from '@noble/curves/ed25519.js';
import { argon2idAsync } from '@noble/hashes/argon2.js';
import { expand as nobleExpand, hkdf as nobleHkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 as nobleSha256, sha512 as nobleSha512 } from '@noble/hashes/sha2.js';
import { ml_kem1024 } from '@noble/post-quantum/ml-kem.js';
import { concat, equal, fromHex, isAllZero } from './bytes.js';
import { PUBLIC_KEY_IMPORT_CACHE } from './constants.js';
import { ErrorCode, fail } from './errors.js';

/** Source of cryptographically secure random bytes, passed in by the caller (never global). */
export type Rng = (length: number) => Uint8Array;

export const KEY_LEN = 32;
export const SIG_LEN = 64;
export const AES_KEY_LEN = 32;
export const GCM_NONCE_LEN = 12;
export const GCM_TAG_LEN = 16;
export const MLKEM_PUBLIC_LEN = 1568;
export const MLKEM_SECRET_LEN = 3168;
export const MLKEM_CIPHERTEXT_LEN = 1568;
export const MLKEM_SEED_LEN = 64;
export const MLKEM_MSG_LEN = 32;

// ---------------------------------------------------------------------------------------------
// Hashes and KDFs (sync, noble)
// ---------------------------------------------------------------------------------------------

export const sha256 = (m: Uint8Array): Uint8Array => nobleSha256(m);
export const sha512 = (m: Uint8Array): Uint8Array => nobleSha512(m);
export const hmacSha256 = (key: Uint8Array, m: Uint8Array): Uint8Array => hmac(nobleSha256, key, m);

/** Iterated SHA-512 hashing for fingerprints: h = H(h ‖ key), `iterations` times (no intermediate copies). */
export function sha512Iterate(initial: Uint8Array, suffix: Uint8Array, iterations: number): Uint8Array {
  let h = initial;
  const buf = new Uint8Array(64 + suffix.length);
  for (let i = 0; i < iterations; i++) {
    if (i === 0) h = nobleSha512(concat(h, suffix));
    else {
      buf.set(h, 0);
      buf.set(suffix, 64);
      h = nobleSha512(buf);
    }
  }
  return h;
}

/** An HMAC-SHA256 key whose two padded key blocks are already hashed (opaque; see `hmacSha256Prepare`). */
export interface PreparedHmacKey {
  readonly [preparedHmac]: true;
}
declare const preparedHmac: unique symbol;
type NobleHmac = ReturnType<typeof hmac.create>;
/** Scratch state reused by `hmacSha256Prepared` (synchronous, so one is enough). */
const hmacScratch: NobleHmac = hmac.create(nobleSha256, new Uint8Array(32));

/**
 * Prepare `key` once for several HMAC-SHA256 computations (RFC 2104): the ipad/opad blocks are compressed
 * here, so each `hmacSha256Prepared` costs two compressions fewer and allocates no hash objects. The result
 * is key-equivalent: keep it only as long as the key itself.
 */
export function hmacSha256Prepare(key: Uint8Array): PreparedHmacKey {
  return hmac.create(nobleSha256, key) as unknown as PreparedHmacKey;
}

/** HMAC-SHA256(key, m) for a prepared key; byte-identical to `hmacSha256(key, m)`. */
export function hmacSha256Prepared(key: PreparedHmacKey, m: Uint8Array): Uint8Array {
  const out = new Uint8Array(32);
  (key as unknown as NobleHmac)._cloneInto(hmacScratch).update(m).digestInto(out);
  return out;
}

const ZERO_SALT_HMAC = hmacSha256Prepare(new Uint8Array(32));

/**
 * HKDF-SHA256 with the all-zero 32-byte salt (RFC 5869; equal to `hkdfSha256(ikm, zeros(32), info, length)`),
 * with the extract key prepared once per process.
 */
export function hkdfSha256ZeroSalt(ikm: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  return nobleExpand(nobleSha256, hmacSha256Prepared(ZERO_SALT_HMAC, ikm), info, length);
}

/** HKDF-SHA256 (RFC 5869). `salt` may be empty (treated as HashLen zeros by the RFC). */
export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  return nobleHkdf(nobleSha256, ikm, salt, info, length);
}

/**
 * argon2id (RFC 9106), async so a browser stays responsive; `onProgress` reports 0..1 for a progress bar.
 * Used only for client-side password pre-hashing (password.ts).
 */
export function argon2id(
  password: Uint8Array,
  salt: Uint8Array,
  opts: { m: number; t: number; p: number; dkLen: number },
  onProgress?: (fraction: number) => void,
): Promise<Uint8Array> {
  return argon2idAsync(password, salt, { ...opts, ...(onProgress ? { onProgress } : {}) });
}

// ---------------------------------------------------------------------------------------------
// AES-256-GCM (sync, noble). Nonces are always derived by the caller — never random here.
// ---------------------------------------------------------------------------------------------

export function aesGcmEncrypt(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  if (key.length !== AES_KEY_LEN || nonce.length !== GCM_NONCE_LEN) fail(ErrorCode.InvalidKey, 'aesGcmEncrypt');
  return gcm(key, nonce, aad).encrypt(plaintext);
}

/** Returns the plaintext, or throws `decryption_failed` (never a partial result). */
export function aesGcmDecrypt(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Uint8Array {
  if (key.length !== AES_KEY_LEN || nonce.length !== GCM_NONCE_LEN) fail(ErrorCode.InvalidKey, 'aesGcmDecrypt');
  if (ciphertext.length < GCM_TAG_LEN) fail(ErrorCode.DecryptionFailed, 'aesGcmDecrypt');
  try {
    return gcm(key, nonce, aad).decrypt(ciphertext);
  } catch {
    return fail(ErrorCode.DecryptionFailed, 'aesGcmDecrypt');
  }
}

// ---------------------------------------------------------------------------------------------
// Bulk data (attachments): AES-256-GCM with a prepared key, async, WebCrypto where the platform has it
// (hardware AES, off the JS thread) and noble otherwise; and an incremental SHA-256.
// ---------------------------------------------------------------------------------------------

/** An AES-256-GCM key prepared once for many chunks. Nonces and AADs are always the caller's. */
export interface AesGcmKey {
  readonly impl: 'webcrypto' | 'noble';
  encrypt(nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /** The plaintext, or throws `decryption_failed` (never a partial result). */
  decrypt(nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
}

function nobleAesGcmKey(key: Uint8Array): AesGcmKey {
  const k = key.slice();
  return {
    impl: 'noble',
    encrypt: async (nonce, plaintext, aad) => aesGcmEncrypt(k, nonce, plaintext, aad),
    decrypt: async (nonce, ciphertext, aad) => aesGcmDecrypt(k, nonce, ciphertext, aad),
  };
}

/**
 * Prepares `key` (32 bytes) for bulk AES-256-GCM. `subtle` defaults to the platform's WebCrypto; pass
 * `null` for the pure-JS path (tests check both agree byte for byte). The CryptoKey is not extractable.
 */
export async function aesGcmKey(
  key: Uint8Array,
  subtle: SubtleCrypto | null | undefined = typeof crypto === 'undefined' ? undefined : crypto.subtle,
): Promise<AesGcmKey> {
  if (!(key instanceof Uint8Array) || key.length !== AES_KEY_LEN) fail(ErrorCode.InvalidKey, 'aesGcmKey');
  if (!subtle) return nobleAesGcmKey(key);
  let ck: CryptoKey;
  try {
    ck = await subtle.importKey('raw', bs(key.slice()), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
  } catch {
    return nobleAesGcmKey(key);
  }
  const params = (nonce: Uint8Array, aad: Uint8Array): Parameters<SubtleCrypto['encrypt']>[0] => {
    if (nonce.length !== GCM_NONCE_LEN) fail(ErrorCode.InvalidKey, 'aesGcm', 'nonce must be 12 bytes');
    return { name: 'AES-GCM', iv: bs(nonce), additionalData: bs(aad), tagLength: GCM_TAG_LEN * 8 };
  };
  return {
    impl: 'webcrypto',
    async encrypt(nonce, plaintext, aad) {
      return new Uint8Array(await subtle.encrypt(params(nonce, aad), ck, bs(plaintext)));
    },
    async decrypt(nonce, ciphertext, aad) {
      const p = params(nonce, aad);
      if (ciphertext.length < GCM_TAG_LEN) fail(ErrorCode.DecryptionFailed, 'aesGcmDecrypt');
      try {
        return new Uint8Array(await subtle.decrypt(p, ck, bs(ciphertext)));
      } catch {
        return fail(ErrorCode.DecryptionFailed, 'aesGcmDecrypt');
      }
    },
  };
}

/**
 * One AES-256-GCM open with a key used once (a ratchet or sender-key message key): `aesGcmDecrypt`'s result and errors,
 * through WebCrypto where the platform has it (hardware AES off the JS thread, instead of noble's per-key
 * tables on it), noble otherwise.
 */
export async function aesGcmDecryptOnce(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  aad: Uint8Array,
  subtle: SubtleCrypto | null | undefined = typeof crypto === 'undefined' ? undefined : crypto.subtle,
): Promise<Uint8Array> {
  if (key.length !== AES_KEY_LEN || nonce.length !== GCM_NONCE_LEN) fail(ErrorCode.InvalidKey, 'aesGcmDecrypt');
  if (ciphertext.length < GCM_TAG_LEN) fail(ErrorCode.DecryptionFailed, 'aesGcmDecrypt');
  return (await aesGcmKey(key, subtle)).decrypt(nonce, ciphertext, aad);
}

/** Incremental SHA-256 (FIPS 180-4) for data that never sits in memory whole. */
export interface Sha256Stream {
  update(data: Uint8Array): void;
  /** The digest; the stream cannot be updated afterwards. */
  digest(): Uint8Array;
}

/**
 * One-shot SHA-256 of `data` on the platform's WebCrypto (native, 10–20× the pure-JS rate in a browser), or
 * noble's where there is none (`subtle` null or absent). Both give the same bytes.
 */
export async function sha256Async(
  data: Uint8Array,
  subtle: SubtleCrypto | null | undefined = typeof crypto === 'undefined' ? undefined : crypto.subtle,
): Promise<Uint8Array> {
  if (!subtle) return nobleSha256(data);
  return new Uint8Array(await subtle.digest('SHA-256', bs(data)));
}

export function sha256Stream(): Sha256Stream {
  const h = nobleSha256.create();
  return {
    update: (data) => void h.update(data),
    digest: () => h.digest(),
  };
}

// ---------------------------------------------------------------------------------------------
// ML-KEM-1024 (FIPS 203): sync noble functions (the reference), and the async `MlKem1024` provider that
// the protocol uses — WebCrypto where the platform has ML-KEM-1024 (Chromium ≥ 140), noble otherwise.
// ---------------------------------------------------------------------------------------------

export interface MlKemKeyPair {
  readonly publicKey: Uint8Array;
  readonly secretKey: Uint8Array;
}

/** Deterministic key generation from a 64-byte seed (d ‖ z, FIPS 203 §7.1). */
export function mlkemKeygen(seed: Uint8Array): MlKemKeyPair {
  if (seed.length !== MLKEM_SEED_LEN) fail(ErrorCode.InvalidKey, 'mlkemKeygen', 'seed must be 64 bytes');
  const { publicKey, secretKey } = ml_kem1024.keygen(seed);
  return { publicKey, secretKey };
}

/** Encapsulate with caller randomness `m` (32 bytes). Validates the public key (FIPS 203 §7.2). */
export function mlkemEncapsulate(
  publicKey: Uint8Array,
  m: Uint8Array,
): { ciphertext: Uint8Array; sharedSecret: Uint8Array } {
  if (publicKey.length !== MLKEM_PUBLIC_LEN) fail(ErrorCode.InvalidKey, 'mlkemEncapsulate', 'bad public key length');
  if (m.length !== MLKEM_MSG_LEN) fail(ErrorCode.InvalidKey, 'mlkemEncapsulate', 'bad randomness length');
  try {
    const { cipherText, sharedSecret } = ml_kem1024.encapsulate(publicKey, m);
    return { ciphertext: cipherText, sharedSecret };
  } catch {
    return fail(ErrorCode.InvalidKey, 'mlkemEncapsulate', 'invalid public key');
  }
}

/** Decapsulate. ML-KEM uses implicit rejection: a wrong ciphertext yields a pseudo-random secret. */
export function mlkemDecapsulate(ciphertext: Uint8Array, secretKey: Uint8Array): Uint8Array {
  if (ciphertext.length !== MLKEM_CIPHERTEXT_LEN) fail(ErrorCode.Decode, 'mlkemDecapsulate', 'bad ciphertext length');
  if (secretKey.length !== MLKEM_SECRET_LEN) fail(ErrorCode.InvalidKey, 'mlkemDecapsulate', 'bad secret key length');
  try {
    return ml_kem1024.decapsulate(ciphertext, secretKey);
  } catch {
    return fail(ErrorCode.InvalidKey, 'mlkemDecapsulate', 'invalid secret key');
  }
}

/**
 * The platform's CSPRNG (`crypto.getRandomValues`) as an `Rng`, for callers (the app's engine) to pass.
 * Passing exactly this function — compared by identity — allows a provider to let the platform draw
 * randomness itself where its API cannot take ours (WebCrypto `encapsulateBits`); any other rng (a seeded
 * test or vector rng) is always consumed, so fixed seeds reproduce the vectors on every path.
 */
export const platformRng: Rng = (length) => {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(length, i + 65536)));
  return out;
};

/**
 * Our ML-KEM-1024 decapsulation key, as a KEM prekey record keeps it (local state, never on the wire).
 * Keys generated since the record kept seeds carry `seed`; records written before carry only `secretKey`
 * and still decapsulate (through noble). Keys made by the noble provider carry both, so a platform
 * without ML-KEM never re-expands the seed per decapsulation.
 */
export interface OurMlKemKey {
  readonly publicKey: Uint8Array;
  /** d ‖ z (64 bytes, FIPS 203 §7.1): what WebCrypto imports (`raw-seed`). */
  readonly seed?: Uint8Array;
  /** The expanded decapsulation key (3,168 bytes, FIPS 203 §7.1 dk): what noble decapsulates with. */
  readonly secretKey?: Uint8Array;
}

/** ML-KEM-1024 behind one async interface; the two implementations agree byte for byte. */
export interface MlKem1024 {
  readonly name: 'noble' | 'webcrypto';
  /** Key pair from a 64-byte seed (d ‖ z); the same public key on every path. */
  keygen(seed: Uint8Array): Promise<OurMlKemKey>;
  /**
   * Encapsulates to `publicKey` (validated, FIPS 203 §7.2; `invalid_key` otherwise). m = rng(32), drawn
   * synchronously before anything else — except on the WebCrypto path when `rng` is `platformRng`: then the
   * platform draws m inside `encapsulateBits` (the same CSPRNG), and `rng` is not called.
   */
  encapsulate(publicKey: Uint8Array, rng: Rng): Promise<{ ciphertext: Uint8Array; sharedSecret: Uint8Array }>;
  /** Decapsulates with the seed where the path can, else the expanded key (implicit rejection). */
  decapsulate(ciphertext: Uint8Array, key: OurMlKemKey): Promise<Uint8Array>;
}

function assertMlKemSeed(seed: Uint8Array, op: string): void {
  if (!(seed instanceof Uint8Array) || seed.length !== MLKEM_SEED_LEN)
    fail(ErrorCode.InvalidKey, op, 'seed must be 64 bytes');
}

/** Noble decapsulation of a stored key: the expanded key if the record has it, else expanded from the seed. */
function nobleDecapsulateKey(ciphertext: Uint8Array, key: OurMlKemKey): Uint8Array {
  const op = 'mlkemDecapsulate';
  if (key.secretKey) return mlkemDecapsulate(ciphertext, key.secretKey);
  if (!key.seed) return fail(ErrorCode.InvalidKey, op, 'no decapsulation key');
  assertMlKemSeed(key.seed, op);
  if (ciphertext.length !== MLKEM_CIPHERTEXT_LEN) fail(ErrorCode.Decode, op, 'bad ciphertext length');
  return mlkemDecapsulate(ciphertext, mlkemKeygen(key.seed).secretKey);
}

/** Pure-JS ML-KEM-1024 (noble): the reference, and the path wherever the platform has none (Node 20, workerd). */
export const nobleMlKem: MlKem1024 = {
  name: 'noble',
  async keygen(seed) {
    assertMlKemSeed(seed, 'mlkemKeygen');
    const { publicKey, secretKey } = mlkemKeygen(seed);
    return { publicKey, seed: seed.slice(), secretKey };
  },
  async encapsulate(publicKey, rng) {
    return mlkemEncapsulate(publicKey, rng(MLKEM_MSG_LEN));
  },
  async decapsulate(ciphertext, key) {
    return nobleDecapsulateKey(ciphertext, key);
  },
};

const MLKEM_ALG = { name: 'ML-KEM-1024' } as const;

/** The ML-KEM members of WebCrypto (WICG "Modern Algorithms in the Web Cryptography API"); not yet in TS's DOM lib. */
interface MlKemSubtle {
  importKey(
    format: 'raw-seed' | 'raw-public',
    key: BufferSource,
    alg: { name: string },
    extractable: boolean,
    usages: string[],
  ): Promise<CryptoKey>;
  exportKey(format: 'raw-public', key: CryptoKey): Promise<ArrayBuffer>;
  getPublicKey(key: CryptoKey, usages: string[]): Promise<CryptoKey>;
  encapsulateBits(alg: { name: string }, key: CryptoKey): Promise<{ sharedKey: ArrayBuffer; ciphertext: ArrayBuffer }>;
  decapsulateBits(alg: { name: string }, key: CryptoKey, ciphertext: BufferSource): Promise<ArrayBuffer>;
}

/** A fixed seed and encapsulation randomness whose expected results the probe compares (SHA-256 of each). */
const MLKEM_PROBE = {
  seed: Uint8Array.from({ length: MLKEM_SEED_LEN }, (_, i) => i),
  publicKeySha256: 'c7b8fa0aa471d5ae18922d6ccad5b31e1d84f92ae723abfd13747018740a8530',
  m: Uint8Array.from({ length: MLKEM_MSG_LEN }, (_, i) => 0xa0 + i),
};

/**
 * WebCrypto ML-KEM-1024, or null where the platform has none or disagrees with noble on the probe (a fixed
 * seed's public key, and the decapsulation of noble's ciphertext for it). Private keys are imported from
 * the seed (`raw-seed`, not extractable) per use; the public key comes from `getPublicKey`. Decapsulation
 * of a record without a seed (written before) and encapsulation with any rng but `platformRng` go to noble.
 */
export async function webCryptoMlKem(
  subtle: SubtleCrypto | undefined = typeof crypto === 'undefined' ? undefined : crypto.subtle,
): Promise<MlKem1024 | null> {
  const s = subtle as unknown as Partial<MlKemSubtle> | undefined;
  if (
    !s ||
    typeof s.encapsulateBits !== 'function' ||
    typeof s.decapsulateBits !== 'function' ||
    typeof s.getPublicKey !== 'function'
  )
    return null;
  const ws = s as MlKemSubtle;
  const importSeed = (seed: Uint8Array) => ws.importKey('raw-seed', bs(seed), MLKEM_ALG, false, ['decapsulateBits']);
  const impl: MlKem1024 = {
    name: 'webcrypto',
    async keygen(seed) {
      assertMlKemSeed(seed, 'mlkemKeygen');
      const kept = seed.slice();
      let publicKey: Uint8Array;
      try {
        const priv = await importSeed(kept);
        publicKey = new Uint8Array(await ws.exportKey('raw-public', await ws.getPublicKey(priv, ['encapsulateBits'])));
      } catch {
        return fail(ErrorCode.InvalidKey, 'mlkemKeygen', 'key generation failed');
      }
      return { publicKey, seed: kept };
    },
    async encapsulate(publicKey, rng) {
      if (rng !== platformRng) return mlkemEncapsulate(publicKey, rng(MLKEM_MSG_LEN));
      const op = 'mlkemEncapsulate';
      if (!(publicKey instanceof Uint8Array) || publicKey.length !== MLKEM_PUBLIC_LEN)
        fail(ErrorCode.InvalidKey, op, 'bad public key length');
      let pub: CryptoKey;
      try {
        // The import checks the encoding (every coefficient < q, FIPS 203 §7.2) as noble's encapsulate does.
        pub = await ws.importKey('raw-public', bs(publicKey), MLKEM_ALG, true, ['encapsulateBits']);
      } catch {
        return fail(ErrorCode.InvalidKey, op, 'invalid public key');
      }
      const r = await ws.encapsulateBits(MLKEM_ALG, pub);
      return { ciphertext: new Uint8Array(r.ciphertext), sharedSecret: new Uint8Array(r.sharedKey) };
    },
    async decapsulate(ciphertext, key) {
      const op = 'mlkemDecapsulate';
      if (!key.seed) return nobleDecapsulateKey(ciphertext, key);
      assertMlKemSeed(key.seed, op);
      if (!(ciphertext instanceof Uint8Array) || ciphertext.length !== MLKEM_CIPHERTEXT_LEN)
        fail(ErrorCode.Decode, op, 'bad ciphertext length');
      try {
        return new Uint8Array(await ws.decapsulateBits(MLKEM_ALG, await importSeed(key.seed), bs(ciphertext)));
      } catch {
        return fail(ErrorCode.InvalidKey, op, 'invalid secret key');
      }
    },
  };
  try {
    // (A constant stands for noble's public key: its keygen would cost milliseconds at every start.)
    const kp = await impl.keygen(MLKEM_PROBE.seed);
    if (edKeyString(nobleSha256(kp.publicKey)) !== MLKEM_PROBE.publicKeySha256) return null;
    const { ciphertext, sharedSecret } = mlkemEncapsulate(kp.publicKey, MLKEM_PROBE.m);
    if (!equal(await impl.decapsulate(ciphertext, kp), sharedSecret)) return null;
    // And the platform's own encapsulation must decapsulate to its shared secret.
    const own = await impl.encapsulate(kp.publicKey, platformRng);
    if (!equal(await impl.decapsulate(own.ciphertext, kp), own.sharedSecret)) return null;
  } catch {
    return null;
  }
  return impl;
}

// ---------------------------------------------------------------------------------------------
// Curve25519: X25519 + Ed25519, async, two interchangeable implementations
// ---------------------------------------------------------------------------------------------

/**
 * One of our secret keys, either bare (32 bytes) or with its public half. Passing the pair lets the WebCrypto
 * path import the secret as a JWK `{d, x}` instead of PKCS#8 (on Node 20 ≈ 0.1 ms instead of 0.5–0.9 ms,
 * nodejs/node#50386). The public half MUST belong to the secret: the WebCrypto path refuses a mismatch
 * (`invalid_key`; the platform is probed for that check, see `webCryptoCurves`), noble ignores it.
 */
export type OurSecret = Uint8Array | { readonly secretKey: Uint8Array; readonly publicKey: Uint8Array };

export interface Curve25519 {
  readonly name: 'noble' | 'webcrypto';
  /**
   * ML-KEM-1024 on the same platform (it travels with the curves so every protocol step that takes
   * `curves` has it): WebCrypto's where the platform has it and `webCryptoCurves` was not told otherwise.
   */
  readonly mlkem: MlKem1024;
  /** X25519 public key for a 32-byte secret (clamped per RFC 7748 §5). */
  x25519PublicKey(secret: Uint8Array): Promise<Uint8Array>;
  /** X25519(ours, peer). Throws `invalid_key` for a malformed peer key, `zero_shared_secret` for 0. */
  x25519(ours: OurSecret, peerPublic: Uint8Array): Promise<Uint8Array>;
  /** Ed25519 public key for a 32-byte seed (RFC 8032 §5.1.5). */
  ed25519PublicKey(secret: Uint8Array): Promise<Uint8Array>;
  ed25519Sign(ours: OurSecret, message: Uint8Array): Promise<Uint8Array>;
  /** Strict verification; returns false (never throws) for any invalid key, signature or encoding. */
  ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean>;
  /**
   * One AES-256-GCM open with a message key used once (the ratchet's and sender keys'), on the same platform:
   * `aesGcmDecryptOnce` through this WebCrypto for `webCryptoCurves` (hardware AES off the JS thread instead
   * of noble's per-key tables on it), noble's `aesGcmDecrypt` for `nobleCurves`. Same result and errors.
   */
  aesGcmOpen(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
}

const secretOf = (k: OurSecret): Uint8Array => (k instanceof Uint8Array ? k : k.secretKey);
const publicOf = (k: OurSecret): Uint8Array | null => (k instanceof Uint8Array ? null : k.publicKey);

const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;

function leToBigint(b: Uint8Array): bigint {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]!);
  return n;
}

/**
 * X25519 public keys on our wire must be canonical: 32 bytes, top bit clear, u < p (RFC 7748 §5 lets
 * implementations accept the rest; we refuse so every key has one encoding).
 */
export function assertX25519Public(pk: Uint8Array, operation: string): void {
  if (!(pk instanceof Uint8Array) || pk.length !== KEY_LEN)
    fail(ErrorCode.InvalidKey, operation, 'X25519 key must be 32 bytes');
  if ((pk[31]! & 0x80) !== 0 || leToBigint(pk) >= P) fail(ErrorCode.InvalidKey, operation, 'non-canonical X25519 key');
}

/** Ed25519 public keys: 32 bytes, canonical y < p, and not of small order (checked against the 8-torsion). */
export function assertEd25519Public(pk: Uint8Array, operation: string): void {
  if (!(pk instanceof Uint8Array) || pk.length !== KEY_LEN)
    fail(ErrorCode.InvalidKey, operation, 'Ed25519 key must be 32 bytes');
  if (!ed25519StrictPublicOk(pk)) fail(ErrorCode.InvalidKey, operation, 'invalid Ed25519 key');
}

function edKeyString(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}
/** The 8 points of small order, in both sign-bit variants (noble's ED25519_TORSION_SUBGROUP). */
const SMALL_ORDER_ED = new Set<string>(
  ED25519_TORSION_SUBGROUP.flatMap((hex) => {
    const flipped = (Number.parseInt(hex.slice(62, 64), 16) ^ 0x80).toString(16).padStart(2, '0');
    return [hex, hex.slice(0, 62) + flipped];
  }),
);
/** Cheap structural checks shared by both paths (the point decode itself happens in verification). */
function ed25519StrictPublicOk(pk: Uint8Array): boolean {
  const y = leToBigint(pk) & ((1n << 255n) - 1n);
  if (y >= P) return false;
  return !SMALL_ORDER_ED.has(edKeyString(pk));
}

function ed25519SignatureShapeOk(sig: Uint8Array): boolean {
  if (!(sig instanceof Uint8Array) || sig.length !== SIG_LEN) return false;
  // S must be canonical: S < L (RFC 8032 §5.1.7 step 1).
  if (leToBigint(sig.subarray(32)) >= L) return false;
  // R must be a canonical encoding (y < p) and not one of the small-order points (as libsodium refuses
  // them; an honest R = [r]B never is one).
  return ed25519StrictPublicOk(sig.subarray(0, 32));
}

/**
 * The cofactorless RFC 8032 §5.1.7 equation, as OpenSSL, BoringSSL and libsodium check it: the canonical
 * encoding of [S]B − [k]A must equal the R bytes. (noble's `verify` checks [8]([S]B − R − [k]A) = 0, which
 * also accepts an R or A with a torsion component, so the two curve paths would disagree on such a
 * signature.) The shape checks above have already run.
 */
function nobleVerifyCofactorless(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  const A = ed25519.Point.fromBytes(publicKey, false); // throws if A does not decompress
  const r = signature.subarray(0, 32);
  const k = leToBigint(nobleSha512(concat(r, publicKey, message))) % L;
  const S = leToBigint(signature.subarray(32));
  const check = ed25519.Point.BASE.multiplyUnsafe(S).subtract(A.multiplyUnsafe(k)).toBytes();
  let diff = 0;
  for (let i = 0; i < 32; i++) diff |= check[i]! ^ r[i]!;
  return diff === 0;
}

function checkedShared(out: Uint8Array, op: string): Uint8Array {
  if (isAllZero(out)) fail(ErrorCode.ZeroSharedSecret, op, 'all-zero X25519 output');
  return out;
}

function assertSecret(sk: Uint8Array, op: string): void {
  if (!(sk instanceof Uint8Array) || sk.length !== KEY_LEN)
    fail(ErrorCode.InvalidKey, op, 'secret key must be 32 bytes');
}

/** Pure-JS reference implementation (noble). */
export const nobleCurves: Curve25519 = {
  name: 'noble',
  mlkem: nobleMlKem,
  async x25519PublicKey(secret) {
    assertSecret(secret, 'x25519PublicKey');
    return x25519.getPublicKey(secret);
  },
  async x25519(ours, peerPublic) {
    const secret = secretOf(ours);
    assertSecret(secret, 'x25519');
    assertX25519Public(peerPublic, 'x25519');
    let out: Uint8Array;
    try {
      out = x25519.getSharedSecret(secret, peerPublic);
    } catch {
      // noble itself refuses an all-zero result
      return fail(ErrorCode.ZeroSharedSecret, 'x25519', 'all-zero X25519 output');
    }
    return checkedShared(out, 'x25519');
  },
  async ed25519PublicKey(secret) {
    assertSecret(secret, 'ed25519PublicKey');
    return ed25519.getPublicKey(secret);
  },
  async ed25519Sign(ours, message) {
    const secret = secretOf(ours);
    assertSecret(secret, 'ed25519Sign');
    // noble derives the public key from the seed itself, so a wrong `publicKey` can never enter a signature.
    return ed25519.sign(message, secret);
  },
  async ed25519Verify(publicKey, message, signature) {
    if (!(publicKey instanceof Uint8Array) || publicKey.length !== KEY_LEN || !ed25519StrictPublicOk(publicKey))
      return false;
    if (!ed25519SignatureShapeOk(signature)) return false;
    try {
      return nobleVerifyCofactorless(publicKey, message, signature);
    } catch {
      return false;
    }
  },
  async aesGcmOpen(key, nonce, ciphertext, aad) {
    return aesGcmDecrypt(key, nonce, ciphertext, aad);
  },
};

// PKCS#8 wrappers for raw 32-byte private keys (RFC 8410 §7): SEQUENCE { version 0, AlgId, OCTET STRING { OCTET STRING key } }
const PKCS8_X25519 = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
]);
const PKCS8_ED25519 = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
]);

/** TS 5.9 types WebCrypto inputs as ArrayBuffer-backed views; ours always are. */
const bs = (u: Uint8Array): Uint8Array<ArrayBuffer> => u as Uint8Array<ArrayBuffer>;

/** The X25519 base point u = 9 (RFC 7748 §4.1): X25519(secret, 9) is the public key. */
export const X25519_BASE_POINT: Uint8Array = Uint8Array.from({ length: KEY_LEN }, (_, i) => (i === 0 ? 9 : 0));

function b64uDecode(s: string): Uint8Array {
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const B64U = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** base64url without padding (RFC 7515 §2), for JWK members. */
export function b64uEncode(b: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
    out += B64U[n >>> 18]! + B64U[(n >>> 12) & 63]! + B64U[(n >>> 6) & 63]! + B64U[n & 63]!;
  }
  if (i < b.length) {
    const n = (b[i]! << 16) | ((b[i + 1] ?? 0) << 8);
    out += B64U[n >>> 18]! + B64U[(n >>> 12) & 63]!;
    if (i + 1 < b.length) out += B64U[(n >>> 6) & 63]!;
  }
  return out;
}

/** A cached CryptoKey import; `key` is set once it resolved, so later calls dispatch without an await. */
interface Slot {
  readonly p: Promise<CryptoKey>;
  key: CryptoKey | undefined;
  /** Our public key, once known: validated by a JWK import, or exported from a PKCS#8 import. */
  pub: Uint8Array | undefined;
}
type SlotMap = WeakMap<Uint8Array, Slot>;

function slot(map: SlotMap, k: Uint8Array, make: () => Promise<CryptoKey>, knownPub?: Uint8Array): Slot {
  let s = map.get(k);
  if (s) return s;
  const fresh: Slot = { p: make(), key: undefined, pub: undefined };
  fresh.p.then(
    (key) => {
      fresh.key = key;
      fresh.pub ??= knownPub;
    },
    () => {
      if (map.get(k) === fresh) map.delete(k);
    },
  );
  map.set(k, fresh);
  s = fresh;
  return s;
}

type CurveAlg = 'X25519' | 'Ed25519';

/**
 * A fixed Ed25519 key A = [a]B (a = 0x0123456789abcdef, a bare scalar) and message, with two signatures
 * (S = r + k·a mod L, k = SHA-512(R ‖ A ‖ M) mod L, r = 0xfedcba9876543210): `valid` has R = [r]B;
 * `torsion` has R = [r]B + T with T a point of order 8, so [S]B − [k]A = R − T ≠ R: only a cofactored
 * verifier accepts it. The same cases are in primitives.test.ts.
 */
const COFACTOR_PROBE = {
  publicKey: fromHex('4007da55933fc4e347bc451b387cfef6b0dfec7b14da5aab1738f47c52f77b70'),
  message: new TextEncoder().encode('e2e-chat ed25519 cofactorless probe'),
  valid: fromHex(
    '3db0f9f5298629a72b6dfcd3975a47e1ca5c12f2e048a194f1bcd012b36e863f' +
      '520d98df4d024fb6e35f912528305585201001292affafca80aef8fc18028505',
  ),
  torsion: fromHex(
    '1541e3eac7c3e621230d95d691a5841c71d832a7dff8178a75e3a5ea2db599f2' +
      'e9437390de0a70c3da5ea63b059b561a15beb25d635a81eab7a04249cd09320c',
  ),
};

/**
 * WebCrypto implementation. Imported CryptoKeys are cached in WeakMaps keyed by the caller's key arrays,
 * so a long-lived key (identity, ratchet) is imported once. Callers must not mutate key arrays in place.
 *
 * Private keys are imported as JWK `{d, x}` when the caller passes the key pair (the public half is known)
 * and the platform refuses a JWK whose `x` does not match `d` (probed below); otherwise as PKCS#8,
 * extractable, so `x25519PublicKey` / `ed25519PublicKey` read the public half from that same cached key
 * (one import per secret). The CryptoKeys never leave this closure. `options.jwkPrivateImport: false`
 * forces PKCS#8 (tests compare both import paths with noble). `mlkem` is `webCryptoMlKem(subtle)` where the
 * platform passes its probe, else noble; `options.mlkem: 'noble'` forces noble.
 */
export async function webCryptoCurves(
  subtle: SubtleCrypto | undefined = typeof crypto === 'undefined' ? undefined : crypto.subtle,
  options: { readonly jwkPrivateImport?: boolean; readonly mlkem?: 'noble' | 'auto' } = {},
): Promise<Curve25519 | null> {
  if (!subtle) return null;
  const xPriv: SlotMap = new WeakMap();
  const xPub: SlotMap = new WeakMap();
  const ePriv: SlotMap = new WeakMap();
  const ePub: SlotMap = new WeakMap();
  /** Set by the probe at the end: whether private JWK imports are used (per curve). */
  const jwkOk = { X25519: false, Ed25519: false };

  const importPriv = (alg: CurveAlg, sk: Uint8Array, pk: Uint8Array | null, useJwk: boolean): Promise<CryptoKey> => {
    const usage: 'deriveBits' | 'sign' = alg === 'X25519' ? 'deriveBits' : 'sign';
    if (pk && useJwk) {
      const jwk: JsonWebKey = { kty: 'OKP', crv: alg, d: b64uEncode(sk), x: b64uEncode(pk) };
      return subtle.importKey('jwk', jwk, { name: alg }, false, [usage]);
    }
    const prefix = alg === 'X25519' ? PKCS8_X25519 : PKCS8_ED25519;
    return subtle.importKey('pkcs8', bs(concat(prefix, sk)), { name: alg }, true, [usage]);
  };
  const privSlot = (alg: CurveAlg, ours: OurSecret): Slot => {
    const sk = secretOf(ours);
    const pk = jwkOk[alg] ? publicOf(ours) : null;
    return slot(alg === 'X25519' ? xPriv : ePriv, sk, () => importPriv(alg, sk, pk, true), pk ?? undefined);
  };
  const awaitPriv = async (s: Slot, op: string): Promise<CryptoKey> => {
    try {
      return await s.p;
    } catch {
      return fail(ErrorCode.InvalidKey, op, 'secret key import failed (public key mismatch?)');
    }
  };
  // Public keys are also cached by their bytes: a peer's identity, signed prekey and signing key arrive in
  // a fresh array with every decoded bundle or message, and re-importing them was a third of the imports
  // of a session set-up. Bounded, oldest out first (a hit moves the entry to the end).
  const pubByBytes: Record<CurveAlg, Map<string, Slot>> = { X25519: new Map(), Ed25519: new Map() };
  const pubSlot = (alg: CurveAlg, pk: Uint8Array): Slot => {
    const byArray = alg === 'X25519' ? xPub : ePub;
    const known = byArray.get(pk);
    if (known) return known;
    const byBytes = pubByBytes[alg];
    const id = edKeyString(pk);
    const hit = byBytes.get(id);
    if (hit) {
      byBytes.delete(id);
      byBytes.set(id, hit);
      byArray.set(pk, hit);
      return hit;
    }
    const fresh = slot(byArray, pk, () =>
      subtle.importKey('raw', bs(pk), { name: alg }, false, alg === 'X25519' ? [] : ['verify']),
    );
    byBytes.set(id, fresh);
    if (byBytes.size > PUBLIC_KEY_IMPORT_CACHE) byBytes.delete(byBytes.keys().next().value!);
    fresh.p.catch(() => {
      if (byBytes.get(id) === fresh) byBytes.delete(id);
    });
    return fresh;
  };
  const publicFromSlot = async (s: Slot, op: string): Promise<Uint8Array> => {
    if (s.pub) return s.pub;
    const key = await awaitPriv(s, op);
    if (s.pub) return s.pub;
    const jwk = (await subtle.exportKey('jwk', key)) as JsonWebKey;
    if (typeof jwk.x !== 'string') fail(ErrorCode.InvalidKey, op, 'no public part');
    s.pub = b64uDecode(jwk.x);
    return s.pub;
  };
  const derive = async (priv: CryptoKey, pub: CryptoKey): Promise<Uint8Array> => {
    let bits: ArrayBuffer;
    try {
      // (cast: workerd's generated types spell the `public` member differently from the DOM lib)
      bits = await subtle.deriveBits(
        { name: 'X25519', public: pub } as unknown as Parameters<SubtleCrypto['deriveBits']>[0],
        priv,
        256,
      );
    } catch {
      // WebCrypto throws OperationError for an all-zero result (low-order peer key).
      return fail(ErrorCode.ZeroSharedSecret, 'x25519', 'X25519 failed');
    }
    return checkedShared(new Uint8Array(bits), 'x25519');
  };

  const impl: Curve25519 & { mlkem: MlKem1024 } = {
    name: 'webcrypto',
    mlkem: nobleMlKem,
    aesGcmOpen: (key, nonce, ciphertext, aad) => aesGcmDecryptOnce(key, nonce, ciphertext, aad, subtle),
    async x25519PublicKey(secret) {
      assertSecret(secret, 'x25519PublicKey');
      return publicFromSlot(privSlot('X25519', secret), 'x25519PublicKey');
    },
    async x25519(ours, peerPublic) {
      assertSecret(secretOf(ours), 'x25519');
      assertX25519Public(peerPublic, 'x25519');
      const priv = privSlot('X25519', ours);
      const pub = pubSlot('X25519', peerPublic);
      // Both keys cached: dispatch the job now (no await first), so it overlaps with the caller's next call.
      if (priv.key && pub.key) return derive(priv.key, pub.key);
      const privKey = await awaitPriv(priv, 'x25519');
      let pubKey: CryptoKey;
      try {
        pubKey = await pub.p;
      } catch {
        return fail(ErrorCode.ZeroSharedSecret, 'x25519', 'X25519 failed');
      }
      return derive(privKey, pubKey);
    },
    async ed25519PublicKey(secret) {
      assertSecret(secret, 'ed25519PublicKey');
      return publicFromSlot(privSlot('Ed25519', secret), 'ed25519PublicKey');
    },
    async ed25519Sign(ours, message) {
      assertSecret(secretOf(ours), 'ed25519Sign');
      const s = privSlot('Ed25519', ours);
      const key = s.key ?? (await awaitPriv(s, 'ed25519Sign'));
      return new Uint8Array(await subtle.sign({ name: 'Ed25519' }, key, bs(message)));
    },
    async ed25519Verify(publicKey, message, signature) {
      if (!(publicKey instanceof Uint8Array) || publicKey.length !== KEY_LEN || !ed25519StrictPublicOk(publicKey))
        return false;
      if (!ed25519SignatureShapeOk(signature)) return false;
      try {
        const s = pubSlot('Ed25519', publicKey);
        const key = s.key ?? (await s.p);
        return await subtle.verify({ name: 'Ed25519' }, key, bs(signature), bs(message));
      } catch {
        return false;
      }
    },
  };

  // Feature detection: the platform must do both curves and agree with the reference on a fixed key.
  try {
    const probe = new Uint8Array(32).fill(7);
    const [a, b, c, d] = await Promise.all([
      impl.x25519PublicKey(probe),
      nobleCurves.x25519PublicKey(probe),
      impl.ed25519PublicKey(probe),
      nobleCurves.ed25519PublicKey(probe),
    ]);
    if (edKeyString(a) !== edKeyString(b) || edKeyString(c) !== edKeyString(d)) return null;
    // JWK private imports only where the platform checks `x` against `d` (Node, Chromium, workerd do): a
    // platform that accepted any `x` would let a wrong public half into Ed25519 signatures. And the keys
    // must work: DH to the base point and a signature must equal the reference.
    const other = new Uint8Array(32).fill(8);
    const [xOther, eOther] = await Promise.all([
      nobleCurves.x25519PublicKey(other),
      nobleCurves.ed25519PublicKey(other),
    ]);
    const refuses = (p: Promise<CryptoKey>) =>
      p.then(
        () => false,
        () => true,
      );
    const works = async (alg: CurveAlg, pk: Uint8Array, check: (key: CryptoKey) => Promise<boolean>) => {
      try {
        return await check(await importPriv(alg, probe.slice(), pk, true));
      } catch {
        return false;
      }
    };
    const msg = Uint8Array.of(1, 2, 3);
    const [xRefuses, eRefuses, xWorks, eWorks] = await Promise.all([
      refuses(importPriv('X25519', probe.slice(), xOther, true)),
      refuses(importPriv('Ed25519', probe.slice(), eOther, true)),
      works('X25519', b, async (key) => {
        const basePub = await subtle.importKey('raw', bs(X25519_BASE_POINT), { name: 'X25519' }, false, []);
        return edKeyString(await derive(key, basePub)) === edKeyString(b);
      }),
      works('Ed25519', d, async (key) => {
        const sig = new Uint8Array(await subtle.sign({ name: 'Ed25519' }, key, bs(msg)));
        return edKeyString(sig) === edKeyString(await nobleCurves.ed25519Sign(probe, msg));
      }),
    ]);
    // Verification must be the cofactorless equation of the reference: a valid signature verifies, and one
    // whose R carries an order-8 torsion component (accepted by a cofactored verifier) does not.
    const edKey = await subtle.importKey('raw', bs(COFACTOR_PROBE.publicKey), { name: 'Ed25519' }, false, ['verify']);
    const verifies = (sig: Uint8Array) =>
      subtle.verify({ name: 'Ed25519' }, edKey, bs(sig), bs(COFACTOR_PROBE.message));
    const [validOk, torsionOk] = await Promise.all([verifies(COFACTOR_PROBE.valid), verifies(COFACTOR_PROBE.torsion)]);
    if (!validOk || torsionOk) return null;
    const allowed = options.jwkPrivateImport !== false;
    jwkOk.X25519 = allowed && xRefuses && xWorks;
    jwkOk.Ed25519 = allowed && eRefuses && eWorks;
  } catch {
    return null;
  }
  if (options.mlkem !== 'noble') impl.mlkem = (await webCryptoMlKem(subtle)) ?? nobleMlKem;
  return impl;
}

let defaultCurvesPromise: Promise<Curve25519> | undefined;
/** WebCrypto where the platform has X25519 and Ed25519, otherwise noble. Resolved once per process. */
export function defaultCurves(): Promise<Curve25519> {
  defaultCurvesPromise ??= webCryptoCurves().then((w) => w ?? nobleCurves);
  return defaultCurvesPromise;
}
