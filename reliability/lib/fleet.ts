/**
 * A fleet of simulated people spread over worker threads: each thread (fleet-worker.mjs → fleet-host.ts)
 * runs real engines — their X3DH/PQXDH, ratchets, sender keys, signature checks and stores — so the
 * client-side crypto of hundreds of devices uses every core instead of one. The main thread holds
 * `Peer`s whose `engine` forwards calls to the hosting thread and receives every message event, like the
 * app's UI thread talks to its engine Web Worker; the checks in load.ts run on them unchanged.
 * @module
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { EngineEvent } from '../../web/src/engine/context.js';
import type { Engine } from '../../web/src/engine/engine.js';
import { absorb } from '../secrets.js';
import type { EngineMethod, FleetCall, FleetReply } from './fleet-host.js';

/** What the load checks use of an engine. */
export type EngineLike = Pick<
  Engine,
  'createConversation' | 'connect' | 'disconnect' | 'connectionStatus' | 'sendText' | 'messages' | 'on' | 'close'
>;

/** A device as the load checks see it (a `Person` in this process, or a device in a fleet thread). */
export interface Peer {
  readonly name: string;
  userId: string;
  deviceId: string;
  engine: EngineLike;
}

/** Worker threads for this machine: one per core (the dev server's workerd shares them). */
export const defaultFleetSize = () => Math.max(2, Math.min(4, availableParallelism()));

export class Fleet {
  private readonly workers: Worker[];
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly listeners = new Map<string, Set<(e: EngineEvent) => void>>();
  private readonly home = new Map<string, number>();
  private nextId = 0;
  private nextWorker = 0;
  private dead: Error | null = null;

  constructor(baseUrl: string, size = defaultFleetSize()) {
    this.workers = Array.from({ length: size }, (_, index) => {
      const w = new Worker(new URL('./fleet-worker.mjs', import.meta.url), {
        workerData: { baseUrl, index },
        execArgv: [],
      });
      w.on('message', (m: FleetReply) => this.receive(m));
      w.on('error', (err) => this.fail(new Error(`fleet worker ${index}: ${err.message}`)));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`fleet worker ${index} exited with ${code}`));
      });
      return w;
    });
  }

  get size(): number {
    return this.workers.length;
  }

  private receive(m: FleetReply): void {
    if ('event' in m) {
      for (const l of this.listeners.get(m.name) ?? []) l(m.event);
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.ok) p.resolve(m.value);
    else p.reject(new Error(m.error));
  }

  private fail(err: Error): void {
    this.dead ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  private call<T>(worker: number, call: FleetCall): Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.workers[worker]!.postMessage({ id, call });
    });
  }

  private peer(worker: number, info: { name: string; userId: string; deviceId: string }): Peer {
    this.home.set(info.name, worker);
    const listeners = new Set<(e: EngineEvent) => void>();
    this.listeners.set(info.name, listeners);
    const remote =
      (method: EngineMethod) =>
      (...args: unknown[]) =>
        this.call(worker, { op: 'engine', name: info.name, method, args });
    const engine = {
      createConversation: remote('createConversation'),
      connect: remote('connect'),
      disconnect: remote('disconnect'),
      connectionStatus: remote('connectionStatus'),
      sendText: remote('sendText'),
      messages: remote('messages'),
      on(l: (e: EngineEvent) => void) {
        listeners.add(l);
        return () => listeners.delete(l);
      },
      close() {},
    } as EngineLike;
    return { ...info, engine };
  }

  /** Registers a new account (its first device) in the next thread, round robin. */
  async register(name: string): Promise<Peer> {
    const w = this.nextWorker++ % this.workers.length;
    return this.peer(w, await this.call(w, { op: 'register', name }));
  }

  /** A second device of `primary`'s account, in the same thread (it needs the primary's identity key). */
  async secondDevice(primary: Peer): Promise<Peer> {
    const w = this.home.get(primary.name);
    if (w === undefined) throw new Error(`${primary.name} is not in this fleet`);
    return this.peer(w, await this.call(w, { op: 'secondDevice', primary: primary.name }));
  }

  /** Closes every engine, hands the secrets the threads remembered to the secrets suite, stops the threads. */
  async close(): Promise<void> {
    await Promise.all(
      this.workers.map(async (_, w) => {
        if (this.dead) return;
        absorb(await this.call<Parameters<typeof absorb>[0]>(w, { op: 'secrets' }));
        await this.call(w, { op: 'closeAll' });
      }),
    ).finally(() => Promise.all(this.workers.map((w) => w.terminate())));
  }
}
