/**
 * `npm run kt:keygen`: a fresh key-transparency log key pair for a deployment (docs/DEPLOY.md §Secrets).
 * The seed is the Worker secret KT_LOG_SIGNING_KEY; the public half is the var KT_LOG_PUBLIC_KEY of the same
 * `[env.X.vars]`, which the client build embeds. `npm run kt:keygen -- --public-of <seed>` prints the public
 * half of an existing seed. Randomness: the operating system's (node:crypto).
 */
import { randomBytes } from 'node:crypto';
import { ktPublicKeyOf } from './local-env.js';

const i = process.argv.indexOf('--public-of');
if (i >= 0) {
  const seed = process.argv[i + 1] ?? '';
  if (Buffer.from(seed, 'base64url').length !== 32) {
    console.error('kt:keygen: --public-of needs a base64url 32-byte seed');
    process.exit(1);
  }
  console.log(ktPublicKeyOf(seed));
} else {
  const seed = randomBytes(32).toString('base64url');
  console.log(`KT_LOG_SIGNING_KEY=${seed}`);
  console.log(`KT_LOG_PUBLIC_KEY=${ktPublicKeyOf(seed)}`);
  console.error(
    '\nThe first line is a secret: `printf %s "<it>" | npx wrangler secret put KT_LOG_SIGNING_KEY --env X`, then keep it\n' +
      'in your password manager. The second goes in wrangler.toml [env.X.vars] KT_LOG_PUBLIC_KEY (public; commit it).',
  );
}
