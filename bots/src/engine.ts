/**
 * What the bot SDK uses of the client engine (web/src/engine), in one place: the bot is built ON the
 * engine — the same keys, sessions, groups, outbox/inbox, mailbox sync and realtime resume as the web app —
 * and adds only Node persistence (file-store.ts), a handler loop and webhooks (bot.ts).
 * @module
 */
export { Account, type LoginResult } from '../../web/src/engine/account.js';
export { EngineError, type EngineEvent, type MessageView } from '../../web/src/engine/context.js';
export type { ContactView } from '../../web/src/engine/directory.js';
export { createEngine, type Engine } from '../../web/src/engine/engine.js';
export {
  type CookieJar,
  createHttpApi,
  createSocketFactory,
  HttpApiError,
  HttpClient,
  isApiError,
  memoryCookieJar,
} from '../../web/src/engine/http-transport.js';
export { memoryLocks } from '../../web/src/engine/locks.js';
export {
  assertDir,
  inDir,
  mutex,
  readJson,
  type Store,
  type StoreEntry,
  type StoreReader,
  TxOverlay,
  writeJson,
} from '../../web/src/engine/storage.js';
export { fromB64u } from '../../web/src/protocol/bytes.js';
export { defaultCurves, type Rng } from '../../web/src/protocol/index.js';
