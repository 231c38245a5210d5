/**
 * A contact's safety number: 60 digits in twelve groups of five, the scannable QR, and "mark as verified"
 * (remembered for the current identity key; a key change clears it).
 */
import { createResource, For, Show } from 'solid-js';
import { groupsOfFive } from '../logic.js';
import { useStore } from '../store/index.js';
import { Qr } from './Qr.js';
import { Banner, Button, Spinner } from './ui.js';

export function SafetyNumber(props: { userId: string }) {
  const { state, actions } = useStore();
  const [sn] = createResource(
    () => props.userId,
    (u) => actions.safetyNumber(u),
  );
  const [contact] = createResource(
    () => props.userId,
    (u) => actions.loadContact(u),
  );
  const verified = () => state.contacts[props.userId]?.verified ?? false;
  const name = () => actions.nameOf(props.userId);
  return (
    <div class="space-y-4">
      <p class="text-sm text-slate-600 dark:text-slate-300">
        Compare these numbers with {name()} in person or over a call you trust, or scan the code. If they match, nobody
        is in the middle.
      </p>
      <Show when={sn()} fallback={<Spinner />}>
        {(s) => (
          <>
            <div class="flex justify-center">
              <Qr data={s().scannable} label={`Safety number QR code for ${name()}`} />
            </div>
            <ol
              class="grid grid-cols-4 gap-x-4 gap-y-2 text-center font-mono text-lg tracking-wider tabular-nums"
              aria-label="Safety number"
              data-testid="safety-number"
            >
              <For each={groupsOfFive(s().digits)}>{(g) => <li>{g}</li>}</For>
            </ol>
          </>
        )}
      </Show>
      <Show when={contact.error}>
        <Banner kind="error">Could not load this contact.</Banner>
      </Show>
      <div class="flex items-center justify-between gap-3 rounded-lg bg-slate-100 px-3 py-2 dark:bg-slate-800">
        <span class="text-sm" data-testid="verified-state">
          {verified() ? '✓ Verified' : 'Not verified'}
        </span>
        <Button
          variant={verified() ? 'secondary' : 'primary'}
          onClick={() =>
            void actions.setVerified(props.userId, !verified()).catch(() => actions.toast('Could not save', 'error'))
          }
        >
          {verified() ? 'Clear verification' : 'Mark as verified'}
        </Button>
      </div>
    </div>
  );
}
