/**
 * Account → General → "Your data" (issue 18; README §Your data): download what the server holds about the
 * account; download the history this browser holds (readable JSON, or encrypted with a passphrase — made
 * in the engine worker from the local store, nothing is sent); and delete the account (password, plus the
 * authenticator code when two-step is on).
 */
import { createSignal, Show } from 'solid-js';
import { KeyProgress } from '../components/KeyProgress.js';
import { Banner, Button, errorText, Field } from '../components/ui.js';
import { useStore } from '../store/index.js';

/** Shortest passphrase the app accepts for an encrypted history export. */
const MIN_EXPORT_PASSPHRASE = 8;

/** Saves `blob` as a download named `name`. */
function save(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

const card = 'rounded-2xl bg-white p-5 shadow-sm ring-1 ring-slate-200 dark:bg-slate-900 dark:ring-slate-800';

export function YourData() {
  const { state, actions } = useStore();
  const [msg, setMsg] = createSignal<{ kind: 'info' | 'error'; text: string } | null>(null);
  /** Which form is open under the buttons. */
  const [open, setOpen] = createSignal<'history' | 'delete' | null>(null);
  const deleting = () => open() === 'delete';
  const setDeleting = (on: boolean) => setOpen(on ? 'delete' : null);
  const [password, setPassword] = createSignal('');
  const [code, setCode] = createSignal('');
  const [confirmName, setConfirmName] = createSignal('');
  const [busy, setBusy] = createSignal(false);

  const download = async () => {
    setMsg(null);
    try {
      const json = await actions.exportServerData();
      save(new Blob([json], { type: 'application/json' }), `e2e-chat-${state.me?.username ?? 'account'}-data.json`);
      setMsg({ kind: 'info', text: 'Your data was downloaded.' });
    } catch (err) {
      setMsg({ kind: 'error', text: errorText(err) });
    }
  };

  // ---- the local history ----
  const [encrypt, setEncrypt] = createSignal(true);
  const [passphrase, setPassphrase] = createSignal('');
  const [passphrase2, setPassphrase2] = createSignal('');
  const historyProblem = () =>
    !encrypt()
      ? null
      : passphrase().length < MIN_EXPORT_PASSPHRASE
        ? `At least ${MIN_EXPORT_PASSPHRASE} characters.`
        : passphrase() !== passphrase2()
          ? 'The passphrases differ.'
          : null;
  const saveHistory = async (e: Event) => {
    e.preventDefault();
    if (historyProblem()) return;
    setBusy(true);
    setMsg(null);
    try {
      const r = await actions.exportHistory(encrypt() ? { passphrase: passphrase() } : {});
      const name = `e2e-chat-${state.me?.username ?? 'account'}-history`;
      save(
        new Blob([r.bytes as Uint8Array<ArrayBuffer>], {
          type: r.encrypted ? 'application/octet-stream' : 'application/json',
        }),
        r.encrypted ? `${name}.e2ehist` : `${name}.json`,
      );
      setMsg({
        kind: 'info',
        text: `Your history was downloaded${r.encrypted ? ', encrypted' : ''}: ${r.conversations} conversations, ${r.messages} messages.`,
      });
      setPassphrase('');
      setPassphrase2('');
      setOpen(null);
    } catch (err) {
      setMsg({ kind: 'error', text: errorText(err) });
    } finally {
      setBusy(false);
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
      <p class="text-sm text-slate-500 dark:text-slate-400">
        Your messages exist only on your devices. "Download my history" saves what this browser holds — as a readable
        file, or encrypted with a passphrase you choose — without sending anything to the server.
      </p>
      <div class="flex flex-wrap gap-2">
        <Button variant="secondary" onClick={() => void download()}>
          Download my data
        </Button>
        <Show when={open() !== 'history'}>
          <Button variant="secondary" onClick={() => setOpen('history')} disabled={busy()}>
            Download my history…
          </Button>
        </Show>
        <Show when={!deleting()}>
          <Button variant="danger" onClick={() => setDeleting(true)}>
            Delete account…
          </Button>
        </Show>
      </div>
      <Show when={open() === 'history'}>
        <form
          class="space-y-3 border-t border-slate-200 pt-3 dark:border-slate-800"
          onSubmit={saveHistory}
          aria-label="Download my history"
        >
          <fieldset class="space-y-2">
            <legend class="text-sm font-medium">Format</legend>
            <label class="flex items-center gap-2 text-sm">
              <input
                type="radio"
                name="history-format"
                checked={encrypt()}
                onChange={() => setEncrypt(true)}
                // The form opens from the keyboard too: focus goes to its first control.
                ref={(el: HTMLInputElement) => queueMicrotask(() => el.focus())}
              />
              Encrypted with a passphrase (argon2id + AES-256-GCM)
            </label>
            <label class="flex items-center gap-2 text-sm">
              <input type="radio" name="history-format" checked={!encrypt()} onChange={() => setEncrypt(false)} />
              Readable file (JSON) — anyone who gets the file can read it
            </label>
          </fieldset>
          <Show when={encrypt()}>
            <Field
              label="Export passphrase"
              type="password"
              autocomplete="new-password"
              hint="Needed to open the file; it cannot be recovered."
              value={passphrase()}
              onInput={(e) => setPassphrase(e.currentTarget.value)}
            />
            <Field
              label="Repeat the passphrase"
              type="password"
              autocomplete="new-password"
              value={passphrase2()}
              error={passphrase2() ? historyProblem() : null}
              onInput={(e) => setPassphrase2(e.currentTarget.value)}
            />
          </Show>
          <Show when={busy() && state.progress}>{(p) => <KeyProgress progress={p()} steps={['seal']} />}</Show>
          <div class="flex gap-2">
            <Button type="submit" variant="primary" busy={busy()} disabled={busy() || !!historyProblem()}>
              Save history
            </Button>
            <Button variant="secondary" onClick={() => setOpen(null)} disabled={busy()}>
              Cancel
            </Button>
          </div>
        </form>
      </Show>
      <Show when={deleting()}>
        <form class="space-y-3 border-t border-slate-200 pt-3 dark:border-slate-800" onSubmit={remove}>
          <p class="text-sm">
            This deletes your account on the server and your history in this browser. Each group you are in shows that
            you left (if you own one, it passes to another member); each direct chat shows that your account was
            deleted. Your username stays reserved for 30 days. This cannot be undone.
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
