/**
 * "Download my data" and "delete my account" (issue 18). The deletion proof enumerates the schema at run
 * time — every table, every column of every row — so tables other features add later are covered: the
 * deleted account's id may remain only in the membership log of a conversation other members still
 * verify (README §Your data). Durable Object storage and every R2 bucket bound to the Worker are scanned too.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { beforeAll, describe, expect, it } from 'vitest';
import { WIRE_VERSION } from '../schema/wire.js';
import { toB64u } from '../web/src/protocol/bytes.js';
import {
  encodeMembershipEntry,
  entryHash,
  type MembershipEntry,
  type MembershipState,
  nextEntry,
} from '../web/src/protocol/index.js';
import wranglerToml from '../wrangler.toml?raw';
import {
  Client,
  connect,
  conversationStub,
  fakeCiphertext,
  flushOutbox,
  makeConversation,
  makeUser,
  upgrade,
} from './test/delivery-fixtures.js';
import { api, curves, freshIp, freshName, type RegisteredUser, registerUser } from './test/fixtures.js';

const T = 1_700_000_000_000;

async function signed(
  u: RegisteredUser,
  state: MembershipState | null,
  conv: string,
  p: Parameters<typeof nextEntry>[4] extends infer X
    ? Omit<X & object, 'authorUserId' | 'authorDeviceId' | 'timestamp'>
    : never,
) {
  return nextEntry(await curves(), u.device.signing, state, conv, {
    ...(p as object),
    authorUserId: u.userId,
    authorDeviceId: u.deviceId,
    timestamp: T,
  } as Parameters<typeof nextEntry>[4]);
}

/** Creates a group through the API: `owner` creates it, then adds each of `members`. */
async function group(
  owner: RegisteredUser,
  members: RegisteredUser[],
): Promise<{ id: string; entries: MembershipEntry[] }> {
  const id = `g_${crypto.randomUUID().replaceAll('-', '').slice(0, 20)}`;
  const entries: MembershipEntry[] = [await signed(owner, null, id, { action: 'create', title: 'team' } as never)];
  for (const m of members) {
    const prev = entries.at(-1)!;
    const s: MembershipState = {
      conversationId: id,
      members: new Map([[owner.userId, 'owner']]),
      title: 'team',
      headHash: entryHash(prev),
      seq: prev.seq,
    };
    entries.push(await signed(owner, s, id, { action: 'add', target: m.userId, role: 'member' } as never));
  }
  const res = await api('/api/conversations', {
    token: owner.accessToken,
    body: { kind: 'group', entries: entries.map((e) => toB64u(encodeMembershipEntry(e))) },
  });
  expect(res.status, await res.clone().text()).toBe(201);
  return { id, entries };
}

/** Every (table, column, rowid) of D1 whose value contains `needle` (text, or blob bytes containing its UTF-8). */
async function d1Hits(needle: string): Promise<{ table: string; column: string; row: Record<string, unknown> }[]> {
  const tables = await env.DB.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'",
  ).all<{ name: string }>();
  const bytes = new TextEncoder().encode(needle);
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  const out: { table: string; column: string; row: Record<string, unknown> }[] = [];
  for (const { name } of tables.results) {
    const rows = await env.DB.prepare(`SELECT * FROM "${name}"`).all<Record<string, unknown>>();
    for (const row of rows.results) {
      for (const [column, v] of Object.entries(row)) {
        const hit =
          (typeof v === 'string' && v.includes(needle)) ||
          (v instanceof ArrayBuffer &&
            [...new Uint8Array(v)]
              .map((b) => b.toString(16).padStart(2, '0'))
              .join('')
              .includes(hex));
        if (hit) out.push({ table: name, column, row });
      }
    }
  }
  return out;
}

/** Every table row of a Durable Object's SQLite storage that mentions `needle`. */
async function doHits(stub: DurableObjectStub, needle: string): Promise<string[]> {
  return runInDurableObject(stub, (_i, state) => {
    const sql = state.storage.sql;
    const hits: string[] = [];
    const tables = sql
      .exec<{ name: string }>(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'",
      )
      .toArray();
    for (const { name } of tables) {
      for (const row of sql.exec(`SELECT * FROM "${name}"`).toArray()) {
        const text = JSON.stringify(row, (_k, v) => (v instanceof ArrayBuffer ? new TextDecoder().decode(v) : v));
        if (text.includes(needle)) hits.push(`${name}: ${text.slice(0, 120)}`);
      }
    }
    return hits;
  });
}

/** Every key a provisioning channel's object holds (its KV storage: the claim, the relayed messages). */
async function channelKeys(id: string): Promise<string[]> {
  return runInDurableObject(env.LINK_CHANNEL.get(env.LINK_CHANNEL.idFromName(id)), async (_i, state) => [
    ...(await state.storage.list()).keys(),
  ]);
}

/**
 * Every R2 bucket bound to the Worker, from wrangler.toml's top-level `[[r2_buckets]]` (the attachments
 * feature adds one; any bucket added later is scanned too). Probing `env` by shape would call into
 * service bindings.
 */
function r2Buckets(): [string, R2Bucket][] {
  const top = wranglerToml.split(/^\[env\./m)[0]!;
  const names = [...top.matchAll(/\[\[r2_buckets\]\][^[]*?binding\s*=\s*"([^"]+)"/g)].map((m) => m[1]!);
  return names.map((n) => [n, (env as unknown as Record<string, R2Bucket>)[n]!] as [string, R2Bucket]);
}

/** Reserves and uploads a 64-byte blob into `conv` as `u`; returns its id (the R2 object key). */
async function upload(u: RegisteredUser, conv: string): Promise<string> {
  const r = await api('/api/attachments', { token: u.accessToken, body: { conversationId: conv, size: 64 } });
  expect(r.status, await r.clone().text()).toBe(201);
  const { attachmentId } = (await r.json()) as { attachmentId: string };
  const put = await api(`/api/attachments/${attachmentId}`, {
    method: 'PUT',
    token: u.accessToken,
    raw: 'x'.repeat(64),
    contentType: 'application/octet-stream',
  });
  expect(put.status, await put.clone().text()).toBe(200);
  return attachmentId;
}

describe('your data: export and account deletion', () => {
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let shared: { id: string; entries: MembershipEntry[] };
  let alone: { id: string; entries: MembershipEntry[] };
  let blobs: { alice: string[]; bob: string };
  /** A provisioning channel alice's device claimed (issue 14): its object names her account. */
  let channelId: string;

  beforeAll(async () => {
    alice = await registerUser(freshName('alice'));
    bob = await registerUser(freshName('bob'));
    shared = await group(alice, [bob]);
    alone = await group(alice, []);
    // Traffic in both directions, so the conversation object and the D1 mailbox hold rows about alice.
    for (const [u, conv] of [
      [alice, shared.id],
      [bob, shared.id],
      [alice, alone.id],
    ] as const) {
      const t = await api(`/api/conversations/${conv}/ticket`, { token: u.accessToken });
      const ticket = ((await t.json()) as { ticket: string }).ticket;
      const up = await upgrade(conv, ticket);
      up.webSocket!.accept();
      const c = new Client(up.webSocket!, { userId: u.userId, deviceId: u.deviceId, token: u.accessToken });
      await c.resume(0);
      const to = u === bob ? [{ u: alice.userId, d: alice.deviceId, c: toB64u(new Uint8Array(48).fill(7)) }] : null;
      const frame = to
        ? { v: WIRE_VERSION, type: 'send', id: 'p1', to }
        : { v: WIRE_VERSION, type: 'send', id: `g-${conv}`, group: toB64u(new Uint8Array(48).fill(9)) };
      expect((await c.sendAndWait(frame)).type).toBe('accepted');
      c.close();
    }
    await flushOutbox(shared.id);
    // Attachments (R2 objects keyed by an id, found through their D1 row): hers in both groups, his in one.
    blobs = {
      alice: [await upload(alice, shared.id), await upload(alice, alone.id)],
      bob: await upload(bob, shared.id),
    };
    // Linking a device (issue 14): a new browser opened a channel, alice's device claimed it with a token.
    channelId = toB64u(crypto.getRandomValues(new Uint8Array(16)));
    const opened = await api('/api/link/channels', { body: { channelId }, ip: freshIp() });
    expect(opened.status, await opened.clone().text()).toBe(201);
    const tok = await api('/api/link/token', { token: alice.accessToken, body: { channelId } });
    expect(tok.status, await tok.clone().text()).toBe(201);
    expect(await channelKeys(channelId)).not.toEqual([]);
  }, 120_000);

  it('Download my data: the account, its devices, conversations and roles, audit events — hashes withheld', async () => {
    const res = await api('/api/account/export', { method: 'GET', token: alice.accessToken });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toMatch(/attachment/);
    const body = (await res.json()) as { userId: string; tables: Record<string, Record<string, unknown>[]> };
    expect(body.userId).toBe(alice.userId);
    expect(body.tables.users![0]).toMatchObject({
      id: alice.userId,
      username: alice.username,
      password_hash: '(withheld)',
      password_salt: '(withheld)',
    });
    expect(body.tables.devices!.map((d) => d.device_id)).toEqual([alice.deviceId]);
    expect(body.tables.members!.map((m) => [m.conversation_id, m.role]).sort()).toEqual(
      [
        [alone.id, 'owner'],
        [shared.id, 'owner'],
      ].sort(),
    );
    expect(body.tables.audit_events!.length).toBeGreaterThan(0);
    expect(JSON.stringify(body)).not.toContain(bob.username);
  });

  it('is refused without the password, and without a signed leave for a group others are still in', async () => {
    const wrong = await api('/api/account/delete', {
      token: alice.accessToken,
      body: { passwordPrehash: toB64u(new Uint8Array(32)), leave: [] },
    });
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe('invalid_credentials');
    const noLeave = await api('/api/account/delete', {
      token: alice.accessToken,
      body: { passwordPrehash: alice.prehash, leave: [] },
    });
    expect(noLeave.status).toBe(409);
    expect(await noLeave.json()).toMatchObject({
      error: { code: 'leave_entries_required', conversations: [shared.id] },
    });
    expect(await d1Hits(alice.userId)).not.toEqual([]);
    expect((await api('/api/auth/session', { method: 'GET', token: alice.accessToken })).status).toBe(200);
  });

  it('deletes every row about the account from every table, its conversation objects and R2; members see it leave', async () => {
    // The owner hands the group over, then leaves: two entries its device signs (the server cannot).
    const head = shared.entries.at(-1)!;
    const s1: MembershipState = {
      conversationId: shared.id,
      members: new Map([
        [alice.userId, 'owner'],
        [bob.userId, 'member'],
      ]),
      title: 'team',
      headHash: entryHash(head),
      seq: head.seq,
    };
    const transfer = await signed(alice, s1, shared.id, { action: 'transfer_ownership', target: bob.userId } as never);
    const s2: MembershipState = {
      ...s1,
      members: new Map([
        [alice.userId, 'admin'],
        [bob.userId, 'owner'],
      ]),
      headHash: entryHash(transfer),
      seq: transfer.seq,
    };
    const leave = await signed(alice, s2, shared.id, { action: 'leave' } as never);
    const res = await api('/api/account/delete', {
      token: alice.accessToken,
      body: {
        passwordPrehash: alice.prehash,
        leave: [{ conversationId: shared.id, entries: [transfer, leave].map((e) => toB64u(encodeMembershipEntry(e))) }],
      },
    });
    expect(res.status, await res.clone().text()).toBe(200);

    // D1, every table and column: only the signed membership log of the group bob still verifies names alice.
    const hits = await d1Hits(alice.userId);
    expect(hits.filter((h) => !(h.table === 'membership_log' && h.row.conversation_id === shared.id))).toEqual([]);
    expect(hits.every((h) => ['entry', 'author_user_id'].includes(h.column))).toBe(true);
    expect(await d1Hits(alice.username)).toEqual([]);
    // Her conversation alone is gone whole; bob's copy of her group message is kept, from the tombstone.
    expect(
      (
        await env.DB.prepare('SELECT count(*) AS n FROM conversations WHERE id = ?')
          .bind(alone.id)
          .first<{ n: number }>()
      )?.n,
    ).toBe(0);
    const bobMail = await env.DB.prepare('SELECT sender_user_id FROM mailbox WHERE user_id = ?')
      .bind(bob.userId)
      .all<{ sender_user_id: string }>();
    expect(bobMail.results.map((r) => r.sender_user_id)).toEqual(['deleted']);

    // Durable Object storage of both conversations.
    expect(await doHits(conversationStub(shared.id), alice.userId)).toEqual([]);
    expect(await doHits(conversationStub(alone.id), alice.userId)).toEqual([]);
    expect(await doHits(conversationStub(alone.id), 'deleted-')).toEqual([]);

    // The provisioning channel she claimed is erased (a deletion hook that runs BEFORE her linking tokens'
    // rows go: the channels are found through them): not one stored key is left in its object.
    expect(await channelKeys(channelId)).toEqual([]);

    // Her attachments' blobs are gone from R2 with their rows (a deletion hook that runs BEFORE the rows
    // go: the blobs are found through them); bob's attachment in the group he keeps is still there.
    for (const id of blobs.alice) expect(await env.ATTACHMENTS.head(id), id).toBeNull();
    expect(await env.ATTACHMENTS.head(blobs.bob)).not.toBeNull();
    expect(
      (
        await env.DB.prepare('SELECT id FROM attachments WHERE id IN (?, ?, ?)')
          .bind(...blobs.alice, blobs.bob)
          .all()
      ).results,
    ).toEqual([{ id: blobs.bob }]);
    // Every R2 bucket: no object key or metadata that names the account.
    for (const [name, bucket] of r2Buckets()) {
      let cursor: string | undefined;
      do {
        const page = await bucket.list({ cursor, include: ['customMetadata', 'httpMetadata'] });
        for (const o of page.objects) expect(JSON.stringify(o), `R2 ${name}`).not.toContain(alice.userId);
        cursor = page.truncated ? page.cursor : undefined;
      } while (cursor);
    }

    // Bob sees her leave as the newest signed entry, and he owns the group now.
    const log = (await (
      await api(`/api/conversations/${shared.id}/log`, { method: 'GET', token: bob.accessToken })
    ).json()) as {
      entries: { seq: number }[];
    };
    expect(log.entries.at(-1)!.seq).toBe(leave.seq);
    const conv = (await (
      await api(`/api/conversations/${shared.id}`, { method: 'GET', token: bob.accessToken })
    ).json()) as {
      members: { userId: string; role: string }[];
    };
    expect(conv.members).toEqual([{ userId: bob.userId, role: 'owner', joinedSeq: expect.any(Number) }]);
    // Her session is gone.
    expect((await api('/api/auth/session', { method: 'GET', token: alice.accessToken })).status).toBe(401);
  });

  it('the username is free again only after the cool-down', async () => {
    const again = await registerUser(alice.username).catch((e: Error) => e);
    expect(String(again)).toMatch(/409.*username_taken/);
    await env.DB.prepare('UPDATE released_usernames SET blocked_until = ?')
      .bind(Date.now() - 1)
      .run();
    const later = await registerUser(alice.username);
    expect(later.username).toBe(alice.username);
    expect(later.userId).not.toBe(alice.userId);
  });
});

describe('account deletion and the conversation object', () => {
  it('forgetUser cleans the D1 rows a flush wrote after the deletion batch: none for its devices, its messages from the tombstone', async () => {
    const [alice, bob, carol] = await Promise.all(['fu-a', 'fu-b', 'fu-c'].map((n) => makeUser(n)));
    const conv = await makeConversation([alice!, bob!, carol!]);
    // alice sends while bob and carol are away; carol sends while alice is away.
    const a = await connect(conv, alice!.devices[0]!);
    await a.sendAndWait({ v: WIRE_VERSION, type: 'send', id: 'g1', group: fakeCiphertext() });
    a.close();
    const c = await connect(conv, carol!.devices[0]!);
    await c.sendAndWait({ v: WIRE_VERSION, type: 'send', id: 'g2', group: fakeCiphertext() });
    c.close();
    // The flush runs after account deletion's D1 batch (here: instead of it), before the object is told.
    await flushOutbox(conv);
    const rows = () =>
      env.DB.prepare('SELECT user_id, seq, sender_user_id, client_msg_id FROM mailbox WHERE conversation_id = ?')
        .bind(conv)
        .all<{ user_id: string; seq: number; sender_user_id: string; client_msg_id: string }>();
    const before = (await rows()).results;
    expect(before.some((r) => r.user_id === alice!.userId)).toBe(true);
    expect(before.some((r) => r.sender_user_id === alice!.userId)).toBe(true);

    await conversationStub(conv).forgetUser(alice!.userId, ['d0'], 'deleted');
    const after = (await rows()).results;
    expect(JSON.stringify(after)).not.toContain(alice!.userId);
    expect(
      after
        .filter((r) => r.seq === 1)
        .map((r) => [r.user_id, r.sender_user_id, r.client_msg_id])
        .sort(),
    ).toEqual(
      [
        [bob!.userId, 'deleted', 'deleted-1'],
        [carol!.userId, 'deleted', 'deleted-1'],
      ].sort(),
    );
    expect(after.filter((r) => r.seq === 2).map((r) => r.user_id)).toEqual([bob!.userId]);
  });
});

describe('account deletion refused part-way', () => {
  it('departures are checked whole first: a bad entry for the second conversation leaves the first one untouched', async () => {
    const alice = await registerUser(freshName('alice'));
    const bob = await registerUser(freshName('bob'));
    const carol = await registerUser(freshName('carol'));
    const first = await group(bob, [alice]);
    const second = await group(carol, [alice]);
    // alice is a member of both: her departure from each is one signed `leave`.
    const leaveOf = async (g: { id: string; entries: MembershipEntry[] }, owner: RegisteredUser, seqOffset = 0) => {
      const head = g.entries.at(-1)!;
      const s: MembershipState = {
        conversationId: g.id,
        members: new Map([
          [owner.userId, 'owner'],
          [alice.userId, 'member'],
        ]),
        title: 'team',
        headHash: entryHash(head),
        seq: head.seq + seqOffset,
      };
      return toB64u(encodeMembershipEntry(await signed(alice, s, g.id, { action: 'leave' } as never)));
    };
    const res = await api('/api/account/delete', {
      token: alice.accessToken,
      body: {
        passwordPrehash: alice.prehash,
        leave: [
          { conversationId: first.id, entries: [await leaveOf(first, bob)] },
          // Signed by her device, but it does not extend the second group's head.
          { conversationId: second.id, entries: [await leaveOf(second, carol, 5)] },
        ],
      },
    });
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('chain_conflict');
    // Nothing was appended anywhere: alice is still in both groups, both logs end where they did.
    for (const g of [first, second]) {
      const conv = await api(`/api/conversations/${g.id}`, { method: 'GET', token: alice.accessToken });
      expect(conv.status).toBe(200);
      const view = (await conv.json()) as { headSeq: number; members: { userId: string }[] };
      expect(view.headSeq).toBe(g.entries.at(-1)!.seq);
      expect(view.members.map((m) => m.userId)).toContain(alice.userId);
    }
    // With a good departure for both, the same request goes through.
    const ok = await api('/api/account/delete', {
      token: alice.accessToken,
      body: {
        passwordPrehash: alice.prehash,
        leave: [
          { conversationId: first.id, entries: [await leaveOf(first, bob)] },
          { conversationId: second.id, entries: [await leaveOf(second, carol)] },
        ],
      },
    });
    expect(ok.status, await ok.clone().text()).toBe(200);
  });
});
