/**
 * The client's one transport module: HTTP (JSON) and WebSocket. The walking skeleton has the health call
 * and a WebSocket round trip through a conversation's Durable Object; authentication, reconnect and
 * resume-from-cursor arrive with the delivery and client issues.
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
 * Opens two sockets to the same conversation, sends a frame from one and resolves with the time it took
 * to arrive at the other (the Durable Object fans it out).
 */
export async function roundTrip(conversationId: string): Promise<{ ms: number; frame: string }> {
  const path = `/api/conversations/${encodeURIComponent(conversationId)}/ws`;
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
