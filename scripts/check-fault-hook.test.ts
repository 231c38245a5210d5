import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertNoFaultHook, directD1Access, faultHookInBuild } from './check-fault-hook.js';
import { QUIET_ENV, ROOT } from './local-env.js';

describe('test hooks (reliability faults, KT tampering) stay out of deploys', () => {
  it('every Worker D1 access goes through d1(env) in worker/db.ts (where the hook is applied)', () => {
    expect(directD1Access()).toEqual([]);
  });

  it('the check finds a marker in a built file and passes a clean one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'e2e-chat-hookcheck-'));
    try {
      mkdirSync(join(dir, 'w'));
      writeFileSync(join(dir, 'w', 'index.js'), 'export default { fetch() { return new Response("ok"); } };');
      expect(() => assertNoFaultHook(dir)).not.toThrow();
      writeFileSync(join(dir, 'w', 'chunk.js'), 'throw new InjectedFault("injected D1 write failure");');
      expect(faultHookInBuild(dir)).toEqual([
        { file: join('w', 'chunk.js'), markers: ['injected D1 write failure', 'InjectedFault'] },
      ]);
      expect(() => assertNoFaultHook(dir)).toThrow(/fault hook is in the build/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('vite build drops it: the built Worker has D1 access but no fault-hook code', { timeout: 180_000 }, () => {
    const out = mkdtempSync(join(tmpdir(), 'e2e-chat-build-'));
    try {
      const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', '--outDir', out], {
        cwd: ROOT,
        env: QUIET_ENV,
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
      const worker = readFileSync(join(out, 'e2e_chat', 'index.js'), 'utf8');
      expect(worker).toContain('function d1(env)');
      // …and the users route without the key-transparency tampering hook of the browser tests.
      expect(worker).toContain('kt_unavailable');
      expect(faultHookInBuild(out)).toEqual([]);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
