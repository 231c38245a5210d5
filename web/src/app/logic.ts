/**
 * The app's pure rules, shared by pages and tested in Node: form validation, safety-number grouping,
 * route matching, and the usernames a direct conversation's title carries. (Role rules: roles.ts — kept
 * apart so the first page does not load the protocol core.)
 * @module
 */
export const USERNAME_RE = /^[a-z][a-z0-9_.-]{2,31}$/;
export const MIN_PASSWORD = 10;

/** A username as typed, normalised the way the server does (NFKC, lower case) and trimmed. */
export const normalizeTyped = (u: string) => u.normalize('NFKC').toLowerCase().trim();

export function validateRegistration(username: string, password: string, confirm: string) {
  const u = normalizeTyped(username);
  return {
    username: USERNAME_RE.test(u) ? null : '3–32 characters: a–z, 0–9, “_”, “.” or “-”, starting with a letter.',
    password: password.length >= MIN_PASSWORD ? null : `At least ${MIN_PASSWORD} characters.`,
    confirm: confirm === password ? null : 'The passwords do not match.',
  };
}

/**
 * A readable name for this browser from its user agent ("Chromium on Linux", "Firefox on Windows") — shown
 * for the current device until devices carry names of their own. Computed here; never sent.
 */
export function deviceLabel(ua: string): string {
  const browser = /Edg\//.test(ua)
    ? 'Edge'
    : /Firefox\//.test(ua)
      ? 'Firefox'
      : /(Chromium|HeadlessChrome)\//.test(ua)
        ? 'Chromium'
        : /Chrome\//.test(ua)
          ? 'Chrome'
          : /Safari\//.test(ua)
            ? 'Safari'
            : 'Browser';
  const os = /Android/.test(ua)
    ? 'Android'
    : /iPhone|iPad|iOS/.test(ua)
      ? 'iOS'
      : /Mac OS X|Macintosh/.test(ua)
        ? 'macOS'
        : /Windows/.test(ua)
          ? 'Windows'
          : /CrOS/.test(ua)
            ? 'ChromeOS'
            : /Linux/.test(ua)
              ? 'Linux'
              : '';
  return os ? `${browser} on ${os}` : browser;
}

/** "45 seconds", "3 minutes", "2 hours" — how long a rate limit lasts, rounded up. */
export function waitText(seconds: number): string {
  const s = Math.max(1, Math.ceil(seconds));
  if (s < 60) return `${s} second${s === 1 ? '' : 's'}`;
  const m = Math.ceil(s / 60);
  if (m < 60) return `${m} minute${m === 1 ? '' : 's'}`;
  const h = Math.ceil(m / 60);
  return `${h} hour${h === 1 ? '' : 's'}`;
}

/** The message for a 429 with Retry-After `seconds`: how long, and until when on the local clock. */
export function rateLimitText(seconds: number, now = Date.now()): string {
  const at = new Date(now + seconds * 1000).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  return `Too many attempts from here. Try again in ${waitText(seconds)} (at ${at}).`;
}

/** "12345678901234…" → ["12345", "67890", …] (60 digits → 12 groups). */
export function groupsOfFive(digits: string): string[] {
  return digits.replace(/\D/g, '').match(/.{1,5}/g) ?? [];
}

/** `/chats/:id` against `/chats/abc` → `{ id: 'abc' }`; null when it does not match. */
export function match(pattern: string, p: string): Record<string, string> | null {
  const a = pattern.split('/').filter(Boolean);
  const b = p.split('/').filter(Boolean);
  if (a.length !== b.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < a.length; i++) {
    const seg = a[i]!;
    if (seg.startsWith(':')) params[seg.slice(1)] = decodeURIComponent(b[i]!);
    else if (seg !== b[i]) return null;
  }
  return params;
}

/**
 * A direct conversation's title is "creator other" (the two usernames, creator first — the order of the
 * log's members). Returns userId → username for the names it carries.
 */
export function namesFromDirectTitle(title: string, memberIds: readonly string[]): Record<string, string> {
  const names = title.split(' ').filter((n) => USERNAME_RE.test(n));
  const out: Record<string, string> = {};
  if (names.length !== memberIds.length) return out;
  memberIds.forEach((id, i) => {
    out[id] = names[i]!;
  });
  return out;
}

// ---- mute (issue 17): a muted conversation or person raises no notification and no unread count ----------

/** Who and what is muted (engine PeopleView's mute lists; `until` 0: until unmuted). */
export interface MuteLists {
  readonly mutedUsers: readonly { readonly userId: string; readonly until: number }[];
  readonly mutedConversations: readonly { readonly conversationId: string; readonly until: number }[];
}

const muteLive = (until: number, now: number) => until === 0 || until > now;

/**
 * Whether `conversationId` is muted for us now: the conversation itself, or one of `people` (the sender of a
 * message, the other person of a direct chat) is muted, and that mute has not run out.
 */
export function isMutedNow(
  mutes: MuteLists | null | undefined,
  conversationId: string,
  people: readonly (string | null | undefined)[],
  now: number,
): boolean {
  if (!mutes) return false;
  if (mutes.mutedConversations.some((m) => m.conversationId === conversationId && muteLive(m.until, now))) return true;
  return mutes.mutedUsers.some((m) => people.includes(m.userId) && muteLive(m.until, now));
}

/** The tab title: the unread count of conversations that are not muted, e.g. "(3) e2e-chat". */
export function unreadTitle(unread: Readonly<Record<string, number | undefined>>, muted: (id: string) => boolean) {
  const n = Object.entries(unread).reduce((a, [id, b]) => a + (muted(id) ? 0 : (b ?? 0)), 0);
  return n > 0 ? `(${n}) e2e-chat` : 'e2e-chat';
}

/** Whether a new message raises a browser notification (opt-in, permission granted, tab hidden, not muted). */
export function shouldNotify(p: {
  readonly on: boolean;
  readonly permission: string;
  readonly hidden: boolean;
  readonly incoming: boolean;
  readonly muted: boolean;
}): boolean {
  return p.on && p.permission === 'granted' && p.hidden && p.incoming && !p.muted;
}

/**
 * Copies `text` to the clipboard; true only once the write succeeded (review R9: "Copied" is never shown
 * for a write the browser refused — no permission, no focus, no Clipboard API, an insecure page).
 */
export async function copyText(
  text: string,
  clipboard: Pick<Clipboard, 'writeText'> | undefined = globalThis.navigator?.clipboard,
): Promise<boolean> {
  if (!clipboard?.writeText) return false;
  try {
    await clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
