/**
 * /account — devices (with revoke), security (password, two-step verification with QR + recovery
 * codes), sign out / sign out everywhere, appearance.
 */
import { Tabs } from '@kobalte/core/tabs';
import { createSignal, For, onMount, Show } from 'solid-js';
import { KeyProgress } from '../components/KeyProgress.js';
import { ConfirmDialog } from '../components/Modal.js';
import { Qr } from '../components/Qr.js';
import { Banner, Button, errorText, Field, focusRing } from '../components/ui.js';
import { MIN_PASSWORD } from '../logic.js';
import { Link } from '../router.js';
import { useStore } from '../store/index.js';
import type { Theme } from '../store/state.js';

const card = 'rounded-2xl bg-white p-5 shadow-sm ring-1 ring-slate-200 dark:bg-slate-900 dark:ring-slate-800';
const date = (ms: number | null) => (ms ? new Date(ms).toLocaleString() : '—');

function Devices() {
  const { state, actions } = useStore();
  const [revoke, setRevoke] = createSignal<string | null>(null);
  const [error, setError] = createSignal<string | null>(null);
  onMount(() => void actions.loadDevices().catch((e) => setError(errorText(e))));
  return (
    <section class={card} aria-labelledby="devices-h">
      <h2 id="devices-h" class="font-semibold">
        Your devices
      </h2>
      <p class="mt-1 text-sm text-slate-500 dark:text-slate-400">
        Each device has its own keys. Revoking one signs it out and stops encrypting to it.
      </p>
      <Show when={error()}>
        <Banner kind="error" class="mt-3">
          {error()}
        </Banner>
      </Show>
      <ul class="mt-4 divide-y divide-slate-200 dark:divide-slate-800" data-testid="devices">
        <For each={state.devices}>
          {(d) => (
            <li class="flex items-center gap-3 py-3">
              <div class="min-w-0 flex-1">
                <p class="truncate font-mono text-sm">
                  {d.deviceId.slice(0, 12)}…
                  <Show when={d.current}>
                    <span class="ml-2 rounded-full bg-blue-100 px-2 py-0.5 font-sans text-xs text-blue-800 dark:bg-blue-900 dark:text-blue-100">
                      This browser
                    </span>
                  </Show>
                  <Show when={d.revoked}>
                    <span class="ml-2 rounded-full bg-slate-200 px-2 py-0.5 font-sans text-xs dark:bg-slate-800">
                      Revoked
                    </span>
                  </Show>
                </p>
                <p class="text-xs text-slate-500 dark:text-slate-400">
                  Added {date(d.createdAt)} · last seen {date(d.lastSeenAt)}
                </p>
              </div>
              <Show when={!d.current && !d.revoked}>
                <Button variant="secondary" onClick={() => setRevoke(d.deviceId)}>
                  Revoke
                </Button>
              </Show>
            </li>
          )}
        </For>
      </ul>
      <ConfirmDialog
        open={revoke() !== null}
        onOpenChange={(o) => !o && setRevoke(null)}
        title="Revoke this device?"
        confirmLabel="Revoke"
        danger
        onConfirm={() => actions.revokeDevice(revoke()!)}
      >
        <p>It is signed out at once, its keys are removed from your account and nobody encrypts to it any more.</p>
      </ConfirmDialog>
    </section>
  );
}

function Password() {
  const { state, actions } = useStore();
  const [current, setCurrent] = createSignal('');
  const [next, setNext] = createSignal('');
  const [confirm, setConfirm] = createSignal('');
  const [msg, setMsg] = createSignal<{ kind: 'info' | 'error'; text: string } | null>(null);
  const [busy, setBusy] = createSignal(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (next().length < MIN_PASSWORD) return setMsg({ kind: 'error', text: `At least ${MIN_PASSWORD} characters.` });
    if (next() !== confirm()) return setMsg({ kind: 'error', text: 'The new passwords do not match.' });
    setBusy(true);
    setMsg(null);
    try {
      await actions.changePassword(current(), next());
      setCurrent('');
      setNext('');
      setConfirm('');
      setMsg({ kind: 'info', text: 'Password changed. Your other sessions were signed out.' });
    } catch (err) {
      setMsg({ kind: 'error', text: errorText(err) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class={`${card} space-y-3`} onSubmit={submit} aria-labelledby="pw-h">
      <h2 id="pw-h" class="font-semibold">
        Change password
      </h2>
      <Field
        label="Current password"
        type="password"
        autocomplete="current-password"
        value={current()}
        onInput={(e) => setCurrent(e.currentTarget.value)}
      />
      <Field
        label="New password"
        type="password"
        autocomplete="new-password"
        value={next()}
        onInput={(e) => setNext(e.currentTarget.value)}
      />
      <Field
        label="Confirm new password"
        type="password"
        autocomplete="new-password"
        value={confirm()}
        onInput={(e) => setConfirm(e.currentTarget.value)}
      />
      <Show when={busy() && state.progress}>{(p) => <KeyProgress progress={p()} steps={['prehash']} />}</Show>
      <Show when={msg()}>{(m) => <Banner kind={m().kind}>{m().text}</Banner>}</Show>
      <Button type="submit" busy={busy()} disabled={busy() || !current() || !next()}>
        Change password
      </Button>
    </form>
  );
}

function TwoStep() {
  const { state, actions } = useStore();
  const [enrol, setEnrol] = createSignal<{ otpauthUri: string; secret: string } | null>(null);
  const [codes, setCodes] = createSignal<string[] | null>(null);
  const [code, setCode] = createSignal('');
  const [error, setError] = createSignal<string | null>(null);
  const [busy, setBusy] = createSignal(false);
  const run = async (fn: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await fn();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class={`${card} space-y-3`} aria-labelledby="totp-h">
      <h2 id="totp-h" class="font-semibold">
        Two-step verification
      </h2>
      <Show when={codes()}>
        {(list) => (
          <div class="space-y-3" data-testid="recovery-codes">
            <Banner kind="warn">
              Save these recovery codes somewhere safe. Each works once if you lose your authenticator. They are shown
              only now.
            </Banner>
            <ol class="grid grid-cols-2 gap-2 font-mono text-sm">
              <For each={list()}>{(c) => <li class="rounded bg-slate-100 px-2 py-1 dark:bg-slate-800">{c}</li>}</For>
            </ol>
            <Button onClick={() => setCodes(null)}>I saved them</Button>
          </div>
        )}
      </Show>
      <Show when={!codes()}>
        <Show
          when={state.me?.totpEnabled}
          fallback={
            <Show
              when={enrol()}
              fallback={
                <>
                  <p class="text-sm text-slate-500 dark:text-slate-400">
                    Ask for a code from an authenticator app when you sign in.
                  </p>
                  <Button busy={busy()} onClick={() => void run(async () => void setEnrol(await actions.totpEnroll()))}>
                    Set up
                  </Button>
                </>
              }
            >
              {(e) => (
                <form
                  class="space-y-3"
                  onSubmit={(ev) => {
                    ev.preventDefault();
                    void run(async () => {
                      setCodes(await actions.totpConfirm(code().replace(/\s/g, '')));
                      setEnrol(null);
                      setCode('');
                    });
                  }}
                >
                  <p class="text-sm">Scan this with your authenticator app, then enter the code it shows.</p>
                  <Qr data={e().otpauthUri} label="Authenticator set-up QR code" />
                  <p class="text-xs text-slate-500 dark:text-slate-400">
                    Or enter this key:{' '}
                    <code class="font-mono break-all select-all" data-testid="totp-secret">
                      {e().secret}
                    </code>
                  </p>
                  <Field
                    label="6-digit code"
                    inputmode="numeric"
                    autocomplete="one-time-code"
                    value={code()}
                    onInput={(ev) => setCode(ev.currentTarget.value)}
                  />
                  <Button type="submit" busy={busy()} disabled={busy()}>
                    Turn on
                  </Button>
                </form>
              )}
            </Show>
          }
        >
          <form
            class="space-y-3"
            onSubmit={(ev) => {
              ev.preventDefault();
              void run(async () => {
                await actions.totpDisable(code().replace(/\s/g, ''));
                setCode('');
              });
            }}
          >
            <p class="text-sm text-emerald-700 dark:text-emerald-400">✓ On — sign-in asks for a code.</p>
            <Field
              label="Code to turn it off"
              inputmode="numeric"
              value={code()}
              onInput={(ev) => setCode(ev.currentTarget.value)}
            />
            <Button type="submit" variant="secondary" busy={busy()} disabled={busy()}>
              Turn off
            </Button>
          </form>
        </Show>
      </Show>
      <Show when={error()}>
        <Banner kind="error">{error()}</Banner>
      </Show>
    </section>
  );
}

function Sessions() {
  const { actions } = useStore();
  const [all, setAll] = createSignal(false);
  return (
    <section class={`${card} space-y-3`} aria-labelledby="sess-h">
      <h2 id="sess-h" class="font-semibold">
        Sign out
      </h2>
      <p class="text-sm text-slate-500 dark:text-slate-400">
        Your keys and history stay in this browser; sign in again to use them.
      </p>
      <div class="flex flex-wrap gap-2">
        <Button variant="secondary" onClick={() => void actions.logout()}>
          Sign out
        </Button>
        <Button variant="danger" onClick={() => setAll(true)}>
          Sign out everywhere
        </Button>
      </div>
      <ConfirmDialog
        open={all()}
        onOpenChange={setAll}
        title="Sign out everywhere?"
        confirmLabel="Sign out everywhere"
        danger
        onConfirm={() => actions.logout(true)}
      >
        <p>Every session of your account ends, on every device, this one included.</p>
      </ConfirmDialog>
    </section>
  );
}

function Appearance() {
  const { state, actions } = useStore();
  return (
    <fieldset class={card}>
      <legend class="font-semibold">Theme</legend>
      <div class="mt-3 flex gap-2">
        <For each={['system', 'light', 'dark'] as Theme[]}>
          {(t) => (
            <label
              class={`flex cursor-pointer items-center gap-2 rounded-lg px-3 py-2 text-sm ring-1 ring-slate-300 has-[:checked]:bg-blue-600 has-[:checked]:text-white has-[:checked]:ring-blue-600 dark:ring-slate-700 ${focusRing}`}
            >
              <input
                type="radio"
                name="theme"
                class="sr-only"
                checked={state.theme === t}
                onChange={() => actions.setTheme(t)}
              />
              {t[0]!.toUpperCase() + t.slice(1)}
            </label>
          )}
        </For>
      </div>
    </fieldset>
  );
}

const tab = `rounded-lg px-3 py-1.5 text-sm font-medium text-slate-600 data-[selected]:bg-white data-[selected]:text-slate-900 data-[selected]:shadow-sm dark:text-slate-300 dark:data-[selected]:bg-slate-800 dark:data-[selected]:text-white ${focusRing}`;

export default function AccountPage() {
  const { state } = useStore();
  return (
    <main class="mx-auto h-full max-w-2xl overflow-y-auto p-4 sm:p-6">
      <div class="mb-4 flex items-center gap-3">
        <Link href="/chats" class={`rounded-lg p-1.5 ${focusRing}`} aria-label="Back to chats">
          ←
        </Link>
        <div>
          <h1 class="text-xl font-semibold">Account</h1>
          <p class="text-sm text-slate-500 dark:text-slate-400">Signed in as {state.me?.username}</p>
        </div>
      </div>
      <Tabs defaultValue="devices">
        <Tabs.List
          class="mb-4 inline-flex gap-1 rounded-xl bg-slate-200/70 p-1 dark:bg-slate-900"
          aria-label="Account sections"
        >
          <Tabs.Trigger class={tab} value="devices">
            Devices
          </Tabs.Trigger>
          <Tabs.Trigger class={tab} value="security">
            Security
          </Tabs.Trigger>
          <Tabs.Trigger class={tab} value="general">
            General
          </Tabs.Trigger>
        </Tabs.List>
        <Tabs.Content value="devices" class="space-y-4">
          <Devices />
        </Tabs.Content>
        <Tabs.Content value="security" class="space-y-4">
          <Password />
          <TwoStep />
        </Tabs.Content>
        <Tabs.Content value="general" class="space-y-4">
          <Appearance />
          <Sessions />
        </Tabs.Content>
      </Tabs>
    </main>
  );
}
