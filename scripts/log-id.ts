/**
 * `npm run log-id -- <accountId|conversationId> [--conversation]`: the pseudonym the Worker's logs use for
 * an id (worker/log.ts logId) — for support, to find one account's lines with its owner's consent. Reads
 * the environment's TOKEN_HASH_KEY from the TOKEN_HASH_KEY environment variable (never from a file).
 */
import { createHmac } from 'node:crypto';

export function logIdFor(tokenHashKey: string, kind: 'u' | 'c', id: string): string {
  const key = Buffer.from(tokenHashKey, 'base64url');
  return `${kind}_${createHmac('sha256', key).update(`log:${kind}:${id}`).digest('base64url').slice(0, 16)}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const id = args.find((a) => !a.startsWith('--'));
  const key = process.env.TOKEN_HASH_KEY;
  if (!id || !key) {
    console.error('usage: TOKEN_HASH_KEY=<the env’s key> npm run log-id -- <id> [--conversation]');
    process.exit(1);
  }
  console.log(logIdFor(key, args.includes('--conversation') ? 'c' : 'u', id));
}
