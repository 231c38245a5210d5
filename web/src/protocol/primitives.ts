/**
 * Cryptographic primitives — the ONLY module that imports `@noble/*` or touches WebCrypto.
 *
 * - Hashing, HMAC, HKDF (RFC 5869), AES-256-GCM (NIST SP 800-38D) and ML-KEM-1024 (FIPS 203): @noble, sync.
 * - X25519 (RFC 7748) and Ed25519 (RFC 8032): behind the async `Curve25519` interface, with two
 *   implementations that must agree byte for byte: `nobleCurves` (pure JS, the reference and fallback)
 *   and `webCryptoCurves()` (3–15× faster where the platform has it: browsers, Node, workerd).
 *   Secret keys always come from caller-supplied randomness and are *imported*, so fixed seeds reproduce
 *   the published vectors on both paths.
 * - Ed25519 verification is strict on both paths: canonical encodings, S < L, no small-order public key,
 *   cofactorless equation (noble `{ zip215: false }`).
 * - Every X25519 output that is all zeros throws `zero_shared_secret` (RFC 7748 §6.1).
 *
 * Does NOT: generate randomness (callers pass an `Rng`), read a clock, or keep any state other than a
 * WeakMap cache of imported CryptoKeys keyed by the caller's own key arrays.
 * @module
 */
import { gcm } from '@noble/ciphers/aes.js';
import { ED25519_TORSION_SUBGROUP, ed25519, x25519 } from '@noble/curves/ed25519.js';
import { argon2idAsync } from '@noble/hashes/argon2.js';
import { hkdf as nobleHkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 as nobleSha256, sha512 as nobleSha512 } from '@noble/hashes/sha2.js';
import { ml_kem1024 } from '@noble/post-quantum/ml-kem.js';
import { concat, isAllZero } from './bytes.js';
import { ErrorCode, fail, ProtocolError } from './errors.js';

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
// ML-KEM-1024 (sync, noble; FIPS 203)
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

// ---------------------------------------------------------------------------------------------
// Curve25519: X25519 + Ed25519, async, two interchangeable implementations
// ---------------------------------------------------------------------------------------------

export interface Curve25519 {
  readonly name: 'noble' | 'webcrypto';
  /** X25519 public key for a 32-byte secret (clamped per RFC 7748 §5). */
  x25519PublicKey(secret: Uint8Array): Promise<Uint8Array>;
  /** X25519(secret, peer). Throws `invalid_key` for a malformed peer key, `zero_shared_secret` for 0. */
  x25519(secret: Uint8Array, peerPublic: Uint8Array): Promise<Uint8Array>;
  /** Ed25519 public key for a 32-byte seed (RFC 8032 §5.1.5). */
  ed25519PublicKey(secret: Uint8Array): Promise<Uint8Array>;
  ed25519Sign(secret: Uint8Array, message: Uint8Array): Promise<Uint8Array>;
  /** Strict verification; returns false (never throws) for any invalid key, signature or encoding. */
  ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean>;
}

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
  // R must be a canonical encoding (y < p).
  const ry = leToBigint(sig.subarray(0, 32)) & ((1n << 255n) - 1n);
  return ry < P;
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
  async x25519PublicKey(secret) {
    assertSecret(secret, 'x25519PublicKey');
    return x25519.getPublicKey(secret);
  },
  async x25519(secret, peerPublic) {
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
  async ed25519Sign(secret, message) {
    assertSecret(secret, 'ed25519Sign');
    return ed25519.sign(message, secret);
  },
  async ed25519Verify(publicKey, message, signature) {
    if (!(publicKey instanceof Uint8Array) || publicKey.length !== KEY_LEN || !ed25519StrictPublicOk(publicKey))
      return false;
    if (!ed25519SignatureShapeOk(signature)) return false;
    try {
      return ed25519.verify(signature, message, publicKey, { zip215: false });
    } catch {
      return false;
    }
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

function b64uDecode(s: string): Uint8Array {
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * WebCrypto implementation. Imported CryptoKeys are cached in WeakMaps keyed by the caller's key arrays,
 * so a long-lived key (identity, ratchet) is imported once. Callers must not mutate key arrays in place.
 */
export async function webCryptoCurves(
  subtle: SubtleCrypto | undefined = typeof crypto === 'undefined' ? undefined : crypto.subtle,
): Promise<Curve25519 | null> {
  if (!subtle) return null;
  const xPriv = new WeakMap<Uint8Array, Promise<CryptoKey>>();
  const xPub = new WeakMap<Uint8Array, Promise<CryptoKey>>();
  const ePriv = new WeakMap<Uint8Array, Promise<CryptoKey>>();
  const ePub = new WeakMap<Uint8Array, Promise<CryptoKey>>();

  const cached = (map: WeakMap<Uint8Array, Promise<CryptoKey>>, k: Uint8Array, make: () => Promise<CryptoKey>) => {
    let p = map.get(k);
    if (!p) {
      p = make();
      map.set(k, p);
      p.catch(() => map.delete(k));
    }
    return p;
  };
  const importXPriv = (sk: Uint8Array) =>
    cached(xPriv, sk, () =>
      subtle.importKey('pkcs8', bs(concat(PKCS8_X25519, sk)), { name: 'X25519' }, false, ['deriveBits']),
    );
  const importXPub = (pk: Uint8Array) =>
    cached(xPub, pk, () => subtle.importKey('raw', bs(pk), { name: 'X25519' }, false, []));
  const importEPriv = (sk: Uint8Array) =>
    cached(ePriv, sk, () =>
      subtle.importKey('pkcs8', bs(concat(PKCS8_ED25519, sk)), { name: 'Ed25519' }, false, ['sign']),
    );
  const importEPub = (pk: Uint8Array) =>
    cached(ePub, pk, () => subtle.importKey('raw', bs(pk), { name: 'Ed25519' }, false, ['verify']));

  const publicFromPkcs8 = async (prefix: Uint8Array, alg: string, usage: 'deriveBits' | 'sign', sk: Uint8Array) => {
    const key = await subtle.importKey('pkcs8', bs(concat(prefix, sk)), { name: alg }, true, [usage]);
    const jwk = (await subtle.exportKey('jwk', key)) as JsonWebKey;
    if (typeof jwk.x !== 'string') fail(ErrorCode.InvalidKey, 'publicKey', 'no public part');
    return b64uDecode(jwk.x);
  };

  const impl: Curve25519 = {
    name: 'webcrypto',
    async x25519PublicKey(secret) {
      assertSecret(secret, 'x25519PublicKey');
      return publicFromPkcs8(PKCS8_X25519, 'X25519', 'deriveBits', secret);
    },
    async x25519(secret, peerPublic) {
      assertSecret(secret, 'x25519');
      assertX25519Public(peerPublic, 'x25519');
      let bits: ArrayBuffer;
      try {
        const [priv, pub] = await Promise.all([importXPriv(secret), importXPub(peerPublic)]);
        // (cast: workerd's generated types spell the `public` member differently from the DOM lib)
        bits = await subtle.deriveBits(
          { name: 'X25519', public: pub } as unknown as Parameters<SubtleCrypto['deriveBits']>[0],
          priv,
          256,
        );
      } catch (e) {
        if (e instanceof ProtocolError) throw e;
        // WebCrypto throws OperationError for an all-zero result (low-order peer key).
        return fail(ErrorCode.ZeroSharedSecret, 'x25519', 'X25519 failed');
      }
      return checkedShared(new Uint8Array(bits), 'x25519');
    },
    async ed25519PublicKey(secret) {
      assertSecret(secret, 'ed25519PublicKey');
      return publicFromPkcs8(PKCS8_ED25519, 'Ed25519', 'sign', secret);
    },
    async ed25519Sign(secret, message) {
      assertSecret(secret, 'ed25519Sign');
      const key = await importEPriv(secret);
      return new Uint8Array(await subtle.sign({ name: 'Ed25519' }, key, bs(message)));
    },
    async ed25519Verify(publicKey, message, signature) {
      if (!(publicKey instanceof Uint8Array) || publicKey.length !== KEY_LEN || !ed25519StrictPublicOk(publicKey))
        return false;
      if (!ed25519SignatureShapeOk(signature)) return false;
      try {
        const key = await importEPub(publicKey);
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
  } catch {
    return null;
  }
  return impl;
}

let defaultCurvesPromise: Promise<Curve25519> | undefined;
/** WebCrypto where the platform has X25519 and Ed25519, otherwise noble. Resolved once per process. */
export function defaultCurves(): Promise<Curve25519> {
  defaultCurvesPromise ??= webCryptoCurves().then((w) => w ?? nobleCurves);
  return defaultCurvesPromise;
}
