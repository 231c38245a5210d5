/**
 * Linking formats (docs/PROTOCOL.md §"Linking"): link codes, the sealed provisioning message, sealed
 * channel frames and history records, encrypted device names and the own sync conversation id — their
 * round trips, and every bad input and tampering named in issue 14 refused with a stable code.
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  accountKeys,
  DEVICE_NAME_SEALED_LEN,
  openDeviceName,
  sealDeviceName,
  selfConversationId,
} from './account-keys.js';
import { fromB64u, toB64u, utf8 } from './bytes.js';
import {
  LINK_CODE_PREFIX,
  MAX_DEVICE_NAME_LEN,
  MAX_HISTORY_CHUNK_LEN,
  MAX_HISTORY_CHUNKS,
  MAX_LINK_CONTACTS,
} from './constants.js';
import { is } from './errors.js';
import {
  decodeHistoryRecords,
  encodeHistoryRecord,
  type HistoryMessage,
  type HistoryRecord,
  packHistory,
} from './history.js';
import { encodeDeviceList, signDeviceList } from './identity.js';
import { generateEd25519, generateX25519, type OurX25519KeyPair, theirX25519 } from './keys.js';
import { canonicalOrigin, channelIdBytes, channelIdString, decodeLinkCode, encodeLinkCode } from './link-code.js';
import type { Curve25519 } from './primitives.js';
import {
  decodeProvisioningBody,
  encodeProvisioningBody,
  MAX_PROVISIONING_LEN,
  openProvisioning,
  type ProvisioningContent,
  sealProvisioning,
} from './provisioning.js';
import { makeTestUser, seededRng, type TestUser, webCryptoTestCurves } from './testing.js';
import {
  Direction,
  decodeTransferBody,
  encodeTransferBody,
  openTransferFrame,
  sealTransferFrame,
  type TransferFrame,
  transferKeys,
} from './transfer.js';

let curves: Curve25519;
let alice: TestUser;
let eph: OurX25519KeyPair;
const channelId = seededRng('linking channel')(16);
const rng = seededRng('linking.test');

const flip = (b: Uint8Array, i: number) => {
  const c = b.slice();
  c[i]! ^= 1;
  return c;
};

function content(over: Partial<ProvisioningContent> = {}): ProvisioningContent {
  return {
    userId: 'alice',
    username: 'alice',
    userIdentitySecret: alice.identity.secretKey,
    linkedBy: 'a1',
    linkingToken: seededRng('token')(32),
    deviceList: encodeDeviceList(alice.deviceList),
    deviceName: 'Chromium on Linux',
    history: true,
    contacts: [
      { userId: 'bob', identityKey: alice.devices[0]!.signing.publicKey, verified: true, username: 'bob' },
      { userId: 'carol', identityKey: alice.identity.publicKey, verified: false, username: '' },
    ],
    createdAt: 1_767_225_600_000,
    ...over,
  };
}

beforeAll(async () => {
  curves = (await webCryptoTestCurves())!;
  alice = await makeTestUser(curves, rng, 'alice', ['a1', 'a2']);
  eph = await generateX25519(curves, rng);
});

describe('link code', () => {
  it('round-trips origin, channel id and key through the text form (what the QR carries)', () => {
    const text = encodeLinkCode({ origin: 'https://chat.example', channelId, ephemeralKey: eph.publicKey });
    expect(text.startsWith(LINK_CODE_PREFIX)).toBe(true);
    expect(text.length).toBeLessThan(120);
    const code = decodeLinkCode(`  ${text.slice(0, 30)}\n${text.slice(30)} `);
    expect(code.origin).toBe('https://chat.example');
    expect(toB64u(code.channelId)).toBe(toB64u(channelId));
    expect(toB64u(code.ephemeralKey)).toBe(toB64u(eph.publicKey));
    expect(channelIdString(channelId)).toHaveLength(22);
    expect(toB64u(channelIdBytes(channelIdString(channelId)))).toBe(toB64u(channelId));
  });

  it('refuses wrong or tampered codes with decode / invalid_key', () => {
    const text = encodeLinkCode({ origin: 'http://127.0.0.1:5173', channelId, ephemeralKey: eph.publicKey });
    const bin = fromB64u(text.slice(LINK_CODE_PREFIX.length));
    const bad = (b: Uint8Array) => LINK_CODE_PREFIX + toB64u(b);
    const versioned = bin.slice();
    versioned[0] = 2;
    const highKey = bin.slice();
    highKey[1 + 16 + 31] = 0xff; // top bit set: not a canonical X25519 key
    for (const [t, code] of [
      ['', 'decode'],
      ['hello', 'decode'],
      [text.replace(LINK_CODE_PREFIX, 'e2echat-lnk:'), 'decode'],
      [bad(bin.slice(0, 40)), 'decode'],
      [bad(versioned), 'decode'],
      [bad(highKey), 'invalid_key'],
      [`${text}!`, 'decode'],
      [bad(new Uint8Array([...bin.slice(0, 49), ...utf8('ftp://x')])), 'decode'],
      [bad(new Uint8Array([...bin.slice(0, 49), ...utf8('https://x/path')])), 'decode'],
      [`${LINK_CODE_PREFIX}${'A'.repeat(5000)}`, 'decode'],
    ] as const) {
      let err: unknown;
      try {
        decodeLinkCode(t);
      } catch (e) {
        err = e;
      }
      expect(is(err, code), `${t.slice(0, 40)} → ${code}`).toBe(true);
    }
    expect(() => canonicalOrigin('https://Chat.Example')).toThrow(); // not canonical (URL lower-cases the host)
    expect(() => channelIdBytes('abc')).toThrow();
  });

  it('never throws anything but a protocol error on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        try {
          decodeLinkCode(LINK_CODE_PREFIX + s);
        } catch (e) {
          expect(is(e)).toBe(true);
        }
      }),
    );
  });
});

describe('provisioning message', () => {
  it('opens for the new device with the identity key pair, verified list, token, name and trust state', async () => {
    const c = content();
    const sealRng = seededRng('seal');
    const { sealed, channelKey } = await sealProvisioning(
      curves,
      sealRng,
      { channelId, ephemeralKey: theirX25519(eph.publicKey) },
      c,
    );
    expect((sealed.length - 2 - 32 - 16) % 1024).toBe(0); // padded: the size says little
    const opened = await openProvisioning(curves, eph, channelId, sealed);
    expect(toB64u(opened.channelKey)).toBe(toB64u(channelKey));
    const o = opened.content;
    expect(o.userId).toBe('alice');
    expect(o.username).toBe('alice');
    expect(toB64u(o.userIdentity.publicKey)).toBe(toB64u(alice.identity.publicKey));
    expect(o.verifiedList.version).toBe(1);
    expect(o.verifiedList.devices.map((d) => d.deviceId)).toEqual(['a1', 'a2']);
    expect(toB64u(o.linkingToken)).toBe(toB64u(c.linkingToken));
    expect(o.deviceName).toBe('Chromium on Linux');
    expect(o.history).toBe(true);
    expect(o.contacts.map((x) => [x.userId, x.verified, x.username])).toEqual([
      ['bob', true, 'bob'],
      ['carol', false, ''],
    ]);
    // The plaintext never appears in the sealed bytes.
    const hex = Buffer.from(sealed).toString('hex');
    expect(hex.includes(Buffer.from(alice.identity.secretKey).toString('hex'))).toBe(false);
    expect(hex.includes(Buffer.from(utf8('Chromium on Linux')).toString('hex'))).toBe(false);
  });

  it('a server-side tampering of the channel payload fails to open (every byte, same code)', async () => {
    const { sealed } = await sealProvisioning(
      curves,
      rng,
      { channelId, ephemeralKey: theirX25519(eph.publicKey) },
      content(),
    );
    const positions = [0, 1, 2, 20, 33, 34, 60, 500, sealed.length - 17, sealed.length - 1];
    for (const i of positions) {
      let err: unknown;
      try {
        await openProvisioning(curves, eph, channelId, flip(sealed, i));
      } catch (e) {
        err = e;
      }
      expect(is(err, 'decryption_failed'), `byte ${i}`).toBe(true);
    }
    // Truncated, extended, moved to another channel, or opened with another key: the same answer.
    const other = await generateX25519(curves, rng);
    for (const attempt of [
      () => openProvisioning(curves, eph, channelId, sealed.slice(0, sealed.length - 1)),
      () => openProvisioning(curves, eph, channelId, new Uint8Array([...sealed, 0])),
      () => openProvisioning(curves, eph, flip(channelId, 0), sealed),
      () => openProvisioning(curves, other, channelId, sealed),
      () => openProvisioning(curves, eph, channelId, new Uint8Array(MAX_PROVISIONING_LEN + 1)),
    ]) {
      await expect(attempt()).rejects.toMatchObject({ code: 'decryption_failed' });
    }
  });

  it('an authentic message whose device list is not signed by the carried identity is refused', async () => {
    const mallory = await generateEd25519(curves, rng);
    // A list for alice signed by some other key: the new device must never adopt it.
    const forged = encodeDeviceList(
      await signDeviceList(curves, mallory, { userId: 'alice', version: 2, devices: alice.deviceList.devices }),
    );
    const { sealed } = await sealProvisioning(
      curves,
      rng,
      { channelId, ephemeralKey: theirX25519(eph.publicKey) },
      content({ deviceList: forged }),
    );
    await expect(openProvisioning(curves, eph, channelId, sealed)).rejects.toMatchObject({
      code: 'untrusted_identity',
    });

    const other = await makeTestUser(curves, rng, 'bob', ['b1']);
    const { sealed: s2 } = await sealProvisioning(
      curves,
      rng,
      { channelId, ephemeralKey: theirX25519(eph.publicKey) },
      content({ deviceList: encodeDeviceList(other.deviceList), userIdentitySecret: other.identity.secretKey }),
    );
    await expect(openProvisioning(curves, eph, channelId, s2)).rejects.toMatchObject({ code: 'invalid_structure' });

    const { sealed: s3 } = await sealProvisioning(
      curves,
      rng,
      { channelId, ephemeralKey: theirX25519(eph.publicKey) },
      content({ linkedBy: 'a9' }),
    );
    await expect(openProvisioning(curves, eph, channelId, s3)).rejects.toMatchObject({ code: 'invalid_structure' });
  });

  it('refuses oversized fields when sealing and decodes its body strictly', () => {
    expect(() => encodeProvisioningBody(content({ deviceName: 'x'.repeat(MAX_DEVICE_NAME_LEN + 1) }))).toThrow();
    expect(() => encodeProvisioningBody(content({ linkingToken: new Uint8Array(0) }))).toThrow();
    const many = Array.from({ length: MAX_LINK_CONTACTS + 1 }, (_, i) => ({
      userId: `u${i}`,
      identityKey: alice.identity.publicKey,
      verified: false,
      username: '',
    }));
    expect(() => encodeProvisioningBody(content({ contacts: many }))).toThrow();
    const body = encodeProvisioningBody(content());
    expect(decodeProvisioningBody(body).deviceName).toBe('Chromium on Linux');
    expect(() => decodeProvisioningBody(new Uint8Array([...body, 0]))).toThrow();
    expect(() => decodeProvisioningBody(body.slice(0, body.length - 1))).toThrow();
    // The largest allowed message stays under the bound the opener enforces.
    const full = encodeProvisioningBody(
      content({
        contacts: Array.from({ length: MAX_LINK_CONTACTS }, (_, i) => ({
          userId: `user-${'x'.repeat(50)}-${i}`,
          identityKey: alice.identity.publicKey,
          verified: true,
          username: 'y'.repeat(64),
        })),
      }),
    );
    expect(full.length).toBeLessThan(MAX_PROVISIONING_LEN);
  });
});

describe('channel frames', () => {
  const keys = () => transferKeys(seededRng('channel key')(32), channelId);
  const frames: TransferFrame[] = [
    { type: 'history_header', attempt: 1, chunks: 3, messages: 120, bytes: 40_000 },
    { type: 'history_chunk', attempt: 1, index: 0, records: utf8('records') },
    { type: 'history_none' },
    { type: 'cancel', code: 'user_cancelled' },
  ];

  it('round-trip in order, each direction under its own key', () => {
    const k = keys();
    let seq = 0;
    for (const f of frames) {
      seq++;
      const sealed = sealTransferFrame(k, Direction.ToNew, seq, f);
      expect(openTransferFrame(k, Direction.ToNew, seq, sealed)).toEqual(f);
    }
    const status: TransferFrame = { type: 'status', status: 'imported', attempt: 1, value: 120, code: '' };
    const s = sealTransferFrame(k, Direction.ToExisting, 1, status);
    expect(openTransferFrame(k, Direction.ToExisting, 1, s)).toEqual(status);
    // Same seq, other direction: different key, so the bytes differ and neither opens as the other.
    const c = sealTransferFrame(k, Direction.ToExisting, 1, { type: 'cancel', code: 'x' });
    const d = sealTransferFrame(k, Direction.ToNew, 1, { type: 'cancel', code: 'x' });
    expect(toB64u(c.subarray(6))).not.toBe(toB64u(d.subarray(6)));
    expect(() => openTransferFrame(k, Direction.ToNew, 1, c)).toThrow();
  });

  it('dropped, repeated, reordered or tampered frames are refused and never open', () => {
    const k = keys();
    const f1 = sealTransferFrame(k, Direction.ToNew, 1, frames[0]!);
    const f2 = sealTransferFrame(k, Direction.ToNew, 2, frames[1]!);
    expect(() => openTransferFrame(k, Direction.ToNew, 1, f2)).toThrow(/sequence/); // f1 dropped
    expect(() => openTransferFrame(k, Direction.ToNew, 2, f1)).toThrow(/sequence/); // f1 repeated
    // The relay rewrites the seq in the header: the AAD no longer matches.
    const moved = f2.slice();
    moved[5] = 1;
    expect(() => openTransferFrame(k, Direction.ToNew, 1, moved)).toThrow(
      expect.objectContaining({ code: 'decryption_failed' }),
    );
    for (const i of [0, 6, 40, f1.length - 1]) {
      let err: unknown;
      try {
        openTransferFrame(k, Direction.ToNew, 1, flip(f1, i));
      } catch (e) {
        err = e;
      }
      expect(is(err), `byte ${i}`).toBe(true);
    }
    // Another channel's key (or id) opens nothing.
    const other = transferKeys(seededRng('channel key')(32), flip(channelId, 3));
    expect(() => openTransferFrame(other, Direction.ToNew, 1, f1)).toThrow(
      expect.objectContaining({ code: 'decryption_failed' }),
    );
  });

  it('history frames only travel to the new device and status frames only from it', () => {
    const k = keys();
    expect(() => sealTransferFrame(k, Direction.ToExisting, 1, frames[1]!)).toThrow();
    expect(() =>
      sealTransferFrame(k, Direction.ToNew, 1, { type: 'status', status: 'linked', attempt: 0, value: 0, code: '' }),
    ).toThrow();
  });

  it('bounds every count and size on decode', () => {
    const big = encodeTransferBody({ type: 'history_header', attempt: 1, chunks: 1, messages: 1, bytes: 1 });
    const tooMany = big.slice();
    new DataView(tooMany.buffer).setUint32(5, MAX_HISTORY_CHUNKS + 1);
    expect(() => decodeTransferBody(tooMany)).toThrow(expect.objectContaining({ code: 'limit_exceeded' }));
    expect(() =>
      encodeTransferBody({
        type: 'history_chunk',
        attempt: 1,
        index: 0,
        records: new Uint8Array(MAX_HISTORY_CHUNK_LEN + 1),
      }),
    ).toThrow();
    expect(() => decodeTransferBody(Uint8Array.of(9))).toThrow(expect.objectContaining({ code: 'decode' }));
    expect(() => decodeTransferBody(Uint8Array.of(4, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))).toThrow();
  });
});

describe('history records', () => {
  const msg = (i: number, body: string | null = `message ${i}`): HistoryMessage => ({
    kind: 'message',
    conversationId: 'c1',
    seq: i + 1,
    clientId: `m${i}`,
    fromUser: i % 2 ? 'alice' : 'bob',
    fromDevice: 'd1',
    status: i % 2 ? 'sent' : 'received',
    sentAt: 1_767_225_600_000 + i,
    receivedAt: 1_767_225_600_500 + i,
    body,
    error: body === null ? 'no_session' : null,
  });

  it('pack into chunks under the limit and decode back in order', () => {
    const records: HistoryRecord[] = [
      ...Array.from({ length: 500 }, (_, i) => msg(i, 'x'.repeat(600))),
      msg(500, null),
      { kind: 'read_position', conversationId: 'c1', seq: 480 },
    ];
    const chunks = packHistory(records);
    expect(chunks.length).toBeGreaterThan(1);
    for (const c of chunks) expect(c.length).toBeLessThanOrEqual(MAX_HISTORY_CHUNK_LEN);
    const back = chunks.flatMap((c) => decodeHistoryRecords(c).records);
    expect(back).toEqual(records);
  });

  it('skips record kinds it does not know and refuses malformed ones', () => {
    const known = encodeHistoryRecord(msg(1));
    const unknown = Uint8Array.of(77, 0, 0, 0, 2, 1, 2);
    const chunk = new Uint8Array([0, 0, 0, 2, ...unknown, ...known]);
    const r = decodeHistoryRecords(chunk);
    expect(r.skipped).toBe(1);
    expect(r.records).toEqual([msg(1)]);
    expect(() => decodeHistoryRecords(Uint8Array.of(0xff, 0xff, 0xff, 0xff))).toThrow(
      expect.objectContaining({ code: 'decode' }),
    );
    expect(() => decodeHistoryRecords(new Uint8Array([0, 0, 0, 1, ...known.slice(0, -1)]))).toThrow();
    expect(() => encodeHistoryRecord({ ...msg(1), clientId: '' })).toThrow();
  });
});

describe('device names and the own sync conversation', () => {
  it('only the user’s own devices read a name, and it is bound to its device', async () => {
    const keys = accountKeys(alice.identity.secretKey);
    const sealed = sealDeviceName(rng, keys, 'alice', 'a2', 'Laptop — Firefox');
    expect(sealed.length).toBe(DEVICE_NAME_SEALED_LEN);
    // Same length whatever the name: the server learns nothing from it.
    expect(sealDeviceName(rng, keys, 'alice', 'a2', '').length).toBe(DEVICE_NAME_SEALED_LEN);
    expect(openDeviceName(keys, 'alice', 'a2', sealed)).toBe('Laptop — Firefox');
    const bob = await generateEd25519(curves, rng);
    for (const attempt of [
      () => openDeviceName(accountKeys(bob.secretKey), 'alice', 'a2', sealed), // another account's key
      () => openDeviceName(keys, 'alice', 'a1', sealed), // moved to another device
      () => openDeviceName(keys, 'bob', 'a2', sealed), // moved to another user
      () => openDeviceName(keys, 'alice', 'a2', flip(sealed, 20)),
      () => openDeviceName(keys, 'alice', 'a2', sealed.slice(1)),
    ])
      expect(attempt).toThrow(expect.objectContaining({ code: 'decryption_failed' }));
    expect(() => sealDeviceName(rng, keys, 'alice', 'a2', 'é'.repeat(32))).toThrow(
      expect.objectContaining({ code: 'limit_exceeded' }),
    );
  });

  it('the sync conversation id is stable, per user and unguessable without the identity secret', async () => {
    const keys = accountKeys(alice.identity.secretKey);
    const id = selfConversationId(keys, 'alice');
    expect(id).toMatch(/^self-[A-Za-z0-9_-]{22}$/);
    expect(selfConversationId(accountKeys(alice.identity.secretKey), 'alice')).toBe(id);
    expect(selfConversationId(keys, 'alice2')).not.toBe(id);
    const other = await generateEd25519(curves, rng);
    expect(selfConversationId(accountKeys(other.secretKey), 'alice')).not.toBe(id);
  });
});
