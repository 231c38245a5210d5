/**
 * The lock screen: shown instead of every page while the account's local store is passphrase-locked
 * (on start, after "lock now", or when signing in on a locked browser). The passphrase goes to the engine
 * worker, which derives the key with argon2id (progress shown) and opens the store; nothing else loads
 * before that. A forgotten passphrase cannot be recovered: the only way on is to erase this browser's
 * keys and history, then sign in and reset the identity.
 */
import { createSignal, onMount, Show } from 'solid-js';
import { KeyProgress } from '../components/KeyProgress.js';
import { ConfirmDialog } from '../components/Modal.js';
import { AuthCard, Banner, Button, errorText, Field, focusRing } from '../components/ui.js';
import { useStore } from '../store/index.js';

export default function Lock() {
  const { state, actions } = useStore();
  const [passphrase, setPassphrase] = createSignal('');
  const [error, setError] = createSignal<string | null>(null);
  const [busy, setBusy] = createSignal(false);
  const [erase, setErase] = createSignal(false);
  let input: HTMLInputElement | undefined;
  onMount(() => input?.focus());

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!passphrase()) {
      setError('Enter your passphrase.');
      input?.focus();
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await actions.unlock(passphrase());
      setPassphrase('');
    } catch (err) {
      setError(errorText(err));
      setBusy(false);
      // Back to the field, its text selected, so a retry is one keystroke away.
      queueMicrotask(() => {
        input?.focus();
        input?.select();
      });
    }
  };

  return (
    <AuthCard title="Unlock e2e-chat" subtitle={`This browser’s keys for “${state.locked?.username}” are locked.`}>
      <form class="space-y-4" onSubmit={submit} aria-label="Unlock" data-testid="lock-screen">
        <p class="text-sm text-slate-600 dark:text-slate-300">
          Enter the passphrase you set for this browser. It never leaves this device.
        </p>
        <Field
          ref={(el: HTMLInputElement) => {
            input = el;
          }}
          label="Passphrase"
          name="local-passphrase"
          type="password"
          autocomplete="off"
          value={passphrase()}
          onInput={(e) => setPassphrase(e.currentTarget.value)}
          disabled={busy()}
        />
        <Show when={error()}>
          <Banner kind="error">
            <span role="alert">{error()}</span>
          </Banner>
        </Show>
        <Show when={busy() && state.progress}>{(p) => <KeyProgress progress={p()} steps={['unlock']} />}</Show>
        <Button type="submit" class="w-full" busy={busy()} disabled={busy()}>
          Unlock
        </Button>
      </form>
      <div class="mt-5 flex flex-col items-center gap-2 text-sm">
        <button
          type="button"
          class={`rounded text-blue-600 hover:underline dark:text-blue-400 ${focusRing}`}
          onClick={() => setErase(true)}
          disabled={busy()}
        >
          Forgot the passphrase?
        </button>
        <button
          type="button"
          class={`rounded text-slate-500 hover:underline dark:text-slate-400 ${focusRing}`}
          onClick={() => actions.otherAccount()}
          disabled={busy()}
        >
          Sign in to another account
        </button>
      </div>
      <ConfirmDialog
        open={erase()}
        onOpenChange={setErase}
        title="Erase this browser’s keys?"
        confirmLabel="Erase keys and history"
        danger
        onConfirm={() => actions.eraseLocal()}
      >
        <p>
          Nobody can recover the passphrase — not us, not the server. Without it, the keys and message history kept in
          this browser cannot be opened.
        </p>
        <p>
          You can erase them and start over: sign in with your password, then <strong>reset your identity</strong>. Your
          contacts will see that your safety number changed, and messages sent to the old keys cannot be read here. This
          cannot be undone.
        </p>
      </ConfirmDialog>
    </AuthCard>
  );
}
