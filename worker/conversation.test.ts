import { runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { PROBE_MAX_FRAME_BYTES } from './probe.js';

/** The status page's realtime check: /api/probe/ws (ProbeDO). Conversations need a ticket (delivery*.test.ts). */
async function probe(room: string, ip = '203.0.113.7'): Promise<WebSocket> {
  const res = await exports.default.fetch(`http://example.com/api/probe/ws?room=${room}`, {
    headers: { Upgrade: 'websocket', 'cf-connecting-ip': ip },
  });
  expect(res.status).toBe(101);
  const ws = res.webSocket;
  if (!ws) throw new Error('no webSocket on the 101 response');
  ws.accept();
  return ws;
}

function nextMessage(ws: WebSocket, match: (data: string) => boolean = () => true): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for a frame')), 5000);
    ws.addEventListener('message', function onMsg(ev) {
      const data = typeof ev.data === 'string' ? ev.data : new TextDecoder().decode(ev.data as ArrayBuffer);
      if (!match(data)) return;
      clearTimeout(timer);
      ws.removeEventListener('message', onMsg);
      resolve(data);
    });
  });
}

describe('ProbeDO (realtime health check, hibernating echo)', () => {
  it('two sockets in a probe room: a frame from one reaches the other', async () => {
    const a = await probe('room-talk-1');
    const b = await probe('room-talk-1');
    const atB = nextMessage(b, (d) => d.includes('hello-from-a'));
    a.send(JSON.stringify({ type: 'probe', nonce: 'hello-from-a' }));
    expect(JSON.parse(await atB)).toEqual({ type: 'probe', nonce: 'hello-from-a' });
    a.close(1000);
    b.close(1000);
  });

  it('rooms are isolated, oversize frames are dropped, pings get the auto-response', async () => {
    const a = await probe('room-iso-x');
    const a2 = await probe('room-iso-x');
    const other = await probe('room-iso-y');
    let leaked = false;
    other.addEventListener('message', () => {
      leaked = true;
    });
    let big = false;
    a2.addEventListener('message', (ev) => {
      if (String(ev.data).length > PROBE_MAX_FRAME_BYTES) big = true;
    });
    a.send('x'.repeat(PROBE_MAX_FRAME_BYTES + 1));
    const got = nextMessage(a2, (d) => d.includes('small'));
    a.send('{"type":"probe","nonce":"small"}');
    await got;
    expect(big).toBe(false);
    expect(leaked).toBe(false);
    const pong = nextMessage(a, (d) => d.includes('pong'));
    a.send('{"type":"ping"}');
    expect(JSON.parse(await pong)).toEqual({ type: 'pong' });
    const count = await runInDurableObject(
      env.PROBE.get(env.PROBE.idFromName('room-iso-x')),
      (_i, s) => s.getWebSockets().length,
    );
    expect(count).toBe(2);
    for (const ws of [a, a2, other]) ws.close(1000);
  });

  it('is rate-limited per client address and validates room and upgrade', async () => {
    const ip = '203.0.113.99';
    let limited = 0;
    for (let i = 0; i < 32; i++) {
      const res = await exports.default.fetch(`http://example.com/api/probe/ws?room=room-rate-${i}`, {
        headers: { Upgrade: 'websocket', 'cf-connecting-ip': ip },
      });
      if (res.status === 429) limited++;
      else res.webSocket?.accept();
      res.webSocket?.close(1000);
    }
    expect(limited).toBe(2);
    const noUpgrade = await exports.default.fetch('http://example.com/api/probe/ws?room=room-abcdef');
    expect(noUpgrade.status).toBe(400);
    const badRoom = await exports.default.fetch('http://example.com/api/probe/ws?room=a%20b', {
      headers: { Upgrade: 'websocket' },
    });
    expect(badRoom.status).toBe(400);
  });

  it('the skeleton conversation WebSocket is gone: no ticket, no socket (pitfall 21)', async () => {
    const res = await exports.default.fetch('http://example.com/api/conversations/conv-talk/ws', {
      headers: { Upgrade: 'websocket' },
    });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('ticket_required');
    const stub = env.CONVERSATION.get(env.CONVERSATION.idFromName('conv-talk'));
    expect(await runInDurableObject(stub, (_i, s) => s.getWebSockets().length)).toBe(0);
  });
});
