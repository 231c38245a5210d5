/**
 * The realtime layer hands the engine only frames on the wire schema: an `accepted_batch` (several sends
 * answered by one commit) reaches the frame handlers whole; a malformed one is dropped like any bad server
 * frame, so none of the sends it names is settled from it.
 */
import { describe, expect, it } from 'vitest';
import { MAX_ACCEPTED_BATCH, WIRE_VERSION } from '../../../schema/wire.js';
import { createRealtime, type ServerFrame, type SocketHandlers } from './transport.js';

async function connected() {
  let handlers: SocketHandlers | null = null;
  const rt = createRealtime({
    connect: async (_id: string, h: SocketHandlers) => {
      handlers = h;
      return { send: () => undefined, close: () => undefined };
    },
    lastSeq: async () => 0,
  });
  const got: ServerFrame[] = [];
  rt.onFrame((_c, f) => got.push(f));
  rt.open('c1');
  for (let i = 0; i < 10 && handlers === null; i++) await new Promise((r) => setTimeout(r, 0));
  expect(handlers).not.toBeNull();
  const deliver = (f: unknown) => handlers!.onMessage(JSON.stringify(f));
  return { rt, got, deliver };
}

const entry = (i: number) => ({ id: `m${i}`, seq: i, ts: 1_700_000_000_000 + i });
const batch = (accepted: unknown[]) => ({ v: WIRE_VERSION, type: 'accepted_batch', accepted });

describe('accepted_batch frames', () => {
  it('a valid batch reaches the handlers with every entry; malformed ones are dropped', async () => {
    const { rt, got, deliver } = await connected();
    deliver(batch([entry(1), { ...entry(2), duplicate: true }, entry(3)]));
    expect(got).toEqual([batch([entry(1), { ...entry(2), duplicate: true }, entry(3)])]);
    const bad = [
      batch([entry(1)]), // a lone answer is an `accepted` frame
      batch([]),
      batch([entry(1), { ...entry(2), seq: -1 }]),
      batch([entry(1), { id: 'm2', seq: 2 }]), // no ts
      batch([entry(1), { ...entry(2), duplicate: false }]),
      batch([entry(1), { ...entry(2), extra: 1 }]),
      batch([entry(1), { ...entry(2), id: 'not an id' }]),
      batch(Array.from({ length: MAX_ACCEPTED_BATCH + 1 }, (_, i) => entry(i + 1))),
      { ...batch([entry(1), entry(2)]), v: 2 },
      { ...batch([entry(1), entry(2)]), id: 'm1' },
    ];
    for (const f of bad) deliver(f);
    expect(got).toHaveLength(1);
    rt.closeAll();
  });
});
