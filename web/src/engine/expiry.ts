/**
 * Disappearing messages on this device: every message stored in a conversation with a timer carries
 * `expiresAt` = the server's time for it + the timer that the VERIFIED membership log set (docs/PROTOCOL.md
 * §"Disappearing messages"), and an entry in the expiry index (messages.ts). `sweep` deletes every message
 * whose time has come — its record, its index entries, and the excerpt any reply carries of it — and
 * announces each removal (`message_removed`) and each reply it changed (`message_updated`).
 *
 * The engine sweeps when it connects (so messages that expired while the app was closed go on the next
 * start, before anything is shown) and then on a timer set for the next expiry. Reads never return an
 * expired message even between sweeps (messages.ts `page`).
 *
 * Does NOT: decide the timer (groups.ts, from signed `set_timer` entries), or touch the server (its
 * mailbox expires on its own: ConversationDO and D1 never keep an envelope past the timer).
 * @module
 */
import { type EngineContext, errorLabel, type MessageView } from './context.js';
import type { Messages } from './messages.js';
import { readJson } from './storage.js';

/** Longest wait between sweeps while connected (a clock that jumped forward is noticed within it). */
export const MAX_SWEEP_INTERVAL_MS = 60_000;

export class Expiry {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running: Promise<number> | null = null;

  constructor(
    private readonly ctx: EngineContext,
    private readonly messages: Messages,
  ) {}

  /** Deletes every message due now; returns how many. Runs one at a time. */
  sweep(): Promise<number> {
    this.running ??= this.sweepNow().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async sweepNow(): Promise<number> {
    let removed = 0;
    for (;;) {
      const due = await this.messages.due(this.ctx.now());
      if (!due.length) return removed;
      const gone: MessageView[] = [];
      const changed: MessageView[] = [];
      await this.ctx.store.transaction(async (tx) => {
        gone.length = 0;
        changed.length = 0;
        for (const d of due) {
          tx.delete(d.key);
          const m = await readJson<MessageView>(tx, `msg/${d.conversationId}/${d.seq.toString().padStart(16, '0')}`);
          if (!m || m.expiresAt === undefined || m.expiresAt > this.ctx.now()) continue;
          changed.push(...(await this.messages.removeInTx(tx, m)));
          gone.push(m);
        }
      });
      removed += gone.length;
      for (const m of gone)
        this.ctx.emit({ type: 'message_removed', conversationId: m.conversationId, clientId: m.clientId });
      for (const m of changed)
        if (!gone.some((g) => g.clientId === m.clientId)) this.ctx.emit({ type: 'message_updated', message: m });
    }
  }

  private active = false;
  private dueAt = Number.POSITIVE_INFINITY;

  /** Sweeps now and keeps sweeping at each next expiry (at most MAX_SWEEP_INTERVAL_MS apart) until `stop`. */
  async start(): Promise<void> {
    this.active = true;
    await this.sweep();
    await this.schedule();
  }

  /** A message expiring at `at` was stored: sweep then if that is sooner than the timer already set. */
  poke(at: number): void {
    if (this.active && at < this.dueAt) this.arm(at);
  }

  private async schedule(): Promise<void> {
    if (!this.active) return;
    const next = await this.messages.nextExpiry();
    this.arm(next ?? this.ctx.now() + MAX_SWEEP_INTERVAL_MS);
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(MAX_SWEEP_INTERVAL_MS, at - this.ctx.now()));
    this.dueAt = this.ctx.now() + wait;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.dueAt = Number.POSITIVE_INFINITY;
      void this.sweep()
        .then(() => this.schedule())
        .catch((e) => console.error('engine: expiry', errorLabel(e)));
    }, wait);
    (this.timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    this.active = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.dueAt = Number.POSITIVE_INFINITY;
  }
}
