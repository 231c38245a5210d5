/**
 * The key-transparency log's public key, built into the app (vite.config.ts `define`, from
 * KT_LOG_PUBLIC_KEY — docs/DEPLOY.md): the engine trusts no tree head that is not signed by it, so the
 * server cannot swap the log. Empty in a build made without a key: every key lookup is then refused.
 */
import { fromB64u } from '../protocol/bytes.js';

declare const __KT_LOG_PUBLIC_KEY__: string;

function decode(): Uint8Array {
  try {
    return fromB64u(typeof __KT_LOG_PUBLIC_KEY__ === 'string' ? __KT_LOG_PUBLIC_KEY__ : '');
  } catch {
    return new Uint8Array(0);
  }
}

export const KT_LOG_PUBLIC_KEY: Uint8Array = decode();
