/**
 * The bot's webhook entry points. Against an oversized body: anyone who can reach the port can POST, before any
 * signature is checked, so neither `nodeRequest` nor `handleWebhook` may read more than the largest body the
 * server ever sends (MAX_WEBHOOK_BODY_BYTES) — a stream of tens of MiB must be refused (413), not buffered.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { MAX_WEBHOOK_BODY_BYTES } from '../schema/webhooks.js';
import { memoryStore } from '../web/src/engine/storage.js';
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
