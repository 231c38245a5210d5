/**
 * ConversationDO — one Durable Object per conversation (`idFromName(conversationId)`).
 *
 * Responsibilities (walking skeleton): accept WebSockets with the Hibernation API and fan a frame from
 * one socket out to the others, acknowledging it to the sender. Ordering (`seq`), persistence before
 * acknowledgement, mailboxes and resume arrive with the delivery issue.
 *
 * Does NOT: see plaintext (frames are opaque ciphertext envelopes), authenticate (the Worker verifies
 * the caller before forwarding the upgrade), or hold business logic.
 */
import { DurableObject } from 'cloudflare:workers';
import type { Env } from './env.js';

/** Largest frame the skeleton relays; the real limits come with the wire schema. */
const MAX_FRAME_BYTES = 64 * 1024;

export class ConversationDO extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    // Answered by the runtime without waking the object (keeps hibernation cheap).
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair('{"type":"ping"}', '{"type":"pong"}'));
  }

  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get('Upgrade')?.toLowerCase() !== 'websocket') {
      return Response.json(
        { error: { code: 'upgrade_required', message: 'expected a WebSocket upgrade' } },
        { status: 426 },
      );
    }
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    this.ctx.acceptWebSocket(server);
    server.serializeAttachment({ connectedAt: Date.now() });
    return new Response(null, { status: 101, webSocket: client });
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const size = typeof message === 'string' ? message.length : message.byteLength;
    if (size > MAX_FRAME_BYTES) {
      ws.send(JSON.stringify({ type: 'error', code: 'frame_too_large' }));
      return;
    }
    for (const other of this.ctx.getWebSockets()) {
      if (other === ws) continue;
      try {
        other.send(message);
      } catch {
        // A socket that is closing cannot receive; the runtime reaps it.
      }
    }
    ws.send(JSON.stringify({ type: 'relayed', to: this.ctx.getWebSockets().length - 1 }));
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    // 1005/1006 are reserved and may not be sent back; answer with a normal closure instead.
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

  /** Number of connected sockets (used by tests and, later, presence). */
  async connectedCount(): Promise<number> {
    return this.ctx.getWebSockets().length;
  }
}
