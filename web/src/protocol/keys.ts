/**
 * Key types. Our key pairs and the peer's public keys are distinct types (as vodozemac separates
 * `ChainKey` from `RemoteChainKey`), so a peer's key can never be passed where our secret is expected,
 * and a peer's bytes become a key only through a validating decoder (`theirX25519`, `theirEd25519`).
 *
 * Does NOT: store keys, or generate randomness itself (the caller's `Rng` is passed in).
 * @module
 */

import { ErrorCode, fail } from './errors.js';
import { assertEd25519Public, assertX25519Public, type Curve25519, KEY_LEN, type Rng } from './primitives.js';

declare const theirs: unique symbol;
/** A peer's X25519 public key: 32 bytes, canonical (validated on decode). */
export type TheirX25519Key = Uint8Array & { readonly [theirs]: 'x25519' };
/** A peer's Ed25519 public key: 32 bytes, canonical, not of small order (validated on decode). */
export type TheirEd25519Key = Uint8Array & { readonly [theirs]: 'ed25519' };

/** One of our X25519 key pairs (device identity, prekeys, ratchet keys). */
export interface OurX25519KeyPair {
  readonly kind: 'x25519';
  readonly publicKey: Uint8Array;
  readonly secretKey: Uint8Array;
}

/** One of our Ed25519 key pairs (user identity key, device signing key, sender signing key). */
export interface OurEd25519KeyPair {
  readonly kind: 'ed25519';
  readonly publicKey: Uint8Array;
  /** The 32-byte RFC 8032 seed. */
  readonly secretKey: Uint8Array;
}

export function theirX25519(bytes: Uint8Array, operation = 'theirX25519'): TheirX25519Key {
  assertX25519Public(bytes, operation);
  return bytes as TheirX25519Key;
}

export function theirEd25519(bytes: Uint8Array, operation = 'theirEd25519'): TheirEd25519Key {
  assertEd25519Public(bytes, operation);
  return bytes as TheirEd25519Key;
}

function takeSecret(rng: Rng, operation: string): Uint8Array {
  const sk = rng(KEY_LEN);
  if (!(sk instanceof Uint8Array) || sk.length !== KEY_LEN)
    fail(ErrorCode.InvalidKey, operation, 'rng returned wrong length');
  return sk;
}

export async function generateX25519(curves: Curve25519, rng: Rng): Promise<OurX25519KeyPair> {
  const secretKey = takeSecret(rng, 'generateX25519');
  return { kind: 'x25519', secretKey, publicKey: await curves.x25519PublicKey(secretKey) };
}

export async function x25519FromSecret(curves: Curve25519, secretKey: Uint8Array): Promise<OurX25519KeyPair> {
  return { kind: 'x25519', secretKey, publicKey: await curves.x25519PublicKey(secretKey) };
}

export async function generateEd25519(curves: Curve25519, rng: Rng): Promise<OurEd25519KeyPair> {
  const secretKey = takeSecret(rng, 'generateEd25519');
  return { kind: 'ed25519', secretKey, publicKey: await curves.ed25519PublicKey(secretKey) };
}

export async function ed25519FromSecret(curves: Curve25519, secretKey: Uint8Array): Promise<OurEd25519KeyPair> {
  return { kind: 'ed25519', secretKey, publicKey: await curves.ed25519PublicKey(secretKey) };
}
