import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { cloudflare } from '@cloudflare/vite-plugin';
import tailwindcss from '@tailwindcss/vite';
import { defineConfig } from 'vite';
import solid from 'vite-plugin-solid';
import { sri } from 'vite-plugin-sri3';
import { assetManifest } from './scripts/asset-manifest.js';
import { clientPollMsFor, ktLogPublicKeyForBuild } from './scripts/local-env.js';
import { relayRefusedUpgrades } from './scripts/vite-refused-upgrades.js';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

// The key-transparency log's public key ships in the client build (web/src/app/kt-key.ts): the app trusts
// no tree head that is not signed by it. From KT_LOG_PUBLIC_KEY, wrangler.toml or the local .dev.vars.
const ktKey = ktLogPublicKeyForBuild();
if (!ktKey.key) console.warn('vite: no KT_LOG_PUBLIC_KEY — this client build will refuse every key (docs/DEPLOY.md)');

// One origin for everything: Vite serves the SolidJS app from web/, and the Cloudflare plugin runs the
// Worker, its Durable Objects and local D1 inside workerd (the same runtime as production).
export default defineConfig(({ command }) => ({
  root: here('./web'),
  publicDir: here('./web/public'),
  envDir: here('.'),
  // A dev server of the reliability suites (reliability/server.ts) optimises dependencies into its own
  // folder: several servers sharing node_modules/.vite race when one re-optimises (or is SIGKILLed by the
  // faults suite) while another loads ("The file does not exist … in the optimize deps directory").
  ...(process.env.E2E_CHAT_VITE_CACHE_DIR ? { cacheDir: process.env.E2E_CHAT_VITE_CACHE_DIR } : {}),
  plugins: [
    solid(),
    tailwindcss(),
    // Before the Cloudflare plugin: its upgrade listener must see our marker (see the file's header).
    relayRefusedUpgrades(),
    // The verifiable client (README §Verify the web client): Subresource Integrity (sha384) on every
    // script and style index.html loads, and asset-manifest.json with the SHA-256 of every served file.
    sri(),
    assetManifest(here('.')),
    cloudflare({
      // E2E_CHAT_WRANGLER_CONFIG: scripts/deploy.test.ts deploys a copy without placeholders.
      configPath: process.env.E2E_CHAT_WRANGLER_CONFIG ?? here('./wrangler.toml'),
      // Same local state folder that `wrangler d1 migrations apply --local` writes to.
      persistState: { path: process.env.E2E_CHAT_STATE_DIR ?? here('./.wrangler/state') },
      inspectorPort: false,
      // Extra Worker variables of a test / reliability dev server (scripts/dev-server.ts `vars`).
      ...(process.env.E2E_CHAT_DEV_VARS
        ? {
            config: (c) => ({
              vars: {
                ...c.vars,
                ...(JSON.parse(readFileSync(process.env.E2E_CHAT_DEV_VARS!, 'utf8')) as Record<string, string>),
              },
            }),
          }
        : {}),
    }),
  ],
  // Pre-bundle the app's and the engine worker's dependencies up front: discovering one on first use makes
  // Vite re-optimise and reload the page mid-session (fatal for a register in progress in the worker).
  optimizeDeps: {
    // (Kobalte ships JSX for Solid and is compiled by vite-plugin-solid instead.)
    include: ['solid-js', 'solid-js/web', 'solid-js/store', 'uqr', 'zod'],
  },
  define: {
    __KT_LOG_PUBLIC_KEY__: JSON.stringify(ktKey.key),
    // null (the app's 4 s) except on the browser tests' dev server (scripts/local-env.ts clientPollMsFor).
    __CLIENT_POLL_MS__: JSON.stringify(clientPollMsFor(command)),
  },
  // E2E_CHAT_DIST_DIR: tests build elsewhere (scripts/deploy-config.ts DIST).
  build: { outDir: process.env.E2E_CHAT_DIST_DIR ?? here('./dist'), emptyOutDir: true, target: 'es2022' },
  // No CORS from Vite itself (its default reflects any localhost origin, which let other local pages read
  // API answers made with the user's credentials): the Worker's own CORS policy (worker/security.ts) is the
  // only one, in development as in production.
  server: { host: '127.0.0.1', port: Number(process.env.PORT ?? 5173), strictPort: true, cors: false },
  preview: { host: '127.0.0.1', port: Number(process.env.PORT ?? 4173), strictPort: true, cors: false },
}));
