/**
 * `npm run bot -- <command>`: the bot SDK from a shell.
 *
 *   keygen                         print a fresh state key (put it in E2E_BOT_STATE_KEY)
 *   register                       create the account (first run) or sign in; print its ids
 *   send <username> <text…>        send a message in a direct conversation
 *   listen [--webhook-port N] [--no-socket]
 *                                  print incoming messages until Ctrl-C (sockets, and/or webhooks on N)
 *   echo   [--webhook-port N] [--no-socket]
 *                                  like listen, and reply to every message with its text
 *   webhooks create <url> [--events a,b] [--conversation ID] [--description TEXT]
 *   webhooks list | rotate <id> | delete <id> | test <id> | deliveries <id>
 *
 * Account and state come from flags or the environment: --server / E2E_BOT_SERVER, --username /
 * E2E_BOT_USERNAME, --state / E2E_BOT_STATE_DIR (default ./.bot-state); the password from E2E_BOT_PASSWORD
 * and the state key from E2E_BOT_STATE_KEY only (never a flag: it would show in the process list and the
 * shell's history — `--password` is refused with a usage error saying so). A webhook
 * secret created here is printed once and kept in the sealed state, where `listen --webhook-port` finds it.
 *
 * Exit codes: 0 ok, 1 failure (a stable error code is printed), 2 usage.
 * @module
 */
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { WEBHOOK_EVENT_TYPES, type WebhookEventType } from '../../schema/webhooks.js';
import { Bot, BotError, type BotMessage, nodeRequest, sendNodeResponse } from './bot.js';
import { newStateKey } from './file-store.js';

const USAGE = `usage: npm run bot -- <command> [options]
  keygen
  register
  send <username> <text...>
  listen [--webhook-port N] [--no-socket]
  echo   [--webhook-port N] [--no-socket]
  webhooks create <url> [--events a,b] [--conversation ID] [--description TEXT]
  webhooks list | rotate <id> | delete <id> | test <id> | deliveries <id>
options: --server URL --username NAME --state DIR (or E2E_BOT_SERVER, E2E_BOT_USERNAME, E2E_BOT_STATE_DIR);
         the password is read from E2E_BOT_PASSWORD and the state key from E2E_BOT_STATE_KEY only`;

class UsageError extends Error {}

function need(v: string | undefined, what: string): string {
  if (!v) throw new UsageError(`missing ${what}`);
  return v;
}

export async function main(argv: string[], out: (line: string) => void = console.log): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      server: { type: 'string' },
      username: { type: 'string' },
      /** Declared only to refuse it by name (an unknown flag would be a less helpful parse error). */
      password: { type: 'string' },
      state: { type: 'string' },
      'webhook-port': { type: 'string' },
      'no-socket': { type: 'boolean' },
      events: { type: 'string' },
      conversation: { type: 'string' },
      description: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    out(USAGE);
    return command ? 0 : 2;
  }
  if (values.password !== undefined)
    throw new UsageError('--password is not accepted: a flag shows in the process list; set E2E_BOT_PASSWORD');
  if (command === 'keygen') {
    out(newStateKey());
    return 0;
  }
  const env = process.env;
  const open = () =>
    Bot.open({
      server: need(values.server ?? env.E2E_BOT_SERVER, '--server'),
      username: need(values.username ?? env.E2E_BOT_USERNAME, '--username'),
      password: need(env.E2E_BOT_PASSWORD, 'E2E_BOT_PASSWORD'),
      stateDir: values.state ?? env.E2E_BOT_STATE_DIR ?? '.bot-state',
    });

  switch (command) {
    case 'register': {
      const bot = await open();
      out(JSON.stringify({ userId: bot.userId, deviceId: bot.deviceId }));
      await bot.close();
      return 0;
    }
    case 'send': {
      const [to, ...words] = rest;
      const text = words.join(' ');
      if (!to || !text) throw new UsageError('send <username> <text>');
      const bot = await open();
      try {
        const sent = await bot.send(to, text);
        out(JSON.stringify(sent));
      } finally {
        await bot.close();
      }
      return 0;
    }
    case 'listen':
    case 'echo': {
      const bot = await open();
      bot.on('message', async (m: BotMessage) => {
        out(
          JSON.stringify({
            conversationId: m.conversationId,
            seq: m.seq,
            from: m.from.username ?? m.from.userId,
            text: m.text,
          }),
        );
        if (command === 'echo') await m.reply(m.text);
      });
      bot.on('keyChange', (k) => out(JSON.stringify({ keyChange: k.userId, accepted: k.accepted })));
      bot.on('error', (e) => out(JSON.stringify({ error: e.name, message: e.message })));
      let server: ReturnType<typeof createServer> | null = null;
      if (values['webhook-port']) {
        const port = Number(values['webhook-port']);
        server = createServer((req, res) => {
          void (async () => {
            try {
              await sendNodeResponse(res, await bot.handleWebhook(await nodeRequest(req)));
            } catch (e) {
              // An oversized body (nodeRequest stopped reading it) is the sender's fault; anything else is ours.
              res.statusCode = e instanceof BotError && e.code === 'payload_too_large' ? 413 : 500;
              res.end();
              out(JSON.stringify({ error: e instanceof Error ? e.name : 'error' }));
            }
          })();
        });
        await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', resolve));
        out(JSON.stringify({ webhooks: `http://127.0.0.1:${(server.address() as { port: number }).port}/` }));
      }
      if (!values['no-socket']) await bot.listen();
      else await bot.sync();
      out(JSON.stringify({ listening: bot.userId }));
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      server?.close();
      await bot.close();
      return 0;
    }
    case 'webhooks': {
      const [sub, arg] = rest;
      const bot = await open();
      try {
        switch (sub) {
          case 'create': {
            const events = values.events?.split(',').map((e) => e.trim()) as WebhookEventType[] | undefined;
            for (const e of events ?? []) {
              if (!(WEBHOOK_EVENT_TYPES as readonly string[]).includes(e)) throw new UsageError(`unknown event ${e}`);
            }
            const r = await bot.webhooks.create({
              url: need(arg, 'a URL'),
              ...(events ? { events } : {}),
              ...(values.conversation ? { conversationId: values.conversation } : {}),
              ...(values.description ? { description: values.description } : {}),
            });
            out(JSON.stringify({ endpoint: r.endpoint, secret: r.secret }, null, 2));
            out('The secret is shown only now (and kept in the sealed bot state for `listen --webhook-port`).');
            break;
          }
          case 'list':
            out(JSON.stringify(await bot.webhooks.list(), null, 2));
            break;
          case 'rotate': {
            const r = await bot.webhooks.rotate(need(arg, 'an endpoint id'));
            out(JSON.stringify({ endpoint: r.endpoint, secret: r.secret }, null, 2));
            out('The previous secret keeps signing for 24 hours.');
            break;
          }
          case 'delete':
            await bot.webhooks.delete(need(arg, 'an endpoint id'));
            out(JSON.stringify({ deleted: arg }));
            break;
          case 'test':
            out(JSON.stringify({ eventId: await bot.webhooks.test(need(arg, 'an endpoint id')) }));
            break;
          case 'deliveries':
            out(JSON.stringify(await bot.webhooks.deliveries(need(arg, 'an endpoint id')), null, 2));
            break;
          default:
            throw new UsageError('webhooks create|list|rotate|delete|test|deliveries');
        }
      } finally {
        await bot.close();
      }
      return 0;
    }
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}

const isMain = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isMain) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      if (e instanceof UsageError) {
        console.error(`${e.message}\n${USAGE}`);
        process.exit(2);
      }
      const code = (e as { code?: unknown }).code;
      console.error(
        JSON.stringify({ error: typeof code === 'string' ? code : 'failed', message: (e as Error).message }),
      );
      process.exit(1);
    },
  );
}
