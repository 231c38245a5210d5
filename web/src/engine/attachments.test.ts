import { describe, expect, it } from 'vitest';
import { toB64u } from './_protocol.js';
import { normalizeContentType, normalizeFileName, parseAttachmentPointer, Transfers } from './attachments.js';
import { encodeRecord, utf8 } from './codec.js';
import type { EngineContext, EngineEvent, MessageView } from './context.js';
import { createEngine } from './engine.js';
import { memoryLocks } from './locks.js';
import { memoryStore, type Store, type StoreTx } from './storage.js';
import { cryptoRng, ktOptions, makeWorld, newClient, until, type World } from './testing/harness.js';

const FILE_NAME = 'holiday-GPS-secret-name.pdf';
const CONTENT_TYPE = 'application/pdf';

function fileBytes(n: number, seed = 5): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 7 + seed + (i >> 8)) & 0xff;
  return out;
}

/** A Blob that counts how often it is read (a retry must not read the file again). */
function countingBlob(bytes: Uint8Array): { blob: Blob; reads: () => number } {
  const inner = new Blob([bytes as BlobPart]);
  let reads = 0;
  const wrap = (b: Blob): Blob =>
    new Proxy(b, {
      get(target, prop) {
        if (prop === 'slice' || prop === 'stream' || prop === 'arrayBuffer')
          return (...a: unknown[]) => {
            reads++;
            return (target[prop] as (...x: unknown[]) => unknown)(...a);
          };
        const v = Reflect.get(target, prop, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  return { blob: wrap(inner), reads: () => reads };
}

/**
 * A store whose next `fail.writes` transactions writing a key under `fail.prefix` throw (a full disk:
 * QuotaExceededError), committing nothing.
 */
function failingStore(fail: { prefix: string; writes: number }): Store {
  const inner = memoryStore();
  return {
    ...inner,
    transaction: <T>(fn: (tx: StoreTx) => Promise<T>) =>
      inner.transaction(async (tx) => {
        const result = await fn(tx);
        if (fail.writes > 0 && (tx as unknown as { writes: Map<string, unknown> }).writes)
          for (const k of (tx as unknown as { writes: Map<string, unknown> }).writes.keys())
            if (k.startsWith(fail.prefix)) {
              fail.writes--;
              throw new DOMException('the disk is full', 'QuotaExceededError');
            }
        return result;
      }),
    put: (key, value) => inner.transaction(async (tx) => tx.put(key, value)),
  };
}

async function pair(w: World, opts: { aliceStore?: Store } = {}) {
  const alice = await newClient(w, 'alice', 'alice-1', opts.aliceStore ? { store: opts.aliceStore } : {});
  const bob = await newClient(w, 'bob');
  const conv = await alice.engine.createConversation({ kind: 'direct', members: ['bob'] });
  await alice.engine.connect();
  await bob.engine.connect();
  await until(async () => (await bob.engine.connectionStatus(conv)) === 'online', 'bob online');
  await until(async () => (await alice.engine.connectionStatus(conv)) === 'online', 'alice online');
  return { alice, bob, conv };
}

const received = async (e: { messages: (c: string) => Promise<MessageView[]> }, conv: string) =>
  (await e.messages(conv)).filter((m) => m.attachment);

const bytesOf = async (b: Blob) => new Uint8Array(await b.arrayBuffer());

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

describe('attachments in the engine', { timeout: 120_000 }, () => {
  it('Alice sends a file to Bob: only ciphertext of the reserved size is uploaded, Bob opens exactly the original bytes', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await pair(w);
    const data = fileBytes(300_000);
    const thumbnail = utf8('tiny-thumbnail-bytes');
    const events: EngineEvent[] = [];
    alice.engine.on((e) => events.push(e));
    const sent = await alice.engine.sendAttachment(
      conv,
      {
        file: new Blob([data as BlobPart]),
        fileName: FILE_NAME,
        contentType: CONTENT_TYPE,
        width: null,
        height: null,
        thumbnail,
      },
      { transferId: 't1', caption: 'the report' },
    );
    expect(sent.attachment).toMatchObject({ fileName: FILE_NAME, contentType: CONTENT_TYPE, size: data.length });
    expect(sent.attachment).not.toHaveProperty('key');
    expect(sent.body).toBe('the report');
    // Progress: encrypt and upload, each ending at its total.
    const last = (phase: string) => events.filter((e) => e.type === 'transfer' && e.phase === phase).at(-1);
    expect(last('encrypt')).toMatchObject({ id: 't1', loaded: data.length, total: data.length });
    expect(last('upload')).toMatchObject({ id: 't1', loaded: data.length + 5 * 16, total: data.length + 5 * 16 });

    const upload = w.server.attachmentCalls.find((c) => c.op === 'upload')!;
    const blob = upload.args[1] as Uint8Array;
    expect(blob.length).toBe(data.length + 16 * Math.ceil(data.length / 65536));
    expect(contains(blob, data.subarray(1000, 1032))).toBe(false);

    await until(async () => (await received(bob.engine, conv)).length === 1, 'bob gets the attachment message');
    const [m] = await received(bob.engine, conv);
    expect(m!.attachment).toEqual({
      attachmentId: upload.args[0],
      size: data.length,
      contentType: CONTENT_TYPE,
      fileName: FILE_NAME,
      width: null,
      height: null,
      thumbnail,
    });
    expect(m!.body).toBe('the report');
    const file = await bob.engine.openAttachment(conv, m!.clientId, 'open-1');
    expect(file.type).toBe('application/octet-stream'); // a PDF is never given a renderable type
    expect(await bytesOf(file)).toEqual(data);
    // Alice's own device can open it too (the pointer is kept with her pending message).
    expect(await bytesOf(await alice.engine.openAttachment(conv, sent.clientId, 'open-2'))).toEqual(data);
    alice.engine.close();
    bob.engine.close();
  });

  it('PITFALLS 29: the server never learns the file’s name, type, dimensions, thumbnail or caption', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await pair(w);
    const thumbnail = utf8('THUMBNAIL-MARKER-0123456789');
    await alice.engine.sendAttachment(
      conv,
      {
        file: new Blob([fileBytes(5000) as BlobPart]),
        fileName: FILE_NAME,
        contentType: 'image/png',
        width: 4032,
        height: 3024,
        thumbnail,
      },
      { transferId: 't', caption: 'CAPTION-MARKER' },
    );
    await until(async () => (await received(bob.engine, conv)).length === 1, 'delivered');
    const seen = encodeRecord({ calls: w.server.attachmentCalls, frames: w.server.sentFrames });
    const text = new TextDecoder().decode(seen);
    for (const secret of [FILE_NAME, 'image/png', '4032', '3024', 'CAPTION-MARKER', toB64u(thumbnail)])
      expect(text.includes(secret), secret).toBe(false);
    for (const c of w.server.attachmentCalls)
      for (const a of c.args) if (a instanceof Uint8Array) expect(contains(a, thumbnail)).toBe(false);
    // What it does get: a conversation id and a size, then ciphertext.
    expect(w.server.attachmentCalls.map((c) => c.op)).toEqual(['reserve', 'upload']);
    expect(w.server.attachmentCalls[0]!.args).toEqual([conv, 5000 + 16]);
    alice.engine.close();
    bob.engine.close();
  });

  it('a blob changed on the server is "damaged": a flipped bit, a truncation or a swap gives attachment_damaged and no file', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await pair(w);
    const data = fileBytes(200_000, 9);
    await alice.engine.sendAttachment(
      conv,
      { file: new Blob([data as BlobPart]), fileName: 'a.bin', contentType: 'x/y' },
      { transferId: 'a' },
    );
    await alice.engine.sendAttachment(
      conv,
      { file: new Blob([data as BlobPart]), fileName: 'b.bin', contentType: 'x/y' },
      { transferId: 'b' },
    );
    await until(async () => (await received(bob.engine, conv)).length === 2, 'both delivered');
    const [ma, mb] = await received(bob.engine, conv);
    const stored = w.server.attachments.get(ma!.attachment!.attachmentId)!;
    const original = stored.bytes!;
    const tamper = async (bytes: Uint8Array) => {
      stored.bytes = bytes;
      return bob.engine.openAttachment(conv, ma!.clientId, `x${Math.random()}`).then(
        () => 'opened',
        (e: { code?: string }) => e.code,
      );
    };
    const flipped = original.slice();
    flipped[150_000]! ^= 0x01;
    expect(await tamper(flipped)).toBe('attachment_damaged');
    expect(await tamper(original.slice(0, 65_552))).toBe('attachment_damaged');
    expect(await tamper(original.slice(0, original.length - 1))).toBe('attachment_damaged');
    expect(await tamper(new Uint8Array([...original, 0]))).toBe('attachment_damaged');
    // The other attachment's blob (same file, another key) in its place.
    expect(await tamper(w.server.attachments.get(mb!.attachment!.attachmentId)!.bytes!)).toBe('attachment_damaged');
    expect(await tamper(original)).toBe('opened');
    alice.engine.close();
    bob.engine.close();
  });

  it('a file larger than a read slice and a Blob part arrives whole however the network splits it, and a bit flipped in its middle batch is "damaged"', async () => {
    // 9 MiB + 5 bytes: more than one 8 MiB read slice and Blob part, nine 1 MiB decrypt batches and a tail.
    const data = fileBytes(9 * 1024 * 1024 + 5, 3);
    let stored: Uint8Array | null = null;
    let pieces: number[] = [];
    const api = {
      reserveAttachment: async (_c: string, size: number) => ({ attachmentId: 'A'.repeat(22), size }),
      uploadAttachment: async (_id: string, body: Blob) => {
        stored = await bytesOf(body);
      },
      downloadAttachment: async () => {
        const bytes = stored!;
        let off = 0;
        let i = 0;
        return new ReadableStream<Uint8Array>({
          pull(ctl) {
            if (off >= bytes.length) return ctl.close();
            const n = pieces[i++ % pieces.length]!;
            ctl.enqueue(bytes.slice(off, off + n));
            off += n;
          },
        });
      },
    };
    const ctx = { api, rng: cryptoRng, emit: () => undefined, now: Date.now } as unknown as EngineContext;
    const transfers = new Transfers(ctx);
    const pointer = await transfers.upload('u', 'conv', {
      file: new Blob([data as BlobPart]),
      fileName: 'big.bin',
      contentType: 'application/octet-stream',
    });
    expect(stored!.length).toBe(data.length + 145 * 16); // 145 chunks of 64 KiB, one 16-byte tag each
    for (const split of [[65_552], [100_003, 3 * 1024 * 1024, 7], [9_500_000]]) {
      pieces = split;
      const back = await bytesOf(await transfers.download(`d${split[0]}`, pointer));
      // (toEqual on 9 MiB arrays takes minutes: compare the bytes, then report where they differ)
      expect(back.length).toBe(data.length);
      expect(back.findIndex((b, i) => b !== data[i])).toBe(-1);
    }
    const original = stored!;
    const flipped = original.slice();
    flipped[5 * 1024 * 1024 + 77]! ^= 0x80;
    stored = flipped;
    pieces = [100_003];
    await expect(transfers.download('damaged', pointer)).rejects.toMatchObject({ code: 'attachment_damaged' });
  });

  it('a failed upload sends nothing; the retry re-sends the prepared ciphertext without reading the file again, then the message goes out', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await pair(w);
    const data = fileBytes(150_000);
    const { blob, reads } = countingBlob(data);
    const draft = { file: blob, fileName: 'x.zip', contentType: 'application/zip' };
    w.server.failUploads = 1;
    const err = await alice.engine.sendAttachment(conv, draft, { transferId: 'r' }).catch((e: { code: string }) => e);
    expect((err as { code: string }).code).toBe('upload_failed');
    const readsAfterFirst = reads();
    expect(readsAfterFirst).toBeGreaterThan(0);
    expect(await alice.engine.messages(conv)).toEqual([]);
    expect(w.server.sentFrames.filter((f) => f.frame.type === 'send')).toEqual([]);
    const m = await alice.engine.sendAttachment(conv, draft, { transferId: 'r' });
    expect(reads()).toBe(readsAfterFirst);
    const reservations = w.server.attachmentCalls.filter((c) => c.op === 'reserve');
    expect(reservations.length).toBe(1);
    await until(async () => (await received(bob.engine, conv)).length === 1, 'delivered after the retry');
    const [got] = await received(bob.engine, conv);
    expect(await bytesOf(await bob.engine.openAttachment(conv, got!.clientId, 'o'))).toEqual(data);
    expect(m.attachment?.fileName).toBe('x.zip');
    alice.engine.close();
    bob.engine.close();
  });

  it('a large file goes up in parts while it is still being encrypted; a failed part is re-sent alone, without reading the file again, and Bob opens exactly the bytes', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await pair(w);
    w.server.attachmentPartBytes = 3 * 1024 * 1024; // a 9 MiB file: 4 parts (3 at once)
    const data = fileBytes(9 * 1024 * 1024 + 5, 9);
    const { blob, reads } = countingBlob(data);
    const log: string[] = [];
    const inner = w.server.api('alice', 'alice-1');
    const api = {
      ...inner,
      uploadAttachmentPart: (id: string, n: number, body: Blob, o: object) => {
        log.push(`part ${n}`);
        return inner.uploadAttachmentPart(id, n, body, o);
      },
    };
    const emit = (e: EngineEvent) => {
      if (e.type === 'transfer' && e.phase === 'encrypt' && e.loaded === e.total) log.push('encrypted');
    };
    const transfers = new Transfers({ api, rng: cryptoRng, emit, now: Date.now } as unknown as EngineContext);
    const draft = { file: blob, fileName: 'big.bin', contentType: 'application/octet-stream' };
    w.server.failUploads = 1;
    const err = await transfers.upload('t', conv, draft).catch((e: { code: string }) => e);
    expect((err as { code: string }).code).toBe('upload_failed');
    expect(log.indexOf('part 1')).toBeLessThan(log.indexOf('encrypted')); // sent before the file was done
    const [id, reservation] = [...w.server.attachments.entries()].at(-1)!;
    expect(reservation.partBytes).toBe(3 * 1024 * 1024);
    const had = [...reservation.parts!.keys()];
    expect(had.length).toBeLessThan(4);
    const readsAfterFirst = reads();
    log.length = 0;
    const pointer = await transfers.upload('t', conv, draft);
    expect(reads()).toBe(readsAfterFirst);
    const resent = log.map((x) => Number(x.slice(5)));
    expect(resent.length).toBe(4 - had.length);
    expect(resent.filter((n) => had.includes(n))).toEqual([]);
    expect(w.server.attachmentCalls.filter((c) => c.op === 'reserve' || c.op === 'upload').length).toBe(1);
    expect(w.server.attachmentCalls.filter((c) => c.op === 'complete').length).toBe(1);
    expect(pointer.attachmentId).toBe(id);
    const back = new Transfers({
      api: w.server.api('bob', 'bob-1'),
      rng: cryptoRng,
      emit: () => undefined,
      now: Date.now,
    } as unknown as EngineContext);
    const got = await bytesOf(await back.download('d', pointer));
    expect(got.length).toBe(data.length);
    expect(got.findIndex((b, i) => b !== data[i])).toBe(-1);
    alice.engine.close();
    bob.engine.close();
  });

  it('a failed attachment message is retried with its attachment (same blob, not uploaded again), never as an empty text', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await pair(w);
    const data = fileBytes(90_000, 9);
    w.server.refuseSends = 1;
    const m = await alice.engine.sendAttachment(
      conv,
      { file: new Blob([data as BlobPart]), fileName: 'minutes.pdf', contentType: CONTENT_TYPE },
      { transferId: 'f', caption: 'for Monday' },
    );
    await until(
      async () => (await alice.engine.messages(conv)).some((x) => x.clientId === m.clientId && x.status === 'failed'),
      'the send is refused',
    );
    const retried = await alice.engine.retrySend(conv, m.clientId);
    expect(retried.clientId).not.toBe(m.clientId);
    expect(retried).toMatchObject({
      body: 'for Monday',
      attachment: { fileName: 'minutes.pdf', size: m.attachment!.size },
    });
    // One reservation and one upload in all: the retry reuses the uploaded blob.
    expect(w.server.attachmentCalls.filter((c) => c.op === 'reserve').length).toBe(1);
    expect(w.server.attachmentCalls.filter((c) => c.op === 'upload').length).toBe(1);
    await until(async () => (await received(bob.engine, conv)).length === 1, 'delivered after the retry');
    const [got] = await received(bob.engine, conv);
    expect(got).toMatchObject({ body: 'for Monday', attachment: { fileName: 'minutes.pdf' } });
    expect(await bytesOf(await bob.engine.openAttachment(conv, got!.clientId, 'o'))).toEqual(data);
    // The failed message and its pointer are gone; only the retried one is left (with its pointer).
    expect((await alice.engine.messages(conv)).map((x) => x.clientId)).toEqual([retried.clientId]);
    await expect(alice.engine.openAttachment(conv, m.clientId, 'gone')).rejects.toMatchObject({
      code: 'no_attachment',
    });
    expect(await bytesOf(await alice.engine.openAttachment(conv, retried.clientId, 'mine'))).toEqual(data);
    alice.engine.close();
    bob.engine.close();
  });

  it('R5: an attachment uploaded whose message then fails is ONE failed message: the same send again returns it, and its Retry delivers the file once', async () => {
    const w = await makeWorld();
    const fail = { prefix: 'out/', writes: 0 };
    const { alice, bob, conv } = await pair(w, { aliceStore: failingStore(fail) });
    const data = fileBytes(70_000, 3);
    const draft = { file: new Blob([data as BlobPart]), fileName: 'plan.pdf', contentType: CONTENT_TYPE };
    fail.writes = 1; // the upload succeeds; queueing its message does not
    const m = await alice.engine.sendAttachment(conv, draft, { transferId: 'one', caption: 'the plan' });
    expect(m).toMatchObject({ status: 'failed', body: 'the plan', attachment: { fileName: 'plan.pdf' } });
    // The app's Retry of the card sends the same transfer again: the same message, no second upload.
    const again = await alice.engine.sendAttachment(conv, draft, { transferId: 'one', caption: 'the plan' });
    expect(again.clientId).toBe(m.clientId);
    expect(await received(alice.engine, conv)).toMatchObject([{ clientId: m.clientId, status: 'failed' }]);
    expect(w.server.attachmentCalls.filter((c) => c.op === 'reserve').length).toBe(1);
    expect(w.server.sentFrames.filter((f) => f.frame.type === 'send')).toEqual([]);
    // The message's Retry sends it once, with the blob already uploaded.
    const retried = await alice.engine.retrySend(conv, m.clientId);
    await until(async () => (await received(bob.engine, conv)).length === 1, 'delivered after the retry');
    await alice.engine.flushOutbox();
    expect(await received(bob.engine, conv)).toHaveLength(1);
    expect((await received(alice.engine, conv)).map((x) => x.clientId)).toEqual([retried.clientId]);
    expect(w.server.attachmentCalls.filter((c) => c.op === 'reserve' || c.op === 'upload').length).toBe(2);
    const [got] = await received(bob.engine, conv);
    expect(await bytesOf(await bob.engine.openAttachment(conv, got!.clientId, 'o'))).toEqual(data);
    alice.engine.close();
    bob.engine.close();
  });

  it('R5: an attachment uploaded whose message could not even be stored is sent on Retry with the same blob, as one message', async () => {
    const w = await makeWorld();
    const fail = { prefix: 'pending/', writes: 0 };
    const { alice, bob, conv } = await pair(w, { aliceStore: failingStore(fail) });
    const data = fileBytes(40_000, 4);
    const { blob, reads } = countingBlob(data);
    const draft = { file: blob, fileName: 'scan.png', contentType: 'image/png' };
    fail.writes = 1;
    const err = await alice.engine.sendAttachment(conv, draft, { transferId: 'two' }).catch((e: Error) => e);
    expect((err as Error).name).toBe('QuotaExceededError');
    expect(await alice.engine.messages(conv)).toEqual([]);
    const readsBefore = reads();
    const m = await alice.engine.sendAttachment(conv, draft, { transferId: 'two' });
    expect(m.status).not.toBe('failed');
    expect(reads()).toBe(readsBefore);
    expect(w.server.attachmentCalls.filter((c) => c.op === 'reserve' || c.op === 'upload').length).toBe(2);
    await until(async () => (await received(bob.engine, conv)).length === 1, 'delivered');
    expect((await received(alice.engine, conv)).map((x) => x.clientId)).toEqual([m.clientId]);
    alice.engine.close();
    bob.engine.close();
  });

  it('R5: a failed attachment message whose blob the server no longer has is not retried pointing at nothing', async () => {
    const w = await makeWorld();
    const { alice, bob, conv } = await pair(w);
    w.server.refuseSends = 1;
    const m = await alice.engine.sendAttachment(
      conv,
      { file: new Blob([fileBytes(20_000, 6) as BlobPart]), fileName: 'old.pdf', contentType: CONTENT_TYPE },
      { transferId: 'x' },
    );
    await until(
      async () => (await alice.engine.messages(conv)).some((x) => x.clientId === m.clientId && x.status === 'failed'),
      'the send is refused',
    );
    // The server's retention ended (the hourly clean-up deleted the blob).
    w.server.attachments.delete(m.attachment!.attachmentId);
    await expect(alice.engine.retrySend(conv, m.clientId)).rejects.toMatchObject({ code: 'attachment_unavailable' });
    // Nothing went out, and the failed message is still there to delete.
    expect(w.server.sentFrames.filter((f) => f.frame.type === 'send').length).toBe(1);
    expect(await received(alice.engine, conv)).toMatchObject([{ clientId: m.clientId, status: 'failed' }]);
    alice.engine.close();
    bob.engine.close();
  });

  it('an upload cancelled mid-way sends nothing and frees its reservation', async () => {
    const w = await makeWorld();
    const { alice, conv } = await pair(w);
    let open!: () => void;
    w.server.uploadGate = new Promise<void>((r) => (open = r));
    const events: EngineEvent[] = [];
    alice.engine.on((e) => events.push(e));
    const sending = alice.engine
      .sendAttachment(
        conv,
        { file: new Blob([fileBytes(100_000) as BlobPart]), fileName: 'c', contentType: 'x/y' },
        { transferId: 'c' },
      )
      .catch((e: { code: string }) => e.code);
    await until(() => events.some((e) => e.type === 'transfer' && e.phase === 'upload'), 'upload started');
    await alice.engine.cancelTransfer('c');
    open();
    expect(await sending).toBe('cancelled');
    expect(await alice.engine.messages(conv)).toEqual([]);
    expect(w.server.sentFrames.filter((f) => f.frame.type === 'send')).toEqual([]);
    expect([...w.server.attachments.values()]).toEqual([]);
    alice.engine.close();
  });

  it('a group attachment reaches every member, and each opens the same bytes', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const others = [await newClient(w, 'bob'), await newClient(w, 'carol'), await newClient(w, 'dave')];
    const conv = await alice.engine.createConversation({
      kind: 'group',
      members: others.map((o) => o.userId),
      title: 'team',
    });
    for (const c of [alice, ...others]) await c.engine.connect();
    for (const c of others) await until(async () => (await c.engine.connectionStatus(conv)) === 'online', 'online');
    const data = fileBytes(70_000, 3);
    await alice.engine.sendAttachment(
      conv,
      { file: new Blob([data as BlobPart]), fileName: 'team.pdf', contentType: CONTENT_TYPE },
      { transferId: 'g' },
    );
    for (const c of others) {
      await until(async () => (await received(c.engine, conv)).length === 1, `${c.userId} receives`);
      const [m] = await received(c.engine, conv);
      expect(await bytesOf(await c.engine.openAttachment(conv, m!.clientId, `g-${c.userId}`))).toEqual(data);
    }
    for (const c of [alice, ...others]) c.engine.close();
  });

  it('a member removed from a group can no longer fetch its attachments (attachment_unavailable)', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob'], title: 't' });
    await alice.engine.connect();
    await bob.engine.connect();
    await until(async () => (await bob.engine.connectionStatus(conv)) === 'online', 'online');
    await alice.engine.sendAttachment(
      conv,
      { file: new Blob([fileBytes(1000) as BlobPart]), fileName: 'f', contentType: 'x/y' },
      { transferId: 'u' },
    );
    await until(async () => (await received(bob.engine, conv)).length === 1, 'delivered');
    const [m] = await received(bob.engine, conv);
    await alice.engine.removeMember(conv, 'bob');
    const code = await bob.engine.openAttachment(conv, m!.clientId, 'z').catch((e: { code: string }) => e.code);
    expect(code).toBe('attachment_unavailable');
    alice.engine.close();
    bob.engine.close();
  });

  it('a file above the configured limit is refused before anything is uploaded', async () => {
    const w = await makeWorld();
    const { bob } = await pair(w);
    const small = createEngine({
      store: memoryStore(),
      api: w.server.api('carol', 'carol-1'),
      realtime: w.server.sockets('carol', 'carol-1'),
      curves: w.curves,
      rng: cryptoRng,
      locks: memoryLocks(),
      keystore: { batch: 4, watermark: 2 },
      kt: ktOptions(w),
      maxAttachmentBytes: 1000,
    });
    const id = await small.bootstrap({ userId: 'carol', deviceId: 'carol-1' });
    await w.server.register(id.deviceList);
    await small.publishPrekeys();
    const conv = await small.createConversation({ kind: 'direct', members: ['bob'] });
    const code = await small
      .sendAttachment(
        conv,
        { file: new Blob([fileBytes(1001) as BlobPart]), fileName: 'big', contentType: 'x/y' },
        { transferId: 'b' },
      )
      .catch((e: { code: string }) => e.code);
    expect(code).toBe('attachment_too_large');
    expect(w.server.attachmentCalls.filter((c) => c.user === 'carol')).toEqual([]);
    small.close();
    bob.engine.close();
  });
});

describe('attachment pointers', () => {
  const good = {
    v: 1,
    attachmentId: 'A'.repeat(22),
    key: new Uint8Array(32),
    digest: new Uint8Array(32),
    size: 10,
    contentType: 'image/jpeg',
    fileName: 'p.jpg',
    width: 10,
    height: 20,
    thumbnail: new Uint8Array(10),
  };

  it('accepts a pointer that follows every rule', () => {
    expect(parseAttachmentPointer(good)).toEqual(good);
    expect(parseAttachmentPointer({ ...good, width: null, height: null, thumbnail: null })).not.toBeNull();
  });

  it('refuses a pointer that breaks any rule (it becomes a failed message, never fetched)', () => {
    const bad: Record<string, unknown>[] = [
      { v: 2 },
      { attachmentId: 'short' },
      { attachmentId: '../../etc/passwd-xxxxxxxxxxxx' },
      { key: new Uint8Array(31) },
      { key: 'AAAA' },
      { digest: new Uint8Array(33) },
      { size: -1 },
      { size: 1.5 },
      { size: 2 ** 32 + 1 },
      { contentType: 'text/html; charset=utf-8' },
      { contentType: 'IMAGE' },
      { contentType: 'a/'.padEnd(200, 'b') },
      { fileName: '' },
      { fileName: '../x' },
      { fileName: 'a\\b' },
      { fileName: 'a\u0000b' },
      { fileName: 'x'.repeat(256) },
      { width: 0 },
      { width: 10, height: null },
      { height: 70000 },
      { thumbnail: new Uint8Array(16 * 1024 + 1) },
      { thumbnail: new Uint8Array(0) },
    ];
    for (const b of bad) expect(parseAttachmentPointer({ ...good, ...b }), JSON.stringify(Object.keys(b))).toBeNull();
    expect(parseAttachmentPointer(null)).toBeNull();
    expect(parseAttachmentPointer([good])).toBeNull();
  });

  it('what the sender puts in a pointer is normalised: types lower-cased or octet-stream, names without paths or control characters', () => {
    expect(normalizeContentType('Image/JPEG; q=1')).toBe('image/jpeg');
    expect(normalizeContentType('')).toBe('application/octet-stream');
    expect(normalizeContentType('not a type')).toBe('application/octet-stream');
    expect(normalizeFileName('../../evil\u0007.txt')).toBe('....evil.txt');
    expect(normalizeFileName('')).toBe('file');
    const long = normalizeFileName(`${'a'.repeat(300)}.pdf`);
    expect([...long].length).toBe(255);
    expect(long.endsWith('.pdf')).toBe(true);
  });
});
