/**
 * /login: password (pre-hashed with argon2id in the worker), then a TOTP or recovery code when the
 * account has one. In a browser that holds no keys for the account the server says `device_not_linked`:
 * we explain that instead of silently making a new identity, and offer an explicit, warned identity reset.
 */
import { createSignal, Match, Show, Switch } from 'solid-js';
import { KeyProgress } from '../components/KeyProgress.js';
import { ConfirmDialog } from '../components/Modal.js';
import { AuthCard, Banner, Button, createAction, Field } from '../components/ui.js';
import { Link, navigate } from '../router.js';
import { useStore } from '../store/index.js';
import { SIGNED_OUT_REASON, signedOutText } from '../store/session.js';

type Step = 'password' | 'totp' | 'not_linked';

export default function Login() {
  const { state, actions } = useStore();
  const [step, setStep] = createSignal<Step>('password');
  const [username, setUsername] = createSignal(localStorage.getItem('e2e-chat:account') ?? '');
  const [password, setPassword] = createSignal('');
  const [code, setCode] = createSignal('');
  const [useRecovery, setUseRecovery] = createSignal(false);
  const { busy, error, setError, run } = createAction();
  const [confirmReset, setConfirmReset] = createSignal(false);
  const [resetNeedsCode, setResetNeedsCode] = createSignal(false);
  // Why the server ended this browser's session, if it did (kept until the next sign-in).
  const signedOut = signedOutText(sessionStorage.getItem(SIGNED_OUT_REASON));

  const submitPassword = (e: Event) => {
    e.preventDefault();
    if (!username().trim() || !password()) return setError('Enter your username and password.');
    void run(async () => {
      const status = await actions.login(username().trim(), password());
      if (status === 'ok') navigate('/chats', { replace: true });
      else if (status === 'totp_required') setStep('totp');
      else setStep('not_linked');
    });
  };

  const secondFactor = () => (useRecovery() ? { recoveryCode: code().trim() } : { code: code().replace(/\s/g, '') });

  const submitCode = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      await actions.loginSecondFactor(secondFactor());
      navigate('/chats', { replace: true });
    });
  };

  const reset = async () => {
    try {
      await actions.resetIdentity({
        username: username().trim(),
        password: password(),
        ...(resetNeedsCode() && code() ? secondFactor() : {}),
      });
    } catch (e) {
      if ((e as { code?: string }).code === 'mfa_required') setResetNeedsCode(true);
      throw e;
    }
    navigate('/chats', { replace: true });
  };

  return (
    <Switch>
      <Match when={step() === 'password'}>
        <AuthCard title="Sign in" subtitle="Welcome back.">
          <Show when={signedOut}>
            <Banner kind="warn" class="mb-4">
              <p data-testid="signed-out-reason">{signedOut}</p>
            </Banner>
          </Show>
          <form class="space-y-4" onSubmit={submitPassword} aria-label="Sign in">
            <Field
              label="Username"
              name="username"
              autocomplete="username"
              autocapitalize="none"
              spellcheck={false}
              value={username()}
              onInput={(e) => setUsername(e.currentTarget.value)}
              disabled={busy()}
              autofocus
            />
            <Field
              label="Password"
              name="password"
              type="password"
              autocomplete="current-password"
              value={password()}
              onInput={(e) => setPassword(e.currentTarget.value)}
              disabled={busy()}
            />
            <Show when={error()}>
              <Banner kind="error">
                <span role="alert">{error()}</span>
              </Banner>
            </Show>
            <Show when={busy() && state.progress}>{(p) => <KeyProgress progress={p()} steps={['prehash']} />}</Show>
            <Button type="submit" class="w-full" busy={busy()} disabled={busy()}>
              Sign in
            </Button>
          </form>
          <Link
            href="/link"
            class="mt-4 block rounded-lg px-3 py-2 text-center text-sm font-medium text-blue-700 ring-1 ring-blue-200 hover:bg-blue-50 dark:text-blue-300 dark:ring-blue-900 dark:hover:bg-blue-950"
            data-testid="link-instead"
          >
            Link to a device you already use
          </Link>
          <p class="mt-5 text-center text-sm text-slate-500 dark:text-slate-400">
            New here?{' '}
            <Link href="/register" class="font-medium text-blue-600 hover:underline dark:text-blue-400">
              Create an account
            </Link>
          </p>
        </AuthCard>
      </Match>
      <Match when={step() === 'totp'}>
        <AuthCard title="Two-step verification" subtitle="Your account is protected with an authenticator app.">
          <form class="space-y-4" onSubmit={submitCode} aria-label="Verification code">
            <Show
              when={useRecovery()}
              fallback={
                <Field
                  label="6-digit code"
                  name="code"
                  inputmode="numeric"
                  autocomplete="one-time-code"
                  maxlength={7}
                  value={code()}
                  onInput={(e) => setCode(e.currentTarget.value)}
                  autofocus
                />
              }
            >
              <Field
                label="Recovery code"
                name="recovery"
                autocomplete="off"
                placeholder="abcd-efgh-jkmn-pqrs"
                value={code()}
                onInput={(e) => setCode(e.currentTarget.value)}
                autofocus
              />
            </Show>
            <Show when={error()}>
              <Banner kind="error">
                <span role="alert">{error()}</span>
              </Banner>
            </Show>
            <Button type="submit" class="w-full" busy={busy()} disabled={busy()}>
              Verify
            </Button>
            <button
              type="button"
              class="w-full text-center text-sm text-blue-600 hover:underline dark:text-blue-400"
              onClick={() => {
                setUseRecovery(!useRecovery());
                setCode('');
              }}
            >
              {useRecovery() ? 'Use a code from the app instead' : 'Use a recovery code instead'}
            </button>
          </form>
        </AuthCard>
      </Match>
      <Match when={step() === 'not_linked'}>
        <AuthCard title="This browser has no keys for your account">
          <div class="space-y-3 text-sm text-slate-600 dark:text-slate-300" data-testid="device-not-linked">
            <p>
              Your password is right. But your messages are end-to-end encrypted, and the keys that read them live only
              on the devices you already use — not on our server, and not in this browser.
            </p>
            <p>
              <strong class="font-semibold text-slate-900 dark:text-slate-100">Use a device you already have.</strong>{' '}
              Link this browser from it: your contacts see no change, and your recent history can come along.
            </p>
            <p>
              <strong class="font-semibold text-slate-900 dark:text-slate-100">Lost every device?</strong> You can reset
              your identity: you keep your username, but your other devices are signed out, old messages cannot be read
              here, and your contacts will see that your safety number changed.
            </p>
          </div>
          <div class="mt-5 flex flex-col gap-2">
            <Button onClick={() => navigate('/link')}>Link to a device you already use</Button>
            <Button variant="secondary" onClick={() => setStep('password')}>
              Back
            </Button>
            <Button variant="danger" onClick={() => setConfirmReset(true)}>
              Reset identity…
            </Button>
          </div>
          <ConfirmDialog
            open={confirmReset()}
            onOpenChange={setConfirmReset}
            title="Reset your identity?"
            confirmLabel="Reset identity"
            danger
            onConfirm={reset}
          >
            <p>This creates new keys for “{username()}” in this browser. It cannot be undone:</p>
            <ul class="list-disc space-y-1 pl-5">
              <li>every other device of yours is signed out and can no longer decrypt;</li>
              <li>messages sent to your old keys cannot be read here;</li>
              <li>every contact sees a safety-number change and must accept it before writing to you.</li>
            </ul>
            <Show when={resetNeedsCode()}>
              <Field
                label="Authenticator or recovery code"
                name="reset-code"
                value={code()}
                onInput={(e) => {
                  setCode(e.currentTarget.value);
                  setUseRecovery(e.currentTarget.value.replace(/\s/g, '').length > 7);
                }}
              />
            </Show>
            <Show when={state.progress}>{(p) => <KeyProgress progress={p()} />}</Show>
          </ConfirmDialog>
        </AuthCard>
      </Match>
    </Switch>
  );
}
