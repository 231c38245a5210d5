/**
 * Attachments in the app store: files picked, dropped or pasted into a conversation become upload cards
 * (`state.uploads[conversationId]`) with progress and Cancel; the engine encrypts and uploads, and sends the
 * message only once the upload completed (its `message_added` event then shows the real bubble and the card
 * goes). A failed upload keeps its card with Retry (the engine re-sends the ciphertext it prepared — the
 * file is not picked again) and Remove. An upload done whose message then failed is no card: the engine
 * resolves with the failed message, whose own Retry sends it (one file, one card, sent once: review R5). Opening an attachment downloads and decrypts it in the engine
 * (`state.downloads[clientId]`: progress, Cancel, or `damaged`); the UI gets the whole file or nothing.
 *
 * Does NOT: hold keys or do cryptography (the engine worker does), or keep decrypted files (the components
 * that show them own their `blob:` URLs and revoke them).
 * @module
 */
import type { EngineEvent } from '../../engine/context.js';
import { formatSize, type PreparedFile, prepareFile } from '../media.js';
import type { Agent } from './agent.js';
import type { Actions, SetState, State } from './state.js';

export interface UploadCard {
  readonly id: string;
  readonly fileName: string;
  readonly size: number;
  readonly contentType: string;
  /** JPEG thumbnail bytes of an image (shown from a blob: URL). */
  readonly thumbnail: Uint8Array | null;
  readonly width: number | null;
  readonly height: number | null;
  readonly phase: 'preparing' | 'encrypt' | 'upload';
  /** 0..1 of the current phase. */
  readonly fraction: number;
  readonly state: 'running' | 'failed';
  readonly error?: string;
}

export interface DownloadState {
  readonly transferId: string;
  readonly fraction: number;
  readonly state: 'running' | 'damaged' | 'failed';
  readonly error?: string;
}

const ERRORS: Record<string, string> = {
  attachment_too_large: 'This file is too large to send.',
  attachment_quota_exceeded: 'You have sent too much today. Try again later.',
  upload_failed: 'Upload failed.',
  prepare_failed: 'This file could not be prepared for sending (its metadata could not be removed). Nothing was sent.',
  not_member: 'You are not a member of this conversation.',
  identity_changed: 'A safety number changed. Review it to send.',
  attachment_unavailable: 'This attachment is no longer available.',
  download_failed: 'Download failed.',
};
export const attachmentErrorText = (code: string | undefined) =>
  ERRORS[code ?? ''] ?? 'Something went wrong. Try again.';

/** Images kept open at once (each a decrypted file held in memory behind its blob: URL). */
export const OPENED_IMAGES_MAX = 20;

export function createAttachments(agent: () => Agent, actions: Actions, state: State, setState: SetState): void {
  let wired = false;
  let counter = 0;
  /** The prepared drafts of cards (kept for Retry; never in the Solid store: Blobs stay plain). */
  const drafts = new Map<string, { conversationId: string; draft: PreparedFile }>();
  /** The picked files of cards whose media step has not succeeded yet (Retry prepares them again). */
  const originals = new Map<string, File>();
  /** transferId → the card or download it drives. */
  const owners = new Map<string, { conversationId: string; kind: 'upload' } | { clientId: string; kind: 'download' }>();

  const patchUpload = (c: string, id: string, patch: Partial<UploadCard>) =>
    setState('uploads', c, (l) => (l ?? []).map((u) => (u.id === id ? { ...u, ...patch } : u)));
  const dropUpload = (c: string, id: string) => {
    setState('uploads', c, (l) => (l ?? []).filter((u) => u.id !== id));
    drafts.delete(id);
    owners.delete(id);
    originals.delete(id);
  };

  const wire = () => {
    if (wired) return;
    wired = true;
    agent().onEvent((e: EngineEvent) => {
      if (e.type !== 'transfer') return;
      const o = owners.get(e.id);
      if (!o) return;
      const fraction = e.total > 0 ? Math.min(1, e.loaded / e.total) : 1;
      if (o.kind === 'upload') {
        // A parts upload encrypts and uploads at once: once bytes are going up, the card shows the upload.
        const now = state.uploads[o.conversationId]?.find((u) => u.id === e.id);
        if (e.phase === 'encrypt' && now?.phase === 'upload') return;
        patchUpload(o.conversationId, e.id, { phase: e.phase === 'encrypt' ? 'encrypt' : 'upload', fraction });
      } else if (state.downloads[o.clientId]?.transferId === e.id) setState('downloads', o.clientId, { fraction });
    });
  };

  /**
   * The media step, then the upload. A media step that fails fails the card: the original file is never sent
   * instead (an image would go out with the EXIF, GPS and camera data the step exists to remove).
   */
  const prepare = async (c: string, id: string, f: File) => {
    patchUpload(c, id, { state: 'running', error: undefined, phase: 'preparing', fraction: 0 });
    let draft: PreparedFile;
    try {
      draft = await prepareFile(f);
    } catch {
      if (owners.has(id)) patchUpload(c, id, { state: 'failed', error: 'prepare_failed' });
      return;
    }
    // Cancelled while it was being prepared (its card is gone): nothing of it is sent.
    if (!owners.has(id)) return;
    drafts.set(id, { conversationId: c, draft });
    patchUpload(c, id, {
      fileName: draft.fileName,
      size: draft.file.size,
      contentType: draft.contentType,
      thumbnail: draft.thumbnail,
      width: draft.width,
      height: draft.height,
    });
    void run(c, id);
  };

  const run = async (c: string, id: string) => {
    const d = drafts.get(id);
    if (!d) return;
    patchUpload(c, id, { state: 'running', error: undefined, phase: 'encrypt', fraction: 0 });
    try {
      await agent().engine.sendAttachment(c, { ...d.draft }, { transferId: id });
      dropUpload(c, id);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'cancelled') dropUpload(c, id);
      else patchUpload(c, id, { state: 'failed', error: code ?? 'upload_failed' });
    }
  };

  Object.assign(actions, {
    async sendFiles(c: string, files: readonly File[]) {
      wire();
      for (const f of files) {
        const id = `up-${Date.now().toString(36)}-${++counter}`;
        owners.set(id, { conversationId: c, kind: 'upload' });
        const card: UploadCard = {
          id,
          fileName: f.name || 'file',
          size: f.size,
          contentType: f.type,
          thumbnail: null,
          width: null,
          height: null,
          phase: 'preparing',
          fraction: 0,
          state: 'running',
        };
        setState('uploads', c, (l) => [...(l ?? []), card]);
        originals.set(id, f);
        await prepare(c, id, f);
      }
    },
    retryUpload(c: string, id: string) {
      const f = originals.get(id);
      // Not prepared yet (the media step failed): prepared again, then sent.
      if (!drafts.has(id) && f) void prepare(c, id, f);
      else void run(c, id);
    },
    async cancelUpload(c: string, id: string) {
      // The card goes first: a file still being prepared is then never handed to the engine.
      dropUpload(c, id);
      await agent().engine.cancelTransfer(id);
    },
    async openAttachment(c: string, clientId: string): Promise<Blob | null> {
      wire();
      const transferId = `dl-${Date.now().toString(36)}-${++counter}`;
      owners.set(transferId, { clientId, kind: 'download' });
      setState('downloads', clientId, { transferId, fraction: 0, state: 'running' });
      try {
        const blob = await agent().engine.openAttachment(c, clientId, transferId);
        setState('downloads', clientId, undefined!);
        return blob;
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === 'cancelled') setState('downloads', clientId, undefined!);
        else if (code === 'attachment_damaged')
          setState('downloads', clientId, { transferId, fraction: 0, state: 'damaged' });
        else
          setState('downloads', clientId, {
            transferId,
            fraction: 0,
            state: 'failed',
            error: code ?? 'download_failed',
          });
        return null;
      } finally {
        owners.delete(transferId);
      }
    },
    showImage(clientId: string, blob: Blob) {
      // A store set merges objects: a key leaves `opened` only when set to undefined.
      const others = Object.keys(state.opened).filter((id) => id !== clientId);
      const closed = [clientId, ...others.slice(0, Math.max(0, others.length - (OPENED_IMAGES_MAX - 1)))];
      const patch: Record<string, string | undefined> = {};
      for (const id of closed) {
        const u = state.opened[id];
        if (u) URL.revokeObjectURL(u);
        patch[id] = undefined;
      }
      patch[clientId] = URL.createObjectURL(blob);
      setState('opened', patch as Record<string, string>);
    },
    async cancelDownload(clientId: string) {
      const d = state.downloads[clientId];
      if (d) await agent().engine.cancelTransfer(d.transferId);
    },
  } satisfies Partial<Actions>);
}

export { formatSize };
