/**
 * Operator counters (docs/DEPLOY.md §Observability). Each event is one Workers Analytics Engine data point
 * on `env.METRICS` — `blob1` the counter, `blob2` its label (an error code, a rate-limit bucket, a close
 * code…), `double1` the value — and is also added to an in-memory tally that the local status page reads
 * (`GET /api/status/counters`, development and test only: in production each isolate holds only its own
 * share, so Analytics Engine is the source of truth there).
 *
 * Labels are chosen by the code from fixed sets (codes, bucket names, close codes) — never ids, names or
 * anything a client sent. Writing a counter never throws.
 */

export const COUNTERS = [
  'messages_accepted',
  'messages_delivered',
  'sockets_opened',
  'sockets_closed',
  'mailbox_depth',
  'errors',
  'rate_limited',
  'webhook_deliveries',
] as const;
export type Counter = (typeof COUNTERS)[number];

/** Counters whose value is a level (the latest wins), not a count of events. */
const GAUGES: ReadonlySet<Counter> = new Set(['mailbox_depth']);

type MetricsEnv = { METRICS?: AnalyticsEngineDataset };

const tally = new Map<string, { name: Counter; label: string; value: number }>();
const LABEL = /^[a-z0-9_:.-]{0,64}$/i;

/** Records `value` (default 1) for `name`/`label`. Labels outside `[a-z0-9_:.-]{0,64}` are recorded as "other". */
export function count(env: MetricsEnv, name: Counter, label = '', value = 1): void {
  const l = LABEL.test(label) ? label : 'other';
  try {
    env.METRICS?.writeDataPoint({ indexes: [name], blobs: [name, l], doubles: [value] });
  } catch {
    // Analytics Engine is best effort: a counter never fails a request.
  }
  const key = `${name}\n${l}`;
  const prev = tally.get(key);
  if (GAUGES.has(name) || !prev) tally.set(key, { name, label: l, value });
  else prev.value += value;
}

/** Webhook delivery outcomes: the integrations helper calls this from its queue consumer. */
export type WebhookOutcome = 'delivered' | 'retried' | 'failed' | 'disabled' | 'dropped';
export function countWebhookDelivery(env: MetricsEnv, outcome: WebhookOutcome, n = 1): void {
  count(env, 'webhook_deliveries', outcome, n);
}

export interface CounterRow {
  name: Counter;
  label: string;
  value: number;
}

/** This isolate's tally, sorted by counter then label. */
export function localCounters(): CounterRow[] {
  return [...tally.values()]
    .map((r) => ({ ...r }))
    .sort((a, b) => COUNTERS.indexOf(a.name) - COUNTERS.indexOf(b.name) || a.label.localeCompare(b.label));
}
