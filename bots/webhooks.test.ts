/**
 * The bot's webhook entry points. Against an oversized body: anyone who can reach the port can POST, before any
 * signature is checked, so neither `nodeRequest` nor `handleWebhook` may read more than the largest body the
 * server ever sends (MAX_WEBHOOK_BODY_BYTES) — a stream of tens of MiB must be refused (413), not buffered.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { MAX_WEBHOOK_BODY_BYTES } from '../schema/webhooks.js';
import { memoryStore, writeJson } from '../web/src/engine/storage.js';
import { Bot, nodeRequest } from './src/bot.js';

const MiB = 1024 * 1024;
/** 24 MiB in 1 MiB chunks, counting what the reader pulled. */
function huge() {
  const pulled = { bytes: 0 };
  const chunk = new Uint8Array(MiB).fill(0x61);
  let left = 24;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (left-- <= 0) return c.close();
      pulled.bytes += chunk.length;
      c.enqueue(chunk.slice());
    },
  });
  return { stream, pulled };
}

describe('bot webhooks: body size', () => {
  it('handleWebhook refuses a body over MAX_WEBHOOK_BODY_BYTES with 413 after reading at most that much', async () => {
    // A bot with one secret and an empty state: only handleWebhook's own code runs before the answer.
    const bot = Object.assign(Object.create(Bot.prototype) as object, {
      opts: { webhookSecrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'] },
      store: memoryStore(),
    }) as unknown as Bot;
    const { stream, pulled } = huge();
    const req = new Request('http://localhost/hook', {
      method: 'POST',
      body: stream,
      // @ts-expect-error Node's fetch needs `duplex` for a streamed body (not in the DOM lib's RequestInit)
      duplex: 'half',
    });
    const res = await bot.handleWebhook(req);
    expect(res.status).toBe(413);
    expect(pulled.bytes).toBeLessThanOrEqual(MAX_WEBHOOK_BODY_BYTES + 4 * MiB);
    // A declared length over the limit is refused without reading anything.
    const declared = huge();
    const res2 = await bot.handleWebhook(
      new Request('http://localhost/hook', {
        method: 'POST',
        headers: { 'content-length': String(32 * MiB) },
        body: declared.stream,
        // @ts-expect-error as above
        duplex: 'half',
      }),
    );
    expect(res2.status).toBe(413);
  });

  it('nodeRequest stops reading a node:http body over the limit (payload_too_large) instead of buffering it', async () => {
    let pulled = 0;
    const req = Readable.from(
      (function* () {
        for (let i = 0; i < 24; i++) {
          pulled += MiB;
          yield Buffer.alloc(MiB, 0x61);
        }
      })(),
      { highWaterMark: 1 },
    ) as unknown as import('node:http').IncomingMessage;
    Object.assign(req, { method: 'POST', url: '/hook', headers: {} });
    await expect(nodeRequest(req)).rejects.toMatchObject({ code: 'payload_too_large' });
    expect(pulled).toBeLessThanOrEqual(MAX_WEBHOOK_BODY_BYTES + 4 * MiB);
    // Control: a body within the limit comes through whole.
    const small = Readable.from([Buffer.from('{"ok":true}')]) as unknown as import('node:http').IncomingMessage;
    Object.assign(small, { method: 'POST', url: '/hook', headers: { 'content-type': 'application/json' } });
    expect(await (await nodeRequest(small)).text()).toBe('{"ok":true}');
  });
});

describe('bot webhooks: rotated secrets', () => {
  it('a secret a rotation replaced verifies during the overlap only; the newest always does', async () => {
    const { Webhook } = await import('standardwebhooks');
    const secret = (c: string) => `whsec_${Buffer.alloc(32, c).toString('base64')}`;
    const [oldest, old, newest, prev2, newest2] = [secret('a'), secret('b'), secret('c'), secret('d'), secret('e')];
    const store = memoryStore();
    const now = Date.now();
    const h = 3600_000;
    // Newest first per endpoint, as keepSecret keeps them. e1: `old` was replaced 25 h ago (past the 24 h
    // overlap), `oldest` 30 h ago; e2: `prev2` was replaced 1 h ago (within it).
    await store.transaction(async (tx) =>
      writeJson(tx, 'bot/webhook-secrets', [
        { id: 'e2', secret: newest2, at: now - h },
        { id: 'e1', secret: newest, at: now - 25 * h },
        { id: 'e2', secret: prev2, at: now - 50 * h },
        { id: 'e1', secret: old, at: now - 30 * h },
        { id: 'e1', secret: oldest, at: now - 60 * h },
      ]),
    );
    const bot = Object.assign(Object.create(Bot.prototype) as object, {
      opts: {},
      store,
      listening: false,
      dispatching: new Map(),
      background: new Set(),
      engine: { idle: async () => undefined, disconnect: async () => undefined },
    }) as unknown as Bot;
    let n = 0;
    const signed = (s: string) => {
      const id = `msg_${++n}`;
      const body = JSON.stringify({
        type: 'webhook.test',
        timestamp: new Date().toISOString(),
        data: { endpointId: 'e1' },
      });
      const sig = new Webhook(s).sign(id, new Date(), body);
      return new Request('http://localhost/hook', {
        method: 'POST',
        headers: {
          'webhook-id': id,
          'webhook-timestamp': String(Math.floor(Date.now() / 1000)),
          'webhook-signature': sig,
        },
        body,
      });
    };
    expect((await bot.handleWebhook(signed(newest))).status).toBe(200);
    expect((await bot.handleWebhook(signed(old))).status).toBe(401);
    expect((await bot.handleWebhook(signed(oldest))).status).toBe(401);
    expect((await bot.handleWebhook(signed(newest2))).status).toBe(200);
    expect((await bot.handleWebhook(signed(prev2))).status).toBe(200);
  });
});
