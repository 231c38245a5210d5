import { describe, expect, it } from 'vitest';
import { createSessionEnd, type SessionEndMessage } from './session-end.js';

const revoked = (deviceList = 'AQID') => ({
  code: 'session_revoked',
  details: { reason: 'device_revoked', deviceList },
});

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** One open store whose engine confirms a removal when released, and fails once the store is locked. */
function harness(confirms = true) {
  const posted: SessionEndMessage[] = [];
  const erased: string[] = [];
  const gates: Array<ReturnType<typeof deferred>> = [];
  const deleting = deferred();
  let open: string | null = 'db-alice';
  let locked = false;
  const end = createSessionEnd({
    engineFor: (dbName) =>
      open === dbName
        ? {
            async confirmRemoved(list: Uint8Array) {
              expect([...list]).toEqual([1, 2, 3]);
              const gate = deferred();
              gates.push(gate);
              await gate.promise;
              if (locked) throw Object.assign(new Error('the local store is locked'), { code: 'locked' });
              return confirms;
            },
          }
        : null,
    async erase(dbName) {
      erased.push(dbName);
      open = null;
      locked = true; // close(): the store's keys are forgotten at once
      await deleting.promise; // deleteDatabase waits for the connections to go
    },
    post: (m) => posted.push(m),
  });
  const reopen = (dbName: string) => {
    open = dbName;
    locked = false;
    end.opened(dbName);
  };
  return { end, posted, erased, gates, deleting, reopen };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('ending a session in the engine worker', () => {
  it('several 401s of one removal (every socket closed with 4403, the chat-list poll) show the removed screen, never the sign-in page', async () => {
    const h = harness();
    const first = h.end.ended('db-alice', revoked());
    const second = h.end.ended('db-alice', revoked());
    const third = h.end.ended('db-alice', { code: 'session_revoked', details: { reason: 'device_revoked' } });
    await tick();
    // One check at a time: the others wait for the first decision instead of racing the erase.
    expect(h.gates).toHaveLength(1);
    h.gates[0]!.resolve();
    await tick();
    expect(h.erased).toEqual(['db-alice']);
    // A 401 while the database is being deleted (the store closed already: no engine to ask) waits too —
    // answered at once it would reach the page first, and the page would go to the sign-in screen.
    const duringErase = h.end.ended('db-alice', revoked());
    await tick();
    expect(h.posted).toEqual([]);
    h.deleting.resolve();
    await Promise.all([first, second, third, duringErase]);
    expect(h.posted).toEqual([{ removed: true }]);
    expect(h.gates).toHaveLength(1);
  });

  it('a 401 after the removal says nothing more; once the name is opened again (a new link) a sign-out is reported', async () => {
    const h = harness();
    const first = h.end.ended('db-alice', revoked());
    await tick();
    h.gates[0]!.resolve();
    h.deleting.resolve();
    await first;
    await h.end.ended('db-alice', revoked());
    await h.end.ended('db-alice', { code: 'session_revoked', details: { reason: 'logout_all' } });
    expect(h.posted).toEqual([{ removed: true }]);
    h.reopen('db-alice');
    await h.end.ended('db-alice', { code: 'session_revoked', details: { reason: 'password_changed' } });
    expect(h.posted).toEqual([{ removed: true }, { signedOut: 'password_changed' }]);
  });

  it('a list the engine does not confirm (the server alone cannot remove a device) signs out with the reason and erases nothing', async () => {
    const h = harness(false);
    const p = h.end.ended('db-alice', revoked());
    await tick();
    h.gates[0]!.resolve();
    await p;
    expect(h.erased).toEqual([]);
    expect(h.posted).toEqual([{ signedOut: 'device_revoked' }]);
  });

  it('other endings sign out: a reason from the server, else the error code; another account’s store is not checked', async () => {
    const h = harness();
    await h.end.ended('db-alice', { code: 'session_revoked', details: { reason: 'identity_reset' } });
    await h.end.ended('db-alice', { code: 'refresh_expired' });
    await h.end.ended('db-alice', { code: 'session_revoked', details: { reason: 'Not A Reason!' } });
    await h.end.ended('db-bob', revoked());
    expect(h.gates).toHaveLength(0);
    expect(h.erased).toEqual([]);
    expect(h.posted).toEqual([
      { signedOut: 'identity_reset' },
      { signedOut: 'refresh_expired' },
      { signedOut: 'session_revoked' },
      { signedOut: 'device_revoked' },
    ]);
  });
});
