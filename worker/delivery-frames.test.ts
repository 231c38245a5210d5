import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { CLOSE, HARD_FRAME_BYTES, MAX_CIPHERTEXT_BYTES, MAX_FRAME_BYTES, WIRE_VERSION } from '../schema/wire.js';
import { equal, fromB64u, toB64u, utf8 } from '../web/src/protocol/bytes.js';
import { verifyBundle } from '../web/src/protocol/prekeys.js';
import { defaultCurves } from '../web/src/protocol/primitives.js';
import {
  createSenderKey,
  decodeSenderKeyDistribution,
  emptySenderKeyRecord,
  encodeSenderKeyDistribution,
  processSenderKeyDistribution,
  senderDecrypt,
  senderEncrypt,
  senderKeyDistribution,
} from '../web/src/protocol/sender-keys.js';
import { decrypt, emptySessionRecord, encrypt, initiateSession } from '../web/src/protocol/session.js';
import { makeTestUser, seededRng, testBundle, testLocalIdentity } from '../web/src/protocol/testing.js';
import {
  type Client,
  connect,
  conversationStub,
  fakeCiphertext,
  flushOutbox,
  makeConversation,
  makeUser,
} from './test/delivery-fixtures.js';

const group = (id: string) => ({ v: WIRE_VERSION, type: 'send', id, group: fakeCiphertext() });

async function expectError(c: Client, raw: string | ArrayBuffer, code: string) {
  const before = c.frames.length;
  c.ws.send(raw);
  await c.until((x) => x.frames.slice(before).some((f) => f.type === 'error'), 10_000, `error ${code}`);
  expect(c.frames.slice(before).find((f) => f.type === 'error')).toMatchObject({ code });
}

describe('bad frames: an error frame, and the socket stays usable (pitfall 24, frames)', () => {
  it('non-JSON, non-object, binary, unknown type, wrong version, wrong types, both bodies, oversize', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    const b = await connect(conv, bob.devices[0]!);
    const cases: [string | ArrayBuffer, string][] = [
      ['{not json', 'bad_frame'],
      ['[1,2,3]', 'bad_frame'],
      ['"send"', 'bad_frame'],
      [new TextEncoder().encode('{"v":1}').buffer as ArrayBuffer, 'bad_frame'],
      [JSON.stringify({ v: 1, type: 'shout', id: 'x' }), 'unknown_type'],
      [JSON.stringify({ v: 2, type: 'send', id: 'x', group: 'AAAA' }), 'unsupported_version'],
      [JSON.stringify({ v: 1, type: 'send', id: 42, group: 'AAAA' }), 'bad_frame'],
      [JSON.stringify({ v: 1, type: 'send', id: 'x', group: 'not base64url!' }), 'bad_frame'],
      // Base64url alphabet but not decodable: 4n + 1 characters, bits set past the last byte (non-canonical).
      [JSON.stringify({ v: 1, type: 'send', id: 'x', group: 'AAAAA' }), 'bad_frame'],
      [JSON.stringify({ v: 1, type: 'send', id: 'x', group: 'AB' }), 'bad_frame'],
      [JSON.stringify({ v: 1, type: 'send', id: 'x', group: 'AAB' }), 'bad_frame'],
      [JSON.stringify({ v: 1, type: 'send', id: 'x', to: [{ u: bob.userId, d: 'd0', c: 'AAAAAB' }] }), 'bad_frame'],
      [
        JSON.stringify({ v: 1, type: 'send', id: 'x', group: 'AAAA', to: [{ u: bob.userId, d: 'd0', c: 'AAAA' }] }),
        'bad_frame',
      ],
      [JSON.stringify({ v: 1, type: 'send', id: 'x' }), 'bad_frame'],
      [JSON.stringify({ v: 1, type: 'send', id: 'x', to: [] }), 'bad_frame'],
      [JSON.stringify({ v: 1, type: 'ack', upTo: '5' }), 'bad_frame'],
      [JSON.stringify({ v: 1, type: 'ack', upTo: -1 }), 'bad_frame'],
      [JSON.stringify({ v: 1, type: 'resume', after: 1.5 }), 'bad_frame'],
      [JSON.stringify({ v: 1, type: 'receipt', id: 'r', status: 'seen', group: 'AAAA' }), 'bad_frame'],
      [
        JSON.stringify({
          v: 1,
          type: 'send',
          id: 'x',
          group: 'A'.repeat(Math.ceil((MAX_CIPHERTEXT_BYTES * 4) / 3) + 8),
        }),
        'bad_frame',
      ],
      [JSON.stringify({ v: 1, type: 'send', id: 'x', group: 'A'.repeat(MAX_FRAME_BYTES) }), 'frame_too_large'],
      [
        JSON.stringify({
          v: 1,
          type: 'send',
          id: 'dup',
          to: [
            { u: bob.userId, d: 'd0', c: 'AAAA' },
            { u: bob.userId, d: 'd0', c: 'AAAA' },
          ],
        }),
        'duplicate_recipient',
      ],
    ];
    for (const [raw, code] of cases) {
      await expectError(a, raw, code);
      // Still usable after every bad frame.
      expect(await a.sendAndWait(group(`ok-${a.frames.length}`))).toMatchObject({ type: 'accepted' });
    }
    expect(a.closed).toBe(null);
    // Nothing of the bad frames was delivered.
    await b.until((x) => x.envelopes().length === cases.length);
    expect(b.envelopes().every((e) => e.id.startsWith('ok-'))).toBe(true);
    a.close();
    b.close();
  });

  it('a frame over the hard cap closes the socket with 1009; other sockets are unaffected', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    const b = await connect(conv, bob.devices[0]!);
    a.ws.send('x'.repeat(HARD_FRAME_BYTES + 1));
    expect((await a.waitClosed()).code).toBe(CLOSE.tooBig);
    expect(await b.sendAndWait(group('still-fine'))).toMatchObject({ type: 'accepted', seq: 1 });
    b.close();
  });

  it('pings are answered by the auto-response without a frame error', async () => {
    const alice = await makeUser('alice');
    const conv = await makeConversation([alice]);
    const a = await connect(conv, alice.devices[0]!);
    a.ws.send('{"type":"ping"}');
    await a.until((x) => x.frames.some((f) => (f as { type: string }).type === 'pong'));
    expect(a.frames.some((f) => f.type === 'error')).toBe(false);
    a.close();
  });

  it('stale sockets (no ping for longer than the limit) are reaped by the alarm with 4408', async () => {
    const alice = await makeUser('alice');
    const conv = await makeConversation([alice]);
    const a = await connect(conv, alice.devices[0]!);
    // Make the socket look old: rewrite its attachment's connect time and forget in-memory activity.
    await runInDurableObject(conversationStub(conv), (inst, state) => {
      for (const ws of state.getWebSockets()) {
        const att = ws.deserializeAttachment() as { t: number };
        ws.serializeAttachment({ ...att, t: Date.now() - 10 * 60_000 });
      }
      const i = inst as unknown as {
        attachments: WeakMap<WebSocket, unknown>;
        lastFrameAt: WeakMap<WebSocket, number>;
      };
      i.attachments = new WeakMap();
      i.lastFrameAt = new WeakMap();
    });
    await runDurableObjectAlarm(conversationStub(conv));
    expect((await a.waitClosed()).code).toBe(CLOSE.stale);
  });
});

describe('unexpected failures: every answer can be matched by the client', () => {
  /** Makes the DO's next call of `method` throw an unexpected (non-frame) error, once. */
  const failOnce = (conv: string, method: 'devices' | 'applyAcks') =>
    runInDurableObject(conversationStub(conv), (inst) => {
      const i = inst as unknown as Record<string, unknown> & { deviceSet: unknown };
      i.deviceSet = null; // the next send reads the member/device set again
      i[method] = () => {
        delete i[method]; // back to the class's own method
        throw new TypeError('D1_ERROR: storage unavailable');
      };
    });

  it('a send that fails unexpectedly is answered internal WITH its id (the client retries it), and the retry is accepted', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    expect(await a.sendAndWait(group('warm'))).toMatchObject({ type: 'accepted', seq: 1 });
    await failOnce(conv, 'devices');
    // An id-less `internal` would leave the client's one-frame-at-a-time outbox waiting for good.
    expect(await a.sendAndWait(group('m1'))).toMatchObject({ type: 'error', code: 'internal', id: 'm1' });
    expect(await a.sendAndWait(group('m1'))).toMatchObject({ type: 'accepted', seq: 2 });
    expect(a.frames.filter((f) => f.type === 'error')).toHaveLength(1);
    a.close();
  });

  it('a resume that fails unexpectedly closes the socket with 1011 (the client reconnects and resumes) instead of an unmatched error', async () => {
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const a = await connect(conv, alice.devices[0]!);
    await a.sendAndWait(group('m1'));
    const b = await connect(conv, bob.devices[0]!);
    await failOnce(conv, 'applyAcks');
    b.send({ v: WIRE_VERSION, type: 'resume', after: 0 });
    expect((await b.waitClosed()).code).toBe(CLOSE.internal);
    expect(b.frames.filter((f) => f.type === 'error')).toEqual([]);
    // A new socket resumes normally and gets what it missed.
    const again = await connect(conv, bob.devices[0]!);
    expect(again.envelopes().map((e) => e.id)).toEqual(['m1']);
    again.close();
    a.close();
  });
});

describe('the server stores ciphertext only', () => {
  it('a marker encrypted with the real protocol core (pairwise session and sender key) appears nowhere in D1 or DO storage', async () => {
    const marker = `PLAINTEXT-MARKER-${crypto.randomUUID()}`;
    const curves = await defaultCurves();
    const rng = seededRng(`marker-${marker}`);
    const alice = await makeUser('alice');
    const bob = await makeUser('bob');
    const conv = await makeConversation([alice, bob]);
    const ka = await makeTestUser(curves, rng, alice.userId, ['d0']);
    const kb = await makeTestUser(curves, rng, bob.userId, ['d0']);

    // Pairwise: PQXDH + Double Ratchet from alice/d0 to bob/d0.
    const bundle = await verifyBundle(curves, testBundle(kb.devices[0]!), kb.identity.publicKey);
    const session = await initiateSession(curves, rng, testLocalIdentity(ka.devices[0]!), bundle, Date.now());
    const pw = encrypt(session, utf8(`${marker} pairwise`), Date.now());
    // Group: a sender key distributed to bob out of band (normally over the pairwise session).
    const own = await createSenderKey(curves, rng);
    const dist = decodeSenderKeyDistribution(encodeSenderKeyDistribution(senderKeyDistribution(own, conv)));
    const bobRecord = processSenderKeyDistribution(emptySenderKeyRecord(), dist, conv);
    const gm = await senderEncrypt(curves, own, utf8(`${marker} group`));

    const a = await connect(conv, alice.devices[0]!);
    const b = await connect(conv, bob.devices[0]!);
    await a.sendAndWait({
      v: WIRE_VERSION,
      type: 'send',
      id: 'pw',
      to: [{ u: bob.userId, d: 'd0', c: toB64u(pw.message) }],
    });
    await a.sendAndWait({ v: WIRE_VERSION, type: 'send', id: 'gm', group: toB64u(gm.message) });
    await a.sendAndWait({ v: WIRE_VERSION, type: 'receipt', id: 'rc', status: 'read', group: toB64u(gm.message) });
    await b.until((x) => x.envelopes().length === 3);
    // The receiver really decrypts the marker (so the bytes stored are the real ciphertexts).
    const [e1, e2] = b.envelopes();
    const dec = await decrypt(
      curves,
      rng,
      emptySessionRecord(),
      fromB64u(e1!.c),
      {
        ours: testLocalIdentity(kb.devices[0]!),
        remote: { userId: alice.userId, deviceId: 'd0' },
        responderKeys: (ids) => {
          const dev = kb.devices[0]!;
          const kem = [dev.kemPrekey, dev.lastResortKemPrekey].find((k) => k.id === ids.kemPrekeyId);
          const otp = dev.oneTimePrekeys.find((o) => o.id === ids.oneTimePrekeyId);
          return kem
            ? { signedPrekey: dev.signedPrekey.keyPair, oneTimePrekey: otp?.keyPair ?? null, kemPrekey: kem.keyPair }
            : null;
        },
        isTrustedIdentity: (k) => equal(k, ka.devices[0]!.identity.publicKey),
      },
      Date.now(),
    );
    expect(new TextDecoder().decode(dec.plaintext)).toBe(`${marker} pairwise`);
    const gd = await senderDecrypt(curves, bobRecord, fromB64u(e2!.c));
    expect(new TextDecoder().decode(gd.plaintext)).toBe(`${marker} group`);
    b.close(); // unacked: stays in the DO and goes to D1
    await flushOutbox(conv);

    const needles = [utf8(marker), utf8(toB64u(utf8(marker)).slice(0, 24))];
    const contains = (hay: Uint8Array) => needles.some((n) => indexOf(hay, n) >= 0);
    // D1: every table, every column.
    const tables = await env.DB.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'",
    ).all<{ name: string }>();
    let mailboxSeen = 0;
    for (const { name } of tables.results) {
      // sql-interpolation-ok: table names come from sqlite_master, never from input.
      const rows = await env.DB.prepare(`SELECT * FROM "${name}"`).all<Record<string, unknown>>();
      if (name === 'mailbox') mailboxSeen = rows.results.length;
      for (const row of rows.results) for (const v of Object.values(row)) expect(contains(valueBytes(v))).toBe(false);
    }
    expect(mailboxSeen).toBeGreaterThan(0);
    // DO SQLite: every table, every column.
    const doHit = await runInDurableObject(conversationStub(conv), (_i, state) => {
      const names = state.storage.sql
        .exec<{ name: string }>(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%' AND name NOT LIKE 'sqlite_%'",
        )
        .toArray();
      let rows = 0;
      for (const { name } of names) {
        // sql-interpolation-ok: table names come from sqlite_master, never from input.
        for (const row of state.storage.sql.exec(`SELECT * FROM "${name}"`)) {
          rows++;
          for (const v of Object.values(row)) if (contains(valueBytes(v))) return -1;
        }
      }
      return rows;
    });
    expect(doHit).toBeGreaterThan(0);
    a.close();
  });
});

function valueBytes(v: unknown): Uint8Array {
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (v instanceof Uint8Array) return v;
  return utf8(String(v));
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
