/**
 * Webhook signing secrets: creation (`whsec_` + base64 of WEBHOOK_SECRET_BYTES random bytes), encryption at
 * rest, and the Standard Webhooks headers of one attempt — signed by the `standardwebhooks` reference
 * library (`Webhook.sign`: `v1,` + base64 HMAC-SHA256 over `id.timestamp.body`), never by our own HMAC code.
 *
 * At rest a secret is nonce[12] ‖ AES-256-GCM(key, nonce, secret, AD = "e2e-chat/v1 webhook:" ‖ endpoint id),
 * the key derived (HKDF-SHA256) from TOTP_ENCRYPTION_KEY with its own label — binding the endpoint id stops a
 * row's secret being moved to another endpoint.
 *
 * During a rotation's overlap the previous secret signs too: `webhook-signature` is the space-separated list
 * the spec allows, newest first, and a receiver accepts the request if any one verifies.
 *
 * Does NOT: store secrets in clear anywhere, log them, or return them after creation/rotation.
 */
import { Webhook } from 'standardwebhooks';
import { WEBHOOK_HEADERS, WEBHOOK_SECRET_BYTES, WEBHOOK_SECRET_PREFIX } from '../../schema/webhooks.js';
import { concat, utf8 } from '../../web/src/protocol/bytes.js';
import { aesGcmDecrypt, aesGcmEncrypt, GCM_NONCE_LEN, hkdfSha256 } from '../../web/src/protocol/primitives.js';
import type { Env } from '../env.js';
import { secretBytes } from '../secrets.js';

export function newWebhookSecret(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(WEBHOOK_SECRET_BYTES));
}

/** The secret as shown to the user once: `whsec_` + standard base64 (what every Standard Webhooks library reads). */
export function formatSecret(secret: Uint8Array): string {
  let bin = '';
  for (const b of secret) bin += String.fromCharCode(b);
  return `${WEBHOOK_SECRET_PREFIX}${btoa(bin)}`;
}

function atRestKey(env: Env): Uint8Array {
  return hkdfSha256(
    secretBytes(env, 'TOTP_ENCRYPTION_KEY'),
    new Uint8Array(0),
    utf8('e2e-chat/v1 webhook secrets at rest'),
    32,
  );
}
const ad = (endpointId: string) => utf8(`e2e-chat/v1 webhook:${endpointId}`);

export function sealSecret(env: Env, endpointId: string, secret: Uint8Array): Uint8Array {
  const nonce = crypto.getRandomValues(new Uint8Array(GCM_NONCE_LEN));
  return concat(nonce, aesGcmEncrypt(atRestKey(env), nonce, secret, ad(endpointId)));
}

export function openSecret(env: Env, endpointId: string, stored: Uint8Array): Uint8Array {
  const b = new Uint8Array(stored);
  return aesGcmDecrypt(atRestKey(env), b.subarray(0, GCM_NONCE_LEN), b.subarray(GCM_NONCE_LEN), ad(endpointId));
}

/**
 * The three Standard Webhooks headers for one attempt at `now`: `webhook-id`, `webhook-timestamp` (unix
 * seconds of this attempt) and `webhook-signature` (one `v1,` signature per secret, space-separated).
 */
export function signedHeaders(
  eventId: string,
  body: string,
  secrets: readonly Uint8Array[],
  now: number,
): Record<string, string> {
  const at = new Date(now);
  const signatures = secrets.map((s) => new Webhook(s, { format: 'raw' }).sign(eventId, at, body));
  return {
    [WEBHOOK_HEADERS.id]: eventId,
    [WEBHOOK_HEADERS.timestamp]: String(Math.floor(now / 1000)),
    [WEBHOOK_HEADERS.signature]: signatures.join(' '),
  };
}
