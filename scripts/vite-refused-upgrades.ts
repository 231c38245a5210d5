/**
 * Vite plugin (dev and preview servers): a WebSocket upgrade the Worker refuses reaches the client as the
 * Worker's own answer (e.g. 401 `{"error":{"code":"invalid_ticket",…}}`) instead of a reset connection.
 *
 * Cause (issue 12 item 10): @cloudflare/vite-plugin's `handleWebSocket` (1.34.0, still in 1.52: upstream
 * cloudflare/workers-sdk issue #15170, fix proposed in PR #15205) dispatches an upgrade request to the
 * Worker and, when the answer carries no WebSocket, calls `socket.destroy()` without writing the answer.
 *
 * Work-around until the plugin relays it: each upgrade request gets a one-off marker header (added before
 * the plugin's listener copies the headers); a wrapper around the plugin's Miniflare instance's
 * `dispatchFetch` — the call the plugin makes — removes the marker, and if the Worker's answer is not a WebSocket, writes that
 * answer (status, headers, body, `Connection: close`) to the client's socket and makes the plugin's
 * following `socket.destroy()` a graceful end. Requests without the marker (everything else the plugin
 * dispatches) pass through untouched. Remove this file once the plugin relays refusals itself; the browser
 * test e2e/dev-server.test.ts ("a refused upgrade …") tells.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { Miniflare } from 'miniflare';
import type { Plugin } from 'vite';

const MARK = 'x-e2e-chat-upgrade';
const pending = new Map<string, Duplex>();
let wrapped = false;

/** Hop-by-hop headers are not forwarded; the body is sent whole with its length. */
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'content-length']);

async function relay(socket: Duplex, res: Response): Promise<void> {
  const body = Buffer.from(await res.arrayBuffer());
  const lines = [`HTTP/1.1 ${res.status} ${res.statusText || 'Error'}`];
  res.headers.forEach((value, name) => {
    if (!HOP.has(name.toLowerCase())) lines.push(`${name}: ${value}`);
  });
  lines.push(`content-length: ${body.length}`, 'connection: close', '', '');
  const destroy = socket.destroy.bind(socket);
  // The plugin destroys the socket right after our wrapper returns: end it gracefully instead, once.
  socket.destroy = ((err?: Error) => {
    socket.destroy = destroy;
    if (err) return destroy(err);
    setTimeout(() => destroy(), 5000).unref();
    return socket;
  }) as Duplex['destroy'];
  socket.end(Buffer.concat([Buffer.from(lines.join('\r\n')), body]));
}

type DispatchFetch = Miniflare['dispatchFetch'];
const wrappedInstances = new WeakSet<Miniflare>();

/** Replaces one Miniflare instance's `dispatchFetch` (an own arrow-function field, not a prototype method). */
function wrapInstance(mf: Miniflare): void {
  if (wrappedInstances.has(mf)) return;
  wrappedInstances.add(mf);
  const original: DispatchFetch = mf.dispatchFetch;
  mf.dispatchFetch = (async (input, init) => {
    const headers = init?.headers instanceof Headers ? init.headers : undefined;
    const id = headers?.get(MARK);
    if (!headers || !id) return original(input, init);
    headers.delete(MARK);
    const socket = pending.get(id);
    pending.delete(id);
    const res = await original(input, init);
    if (socket && !res.webSocket && !socket.destroyed) await relay(socket, res as unknown as Response);
    return res;
  }) as DispatchFetch;
}

/**
 * The plugin's Miniflare instance is private to it; every instance reads its prototype's `ready` getter at
 * the start of each `dispatchFetch`, so wrapping that getter reaches each instance at its first dispatch.
 */
function wrapDispatchFetch(): void {
  if (wrapped) return;
  wrapped = true;
  const ready = Object.getOwnPropertyDescriptor(Miniflare.prototype, 'ready');
  if (!ready?.get)
    throw new Error('miniflare changed: Miniflare.prototype.ready is gone (see scripts/vite-refused-upgrades.ts)');
  Object.defineProperty(Miniflare.prototype, 'ready', {
    ...ready,
    get(this: Miniflare) {
      wrapInstance(this);
      return ready.get!.call(this);
    },
  });
}

function install(httpServer: Server | null | undefined): void {
  if (!httpServer) return;
  wrapDispatchFetch();
  httpServer.prependListener('upgrade', (req, socket) => {
    if (req.headers['sec-websocket-protocol']?.startsWith('vite')) return; // Vite's own HMR socket
    const id = randomUUID();
    req.rawHeaders.push(MARK, id); // the plugin builds the Worker's request headers from rawHeaders
    pending.set(id, socket);
    socket.once('close', () => pending.delete(id));
  });
}

export function relayRefusedUpgrades(): Plugin {
  return {
    name: 'e2e-chat:relay-refused-upgrades',
    configureServer: (server) => install(server.httpServer as Server | null),
    configurePreviewServer: (server) => install(server.httpServer as Server | null),
  };
}
