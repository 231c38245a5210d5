/**
 * Which endpoint URLs the Worker may POST to (SSRF policy). Checked when an endpoint is created or its URL
 * changed (a refusal is a 400 with a stable code) and again before every delivery attempt (a refusal is a
 * failed attempt, `url_refused`), so a URL accepted under an older policy is never called.
 *
 * Refused, each with its code (schema/webhooks.ts WEBHOOK_URL_ERRORS):
 *  - `webhook_url_too_long`: over MAX_WEBHOOK_URL_CHARS;
 *  - `webhook_url_invalid`: not an absolute URL (WHATWG parser), a fragment, or an empty host;
 *  - `webhook_url_scheme`: anything but `https:` — except `http:` to 127.0.0.1 / localhost / [::1] while
 *    APP_ENV is `development` (the local `npm run dev`) or `test` (the workers test pool, never deployed);
 *  - `webhook_url_credentials`: a user name or password in the URL;
 *  - `webhook_url_private_address`: an IP literal that is not global unicast (private, loopback,
 *    link-local, unique-local, carrier-grade NAT, multicast, broadcast, unspecified, documentation and
 *    other reserved ranges, IPv4-mapped / NAT64 / 6to4 / Teredo forms of those — ipaddr.js ranges, every
 *    one but `unicast` — and, for IPv6, anything outside the global unicast 2000::/3, such as the
 *    IPv4-compatible `[::127.0.0.1]`), and the names `localhost` / `*.localhost` and single-label names.
 *
 * The WHATWG parser has already normalised the host, so `http://2130706433/`, `http://0x7f.1/` and
 * `http://[::ffff:127.0.0.1]/` arrive here as 127.0.0.1 / [::ffff:7f00:1] and are refused like the plain form.
 *
 * Does NOT: resolve DNS names (Workers have no resolver API; a Worker's subrequests go out through
 * Cloudflare's network to the public internet — see docs/API.md § Webhooks for what that leaves), follow
 * redirects (delivery uses `redirect: "manual"` and counts a 3xx as a failure), or limit ports.
 */
import ipaddr from 'ipaddr.js';
import { MAX_WEBHOOK_URL_CHARS, type WebhookUrlError } from '../../schema/webhooks.js';
import { AppError } from '../errors.js';

export class WebhookUrlRefused extends AppError {
  constructor(
    readonly refusal: WebhookUrlError,
    message: string,
  ) {
    super(400, refusal, message);
  }
}

const LOOPBACK_NAMES = new Set(['127.0.0.1', 'localhost', '[::1]']);
/** The IPv6 global unicast space (RFC 4291 §2.4, IANA): 2000::/3. */
const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3') as [ipaddr.IPv6, number];

/** APP_ENV values of local runtimes, where plain http to this machine is allowed (see header). */
export function allowsLocalHttp(appEnv: string | undefined): boolean {
  return appEnv === 'development' || appEnv === 'test';
}

/** The parsed URL if the policy allows it; throws WebhookUrlRefused (400, stable code) otherwise. */
export function checkWebhookUrl(raw: string, appEnv: string | undefined): URL {
  if (raw.length > MAX_WEBHOOK_URL_CHARS) {
    throw new WebhookUrlRefused('webhook_url_too_long', `the URL is longer than ${MAX_WEBHOOK_URL_CHARS} characters`);
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new WebhookUrlRefused('webhook_url_invalid', 'not an absolute URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new WebhookUrlRefused('webhook_url_scheme', 'https only');
  }
  if (url.hash !== '' || raw.includes('#')) throw new WebhookUrlRefused('webhook_url_invalid', 'no fragment allowed');
  const host = url.hostname.replace(/\.$/, '').toLowerCase();
  if (host === '') throw new WebhookUrlRefused('webhook_url_invalid', 'the URL has no host');
  if (url.username !== '' || url.password !== '') {
    throw new WebhookUrlRefused('webhook_url_credentials', 'no user name or password in the URL');
  }
  const localHttp = url.protocol === 'http:' && allowsLocalHttp(appEnv) && LOOPBACK_NAMES.has(host);
  if (url.protocol !== 'https:' && !localHttp) {
    throw new WebhookUrlRefused(
      'webhook_url_scheme',
      allowsLocalHttp(appEnv) ? 'https only (http only to 127.0.0.1 or localhost)' : 'https only',
    );
  }
  if (localHttp) return url;
  if (host === 'localhost' || host.endsWith('.localhost') || (!host.includes('.') && !host.startsWith('['))) {
    throw new WebhookUrlRefused('webhook_url_private_address', 'not a public host name');
  }
  const literal = host.startsWith('[') ? host.slice(1, -1) : host;
  if (ipaddr.isValid(literal)) {
    let addr = ipaddr.parse(literal);
    if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
      addr = (addr as ipaddr.IPv6).toIPv4Address();
    }
    // ipaddr.js calls every IPv6 address outside its special ranges `unicast`, but only 2000::/3 is global
    // unicast (IANA): the rest is reserved — e.g. the deprecated IPv4-compatible ::/96, where
    // `[::127.0.0.1]` (`[::7f00:1]`) or `[::169.254.169.254]` would otherwise pass.
    const global = addr.kind() === 'ipv4' || (addr as ipaddr.IPv6).match(GLOBAL_UNICAST_V6);
    if (addr.range() !== 'unicast' || !global) {
      throw new WebhookUrlRefused('webhook_url_private_address', 'the address is not a public unicast address');
    }
  } else if (/^[0-9.]+$/.test(literal)) {
    // Digits and dots that are not an IPv4 address the parser accepted: refuse rather than guess.
    throw new WebhookUrlRefused('webhook_url_invalid', 'malformed IPv4 address');
  }
  return url;
}
