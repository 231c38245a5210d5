/**
 * The client's one transport module: HTTP (JSON) and WebSocket. The status page has the health call and
 * a WebSocket round trip through the probe Durable Object (/api/probe/ws, unauthenticated and
 * rate-limited). Conversation sockets need a ticket (POST /api/conversations/:id/ticket) and speak the
 * wire frames of schema/wire.ts; reconnect and resume-from-seq arrive with the client issue.
 */
export interface Health {
  ok: boolean;
  db: string;
  migration: string | null;
}

export async function fetchHealth(): Promise<Health> {
  const res = await fetch('/api/health', { headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`health check failed (${res.status})`);
  return (await res.json()) as Health;
}

export interface CounterRow {
  name: string;
  label: string;
  value: number;
}

/**
 * The local operator counters (GET /api/status/counters; worker/metrics.ts). Null where the server keeps
 * them in Workers Analytics Engine instead (a deployed environment answers 404).
 */
export async function fetchCounters(): Promise<CounterRow[] | null> {
  const res = await fetch('/api/status/counters', { headers: { accept: 'application/json' } });
  if (res.status === 404) return null;
  if (!res.ok) throw new Error(`counters unavailable (${res.status})`);
  return ((await res.json()) as { counters: CounterRow[] }).counters;
}

function wsUrl(path: string): string {
  const u = new URL(path, location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.toString();
}

function open(path: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(path));
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error('WebSocket failed to open'));
  });
}

/**
 * Opens two sockets to the same probe room, sends a frame from one and resolves with the time it took
 * to arrive at the other (the probe Durable Object fans it out). `room`: 8-64 of [A-Za-z0-9_-].
 */
export async function roundTrip(room: string): Promise<{ ms: number; frame: string }> {
  const path = `/api/probe/ws?room=${encodeURIComponent(room)}`;
  const [a, b] = await Promise.all([open(path), open(path)]);
  try {
    const nonce = crypto.randomUUID();
    const frame = JSON.stringify({ type: 'probe', nonce });
    const started = performance.now();
    const received = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no frame within 5 s')), 5000);
      b.onmessage = (ev) => {
        if (typeof ev.data === 'string' && ev.data.includes(nonce)) {
          clearTimeout(timer);
          resolve(ev.data);
        }
      };
    });
    a.send(frame);
    const got = await received;
    return { ms: performance.now() - started, frame: got };
  } finally {
    a.close(1000);
    b.close(1000);
  }
}
