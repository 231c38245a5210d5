/**
 * /register: username + password; keys are generated in the engine worker with visible progress.
 * The username is checked with the server when the field is left and again before any key is generated;
 * the password's strength (zxcvbn-ts, password-strength.ts) is loaded lazily when the password field is
 * first used, and its reason is shown as you type.
 */
import { createSignal, Show } from 'solid-js';
import { KeyProgress } from '../components/KeyProgress.js';
import { AuthCard, Banner, Button, createAction, Field } from '../components/ui.js';
import { MIN_PASSWORD, normalizeTyped, USERNAME_RE, validateRegistration } from '../logic.js';
import { createPasswordCheck } from '../password-strength-loader.js';
import { Link, navigate } from '../router.js';
import { useStore } from '../store/index.js';

const TAKEN = 'That username is taken — try another.';

export default function Register() {
  const { state, actions } = useStore();
  const [username, setUsername] = createSignal('');
  const [password, setPassword] = createSignal('');
  const [confirm, setConfirm] = createSignal('');
  const [touched, setTouched] = createSignal(false);
  const [takenName, setTakenName] = createSignal<string | null>(null);
  const { busy, error, setError, run } = createAction();
  // Loaded when the password field is first used (not with the page: ready-to-type stays as fast).
  const strength = createPasswordCheck(password, () => [username()]);
  const check = strength.check;
  const errors = () => {
    const v = validateRegistration(username(), password(), confirm());
    return {
      ...v,
      username: v.username ?? (takenName() === normalizeTyped(username()) ? TAKEN : null),
      password: v.password ?? (check()?.ok === false ? check()!.reason : null),
    };
  };
  const passwordError = () =>
    touched() || (password().length >= MIN_PASSWORD && check()?.ok === false) ? errors().password : null;

  const checkName = async () => {
    const u = normalizeTyped(username());
    if (!USERNAME_RE.test(u)) return;
    if ((await actions.usernameAvailable(u)) === false) setTakenName(u);
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setTouched(true);
    await strength.ensure().catch(() => null);
    const v = errors();
    if (v.username || v.password || v.confirm) return;
    const ok = await run(async () => {
      await actions.register(username().trim(), password());
      navigate('/chats', { replace: true });
    });
    if (!ok && error() === TAKEN) {
      setTakenName(normalizeTyped(username()));
      setError(null); // shown at the field
    }
  };

  return (
    <AuthCard title="Create your account" subtitle="Your keys are generated here and never leave this browser.">
      <form class="space-y-4" onSubmit={submit} noValidate aria-label="Create account">
        <Field
          label="Username"
          name="username"
          autocomplete="username"
          autocapitalize="none"
          spellcheck={false}
          required
          value={username()}
          onInput={(e) => setUsername(e.currentTarget.value)}
          onBlur={() => void checkName()}
          error={touched() ? errors().username : takenName() === normalizeTyped(username()) ? TAKEN : null}
          hint="People find you by this name."
          disabled={busy()}
          autofocus
        />
        <Field
          label="Password"
          name="password"
          type="password"
          autocomplete="new-password"
          required
          value={password()}
          onFocus={strength.load}
          onInput={(e) => setPassword(e.currentTarget.value)}
          error={passwordError()}
          hint={
            check()?.ok ? 'Strong enough.' : `At least ${MIN_PASSWORD} characters; a few unrelated words work well.`
          }
          disabled={busy()}
        />
        <Field
          label="Confirm password"
          name="confirm"
          type="password"
          autocomplete="new-password"
          required
          value={confirm()}
          onInput={(e) => setConfirm(e.currentTarget.value)}
          error={touched() ? errors().confirm : null}
          disabled={busy()}
        />
        <Show when={error()}>
          <Banner kind="error">
            <span role="alert">{error()}</span>
          </Banner>
        </Show>
        <Show when={busy() && state.progress}>{(p) => <KeyProgress progress={p()} />}</Show>
        <Button type="submit" class="w-full" busy={busy()} disabled={busy()}>
          {busy() ? 'Creating account…' : 'Create account'}
        </Button>
      </form>
      <p class="mt-5 text-center text-sm text-slate-500 dark:text-slate-400">
        Already have an account?{' '}
        <Link href="/login" class="font-medium text-blue-600 hover:underline dark:text-blue-400">
          Sign in
        </Link>
      </p>
    </AuthCard>
  );
}
