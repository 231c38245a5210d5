/**
 * What the app does to a picked file before the engine encrypts it (docs/PROTOCOL.md §"Attachments"):
 *
 * - **Images** the browser can decode (JPEG, PNG, WebP, AVIF, BMP) are decoded by the browser itself
 *   (`createImageBitmap` with `imageOrientation: 'from-image'`, so EXIF orientation is applied), drawn
 *   upright onto a canvas (longest side ≤ MAX_IMAGE_SIDE) and encoded again — PNG stays PNG (screenshots
 *   stay sharp), everything else becomes JPEG. The new file holds pixels only: every EXIF, GPS, XMP, IPTC
 *   and ICC block of the original is gone, because nothing of the original file but its pixels is kept.
 *   A thumbnail (JPEG, longest side ≤ THUMB_SIDE, a few KB) and the dimensions go into the message.
 * - **Anything else** (PDFs, archives, GIFs — whose animation a re-encode would lose — and images the browser
 *   cannot decode, such as HEIC in Chromium) is sent as it is, as a file card. Its metadata is the sender's
 *   to strip; the UI says so nowhere because it cannot know what a file holds.
 *
 * No EXIF parsing here: the browser's decoder reads the orientation, and re-encoding drops the rest.
 *
 * Does NOT: encrypt or upload (the engine does), or run outside a browser (it needs canvas and bitmaps).
 * @module
 */
import { constants } from '../protocol/index.js';

/** Longest side of a sent image, in pixels (larger photos are scaled down, as Signal's "standard" quality). */
export const MAX_IMAGE_SIDE = 4096;
/** Longest side of a thumbnail, in pixels. */
export const THUMB_SIDE = 160;

/** Types re-encoded as images; everything else is a file. */
const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/webp', 'image/avif', 'image/bmp']);

export interface PreparedFile {
  readonly file: Blob;
  readonly fileName: string;
  readonly contentType: string;
  readonly width: number | null;
  readonly height: number | null;
  readonly thumbnail: Uint8Array | null;
}

const scaleToFit = (w: number, h: number, max: number) => {
  const s = Math.min(1, max / Math.max(w, h));
  return { w: Math.max(1, Math.round(w * s)), h: Math.max(1, Math.round(h * s)) };
};

async function encode(bitmap: ImageBitmap, w: number, h: number, type: string, quality: number): Promise<Blob> {
  const canvas = new OffscreenCanvas(w, h);
  const g = canvas.getContext('2d');
  if (!g) throw new Error('no 2d canvas');
  if (type === 'image/jpeg') {
    // JPEG has no alpha: transparent pixels become white, not black.
    g.fillStyle = '#fff';
    g.fillRect(0, 0, w, h);
  }
  g.imageSmoothingQuality = 'high';
  g.drawImage(bitmap, 0, 0, w, h);
  return canvas.convertToBlob({ type, quality });
}

/** A JPEG thumbnail that fits MAX_THUMBNAIL_LEN (lower quality, then smaller, until it does). */
async function thumbnailOf(bitmap: ImageBitmap): Promise<Uint8Array | null> {
  for (const [side, q] of [
    [THUMB_SIDE, 0.7],
    [THUMB_SIDE, 0.5],
    [96, 0.5],
    [64, 0.4],
  ] as const) {
    const { w, h } = scaleToFit(bitmap.width, bitmap.height, side);
    const b = await encode(bitmap, w, h, 'image/jpeg', q);
    if (b.size <= constants.MAX_THUMBNAIL_LEN) return new Uint8Array(await b.arrayBuffer());
  }
  return null;
}

const renamed = (name: string, type: string) => {
  const ext = type === 'image/png' ? '.png' : '.jpg';
  const dot = name.lastIndexOf('.');
  return `${dot > 0 ? name.slice(0, dot) : name || 'image'}${ext}`;
};

/** Prepares a picked, dropped or pasted file for sending (see the module header). */
export async function prepareFile(file: File): Promise<PreparedFile> {
  const type = (file.type || '').toLowerCase();
  const asFile: PreparedFile = {
    file,
    fileName: file.name || 'file',
    contentType: type || 'application/octet-stream',
    width: null,
    height: null,
    thumbnail: null,
  };
  if (!IMAGE_TYPES.has(type) || typeof createImageBitmap !== 'function' || typeof OffscreenCanvas !== 'function')
    return asFile;
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
  } catch {
    return asFile; // not decodable here: sent as a file
  }
  try {
    const outType = type === 'image/png' ? 'image/png' : 'image/jpeg';
    const { w, h } = scaleToFit(bitmap.width, bitmap.height, MAX_IMAGE_SIDE);
    const clean = await encode(bitmap, w, h, outType, 0.9);
    return {
      file: clean,
      fileName: renamed(file.name, outType),
      contentType: outType,
      width: w,
      height: h,
      thumbnail: await thumbnailOf(bitmap),
    };
  } finally {
    bitmap.close();
  }
}

/** True for the content types the app shows inline as images (always from a decrypted `blob:` URL). */
export const isImage = (contentType: string, width: number | null) =>
  width !== null && (contentType === 'image/jpeg' || contentType === 'image/png');

export function formatSize(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10 * 1024 ? 1 : 0)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}

// ---- avatars (issue 17: profiles) ----------------------------------------------------------------------

/** Side of an avatar, in pixels (square, centre-cropped). */
export const AVATAR_SIDE = 256;

/**
 * A picked image as a profile avatar: decoded by the browser, centre-cropped to a square, drawn at
 * AVATAR_SIDE (smaller if needed) and encoded as JPEG until it fits MAX_AVATAR_LEN. Pixels only: every
 * metadata block of the original is gone. `invalid_image` if the browser cannot decode it.
 */
export async function prepareAvatar(file: Blob): Promise<{ type: 'jpeg'; bytes: Uint8Array }> {
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
  } catch {
    throw Object.assign(new Error('This image cannot be read. Try a JPEG or PNG.'), { code: 'invalid_image' });
  }
  try {
    const side = Math.min(bitmap.width, bitmap.height);
    const sx = (bitmap.width - side) / 2;
    const sy = (bitmap.height - side) / 2;
    for (const [px, q] of [
      [AVATAR_SIDE, 0.85],
      [AVATAR_SIDE, 0.7],
      [192, 0.6],
      [128, 0.6],
      [96, 0.5],
    ] as const) {
      const out = Math.min(px, side);
      const canvas = new OffscreenCanvas(out, out);
      const g = canvas.getContext('2d');
      if (!g) throw new Error('no 2d canvas');
      g.fillStyle = '#fff';
      g.fillRect(0, 0, out, out);
      g.imageSmoothingQuality = 'high';
      g.drawImage(bitmap, sx, sy, side, side, 0, 0, out, out);
      const blob = await canvas.convertToBlob({ type: 'image/jpeg', quality: q });
      if (blob.size <= constants.MAX_AVATAR_LEN)
        return { type: 'jpeg', bytes: new Uint8Array(await blob.arrayBuffer()) };
    }
    throw Object.assign(new Error('This image is too detailed to use as a picture.'), { code: 'invalid_image' });
  } finally {
    bitmap.close();
  }
}
