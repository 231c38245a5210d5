/**
 * Issue 17 — actions on messages (reply, react, edit, delete for everyone) and jumping to a quoted
 * message. The engine applies each action at the server's seq on every device and announces the changed
 * messages (`message_updated`, with our own pending action shown until it is sequenced), so these only
 * call it; the message list follows the events.
 * @module
 */
import type { EngineEvent } from '../../engine/context.js';
import type { Agent } from './agent.js';
import type { Actions, SetState, State } from './state.js';

/** Most older pages loaded while looking for a quoted message before giving up. */
const MAX_PAGES_FOR_JUMP = 40;
/** While someone keeps typing, "on" is sent again this often (receivers show it for TYPING_SHOW_MS). */
export const TYPING_RESEND_MS = 3_000;
/** How long a received "typing" is shown unless it is refreshed or turned off. */
export const TYPING_SHOW_MS = 6_000;
/** The engine pref behind the privacy setting (engine/typing.ts TYPING_PREF). */
const TYPING_PREF = 'typingIndicators';

export function createMessageActions(agent: () => Agent, actions: Actions, state: State, setState: SetState): void {
  /** When we last told each conversation we are typing (absent: we are not). */
  const typingSince = new Map<string, number>();
  Object.assign(actions, {
    /** Sets the disappearing-message timer (a signed membership entry), then shows the new state. */
    async setTimer(c: string, seconds: number) {
      await agent().engine.setTimer(c, seconds);
      await actions.refreshConversation(c);
      const info = await agent()
        .engine.infoLines(c)
        .catch(() => null);
      if (info) setState('info', c, info);
    },
    /** Searches this device's decrypted messages (newest first); nothing is sent anywhere. */
    async searchMessages(query: string) {
      return agent().engine.search(query, { limit: 50 });
    },
    watchEvents(listener: (e: EngineEvent) => void) {
      return agent().onEvent(listener);
    },
    getUiPref: (key: string) => agent().engine.getPref(key),
    async setUiPref(key: string, value: unknown) {
      await agent().engine.setPref(key, value);
    },
    // ---- typing indicators (ephemeral; the engine checks the privacy setting and what it may reach) ----
    async typingChanged(c: string, active: boolean) {
      const last = typingSince.get(c);
      if (active) {
        if (last !== undefined && Date.now() - last < TYPING_RESEND_MS) return;
        typingSince.set(c, Date.now());
      } else {
        if (last === undefined) return;
        typingSince.delete(c);
      }
      await agent()
        .engine.typing(c, active)
        .catch(() => false);
    },
    watchTyping(listener: (e: { conversationId: string; userId: string; on: boolean }) => void) {
      return agent().onEvent((e) => {
        if (e.type === 'typing') listener(e);
      });
    },
    async typingIndicators() {
      return (await agent().engine.getPref(TYPING_PREF)) !== false;
    },
    async setTypingIndicators(on: boolean) {
      await agent().engine.setPref(TYPING_PREF, on);
    },
    async react(c: string, id: string, emoji: string) {
      await agent().engine.react(c, id, emoji);
    },
    async editMessage(c: string, id: string, body: string) {
      await agent().engine.editMessage(c, id, body);
    },
    async deleteForEveryone(c: string, id: string) {
      await agent().engine.deleteForEveryone(c, id);
    },
    /**
     * Makes sure the message `id` is in the loaded list (loading older pages while it is not) and returns
     * whether it is: false when this device does not have it (it was deleted, expired or never arrived).
     */
    async revealMessage(c: string, id: string) {
      const shown = () => (state.messages[c] ?? []).some((m) => m.clientId === id);
      if (shown()) return true;
      if ((await agent().engine.locate(c, id)) === null) return false;
      for (let i = 0; i < MAX_PAGES_FOR_JUMP && !shown(); i++) if ((await actions.loadOlder(c)) === 0) break;
      return shown();
    },
  } satisfies Partial<Actions>);
}
