/** A QR code (uqr) drawn as one SVG path: no inline styles, scales with its box, light quiet zone. */
import { encode } from 'uqr';

export function qrPath(data: string | Uint8Array): { size: number; d: string } {
  const qr = encode(typeof data === 'string' ? data : Array.from(data), { ecc: 'M', border: 2 });
  let d = '';
  qr.data.forEach((row, y) => {
    row.forEach((on, x) => {
      if (on) d += `M${x} ${y}h1v1h-1z`;
    });
  });
  return { size: qr.size, d };
}

export function Qr(props: { data: string | Uint8Array; label: string; class?: string }) {
  const q = () => qrPath(props.data);
  return (
    <svg
      viewBox={`0 0 ${q().size} ${q().size}`}
      role="img"
      aria-label={props.label}
      class={`rounded-lg bg-white ${props.class ?? 'size-48'}`}
      shape-rendering="crispEdges"
    >
      <path d={q().d} fill="#0f172a" />
    </svg>
  );
}
