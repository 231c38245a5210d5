/**
 * The bot SDK end to end, against its own `npm run dev` (queue tap on, so queue messages appear in the log):
 * the CLI registers a bot and points a webhook at it, the README's echo bot (bots/examples/echo-bot.ts) runs
 * as its own process in webhook mode (no socket between calls), and a person in real Chromium messages it.
 * The bot's receiver (a recording proxy in front of it) gets `message.created` — verified here with the
 * `standardwebhooks` reference library — the bot syncs its mailbox, decrypts and replies, and the browser
 * shows the reply. The bot process is then SIGKILLed and started again on the same sealed state, and the
 * second message is decrypted and answered too. Finally a scan: no message text in any webhook request, in
 * the server's log (queue messages included), in the bot's output or in its state files.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSuiteServer } from '../reliability/server.js';
import { webhookEventBody } from '../schema/webhooks.js';
import { type DevServer, freePort } from '../scripts/dev-server.js';
import { QUIET_ENV, ROOT } from '../scripts/local-env.js';
import { cast, register, screenshot, send, startChat, uniq, waitForText } from './browser.js';

let server: DevServer;
beforeAll(async () => {
  server = await startSuiteServer({ vars: { E2E_CHAT_QUEUE_TAP: '1' } });
}, 180_000);
afterAll(async () => {
  await server?.stop();
});

const newPerson = cast(15, () => server.url);
/** One process per bot (the tsx CLI would run it in a child that a SIGKILL of the parent leaves running). */
const node = (file: string) => ['--import', 'tsx', join(ROOT, file)];

/** Runs a CLI command to completion; returns stdout (throws with stderr on a non-zero exit). */
function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...node('bots/src/cli.ts'), ...args], { cwd: ROOT, env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`bot ${args[0]}: ${code} ${err}`))));
  });
}

interface BotProcess {
  child: ChildProcess;
  output: () => string;
}

/** Starts the echo bot example and waits for its "waiting for webhooks" line. */
async function startBot(env: NodeJS.ProcessEnv): Promise<BotProcess> {
  const child = spawn(process.execPath, node('bots/examples/echo-bot.ts'), { cwd: ROOT, env });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const end = Date.now() + 90_000;
  while (!out.includes('waiting for webhooks')) {
    if (child.exitCode !== null || Date.now() > end) throw new Error(`echo bot did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, output: () => out };
}

interface Recorded {
  headers: Record<string, string>;
  body: string;
}

/** The bot's public address: records every request, then passes it on to the bot's port. */
function recordingProxy(port: number, botPort: number): Promise<{ server: Server; seen: Recorded[] }> {
  const seen: Recorded[] = [];
  const proxy = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', async () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      seen.push({ headers, body });
      try {
        const r = await fetch(`http://127.0.0.1:${botPort}${req.url}`, { method: 'POST', headers, body });
        res.statusCode = r.status;
        res.end(await r.text());
      } catch {
        res.statusCode = 502; // the bot is down (restarting): the server retries
        res.end();
      }
    });
  });
  return new Promise((resolve) => proxy.listen(port, '127.0.0.1', () => resolve({ server: proxy, seen })));
}

describe('bot SDK end to end', () => {
  it('a person in Chromium messages a webhook-driven bot; it decrypts and replies, also after a SIGKILL restart; no text leaks', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'e2e-bot-state-'));
    const [proxyPort, botPort] = [await freePort(), await freePort()];
    const botName = uniq('echobot');
    const env: NodeJS.ProcessEnv = {
      ...QUIET_ENV,
      E2E_BOT_SERVER: server.url,
      E2E_BOT_USERNAME: botName,
      E2E_BOT_PASSWORD: 'bot password, long enough',
      BOT_PASSWORD: 'bot password, long enough',
      E2E_BOT_STATE_DIR: stateDir,
      E2E_BOT_STATE_KEY: (await cli(QUIET_ENV, 'keygen')).trim(),
      PORT: String(botPort),
    };
    const { server: proxy, seen } = await recordingProxy(proxyPort, botPort);
    let bot: BotProcess | null = null;
    const outputs: string[] = [];
    try {
      // The CLI: the account, then a webhook to the bot's address (the secret stays in the sealed state).
      const ids = JSON.parse(await cli(env, 'register')) as { userId: string };
      const created = await cli(
        env,
        'webhooks',
        'create',
        `http://127.0.0.1:${proxyPort}/`,
        '--events',
        'message.created',
      );
      outputs.push(created);
      const secret = /"secret": "(whsec_[^"]+)"/.exec(created)?.[1];
      expect(secret).toBeDefined();

      bot = await startBot(env);
      const alice = await newPerson();
      await register(alice.page, uniq('alice'));
      await startChat(alice.page, botName);
      const first = `hello bot, first ${uniq('m')}`;
      await send(alice.page, first);
      await waitForText(alice.page, `echo: ${first}`, 120_000);
      await screenshot(alice.page, 'bot-echo-reply');

      // The bot's receiver got message.created, signed (verified with the reference library), content-free.
      const events = seen.map((r) => webhookEventBody.parse(new Webhook(secret!).verify(r.body, r.headers)));
      const created1 = events.filter((e) => e.type === 'message.created');
      expect(created1.length).toBeGreaterThanOrEqual(1);
      expect(created1.every((e) => e.type === 'message.created' && e.data.senderUserId !== ids.userId)).toBe(true);

      // Restart: the process is killed outright and started again on the same sealed state.
      bot.child.kill('SIGKILL');
      await new Promise((r) => bot!.child.once('exit', r));
      outputs.push(bot.output());
      bot = await startBot(env);
      const second = `second message ${uniq('m')}`;
      await send(alice.page, second);
      await waitForText(alice.page, `echo: ${second}`, 120_000);
      await screenshot(alice.page, 'bot-echo-after-restart');
      expect(seen.length).toBeGreaterThan(created1.length);

      // The scan: no message text anywhere the server or the webhook path touches.
      const log = server.output();
      expect(log).toContain('"event":"webhook_queue_tap"'); // the queue messages are in the scanned log
      expect(log).toContain('message.created');
      outputs.push(bot.output());
      const files = readdirSync(stateDir).map((f) => readFileSync(join(stateDir, f)).toString('latin1'));
      for (const text of [first, second, `echo: ${first}`, `echo: ${second}`]) {
        for (const r of seen) expect(JSON.stringify(r)).not.toContain(text);
        expect(log).not.toContain(text);
        for (const o of outputs) expect(o).not.toContain(text);
        for (const f of files) expect(f).not.toContain(text);
      }
    } finally {
      bot?.child.kill('SIGKILL');
      proxy.close();
      rmSync(stateDir, { recursive: true, force: true });
    }
  }, 420_000);
});
