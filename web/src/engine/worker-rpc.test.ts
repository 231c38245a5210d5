import { describe, expect, it } from 'vitest';
import type { EngineEvent } from './context.js';
import { makeWorld, newClient } from './testing/harness.js';
import { engineClient } from './worker-client.js';
import { type Endpoint, hostEngine } from './worker-host.js';

function endpoint(port: MessagePort): Endpoint {
  port.start();
  return {
    postMessage: (m) => port.postMessage(m),
    addEventListener: (t, l) => port.addEventListener(t, l as (ev: MessageEvent) => void),
  };
}

describe('worker RPC (engine behind a MessagePort)', () => {
  it('calls methods with plain data, forwards events, and keeps error codes', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    await newClient(w, 'bob');
    const { port1, port2 } = new MessageChannel();
    const stop = hostEngine(alice.engine, endpoint(port1));
    const client = engineClient(endpoint(port2));
    const events: EngineEvent[] = [];
    client.on((e) => events.push(e));
    const me = await client.identity();
    expect(me?.userId).toBe('alice');
    expect(me?.userIdentityKey).toBeInstanceOf(Uint8Array);
    const conv = await client.createConversation({ kind: 'direct', members: ['bob'] });
    const m = await client.sendText(conv, 'via the worker');
    expect(m.body).toBe('via the worker');
    await new Promise((r) => setTimeout(r, 20));
    expect(events.some((e) => e.type === 'message_added' && e.message.clientId === m.clientId)).toBe(true);
    await expect(client.contact('nobody')).rejects.toMatchObject({ code: 'unknown_user' });
    stop();
    port1.close();
    port2.close();
    alice.engine.close();
  });
});
