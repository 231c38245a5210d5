import { runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';

async function connect(conversationId: string): Promise<WebSocket> {
  const res = await exports.default.fetch(`http://example.com/api/conversations/${conversationId}/ws`, {
    headers: { Upgrade: 'websocket' },
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

describe('ConversationDO (hibernating WebSockets)', () => {
  it('two sockets talk through the Durable Object: a frame from one reaches the other', async () => {
    const a = await connect('conv-talk');
    const b = await connect('conv-talk');
    const atB = nextMessage(b, (d) => d.includes('hello-from-a'));
    const ackAtA = nextMessage(a, (d) => d.includes('relayed'));
    a.send(JSON.stringify({ type: 'probe', body: 'hello-from-a' }));
    expect(JSON.parse(await atB)).toEqual({ type: 'probe', body: 'hello-from-a' });
    expect(JSON.parse(await ackAtA)).toEqual({ type: 'relayed', to: 1 });

    const atA = nextMessage(a, (d) => d.includes('hello-from-b'));
    b.send(JSON.stringify({ type: 'probe', body: 'hello-from-b' }));
    expect(JSON.parse(await atA)).toEqual({ type: 'probe', body: 'hello-from-b' });
    a.close(1000);
    b.close(1000);
  });

  it('conversations are isolated: a frame never crosses to another conversation', async () => {
    const a = await connect('conv-x');
    const other = await connect('conv-y');
    let leaked = false;
    other.addEventListener('message', () => {
      leaked = true;
    });
    const ack = nextMessage(a, (d) => d.includes('relayed'));
    a.send('{"type":"probe"}');
    expect(JSON.parse(await ack)).toEqual({ type: 'relayed', to: 0 });
    expect(leaked).toBe(false);
    a.close(1000);
    other.close(1000);
  });

  it('answers pings with the auto-response and keeps sockets registered with the Hibernation API', async () => {
    const a = await connect('conv-ping');
    const pong = nextMessage(a, (d) => d.includes('pong'));
    a.send('{"type":"ping"}');
    expect(JSON.parse(await pong)).toEqual({ type: 'pong' });
    const stub = env.CONVERSATION.get(env.CONVERSATION.idFromName('conv-ping'));
    const count = await runInDurableObject(stub, (_instance, state) => state.getWebSockets().length);
    expect(count).toBe(1);
    a.close(1000);
  });

  it('an oversize frame gets an error frame and the socket stays usable', async () => {
    const a = await connect('conv-big');
    const b = await connect('conv-big');
    const err = nextMessage(a, (d) => d.includes('error'));
    a.send('x'.repeat(70 * 1024));
    expect(JSON.parse(await err)).toEqual({ type: 'error', code: 'frame_too_large' });
    const atB = nextMessage(b, (d) => d.includes('still-ok'));
    a.send('{"body":"still-ok"}');
    expect(JSON.parse(await atB)).toEqual({ body: 'still-ok' });
    a.close(1000);
    b.close(1000);
  });

  it('refuses a plain GET without upgrade and a malformed conversation id with 400 codes', async () => {
    const r1 = await exports.default.fetch('http://example.com/api/conversations/abc/ws');
    expect(r1.status).toBe(400);
    expect(((await r1.json()) as { error: { code: string } }).error.code).toBe('upgrade_required');
    const r2 = await exports.default.fetch('http://example.com/api/conversations/a%20b/ws', {
      headers: { Upgrade: 'websocket' },
    });
    expect(r2.status).toBe(400);
    expect(((await r2.json()) as { error: { code: string } }).error.code).toBe('bad_conversation_id');
  });
});
