/**
 * Response hardening for every Worker response: CSP with `script-src 'self'`, HSTS, nosniff,
 * frame-ancestors 'none', a strict referrer policy, and CORS limited to the app's origin. Static assets
 * get the same headers from web/public/_headers (they are served without running the Worker); a test
 * keeps the two in step.
 */
import { cors } from 'hono/cors';
import { createMiddleware } from 'hono/factory';
import { secureHeaders } from 'hono/secure-headers';
import type { AppBindings } from './env.js';

export const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob:",
  "font-src 'self'",
  "connect-src 'self'",
  "worker-src 'self'",
  "manifest-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': CSP,
  'Strict-Transport-Security': 'max-age=63072000; includeSubDomains; preload',
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Permissions-Policy': 'camera=(), microphone=(), geolocation=(), payment=(), usb=()',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

export const securityHeaders = secureHeaders({
  contentSecurityPolicy: undefined,
  strictTransportSecurity: SECURITY_HEADERS['Strict-Transport-Security'],
  xContentTypeOptions: true,
  xFrameOptions: 'DENY',
  referrerPolicy: 'no-referrer',
  crossOriginOpenerPolicy: 'same-origin',
  crossOriginResourcePolicy: 'same-origin',
  permissionsPolicy: { camera: [], microphone: [], geolocation: [], payment: [], usb: [] },
});

/**
 * The CSP as one literal header (hono's builder would reorder it; the _headers file must match exactly).
 * A route that sets a stricter policy of its own (an attachment blob's sandbox) keeps it.
 */
export const cspHeader = createMiddleware<AppBindings>(async (c, next) => {
  await next();
  if (!c.res.headers.has('Content-Security-Policy')) c.header('Content-Security-Policy', CSP);
});

/**
 * CORS: only the configured app origin (APP_ORIGIN; empty = same-origin only, which needs no CORS). A
 * request from any other origin gets no CORS header at all — in particular never
 * `Access-Control-Allow-Credentials` without a matching `Access-Control-Allow-Origin` — and a preflight from
 * one is answered 403 `bad_origin`. The dev server adds no CORS of its own (vite.config.ts `cors: false`).
 */
const allowedCors = cors({
  origin: (origin) => origin,
  allowMethods: ['GET', 'POST', 'PUT', 'DELETE'],
  allowHeaders: ['Authorization', 'Content-Type'],
  exposeHeaders: ['Retry-After', 'X-Request-Id'],
  credentials: true,
  maxAge: 600,
});
export const corsPolicy = createMiddleware<AppBindings>(async (c, next) => {
  const origin = c.req.header('origin');
  if (origin && c.env.APP_ORIGIN && origin === c.env.APP_ORIGIN) return allowedCors(c, next);
  if (origin && c.req.method === 'OPTIONS' && c.req.header('access-control-request-method')) {
    return c.json({ error: { code: 'bad_origin', message: 'cross-origin request refused' } }, 403);
  }
  await next();
});
