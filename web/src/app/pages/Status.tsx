/** /status: system status (database health + a realtime round trip through the probe Durable Object). */
import { createResource, createSignal, For, Show } from 'solid-js';
import { Button } from '../components/ui.js';
import { Link } from '../router.js';
import { type CounterRow, fetchCounters, fetchHealth, roundTrip } from '../transport.js';

/** The counters an operator watches, in the order shown (worker/metrics.ts COUNTERS). */
const COUNTER_NAMES: [string, string][] = [
  ['messages_accepted', 'Messages accepted'],
  ['messages_delivered', 'Messages delivered'],
  ['sockets_opened', 'Sockets opened'],
  ['sockets_closed', 'Sockets closed'],
  ['mailbox_depth', 'Mailbox depth'],
  ['errors', 'Errors'],
  ['rate_limited', 'Rate-limit refusals'],
  ['webhook_deliveries', 'Webhook deliveries'],
];

/** "12 (group 10, pairwise 2)": the total and, when labelled, the split by label. */
function summarise(rows: CounterRow[], name: string): string {
  const mine = rows.filter((r) => r.name === name);
  const total = mine.reduce((s, r) => s + r.value, 0);
  const labelled = mine.filter((r) => r.label !== '');
  return labelled.length ? `${total} (${labelled.map((r) => `${r.label} ${r.value}`).join(', ')})` : String(total);
}

export function SystemStatus() {
  const [health] = createResource(fetchHealth);
  const [counters, { refetch: refetchCounters }] = createResource(() => fetchCounters().catch(() => null));
  const [rt, setRt] = createSignal<{ ms: number } | { error: string } | null>(null);
  const probe = async () => {
    setRt(null);
    try {
      const r = await roundTrip(`probe-${crypto.randomUUID()}`);
      setRt({ ms: r.ms });
    } catch (e) {
      setRt({ error: e instanceof Error ? e.message : 'failed' });
    }
    void refetchCounters();
  };
  void probe();
  return (
    <section
      class="rounded-2xl bg-white p-5 shadow-sm ring-1 ring-slate-200 dark:bg-slate-900 dark:ring-slate-800"
      aria-labelledby="status-h"
    >
      <h2 id="status-h" class="font-medium">
        System status
      </h2>
      <dl class="mt-2 grid grid-cols-[8rem_1fr] gap-y-1 text-sm">
        <dt class="text-slate-500 dark:text-slate-400">Database</dt>
        <dd data-testid="health">
          <Show when={!health.loading} fallback="checking…">
            <Show when={health()} fallback={`unavailable`}>
              {(h) => `${h().db} · migration ${h().migration ?? 'none'}`}
            </Show>
          </Show>
        </dd>
        <dt class="text-slate-500 dark:text-slate-400">Realtime</dt>
        <dd data-testid="roundtrip">
          <Show when={rt()} fallback="connecting…">
            {(r) => {
              const v = r();
              return 'ms' in v ? `round trip ok (${v.ms.toFixed(1)} ms)` : `failed: ${v.error}`;
            }}
          </Show>
        </dd>
      </dl>
      <Show when={counters()}>
        {(rows) => (
          <>
            <h3 class="mt-4 text-sm font-medium">Counters (this server, since it started)</h3>
            <dl class="mt-1 grid grid-cols-[10rem_1fr] gap-y-1 text-sm" data-testid="counters">
              <For each={COUNTER_NAMES}>
                {([name, title]) => (
                  <>
                    <dt class="text-slate-500 dark:text-slate-400">{title}</dt>
                    <dd data-counter={name}>{summarise(rows(), name)}</dd>
                  </>
                )}
              </For>
            </dl>
          </>
        )}
      </Show>
      <Button class="mt-3" variant="secondary" onClick={() => void probe()}>
        Test again
      </Button>
    </section>
  );
}

export default function Status() {
  return (
    <main class="mx-auto max-w-xl p-6">
      <h1 class="text-2xl font-semibold">e2e-chat</h1>
      <p class="mt-1 mb-6 text-sm text-slate-500 dark:text-slate-400">End-to-end encrypted messaging on the edge.</p>
      <SystemStatus />
      <p class="mt-6 text-sm">
        <Link href="/" class="text-blue-600 underline dark:text-blue-400">
          Back
        </Link>
      </p>
    </main>
  );
}
