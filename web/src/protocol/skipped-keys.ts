/**
 * Capped store of skipped message-key seeds (Double Ratchet rev. 4 §3.2 MKSKIPPED), keyed by
 * (chain id, message number): the chain id is the peer's ratchet public key for pairwise sessions and the
 * chain id for sender keys.
 *
 * - Capped (MAX_SKIPPED_KEYS by default): when full, the OLDEST inserted entries are evicted (PITFALLS 9).
 * - A key is removed on first use (`take`), so a second delivery of the same message finds nothing and is
 *   reported as a duplicate by the caller (PITFALLS 10).
 * - Immutable: `take` and `add` return a new store and never modify this one, so a decryption that fails
 *   keeps the caller's store exactly as it was (PITFALLS 11). Copies happen only when keys are skipped or
 *   used out of order; in-order traffic never touches the store.
 *
 * Does NOT: derive keys (kdf-chains.ts), decide what counts as a duplicate, or serialize (ratchet.ts does).
 * @module
 */
import { toHex } from './bytes.js';
import { MAX_SKIPPED_KEYS } from './constants.js';
import { ErrorCode, fail } from './errors.js';

export interface SkippedKey {
  readonly chainId: Uint8Array;
  readonly index: number;
  /** The 32-byte message-key seed (HMAC(ck, 0x01)); MessageKeys.fromSeed expands it. */
  readonly seed: Uint8Array;
}

const slot = (chainId: Uint8Array, index: number): string => `${toHex(chainId)}:${index}`;

export class SkippedKeys {
  private constructor(
    private readonly entries: ReadonlyMap<string, SkippedKey>,
    readonly cap: number,
  ) {}

  static empty(cap = MAX_SKIPPED_KEYS): SkippedKeys {
    if (!Number.isInteger(cap) || cap < 1) fail(ErrorCode.LimitExceeded, 'SkippedKeys', 'bad cap');
    return new SkippedKeys(new Map(), cap);
  }

  get size(): number {
    return this.entries.size;
  }

  has(chainId: Uint8Array, index: number): boolean {
    return this.entries.has(slot(chainId, index));
  }

  /** The seed for (chainId, index) and the store without it, or null when absent (used, evicted, never skipped). */
  take(chainId: Uint8Array, index: number): { seed: Uint8Array; rest: SkippedKeys } | null {
    if (this.entries.size === 0) return null;
    const s = slot(chainId, index);
    const hit = this.entries.get(s);
    if (!hit) return null;
    const copy = new Map(this.entries);
    copy.delete(s);
    return { seed: hit.seed, rest: new SkippedKeys(copy, this.cap) };
  }

  /** A new store with `keys` appended (oldest-first order kept), evicting the oldest beyond the cap. */
  add(keys: readonly SkippedKey[]): SkippedKeys {
    if (keys.length === 0) return this;
    const copy = new Map(this.entries);
    for (const k of keys) copy.set(slot(k.chainId, k.index), k);
    const excess = copy.size - this.cap;
    if (excess > 0) {
      let n = 0;
      for (const key of copy.keys()) {
        if (n++ >= excess) break;
        copy.delete(key);
      }
    }
    return new SkippedKeys(copy, this.cap);
  }

  /** Oldest first (the order `add` must replay to rebuild the same store). */
  list(): SkippedKey[] {
    return [...this.entries.values()];
  }

  toString(): string {
    return `SkippedKeys(${this.entries.size}/${this.cap})`;
  }
}
