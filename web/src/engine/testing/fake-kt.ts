/**
 * The fake server's key-transparency log: an in-memory RFC 9162 tree (protocol `MemoryTree`) with the same
 * rules as the log Durable Object (worker/kt-log.ts) — entries for registrations and identity resets, a
 * fresh signed head with every answer, inclusion and consistency proofs — and the knobs a malicious server
 * has: a second, diverging copy of the log for one viewer (`fork`), forged or altered answers (`KtTamper`
 * on the FakeServer), and heads signed over any root.
 *
 * Does NOT: persist, batch, or erase (tests of those run against the real object in the workers pool).
 * @module
 */
import {
  type Curve25519,
  encodeKtEntry,
  generateEd25519,
  type KtEntry,
  MemoryTree,
  type OurEd25519KeyPair,
  type Rng,
  signTreeHead,
} from '../../protocol/index.js';
import type { KtProof } from '../transport.js';

export class FakeKtLog {
  readonly tree = new MemoryTree();
  readonly entries: Uint8Array[] = [];
  private readonly latest = new Map<string, number>();
  private lastTime = 0;

  constructor(
    private readonly curves: Curve25519,
    readonly key: OurEd25519KeyPair,
    private readonly now: () => number,
  ) {}

  static async create(curves: Curve25519, rng: Rng, now: () => number): Promise<FakeKtLog> {
    return new FakeKtLog(curves, await generateEd25519(curves, rng), now);
  }

  get publicKey(): Uint8Array {
    return this.key.publicKey;
  }

  /** Appends an entry (the log's time); returns its index. */
  append(e: Omit<Extract<KtEntry, { kind: 'key' }>, 'time'> | Omit<Extract<KtEntry, { kind: 'deleted' }>, 'time'>) {
    const bytes = encodeKtEntry({ ...e, time: this.now() } as KtEntry);
    const index = this.tree.append(bytes);
    this.entries.push(bytes);
    this.latest.set(e.userId, index);
    return index;
  }

  /** A head over the current tree (or over any `root` a malicious server chooses), signed by the log key. */
  async head(over?: { size: number; root: Uint8Array }): Promise<Uint8Array> {
    this.lastTime = Math.max(this.now(), this.lastTime + 1);
    const size = over?.size ?? this.tree.size;
    const root = over?.root ?? this.tree.root();
    return signTreeHead(this.curves, this.key, { size, root, time: this.lastTime });
  }

  /** The user's latest entry proven against a fresh head, or null. */
  async prove(userId: string): Promise<KtProof | null> {
    const index = this.latest.get(userId);
    if (index === undefined) return null;
    return {
      entry: this.entries[index]!.slice(),
      index,
      head: await this.head(),
      proof: this.tree.inclusionProof(index, this.tree.size),
    };
  }

  consistency(from: number, to: number): Uint8Array[] | null {
    if (from < 1 || from > to || to > this.tree.size) return null;
    return this.tree.consistencyProof(from, to);
  }

  /** A copy of this log (same key) that can diverge from it: what a forking server shows one viewer. */
  fork(): FakeKtLog {
    const copy = new FakeKtLog(this.curves, this.key, this.now);
    for (const bytes of this.entries) {
      copy.tree.append(bytes);
      copy.entries.push(bytes);
    }
    for (const [u, i] of this.latest) copy.latest.set(u, i);
    copy.lastTime = this.lastTime;
    return copy;
  }
}
