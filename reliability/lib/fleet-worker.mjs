// Entry of a fleet worker thread (reliability/lib/fleet.ts): loads TypeScript through tsx's API (the
// thread starts without the parent's loader flags, under `npm run reliability` and under Vitest alike).
import { register } from 'tsx/esm/api';

register();
await import('./fleet-host.ts');
