/**
 * The benchmark's baseline: GET /ws?room=… upgrades to a hibernating Durable Object that broadcasts
 * every text frame to every socket in the room (the sender included, which stands in for `accepted`).
 * No storage, no validation, no ordering, no authentication — the cheapest possible fan-out on the same
 * platform, so the delivery benchmark can report the cost of doing it properly as a ratio.
 */
import { DurableObject } from 'cloudflare:workers';

export class Relay extends DurableObject {
  /** @param {Request} _request */
  async fetch(_request) {
    const pair = new WebSocketPair();
    this.ctx.acceptWebSocket(pair[1]);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  /** @param {WebSocket} _ws @param {string | ArrayBuffer} message */
  async webSocketMessage(_ws, message) {
    for (const s of this.ctx.getWebSockets()) {
      try {
        s.send(message);
      } catch {
        // closing
      }
    }
  }

  /** @param {WebSocket} ws @param {number} code */
  async webSocketClose(ws, code) {
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, 'closing');
    } catch {
      // already closed
    }
  }
}

export default {
  /** @param {Request} request @param {{ RELAY: DurableObjectNamespace }} env */
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === '/health') return new Response('ok');
    if (url.pathname !== '/ws' || request.headers.get('Upgrade') !== 'websocket') {
      return new Response('not found', { status: 404 });
    }
    const room = url.searchParams.get('room') ?? 'default';
    return env.RELAY.get(env.RELAY.idFromName(room)).fetch(request);
  },
};
