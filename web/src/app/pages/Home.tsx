/** `/`: signed-in people go to their chats; everyone else sees what this is and how to start (operator details
 * — database, migration, realtime probe — are on /status, linked at the bottom). */
import { createEffect, Show } from 'solid-js';
import { buttonClass, Logo } from '../components/ui.js';
import { Link, navigate } from '../router.js';
import { useStore } from '../store/index.js';

export default function Home() {
  const { state } = useStore();
  createEffect(() => {
    if (state.me) navigate('/chats', { replace: true });
  });
  return (
    <Show when={!state.me}>
      <main class="mx-auto flex min-h-full max-w-xl flex-col justify-center gap-8 p-6">
        <div>
          <div class="flex items-center gap-2">
            <Logo />
            <h1 class="text-2xl font-semibold">e2e-chat</h1>
          </div>
          <p class="mt-3 text-slate-600 dark:text-slate-300">
            End-to-end encrypted messaging on the edge. Your keys are made and kept in this browser; the server only
            ever relays ciphertext.
          </p>
          <div class="mt-5 flex gap-3">
            <Link href="/register" class={buttonClass('primary')}>
              Create an account
            </Link>
            <Link href="/login" class={buttonClass('secondary')}>
              Sign in
            </Link>
          </div>
        </div>
        <p class="text-sm text-slate-600 dark:text-slate-400">
          <Link href="/status" class="underline hover:text-slate-900 dark:hover:text-slate-200">
            System status
          </Link>
        </p>
      </main>
    </Show>
  );
}
