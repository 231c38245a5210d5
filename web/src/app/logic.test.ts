import { describe, expect, it } from 'vitest';
import { ROLE_ACTIONS, ROLES } from '../protocol/index.js';
import {
  copyText,
  deviceLabel,
  groupsOfFive,
  isMutedNow,
  match,
  namesFromDirectTitle,
  rateLimitText,
  shouldNotify,
  unreadTitle,
  validateRegistration,
  waitText,
} from './logic.js';
import { allowedActions, canAddMembers, canLeave, canRename } from './roles.js';

describe('registration form rules', () => {
  it('accepts what the server accepts and says what is wrong otherwise', () => {
    expect(validateRegistration('Alice', 'long enough pw', 'long enough pw')).toEqual({
      username: null,
      password: null,
      confirm: null,
    });
    const bad = validateRegistration('1x', 'short', 'other');
    expect(bad.username).toMatch(/3–32/);
    expect(bad.password).toMatch(/At least 10/);
    expect(bad.confirm).toMatch(/do not match/);
    expect(validateRegistration('ＡＬＩＣＥ', 'long enough pw', 'long enough pw').username).toBeNull();
  });
});

describe('membership actions shown for each role follow the protocol table', () => {
  it('matches ROLE_ACTIONS for every role pair in groups, and offers nothing in direct chats', () => {
    for (const me of ROLES)
      for (const target of ROLES) {
        const shown = allowedActions('group', me, target);
        for (const a of ['promote', 'demote', 'transfer_ownership', 'remove'] as const) {
          const rule = ROLE_ACTIONS[me][a];
          expect(shown.includes(a), `${me} → ${a} on ${target}`).toBe(Array.isArray(rule) && rule.includes(target));
        }
        expect(allowedActions('direct', me, target)).toEqual([]);
      }
    expect(allowedActions('group', null, 'member')).toEqual([]);
  });

  it('owners cannot leave (transfer first); members cannot add; nobody acts after leaving', () => {
    expect(canLeave('group', 'owner')).toBe(false);
    expect(canLeave('group', 'admin')).toBe(true);
    expect(canLeave('group', 'member')).toBe(true);
    expect(canLeave('direct', 'member')).toBe(false);
    expect(canAddMembers('group', 'owner')).toBe(true);
    expect(canAddMembers('group', 'admin')).toBe(true);
    expect(canAddMembers('group', 'member')).toBe(false);
    expect(canAddMembers('group', null)).toBe(false);
  });

  it('renaming is offered exactly to the roles the table allows, in groups only', () => {
    for (const me of ROLES) expect(canRename('group', me), me).toBe(ROLE_ACTIONS[me].rename === true);
    expect(canRename('group', null)).toBe(false);
    expect(canRename('direct', 'owner')).toBe(false);
  });
});

describe('helpers', () => {
  it('groups a 60-digit safety number into twelve groups of five', () => {
    const digits = '0123456789'.repeat(6);
    const g = groupsOfFive(digits);
    expect(g).toHaveLength(12);
    expect(g.every((x) => x.length === 5)).toBe(true);
    expect(g.join('')).toBe(digits);
    expect(groupsOfFive('01234 56789')).toEqual(['01234', '56789']);
  });

  it('matches routes with parameters', () => {
    expect(match('/chats/:id/info', '/chats/abc_1/info')).toEqual({ id: 'abc_1' });
    expect(match('/chats/:id', '/chats/abc/info')).toBeNull();
    expect(match('/', '/')).toEqual({});
    expect(match('/account', '/chats')).toBeNull();
  });

  it('reads usernames from a direct title only when they line up with the members', () => {
    expect(namesFromDirectTitle('alice bob', ['u1', 'u2'])).toEqual({ u1: 'alice', u2: 'bob' });
    expect(namesFromDirectTitle('', ['u1', 'u2'])).toEqual({});
    expect(namesFromDirectTitle('alice <script>', ['u1', 'u2'])).toEqual({});
  });
});

describe('this device’s readable name', () => {
  it('names the browser and the system from the user agent', () => {
    expect(
      deviceLabel(
        'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/140.0 Safari/537.36',
      ),
    ).toBe('Chromium on Linux');
    expect(deviceLabel('Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:130.0) Gecko/20100101 Firefox/130.0')).toBe(
      'Firefox on Windows',
    );
    expect(
      deviceLabel(
        'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15',
      ),
    ).toBe('Safari on macOS');
    expect(deviceLabel('something else')).toBe('Browser');
  });
});

describe('rate limits say how long to wait', () => {
  it('rounds the Retry-After seconds up to a readable wait', () => {
    expect(waitText(1)).toBe('1 second');
    expect(waitText(42.2)).toBe('43 seconds');
    expect(waitText(61)).toBe('2 minutes');
    expect(waitText(900)).toBe('15 minutes');
    expect(waitText(3600)).toBe('1 hour');
    expect(waitText(3601)).toBe('2 hours');
  });
  it('names the wait and the local time it ends', () => {
    const now = new Date(2026, 0, 1, 14, 0, 0).getTime();
    const at = new Date(now + 900_000).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    expect(rateLimitText(900, now)).toBe(`Too many attempts from here. Try again in 15 minutes (at ${at}).`);
  });
});

describe('mute does something', () => {
  const now = 1_000_000;
  const mutes = {
    mutedConversations: [
      { conversationId: 'quiet-group', until: 0 },
      { conversationId: 'was-muted', until: now - 1 },
    ],
    mutedUsers: [{ userId: 'mallory', until: now + 60_000 }],
  };
  const muted = (id: string, from?: string, peer?: string) => isMutedNow(mutes, id, [from, peer], now);

  it('a muted conversation or person raises no notification; everything else notifies as before', () => {
    const base = { on: true, permission: 'granted', hidden: true, incoming: true };
    expect(shouldNotify({ ...base, muted: muted('quiet-group', 'alice') })).toBe(false);
    // A muted person: in any conversation they write in, and their direct chat.
    expect(shouldNotify({ ...base, muted: muted('some-group', 'mallory') })).toBe(false);
    expect(shouldNotify({ ...base, muted: muted('dm-mallory', undefined, 'mallory') })).toBe(false);
    // A mute that ran out, and an unmuted conversation: notified.
    expect(shouldNotify({ ...base, muted: muted('was-muted', 'alice') })).toBe(true);
    expect(shouldNotify({ ...base, muted: muted('dm-alice', 'alice', 'alice') })).toBe(true);
    // The other rules stay: opt-in, permission, hidden tab, incoming only.
    for (const off of [{ on: false }, { permission: 'default' }, { hidden: false }, { incoming: false }])
      expect(shouldNotify({ ...base, ...off, muted: false })).toBe(false);
    expect(isMutedNow(null, 'quiet-group', ['mallory'], now)).toBe(false);
  });

  it('muted conversations add nothing to the unread count in the tab title', () => {
    const peers: Record<string, string> = { 'dm-mallory': 'mallory', 'dm-alice': 'alice' };
    const isMuted = (id: string) => muted(id, undefined, peers[id]);
    expect(unreadTitle({ 'quiet-group': 5, 'dm-mallory': 2, 'dm-alice': 1, 'was-muted': 2 }, isMuted)).toBe(
      '(3) e2e-chat',
    );
    expect(unreadTitle({ 'quiet-group': 5, 'dm-mallory': 2 }, isMuted)).toBe('e2e-chat');
    expect(unreadTitle({}, isMuted)).toBe('e2e-chat');
  });
});

describe('copying to the clipboard', () => {
  it('R9: a write the browser refuses (or no Clipboard API) is reported as not copied; only a done write is', async () => {
    const written: string[] = [];
    const refusing = {
      writeText: () => Promise.reject(new DOMException('Write permission denied.', 'NotAllowedError')),
    };
    expect(await copyText('e2echat-link:abc', refusing)).toBe(false);
    expect(await copyText('e2echat-link:abc', undefined)).toBe(false);
    const ok = {
      writeText: async (t: string) => {
        written.push(t);
      },
    };
    expect(await copyText('e2echat-link:abc', ok)).toBe(true);
    expect(written).toEqual(['e2echat-link:abc']);
  });
});
