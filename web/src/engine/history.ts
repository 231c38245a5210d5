/**
 * Device-only export of the local history (issue 18; README §Your data; docs/PROTOCOL.md §"History export"):
 * the decrypted conversations this device holds, read from its (sealed) store, as one JSON document — plain,
 * or sealed under a passphrase in the history-export container (protocol/history-export.ts).
 *
 * Reads only the store: no request, frame or upload is made while exporting, so the server learns nothing
 * of it (not even that it happened). What is in it: per conversation the verified membership (title,
 * members and roles, timer, whether we were removed) and every message this device still holds, oldest
 * first — sender, times, status, text, replies, reactions, edits, deletions, and an attachment's name, type
 * and size. What is NOT: keys of any kind (identity, sessions, sender keys, attachment keys and digests,
 * so an export cannot be used to read or fetch anything more), attachment files and thumbnails, messages
 * that have expired or were never decrypted beyond their error code, drafts and preferences.
 *
 * Export-only: there is no import into a store (a restored history would need its sessions and sender
 * keys too, which an export deliberately omits); `openHistoryExport` reads a sealed export back to the
 * document, e.g. to view it elsewhere.
 * @module
 */
import { sealHistoryExport } from './_protocol.js';
import type { MessageView } from './context.js';
import type { Groups } from './groups.js';
import type { Messages } from './messages.js';
import { readJson, type Store } from './storage.js';

/** `format` of the document (plain export, or the plaintext of a sealed one). */
export const HISTORY_FORMAT = 'e2e-chat history';
export const HISTORY_VERSION = 1;

export interface HistoryMessage {
  readonly seq: number | null;
  readonly id: string;
  readonly from: { readonly userId: string; readonly deviceId: string };
  readonly outgoing: boolean;
  /** Milliseconds since 1970 (the sender's clock) and the server's time when known. */
  readonly sentAt: number;
  readonly serverTime?: number;
  readonly status: string;
  /** The text (or an attachment's caption); null for a deleted, undecryptable or unsupported message. */
  readonly body: string | null;
  readonly error?: string;
  readonly attachment?: { readonly fileName: string; readonly contentType: string; readonly size: number };
  readonly quote?: { readonly id: string; readonly author: string; readonly text: string | null };
  readonly reactions?: readonly { readonly userId: string; readonly emoji: string }[];
  readonly edited?: { readonly at: number };
  readonly deleted?: { readonly by: string; readonly at: number };
  readonly expiresAt?: number;
  readonly unsupported?: string;
}

export interface HistoryConversation {
  readonly id: string;
  readonly kind: string;
  readonly title: string;
  readonly members: readonly { readonly userId: string; readonly role: string }[];
  readonly removed: boolean;
  readonly timer: number;
  readonly messages: readonly HistoryMessage[];
}

export interface HistoryDocument {
  readonly format: typeof HISTORY_FORMAT;
  readonly version: typeof HISTORY_VERSION;
  readonly exportedAt: string;
  readonly account: { readonly userId: string; readonly deviceId: string; readonly username: string | null };
  /** user id → username, as this device learned them (for reading `from` and `members`). */
  readonly names: Readonly<Record<string, string>>;
  readonly conversations: readonly HistoryConversation[];
}

export interface HistoryExport {
  /** UTF-8 JSON (plain) or the sealed container. */
  readonly bytes: Uint8Array;
  readonly encrypted: boolean;
  readonly conversations: number;
  readonly messages: number;
}

const messageOf = (m: MessageView): HistoryMessage => ({
  seq: m.seq,
  id: m.clientId,
  from: { userId: m.from.userId, deviceId: m.from.deviceId },
  outgoing: m.outgoing,
  sentAt: m.sentAt,
  ...(m.ts !== undefined ? { serverTime: m.ts } : {}),
  status: m.status,
  body: m.deleted ? null : m.body,
  ...(m.error ? { error: m.error } : {}),
  ...(m.attachment
    ? {
        attachment: {
          fileName: m.attachment.fileName,
          contentType: m.attachment.contentType,
          size: m.attachment.size,
        },
      }
    : {}),
  ...(m.quote ? { quote: { id: m.quote.id, author: m.quote.author, text: m.quote.text } } : {}),
  ...(m.reactions?.length ? { reactions: m.reactions.map((r) => ({ userId: r.userId, emoji: r.emoji })) } : {}),
  ...(m.edited ? { edited: { at: m.edited.at } } : {}),
  ...(m.deleted ? { deleted: { by: m.deleted.by, at: m.deleted.at } } : {}),
  ...(m.expiresAt !== undefined ? { expiresAt: m.expiresAt } : {}),
  ...(m.unsupported ? { unsupported: m.unsupported } : {}),
});

/** Builds the document from the store alone (the caller's `listed` says which conversations we are still in). */
export async function buildHistory(deps: {
  store: Store;
  groups: Groups;
  messages: Messages;
  own: { userId: string; deviceId: string };
  now: number;
}): Promise<HistoryDocument> {
  const { store, groups, messages, own } = deps;
  const conversations: HistoryConversation[] = [];
  for (const id of await groups.knownConversations()) {
    const state = await groups.membership(id); // the locally held, verified log: no request
    conversations.push({
      id,
      kind: await groups.kind(id),
      title: state.title,
      members: [...state.members].map(([userId, role]) => ({ userId, role })),
      removed: !state.members.has(own.userId),
      timer: state.timer ?? 0,
      messages: (await messages.all(id)).map(messageOf),
    });
  }
  const names = (await readJson<Record<string, string>>(store, 'ui/names')) ?? {};
  const self = await readJson<{ username: string }>(store, 'kt/self');
  return {
    format: HISTORY_FORMAT,
    version: HISTORY_VERSION,
    exportedAt: new Date(deps.now).toISOString(),
    account: { userId: own.userId, deviceId: own.deviceId, username: self?.username ?? null },
    names: typeof names === 'object' && names ? { ...names } : {},
    conversations,
  };
}

/** The document as a file: plain UTF-8 JSON, or sealed under `passphrase` (argon2id + AES-256-GCM). */
export async function historyFile(
  doc: HistoryDocument,
  opts: {
    passphrase?: string;
    rng: (n: number) => Uint8Array;
    kdf?: { m: number; t: number; p: number };
    onProgress?: (fraction: number) => void;
  },
): Promise<HistoryExport> {
  const json = new TextEncoder().encode(`${JSON.stringify(doc, null, 2)}\n`);
  const counts = {
    conversations: doc.conversations.length,
    messages: doc.conversations.reduce((n, c) => n + c.messages.length, 0),
  };
  if (!opts.passphrase) return { bytes: json, encrypted: false, ...counts };
  const bytes = await sealHistoryExport(json, opts.passphrase, opts.rng, {
    ...(opts.kdf ? { kdf: opts.kdf } : {}),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  });
  return { bytes, encrypted: true, ...counts };
}
