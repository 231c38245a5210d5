/**
 * Entry of the Chromium worker that runs the JavaScript Signal-protocol peer for `npm run bench:protocol`
 * (bench/jspeer-side.ts), bundled by bench/browser.ts like the app's build. It imports the package that
 * bench/jspeer/package.json installs on first use, so it is left out of the app's typecheck (tsconfig.json).
 * @module
 */
import * as lib from '@privacyresearch/libsignal-protocol-typescript';
import { serveWorkloads } from '../browser/worker-host.js';
import { type JsPeerLib, jsPeerWorkloads } from '../jspeer-side.js';

serveWorkloads(
  jsPeerWorkloads(lib as unknown as JsPeerLib, 200),
  '@privacyresearch/libsignal-protocol-typescript 0.0.16 (X3DH, no PQ)',
);
