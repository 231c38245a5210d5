/**
 * Global set-up of the workers test pool (runs in Node): a local webhook receiver on 127.0.0.1 that the
 * Worker under test POSTs to, and that tests read back. Its base URL is provided as `webhookReceiver`.
 *
 *   POST /hook/<name>/<behaviour>   records {headers, body, at} under <name>, then answers by <behaviour>:
 *        ok          200
 *        500         500
 *        gone        410
 *        redirect    302 to /hook/<name>-redirected/ok (which records under that name if ever followed)
 *        timeout     never answers (the socket is dropped when the server stops)
 *        flaky-<n>   500 for the first <n> requests of <name>, then 200
 *        retry-<s>   503 with Retry-After: <s>, then 200
 *   GET  /log/<name>                JSON array of what <name> received, oldest first
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    webhookReceiver: string;
  }
}

export interface ReceivedHook {
  headers: Record<string, string>;
  body: string;
  at: number;
}

export default async function setup(project: TestProject) {
  const log = new Map<string, ReceivedHook[]>();
  const sockets = new Set<Socket>();
  const handle = (req: IncomingMessage, res: ServerResponse, body: string) => {
    const parts = (req.url ?? '').split('/').filter(Boolean);
    if (req.method === 'GET' && parts[0] === 'log' && parts[1]) {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(log.get(parts[1]) ?? []));
      return;
    }
    if (req.method !== 'POST' || parts[0] !== 'hook' || !parts[1] || !parts[2]) {
      res.statusCode = 404;
      res.end();
      return;
    }
    const [, name, behaviour] = parts as [string, string, string];
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
    const seen = log.get(name) ?? [];
    seen.push({ headers, body, at: Date.now() });
    log.set(name, seen);
    const flaky = /^flaky-(\d+)$/.exec(behaviour);
    const retry = /^retry-(\d+)$/.exec(behaviour);
    if (behaviour === 'ok') res.statusCode = 200;
    else if (behaviour === '500') res.statusCode = 500;
    else if (behaviour === 'gone') res.statusCode = 410;
    else if (behaviour === 'redirect') {
      res.statusCode = 302;
      res.setHeader('location', `/hook/${name}-redirected/ok`);
    } else if (behaviour === 'timeout') return;
    else if (flaky) res.statusCode = seen.length <= Number(flaky[1]) ? 500 : 200;
    else if (retry) {
      res.statusCode = seen.length === 1 ? 503 : 200;
      if (seen.length === 1) res.setHeader('retry-after', retry[1]!);
    } else res.statusCode = 404;
    res.end('a response body the sender must not read');
  };
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => handle(req, res, body));
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  project.provide('webhookReceiver', `http://127.0.0.1:${port}`);
  return () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
}
