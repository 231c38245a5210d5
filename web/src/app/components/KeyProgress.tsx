/**
 * The visible progress of register / login / identity reset: argon2id pre-hashing (with a fraction), then
 * key generation, registration, prekey publication; or (step `unlock`) deriving the local passphrase key. Announced politely to screen readers.
 */
import { For } from 'solid-js';
import type { Progress } from '../session-api.js';
import { Spinner } from './ui.js';

const STEPS: { step: Progress['step']; label: string }[] = [
  { step: 'prehash', label: 'Hardening your password (argon2id, in this browser)' },
  { step: 'keys', label: 'Generating your identity and device keys' },
  { step: 'register', label: 'Creating your account and publishing prekeys' },
  { step: 'unlock', label: 'Deriving the key from your passphrase (argon2id, in this browser)' },
  { step: 'seal', label: 'Encrypting your history with your passphrase (argon2id, in this browser)' },
];
const DEFAULT_STEPS: Progress['step'][] = ['prehash', 'keys', 'register'];

export function KeyProgress(props: { progress: Progress; steps?: Progress['step'][] }) {
  const steps = () => STEPS.filter((s) => (props.steps ?? DEFAULT_STEPS).includes(s.step));
  const index = () => steps().findIndex((s) => s.step === props.progress.step);
  return (
    <div role="status" aria-live="polite" class="space-y-3" data-testid="key-progress">
      <ol class="space-y-2 text-sm">
        <For each={steps()}>
          {(s, i) => (
            <li class="flex items-center gap-2">
              <span class="inline-flex size-5 items-center justify-center">
                {i() < index() ? (
                  <span class="text-emerald-600 dark:text-emerald-400">
                    ✓<span class="sr-only"> done:</span>
                  </span>
                ) : i() === index() ? (
                  <Spinner class="text-blue-600" />
                ) : (
                  <span class="size-2 rounded-full bg-slate-300 dark:bg-slate-700" />
                )}
              </span>
              <span class={i() > index() ? 'text-slate-400 dark:text-slate-500' : ''}>{s.label}</span>
            </li>
          )}
        </For>
      </ol>
      <progress
        class="h-1.5 w-full overflow-hidden rounded-full [&::-webkit-progress-bar]:bg-slate-200 [&::-webkit-progress-value]:bg-blue-600 dark:[&::-webkit-progress-bar]:bg-slate-800"
        max={steps().length}
        value={Math.max(0, index()) + (props.progress.fraction ?? 0)}
        aria-label="Progress"
      />
    </div>
  );
}
