/**
 * /link — this browser becomes one of the account's devices (issue 14, docs/PROTOCOL.md §"Linking"): a QR
 * code and the same code as copyable text (for a computer without a camera), then "Linking as …", the
 * history arriving with a progress bar, and an honest report if it is interrupted (nothing imported; try
 * again while the other device still shows its screen, or carry on without it).
 */
import { createEffect, createSignal, Match, onCleanup, onMount, Show, Switch } from 'solid-js';
import { ConfirmDialog } from '../components/Modal.js';
import { Qr } from '../components/Qr.js';
import { AuthCard, Banner, Button, errorText, Spinner } from '../components/ui.js';
import { copyText } from '../logic.js';
import { Link as A, navigate } from '../router.js';
import { useStore } from '../store/index.js';

export default function LinkPage() {
  const { state, actions } = useStore();
  const [code, setCode] = createSignal<string | null>(null);
  const [expiresAt, setExpiresAt] = createSignal(0);
  const [now, setNow] = createSignal(Date.now());
  const [error, setError] = createSignal<string | null>(null);
  const [copied, setCopied] = createSignal<'copied' | 'failed' | null>(null);
  let codeBox: HTMLTextAreaElement | undefined;
  const tick = setInterval(() => setNow(Date.now()), 1000);
  onCleanup(() => clearInterval(tick));

  const start = async () => {
    setError(null);
    setCode(null);
    try {
      const r = await actions.linkStart();
      setCode(r.code);
      setExpiresAt(r.expiresAt);
    } catch (e) {
      setError(errorText(e));
    }
  };
  onMount(() => void start());
  onCleanup(() => {
    const p = state.link?.phase;
    if (p === 'waiting' || p === 'linking') void actions.linkCancel().catch(() => undefined);
  });

  const phase = () => state.link?.phase ?? 'waiting';
  // Once this browser is linked it stays on the second card, whatever happens to the history.
  const [linked, setLinked] = createSignal(false);
  createEffect(() => {
    if (['linked', 'history', 'interrupted', 'done'].includes(phase())) setLinked(true);
  });
  const left = () => Math.max(0, Math.round((expiresAt() - now()) / 1000));
  const expired = () => phase() === 'waiting' && code() !== null && left() === 0;
  const failed = () => (phase() === 'failed' ? errorText({ code: state.link?.code }) : null);
  // Review R13: this browser holds that account's store (signed out, or locked): never replaced unasked.
  const occupied = () =>
    phase() === 'failed' && state.link?.code === 'local_data_exists' ? state.link.username : null;
  const [confirmErase, setConfirmErase] = createSignal(false);
  const copy = async () => {
    if (await copyText(code() ?? '')) {
      setCopied('copied');
      setTimeout(() => setCopied((c) => (c === 'copied' ? null : c)), 2000);
    } else {
      // Review R9: the browser refused the write — say so, and select the code for copying by hand.
      setCopied('failed');
      codeBox?.focus();
      codeBox?.select();
    }
  };

  return (
    <Switch>
      <Match when={!linked()}>
        <AuthCard
          title="Link to a device you already use"
          subtitle="Your keys come from your other device — never from our server."
        >
          <div class="space-y-4" data-testid="link-new-device">
            <ol class="list-decimal space-y-1 pl-5 text-sm text-slate-600 dark:text-slate-300">
              <li>On a device where you are signed in, open Account → Devices → “Link a new device”.</li>
              <li>Scan this code with it, or copy the text below and paste it there.</li>
            </ol>
            <Show when={code() && !expired() && phase() === 'waiting'}>
              <div class="flex justify-center">
                <Qr data={code()!} label="Link code for this browser" class="size-56" />
              </div>
              <div>
                <label for="link-code" class="block text-sm font-medium text-slate-700 dark:text-slate-300">
                  Or copy this code
                </label>
                <div class="mt-1 flex gap-2">
                  <textarea
                    id="link-code"
                    readonly
                    rows={3}
                    class="block w-full resize-none rounded-lg bg-slate-50 px-2 py-1.5 font-mono text-xs break-all text-slate-800 ring-1 ring-slate-300 dark:bg-slate-950 dark:text-slate-200 dark:ring-slate-700"
                    data-testid="link-code"
                    ref={codeBox}
                    onFocus={(e) => e.currentTarget.select()}
                  >
                    {code()}
                  </textarea>
                </div>
                <div class="mt-2 flex items-center justify-between text-xs text-slate-600 dark:text-slate-300">
                  <span role="timer" aria-live="off">
                    Valid for {Math.floor(left() / 60)}:{String(left() % 60).padStart(2, '0')}
                  </span>
                  <Button variant="secondary" onClick={() => void copy()}>
                    {copied() === 'copied' ? 'Copied' : 'Copy code'}
                  </Button>
                </div>
                <Show when={copied() === 'failed'}>
                  <p class="mt-2 text-xs text-red-700 dark:text-red-400" role="alert" data-testid="copy-failed">
                    Could not copy: this browser refused. The code is selected — copy it by hand (Ctrl+C or ⌘C).
                  </p>
                </Show>
              </div>
              <p class="flex items-center gap-2 text-sm" role="status">
                <Spinner class="text-blue-600" /> Waiting for your other device…
              </p>
            </Show>
            <Show when={phase() === 'linking'}>
              <p class="flex items-center gap-2 text-sm" role="status" data-testid="link-linking">
                <Spinner class="text-blue-600" /> Linking this browser as “{state.link?.username}”…
              </p>
            </Show>
            <Show when={!code() && !error() && phase() === 'waiting'}>
              <p class="flex items-center gap-2 text-sm" role="status">
                <Spinner class="text-blue-600" /> Preparing a code…
              </p>
            </Show>
            <Show when={occupied()}>
              {(username) => (
                <div class="space-y-3" data-testid="link-local-data">
                  <Banner kind="warn">
                    <span role="alert">
                      This browser already holds the keys and messages of “{username()}” from an earlier sign-in.
                      Linking would replace them, so nothing was changed and your other device was told.
                    </span>
                  </Banner>
                  <p class="text-sm text-slate-600 dark:text-slate-300">
                    To keep them, sign in instead. To link anyway, erase them from this browser first.
                  </p>
                  <div class="flex flex-col gap-2">
                    <Button onClick={() => navigate('/login', { replace: true })}>Sign in instead</Button>
                    <Button variant="secondary" onClick={() => setConfirmErase(true)} data-testid="link-erase-local">
                      Erase them and link this browser
                    </Button>
                  </div>
                  <ConfirmDialog
                    open={confirmErase()}
                    onOpenChange={setConfirmErase}
                    title={`Erase “${username()}” from this browser?`}
                    confirmLabel="Erase keys and messages"
                    danger
                    onConfirm={async () => {
                      await actions.linkEraseLocal(username());
                      await start();
                    }}
                  >
                    <p>
                      The keys and message history this browser keeps for “{username()}” are deleted. Messages that only
                      this browser has — older than what your other device keeps, or never synced to it — are lost for
                      good, and a local passphrase set here goes with them.
                    </p>
                    <p>Your account, your other devices and their messages are not touched. This cannot be undone.</p>
                  </ConfirmDialog>
                </div>
              )}
            </Show>
            <Show when={!occupied() && (expired() || failed() || error())}>
              <Banner kind="error">
                <span role="alert">{expired() ? 'This code expired.' : (failed() ?? error())}</span>
              </Banner>
              <Button class="w-full" onClick={() => void start()}>
                Show a new code
              </Button>
            </Show>
            <p class="text-center text-sm text-slate-500 dark:text-slate-400">
              <A href="/login" class="font-medium text-blue-600 hover:underline dark:text-blue-400">
                Back to sign in
              </A>
            </p>
          </div>
        </AuthCard>
      </Match>
      <Match when={linked()}>
        <AuthCard
          title="This browser is linked"
          subtitle={`Signed in as ${state.me?.username ?? state.link?.username ?? ''}.`}
        >
          <div class="space-y-4" data-testid="link-history">
            <Show when={phase() === 'linked'}>
              <p class="flex items-center gap-2 text-sm" role="status">
                <Spinner class="text-blue-600" /> Waiting for your history…
              </p>
            </Show>
            <Show when={phase() === 'history'}>
              <div role="status" aria-live="polite" class="space-y-2">
                <p class="text-sm">
                  Receiving your history: {state.link?.done ?? 0} of {state.link?.total ?? 0} parts
                  <Show when={state.link?.messages}> ({state.link?.messages} messages)</Show>
                </p>
                <progress
                  class="h-1.5 w-full overflow-hidden rounded-full [&::-webkit-progress-bar]:bg-slate-200 [&::-webkit-progress-value]:bg-blue-600 dark:[&::-webkit-progress-bar]:bg-slate-800"
                  max={Math.max(1, state.link?.total ?? 1)}
                  value={state.link?.done ?? 0}
                  aria-label="History received"
                />
              </div>
            </Show>
            <Show when={phase() === 'interrupted'}>
              <Banner kind="warn">
                <span role="alert" data-testid="link-interrupted">
                  The history transfer was interrupted. Nothing was imported, so nothing is half there. Try again while
                  your other device still shows the linking screen, or continue without your history.
                </span>
              </Banner>
              <div class="flex flex-col gap-2">
                <Button onClick={() => void actions.linkRetry().catch((e) => setError(errorText(e)))}>Try again</Button>
                <Button variant="secondary" onClick={() => navigate('/chats', { replace: true })}>
                  Continue without history
                </Button>
              </div>
            </Show>
            <Show when={phase() === 'failed'}>
              <Banner kind="error">
                <span role="alert">{failed()}</span>
              </Banner>
            </Show>
            <Show when={phase() === 'done' || phase() === 'failed'}>
              <Show when={phase() === 'done'}>
                <p class="text-sm text-emerald-700 dark:text-emerald-400" role="status" data-testid="link-done">
                  ✓ Done
                  <Show when={state.link?.messages}> — {state.link?.messages} messages from your other device.</Show>
                </p>
              </Show>
              <Button class="w-full" onClick={() => navigate('/chats', { replace: true })}>
                Open your chats
              </Button>
            </Show>
            <p class="text-xs text-slate-500 dark:text-slate-400">
              Your contacts see the same safety number as before: this browser uses your identity, with its own keys.
            </p>
          </div>
        </AuthCard>
      </Match>
    </Switch>
  );
}
