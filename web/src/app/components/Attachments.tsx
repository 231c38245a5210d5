/**
 * Attachments in a conversation: an image bubble (the thumbnail from the message at once, at the right
 * aspect ratio; the full image downloaded, decrypted and shown on "view"), a file card (icon, name, size,
 * Download), "This attachment is damaged" when a download fails its checks (nothing partial is shown or
 * saved), and the sender's upload cards (progress, Cancel, Retry after a failure, Remove).
 *
 * Every decrypted file reaches the page as a `blob:` URL (the CSP's img-src allows exactly `blob:`), owned
 * by the component that shows it and revoked when it goes. Files are saved with an `<a download>` click;
 * they are never rendered inline (the engine gives non-image files the type application/octet-stream).
 */
import { createMemo, createSignal, onCleanup, Show } from 'solid-js';
import type { MessageView } from '../../engine/context.js';
import { formatSize, isImage } from '../media.js';
import { attachmentErrorText, type UploadCard } from '../store/attachments.js';
import { useStore } from '../store/index.js';
import { focusRing } from './ui.js';

/** A blob: URL for `bytes` (revoked with the owner). */
function useBlobUrl(bytes: () => Uint8Array | null | undefined, type: string): () => string | null {
  const url = createMemo<string | null>((prev) => {
    if (prev) URL.revokeObjectURL(prev);
    const b = bytes();
    return b ? URL.createObjectURL(new Blob([b as BlobPart], { type })) : null;
  }, null);
  onCleanup(() => {
    const u = url();
    if (u) URL.revokeObjectURL(u);
  });
  return url;
}

/** Display size for an image of w×h: at most 280×320 CSS px, never upscaled. */
function displaySize(w: number | null, h: number | null): { width: number; height: number } {
  const W = w ?? 240;
  const H = h ?? 180;
  const s = Math.min(1, 280 / W, 320 / H);
  return { width: Math.max(24, Math.round(W * s)), height: Math.max(24, Math.round(H * s)) };
}

/** A document icon with the file's kind as a short label (SVG: no emoji font needed). */
function FileIcon(props: { contentType: string }) {
  const label = () => {
    const t = props.contentType;
    if (t === 'application/pdf') return 'PDF';
    if (t.startsWith('image/')) return 'IMG';
    if (t.startsWith('audio/')) return 'AUD';
    if (t.startsWith('video/')) return 'VID';
    if (/zip|compressed|tar|7z|rar/.test(t)) return 'ZIP';
    return 'FILE';
  };
  return (
    <svg viewBox="0 0 32 40" class="h-10 w-8 shrink-0" aria-hidden="true">
      <path d="M2 2h20l8 8v28H2z" fill="currentColor" opacity="0.18" />
      <path d="M2 2h20l8 8v28H2z M22 2v8h8" fill="none" stroke="currentColor" stroke-width="2" />
      <text x="16" y="30" text-anchor="middle" font-size="8" font-weight="700" fill="currentColor">
        {label()}
      </text>
    </svg>
  );
}

/** A paperclip (the attach button). */
export function PaperclipIcon() {
  return (
    <svg viewBox="0 0 24 24" class="h-5 w-5" fill="none" stroke="currentColor" stroke-width="2" aria-hidden="true">
      <path
        stroke-linecap="round"
        stroke-linejoin="round"
        d="M21 11.5l-8.6 8.6a5 5 0 01-7.1-7.1l8.6-8.6a3.3 3.3 0 014.7 4.7l-8.6 8.6a1.7 1.7 0 01-2.4-2.4l7.9-7.9"
      />
    </svg>
  );
}

function Progress(props: { fraction: number; label: string; onCancel?: () => void; dark?: boolean }) {
  return (
    <div class="mt-1.5 flex items-center gap-2" data-testid="attachment-progress">
      <div
        class={`h-1.5 flex-1 overflow-hidden rounded-full ${props.dark ? 'bg-white/30' : 'bg-slate-200 dark:bg-slate-700'}`}
        role="progressbar"
        aria-label={props.label}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={Math.round(props.fraction * 100)}
      >
        <div
          class={`h-full rounded-full transition-[width] ${props.dark ? 'bg-white' : 'bg-blue-600 dark:bg-blue-400'}`}
          style={{ width: `${Math.round(props.fraction * 100)}%` }}
        />
      </div>
      <Show when={props.onCancel}>
        <button
          type="button"
          class={`rounded px-1.5 text-xs font-medium underline-offset-2 hover:underline ${focusRing}`}
          onClick={() => props.onCancel?.()}
        >
          Cancel
        </button>
      </Show>
    </div>
  );
}

/** Which file failed its checks, and that nothing of it was shown or saved. */
function Damaged(props: { fileName: string; contentType: string }) {
  return (
    <div class="flex items-center gap-3 py-1" data-testid="attachment-damaged" role="alert">
      <FileIcon contentType={props.contentType} />
      <div class="min-w-0 flex-1">
        <p class="truncate text-sm font-medium" data-testid="attachment-name">
          {props.fileName}
        </p>
        <p class="text-sm italic">This attachment is damaged and cannot be opened.</p>
      </div>
    </div>
  );
}

/** The attachment part of a message bubble. */
export function AttachmentContent(props: { m: MessageView }) {
  const { state, actions } = useStore();
  const a = () => props.m.attachment!;
  const download = () => state.downloads[props.m.clientId];
  const image = () => isImage(a().contentType, a().width);
  const thumbUrl = useBlobUrl(() => (image() ? a().thumbnail : null), 'image/jpeg');
  // In the store, not a signal of this component: the timeline re-creates bubbles when it is rebuilt.
  const full = () => state.opened[props.m.clientId] ?? null;
  const size = () => displaySize(a().width, a().height);

  const open = async () => {
    if (download()?.state === 'running') return;
    const blob = await actions.openAttachment(props.m.conversationId, props.m.clientId);
    if (!blob) return;
    if (image()) {
      actions.showImage(props.m.clientId, blob);
      return;
    }
    const url = URL.createObjectURL(blob);
    const link = document.createElement('a');
    link.href = url;
    link.download = a().fileName;
    link.rel = 'noopener';
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  };

  return (
    <div class="mb-1" data-testid="attachment" data-attachment-id={a().attachmentId}>
      <Show
        when={download()?.state !== 'damaged'}
        fallback={<Damaged fileName={a().fileName} contentType={a().contentType} />}
      >
        <Show
          when={image()}
          fallback={
            <div class="flex items-center gap-3 py-1" data-testid="attachment-file">
              <FileIcon contentType={a().contentType} />
              <div class="min-w-0 flex-1">
                <p class="truncate text-sm font-medium" data-testid="attachment-name">
                  {a().fileName}
                </p>
                <p class="text-xs">{formatSize(a().size)}</p>
              </div>
              <button
                type="button"
                class={`rounded-lg px-2.5 py-1 text-sm font-medium ring-1 ring-current/40 hover:bg-black/5 ${focusRing}`}
                disabled={download()?.state === 'running'}
                onClick={() => void open()}
                data-testid="attachment-download"
                aria-label={`Download ${a().fileName}`}
              >
                Download
              </button>
            </div>
          }
        >
          <Show
            when={full()}
            fallback={
              <button
                type="button"
                class={`relative block overflow-hidden rounded-xl bg-slate-200 dark:bg-slate-700 ${focusRing}`}
                style={{ width: `${size().width}px`, height: `${size().height}px` }}
                onClick={() => void open()}
                data-testid="attachment-view"
              >
                <span class="sr-only">{`Image ${a().fileName}: `}</span>
                <Show when={thumbUrl()}>
                  <img
                    src={thumbUrl()!}
                    alt=""
                    class="h-full w-full object-cover blur-[1px]"
                    data-testid="attachment-thumbnail"
                  />
                </Show>
                <span class="absolute inset-x-0 bottom-0 bg-black/40 py-1 text-center text-xs text-white">
                  {download()?.state === 'running' ? 'Loading…' : `View · ${formatSize(a().size)}`}
                </span>
              </button>
            }
          >
            <a href={full()!} download={a().fileName} class={`block ${focusRing}`} aria-label={`Save ${a().fileName}`}>
              <img
                src={full()!}
                alt={a().fileName}
                class="rounded-xl"
                style={{ width: `${size().width}px`, height: `${size().height}px` }}
                data-testid="attachment-image"
              />
            </a>
          </Show>
        </Show>
        <Show when={download()?.state === 'running'}>
          <Progress
            fraction={download()!.fraction}
            label={`Downloading ${a().fileName}`}
            dark={props.m.outgoing}
            onCancel={() => void actions.cancelDownload(props.m.clientId)}
          />
        </Show>
        <Show when={download()?.state === 'failed'}>
          <p class="text-xs" role="alert">
            {attachmentErrorText(download()!.error)}
          </p>
        </Show>
      </Show>
    </div>
  );
}

/** A file on its way out: progress and Cancel, or Retry / Remove after a failure. */
export function UploadCardView(props: { conversationId: string; u: UploadCard }) {
  const { actions } = useStore();
  const thumbUrl = useBlobUrl(() => props.u.thumbnail, 'image/jpeg');
  const label = () =>
    props.u.state === 'failed'
      ? attachmentErrorText(props.u.error)
      : props.u.phase === 'preparing'
        ? 'Preparing…'
        : props.u.phase === 'encrypt'
          ? 'Encrypting…'
          : `Uploading… ${Math.round(props.u.fraction * 100)}%`;
  return (
    <li class="flex justify-end" data-testid="upload-card" data-state={props.u.state}>
      <div
        class={`max-w-[80%] rounded-2xl rounded-br-md px-3.5 py-2 text-white shadow-sm ${
          props.u.state === 'failed' ? 'bg-red-700' : 'bg-blue-700'
        }`}
      >
        <div class="flex items-center gap-3">
          <Show when={thumbUrl()} fallback={<FileIcon contentType={props.u.contentType} />}>
            <img src={thumbUrl()!} alt="" class="h-12 w-12 rounded-lg object-cover" />
          </Show>
          <div class="min-w-0 flex-1">
            <p class="truncate text-sm font-medium">{props.u.fileName}</p>
            <p class="text-xs text-white/90" aria-live="polite" data-testid="upload-status">
              {formatSize(props.u.size)} · {label()}
            </p>
          </div>
        </div>
        <Show
          when={props.u.state === 'running'}
          fallback={
            <div class="mt-1.5 flex justify-end gap-2">
              <button
                type="button"
                class={`rounded px-2 py-0.5 text-sm font-semibold ring-1 ring-white/60 hover:bg-white/10 ${focusRing}`}
                onClick={() => actions.retryUpload(props.conversationId, props.u.id)}
                data-testid="upload-retry"
              >
                Retry
              </button>
              <button
                type="button"
                class={`rounded px-2 py-0.5 text-sm hover:bg-white/10 ${focusRing}`}
                onClick={() => void actions.cancelUpload(props.conversationId, props.u.id)}
              >
                Remove
              </button>
            </div>
          }
        >
          <Progress
            fraction={props.u.phase === 'upload' ? props.u.fraction : 0}
            label={`Uploading ${props.u.fileName}`}
            dark
            onCancel={() => void actions.cancelUpload(props.conversationId, props.u.id)}
          />
        </Show>
      </div>
    </li>
  );
}
