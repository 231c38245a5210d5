/**
 * Inside a fleet worker thread (reliability/lib/fleet.ts): hosts simulated people (real engines, their
 * crypto and stores) by name and answers the main thread's calls; every message event of every hosted
 * engine is forwarded, so the main thread can run the same checks as for in-process engines.
 * @module
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { EngineEvent } from '../../web/src/engine/context.js';
import { rememberedEntries } from '../secrets.js';
import { type Person, registered, secondDevice, setIpBase } from './people.js';

export type FleetCall =
  | { op: 'register'; name: string }
  | { op: 'secondDevice'; primary: string }
  | { op: 'engine'; name: string; method: EngineMethod; args: unknown[] }
  | { op: 'secrets' }
  | { op: 'closeAll' };

export const ENGINE_METHODS = [
  'createConversation',
  'connect',
  'disconnect',
  'connectionStatus',
  'sendText',
  'messages',
] as const;
export type EngineMethod = (typeof ENGINE_METHODS)[number];

export type FleetReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: string }
  | { event: EngineEvent; name: string };

const { baseUrl, index } = workerData as { baseUrl: string; index: number };
setIpBase(index);
const people = new Map<string, Person>();
const port = parentPort!;

function host(p: Person): { name: string; userId: string; deviceId: string } {
  people.set(p.name, p);
  p.engine.on((event) => {
    if (event.type === 'message_added' || event.type === 'message_updated') port.postMessage({ event, name: p.name });
  });
  return { name: p.name, userId: p.userId, deviceId: p.deviceId };
}

function person(name: string): Person {
  const p = people.get(name);
  if (!p) throw new Error(`no device ${name} in fleet worker ${index}`);
  return p;
}

async function handle(call: FleetCall): Promise<unknown> {
  switch (call.op) {
    case 'register':
      return host(await registered(baseUrl, call.name));
    case 'secondDevice':
      return host(await secondDevice(baseUrl, person(call.primary)));
    case 'engine': {
      if (!ENGINE_METHODS.includes(call.method)) throw new Error(`not a fleet engine method: ${call.method}`);
      const engine = person(call.name).engine as unknown as Record<EngineMethod, (...a: unknown[]) => Promise<unknown>>;
      return engine[call.method](...call.args);
    }
    case 'secrets':
      return rememberedEntries();
    case 'closeAll':
      for (const p of people.values()) p.engine.close();
      people.clear();
      return null;
  }
}

port.on('message', ({ id, call }: { id: number; call: FleetCall }) => {
  handle(call).then(
    (value) => port.postMessage({ id, ok: true, value } satisfies FleetReply),
    (err) =>
      port.postMessage({ id, ok: false, error: err instanceof Error ? err.message : String(err) } satisfies FleetReply),
  );
});
