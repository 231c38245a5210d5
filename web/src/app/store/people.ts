/**
 * People (issue 17): profile names and avatars, message requests, block and mute — the engine's people
 * API (engine/people.ts) as app state. Avatars are shown only from `blob:` URLs made here from the
 * decrypted bytes (the CSP allows `img-src 'self' blob:`); a changed avatar revokes the old URL.
 *
 * Does NOT: decode or resize images (media.ts `prepareAvatar` does, in the browser, before `setProfile`).
 * @module
 */
import type { ProfileView } from '../../engine/people.js';
import { isMutedNow } from '../logic.js';
import { prepareAvatar } from '../media.js';
import type { Agent } from './agent.js';
import type { Actions, ProfileState, SetState, State } from './state.js';

export function createPeople(agent: () => Agent, actions: Actions, state: State, setState: SetState): void {
  let wired = false;
  const wire = () => {
    if (wired) return;
    wired = true;
    agent().onEvent((e) => {
      if (e.type === 'profile_changed') void actions.loadProfile(e.userId);
      if (e.type === 'people_changed') {
        void actions.loadPeople(false);
        void actions.loadConversations();
      }
    });
    // Blocks and accepted requests written by our other devices arrive with the next pull.
    setInterval(() => {
      if (state.me && document.visibilityState === 'visible') void actions.loadPeople(true).catch(() => undefined);
    }, 30_000);
  };

  const put = (v: ProfileView | null, userId: string) => {
    const old = state.profiles[userId];
    if (old?.avatarUrl) URL.revokeObjectURL(old.avatarUrl);
    const avatarUrl = v?.avatar
      ? URL.createObjectURL(new Blob([v.avatar.bytes as Uint8Array<ArrayBuffer>], { type: `image/${v.avatar.type}` }))
      : null;
    setState('profiles', userId, { name: v?.name ?? '', avatarUrl } satisfies ProfileState);
  };

  Object.assign(actions, {
    async loadPeople(sync = true) {
      wire();
      const e = agent().engine;
      const view = sync ? await e.syncPeople().catch(() => e.people()) : await e.people();
      setState('people', view);
      const me = state.me?.userId;
      if (me) put(await e.profile(me), me);
      for (const p of await e.profiles()) if (p.userId !== me) put(p, p.userId);
    },
    async loadProfile(userId: string, refresh = false) {
      wire();
      put(await agent().engine.profile(userId, { refresh }), userId);
    },
    async setProfile(name: string, avatar: File | null | 'keep') {
      const me = state.me?.userId;
      if (!me) return;
      const e = agent().engine;
      const prev = await e.profile(me);
      const next = avatar === 'keep' ? (prev?.avatar ?? null) : avatar === null ? null : await prepareAvatar(avatar);
      put(await e.setProfile({ name, avatar: next }), me);
    },
    async acceptRequest(conversationId: string) {
      await agent().engine.acceptRequest(conversationId);
      await actions.refreshConversation(conversationId);
    },
    async deleteRequest(conversationId: string) {
      await agent().engine.deleteRequest(conversationId);
      await actions.refreshConversation(conversationId);
    },
    async block(target: { userId: string } | { conversationId: string }) {
      await agent().engine.block(target);
      await actions.loadPeople(false);
      await actions.loadConversations();
    },
    async unblock(target: { userId: string } | { conversationId: string }) {
      await agent().engine.unblock(target);
      await actions.loadPeople(false);
      await actions.loadConversations();
    },
    async mute(target: { userId: string } | { conversationId: string }, until = 0) {
      await agent().engine.mute(target, until);
      await actions.loadPeople(false);
    },
    async unmute(target: { userId: string } | { conversationId: string }) {
      await agent().engine.unmute(target);
      await actions.loadPeople(false);
    },
    requesterOf: (conversationId: string) => agent().engine.requester(conversationId),
    isMuted(conversationId: string, fromUserId?: string) {
      // The conversation, the sender, or the other person of a direct chat (logic.ts isMutedNow).
      const c = state.conversations[conversationId];
      const me = state.me?.userId;
      const peer = c?.kind === 'direct' ? c.members.find((m) => m.userId !== me)?.userId : undefined;
      return isMutedNow(state.people, conversationId, [fromUserId, peer], Date.now());
    },
    profileName(userId: string) {
      return state.profiles[userId]?.name ?? '';
    },
  });
}
