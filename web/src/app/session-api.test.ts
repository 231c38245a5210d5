import { describe, expect, it } from 'vitest';
import { AppError, hostSession, type SessionApi, sessionClient } from './session-api.js';

function ports() {
  const ch = new MessageChannel();
  const wrap = (p: MessagePort) => ({
    postMessage: (m: unknown) => p.postMessage(m),
    addEventListener: (t: 'message', l: (ev: { data: unknown }) => void) => {
      p.addEventListener(t, l as (ev: MessageEvent) => void);
      p.start();
    },
  });
  return {
    ui: wrap(ch.port1),
    worker: wrap(ch.port2),
    close: () => {
      ch.port1.close();
      ch.port2.close();
    },
  };
}

describe('session RPC between the UI and the engine worker', () => {
  it('answers by id, keeps error codes, reports progress, and ignores the engine RPC on the same port', async () => {
    const { ui, worker, close } = ports();
    const seen: unknown[] = [];
    const api = {
      async login(username: string) {
        worker.postMessage({ progress: { step: 'prehash', fraction: 0.5 } });
        if (username === 'nobody') throw Object.assign(new Error('wrong'), { code: 'invalid_credentials' });
        return { status: 'totp_required' };
      },
      async lookup(u: string) {
        return { userId: `id-${u}`, username: u };
      },
    } as unknown as SessionApi;
    hostSession(api, worker);
    worker.addEventListener('message', (ev) => seen.push(ev.data));
    const progress: unknown[] = [];
    const client = sessionClient(ui, (p) => progress.push(p));
    ui.postMessage({ id: 7, method: 'sendText', args: [] }); // the engine's RPC shape: not ours
    const [a, b] = await Promise.all([client.lookup('bob'), client.login('alice', 'pw')]);
    expect(a).toEqual({ userId: 'id-bob', username: 'bob' });
    expect(b).toEqual({ status: 'totp_required' });
    await expect(client.login('nobody', 'pw')).rejects.toMatchObject({ code: 'invalid_credentials' });
    await expect(client.login('nobody', 'pw')).rejects.toBeInstanceOf(AppError);
    expect(progress).toContainEqual({ step: 'prehash', fraction: 0.5 });
    expect(seen).toContainEqual({ id: 7, method: 'sendText', args: [] });
    close();
  });
});
