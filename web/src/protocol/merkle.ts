/**
 * The Merkle tree of RFC 9162 §2.1 (Certificate Transparency 2.0; the hashing is RFC 6962's): SHA-256
 * with domain-separated leaves and nodes, inclusion proofs (§2.1.3) and consistency proofs (§2.1.4),
 * generated and verified. docs/PROTOCOL.md §"Key transparency" specifies it; the RFC 6962 test data of
 * transparency-dev/merkle cross-checks it (vectors/rfc6962/).
 *
 * ```
 * MTH({})     = SHA-256()                                   (the empty tree)
 * leaf(d)     = SHA-256(0x00 ‖ d)                           (§2.1.1)
 * node(l, r)  = SHA-256(0x01 ‖ l ‖ r)
 * MTH(D[n])   = node(MTH(D[0:k]), MTH(D[k:n])),  k = the largest power of two < n
 * ```
 *
 * Storage model: a tree only ever grows on the right, so the root of every *perfect* subtree — level `l`,
 * index `i`, covering leaves [i·2^l, (i+1)·2^l) — never changes once its last leaf exists. A log stores those
 * (`appendLeaf` returns the new ones, 2n in total) and answers any proof from them with `NodeReader`; the
 * right edge of a tree that is not a power of two is recomputed from at most log2(n) stored nodes. The
 * *frontier* is the list of perfect subtree roots that cover [0, n) from left to right (one per set bit of
 * n): enough to append and to compute the root without reading anything else.
 *
 * Does NOT: know what a leaf means (transparency.ts), sign anything, or store anything (`MemoryTree` is the
 * in-memory reference; the log Durable Object keeps nodes in SQLite).
 * @module
 */
import { equal } from './bytes.js';
import { KT_MAX_PROOF_HASHES } from './constants.js';
import { ErrorCode, fail } from './errors.js';
import { sha256 } from './primitives.js';

/** Bytes of every hash in the tree (SHA-256). */
export const HASH_LEN = 32;

/** The root of the empty tree: SHA-256 of the empty string. */
export function emptyRoot(): Uint8Array {
  return sha256(new Uint8Array(0));
}

/** RFC 9162 §2.1.1: the hash of a leaf's data, `SHA-256(0x00 ‖ data)`. */
export function leafHash(data: Uint8Array): Uint8Array {
  const b = new Uint8Array(1 + data.length);
  b[0] = 0x00;
  b.set(data, 1);
  return sha256(b);
}

/** RFC 9162 §2.1.1: an interior node, `SHA-256(0x01 ‖ left ‖ right)`. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  const b = new Uint8Array(1 + left.length + right.length);
  b[0] = 0x01;
  b.set(left, 1);
  b.set(right, 1 + left.length);
  return sha256(b);
}

// ---- integer helpers (sizes are safe integers, so no 32-bit bitwise operators) ----------------------

const isPow2 = (n: number) => n > 0 && 2 ** Math.floor(Math.log2(n)) === n;
/** The largest power of two strictly smaller than n (n ≥ 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}
const odd = (n: number) => n % 2 === 1;
const half = (n: number) => Math.floor(n / 2);

function assertSize(n: number, op: string): void {
  if (!Number.isSafeInteger(n) || n < 0) fail(ErrorCode.InvalidStructure, op, 'bad tree size');
}

// ---- the frontier: appending and the root ------------------------------------------------------------

/** A stored perfect-subtree root: level 0 is a leaf hash. */
export interface TreeNode {
  readonly level: number;
  readonly index: number;
  readonly hash: Uint8Array;
}

/** (level, index) of the frontier nodes of a tree of `size` leaves, left to right (highest level first). */
export function frontierPositions(size: number): { level: number; index: number }[] {
  assertSize(size, 'frontierPositions');
  const out: { level: number; index: number }[] = [];
  for (let level = 52; level >= 0; level--) {
    const span = 2 ** level;
    const count = Math.floor(size / span);
    if (odd(count)) out.push({ level, index: count - 1 });
  }
  return out;
}

/**
 * Appends one leaf hash to a tree of `size` leaves whose frontier is `frontier` (as `frontierPositions`).
 * Returns the new frontier and every node that became complete (the leaf itself first, then its new
 * ancestors bottom-up) — exactly what a log must store.
 */
export function appendLeaf(
  frontier: readonly Uint8Array[],
  size: number,
  leaf: Uint8Array,
): { frontier: Uint8Array[]; nodes: TreeNode[] } {
  assertSize(size, 'appendLeaf');
  if (frontier.length !== frontierPositions(size).length)
    fail(ErrorCode.InvalidStructure, 'appendLeaf', 'bad frontier');
  const next = frontier.slice();
  const nodes: TreeNode[] = [{ level: 0, index: size, hash: leaf }];
  let carry = leaf;
  let index = size;
  let level = 0;
  while (odd(index)) {
    carry = nodeHash(next.pop()!, carry);
    index = (index - 1) / 2;
    level++;
    nodes.push({ level, index, hash: carry });
  }
  next.push(carry);
  return { frontier: next, nodes };
}

/** The tree head hash MTH(D[n]) from the frontier (right-edge subtrees are combined right to left). */
export function frontierRoot(frontier: readonly Uint8Array[]): Uint8Array {
  if (frontier.length === 0) return emptyRoot();
  let r = frontier[frontier.length - 1]!;
  for (let i = frontier.length - 2; i >= 0; i--) r = nodeHash(frontier[i]!, r);
  return r;
}

// ---- proof generation ----------------------------------------------------------------------------------

/** Reads a stored perfect-subtree root (it must exist: the caller never asks beyond the tree it holds). */
export type NodeReader = (level: number, index: number) => Uint8Array;

/**
 * MTH(D[start:end]) for a range the RFC's recursion produces: either a perfect aligned subtree (one read)
 * or a range ending at a tree's right edge, split at the largest power of two as in §2.1.1.
 */
export function subtreeHash(read: NodeReader, start: number, end: number): Uint8Array {
  const n = end - start;
  if (n <= 0) return fail(ErrorCode.InvalidStructure, 'subtreeHash', 'empty range');
  if (isPow2(n) && start % n === 0) return read(Math.log2(n), start / n);
  const k = splitPoint(n);
  return nodeHash(subtreeHash(read, start, start + k), subtreeHash(read, start + k, end));
}

/** Root of a tree of `size` leaves from stored nodes. */
export function rootAt(read: NodeReader, size: number): Uint8Array {
  assertSize(size, 'rootAt');
  return size === 0 ? emptyRoot() : subtreeHash(read, 0, size);
}

/** RFC 9162 §2.1.3.1 PATH(m, D[n]): the inclusion proof of leaf `index` in the tree of `size` leaves. */
export function inclusionProof(read: NodeReader, index: number, size: number): Uint8Array[] {
  assertSize(size, 'inclusionProof');
  if (!Number.isSafeInteger(index) || index < 0 || index >= size)
    fail(ErrorCode.InvalidStructure, 'inclusionProof', 'index out of range');
  const path = (m: number, start: number, end: number): Uint8Array[] => {
    const n = end - start;
    if (n === 1) return [];
    const k = splitPoint(n);
    return m < k
      ? [...path(m, start, start + k), subtreeHash(read, start + k, end)]
      : [...path(m - k, start + k, end), subtreeHash(read, start, start + k)];
  };
  return path(index, 0, size);
}

/** RFC 9162 §2.1.4.1 PROOF(m, D[n]): the consistency proof from the tree of `size1` leaves to `size2`. */
export function consistencyProof(read: NodeReader, size1: number, size2: number): Uint8Array[] {
  assertSize(size1, 'consistencyProof');
  assertSize(size2, 'consistencyProof');
  if (size1 < 1 || size1 > size2) fail(ErrorCode.InvalidStructure, 'consistencyProof', 'sizes out of range');
  if (size1 === size2) return [];
  const subproof = (m: number, start: number, end: number, whole: boolean): Uint8Array[] => {
    const n = end - start;
    if (m === n) return whole ? [] : [subtreeHash(read, start, end)];
    const k = splitPoint(n);
    return m <= k
      ? [...subproof(m, start, start + k, whole), subtreeHash(read, start + k, end)]
      : [...subproof(m - k, start + k, end, false), subtreeHash(read, start, start + k)];
  };
  return subproof(size1, 0, size2, true);
}

// ---- proof verification --------------------------------------------------------------------------------

function assertHashes(hashes: readonly Uint8Array[], op: string): void {
  if (hashes.length > KT_MAX_PROOF_HASHES) fail(ErrorCode.Proof, op, 'proof too long');
  for (const h of hashes)
    if (!(h instanceof Uint8Array) || h.length !== HASH_LEN) fail(ErrorCode.Proof, op, 'bad hash');
}

/**
 * RFC 9162 §2.1.3.2: the root a valid inclusion proof of `leaf` (a leaf hash) at `index` in a tree of
 * `size` leaves leads to. Throws `proof` for an index outside the tree or a proof of the wrong length.
 */
export function rootFromInclusionProof(index: number, size: number, leaf: Uint8Array, proof: readonly Uint8Array[]) {
  const op = 'verifyInclusion';
  assertHashes([leaf, ...proof], op);
  if (!Number.isSafeInteger(size) || !Number.isSafeInteger(index) || index < 0 || index >= size)
    fail(ErrorCode.Proof, op, 'index outside the tree');
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) fail(ErrorCode.Proof, op, 'proof too long');
    if (odd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) fail(ErrorCode.Proof, op, 'proof too short');
  return r;
}

/** Throws `proof` unless `proof` shows the leaf hash `leaf` at `index` in the tree (`size`, `root`). */
export function verifyInclusion(
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): void {
  assertHashes([root], 'verifyInclusion');
  if (!equal(rootFromInclusionProof(index, size, leaf, proof), root))
    fail(ErrorCode.Proof, 'verifyInclusion', 'root mismatch');
}

/**
 * RFC 9162 §2.1.4.2: throws `proof` unless the tree (`size2`, `root2`) extends the tree (`size1`, `root1`).
 * Equal sizes need an empty proof and equal roots; a consistency proof from the empty tree is refused as
 * meaningless (every tree extends it — callers handle size 0 themselves), as is `size1 > size2`.
 */
export function verifyConsistency(
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
): void {
  const op = 'verifyConsistency';
  assertHashes([root1, root2, ...proof], op);
  if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2) || size1 < 1 || size2 < size1)
    fail(ErrorCode.Proof, op, 'sizes out of range');
  if (size1 === size2) {
    if (proof.length !== 0) fail(ErrorCode.Proof, op, 'proof for equal sizes must be empty');
    if (!equal(root1, root2)) fail(ErrorCode.Proof, op, 'different roots for one size');
    return;
  }
  if (proof.length === 0) fail(ErrorCode.Proof, op, 'empty proof');
  const path = isPow2(size1) ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) fail(ErrorCode.Proof, op, 'proof too long');
    if (odd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0 || !equal(fr, root1) || !equal(sr, root2)) fail(ErrorCode.Proof, op, 'root mismatch');
}

// ---- the in-memory reference tree -------------------------------------------------------------------------

/**
 * A whole tree in memory: every perfect-subtree root by level (`levels[l][i]`). Used by tests, the
 * engine's fake server, vector generation and the benchmark's simulated million-entry log.
 */
export class MemoryTree {
  readonly levels: Uint8Array[][] = [[]];
  private frontier: Uint8Array[] = [];

  get size(): number {
    return this.levels[0]!.length;
  }

  /** Appends a leaf's data; returns its index. */
  append(data: Uint8Array): number {
    return this.appendHash(leafHash(data));
  }

  appendHash(leaf: Uint8Array): number {
    const index = this.size;
    const r = appendLeaf(this.frontier, index, leaf);
    this.frontier = r.frontier;
    for (const n of r.nodes) {
      if (!this.levels[n.level]) this.levels[n.level] = [];
      this.levels[n.level]![n.index] = n.hash;
    }
    return index;
  }

  readonly read: NodeReader = (level, index) => {
    const h = this.levels[level]?.[index];
    if (!h) return fail(ErrorCode.InvalidStructure, 'MemoryTree.read', 'no such node');
    return h;
  };

  /** MTH of the first `size` leaves (default: all). */
  root(size = this.size): Uint8Array {
    if (size > this.size) fail(ErrorCode.InvalidStructure, 'MemoryTree.root', 'beyond the tree');
    return size === this.size ? frontierRoot(this.frontier) : rootAt(this.read, size);
  }

  inclusionProof(index: number, size = this.size): Uint8Array[] {
    if (size > this.size) fail(ErrorCode.InvalidStructure, 'MemoryTree.inclusionProof', 'beyond the tree');
    return inclusionProof(this.read, index, size);
  }

  consistencyProof(size1: number, size2 = this.size): Uint8Array[] {
    if (size2 > this.size) fail(ErrorCode.InvalidStructure, 'MemoryTree.consistencyProof', 'beyond the tree');
    return consistencyProof(this.read, size1, size2);
  }
}
