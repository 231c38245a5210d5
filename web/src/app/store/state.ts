/**
 * The shape of the app state and of the actions every store factory adds to.
 * @module
 */
import type { SetStoreFunction } from 'solid-js/store';
import type { EngineEvent, MessageView } from '../../engine/context.js';
import type { ConversationView } from '../../engine/engine.js';
import type { InfoLine } from '../../engine/info.js';
import type { PeopleView } from '../../engine/people.js';
import type { KtAlert } from '../../engine/transparency.js';
import type { ConnectionStatus } from '../../engine/transport.js';
import type { DeviceInfo, HistoryFile, LinkProgressView, LoginResult, Me, Progress } from '../session-api.js';
import type { DownloadState, UploadCard } from './attachments.js';

export type Theme = 'system' | 'light' | 'dark';

export interface Toast {
  readonly id: number;
  readonly kind: 'info' | 'error';
  readonly text: string;
}

export interface ContactState {
  readonly userId: string;
  readonly identityKey: string;
  readonly blocked: boolean;
  readonly verified: boolean;
  /** The new identity key (b64u) of a change that awaits acceptance; null when none. */
  readonly pendingIdentityKey: string | null;
  /** True while a change is pending and the user had verified the key it replaces (that no longer applies). */
  readonly verificationLost: boolean;
}

export interface State {
  /** null until the first restore attempt ended. */
  authChecked: boolean;
  me: Me | null;
  /** Set while the account's local store is passphrase-locked: only the lock screen shows. */
  locked: { readonly username: string } | null;
  /** Whether this browser's store is passphrase-locked (null: not known yet). */
  localPassphrase: boolean | null;
  progress: Progress | null;
  conversations: Record<string, ConversationView>;
  conversationsLoaded: boolean;
  messages: Record<string, MessageView[]>;
  /** Timeline info lines per conversation (verified membership changes), once its messages are loaded. */
  info: Record<string, InfoLine[]>;
  /** True while older history may exist (scrolling up loads more). */
  hasOlder: Record<string, boolean>;
  connection: Record<string, ConnectionStatus>;
  /** The newest message per conversation (list previews and ordering by activity). */
  last: Record<string, MessageView>;
  /** Messages received while the conversation was not on screen. */
  unread: Record<string, number>;
  /** The conversation on screen, if any. */
  activeConversation: string | null;
  browserOnline: boolean;
  contacts: Record<string, ContactState>;
  /** userId → username, from lookups, direct conversation titles and our own session. */
  names: Record<string, string>;
  /** userId → the identity key (b64u) the user marked as verified. */
  verified: Record<string, string>;
  devices: DeviceInfo[];
  /** This browser being linked to an account (the /link screen). */
  link: LinkProgressView | null;
  /** This browser linking another device (Account → Devices). */
  linkOut: LinkProgressView | null;
  /** This device was removed from the account and its store erased. */
  removed: boolean;
  theme: Theme;
  toasts: Toast[];
  /** Files on their way out, per conversation (store/attachments.ts). */
  uploads: Record<string, UploadCard[]>;
  /** Attachments being opened, by message client id. */
  downloads: Record<string, DownloadState>;
  /**
   * Images opened in full, by message client id: their blob: URL. Held here, not in the bubble, because the
   * timeline re-creates its bubbles when it is rebuilt (a new message, a receipt): an opened image stays open.
   * The oldest beyond OPENED_IMAGES_MAX are closed (URL revoked).
   */
  opened: Record<string, string>;
  // ---- people (store/people.ts) ----
  /** Profiles this device could open (ours included), by user id. */
  profiles: Record<string, ProfileState>;
  /** Our blocks, mutes and accepted people (sealed private settings); null until loaded. */
  people: PeopleView | null;
  /** Key-transparency security warnings, newest first (store/transparency.ts). */
  ktAlerts: KtAlert[];
}

export interface ProfileState {
  /** Empty: no display name (show the username alone). */
  readonly name: string;
  /** A `blob:` URL of the decrypted avatar, or null. */
  readonly avatarUrl: string | null;
}

export const initialState = (): State => ({
  authChecked: false,
  me: null,
  locked: null,
  localPassphrase: null,
  progress: null,
  conversations: {},
  conversationsLoaded: false,
  messages: {},
  info: {},
  hasOlder: {},
  connection: {},
  last: {},
  unread: {},
  activeConversation: null,
  browserOnline: typeof navigator === 'undefined' ? true : navigator.onLine,
  contacts: {},
  names: {},
  verified: {},
  devices: [],
  link: null,
  linkOut: null,
  removed: false,
  theme: 'system',
  toasts: [],
  uploads: {},
  downloads: {},
  opened: {},
  profiles: {},
  people: null,
  ktAlerts: [],
});

export interface Actions {
  // session
  restore(): Promise<void>;
  /** Whether a username is free (null: the server could not say); asked before keys are generated. */
  usernameAvailable(username: string): Promise<boolean | null>;
  register(username: string, password: string): Promise<void>;
  login(username: string, password: string): Promise<LoginResult['status']>;
  loginSecondFactor(p: { code?: string; recoveryCode?: string }): Promise<void>;
  resetIdentity(p: { username: string; password: string; code?: string; recoveryCode?: string }): Promise<void>;
  logout(everywhere?: boolean): Promise<void>;
  changePassword(current: string, next: string): Promise<void>;
  /** "Download my data": the server's export of the account (JSON text). */
  exportServerData(): Promise<string>;
  /** Deletes the account and this browser's store, then shows the sign-in page. */
  deleteAccount(p: { password: string; code?: string; recoveryCode?: string }): Promise<void>;
  /** "Download my history": this browser's history, plain or sealed under `passphrase`. */
  exportHistory(p: { passphrase?: string }): Promise<HistoryFile>;
  totpEnroll(password: string): Promise<{ otpauthUri: string; secret: string }>;
  totpConfirm(code: string): Promise<string[]>;
  totpDisable(code: string): Promise<void>;
  // local passphrase lock
  /** Opens the locked store with `passphrase` (rejects with code `bad_passphrase`), then signs in. */
  unlock(passphrase: string): Promise<void>;
  loadLocalLock(): Promise<void>;
  /** Sets / changes (`current` needed when one is set) / removes (null) this browser's passphrase. */
  setLocalPassphrase(next: string | null, current?: string): Promise<void>;
  /** Drops the keys from memory (terminates the engine worker) and shows the lock screen. */
  lockNow(): Promise<void>;
  /** Deletes this browser's locked store (a forgotten passphrase), then goes to sign-in. */
  eraseLocal(): Promise<void>;
  /** Leaves the lock screen for another account's sign-in (the locked store stays as it is). */
  otherAccount(): void;
  // conversations
  loadConversations(): Promise<void>;
  startDirect(username: string): Promise<string>;
  createGroup(title: string, usernames: string[]): Promise<string>;
  addMember(conversationId: string, username: string): Promise<void>;
  removeMember(conversationId: string, userId: string): Promise<void>;
  changeRole(
    conversationId: string,
    userId: string,
    action: 'promote' | 'demote' | 'transfer_ownership',
  ): Promise<void>;
  leave(conversationId: string): Promise<void>;
  renameGroup(conversationId: string, title: string): Promise<void>;
  refreshConversation(conversationId: string): Promise<void>;
  reconnect(): Promise<void>;
  // messages
  loadMessages(conversationId: string): Promise<void>;
  loadOlder(conversationId: string): Promise<number>;
  send(conversationId: string, body: string, opts?: { replyTo?: string }): Promise<void>;
  // ---- issue 17: actions on messages (store/message-actions.ts) ----
  /** Our reaction to a message ('' removes it). */
  react(conversationId: string, messageId: string, emoji: string): Promise<void>;
  /** Edits our own text message (within 24 h). */
  editMessage(conversationId: string, messageId: string, body: string): Promise<void>;
  /** Deletes a message for everyone (our own, or anyone's as a group's owner or admin). */
  deleteForEveryone(conversationId: string, messageId: string): Promise<void>;
  /** Loads older pages until the message is shown; false if this device does not have it. */
  revealMessage(conversationId: string, messageId: string): Promise<boolean>;
  /** Searches this device's decrypted messages (newest first); nothing leaves the device. */
  searchMessages(query: string): Promise<MessageView[]>;
  /** Follows every engine event (notifications); returns the unsubscribe function. */
  watchEvents(listener: (e: EngineEvent) => void): () => void;
  /** Small UI preferences in the sealed store (notifications). */
  getUiPref(key: string): Promise<unknown>;
  setUiPref(key: string, value: unknown): Promise<void>;
  /** Sets the disappearing-message timer (seconds, 0 = off). */
  setTimer(conversationId: string, seconds: number): Promise<void>;
  /** The person is (still) typing in the composer, or stopped; sends at most one "on" per few seconds. */
  typingChanged(conversationId: string, active: boolean): Promise<void>;
  /** Follows received typing signals; returns the unsubscribe function. */
  watchTyping(listener: (e: { conversationId: string; userId: string; on: boolean }) => void): () => void;
  /** The privacy setting: typing indicators sent and shown (default on). */
  typingIndicators(): Promise<boolean>;
  setTypingIndicators(on: boolean): Promise<void>;
  /** Sends a failed message again (it is replaced by the new one). */
  retrySend(conversationId: string, clientId: string): Promise<void>;
  /** Deletes a failed message from this device. */
  discardFailed(conversationId: string, clientId: string): Promise<void>;
  /** Starts following engine message events (previews, unread counts, open conversations). */
  watchMessages(): void;
  /** Marks the conversation as on screen (null: none) and clears its unread count. */
  setActive(conversationId: string | null): void;
  // attachments (store/attachments.ts)
  /** Prepares (images: metadata stripped, thumbnail), encrypts, uploads and then sends each file. */
  sendFiles(conversationId: string, files: readonly File[]): Promise<void>;
  retryUpload(conversationId: string, uploadId: string): void;
  cancelUpload(conversationId: string, uploadId: string): Promise<void>;
  /** The decrypted file, or null (damaged, unavailable, cancelled: `state.downloads` says which). */
  openAttachment(conversationId: string, clientId: string): Promise<Blob | null>;
  /** Shows an opened image in full in its bubble (state.opened), until OPENED_IMAGES_MAX newer ones push it out. */
  showImage(clientId: string, blob: Blob): void;
  cancelDownload(clientId: string): Promise<void>;
  // contacts
  loadPrefs(): Promise<void>;
  /** `refresh`: fetch the user's current device list first (detects identity key changes). */
  loadContact(userId: string, opts?: { refresh?: boolean }): Promise<ContactState>;
  acceptKeyChange(userId: string): Promise<void>;
  setVerified(userId: string, verified: boolean): Promise<void>;
  /** The number under the trusted key, or (`pending`) under the new key of a change awaiting acceptance. */
  safetyNumber(
    userId: string,
    which?: 'trusted' | 'pending',
  ): Promise<{ digits: string; display: string; scannable: Uint8Array } | null>;
  /** Compared and matching: accepts a pending key change and marks the new key as verified, in one step. */
  verifyKeyChange(userId: string): Promise<void>;
  rememberName(userId: string, username: string): void;
  nameOf(userId: string): string;
  // devices
  loadDevices(): Promise<void>;
  revokeDevice(deviceId: string): Promise<void>;
  renameDevice(deviceId: string, name: string): Promise<void>;
  // linking (issue 14)
  /** This browser: a link code to show; progress lands in `state.link`. */
  linkStart(): Promise<{ code: string; expiresAt: number }>;
  linkRetry(): Promise<void>;
  linkCancel(): Promise<void>;
  /** Erases the keys and history this browser holds for `username` (confirmed by the person first). */
  linkEraseLocal(username: string): Promise<void>;
  /** Links the device whose code this is; progress in `state.linkOut`. */
  linkDevice(code: string, req: { deviceName: string; history: boolean }): Promise<{ messages: number }>;
  linkDeviceCancel(): Promise<void>;
  /** This browser was just linked as `me`: signed in (history may still be arriving). */
  linkedAs(me: Me): Promise<void>;
  /** The conversation on screen was read up to its newest message (our other devices follow). */
  markRead(conversationId: string): void;
  // people (store/people.ts)
  /** Our private settings (`sync`: pull them from the server first) and every profile this device holds. */
  loadPeople(sync?: boolean): Promise<void>;
  loadProfile(userId: string, refresh?: boolean): Promise<void>;
  /** `avatar`: a picked image (resized and re-encoded here), null to remove it, 'keep' to leave it. */
  setProfile(name: string, avatar: File | null | 'keep'): Promise<void>;
  acceptRequest(conversationId: string): Promise<void>;
  deleteRequest(conversationId: string): Promise<void>;
  block(target: { userId: string } | { conversationId: string }): Promise<void>;
  unblock(target: { userId: string } | { conversationId: string }): Promise<void>;
  mute(target: { userId: string } | { conversationId: string }, until?: number): Promise<void>;
  unmute(target: { userId: string } | { conversationId: string }): Promise<void>;
  /** Muted now: the conversation, `fromUserId` (a message's sender) or the other person of a direct chat. */
  isMuted(conversationId: string, fromUserId?: string): boolean;
  /** Who added us to the conversation (for a request: who is asking). */
  requesterOf(conversationId: string): Promise<string | null>;
  /** The display name from the person's profile ('' if none or not shared with us). */
  profileName(userId: string): string;
  // key transparency
  loadKtAlerts(): Promise<void>;
  dismissKtAlert(id: string): Promise<void>;
  // ui
  setTheme(t: Theme): void;
  toast(text: string, kind?: Toast['kind']): void;
  dismissToast(id: number): void;
}

export type SetState = SetStoreFunction<State>;
