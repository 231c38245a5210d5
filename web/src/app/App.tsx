import { createResource, createSignal, Show } from 'solid-js';
import { fetchHealth, roundTrip } from './transport.js';

export function App() {
  const [health] = createResource(fetchHealth);
  const [rt, setRt] = createSignal<{ ms: number } | { error: string } | null>(null);

  const probe = async () => {
    setRt(null);
    try {
      const r = await roundTrip(`probe-${crypto.randomUUID()}`);
      setRt({ ms: r.ms });
    } catch (e) {
      setRt({ error: e instanceof Error ? e.message : 'failed' });
    }
  };
  void probe();

  return (
    <main class="mx-auto max-w-xl p-6 font-sans">
      <h1 class="text-2xl font-semibold">e2e-chat</h1>
      <p class="mt-1 text-sm text-slate-500 dark:text-slate-400">End-to-end encrypted messaging on the edge.</p>
      <section class="mt-6 rounded-lg border border-slate-200 p-4 dark:border-slate-800" aria-labelledby="status-h">
        <h2 id="status-h" class="font-medium">
          System status
        </h2>
        <dl class="mt-2 grid grid-cols-[8rem_1fr] gap-y-1 text-sm">
          <dt>Database</dt>
          <dd data-testid="health">
            <Show when={!health.loading} fallback="checking…">
              <Show when={health()} fallback={`unavailable`}>
                {(h) => `${h().db} · migration ${h().migration ?? 'none'}`}
              </Show>
            </Show>
          </dd>
          <dt>Realtime</dt>
          <dd data-testid="roundtrip">
            <Show when={rt()} fallback="connecting…">
              {(r) => {
                const v = r();
                return 'ms' in v ? `round trip ok (${v.ms.toFixed(1)} ms)` : `failed: ${v.error}`;
              }}
            </Show>
          </dd>
        </dl>
        <button
          type="button"
          class="mt-3 rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-medium text-white hover:bg-indigo-500 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-indigo-600"
          onClick={() => void probe()}
        >
          Test again
        </button>
      </section>
    </main>
  );
}
