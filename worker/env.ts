/** Bindings and secrets the Worker receives (wrangler.toml + .dev.vars / `wrangler secret put`). */
import type { ConversationDO } from './conversation.js';

export interface Env {
  DB: D1Database;
  CONVERSATION: DurableObjectNamespace<ConversationDO>;
  ASSETS?: Fetcher;
  /** "production" in wrangler.toml; "development" from .dev.vars; "test" in the workers test pool. */
  APP_ENV: string;
}

export type AppBindings = { Bindings: Env; Variables: { requestId: string } };
