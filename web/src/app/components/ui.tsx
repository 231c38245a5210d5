/**
 * Small building blocks shared by every page: buttons, labelled fields, banners, avatars, a spinner.
 * Plain elements (no Kobalte) so the first page stays small; focus rings and labels everywhere.
 * @module
 */
import { createSignal, createUniqueId, type JSX, Show, splitProps } from 'solid-js';
import { rateLimitText } from '../logic.js';

export const focusRing =
  'focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-blue-600 dark:focus-visible:outline-blue-400';

const variants = {
  primary: 'bg-blue-600 text-white hover:bg-blue-700 disabled:bg-blue-600/50',
  secondary:
    'bg-white text-slate-900 ring-1 ring-slate-300 hover:bg-slate-50 disabled:opacity-50 dark:bg-slate-800 dark:text-slate-100 dark:ring-slate-700 dark:hover:bg-slate-700',
  ghost: 'text-slate-700 hover:bg-slate-200/70 disabled:opacity-50 dark:text-slate-200 dark:hover:bg-slate-800',
  danger: 'bg-red-600 text-white hover:bg-red-700 disabled:bg-red-600/50',
} as const;

export function buttonClass(variant: keyof typeof variants = 'primary', extra = ''): string {
  return `inline-flex items-center justify-center gap-2 rounded-lg px-3.5 py-2 text-sm font-medium transition-colors disabled:cursor-not-allowed ${variants[variant]} ${focusRing} ${extra}`;
}

export function Button(
  props: JSX.ButtonHTMLAttributes<HTMLButtonElement> & { variant?: keyof typeof variants; busy?: boolean },
) {
  const [own, rest] = splitProps(props, ['variant', 'busy', 'class', 'children', 'type']);
  return (
    <button
      type={own.type ?? 'button'}
      {...rest}
      class={buttonClass(own.variant, own.class ?? '')}
      aria-busy={own.busy ? 'true' : undefined}
    >
      <Show when={own.busy}>
        <Spinner />
      </Show>
      {own.children}
    </button>
  );
}

export function Spinner(props: { class?: string }) {
  return (
    <span
      aria-hidden="true"
      class={`inline-block size-4 animate-spin rounded-full border-2 border-current border-r-transparent ${props.class ?? ''}`}
    />
  );
}

export const inputClass = `block w-full rounded-lg border-0 bg-white px-3 py-2 text-sm text-slate-900 shadow-sm ring-1 ring-inset ring-slate-300 placeholder:text-slate-400 focus:ring-2 focus:ring-inset focus:ring-blue-600 disabled:opacity-60 dark:bg-slate-900 dark:text-slate-100 dark:ring-slate-700 dark:focus:ring-blue-400`;

export function Field(
  props: JSX.InputHTMLAttributes<HTMLInputElement> & { label: string; hint?: string; error?: string | null },
) {
  const [own, rest] = splitProps(props, ['label', 'hint', 'error', 'class', 'id']);
  const id = own.id ?? createUniqueId();
  const describedBy = () =>
    [own.hint ? `${id}-hint` : '', own.error ? `${id}-error` : ''].filter(Boolean).join(' ') || undefined;
  return (
    <div class={own.class ?? ''}>
      <label for={id} class="block text-sm font-medium text-slate-700 dark:text-slate-300">
        {own.label}
      </label>
      <input
        id={id}
        {...rest}
        class={`mt-1 ${inputClass}`}
        aria-invalid={own.error ? 'true' : undefined}
        aria-describedby={describedBy()}
      />
      <Show when={own.hint}>
        <p id={`${id}-hint`} class="mt-1 text-xs text-slate-500 dark:text-slate-400">
          {own.hint}
        </p>
      </Show>
      <Show when={own.error}>
        <p id={`${id}-error`} class="mt-1 text-xs text-red-600 dark:text-red-400">
          {own.error}
        </p>
      </Show>
    </div>
  );
}

export function Banner(props: { kind?: 'info' | 'warn' | 'error'; children: JSX.Element; class?: string }) {
  const tone = {
    info: 'bg-blue-50 text-blue-900 ring-blue-200 dark:bg-blue-950/60 dark:text-blue-100 dark:ring-blue-900',
    warn: 'bg-amber-50 text-amber-900 ring-amber-200 dark:bg-amber-950/60 dark:text-amber-100 dark:ring-amber-900',
    error: 'bg-red-50 text-red-900 ring-red-200 dark:bg-red-950/60 dark:text-red-100 dark:ring-red-900',
  }[props.kind ?? 'info'];
  return <div class={`rounded-lg px-3 py-2 text-sm ring-1 ${tone} ${props.class ?? ''}`}>{props.children}</div>;
}

const AVATAR_TONES = [
  'bg-blue-100 text-blue-800 dark:bg-blue-900 dark:text-blue-100',
  'bg-emerald-100 text-emerald-800 dark:bg-emerald-900 dark:text-emerald-100',
  'bg-amber-100 text-amber-800 dark:bg-amber-900 dark:text-amber-100',
  'bg-rose-100 text-rose-800 dark:bg-rose-900 dark:text-rose-100',
  'bg-violet-100 text-violet-800 dark:bg-violet-900 dark:text-violet-100',
  'bg-cyan-100 text-cyan-800 dark:bg-cyan-900 dark:text-cyan-100',
];

export function Avatar(props: { name: string; seed: string; size?: 'sm' | 'md'; src?: string | null }) {
  const tone = () => AVATAR_TONES[[...props.seed].reduce((a, c) => (a * 31 + c.charCodeAt(0)) >>> 0, 7) % 6];
  const initials = () =>
    props.name
      .replace(/^user /, '')
      .split(/[\s._-]+/)
      .filter(Boolean)
      .slice(0, 2)
      .map((w) => w[0]!.toUpperCase())
      .join('') || '?';
  return (
    <Show
      when={props.src}
      fallback={
        <span
          aria-hidden="true"
          class={`inline-flex shrink-0 items-center justify-center rounded-full font-semibold ${tone()} ${
            props.size === 'sm' ? 'size-8 text-xs' : 'size-10 text-sm'
          }`}
        >
          {initials()}
        </span>
      }
    >
      {/* A profile picture: a decrypted blob: URL (store/people.ts). */}
      <img
        src={props.src!}
        alt=""
        aria-hidden="true"
        data-testid="avatar-image"
        class={`shrink-0 rounded-full object-cover ${props.size === 'sm' ? 'size-8' : 'size-10'}`}
      />
    </Show>
  );
}

/** A page-level card for the signed-out screens. */
export function AuthCard(props: { title: string; subtitle?: string; children: JSX.Element }) {
  return (
    <main class="flex min-h-full items-center justify-center p-4">
      <div class="w-full max-w-sm">
        <div class="mb-6 flex items-center gap-2">
          <Logo />
          <span class="text-lg font-semibold">e2e-chat</span>
        </div>
        <section class="rounded-2xl bg-white p-6 shadow-sm ring-1 ring-slate-200 dark:bg-slate-900 dark:ring-slate-800">
          <h1 class="text-xl font-semibold">{props.title}</h1>
          <Show when={props.subtitle}>
            <p class="mt-1 text-sm text-slate-500 dark:text-slate-400">{props.subtitle}</p>
          </Show>
          <div class="mt-5">{props.children}</div>
        </section>
      </div>
    </main>
  );
}

export function Logo() {
  return (
    <svg viewBox="0 0 24 24" class="size-7 text-blue-600 dark:text-blue-400" aria-hidden="true">
      <path
        fill="currentColor"
        d="M12 2C6.5 2 2 6 2 11c0 2.4 1 4.6 2.8 6.2L4 22l4.4-2.2c1.1.3 2.3.5 3.6.5 5.5 0 10-4 10-9s-4.5-9.3-10-9.3Zm-2 7.2V8a2 2 0 1 1 4 0v1.2h.5c.3 0 .5.2.5.5v4.6c0 .3-.2.5-.5.5h-5c-.3 0-.5-.2-.5-.5V9.7c0-.3.2-.5.5-.5H10Zm1 0h2V8a1 1 0 1 0-2 0v1.2Z"
      />
    </svg>
  );
}

/**
 * The busy flag and error text of a form or button action: `run(fn)` shows the spinner while `fn` runs and
 * the error text if it throws; resolves true when `fn` succeeded.
 */
export function createAction() {
  const [busy, setBusy] = createSignal(false);
  const [error, setError] = createSignal<string | null>(null);
  const run = async (fn: () => Promise<void>): Promise<boolean> => {
    setBusy(true);
    setError(null);
    try {
      await fn();
      return true;
    } catch (e) {
      setError(errorText(e));
      return false;
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, setError, run };
}

export function errorText(e: unknown): string {
  const err = e as { code?: string; message?: string; retryAfter?: number; details?: { retryAfterSec?: number } };
  if (err?.code === 'rate_limited') {
    const wait = err.retryAfter ?? err.details?.retryAfterSec;
    if (typeof wait === 'number' && wait > 0) return rateLimitText(wait);
  }
  const byCode: Record<string, string> = {
    invalid_credentials: 'Wrong username or password.',
    username_taken: 'That username is taken — try another.',
    invalid_username: 'Usernames are 3–32 characters: a–z, 0–9, “_”, “.” or “-”, starting with a letter.',
    rate_limited: 'Too many attempts. Wait a little and try again.',
    invalid_totp: 'That code is not right. Check your authenticator app and try again.',
    totp_code_used: 'That code was already used. Wait for the next one.',
    invalid_recovery_code: 'That recovery code is unknown or already used.',
    invalid_mfa_token: 'The sign-in step expired. Start again.',
    mfa_required: 'Enter a code from your authenticator app (or a recovery code).',
    identity_changed: 'A safety number changed. Review it before sending.',
    unknown_user: 'There is no such user.',
    forbidden: 'Your role does not allow that.',
    not_member: 'You are not a member of this conversation.',
    network: 'No connection. Check your network and try again.',
    bad_passphrase: 'That passphrase is not right.',
    invalid_passphrase: 'Enter a passphrase.',
    locked: 'This browser’s keys are locked with a passphrase.',
    stale: 'The local passphrase was changed in another tab. Reload this page.',
    // linking (issue 14)
    bad_link_code: 'That is not a link code from e2e-chat. Copy the whole code shown on the new device.',
    wrong_server: 'That code is for another e2e-chat server than this one.',
    device_limit: 'Your account already has the most devices it may have. Remove one first.',
    channel_expired: 'That code expired. Show a new one on the new device.',
    channel_not_found: 'That code is unknown or expired. Show a new one on the new device.',
    channel_closed: 'That code was already used or cancelled. Show a new one on the new device.',
    channel_claimed: 'Another device is already linking with that code.',
    channel_used: 'That code was already used to link a device.',
    link_expired: 'The code expired before the devices finished. Start again.',
    provisioning_failed: 'The message from your other device could not be opened safely. Start again.',
    cancelled: 'The other device stopped linking.',
    linking_token_used: 'That link was already completed. Start again on the new device.',
    history_incomplete: 'The history did not arrive complete. Nothing was imported.',
    history_failed: 'The history could not be saved. Nothing was imported.',
    local_data_exists:
      'This browser already holds keys and messages of that account from an earlier sign-in. Nothing was changed.',
  };
  return (err.code && byCode[err.code]) || err.message || 'Something went wrong.';
}
