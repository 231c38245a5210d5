/**
 * The webhook management API (docs/API.md § Webhooks) for a signed-in account, typed with the shared shapes
 * of schema/webhooks.ts. Used by `Bot.webhooks` and the CLI's `webhooks` commands.
 *
 * Does NOT: keep secrets (Bot stores the ones it creates in its sealed state; the CLI prints them once).
 * @module
 */
import type {
  CreateWebhookInput,
  UpdateWebhookInput,
  WebhookDeliveryView,
  WebhookEndpointView,
  WebhookSecretView,
} from '../../schema/webhooks.js';
import type { HttpClient } from './engine.js';

export type { CreateWebhookInput, UpdateWebhookInput, WebhookDeliveryView, WebhookEndpointView, WebhookSecretView };

const seg = (s: string) => encodeURIComponent(s);

export interface WebhookApi {
  create(input: CreateWebhookInput): Promise<WebhookSecretView>;
  list(): Promise<WebhookEndpointView[]>;
  get(id: string): Promise<WebhookEndpointView>;
  update(id: string, input: UpdateWebhookInput): Promise<WebhookEndpointView>;
  /** A new secret; the previous one keeps signing for 24 h. */
  rotate(id: string): Promise<WebhookSecretView>;
  delete(id: string): Promise<void>;
  /** Queues a `webhook.test` event; returns its `webhook-id`. */
  test(id: string): Promise<string>;
  deliveries(id: string, limit?: number): Promise<WebhookDeliveryView[]>;
}

export function webhookApi(http: HttpClient): WebhookApi {
  return {
    create: (input) => http.request<WebhookSecretView>('POST', '/api/webhooks', { json: input }),
    list: async () => (await http.request<{ endpoints: WebhookEndpointView[] }>('GET', '/api/webhooks')).endpoints,
    get: async (id) =>
      (await http.request<{ endpoint: WebhookEndpointView }>('GET', `/api/webhooks/${seg(id)}`)).endpoint,
    update: async (id, input) =>
      (await http.request<{ endpoint: WebhookEndpointView }>('PATCH', `/api/webhooks/${seg(id)}`, { json: input }))
        .endpoint,
    rotate: (id) => http.request<WebhookSecretView>('POST', `/api/webhooks/${seg(id)}/rotate`),
    delete: async (id) => {
      await http.request<void>('DELETE', `/api/webhooks/${seg(id)}`);
    },
    test: async (id) => (await http.request<{ eventId: string }>('POST', `/api/webhooks/${seg(id)}/test`)).eventId,
    deliveries: async (id, limit = 100) =>
      (
        await http.request<{ deliveries: WebhookDeliveryView[] }>('GET', `/api/webhooks/${seg(id)}/deliveries`, {
          query: { limit },
        })
      ).deliveries,
  };
}
