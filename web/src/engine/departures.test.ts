/**
 * Account deletion on the device (issue 18, README §Your data): `Engine.departures()` signs the entries
 * that take a deleting account out of every conversation others are still in — `transfer_ownership` to an
 * admin (else the first other member) before the `leave` when it owns the group — and the members'
 * engines verify them like any other entry once the server has appended them. Direct chats too: there a
 * `leave` can only come from an account deletion, so the peer sees "deleted their account" and a closed log.
 */
import { describe, expect, it } from 'vitest';
import { constants, decodeMembershipEntry } from './_protocol.js';
import type { EngineEvent } from './context.js';
import { memoryLocks } from './locks.js';
import { WITHHELD } from './messages.js';
import { memoryStore, readJson, type Store, type StoreTx } from './storage.js';
import { engineOn, makeWorld, newClient, online, texts, until, type World } from './testing/harness.js';
import type { ServerApi } from './transport.js';

const sendsOf = (w: World, id: string) =>
  w.server.sentFrames.filter((x) => x.frame.type === 'send' && x.frame.id === id).length;
/** Ciphertexts `from` addressed to `to` (pairwise items, WITHHELD left out) in frames sent after the first `since`. */
const itemsTo = (w: World, to: string, from: string, since: number) =>
  w.server.sentFrames
    .slice(since)
    .filter((f) => f.user === from && 'to' in f.frame)
    .flatMap((f) => ('to' in f.frame ? f.frame.to : []).filter((t) => t.u === to && t.c !== WITHHELD));

/** Appends `entries` as the deleting account's device would have them appended by POST /api/account/delete. */
async function appendAll(w: World, user: string, conversationId: string, entries: Uint8Array[]) {
  for (const e of entries) await w.server.appendEntry(user, `${user}-1`, conversationId, e, true);
}

describe('departures of a deleting account', () => {
  it('an owner hands the group to its admin, then leaves; a member only leaves; a group of one needs nothing', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob');
    const carol = await newClient(w, 'carol');
    const owned = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'Club' });
    await alice.engine.changeMembership(owned, { action: 'promote', target: 'carol' });
    const joined = await bob.engine.createConversation({ kind: 'group', members: ['alice'], title: 'Bob’s' });
    const alone = await alice.engine.createConversation({ kind: 'group', members: [], title: 'Notes' });

    const out = await alice.engine.departures();
    expect(out.map((d) => d.conversationId).sort()).toEqual([owned, joined].sort());
    expect(out.some((d) => d.conversationId === alone)).toBe(false);
    const actions = (id: string) =>
      out
        .find((d) => d.conversationId === id)!
        .entries.map((b) => {
          const e = decodeMembershipEntry(b);
          return [e.action, e.target ?? null, e.authorUserId];
        });
    expect(actions(owned)).toEqual([
      ['transfer_ownership', 'carol', 'alice'],
      ['leave', null, 'alice'],
    ]);
    expect(actions(joined)).toEqual([['leave', null, 'alice']]);

    // The members are online: the appended entries reach them as membership frames.
    await bob.engine.connect();
    await carol.engine.connect();
    for (const id of [owned, joined])
      await until(async () => (await bob.engine.connectionStatus(id)) === 'online', 'bob online');
    for (const d of out) await appendAll(w, 'alice', d.conversationId, d.entries);
    await until(async () => (await bob.engine.conversation(joined)).members.length === 1, 'bob sees alice leave');
    await until(async () => (await bob.engine.conversation(owned)).members.length === 2, 'bob sees the handover');
    const seen = await bob.engine.conversation(owned);
    expect(seen.members.map((m) => [m.userId, m.role]).sort()).toEqual([
      ['bob', 'member'],
      ['carol', 'owner'],
    ]);
    expect((await carol.engine.conversation(owned)).myRole).toBe('owner');
    expect((await bob.engine.conversation(joined)).members.map((m) => m.userId)).toEqual(['bob']);
    for (const c of [alice, bob, carol]) c.engine.close();
  });
});

describe('departures from direct chats', () => {
  it('a deleting account leaves both kinds of direct chat; the peer sees "deleted their account" and a closed log', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    const dave = await newClient(w, 'dave');
    const erin = await newClient(w, 'erin');
    const mine = await alice.engine.createConversation({ kind: 'direct', members: ['dave'], title: 'alice dave' });
    const theirs = await erin.engine.createConversation({ kind: 'direct', members: ['alice'], title: 'erin alice' });
    await alice.engine.setTimer(mine, 3600); // a direct log that already moved past its creation

    // Outside a deletion the server refuses a leave in a direct chat (as the Worker does).
    const early = await alice.engine.changeMembership(theirs, { action: 'leave' }).catch((e: unknown) => e);
    expect(String((early as { code?: string }).code ?? early)).toMatch(/direct_conversation_closed/);

    const out = await alice.engine.departures();
    const actions = (id: string) =>
      out
        .find((d) => d.conversationId === id)!
        .entries.map((b) => {
          const e = decodeMembershipEntry(b);
          return [e.action, e.target ?? null];
        });
    expect(actions(mine)).toEqual([
      ['transfer_ownership', 'dave'],
      ['leave', null],
    ]);
    expect(actions(theirs)).toEqual([['leave', null]]);

    await dave.engine.connect();
    await until(async () => (await dave.engine.connectionStatus(mine)) === 'online', 'dave online');
    for (const d of out) await appendAll(w, 'alice', d.conversationId, d.entries);
    await until(async () => (await dave.engine.conversation(mine)).members.length === 1, 'dave sees alice go');
    expect((await dave.engine.conversation(mine)).myRole).toBe('owner');
    // The peer's timeline: the timer line, then the deletion — the handover gets no line.
    const lines = (await dave.engine.infoLines(mine)).map(({ event: e }) =>
      e.type === 'membership' ? [e.action, e.actor, !!e.accountDeleted] : [e.type],
    );
    expect(lines).toEqual([
      ['set_timer', 'alice', false],
      ['leave', 'alice', true],
    ]);
    // erin was offline: she verifies the same departure when she connects again.
    await erin.engine.connect();
    await until(async () => (await erin.engine.conversation(theirs)).members.length === 1, 'erin sees alice go');
    expect(
      (await erin.engine.infoLines(theirs)).map(({ event: e }) => e.type === 'membership' && e.accountDeleted),
    ).toEqual([true]);
    // The log is closed: not even the timer changes now.
    const closed = await dave.engine.setTimer(mine, 300).catch((e: unknown) => e);
    expect(String((closed as { code?: string }).code ?? closed)).toMatch(/direct_conversation_closed/);
    for (const c of [alice, dave, erin]) c.engine.close();
  });
});

describe('membership entries applied side by side', () => {
  it('a frame verified against an older log never writes it back over a newer one another apply stored', async () => {
    const w = await makeWorld();
    const alice = await newClient(w, 'alice');
    // dave's store can hold the start of one transaction until another has written the conversation's log.
    const base = memoryStore();
    let hold: { release: () => void; held: Promise<void> } | null = null;
    let armed = false;
    let logKey = '';
    const store: Store = {
      ...base,
      transaction: async <T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> => {
        if (armed) {
          armed = false;
          let release!: () => void;
          const held = new Promise<void>((r) => {
            release = r;
          });
          hold = { release, held };
          await held;
          return base.transaction(fn);
        }
        let wroteLog = false;
        const r = await base.transaction((tx) =>
          fn({
            get: (k) => tx.get(k),
            list: (d) => tx.list(d),
            delete: (k) => tx.delete(k),
            put: (k, v) => {
              if (k === logKey) wroteLog = true;
              tx.put(k, v);
            },
          }),
        );
        if (wroteLog && hold) hold.release();
        return r;
      },
    };
    const dave = await newClient(w, 'dave', 'dave-1', { store });
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['dave'], title: 'Both' });
    logKey = `conv/${conv}/log`;
    await dave.engine.connect();
    await until(async () => (await dave.engine.connectionStatus(conv)) === 'online', 'dave online');
    await until(async () => (await dave.engine.conversation(conv)).members.length === 2, 'dave has the log');
    await dave.engine.idle();
    // The first timer's frame is verified against dave's log, then its write waits; the second timer's
    // frame finds an entry missing, fetches both and stores them; then the first write goes on.
    armed = true;
    await alice.engine.setTimer(conv, 300);
    await until(() => hold !== null, 'the first apply’s write is held');
    await alice.engine.setTimer(conv, 3600);
    await until(async () => (await dave.engine.conversation(conv)).timer === 3600, 'dave applied both');
    await dave.engine.idle();
    expect((await dave.engine.conversation(conv)).timer).toBe(3600);
    expect(w.server.conversations.get(conv)!.entries.length).toBe(
      (await readJson<{ entries: unknown[] }>(store, logKey))!.entries.length,
    );
    for (const c of [alice, dave]) c.engine.close();
  });
});

describe('a membership log with a gap', () => {
  it('is fetched once per try, not again before a back-off that doubles, and applied once the server answers whole', async () => {
    let clock = 1_800_000_000_000;
    const w = await makeWorld({ now: () => clock });
    const base = w.server.api('bob', 'bob-1');
    let drop = -1; // the entry the server leaves out of its answers to bob
    let fetches = 0;
    const api: ServerApi = {
      ...base,
      fetchMembershipLog: async (id, after) => {
        if (++fetches > 50) throw new Error('test: a refetch loop'); // ends the loop a test without the back-off hits
        return (await base.fetchMembershipLog(id, after)).filter((b) => decodeMembershipEntry(b).seq !== drop);
      },
    };
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob', 'bob-1', { engine: { api } });
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob'], title: 'g' });
    const reconnect = async () => {
      await bob.engine.disconnect();
      await bob.engine.connect([conv]);
      await until(async () => (await bob.engine.connectionStatus(conv)) === 'online', 'bob online');
      await bob.engine.idle();
    };
    await reconnect();
    await bob.engine.disconnect();
    drop = w.server.conversations.get(conv)!.entries.length;
    await alice.engine.changeMembership(conv, { action: 'rename', title: 'one' });
    await alice.engine.changeMembership(conv, { action: 'rename', title: 'two' });
    // Coming online syncs the log: the answer skips an entry — one fetch, refused, nothing applied.
    fetches = 0;
    await reconnect();
    expect(fetches).toBe(1);
    expect((await bob.engine.conversation(conv)).title).toBe('g');
    // Within the back-off nothing is fetched; after it, one fetch (still a gap: the back-off doubles).
    await reconnect();
    expect(fetches).toBe(1);
    clock += constants.LOG_GAP_RETRY_BASE_MS;
    await reconnect();
    expect(fetches).toBe(2);
    clock += constants.LOG_GAP_RETRY_BASE_MS;
    await reconnect();
    expect(fetches).toBe(2);
    // The server answers whole again: after the back-off the log is verified and applied.
    drop = -1;
    clock += constants.LOG_GAP_RETRY_BASE_MS;
    await reconnect();
    expect(fetches).toBe(3);
    expect((await bob.engine.conversation(conv)).title).toBe('two');
    for (const c of [alice, bob]) c.engine.close();
  });

  it('is a conversation state the engine shows and retries by itself: our message waits as sending, a new member’s is not refused; a whole answer clears it and both go through once', async () => {
    const w = await makeWorld();
    const base = w.server.api('bob', 'bob-1');
    let drop = -1; // the entry the server leaves out of its answers to bob
    const api: ServerApi = {
      ...base,
      fetchMembershipLog: async (id, after) =>
        (await base.fetchMembershipLog(id, after)).filter((b) => decodeMembershipEntry(b).seq !== drop),
    };
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob', 'bob-1', { engine: { api } });
    const carol = await newClient(w, 'carol');
    const gaps: (number | null)[] = [];
    bob.engine.on((e: EngineEvent) => {
      if (e.type === 'membership_gap') gaps.push(e.retryAt);
    });
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob'], title: 'g' });
    await online([alice, bob], conv);
    await bob.engine.sendText(conv, 'before');
    await until(async () => (await texts(alice.engine, conv)).includes('before'), 'alice has bob’s first');
    expect((await bob.engine.conversation(conv)).membershipGap).toBe(false);
    // Bob is away while Alice adds Carol and renames the group; the server's answers to him then skip the add.
    await bob.engine.disconnect();
    drop = w.server.conversations.get(conv)!.entries.length;
    await alice.engine.addMember(conv, 'carol');
    await alice.engine.changeMembership(conv, { action: 'rename', title: 'two' });
    await bob.engine.connect([conv]);
    await until(() => gaps.length > 0, 'the gap is shown');
    expect(gaps[0]).toEqual(expect.any(Number)); // when it is fetched again
    expect((await bob.engine.conversation(conv)).membershipGap).toBe(true);
    // Bob writes meanwhile: held as sending (the log may have moved past a removal he cannot see)...
    const held = await bob.engine.sendText(conv, 'held');
    // ... and Carol, whom he cannot verify yet, writes: not stored as undecryptable (not_member) for good.
    await online([carol], conv);
    await carol.engine.sendText(conv, 'from carol');
    await until(async () => (await texts(alice.engine, conv)).includes('from carol'), 'alice has carol’s');
    await bob.engine.idle();
    expect((await bob.engine.messages(conv)).find((m) => m.clientId === held.clientId)?.status).toBe('sending');
    expect(await texts(alice.engine, conv)).not.toContain('held');
    expect(await texts(bob.engine, conv)).not.toContain('from carol');
    expect((await bob.engine.messages(conv)).filter((m) => m.status === 'undecryptable')).toEqual([]);
    // The server answers whole again: the next retry (its back-off, no reconnect needed) clears the state.
    drop = -1;
    await until(() => gaps.at(-1) === null, 'the gap is cleared', 15_000);
    expect(gaps.filter((g) => g === null)).toHaveLength(1);
    const view = await bob.engine.conversation(conv);
    expect([view.membershipGap, view.title, view.members.map((m) => m.userId).sort()]).toEqual([
      false,
      'two',
      ['alice', 'bob', 'carol'],
    ]);
    await until(async () => (await texts(alice.engine, conv)).includes('held'), 'alice has the held message', 15_000);
    await until(async () => (await texts(carol.engine, conv)).includes('held'), 'carol has it too', 15_000);
    await until(async () => (await texts(bob.engine, conv)).includes('from carol'), 'bob has carol’s', 15_000);
    for (const c of [alice, bob, carol]) await c.engine.idle();
    expect((await texts(alice.engine, conv)).filter((t) => t === 'held')).toHaveLength(1);
    expect((await texts(carol.engine, conv)).filter((t) => t === 'held')).toHaveLength(1);
    expect((await texts(bob.engine, conv)).filter((t) => t === 'from carol')).toHaveLength(1);
    expect((await bob.engine.messages(conv)).filter((m) => m.status === 'undecryptable')).toEqual([]);
    for (const c of [alice, bob, carol]) c.engine.close();
  });
  it('is kept across a reload: the state shows at once, our held message is not encrypted to the log held before the gap (a removal it skipped), and goes out once after a whole answer', async () => {
    const w = await makeWorld();
    const base = w.server.api('bob', 'bob-1');
    let drop = -1; // the entry the server leaves out of its answers to bob
    const api: ServerApi = {
      ...base,
      fetchMembershipLog: async (id, after) =>
        (await base.fetchMembershipLog(id, after)).filter((b) => decodeMembershipEntry(b).seq !== drop),
    };
    const store = memoryStore();
    const alice = await newClient(w, 'alice');
    const bob = await newClient(w, 'bob', 'bob-1', { store, engine: { api } });
    const carol = await newClient(w, 'carol');
    const conv = await alice.engine.createConversation({ kind: 'group', members: ['bob', 'carol'], title: 'g' });
    await online([alice, bob], conv);
    await bob.engine.sendText(conv, 'before'); // Carol holds Bob's chain from here
    await until(async () => (await texts(alice.engine, conv)).includes('before'), 'alice has bob’s first');
    // Bob is away while Alice removes Carol and renames the group; his answers then skip the removal.
    await bob.engine.disconnect();
    drop = w.server.conversations.get(conv)!.entries.length;
    await alice.engine.removeMember(conv, 'carol');
    await alice.engine.changeMembership(conv, { action: 'rename', title: 'two' });
    await bob.engine.connect([conv]);
    await until(async () => (await bob.engine.conversation(conv)).membershipGap, 'the gap is shown');
    const held = await bob.engine.sendText(conv, 'held');
    await bob.engine.idle();
    // The page reloads while the server still answers with the gap.
    bob.engine.close();
    const since = w.server.sentFrames.length;
    const again = engineOn(w, 'bob', 'bob-1', store, memoryLocks(), { api });
    await again.bootstrap({ userId: 'bob', deviceId: 'bob-1' });
    expect((await again.conversation(conv)).membershipGap).toBe(true); // before any fetch
    await again.connect([conv]);
    await until(async () => (await again.connectionStatus(conv)) === 'online', 'bob online again');
    await again.idle();
    // Still held: the log Bob holds still lists Carol, and his chain is the one she has.
    expect(sendsOf(w, held.clientId)).toBe(0);
    expect((await again.messages(conv)).find((m) => m.clientId === held.clientId)?.status).toBe('sending');
    // The server answers whole again: the removal is applied, a new chain goes to Alice, the message once.
    drop = -1;
    await until(async () => !(await again.conversation(conv)).membershipGap, 'the gap is cleared', 15_000);
    await until(async () => (await texts(alice.engine, conv)).includes('held'), 'alice has the held message', 15_000);
    await again.idle();
    expect(sendsOf(w, held.clientId)).toBe(1);
    expect((await texts(alice.engine, conv)).filter((t) => t === 'held')).toHaveLength(1);
    expect((await alice.engine.messages(conv)).filter((m) => m.status === 'undecryptable')).toEqual([]);
    // Nothing Bob sent after the reload was encrypted to Carol.
    expect(itemsTo(w, 'carol', 'bob', since)).toEqual([]);
    for (const e of [alice.engine, again, carol.engine]) e.close();
  });
});
