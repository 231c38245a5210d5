/**
 * Driver for `npm run bench:kt` (bench/kt.ts): appends to the real log Durable Object (worker/kt-log.ts)
 * in the shapes the app produces, from inside workerd, and answers proofs. Not part of the app.
 *
 *   POST /append?n=N&inflight=C&per=P  N appends: C calls in flight at a time, P entries per call → { ms, size, commits }
 *   GET  /prove?user=U                  the latest entry of U proven → { ms, bytes }
 *   GET  /stats                         the log's stats
 * Each run uses a fresh log object (`?log=<name>`) so runs do not grow one tree.
 */
import type { KeyLogDO, KtAppend } from '../../worker/kt-log.js';

export { KeyLogDO } from '../../worker/kt-log.js';

interface Env {
  KT_LOG: DurableObjectNamespace<KeyLogDO>;
}

let counter = 0;
const spec = (run: string): KtAppend => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  key[31]! &= 0x7f; // a canonical encoding (the log checks keys structurally, like the server's decoder)
  const n = counter++;
  return { kind: 'key', userId: `${run}-${n}`, version: 1, username: `user${n}`, identityKey: key };
};

export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    const url = new URL(req.url);
    const log = env.KT_LOG.get(env.KT_LOG.idFromName(url.searchParams.get('log') ?? 'bench'));
    if (url.pathname === '/health') return new Response('ok');
    if (url.pathname === '/append') {
      const n = Number(url.searchParams.get('n') ?? 1000);
      const inflight = Number(url.searchParams.get('inflight') ?? 1);
      const per = Number(url.searchParams.get('per') ?? 1);
      const run = crypto.randomUUID().slice(0, 8);
      const before = await log.stats();
      let next = 0;
      const t0 = Date.now();
      const worker = async () => {
        while (next < n) {
          const k = Math.min(per, n - next);
          next += k;
          const r = await log.append(Array.from({ length: k }, () => spec(run)));
          if (r.some((x) => !x.ok)) throw new Error('append refused');
        }
      };
      await Promise.all(Array.from({ length: inflight }, worker));
      const ms = Date.now() - t0;
      const after = await log.stats();
      return Response.json({
        ms,
        size: after.size,
        commits: after.commits - before.commits,
        lastUser: `${run}-${counter - 1}`,
      });
    }
    if (url.pathname === '/prove') {
      const t0 = Date.now();
      const p = await log.proveLatest(url.searchParams.get('user') ?? '');
      const ms = Date.now() - t0;
      if (!p) return new Response('no such user', { status: 404 });
      return Response.json({ ms, bytes: p.entry.length + p.head.length + 32 * p.proof.length, hashes: p.proof.length });
    }
    if (url.pathname === '/stats') return Response.json(await log.stats());
    return new Response('not found', { status: 404 });
  },
};
