/**
 * Loads the password-strength checker (password-strength.ts: zxcvbn-ts and its dictionaries, the largest
 * thing the app has) on demand — only the screens that ask for a new password call this, when their field
 * is first used — so no page, the first one included, carries it. One load per page; a failed load is
 * tried again.
 * @module
 */
import { createMemo, createSignal } from 'solid-js';
import { MIN_PASSWORD } from './logic.js';

export type PasswordStrength = typeof import('./password-strength.js');

let loading: Promise<PasswordStrength> | null = null;

export function loadPasswordStrength(): Promise<PasswordStrength> {
  loading ??= import('./password-strength.js').catch((e: unknown) => {
    loading = null;
    throw e;
  });
  return loading;
}

/**
 * A new-password field's strength: `check()` is the verdict for `password()` with `inputs()` (the username)
 * as user inputs once the checker has loaded and the minimum length is reached, else null. `load` starts
 * loading (on the field's first focus); `ensure` waits for it (at submit).
 */
export function createPasswordCheck(password: () => string, inputs: () => string[]) {
  const [mod, setMod] = createSignal<PasswordStrength | null>(null);
  const ensure = () =>
    loadPasswordStrength().then((m) => {
      setMod(() => m);
      return m;
    });
  const check = createMemo(() => {
    const m = mod();
    return m && password().length >= MIN_PASSWORD ? m.checkPassword(password(), inputs()) : null;
  });
  return { check, load: () => void ensure().catch(() => undefined), ensure };
}
