/**
 * Development only (`APP_ENV === "development"`, i.e. `npm run dev`): a request body the app did not read
 * to its end (a 413 answered from Content-Length alone, a 401 before the body was looked at, a limit hit
 * half-way through a chunked body) is read and discarded before the answer leaves.
 *
 * Why: under `npm run dev` the request travels Vite → @cloudflare/vite-plugin → undici → workerd. When the
 * Worker answers before the body has arrived, workerd closes the connection with the rest of the upload
 * unread, the reset discards the answer in flight, undici's `fetch` fails, and the plugin hands the error to
 * Vite, which answers 500 with its HTML error page (stack trace, absolute paths) — or the plugin's request
 * stream throws "Controller is already closed" later and the dev server exits (issue 12 item 10; measured
 * with 4–47 MiB bodies). Reading the whole body first means workerd never closes on unread data, so the
 * Worker's own JSON answer arrives.
 *
 * Bounded: at most DRAIN_MAX_BYTES and DRAIN_MAX_MS; past either the answer goes out anyway. Production
 * does not need it (Cloudflare's edge, not workerd's dev socket, holds the client connection) and does not
 * pay for it.
 */
import { createMiddleware } from 'hono/factory';
import type { AppBindings } from './env.js';

export const DRAIN_MAX_BYTES = 256 * 1024 * 1024;
export const DRAIN_MAX_MS = 30_000;

export const drainUnreadBody = createMiddleware<AppBindings>(async (c, next) => {
  const original = c.req.raw.body;
  if (c.env.APP_ENV !== 'development' || !original) return next();
  const reader = original.getReader();
  // The app reads this stream; whatever it leaves unread stays in `reader`. highWaterMark 0: no read ahead
  // (a pull racing the drain's own reads made workerd reset the connection just the same).
  c.req.raw = new Request(c.req.raw, {
    body: new ReadableStream<Uint8Array>(
      {
        async pull(ctrl) {
          const r = await reader.read();
          if (r.done) ctrl.close();
          else ctrl.enqueue(r.value);
        },
      },
      { highWaterMark: 0 },
    ),
  });
  try {
    await next();
  } finally {
    const deadline = Date.now() + DRAIN_MAX_MS;
    let read = 0;
    try {
      while (read < DRAIN_MAX_BYTES && Date.now() < deadline) {
        const r = await reader.read();
        if (r.done) break;
        read += r.value.byteLength;
      }
    } catch {
      // The client went away: nothing left to protect.
    }
  }
});
