/**
 * Issue 17 — browser notifications while the tab is hidden (opt-in; the message text only if previews are
 * allowed — otherwise just "New message"), next to the unread count in the tab title; none for a muted
 * conversation or person. Nothing leaves the
 * device: the notification is made here from the decrypted message. Web Push (a notification while no tab
 * is open) is the next step; docs/ARCHITECTURE.md §"Notifications" says what it would reveal.
 * @module
 */
import { createSignal, onCleanup, onMount, Show } from 'solid-js';
import { shouldNotify } from '../logic.js';
import { useStore } from '../store/index.js';

/** Engine prefs (sealed store): notifications on, and whether they show the text. */
const PREF = 'notifications';
interface NotificationPref {
  readonly on: boolean;
  readonly previews: boolean;
}
const OFF: NotificationPref = { on: false, previews: false };

const supported = () => typeof Notification !== 'undefined';

/** What a notification for `body` from `sender` says, by the preview setting. */
export function notificationText(pref: NotificationPref, sender: string, body: string | null) {
  return pref.previews && body ? { title: sender, body } : { title: 'e2e-chat', body: 'New message' };
}

/** Mounted once while signed in: shows a notification for each new incoming message while hidden. */
export function Notifier() {
  const { actions } = useStore();
  let pref = OFF;
  onMount(() => {
    void actions.getUiPref(PREF).then((p) => {
      if (p && typeof p === 'object') pref = { ...OFF, ...(p as NotificationPref) };
    });
    const offPref = onPrefChange((p) => {
      pref = p;
    });
    const off = actions.watchEvents((e) => {
      if (e.type !== 'message_added' || e.message.seq === null || !supported()) return;
      const m = e.message;
      const raise = shouldNotify({
        on: pref.on,
        permission: Notification.permission,
        hidden: document.visibilityState !== 'visible',
        incoming: !m.outgoing,
        // A muted conversation or person raises nothing (Conversation info › Mute).
        muted: actions.isMuted(m.conversationId, m.from.userId),
      });
      if (!raise) return;
      const { title, body } = notificationText(pref, actions.nameOf(m.from.userId), m.body);
      try {
        const n = new Notification(title, { body, tag: m.conversationId });
        n.onclick = () => {
          window.focus();
          location.assign(`/chats/${m.conversationId}`);
        };
      } catch {
        // Some browsers allow notifications only from a service worker: the title count still shows.
      }
    });
    onCleanup(() => {
      off();
      offPref();
    });
  });
  return null;
}

const listeners = new Set<(p: NotificationPref) => void>();
const onPrefChange = (l: (p: NotificationPref) => void) => {
  listeners.add(l);
  return () => listeners.delete(l);
};

/** Account › General › Privacy: notifications on/off (asks the browser's permission) and previews. */
export function NotificationSetting() {
  const { actions } = useStore();
  const [pref, setPref] = createSignal<NotificationPref>(OFF);
  const [denied, setDenied] = createSignal(supported() && Notification.permission === 'denied');
  onMount(
    () =>
      void actions.getUiPref(PREF).then((p) => {
        if (p && typeof p === 'object') setPref({ ...OFF, ...(p as NotificationPref) });
      }),
  );
  const save = async (next: NotificationPref) => {
    setPref(next);
    for (const l of listeners) l(next);
    await actions.setUiPref(PREF, next).catch(() => actions.toast('Could not save the setting', 'error'));
  };
  return (
    <div class="space-y-2 text-sm">
      <label class="flex items-start gap-3">
        <input
          type="checkbox"
          class="mt-0.5 size-4"
          checked={pref().on}
          disabled={!supported()}
          onChange={async (e) => {
            const on = e.currentTarget.checked;
            if (on && supported() && Notification.permission !== 'granted') {
              const p = await Notification.requestPermission().catch(() => 'denied' as const);
              setDenied(p === 'denied');
              if (p !== 'granted') {
                e.currentTarget.checked = false;
                return;
              }
            }
            await save({ ...pref(), on });
          }}
          data-testid="notifications-setting"
        />
        <span>
          <span class="font-medium">Notifications</span>
          <span class="block text-slate-600 dark:text-slate-400">
            While this tab is in the background, show a notification for each new message.
          </span>
        </span>
      </label>
      <label class="flex items-start gap-3 pl-7">
        <input
          type="checkbox"
          class="mt-0.5 size-4"
          checked={pref().previews}
          disabled={!pref().on}
          onChange={(e) => void save({ ...pref(), previews: e.currentTarget.checked })}
          data-testid="previews-setting"
        />
        <span>
          <span class="font-medium">Show the text</span>
          <span class="block text-slate-600 dark:text-slate-400">
            Otherwise a notification only says “New message” (others near your screen see less).
          </span>
        </span>
      </label>
      <Show when={!supported() || denied()}>
        <p class="text-xs text-amber-800 dark:text-amber-300">
          {supported()
            ? 'This browser blocks notifications for this site: allow them in its site settings.'
            : 'This browser does not support notifications.'}
        </p>
      </Show>
    </div>
  );
}
