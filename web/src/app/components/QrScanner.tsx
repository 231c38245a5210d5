/**
 * Reads a QR code from the camera: the browser's `BarcodeDetector` where it exists (Chrome on Android,
 * macOS, ChromeOS), otherwise jsQR — loaded only when a camera is actually used, so it costs the app's
 * bundle nothing. Frames are read on a small canvas a few times a second; the camera stops as soon as a
 * code is found or the component goes away. Nothing leaves the browser.
 *
 * Does NOT: interpret the code (the caller does), or keep any frame.
 */
import { createSignal, onCleanup, onMount, Show } from 'solid-js';

type Detector = (source: HTMLVideoElement | HTMLCanvasElement, ctx: CanvasRenderingContext2D) => Promise<string | null>;

interface BarcodeDetectorLike {
  detect(source: CanvasImageSource): Promise<{ rawValue: string }[]>;
}
type BarcodeDetectorCtor = (new (o: {
  formats: string[];
}) => BarcodeDetectorLike) & {
  getSupportedFormats?: () => Promise<string[]>;
};

/** The best QR reader this browser has (native, or jsQR lazily). */
export async function qrDetector(): Promise<Detector> {
  const BD = (globalThis as { BarcodeDetector?: BarcodeDetectorCtor }).BarcodeDetector;
  const formats: string[] = (await BD?.getSupportedFormats?.().catch(() => [] as string[])) ?? [];
  if (BD && formats.includes('qr_code')) {
    const d = new BD({ formats: ['qr_code'] });
    return async (source) => (await d.detect(source)).find((r) => r.rawValue)?.rawValue ?? null;
  }
  const { default: jsQR } = await import('jsqr');
  return async (source, ctx) => {
    const w = source instanceof HTMLVideoElement ? source.videoWidth : source.width;
    const h = source instanceof HTMLVideoElement ? source.videoHeight : source.height;
    if (!w || !h) return null;
    ctx.canvas.width = w;
    ctx.canvas.height = h;
    ctx.drawImage(source, 0, 0, w, h);
    const img = ctx.getImageData(0, 0, w, h);
    return jsQR(img.data, w, h, { inversionAttempts: 'attemptBoth' })?.data ?? null;
  };
}

export function QrScanner(props: { onCode: (text: string) => void; onUnavailable: (why: string) => void }) {
  let video!: HTMLVideoElement;
  let stream: MediaStream | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const [ready, setReady] = createSignal(false);
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    for (const t of stream?.getTracks() ?? []) t.stop();
    stream = null;
  };
  onMount(async () => {
    if (!navigator.mediaDevices?.getUserMedia) return props.onUnavailable('This browser cannot use a camera here.');
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
    } catch {
      return props.onUnavailable('No camera could be opened. Paste the code instead.');
    }
    if (stopped) return stop();
    video.srcObject = stream;
    await video.play().catch(() => undefined);
    setReady(true);
    const detect = await qrDetector();
    const ctx = document.createElement('canvas').getContext('2d', { willReadFrequently: true })!;
    const scan = async () => {
      if (stopped) return;
      const text = await detect(video, ctx).catch(() => null);
      if (text && !stopped) {
        stop();
        props.onCode(text);
        return;
      }
      timer = setTimeout(() => void scan(), 250);
    };
    void scan();
  });
  onCleanup(stop);
  return (
    <div class="relative overflow-hidden rounded-xl bg-slate-900" data-testid="qr-scanner">
      <video ref={video} class="aspect-square w-full object-cover" muted playsinline aria-label="Camera preview" />
      <Show when={!ready()}>
        <p class="absolute inset-0 flex items-center justify-center text-sm text-slate-200">Opening the camera…</p>
      </Show>
      <div class="pointer-events-none absolute inset-8 rounded-lg ring-2 ring-white/70" aria-hidden="true" />
    </div>
  );
}
