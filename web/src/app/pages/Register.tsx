/** /register: username + password; keys are generated in the engine worker with visible progress. */
import { createSignal, Show } from 'solid-js';
import { KeyProgress } from '../components/KeyProgress.js';
import { AuthCard, Banner, Button, createAction, Field } from '../components/ui.js';
import { validateRegistration } from '../logic.js';
import { Link, navigate } from '../router.js';
import { useStore } from '../store/index.js';

export default function Register() {
  const { state, actions } = useStore();
  const [username, setUsername] = createSignal('');
  const [password, setPassword] = createSignal('');
  const [confirm, setConfirm] = createSignal('');
  const [touched, setTouched] = createSignal(false);
  const { busy, error, run } = createAction();
  const errors = () => validateRegistration(username(), password(), confirm());

  const submit = async (e: Event) => {
    e.preventDefault();
    setTouched(true);
    const v = errors();
    if (v.username || v.password || v.confirm) return;
    await run(async () => {
      await actions.register(username().trim(), password());
      navigate('/chats', { replace: true });
    });
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
          error={touched() ? errors().username : null}
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
          onInput={(e) => setPassword(e.currentTarget.value)}
          error={touched() ? errors().password : null}
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
