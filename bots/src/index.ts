/**
 * The e2e-chat bot SDK (Node 20): `Bot` (bot.ts) on the client engine, its sealed crash-safe state
 * (file-store.ts) and the webhook management API (webhooks.ts). See bots/README.md.
 * @module
 */
export {
  Bot,
  BotError,
  type BotErrorCode,
  type BotEvents,
  type BotMessage,
  type BotOptions,
  type KeyChangePolicy,
  nodeRequest,
  type SentMessage,
  sendNodeResponse,
} from './bot.js';
export {
  type FileStore,
  newStateKey,
  openFileStore,
  STATE_KEY_ENV,
  StateError,
  type StateErrorCode,
  stateKeyFrom,
} from './file-store.js';
export type {
  CreateWebhookInput,
  UpdateWebhookInput,
  WebhookApi,
  WebhookDeliveryView,
  WebhookEndpointView,
  WebhookSecretView,
} from './webhooks.js';
