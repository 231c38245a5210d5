/**
 * Device-only history export (issue 18; engine/history.ts): the document holds what this device decrypted,
 * plain or sealed under a passphrase, and the server receives nothing while it is made.
 */
import { describe, expect, it } from 'vitest';
import { fromUtf8 } from '../protocol/bytes.js';
import { ErrorCode, is, isHistoryExportContainer, openHistoryExport, toB64u, toHex } from './_protocol.js';
import type { HistoryDocument } from './history.js';
import { makeWorld, newClient, ownIdentity, texts, until } from './testing/harness.js';
import type { ServerApi } from './transport.js';

const kdf = { m: 64, t: 1, p: 1 }; // cheap for tests; the app uses the default (64 MiB, t = 3)

describe('history export', () => {
  it('a person exports what this device decrypted, plain and sealed; the server receives nothing of it', async () => {
    const w = await makeWorld();
    // Alice's engine talks to the server through a recorder: every request made while exporting is seen.
    const calls: string[] = [];
    const real = w.server.api('alice', 'alice-1');
    const recorded = new Proxy(real, {
      get: (t, k) => {
        const v = Reflect.get(t, k);
        if (typeof v !== 'function') return v;
        return (...a: unknown[]) => {
          calls.push(String(k));
          return v.apply(t, a);
        };
      },
    }) as ServerApi;
    const alice = await newClient(w, 'alice', 'alice-1', { engine: { api: recorded } });
    const bob = await newClient(w, 'bob');
    const direct = await alice.engine.createConversation({ kind: 'direct', members: ['bob'], title: 'alice bob' });
    const group = await alice.engine.createConversation({ kind: 'group', members: ['bob'], title: 'Book club' });
    await alice.engine.setPref('names', { bob: 'bob_the_reader' });
    await alice.engine.connect();
    await bob.engine.connect();
    for (const c of [direct, group])
      await until(async () => (await bob.engine.connectionStatus(c)) === 'online', 'bob online');
    await alice.engine.sendText(direct, 'meet at six?');
    await until(async () => (await texts(bob.engine, direct)).includes('meet at six?'), 'bob receives');
    await bob.engine.sendText(direct, 'six is fine');
    await bob.engine.sendText(group, 'chapter 3 by Friday');
    await until(async () => (await texts(alice.engine, direct)).includes('six is fine'), 'alice receives');
    await until(async () => (await texts(alice.engine, group)).includes('chapter 3 by Friday'), 'alice receives');
    await alice.engine.idle();
    await bob.engine.idle();

    const framesBefore = w.server.sentFrames.length;
    calls.length = 0;
    const plain = await alice.engine.exportHistory();
    const sealed = await alice.engine.exportHistory({ passphrase: 'a long export passphrase', kdf });
    expect(calls).toEqual([]);
    expect(w.server.sentFrames.length).toBe(framesBefore);

    expect(plain.encrypted).toBe(false);
    expect([plain.conversations, plain.messages]).toEqual([2, 3]);
    const doc = JSON.parse(fromUtf8(plain.bytes)) as HistoryDocument;
    expect(doc).toMatchObject({ format: 'e2e-chat history', version: 1 });
    expect(doc.account).toEqual({ userId: 'alice', deviceId: 'alice-1', username: 'alice' });
    expect(doc.names).toEqual({ bob: 'bob_the_reader' });
    const conv = (id: string) => doc.conversations.find((c) => c.id === id)!;
    expect(conv(group)).toMatchObject({ kind: 'group', title: 'Book club', removed: false });
    expect(
      conv(group)
        .members.map((m) => `${m.userId}:${m.role}`)
        .sort(),
    ).toEqual(['alice:owner', 'bob:member']);
    expect(conv(direct).messages.map((m) => [m.from.userId, m.outgoing, m.body])).toEqual([
      ['alice', true, 'meet at six?'],
      ['bob', false, 'six is fine'],
    ]);
    expect(conv(group).messages.map((m) => m.body)).toEqual(['chapter 3 by Friday']);
    // No key of any kind: none of this device's secrets, in hex or base64url.
    const own = await ownIdentity(alice.store);
    const text = fromUtf8(plain.bytes);
    for (const k of [own.userIdentity.secretKey, own.signing.secretKey, own.identity.secretKey]) {
      expect(text.includes(toHex(k))).toBe(false);
      expect(text.includes(toB64u(k))).toBe(false);
    }

    // Sealed: a container, nothing readable in it; it opens to the same document.
    expect(sealed.encrypted).toBe(true);
    expect(isHistoryExportContainer(sealed.bytes)).toBe(true);
    expect(Buffer.from(sealed.bytes).includes('meet at six?')).toBe(false);
    const opened = JSON.parse(fromUtf8(await openHistoryExport(sealed.bytes, 'a long export passphrase')));
    expect(opened.conversations).toEqual(doc.conversations);
    const wrong = await openHistoryExport(sealed.bytes, 'another passphrase').catch((e: unknown) => e);
    expect(is(wrong, ErrorCode.WrongPassphrase)).toBe(true);
    alice.engine.close();
    bob.engine.close();
  });
});
