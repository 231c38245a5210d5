// An echo bot, woken by webhooks: `E2E_BOT_STATE_KEY=… BOT_PASSWORD=… npx tsx bots/examples/echo-bot.ts`
import { createServer } from 'node:http';
import { Bot, nodeRequest, sendNodeResponse } from '../src/index.js';

const bot = await Bot.open({
  server: process.env.E2E_BOT_SERVER ?? 'http://127.0.0.1:5173',
  username: process.env.E2E_BOT_USERNAME ?? 'echo-bot',
  password: process.env.BOT_PASSWORD ?? '',
  stateDir: process.env.E2E_BOT_STATE_DIR ?? '.echo-bot', // sealed with E2E_BOT_STATE_KEY
});

bot.on('message', async (m) => {
  await m.reply(`echo: ${m.text}`);
});

// The webhook endpoint: verifies the signature, syncs the mailbox, runs the handler above. A body larger than
// any the server sends is refused unread (413); another failure answers 500 and the server retries later.
const port = Number(process.env.PORT ?? 8788);
createServer(async (req, res) => {
  const answer = await nodeRequest(req)
    .then((r) => bot.handleWebhook(r))
    .catch((e) => new Response(null, { status: e?.code === 'payload_too_large' ? 413 : 500 }));
  await sendNodeResponse(res, answer);
}).listen(port, '127.0.0.1');
await bot.sync(); // anything that arrived while the bot was down
console.log(`echo bot ${bot.userId} waiting for webhooks on http://127.0.0.1:${port}/`);
process.on('SIGTERM', () => bot.close().then(() => process.exit(0)));
