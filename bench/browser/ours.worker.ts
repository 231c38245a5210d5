/**
 * Entry of the Chromium worker that runs e2e-chat's protocol core for `npm run bench:protocol`: the same
 * workloads as in Node (bench/ours-side.ts), on the curve path the app gets in a browser (`defaultCurves()`),
 * bundled and minified as the app ships it (bench/browser.ts).
 * @module
 */
import { defaultCurves } from '../../web/src/protocol/index.js';
import { oursWorkloads } from '../ours-side.js';
import { serveWorkloads } from './worker-host.js';

const curves = await defaultCurves();
serveWorkloads({ ...oursWorkloads(curves, 200) }, `defaultCurves() = ${curves.name}, ML-KEM ${curves.mlkem.name}`);
