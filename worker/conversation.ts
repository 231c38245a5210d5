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

/** Close code for "you are no longer allowed here" (device revoked, member removed). */
export const CLOSE_FORBIDDEN = 4403;
/** Internal headers the Worker sets on a forwarded upgrade after authenticating it (never from clients). */
export const INTERNAL_USER_HEADER = 'X-E2E-User-Id';
export const INTERNAL_DEVICE_HEADER = 'X-E2E-Device-Id';

const userTag = (userId: string) => `u:${userId}`;
const deviceTag = (userId: string, deviceId: string) => `d:${JSON.stringify([userId, deviceId])}`;

function socketTags(h: Headers): string[] {
  const userId = h.get(INTERNAL_USER_HEADER);
  const deviceId = h.get(INTERNAL_DEVICE_HEADER);
  if (!userId) return [];
  return deviceId ? [userTag(userId), deviceTag(userId, deviceId)] : [userTag(userId)];
}

function closeTagged(sockets: WebSocket[], reason: string): number {
  for (const ws of sockets) {
    try {
      ws.close(CLOSE_FORBIDDEN, reason);
    } catch {
      // already closed
    }
  }
  return sockets.length;
}

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
    // Tags let the RPC methods below find a user's / a device's sockets. The Worker sets these headers
    // after authenticating the caller and strips any client-supplied copies (routes/conversations.ts).
    this.ctx.acceptWebSocket(server, socketTags(request.headers));
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

  /**
   * A device was revoked (routes/devices.ts): close its sockets with 4403. Minimal; the delivery issue
   * completes it.
   */
  async deviceRevoked(userId: string, deviceId: string): Promise<number> {
    return closeTagged(this.ctx.getWebSockets(deviceTag(userId, deviceId)), 'device revoked');
  }

  /**
   * A membership-log entry was appended (routes/conversations.ts): every connected socket gets
   * `{type:'membership', entry}` (entry: base64url of the signed encoding), then the sockets of removed
   * members are closed with 4403 (PITFALLS 21). Minimal; the delivery issue completes it.
   */
  async membershipChanged(entryB64u: string, removedUserIds: string[]): Promise<number> {
    const frame = JSON.stringify({ type: 'membership', entry: entryB64u });
    for (const ws of this.ctx.getWebSockets()) {
      try {
        ws.send(frame);
      } catch {
        // closing
      }
    }
    let closed = 0;
    for (const u of removedUserIds)
      closed += closeTagged(this.ctx.getWebSockets(userTag(u)), 'removed from conversation');
    return closed;
  }

  /** Number of connected sockets (used by tests and, later, presence). */
  async connectedCount(): Promise<number> {
    return this.ctx.getWebSockets().length;
  }
}
