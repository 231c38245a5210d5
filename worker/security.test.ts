import { exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import headersFile from '../web/public/_headers?raw';
import { SECURITY_HEADERS } from './security.js';

function parseHeadersFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s+([A-Za-z-]+):\s*(.+)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.trim();
  }
  return out;
}

describe('security headers', () => {
  it('every API response carries CSP, HSTS, nosniff and frame-ancestors none', async () => {
    for (const path of ['/api/health', '/api/nope']) {
      const res = await exports.default.fetch(`http://example.com${path}`);
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) expect(res.headers.get(name), name).toBe(value);
      expect(res.headers.get('Content-Security-Policy')).toContain("script-src 'self'");
      expect(res.headers.get('Content-Security-Policy')).toContain("frame-ancestors 'none'");
      expect(res.headers.get('X-Request-Id')).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it('static assets get exactly the same headers from web/public/_headers', () => {
    expect(parseHeadersFile(headersFile)).toEqual(SECURITY_HEADERS);
  });

  it('CORS allows only the configured app origin', async () => {
    const ok = await exports.default.fetch('http://example.com/api/health', {
      headers: { Origin: 'https://app.example' },
    });
    expect(ok.headers.get('Access-Control-Allow-Origin')).toBe('https://app.example');
    const evil = await exports.default.fetch('http://example.com/api/health', {
      headers: { Origin: 'https://evil.example' },
    });
    expect(evil.headers.get('Access-Control-Allow-Origin')).toBeNull();
    const preflight = await exports.default.fetch('http://example.com/api/health', {
      method: 'OPTIONS',
      headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' },
    });
    expect(preflight.headers.get('Access-Control-Allow-Origin')).toBeNull();
  });

  it('a foreign origin never gets Access-Control-Allow-Credentials, on any answer or preflight', async () => {
    for (const origin of ['https://evil.example', 'http://localhost:3000', 'http://127.0.0.1:8080', 'null']) {
      for (const init of [
        { method: 'GET', path: '/api/health' },
        { method: 'GET', path: '/api/auth/session' },
        { method: 'POST', path: '/api/auth/refresh' },
        { method: 'OPTIONS', path: '/api/auth/session', preflight: true },
      ]) {
        const res = await exports.default.fetch(`http://example.com${init.path}`, {
          method: init.method,
          headers: { Origin: origin, ...(init.preflight ? { 'Access-Control-Request-Method': 'GET' } : {}) },
        });
        const what = `${init.method} ${init.path} from ${origin}`;
        expect(res.headers.get('Access-Control-Allow-Credentials'), what).toBeNull();
        expect(res.headers.get('Access-Control-Allow-Origin'), what).toBeNull();
        if (init.preflight) {
          expect(res.status, what).toBe(403);
          expect(((await res.json()) as { error: { code: string } }).error.code).toBe('bad_origin');
        } else await res.arrayBuffer();
      }
    }
    // The app's own origin still gets credentials (and may read Retry-After).
    const ok = await exports.default.fetch('http://example.com/api/health', {
      headers: { Origin: 'https://app.example' },
    });
    expect(ok.headers.get('Access-Control-Allow-Credentials')).toBe('true');
    expect(ok.headers.get('Access-Control-Expose-Headers')).toContain('Retry-After');
  });

  it('an oversize body is refused with 413 payload_too_large before any handler runs', async () => {
    const res = await exports.default.fetch('http://example.com/api/health', {
      method: 'POST',
      body: 'x'.repeat(600 * 1024),
      headers: { 'Content-Type': 'application/json' },
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('payload_too_large');
  });
});
