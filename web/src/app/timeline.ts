/**
 * The conversation timeline the app shows, as pure functions tested in Node: messages in conversation
 * order with local (unsequenced: sending or failed) messages kept where they were written, info lines
 * (engine/info.ts) placed after the message seq they follow, date separators, the "new messages" divider,
 * the text of membership lines, and http(s) links in message text.
 * @module
 */
import type { MessageView } from '../engine/context.js';
import type { InfoLine } from '../engine/info.js';

/**
 * Sequenced messages by seq; a local message (no seq yet: sending, or failed) right after the last
 * sequenced message that was sent no later than it (so a failed message keeps its place after a reload
 * instead of sinking below every newer one); local messages among themselves by time.
 */
export function sortMessages(list: readonly MessageView[]): MessageView[] {
  const seqd = list.filter((m) => m.seq !== null).sort((a, b) => a.seq! - b.seq!);
  const local = list.filter((m) => m.seq === null).sort((a, b) => a.sentAt - b.sentAt);
  const out: MessageView[] = [];
  let i = 0;
  for (const m of seqd) {
    while (i < local.length && local[i]!.sentAt < m.sentAt) out.push(local[i++]!);
    out.push(m);
  }
  while (i < local.length) out.push(local[i++]!);
  return out;
}

export type TimelineEntry =
  | { readonly kind: 'message'; readonly key: string; readonly message: MessageView }
  | { readonly kind: 'info'; readonly key: string; readonly info: InfoLine }
  | { readonly kind: 'date'; readonly key: string; readonly label: string }
  | { readonly kind: 'unread'; readonly key: string };

const dayOf = (ms: number) => {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
};

/** "Today", "Yesterday", a weekday within the week, else the date. */
export function dayLabel(ms: number, now = Date.now()): string {
  const start = (t: number) => {
    const d = new Date(t);
    d.setHours(0, 0, 0, 0);
    return d.getTime();
  };
  const days = Math.round((start(now) - start(ms)) / 86_400_000);
  if (days === 0) return 'Today';
  if (days === 1) return 'Yesterday';
  if (days > 1 && days < 7) return new Date(ms).toLocaleDateString(undefined, { weekday: 'long' });
  return new Date(ms).toLocaleDateString(undefined, { day: 'numeric', month: 'long', year: 'numeric' });
}

/**
 * Messages (already in order) and info lines merged: each info line goes before the first sequenced
 * message with a seq above its `afterSeq`. While older pages are not loaded (`hasOlder`), lines that sit
 * before the oldest loaded message wait for that page. A date separator starts every day; `unreadFrom`
 * (a message's clientId) gets the "new messages" divider before it.
 */
export function buildTimeline(
  messages: readonly MessageView[],
  info: readonly InfoLine[],
  opts: { hasOlder?: boolean; unreadFrom?: string | null; now?: number } = {},
): TimelineEntry[] {
  const lines = [...info].sort((a, b) => a.afterSeq - b.afterSeq || a.id.localeCompare(b.id, 'en', { numeric: true }));
  const oldest = messages.find((m) => m.seq !== null)?.seq ?? null;
  let li = 0;
  if (opts.hasOlder && oldest !== null) while (li < lines.length && lines[li]!.afterSeq < oldest - 1) li++;
  const out: TimelineEntry[] = [];
  let lastDay: string | null = null;
  const dated = (ms: number) => {
    const day = dayOf(ms);
    if (day !== lastDay) {
      lastDay = day;
      out.push({ kind: 'date', key: `date:${day}`, label: dayLabel(ms, opts.now) });
    }
  };
  for (const m of messages) {
    if (m.seq !== null)
      while (li < lines.length && lines[li]!.afterSeq < m.seq) {
        dated(lines[li]!.at);
        out.push({ kind: 'info', key: lines[li]!.id, info: lines[li]! });
        li++;
      }
    dated(Math.min(m.sentAt, opts.now ?? Date.now()));
    if (opts.unreadFrom && m.clientId === opts.unreadFrom) out.push({ kind: 'unread', key: 'unread' });
    out.push({ kind: 'message', key: m.clientId, message: m });
  }
  for (; li < lines.length; li++) {
    dated(lines[li]!.at);
    out.push({ kind: 'info', key: lines[li]!.id, info: lines[li]! });
  }
  return out;
}

/** Chat-list time of the last activity: "now", "5 min", "14:05" (today), "Yesterday", "Mon", "10 Jun". */
export function relativeTime(ms: number, now = Date.now()): string {
  const diff = Math.max(0, now - ms);
  if (diff < 60_000) return 'now';
  if (diff < 3_600_000) return `${Math.floor(diff / 60_000)} min`;
  const label = dayLabel(ms, now);
  if (label === 'Today') return new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  if (label === 'Yesterday') return label;
  const days = (now - ms) / 86_400_000;
  if (days < 7) return new Date(ms).toLocaleDateString(undefined, { weekday: 'short' });
  return new Date(ms).toLocaleDateString(undefined, { day: 'numeric', month: 'short' });
}

/** The sentence for an info line; `name` turns user ids into names ("you" for us). */
export function infoText(line: InfoLine, name: (userId: string) => string, me: string | undefined): string {
  const e = line.event;
  if (e.type === 'device_linked')
    return e.userId === me ? 'You linked a new device' : `${name(e.userId)} linked a new device`;
  const who = (u: string | null) => (u === null ? 'someone' : u === me ? 'you' : name(u));
  const actor = e.actor === me ? 'You' : name(e.actor);
  switch (e.action) {
    case 'create':
      return `${actor} created the group${e.title ? ` “${e.title}”` : ''}`;
    case 'add':
      return `${actor} added ${who(e.target)}${e.role === 'admin' ? ' as an admin' : ''}`;
    case 'remove':
      return `${actor} removed ${who(e.target)}`;
    case 'promote':
      return `${actor} made ${who(e.target)} an admin`;
    case 'demote':
      return `${actor} removed ${who(e.target)} as an admin`;
    case 'transfer_ownership':
      return `${actor} made ${who(e.target)} the owner`;
    case 'rename':
      return `${actor} renamed the group to “${e.title ?? ''}”`;
    case 'leave':
      // In a direct chat only an account deletion writes a leave (docs/PROTOCOL.md, direct conversations).
      return e.accountDeleted ? `${actor} deleted their account` : `${actor} left`;
    case 'set_timer':
      return e.timer
        ? `${actor} set disappearing messages to ${timerLabel(e.timer)}`
        : `${actor} turned off disappearing messages`;
  }
}

/** The disappearing-message timer choices the app offers (seconds; 0 = off). */
export const TIMER_CHOICES: readonly number[] = [0, 300, 3600, 8 * 3600, 86_400, 7 * 86_400, 28 * 86_400];

/** "5 minutes", "1 hour", "8 hours", "1 day", "1 week", "4 weeks"; other values in the largest whole unit. */
export function timerLabel(seconds: number): string {
  if (seconds <= 0) return 'Off';
  const units: [number, string][] = [
    [7 * 86_400, 'week'],
    [86_400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
    [1, 'second'],
  ];
  for (const [size, name] of units) {
    if (seconds % size === 0) {
      const n = seconds / size;
      return `${n} ${name}${n === 1 ? '' : 's'}`;
    }
  }
  return `${seconds} seconds`;
}

/** Splits text into plain runs and http(s) URLs (trailing punctuation stays text). */
export function linkify(text: string): { text: string; href?: string }[] {
  const out: { text: string; href?: string }[] = [];
  const re = /\bhttps?:\/\/[^\s<>"]+/gi;
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    let url = m[0];
    const trail = /[.,;:!?)\]}'"’”]+$/.exec(url);
    if (trail) url = url.slice(0, -trail[0].length);
    if (m.index > last) out.push({ text: text.slice(last, m.index) });
    let ok = false;
    try {
      const u = new URL(url);
      ok = u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      ok = false;
    }
    out.push(ok ? { text: url, href: url } : { text: url });
    last = m.index + url.length;
    re.lastIndex = last;
  }
  if (last < text.length) out.push({ text: text.slice(last) });
  return out;
}
