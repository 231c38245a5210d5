/**
 * Typing indicators: an encrypted `typing` payload (docs/PROTOCOL.md §"Content types") in an ephemeral
 * `typing` frame (schema/wire.ts) that the ConversationDO relays to live sockets and never stores.
 *
 * Sending — only when the privacy setting allows it (`typingIndicators`, on unless turned off) and the
 * caller's `allowed` check passes (e.g. a message request not accepted yet), and only over keys we already
 * have: pairwise to the verified devices of verified members we hold a usable session with (never claiming
 * a bundle: a signal must not spend anyone's one-time prekeys), or with our sender key when it is current
 * and every recipient has it (never creating, rotating or distributing one for a signal). A device it
 * cannot reach simply sees nothing. Our own other devices are not told.
 *
 * Receiving — never on the seq-ordered path: the sender must already be a verified member with a device
 * in their verified list ON THIS DEVICE (no network refresh for a signal), at most `burst` signals per
 * sender device are decrypted, refilling at `perSec`; a pairwise signal that would start a new session is
 * dropped uncommitted; anything that fails to decrypt or parse is dropped silently. An accepted signal
 * commits the advanced session / chain (so its key is never used again) and becomes a `typing` event; the
 * UI shows it for a few seconds unless it is refreshed.
 *
 * Does NOT: persist anything but the advanced key state, retry, or throttle the UI's calls (the app sends
 * at most one "on" per few seconds while the person types, and one "off").
 * @module
 */
import type { TypingRelayFrame } from '../../../schema/wire.js';
import { decodeContent, encodeContent, fromB64u, toB64u } from './_protocol.js';
import type { EngineContext } from './context.js';
import type { Directory } from './directory.js';
import type { Groups } from './groups.js';
import type { Keystore } from './keystore.js';
import type { Sessions } from './sessions.js';
import { readJson } from './storage.js';
import type { ClientFrame } from './transport.js';

/** Privacy setting (engine pref `typingIndicators`): false → neither sent nor shown. */
export const TYPING_PREF = 'ui/typingIndicators';

export interface TypingLimits {
  /** Signals decrypted per sender device before the bucket is empty. */
  readonly burst: number;
  /** Refill per second. */
  readonly perSec: number;
}
export const TYPING_LIMITS: TypingLimits = { burst: 5, perSec: 1 };

export class Typing {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly keys: Keystore,
    private readonly sessions: Sessions,
    private readonly groups: Groups,
    private readonly directory: Directory,
    private readonly send: (conversationId: string, frame: ClientFrame) => boolean,
    /** Further gate (message requests, blocking): may we send signals into this conversation? */
    private readonly allowed: (conversationId: string) => Promise<boolean> = async () => true,
    private readonly limits: TypingLimits = TYPING_LIMITS,
  ) {}

  async enabled(): Promise<boolean> {
    return (await readJson<boolean>(this.ctx.store, TYPING_PREF)) !== false;
  }

  /** Sends "typing" (on) or "stopped" (off); returns whether a frame went out. */
  async signal(conversationId: string, on: boolean): Promise<boolean> {
    if (!(await this.enabled()) || !(await this.allowed(conversationId))) return false;
    const payload = encodeContent({ t: 'typing', conv: conversationId, on });
    if ((await this.groups.kind(conversationId)) === 'group') {
      if (!(await this.groups.senderKeyReady(conversationId))) return false;
      for (const u of await this.groups.memberIds(conversationId)) if (await this.directory.isBlocked(u)) return false;
      const c = await this.groups.encrypt(conversationId, payload);
      return this.send(conversationId, { v: 1, type: 'typing', group: toB64u(c) });
    }
    const own = await this.keys.identity();
    const to: { u: string; d: string; c: string }[] = [];
    for (const r of await this.groups.recipients(conversationId)) {
      if (r.userId === own.userId) continue;
      if (await this.directory.isBlocked(r.userId)) continue;
      for (const x of await this.sessions.encryptExisting(r.userId, r.devices, payload))
        to.push({ u: r.userId, d: x.deviceId, c: toB64u(x.ciphertext) });
    }
    if (!to.length) return false;
    return this.send(conversationId, { v: 1, type: 'typing', to });
  }

  private take(key: string): boolean {
    const now = this.ctx.now();
    const b = this.buckets.get(key) ?? { tokens: this.limits.burst, at: now };
    b.tokens = Math.min(this.limits.burst, b.tokens + ((now - b.at) / 1000) * this.limits.perSec);
    b.at = now;
    this.buckets.set(key, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** A relayed signal: checked, rate-limited, decrypted and announced — or dropped without a trace. */
  async receive(conversationId: string, f: TypingRelayFrame): Promise<void> {
    const { u, d } = f.from;
    const own = await this.keys.identity();
    if (u === own.userId || !(await this.enabled())) return;
    if (!(await this.groups.isVerifiedMember(conversationId, u)) || !(await this.directory.device(u, d))) return;
    if (!this.take(`${conversationId}\n${u}\n${d}`)) return;
    let bytes: Uint8Array;
    try {
      bytes = fromB64u(f.c);
    } catch {
      return;
    }
    const accept = async (r: { plaintext: Uint8Array; newSession?: boolean; commit: (tx: never) => Promise<void> }) => {
      if (r.newSession) return null; // a signal never starts a session
      const p = decodeContent(r.plaintext);
      if (p.kind !== 'ok' || p.content.t !== 'typing' || p.content.conv !== conversationId) return null;
      await this.ctx.store.transaction(async (tx) => r.commit(tx as never));
      return p.content.on;
    };
    let on: boolean | null = null;
    try {
      on =
        f.mode === 'group'
          ? await this.groups.decrypt(conversationId, u, d, bytes, accept)
          : await this.sessions.decrypt(u, d, bytes, accept);
    } catch {
      return; // undecryptable, a replay, a wrong key: a signal is simply dropped
    }
    if (on !== null) this.ctx.emit({ type: 'typing', conversationId, userId: u, on });
  }
}
