/**
 * The Double Ratchet key schedule (Signal Double Ratchet spec rev. 4 §5.2; docs/PROTOCOL.md §"Double Ratchet"),
 * one type per key as in libsignal's `ratchet/keys.rs` and vodozemac's `olm/session/`:
 *
 * - `RootKey`: KDF_RK(rk, dh) = HKDF-SHA256(ikm = dh, salt = rk, info = LABEL_ROOT, L = 64) → rk' ‖ ck.
 * - `ChainKey` (our sending chain) / `RemoteChainKey` (a peer's receiving chain) / `SenderChainKey` (group):
 *   KDF_CK: message key seed = HMAC-SHA256(ck, S₁), next ck = HMAC-SHA256(ck, S₂) where S₁ = 0x01, S₂ = 0x02
 *   for pairwise chains and S₁ = LABEL_SENDER_CHAIN ‖ 0x01, S₂ = LABEL_SENDER_CHAIN ‖ 0x02 for sender chains
 *   (domain separation: a pairwise chain key can never be replayed as a sender chain key).
 * - `MessageKeys`: HKDF-SHA256(ikm = seed, salt = 0×32, info = LABEL_MESSAGE_KEYS | LABEL_SENDER_MESSAGE_KEYS,
 *   L = 44) → AES-256 key (32) ‖ GCM nonce (12). The nonce is derived, never random: each seed is used once.
 *
 * All types are immutable values: `next()` returns a new chain key and never mutates the old one, so a
 * decryption that fails can simply drop the new values (all-or-nothing, PITFALLS 11).
 *
 * Does NOT: compute Diffie-Hellman, encrypt, store skipped keys, or serialize (ratchet.ts / sender-keys.ts).
 * @module
 */
import { concat, utf8 } from './bytes.js';
import {
  CHAIN_MESSAGE_KEY_SEED,
  CHAIN_NEXT_KEY_SEED,
  LABEL_MESSAGE_KEYS,
  LABEL_ROOT,
  LABEL_SENDER_CHAIN,
  LABEL_SENDER_MESSAGE_KEYS,
} from './constants.js';
import { ErrorCode, fail } from './errors.js';
import {
  AES_KEY_LEN,
  GCM_NONCE_LEN,
  hkdfSha256,
  hkdfSha256ZeroSalt,
  hmacSha256Prepare,
  hmacSha256Prepared,
  KEY_LEN,
  type PreparedHmacKey,
} from './primitives.js';

const ROOT_INFO = utf8(LABEL_ROOT);
/** Largest chain index: message numbers are u32 on the wire. */
export const MAX_CHAIN_INDEX = 0xffffffff;

interface ChainKdf {
  readonly messageSeed: Uint8Array;
  readonly nextSeed: Uint8Array;
  readonly messageInfo: Uint8Array;
}
const PAIRWISE: ChainKdf = {
  messageSeed: Uint8Array.of(CHAIN_MESSAGE_KEY_SEED),
  nextSeed: Uint8Array.of(CHAIN_NEXT_KEY_SEED),
  messageInfo: utf8(LABEL_MESSAGE_KEYS),
};
const SENDER: ChainKdf = {
  messageSeed: concat(utf8(LABEL_SENDER_CHAIN), Uint8Array.of(CHAIN_MESSAGE_KEY_SEED)),
  nextSeed: concat(utf8(LABEL_SENDER_CHAIN), Uint8Array.of(CHAIN_NEXT_KEY_SEED)),
  messageInfo: utf8(LABEL_SENDER_MESSAGE_KEYS),
};

function assertKey(k: Uint8Array, op: string): void {
  if (!(k instanceof Uint8Array) || k.length !== KEY_LEN) fail(ErrorCode.InvalidKey, op, 'key must be 32 bytes');
}
function assertIndex(i: number, op: string): void {
  if (!Number.isInteger(i) || i < 0 || i > MAX_CHAIN_INDEX) fail(ErrorCode.LimitExceeded, op, 'chain index range');
}

/** AES-256-GCM key and nonce for exactly one message. */
export class MessageKeys {
  private constructor(
    readonly cipherKey: Uint8Array,
    readonly nonce: Uint8Array,
    readonly index: number,
  ) {}

  /** HKDF(ikm = seed, salt = 0×32, info, 44) → key ‖ nonce. */
  static fromSeed(seed: Uint8Array, index: number, kind: 'pairwise' | 'sender' = 'pairwise'): MessageKeys {
    assertKey(seed, 'MessageKeys.fromSeed');
    const info = kind === 'pairwise' ? PAIRWISE.messageInfo : SENDER.messageInfo;
    const okm = hkdfSha256ZeroSalt(seed, info, AES_KEY_LEN + GCM_NONCE_LEN);
    return new MessageKeys(okm.subarray(0, AES_KEY_LEN), okm.subarray(AES_KEY_LEN), index);
  }

  toString(): string {
    return `MessageKeys(#${this.index})`;
  }
}

/** Shared KDF_CK logic; the subclasses only differ in type (ours vs theirs vs group) and constants. */
abstract class HmacChain {
  /** The chain key prepared for HMAC, shared by the two KDF_CK steps (a memo; the value stays immutable). */
  #mac: PreparedHmacKey | undefined;
  constructor(
    readonly key: Uint8Array,
    readonly index: number,
  ) {
    assertKey(key, 'ChainKey');
    assertIndex(index, 'ChainKey');
  }
  protected abstract get kdf(): ChainKdf;
  protected abstract get kind(): 'pairwise' | 'sender';

  /** The message key seed for `index` (HMAC(ck, S₁)); stored as-is for skipped messages. */
  messageKeySeed(): Uint8Array {
    return this.hmac(this.kdf.messageSeed);
  }
  messageKeys(): MessageKeys {
    return MessageKeys.fromSeed(this.messageKeySeed(), this.index, this.kind);
  }
  protected nextKey(): Uint8Array {
    if (this.index >= MAX_CHAIN_INDEX) fail(ErrorCode.LimitExceeded, 'ChainKey.next', 'chain exhausted');
    return this.hmac(this.kdf.nextSeed);
  }
  private hmac(m: Uint8Array): Uint8Array {
    this.#mac ??= hmacSha256Prepare(this.key);
    return hmacSha256Prepared(this.#mac, m);
  }
  toString(): string {
    return `${this.constructor.name}(#${this.index})`;
  }
}

/** Our sending chain key CKs. */
export class ChainKey extends HmacChain {
  protected get kdf(): ChainKdf {
    return PAIRWISE;
  }
  protected get kind() {
    return 'pairwise' as const;
  }
  next(): ChainKey {
    return new ChainKey(this.nextKey(), this.index + 1);
  }
}

/** A receiving chain key CKr (derived from the peer's ratchet key). */
export class RemoteChainKey extends HmacChain {
  protected get kdf(): ChainKdf {
    return PAIRWISE;
  }
  protected get kind() {
    return 'pairwise' as const;
  }
  next(): RemoteChainKey {
    return new RemoteChainKey(this.nextKey(), this.index + 1);
  }
}

/** A group sender chain key (sender-keys.ts), with the sender-chain domain separation constants. */
export class SenderChainKey extends HmacChain {
  protected get kdf(): ChainKdf {
    return SENDER;
  }
  protected get kind() {
    return 'sender' as const;
  }
  next(): SenderChainKey {
    return new SenderChainKey(this.nextKey(), this.index + 1);
  }
}

/** The root key RK. */
export class RootKey {
  constructor(readonly key: Uint8Array) {
    assertKey(key, 'RootKey');
  }

  private kdf(dhOutput: Uint8Array): [Uint8Array, Uint8Array] {
    assertKey(dhOutput, 'RootKey.createChain');
    const okm = hkdfSha256(dhOutput, this.key, ROOT_INFO, 2 * KEY_LEN);
    return [okm.slice(0, KEY_LEN), okm.slice(KEY_LEN)];
  }

  /** KDF_RK for a DH step on our side: new root key and our new sending chain (index 0). */
  createSendingChain(dhOutput: Uint8Array): [RootKey, ChainKey] {
    const [rk, ck] = this.kdf(dhOutput);
    return [new RootKey(rk), new ChainKey(ck, 0)];
  }

  /** KDF_RK for the peer's new ratchet key: new root key and the receiving chain (index 0). */
  createReceivingChain(dhOutput: Uint8Array): [RootKey, RemoteChainKey] {
    const [rk, ck] = this.kdf(dhOutput);
    return [new RootKey(rk), new RemoteChainKey(ck, 0)];
  }

  toString(): string {
    return 'RootKey(…)';
  }
}
