/**
 * The CLI without a server (keygen, usage) and the README's echo bot, which must be the tested example file
 * verbatim (e2e/bot.test.ts runs that file against a real server and Chromium).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from './src/cli.js';
import { stateKeyFrom } from './src/file-store.js';

describe('bot CLI', () => {
  it('keygen prints a 32-byte base64url state key; no command prints the usage with exit code 2', async () => {
    const out: string[] = [];
    expect(await main(['keygen'], (l) => out.push(l))).toBe(0);
    expect(stateKeyFrom(out[0]!)).toHaveLength(32);
    const usage: string[] = [];
    expect(await main([], (l) => usage.push(l))).toBe(2);
    expect(usage.join('\n')).toContain('webhooks create <url>');
  });

  it('a command that needs the account says which option is missing', async () => {
    const env = { ...process.env };
    delete process.env.E2E_BOT_SERVER;
    try {
      await expect(main(['register'], () => {})).rejects.toThrow('missing --server');
      await expect(main(['frobnicate', '--server', 'http://x'], () => {})).rejects.toThrow('unknown command');
    } finally {
      process.env = env;
    }
  });

  it('a password on the command line is refused before anything runs (it would show in the process list)', async () => {
    const env = { ...process.env };
    process.env.E2E_BOT_SERVER = 'http://127.0.0.1:9';
    process.env.E2E_BOT_USERNAME = 'bot';
    delete process.env.E2E_BOT_PASSWORD;
    try {
      await expect(main(['register', '--password', 'hunter2hunter2'], () => {})).rejects.toThrow(
        '--password is not accepted',
      );
      // Without the environment variable the error names it, not the refused flag.
      await expect(main(['register'], () => {})).rejects.toThrow('missing E2E_BOT_PASSWORD');
    } finally {
      process.env = env;
    }
  });

  it('the README shows the echo bot example exactly as the tested file', () => {
    const readme = readFileSync(join(import.meta.dirname, 'README.md'), 'utf8');
    const example = readFileSync(join(import.meta.dirname, 'examples/echo-bot.ts'), 'utf8');
    expect(readme).toContain(`\`\`\`ts\n${example}\`\`\``);
  });
});
