/**
 * ProbeDO — the operator-facing realtime health check (the status page's "round trip"): one object per
 * random probe room, hibernating WebSockets, every text frame echoed to the room's other sockets.
 *
 * Responsibilities: prove that an upgrade reaches a Durable Object and that a frame fans out and back.
 * Does NOT: store anything, authenticate (the route is rate-limited per client instead), or share code
 * or state with ConversationDO — conversations are only reachable with a ticket (PITFALLS 21).
 */
import { DurableObject } from 'cloudflare:workers';
import { WIRE_PING, WIRE_PONG } from '../schema/wire.js';
import type { Env } from './env.js';

/** Probe frames are tiny JSON nonces; anything larger is dropped. */
export const PROBE_MAX_FRAME_BYTES = 1024;
/** A probe needs two sockets; a handful more is tolerated, the rest refused. */
export const PROBE_MAX_SOCKETS = 4;

export class ProbeDO extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(WIRE_PING, WIRE_PONG));
  }

  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get('Upgrade')?.toLowerCase() !== 'websocket') {
      return Response.json(
        { error: { code: 'upgrade_required', message: 'expected a WebSocket upgrade' } },
        { status: 426 },
      );
    }
    if (this.ctx.getWebSockets().length >= PROBE_MAX_SOCKETS) {
      // Like every 429: Retry-After and retryAfterSec (a room empties as soon as its probe ends).
      return Response.json(
        { error: { code: 'probe_full', message: 'probe room is full', retryAfterSec: 5 } },
        { status: 429, headers: { 'Retry-After': '5' } },
      );
    }
    const pair = new WebSocketPair();
    this.ctx.acceptWebSocket(pair[1]);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    if (typeof message !== 'string' || message.length > PROBE_MAX_FRAME_BYTES) return;
    for (const other of this.ctx.getWebSockets()) {
      if (other === ws) continue;
      try {
        other.send(message);
      } catch {
        // closing
      }
    }
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, 'closing');
    } catch {
      // already closed
    }
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    try {
      ws.close(1011, 'error');
    } catch {
      // already closed
    }
  }
}
