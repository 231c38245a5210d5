import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { onFreePort } from './dev-server.js';

describe('onFreePort', () => {
  it('a server whose port was taken between picking and binding starts again on another port', async () => {
    const tried: number[] = [];
    const port = await onFreePort(async (p) => {
      tried.push(p);
      if (tried.length === 1) throw new Error(`✘ [ERROR] Address already in use (127.0.0.1:${p}).`);
      return p;
    });
    expect(tried).toHaveLength(2);
    expect(port).toBe(tried[1]);
  });

  it('a start that fails for another reason is not retried, and a taken port gives up after three tries', async () => {
    let n = 0;
    await expect(
      onFreePort(async () => {
        n++;
        throw new Error('did not become healthy: syntax error');
      }),
    ).rejects.toThrow(/syntax error/);
    expect(n).toBe(1);
    n = 0;
    await expect(
      onFreePort(async () => {
        n++;
        throw new Error('listen EADDRINUSE');
      }),
    ).rejects.toThrow(/EADDRINUSE/);
    expect(n).toBe(3);
  });

  it('hands out a port nothing listens on', async () => {
    const port = await onFreePort(async (p) => p);
    await new Promise<void>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve()));
    });
  });
});
