/**
 * Fixtures for the delivery tests: users, devices, token families and conversation members inserted
 * directly through drizzle (the delivery path only reads them), access tokens from the real token code,
 * and a WebSocket test client that connects with a real ticket and collects every frame.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { and, asc, eq } from 'drizzle-orm';
import { afterAll, expect } from 'vitest';
import type { Envelope, ServerFrame } from '../../schema/wire.js';
import { WIRE_VERSION } from '../../schema/wire.js';
import { toB64u } from '../../web/src/protocol/bytes.js';
import { issueAccessToken } from '../auth/tokens.js';
import { makeDb, schema } from '../db.js';
import type { DeliveryStore } from '../delivery/store.js';

export const db = () => makeDb(env);
const rand = (n: number) => crypto.getRandomValues(new Uint8Array(n));
const uid = () => crypto.randomUUID().replaceAll('-', '').slice(0, 12);

export interface TestDeviceRef {
  userId: string;
  deviceId: string;
  token: string;
}

export interface TestMember {
  userId: string;
  devices: TestDeviceRef[];
}

/** A user with `deviceCount` live devices (d0, d1, …), each with a live session and access token. */
export async function makeUser(name: string, deviceCount = 1): Promise<TestMember> {
  const userId = `u_${name}_${uid()}`;
  const d = db();
  await d.insert(schema.users).values({
    id: userId,
    username: `${name}${uid()}`.toLowerCase(),
    identityKey: rand(32),
    passwordHash: rand(32),
    passwordSalt: rand(16),
    passwordParams: '{}',
  });
  const devices: TestDeviceRef[] = [];
  for (let i = 0; i < deviceCount; i++) devices.push(await addDevice(userId, `d${i}`));
  return { userId, devices };
}

export async function addDevice(userId: string, deviceId: string): Promise<TestDeviceRef> {
  const d = db();
  await d.insert(schema.devices).values({
    userId,
    deviceId,
    certificate: rand(100),
    signingKey: rand(32),
    identityKey: rand(32),
  });
  const familyId = `fam_${uid()}`;
  await d.insert(schema.tokenFamilies).values({ id: familyId, userId, deviceId });
  return { userId, deviceId, token: await issueAccessToken(env, { userId, deviceId, familyId }) };
}

/** Marks a device revoked in D1, as routes/devices.ts does before it tells the conversation objects. */
export async function markDeviceRevoked(userId: string, deviceId: string): Promise<void> {
  await db()
    .update(schema.devices)
    .set({ revokedAt: Date.now() })
    .where(and(eq(schema.devices.userId, userId), eq(schema.devices.deviceId, deviceId)));
}

/** A conversation whose current members are `users` (first one owner). */
export async function makeConversation(users: TestMember[], kind: 'direct' | 'group' = 'group'): Promise<string> {
  const id = `c_${uid()}`;
  const d = db();
  await d.insert(schema.conversations).values({ id, kind, headSeq: 0, headHash: rand(32) });
  for (const [i, u] of users.entries()) {
    await d
      .insert(schema.members)
      .values({ conversationId: id, userId: u.userId, role: i === 0 ? 'owner' : 'member', joinedSeq: 0 });
  }
  return id;
}

let ipCounter = 0;
export function api(path: string, token: string | null, init: RequestInit & { json?: unknown } = {}) {
  const headers = new Headers(init.headers);
  if (token) headers.set('Authorization', `Bearer ${token}`);
  if (init.json !== undefined) headers.set('Content-Type', 'application/json');
  ipCounter++;
  headers.set('cf-connecting-ip', `198.18.${(ipCounter >> 8) & 255}.${ipCounter & 255}`);
  return exports.default.fetch(`https://app.example${path}`, {
    ...init,
    headers,
    body: init.json !== undefined ? JSON.stringify(init.json) : init.body,
  });
}

export async function ticket(conversationId: string, dev: TestDeviceRef): Promise<string> {
  const res = await api(`/api/conversations/${conversationId}/ticket`, dev.token, { method: 'POST' });
  expect(res.status, await res.clone().text()).toBe(201);
  return ((await res.json()) as { ticket: string }).ticket;
}

export function upgrade(conversationId: string, t: string | null): Promise<Response> {
  const q = t === null ? '' : `?ticket=${encodeURIComponent(t)}`;
  return exports.default.fetch(`https://app.example/api/conversations/${conversationId}/ws${q}`, {
    headers: { Upgrade: 'websocket' },
  });
}

/**
 * A connected test socket: every frame is recorded; helpers wait for frames. `frames` holds each
 * `accepted_batch` as its entries, one `accepted` frame each (what the engine makes of it: every entry
 * settles one send); `wire` holds the frames as they came.
 */
export class Client {
  readonly frames: ServerFrame[] = [];
  readonly wire: ServerFrame[] = [];
  closed: { code: number; reason: string } | null = null;
  private waiters: (() => void)[] = [];

  constructor(
    readonly ws: WebSocket,
    readonly dev: TestDeviceRef,
  ) {
    ws.addEventListener('message', (ev) => {
      const data = typeof ev.data === 'string' ? ev.data : new TextDecoder().decode(ev.data as ArrayBuffer);
      const f = JSON.parse(data) as ServerFrame;
      this.wire.push(f);
      if (f.type === 'accepted_batch') for (const a of f.accepted) this.frames.push({ v: f.v, type: 'accepted', ...a });
      else this.frames.push(f);
      this.wake();
    });
    ws.addEventListener('close', (ev) => {
      this.closed = { code: ev.code, reason: ev.reason };
      this.wake();
    });
  }

  private wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Waits until `pred(frames)` holds (or the socket closed, if `orClose`). */
  async until(pred: (c: Client) => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what} (${this.frames.length} frames)`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async next<T extends ServerFrame['type']>(
    type: T,
    match: (f: Extract<ServerFrame, { type: T }>) => boolean = () => true,
    timeoutMs = 10_000,
  ): Promise<Extract<ServerFrame, { type: T }>> {
    let found: Extract<ServerFrame, { type: T }> | undefined;
    await this.until(
      () => {
        found = this.frames.find((f) => f.type === type && match(f as Extract<ServerFrame, { type: T }>)) as
          | Extract<ServerFrame, { type: T }>
          | undefined;
        return found !== undefined;
      },
      timeoutMs,
      `a ${type} frame`,
    );
    return found!;
  }

  async waitClosed(timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
    await this.until((c) => c.closed !== null, timeoutMs, 'close');
    return this.closed!;
  }

  /** Every delivered envelope so far, in arrival order. */
  envelopes(): Envelope[] {
    return this.frames.flatMap((f) => (f.type === 'deliver' ? f.envelopes : []));
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  sendGroup(id: string, c: string): void {
    this.send({ v: WIRE_VERSION, type: 'send', id, group: c });
  }

  /** Sends and waits for the accepted (or error) frame for `id` that follows this send. */
  async sendAndWait(frame: { id: string } & Record<string, unknown>): Promise<ServerFrame> {
    const before = this.frames.length;
    const match = (f: ServerFrame) => (f.type === 'accepted' || f.type === 'error') && 'id' in f && f.id === frame.id;
    this.send(frame);
    await this.until(() => this.frames.slice(before).some(match), 10_000, `accepted/error for ${frame.id}`);
    return this.frames.slice(before).find(match)!;
  }

  ack(upTo: number): void {
    this.send({ v: WIRE_VERSION, type: 'ack', upTo });
  }

  /** Sends `resume` and waits for the matching end-of-replay frame. */
  async resume(after: number): Promise<Extract<ServerFrame, { type: 'resume' }>> {
    const before = this.frames.length;
    this.send({ v: WIRE_VERSION, type: 'resume', after });
    await this.until(() => this.frames.slice(before).some((f) => f.type === 'resume'), 10_000, 'resume reply');
    return this.frames.slice(before).find((f) => f.type === 'resume') as Extract<ServerFrame, { type: 'resume' }>;
  }

  close(): void {
    try {
      this.ws.close(1000, 'done');
    } catch {
      // already closed
    }
  }
}

/**
 * Every client a test file opened. After the file's last test, each still-open one is closed and its
 * closing handshake awaited: the DO logs `socket_close` before it answers, and a log line written after
 * the file's workerd runtime is torn down is an unhandled error in vitest ("Closing rpc while
 * onUserConsoleLog was pending").
 */
const live = new Set<Client>();
afterAll(async () => {
  await Promise.all(
    [...live].map(async (c) => {
      c.close();
      await c.waitClosed(5_000).catch(() => undefined);
    }),
  );
  live.clear();
});

/** Ticket + upgrade + resume(after): a live client. */
export async function connect(conversationId: string, dev: TestDeviceRef, after = 0): Promise<Client> {
  const res = await upgrade(conversationId, await ticket(conversationId, dev));
  expect(res.status, res.status === 101 ? '' : await res.text()).toBe(101);
  const ws = res.webSocket!;
  ws.accept();
  const c = new Client(ws, dev);
  live.add(c);
  await c.resume(after);
  return c;
}

/** Opaque stand-in ciphertext (random bytes, base64url). */
export const fakeCiphertext = (n = 64) => toB64u(rand(n));

export const conversationStub = (conversationId: string) =>
  env.CONVERSATION.get(env.CONVERSATION.idFromName(conversationId));

export function mailboxRows(userId: string, deviceId: string) {
  return db()
    .select()
    .from(schema.mailbox)
    .where(and(eq(schema.mailbox.userId, userId), eq(schema.mailbox.deviceId, deviceId)))
    .orderBy(asc(schema.mailbox.conversationId), asc(schema.mailbox.seq))
    .all();
}

/**
 * Waits until the conversation DO has applied `dev`'s ack through `upTo` to its cursor (an ack is applied
 * from memory by a resume or the alarm; a test that restarts or flushes right after must not race it).
 */
export async function waitForCursor(conversationId: string, userId: string, deviceId: string, upTo: number) {
  const stub = conversationStub(conversationId);
  const cursor = () =>
    runInDurableObject(stub, (inst) => (inst as unknown as { store: DeliveryStore }).store.cursor(userId, deviceId));
  const deadline = Date.now() + 10_000;
  while ((await cursor()) < upTo && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  expect(await cursor(), `cursor of ${deviceId}`).toBeGreaterThanOrEqual(upTo);
}

/**
 * Runs the conversation DO's alarm until its outbox and pending acks are in D1. The flush delay is set to
 * 0 for this instance first, so envelopes written a moment ago count as due (the alarm is the real one).
 */
export async function flushOutbox(conversationId: string): Promise<void> {
  const stub = conversationStub(conversationId);
  const pending = () =>
    runInDurableObject(stub, (inst, state) => {
      (inst as unknown as { cfg: { flushDelayMs: number } }).cfg.flushDelayMs = 0;
      return (
        state.storage.sql
          .exec<{ n: number }>(
            'SELECT (SELECT count(*) FROM deliveries WHERE flushed != 1) + (SELECT count(*) FROM pending_acks) AS n',
          )
          .one().n > 0
      );
    });
  // Bounded by time, not by a count of alarm runs: on a loaded machine a flush (a D1 batch) can fail or take
  // several runs, and a fixed number of tries left acks pending (a flake of delivery-epochs.test.ts under load).
  const deadline = Date.now() + 20_000;
  while ((await pending()) && Date.now() < deadline) {
    if (!(await runDurableObjectAlarm(stub))) {
      await stub.connectedCount(); // no alarm yet: let one be set
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  expect(await pending()).toBe(false);
}
