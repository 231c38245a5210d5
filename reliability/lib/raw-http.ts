/**
 * Requests `fetch` cannot make, for the bad-input suite and the dev-server tests: a body streamed in
 * chunks (with or without a Content-Length), a body cut off mid-way (the socket closed before the
 * declared length arrived), and a WebSocket upgrade whose refusal (status + JSON body) is read back
 * instead of surfacing as a bare "connection dropped".
 * @module
 */
import { request } from 'node:http';
import WebSocket from 'ws';

export interface RawResponse {
  /** null: no HTTP response at all (the connection was dropped or reset). */
  status: number | null;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** The client-side error, if the exchange did not end in a response. */
  error?: string;
  ms: number;
  /** Bytes of the body written before the response arrived (or the connection ended). */
  sent: number;
}

export interface StreamOptions {
  method?: string;
  headers?: Record<string, string>;
  /** Total body bytes to offer. */
  bytes: number;
  /** Send `Content-Length: bytes` (true) or chunked transfer encoding (false). */
  contentLength: boolean;
  chunkBytes?: number;
  /** The byte the body is made of (default `x`); the body is never valid JSON unless `prefix` makes it so. */
  prefix?: string;
  timeoutMs?: number;
}

/**
 * Streams a large body; stops writing as soon as a response arrives (a server answers 413 early) and
 * reads that response to its end.
 */
export function streamBody(url: string, o: StreamOptions): Promise<RawResponse> {
  const t0 = performance.now();
  const chunk = Buffer.alloc(o.chunkBytes ?? 64 * 1024, 'x');
  return new Promise((resolve) => {
    let sent = 0;
    let settled = false;
    let responded = false;
    const done = (r: Omit<RawResponse, 'ms' | 'sent'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...r, ms: performance.now() - t0, sent });
      req.destroy();
    };
    const req = request(url, {
      method: o.method ?? 'POST',
      headers: {
        'content-type': 'application/json',
        ...o.headers,
        ...(o.contentLength ? { 'content-length': String(o.bytes) } : { 'transfer-encoding': 'chunked' }),
      },
    });
    const timer = setTimeout(
      () => done({ status: null, headers: {}, body: '', error: 'timeout' }),
      o.timeoutMs ?? 60_000,
    );
    req.on('response', (res) => {
      responded = true;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 64 * 1024) body += d;
      });
      res.on('end', () => done({ status: res.statusCode ?? null, headers: res.headers, body }));
      res.on('error', (e) => done({ status: res.statusCode ?? null, headers: res.headers, body, error: e.message }));
    });
    req.on('error', (e) => {
      if (!responded)
        done({ status: null, headers: {}, body: '', error: (e as NodeJS.ErrnoException).code ?? e.message });
    });
    const prefix = Buffer.from(o.prefix ?? '');
    const write = () => {
      while (!responded && !settled && sent < o.bytes) {
        const piece = sent === 0 && prefix.length ? Buffer.concat([prefix, chunk]) : chunk;
        const part = piece.subarray(0, Math.min(piece.length, o.bytes - sent));
        sent += part.length;
        if (!req.write(part)) {
          req.once('drain', write);
          return;
        }
      }
      if (!responded && !settled && sent >= o.bytes) req.end();
    };
    write();
  });
}

/**
 * Declares `declared` bytes, sends `body` (shorter), then closes the connection: no response can come.
 * Resolves once the socket is closed; the caller checks that the server is still healthy afterwards.
 */
export function truncatedBody(
  url: string,
  o: { method?: string; headers?: Record<string, string>; body: string; declared: number },
): Promise<RawResponse> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = request(url, {
      method: o.method ?? 'POST',
      headers: { 'content-type': 'application/json', ...o.headers, 'content-length': String(o.declared) },
    });
    let status: number | null = null;
    req.on('response', (res) => {
      status = res.statusCode ?? null;
      res.resume();
    });
    req.on('error', () => {});
    req.on('close', () => resolve({ status, headers: {}, body: '', ms: performance.now() - t0, sent: o.body.length }));
    req.write(o.body, () => setTimeout(() => req.destroy(), 200));
  });
}

export interface UpgradeResult {
  /** 101 if the upgrade was accepted, the refusal's status otherwise, null if the connection dropped. */
  status: number | null;
  body: string;
  error?: string;
}

/** A WebSocket upgrade with the `ws` client; a refusal is read back (status + body). */
export function tryUpgrade(
  url: string,
  headers: Record<string, string> = {},
  timeoutMs = 30_000,
): Promise<UpgradeResult> {
  return new Promise((resolve) => {
    let settled = false;
    const ws = new WebSocket(url, { headers, perMessageDeflate: false, handshakeTimeout: timeoutMs });
    const done = (r: UpgradeResult) => {
      if (settled) return;
      settled = true;
      resolve(r);
    };
    ws.once('open', () => {
      done({ status: 101, body: '' });
      ws.close(1000);
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => done({ status: res.statusCode ?? null, body }));
      res.on('error', (e) => done({ status: res.statusCode ?? null, body, error: e.message }));
    });
    ws.once('error', (e) => done({ status: null, body: '', error: (e as NodeJS.ErrnoException).code ?? e.message }));
  });
}
