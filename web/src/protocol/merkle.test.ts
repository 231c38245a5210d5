/**
 * The RFC 9162 Merkle tree against transparency-dev/merkle's RFC 6962 test data (vectors/rfc6962/, see
 * its README): tree hashes, generated proofs equal to theirs, and verification accepting exactly their
 * valid cases. Then properties over random trees: every generated proof verifies, every altered one fails.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from './bytes.js';
import { is } from './errors.js';
import {
  appendLeaf,
  consistencyProof,
  emptyRoot,
  frontierPositions,
  frontierRoot,
  inclusionProof,
  leafHash,
  MemoryTree,
  nodeHash,
  rootAt,
  verifyConsistency,
  verifyInclusion,
} from './merkle.js';
import consistencyCases from './vectors/rfc6962/consistency.json' with { type: 'json' };
import inclusionCases from './vectors/rfc6962/inclusion.json' with { type: 'json' };
import tree from './vectors/rfc6962/tree.json' with { type: 'json' };

const b64 = (s: string) => Uint8Array.from(Buffer.from(s, 'base64'));
const proofOf = (p: string[] | null) => (p ?? []).map(b64);

/** The eight RFC 6962 test leaves of transparency-dev/merkle, as a tree of `n` leaves. */
function referenceTree(n = tree.leafInputsHex.length): MemoryTree {
  const t = new MemoryTree();
  for (const hex of tree.leafInputsHex.slice(0, n)) t.append(fromHex(hex));
  return t;
}

const rejects = (f: () => void) => {
  try {
    f();
    return false;
  } catch (e) {
    if (!is(e, 'proof')) throw e;
    return true;
  }
};

describe('RFC 6962 test data (transparency-dev/merkle)', () => {
  it('hashes the empty tree, leaves and nodes as RFC6962 Hasher does', () => {
    for (const c of tree.hasherCases.cases) {
      const got =
        c.op === 'emptyRoot'
          ? emptyRoot()
          : c.op === 'leaf'
            ? leafHash(fromHex(c.inputHex!))
            : nodeHash(fromHex(c.leftHex!), fromHex(c.rightHex!));
      expect(toHex(got), c.desc).toBe(c.wantHex);
    }
  });

  it('builds every perfect-subtree hash and the root of every size 0–8 from the reference leaves', () => {
    const t = new MemoryTree();
    expect(toHex(t.root())).toBe(tree.rootHashesHex[0]);
    for (const [i, hex] of tree.leafInputsHex.entries()) {
      t.append(fromHex(hex));
      expect(toHex(t.root()), `root of size ${i + 1}`).toBe(tree.rootHashesHex[i + 1]);
    }
    tree.nodeHashesHex.forEach((level, l) => {
      level.forEach((hex, i) => {
        expect(toHex(t.read(l, i)), `node ${l}/${i}`).toBe(hex);
      });
    });
    for (let n = 0; n <= 8; n++) expect(toHex(rootAt(t.read, n)), `rootAt ${n}`).toBe(tree.rootHashesHex[n]);
  });

  it('verifies inclusion exactly where transparency-dev does, and generates the same proofs', () => {
    const ref = referenceTree();
    let happy = 0;
    for (const c of inclusionCases.cases) {
      const verify = () =>
        verifyInclusion(c.leafIdx, c.treeSize, b64(c.leafHash), proofOf(c.proof as string[] | null), b64(c.root));
      const notSha256 = [c.root, c.leafHash].some((r) => b64(r).length !== 32);
      expect(rejects(verify), `${c.file}: ${c.desc}`).toBe(c.wantErr || notSha256);
      if (!c.wantErr && c.treeSize <= 8 && c.treeSize > 0 && c.file.endsWith('happy-path.json')) {
        expect(ref.inclusionProof(c.leafIdx, c.treeSize).map(toHex), c.file).toEqual(
          proofOf(c.proof as string[]).map(toHex),
        );
        happy++;
      }
    }
    expect(happy).toBeGreaterThanOrEqual(4);
  });

  it('verifies consistency exactly where transparency-dev does, and generates the same proofs', () => {
    const ref = referenceTree();
    let happy = 0;
    for (const c of consistencyCases.cases) {
      const verify = () => verifyConsistency(c.size1, c.size2, proofOf(c.proof), b64(c.root1), b64(c.root2));
      // Stricter than transparency-dev: a root that is not 32 bytes is refused even where its check is moot.
      const notSha256 = [c.root1, c.root2].some((r) => b64(r).length !== 32);
      expect(rejects(verify), `${c.file}: ${c.desc}`).toBe(c.wantErr || notSha256);
      if (!c.wantErr && c.size1 > 0 && c.size2 <= 8 && c.file.endsWith('happy-path.json')) {
        expect(ref.consistencyProof(c.size1, c.size2).map(toHex), c.file).toEqual(proofOf(c.proof).map(toHex));
        happy++;
      }
    }
    expect(happy).toBeGreaterThanOrEqual(4);
  });
});

describe('generated proofs', () => {
  // Leaves are their own index as 4 bytes: cheap and distinct.
  const leafData = (i: number) => Uint8Array.of(i >>> 24, (i >>> 16) & 255, (i >>> 8) & 255, i & 255);
  const big = new MemoryTree();
  for (let i = 0; i < 300; i++) big.append(leafData(i));

  it('the frontier gives the same root as the full recursion for every size up to 300', () => {
    let frontier: Uint8Array[] = [];
    for (let n = 0; n < 300; n++) {
      expect(frontier.length).toBe(frontierPositions(n).length);
      expect(toHex(frontierRoot(frontier))).toBe(toHex(rootAt(big.read, n)));
      frontier = appendLeaf(frontier, n, leafHash(leafData(n))).frontier;
    }
  });

  it('every inclusion proof verifies; a flipped bit, a dropped hash or a wrong index does not', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.nat(), fc.nat(), (size, rawIndex, bit) => {
        const index = rawIndex % size;
        const root = big.root(size);
        const leaf = leafHash(leafData(index));
        const proof = big.inclusionProof(index, size);
        expect(proof.length).toBeLessThanOrEqual(Math.ceil(Math.log2(size)));
        verifyInclusion(index, size, leaf, proof, root);
        if (proof.length > 0) {
          const bad = proof.map((p) => p.slice());
          const at = bit % (bad.length * 256);
          bad[Math.floor(at / 256)]![(at % 256) >> 3]! ^= 1 << (at % 8);
          expect(rejects(() => verifyInclusion(index, size, leaf, bad, root))).toBe(true);
          expect(rejects(() => verifyInclusion(index, size, leaf, proof.slice(1), root))).toBe(true);
        }
        if (size > 1) expect(rejects(() => verifyInclusion((index + 1) % size, size, leaf, proof, root))).toBe(true);
        // (A proof can also fit a larger size with the same root; the signed head binds size and root.)
      }),
      { numRuns: 300 },
    );
  });

  it('every consistency proof verifies; an altered proof, root or size does not', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 300 }), fc.nat(), (a, b, bit) => {
        const [size1, size2] = a <= b ? [a, b] : [b, a];
        const proof = big.consistencyProof(size1, size2);
        const r1 = big.root(size1);
        const r2 = big.root(size2);
        verifyConsistency(size1, size2, proof, r1, r2);
        if (size1 === size2) {
          expect(proof).toEqual([]);
          return;
        }
        const bad = proof.map((p) => p.slice());
        const at = bit % (bad.length * 256);
        bad[Math.floor(at / 256)]![(at % 256) >> 3]! ^= 1 << (at % 8);
        expect(rejects(() => verifyConsistency(size1, size2, bad, r1, r2))).toBe(true);
        expect(rejects(() => verifyConsistency(size1, size2, proof, r1, big.root(size2 - 1)))).toBe(true);
        expect(rejects(() => verifyConsistency(size1, size2, proof, r2, r2))).toBe(true);
        expect(rejects(() => verifyConsistency(size2, size1, proof, r2, r1))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('a log that rewrote one old leaf cannot prove consistency with the heads it signed before', () => {
    const forked = new MemoryTree();
    for (let i = 0; i < 40; i++) forked.append(i === 17 ? Uint8Array.of(9, 9) : leafData(i));
    for (const size1 of [18, 20, 32, 39]) {
      const proof = forked.consistencyProof(size1, 40);
      expect(rejects(() => verifyConsistency(size1, 40, proof, big.root(size1), forked.root(40)))).toBe(true);
    }
    // …and below the rewritten leaf it is consistent (a prefix it did not touch).
    verifyConsistency(17, 40, forked.consistencyProof(17, 40), big.root(17), forked.root(40));
  });

  it('proof generation refuses positions outside the tree', () => {
    expect(() => inclusionProof(big.read, 5, 5)).toThrow();
    expect(() => consistencyProof(big.read, 0, 5)).toThrow();
    expect(() => consistencyProof(big.read, 6, 5)).toThrow();
  });
});
