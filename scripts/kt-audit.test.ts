/**
 * The public auditor (`npm run kt:audit`, scripts/kt-audit.ts) against an in-memory log speaking the
 * /api/kt routes: an honest log passes and the next run continues from the saved state; a fork, a rewritten
 * history, a rollback, a bad signature and a swapped log key are each reported.
 */
import { describe, expect, it } from 'vitest';
import { FakeKtLog } from '../web/src/engine/testing/fake-kt.js';
import { fromB64u, toB64u } from '../web/src/protocol/bytes.js';
import { generateEd25519 } from '../web/src/protocol/keys.js';
import { MemoryTree } from '../web/src/protocol/merkle.js';
import { type Curve25519, defaultCurves } from '../web/src/protocol/primitives.js';
import { audit } from './kt-audit.js';

const rng = (n: number) => crypto.getRandomValues(new Uint8Array(n));
let curves: Curve25519;

/** A server: the heads it lists, the log that answers consistency proofs, and its current head. */
function server(s: { heads: Uint8Array[]; log: FakeKtLog; current?: Uint8Array }) {
  return async (path: string): Promise<unknown> => {
    const u = new URL(path, 'http://x');
    if (u.pathname === '/api/kt/key') return { publicKey: toB64u(s.log.publicKey) };
    if (u.pathname === '/api/kt/head') return { head: toB64u(s.current ?? s.heads.at(-1)!) };
    if (u.pathname === '/api/kt/heads') {
      const after = Number(u.searchParams.get('after'));
      const limit = Number(u.searchParams.get('limit'));
      const sizeOf = (h: Uint8Array) => new DataView(h.buffer, h.byteOffset + 1, 8).getUint32(4);
      const list = s.heads.filter((h) => sizeOf(h) > after);
      return { heads: list.slice(0, limit).map((h) => toB64u(h)), more: list.length > limit };
    }
    if (u.pathname === '/api/kt/consistency') {
      const p = s.log.consistency(Number(u.searchParams.get('from')), Number(u.searchParams.get('to')));
      if (!p) throw new Error('HTTP 400 kt_out_of_range');
      return { proof: p.map((h) => toB64u(h)) };
    }
    throw new Error(`unexpected ${path}`);
  };
}

async function honestLog(sizes: number[]) {
  curves ??= await defaultCurves();
  const log = await FakeKtLog.create(curves, rng, Date.now);
  const heads: Uint8Array[] = [];
  for (const size of sizes) {
    while (log.tree.size < size) log.append({ kind: 'deleted', userId: `u${log.tree.size}`, version: 1 });
    heads.push(await log.head());
  }
  return { log, heads };
}

describe('kt:audit', () => {
  it('an honest log passes from the first head; the next run starts where the last one stopped', async () => {
    const { log, heads } = await honestLog([1, 2, 5, 8]);
    const first = await audit(server({ heads, log }));
    expect(first.problems).toEqual([]);
    expect(first.checked).toBe(5); // four listed heads and the current one
    expect(first.first?.size).toBe(1);
    expect(first.latest?.size).toBe(8);
    while (log.tree.size < 13) log.append({ kind: 'deleted', userId: `v${log.tree.size}`, version: 1 });
    heads.push(await log.head());
    const second = await audit(server({ heads, log }), { state: first.state });
    expect(second.problems).toEqual([]);
    expect(second.first?.size).toBe(13);
    expect(second.latest?.size).toBe(13);
    expect(second.state.verified).toBe(first.state.verified + second.checked);
  });

  it('reports a fork, a rewritten history, a rollback, a bad signature and a different log key', async () => {
    const { log, heads } = await honestLog([2, 4, 6]);
    // Fork: a second head of 4 entries over another root.
    const forked = await log.head({ size: 4, root: new MemoryTree().root() });
    expect((await audit(server({ heads: [heads[0]!, heads[1]!, forked, heads[2]!], log }))).problems).toEqual(
      expect.arrayContaining([expect.stringContaining('FORK')]),
    );
    // Rewritten history: the log that answers proofs is not the one whose heads were published.
    const other = new FakeKtLog(curves, log.key, Date.now);
    for (let i = 0; i < 6; i++) other.append({ kind: 'deleted', userId: `w${i}`, version: 1 });
    const rewritten = await audit(server({ heads: [heads[0]!, await other.head()], log: other }));
    expect(rewritten.problems.join('\n')).toContain('REWRITTEN HISTORY');
    // Rollback: the current head is smaller than the last listed one.
    const rolled = await audit(server({ heads, log, current: heads[0] }));
    expect(rolled.problems.join('\n')).toContain('ROLLBACK');
    // A bad signature.
    const bad = heads[1]!.slice();
    bad[bad.length - 1]! ^= 1;
    expect((await audit(server({ heads: [heads[0]!, bad, heads[2]!], log }))).problems.join('\n')).toContain(
      'not signed by the log key',
    );
    // A log key other than the pinned one: nothing verifies under the pinned key…
    const pinned = toB64u((await generateEd25519(curves, rng)).publicKey);
    const swapped = await audit(server({ heads, log }), { state: { key: pinned, last: null, verified: 0 } });
    expect(swapped.problems.join('\n')).toContain('not signed by the log key');
    expect(swapped.state.key).toBe(pinned);
    // …and a --key that differs from the state file's is reported as such.
    const moved = await audit(server({ heads, log }), {
      key: toB64u(log.publicKey),
      state: { key: pinned, last: null, verified: 0 },
    });
    expect(moved.problems).toContain('the log key differs from the one in the state file');
    expect(fromB64u(moved.state.key)).toEqual(log.publicKey);
  });
});
