/**
 * /account — devices (names, this device marked, rename, remove, "Link a new device"), security (password, two-step verification with QR + recovery
 * codes, this browser's local passphrase and "lock now"), sign out / sign out everywhere, appearance.
 */
import { Tabs } from '@kobalte/core/tabs';
import { createSignal, For, onMount, Show } from 'solid-js';
import { KeyProgress } from '../components/KeyProgress.js';
import { LinkDevice } from '../components/LinkDevice.js';
import { ConfirmDialog } from '../components/Modal.js';
import { NotificationSetting } from '../components/Notifications.js';
import { Qr } from '../components/Qr.js';
import { TypingSetting } from '../components/Typing.js';
import { Avatar, Banner, Button, createAction, errorText, Field, focusRing } from '../components/ui.js';
import { deviceLabel, MIN_PASSWORD } from '../logic.js';
import { createPasswordCheck } from '../password-strength-loader.js';
import { Link } from '../router.js';
import { useStore } from '../store/index.js';
import type { Theme } from '../store/state.js';
import { YourData } from './YourData.js';

const card = 'rounded-2xl bg-white p-5 shadow-sm ring-1 ring-slate-200 dark:bg-slate-900 dark:ring-slate-800';
const date = (ms: number | null) => (ms ? new Date(ms).toLocaleString() : '—');

function Devices() {
  const { state, actions } = useStore();
  const [revoke, setRevoke] = createSignal<string | null>(null);
  const [renaming, setRenaming] = createSignal<string | null>(null);
  const [newName, setNewName] = createSignal('');
  const [linking, setLinking] = createSignal(false);
  const [error, setError] = createSignal<string | null>(null);
  onMount(async () => {
    try {
      await actions.loadDevices();
      // This device has no name yet (registered before names, or the first device): give it its readable
      // default ("Chromium on Linux"), encrypted like every name, so the user's other devices see it too.
      const mine = state.devices.find((d) => d.current && !d.revoked);
      if (mine && mine.name === null) await actions.renameDevice(mine.deviceId, deviceLabel(navigator.userAgent));
    } catch (e) {
      setError(errorText(e));
    }
  });
  const live = () => state.devices.filter((d) => !d.revoked);
  const revoked = () => state.devices.filter((d) => d.revoked);
  const label = (d: { name: string | null; current: boolean }) =>
    d.name ?? (d.current ? deviceLabel(navigator.userAgent) : 'Unnamed device');
  const rename = async (e: Event) => {
    e.preventDefault();
    const id = renaming();
    if (!id || !newName().trim()) return;
    try {
      await actions.renameDevice(id, newName().trim());
      setRenaming(null);
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <section class={card} aria-labelledby="devices-h">
      <div class="flex flex-wrap items-start justify-between gap-3">
        <div>
          <h2 id="devices-h" class="font-semibold">
            Your devices
          </h2>
          <p class="mt-1 text-sm text-slate-500 dark:text-slate-400">
            Each device has its own keys and reads your messages. Names are encrypted: only your devices can read them.
          </p>
        </div>
        <Button onClick={() => setLinking(true)} data-testid="link-new-device-button">
          Link a new device
        </Button>
      </div>
      <Show when={error()}>
        <Banner kind="error" class="mt-3">
          {error()}
        </Banner>
      </Show>
      <ul class="mt-4 divide-y divide-slate-200 dark:divide-slate-800" data-testid="devices">
        <For each={live()}>
          {(d) => (
            <li class="flex flex-wrap items-center gap-3 py-3" data-testid="device" data-device={d.deviceId}>
              <div class="min-w-0 flex-1">
                <Show
                  when={renaming() === d.deviceId}
                  fallback={
                    <p class="truncate text-sm font-medium" data-testid="device-label">
                      {label(d)}
                      <Show when={d.current}>
                        <span class="ml-2 rounded-full bg-blue-100 px-2 py-0.5 text-xs font-normal text-blue-800 dark:bg-blue-900 dark:text-blue-100">
                          This device
                        </span>
                      </Show>
                    </p>
                  }
                >
                  <form class="flex gap-2" onSubmit={rename} aria-label="Rename device">
                    <Field
                      label="Device name"
                      class="flex-1"
                      maxlength={40}
                      value={newName()}
                      onInput={(e) => setNewName(e.currentTarget.value)}
                      autofocus
                    />
                    <Button type="submit" class="self-end">
                      Save
                    </Button>
                  </form>
                </Show>
                <p class="text-xs text-slate-600 dark:text-slate-400">
                  Linked {date(d.createdAt)} · last seen {d.current ? 'now' : date(d.lastSeenAt)}
                </p>
              </div>
              <div class="flex gap-2">
                <Show when={renaming() !== d.deviceId}>
                  <Button
                    variant="ghost"
                    onClick={() => {
                      setNewName(d.name ?? '');
                      setRenaming(d.deviceId);
                    }}
                    aria-label={`Rename ${label(d)}`}
                  >
                    Rename
                  </Button>
                </Show>
                <Show when={!d.current}>
                  <Button variant="secondary" onClick={() => setRevoke(d.deviceId)} aria-label={`Remove ${label(d)}`}>
                    Remove
                  </Button>
                </Show>
              </div>
            </li>
          )}
        </For>
      </ul>
      <Show when={revoked().length}>
        <details class="mt-3 text-sm">
          <summary class={`cursor-pointer rounded text-slate-600 dark:text-slate-400 ${focusRing}`}>
            Removed devices ({revoked().length})
          </summary>
          <ul class="mt-2 space-y-1 text-xs text-slate-600 dark:text-slate-400">
            <For each={revoked()}>{(d) => <li>{label(d)} — removed</li>}</For>
          </ul>
        </details>
      </Show>
      <ConfirmDialog
        open={revoke() !== null}
        onOpenChange={(o) => !o && setRevoke(null)}
        title="Remove this device?"
        confirmLabel="Remove"
        danger
        onConfirm={() => actions.revokeDevice(revoke()!)}
      >
        <p>
          It is signed out at once and nobody encrypts to it any more. When it next connects it shows “This device was
          removed from your account” and erases its keys and messages.
        </p>
      </ConfirmDialog>
      <LinkDevice
        open={linking()}
        onOpenChange={(o) => {
          setLinking(o);
          if (!o) void actions.loadDevices().catch(() => undefined);
        }}
      />
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
  // The strength checker (zxcvbn-ts) loads when the new-password field is first used, never with a page.
  const strength = createPasswordCheck(next, () => [state.me?.username ?? '']);
  const check = strength.check;
  const submit = async (e: Event) => {
    e.preventDefault();
    if (next().length < MIN_PASSWORD) return setMsg({ kind: 'error', text: `At least ${MIN_PASSWORD} characters.` });
    await strength.ensure().catch(() => null);
    const s = check();
    if (s && !s.ok) return setMsg({ kind: 'error', text: `The new password is too easy to guess: ${s.reason}` });
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
        onFocus={strength.load}
        onInput={(e) => setNext(e.currentTarget.value)}
        error={check()?.ok === false ? check()!.reason : null}
        hint={check()?.ok ? 'Strong enough.' : `At least ${MIN_PASSWORD} characters; a few unrelated words work well.`}
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

const MIN_PASSPHRASE = 8;

/** Saves the recovery codes as a text file (made here; nothing is uploaded). */
function downloadCodes(codes: readonly string[], username: string): void {
  const text = `e2e-chat recovery codes for ${username}\nEach code works once. Keep them somewhere safe.\n\n${codes.join('\n')}\n`;
  const url = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = `e2e-chat-recovery-codes-${username}.txt`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** This browser's passphrase lock: set, change, remove, lock now. */
function LocalLock() {
  const { state, actions } = useStore();
  const [mode, setMode] = createSignal<'idle' | 'set' | 'change' | 'remove'>('idle');
  const [current, setCurrent] = createSignal('');
  const [next, setNext] = createSignal('');
  const [confirm, setConfirm] = createSignal('');
  const [msg, setMsg] = createSignal<{ kind: 'info' | 'error'; text: string } | null>(null);
  const [busy, setBusy] = createSignal(false);
  onMount(() => void actions.loadLocalLock().catch((e) => setMsg({ kind: 'error', text: errorText(e) })));
  let form: HTMLFormElement | undefined;
  const reset = (m: 'idle' | 'set' | 'change' | 'remove') => {
    setMode(m);
    setCurrent('');
    setNext('');
    setConfirm('');
    if (m !== 'idle') {
      setMsg(null);
      // Focus moves into the form that just opened.
      queueMicrotask(() => form?.querySelector('input')?.focus());
    }
  };
  const submit = async (e: Event) => {
    e.preventDefault();
    const m = mode();
    if (m !== 'remove') {
      if (next().length < MIN_PASSPHRASE)
        return setMsg({ kind: 'error', text: `A passphrase has at least ${MIN_PASSPHRASE} characters.` });
      if (next() !== confirm()) return setMsg({ kind: 'error', text: 'The passphrases do not match.' });
    }
    if (m !== 'set' && !current()) return setMsg({ kind: 'error', text: 'Enter the current passphrase.' });
    setBusy(true);
    setMsg(null);
    try {
      await actions.setLocalPassphrase(m === 'remove' ? null : next(), m === 'set' ? undefined : current());
      reset('idle');
      setMsg({
        kind: 'info',
        text:
          m === 'remove'
            ? 'Passphrase removed. This browser opens without one.'
            : 'Passphrase set. This browser will ask for it when the app starts.',
      });
    } catch (err) {
      setMsg({ kind: 'error', text: errorText(err) });
    } finally {
      setBusy(false);
    }
  };
  const title = () =>
    ({ idle: '', set: 'Set a passphrase', change: 'Change passphrase', remove: 'Remove passphrase' })[mode()];
  return (
    <section class={`${card} space-y-3`} aria-labelledby="lock-h" data-testid="local-lock">
      <h2 id="lock-h" class="font-semibold">
        Passphrase for this browser
      </h2>
      <div class="space-y-2 text-sm text-slate-600 dark:text-slate-300">
        <p>
          Your keys and message history are stored encrypted in this browser. A passphrase adds a lock: without it,
          someone who gets hold of this browser’s storage (a lost laptop, a copied profile) cannot open them. It is not
          your account password and never leaves this device.
        </p>
        <p>
          <strong class="font-semibold text-slate-900 dark:text-slate-100">
            If you forget it, this browser’s keys are lost.
          </strong>{' '}
          Nobody can recover it; your account can then only be used again with “reset identity”, and your contacts will
          see your safety number change. It does not protect the app while it is unlocked and open.
        </p>
      </div>
      <Show when={state.localPassphrase !== null && mode() === 'idle'}>
        <Show
          when={state.localPassphrase}
          fallback={
            <div class="flex flex-wrap gap-2">
              <Button onClick={() => reset('set')}>Set a passphrase</Button>
            </div>
          }
        >
          <p class="text-sm text-emerald-700 dark:text-emerald-400" data-testid="local-lock-on">
            ✓ On — this browser asks for the passphrase when the app starts.
          </p>
          <div class="flex flex-wrap gap-2">
            <Button onClick={() => void actions.lockNow()}>Lock now</Button>
            <Button variant="secondary" onClick={() => reset('change')}>
              Change passphrase
            </Button>
            <Button variant="secondary" onClick={() => reset('remove')}>
              Remove passphrase
            </Button>
          </div>
        </Show>
      </Show>
      <Show when={mode() !== 'idle'}>
        <form
          ref={(el) => {
            form = el;
          }}
          class="space-y-3"
          onSubmit={submit}
          aria-label={title()}
        >
          <h3 class="text-sm font-semibold">{title()}</h3>
          <Show when={mode() !== 'set'}>
            <Field
              label="Current passphrase"
              type="password"
              autocomplete="off"
              value={current()}
              onInput={(e) => setCurrent(e.currentTarget.value)}
              disabled={busy()}
            />
          </Show>
          <Show when={mode() !== 'remove'}>
            <Field
              label="New passphrase"
              type="password"
              autocomplete="new-password"
              hint={`At least ${MIN_PASSPHRASE} characters. A few unrelated words are easy to remember.`}
              value={next()}
              onInput={(e) => setNext(e.currentTarget.value)}
              disabled={busy()}
            />
            <Field
              label="Confirm new passphrase"
              type="password"
              autocomplete="new-password"
              value={confirm()}
              onInput={(e) => setConfirm(e.currentTarget.value)}
              disabled={busy()}
            />
          </Show>
          <Show when={busy() && state.progress}>{(p) => <KeyProgress progress={p()} steps={['unlock']} />}</Show>
          <Show when={msg()?.kind === 'error'}>
            <Banner kind="error">
              <span role="alert">{msg()?.text}</span>
            </Banner>
          </Show>
          <div class="flex flex-wrap gap-2">
            <Button type="submit" variant={mode() === 'remove' ? 'danger' : 'primary'} busy={busy()} disabled={busy()}>
              {title()}
            </Button>
            <Button variant="ghost" onClick={() => reset('idle')} disabled={busy()}>
              Cancel
            </Button>
          </div>
        </form>
      </Show>
      <Show when={mode() === 'idle' && msg()}>
        {(m) => (
          <Banner kind={m().kind}>
            <span role={m().kind === 'error' ? 'alert' : 'status'}>{m().text}</span>
          </Banner>
        )}
      </Show>
    </section>
  );
}

function TwoStep() {
  const { state, actions } = useStore();
  const [enrol, setEnrol] = createSignal<{ otpauthUri: string; secret: string } | null>(null);
  const [codes, setCodes] = createSignal<string[] | null>(null);
  const [code, setCode] = createSignal('');
  const [password, setPassword] = createSignal('');
  const { busy, error, run } = createAction();
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
            <div class="flex flex-wrap gap-2">
              <Button
                variant="secondary"
                onClick={() =>
                  void navigator.clipboard
                    .writeText(list().join('\n'))
                    .then(() => actions.toast('Recovery codes copied.'))
                    .catch(() => actions.toast('Could not copy. Select the codes and copy them by hand.', 'error'))
                }
              >
                Copy
              </Button>
              <Button variant="secondary" onClick={() => downloadCodes(list(), state.me?.username ?? 'account')}>
                Download
              </Button>
              <Button onClick={() => setCodes(null)}>I saved them</Button>
            </div>
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
                <form
                  class="space-y-3"
                  onSubmit={(ev) => {
                    ev.preventDefault();
                    void run(async () => {
                      setEnrol(await actions.totpEnroll(password()));
                      setPassword('');
                    });
                  }}
                >
                  <p class="text-sm text-slate-500 dark:text-slate-400">
                    Ask for a code from an authenticator app when you sign in. Confirm your password to set it up.
                  </p>
                  <Field
                    label="Password"
                    type="password"
                    autocomplete="current-password"
                    value={password()}
                    onInput={(ev) => setPassword(ev.currentTarget.value)}
                  />
                  <Show when={busy() && state.progress}>
                    {(p) => <KeyProgress progress={p()} steps={['prehash']} />}
                  </Show>
                  <Button type="submit" busy={busy()} disabled={busy() || !password()}>
                    Set up
                  </Button>
                </form>
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

/** Issue 17: privacy settings kept in this account's sealed store. */
function Privacy() {
  return (
    <fieldset class={`${card} space-y-3`}>
      <legend class="font-semibold">Privacy</legend>
      <TypingSetting />
      <NotificationSetting />
    </fieldset>
  );
}

const tab = `rounded-lg px-3 py-1.5 text-sm font-medium text-slate-600 data-[selected]:bg-white data-[selected]:text-slate-900 data-[selected]:shadow-sm dark:text-slate-300 dark:data-[selected]:bg-slate-800 dark:data-[selected]:text-white ${focusRing}`;

// ---- people: profile name and picture, blocked people (issue 17) ----------------------------------------

function Profile() {
  const { state, actions } = useStore();
  const me = () => state.me?.userId ?? '';
  const [name, setName] = createSignal(state.profiles[me()]?.name ?? '');
  const [file, setFile] = createSignal<File | null | 'keep'>('keep');
  const [preview, setPreview] = createSignal<string | null>(null);
  const [msg, setMsg] = createSignal<{ kind: 'info' | 'error'; text: string } | null>(null);
  const { busy, run } = createAction();
  onMount(() => {
    void actions.loadProfile(me()).then(() => setName(state.profiles[me()]?.name ?? ''));
  });
  const shown = () => (file() === 'keep' ? (state.profiles[me()]?.avatarUrl ?? null) : preview());
  const pick = (f: File | null) => {
    const old = preview();
    if (old) URL.revokeObjectURL(old);
    setPreview(f ? URL.createObjectURL(f) : null);
    setFile(f);
  };
  const submit = async (e: Event) => {
    e.preventDefault();
    setMsg(null);
    const ok = await run(() => actions.setProfile(name().trim(), file()));
    if (ok) {
      setFile('keep');
      setMsg({ kind: 'info', text: 'Profile saved. People you talk to see it with your next message.' });
    } else setMsg({ kind: 'error', text: 'Could not save the profile.' });
  };
  return (
    <form class={`${card} space-y-3`} onSubmit={submit} aria-labelledby="profile-h" data-testid="profile-form">
      <h2 id="profile-h" class="font-semibold">
        Profile
      </h2>
      <p class="text-sm text-slate-600 dark:text-slate-300">
        Your name and picture are encrypted. Only people you message (or whose requests you accept) get the key; the
        server stores them sealed.
      </p>
      <div class="flex items-center gap-3">
        <Avatar name={name() || state.me?.username || ''} seed={me()} src={shown()} />
        <label
          class={`${focusRing} cursor-pointer rounded-lg px-3 py-1.5 text-sm ring-1 ring-slate-300 dark:ring-slate-700`}
        >
          Choose picture
          <input
            type="file"
            accept="image/jpeg,image/png,image/webp"
            class="sr-only"
            data-testid="avatar-input"
            onChange={(e) => pick(e.currentTarget.files?.[0] ?? null)}
          />
        </label>
        <Show when={shown()}>
          <Button type="button" variant="ghost" onClick={() => pick(null)}>
            Remove picture
          </Button>
        </Show>
      </div>
      <Field
        label="Display name"
        maxLength={64}
        value={name()}
        onInput={(e) => setName(e.currentTarget.value)}
        hint="Shown next to your username."
        data-testid="profile-name-input"
      />
      <Show when={msg()}>{(m) => <Banner kind={m().kind}>{m().text}</Banner>}</Show>
      <Button type="submit" busy={busy()} disabled={busy()} data-testid="profile-save">
        Save profile
      </Button>
    </form>
  );
}

function Blocked() {
  const { state, actions } = useStore();
  onMount(() => void actions.loadPeople(false).catch(() => undefined));
  const list = () => state.people?.blockedUsers ?? [];
  return (
    <section class={`${card} space-y-3`} aria-labelledby="blocked-h" data-testid="blocked">
      <h2 id="blocked-h" class="font-semibold">
        Blocked people
      </h2>
      <Show
        when={list().length}
        fallback={<p class="text-sm text-slate-600 dark:text-slate-300">You have not blocked anyone.</p>}
      >
        <ul class="space-y-2">
          <For each={list()}>
            {(u) => (
              <li class="flex items-center justify-between gap-2">
                <span>{actions.nameOf(u)}</span>
                <Button variant="secondary" onClick={() => void actions.unblock({ userId: u })}>
                  Unblock
                </Button>
              </li>
            )}
          </For>
        </ul>
      </Show>
    </section>
  );
}

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
          <Tabs.Trigger class={tab} value="profile">
            Profile
          </Tabs.Trigger>
        </Tabs.List>
        <Tabs.Content value="devices" class="space-y-4">
          <Devices />
        </Tabs.Content>
        <Tabs.Content value="security" class="space-y-4">
          <Password />
          <TwoStep />
          <LocalLock />
        </Tabs.Content>
        <Tabs.Content value="general" class="space-y-4">
          <Appearance />
          <Privacy />
          <Sessions />
          <YourData />
        </Tabs.Content>
        <Tabs.Content value="profile" class="space-y-4">
          <Profile />
          <Blocked />
        </Tabs.Content>
      </Tabs>
    </main>
  );
}
