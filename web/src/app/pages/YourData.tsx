/**
 * Account → General → "Your data" (issue 18; README §Your data): download what the server holds about the
 * account, and delete the account (password, plus the authenticator code when two-step is on).
 */
import { createSignal, Show } from 'solid-js';
import { KeyProgress } from '../components/KeyProgress.js';
import { Banner, Button, errorText, Field } from '../components/ui.js';
import { useStore } from '../store/index.js';

const card = 'rounded-2xl bg-white p-5 shadow-sm ring-1 ring-slate-200 dark:bg-slate-900 dark:ring-slate-800';

export function YourData() {
  const { state, actions } = useStore();
  const [msg, setMsg] = createSignal<{ kind: 'info' | 'error'; text: string } | null>(null);
  const [deleting, setDeleting] = createSignal(false);
  const [password, setPassword] = createSignal('');
  const [code, setCode] = createSignal('');
  const [confirmName, setConfirmName] = createSignal('');
  const [busy, setBusy] = createSignal(false);

  const download = async () => {
    setMsg(null);
    try {
      const json = await actions.exportServerData();
      const url = URL.createObjectURL(new Blob([json], { type: 'application/json' }));
      const a = document.createElement('a');
      a.href = url;
      a.download = `e2e-chat-${state.me?.username ?? 'account'}-data.json`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      setMsg({ kind: 'info', text: 'Your data was downloaded.' });
    } catch (err) {
      setMsg({ kind: 'error', text: errorText(err) });
    }
  };

  const remove = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setMsg(null);
    try {
      await actions.deleteAccount({ password: password(), ...(code() ? { code: code() } : {}) });
    } catch (err) {
      setMsg({ kind: 'error', text: errorText(err) });
      setBusy(false);
    }
  };

  return (
    <section class={`${card} space-y-3`} aria-labelledby="data-h">
      <h2 id="data-h" class="font-semibold">
        Your data
      </h2>
      <p class="text-sm text-slate-500 dark:text-slate-400">
        The download holds everything the server keeps about your account: profile, devices, conversations and roles,
        security events. Your messages are not in it — the server never had them in a form it can read.
      </p>
      <div class="flex flex-wrap gap-2">
        <Button variant="secondary" onClick={() => void download()}>
          Download my data
        </Button>
        <Show when={!deleting()}>
          <Button variant="danger" onClick={() => setDeleting(true)}>
            Delete account…
          </Button>
        </Show>
      </div>
      <Show when={deleting()}>
        <form class="space-y-3 border-t border-slate-200 pt-3 dark:border-slate-800" onSubmit={remove}>
          <p class="text-sm">
            This deletes your account on the server and your history in this browser. Each group you are in shows that
            you left; if you own a group, it passes to another member. Your username stays reserved for 30 days. This
            cannot be undone.
          </p>
          <Field
            label="Password"
            type="password"
            autocomplete="current-password"
            // The form opens from the keyboard too: focus goes to its first field.
            ref={(el: HTMLInputElement) => queueMicrotask(() => el.focus())}
            value={password()}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
          <Show when={state.me?.totpEnabled}>
            <Field
              label="Authenticator code"
              inputmode="numeric"
              autocomplete="one-time-code"
              value={code()}
              onInput={(e) => setCode(e.currentTarget.value.trim())}
            />
          </Show>
          <Field
            label={`Type your username (${state.me?.username ?? ''}) to confirm`}
            value={confirmName()}
            onInput={(e) => setConfirmName(e.currentTarget.value)}
          />
          <Show when={busy() && state.progress}>{(p) => <KeyProgress progress={p()} steps={['prehash']} />}</Show>
          <div class="flex gap-2">
            <Button
              type="submit"
              variant="danger"
              busy={busy()}
              disabled={busy() || !password() || confirmName().trim().toLowerCase() !== state.me?.username}
            >
              Delete my account
            </Button>
            <Button variant="secondary" onClick={() => setDeleting(false)} disabled={busy()}>
              Cancel
            </Button>
          </div>
        </form>
      </Show>
      <Show when={msg()}>{(m) => <Banner kind={m().kind}>{m().text}</Banner>}</Show>
    </section>
  );
}
