/**
 * The engine's view of the protocol core: everything from web/src/protocol/index.ts (its only public
 * surface) plus `equal`, a constant-shape byte comparison the engine needs for key comparisons.
 *
 * Does NOT: add cryptography of its own.
 * @module
 */
export * from '../protocol/index.js';

export function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}
