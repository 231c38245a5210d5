/**
 * A contact's safety number: 60 digits in twelve groups of five, the scannable QR, and "mark as verified"
 * (remembered for the current identity key; a key change clears it). The QR carries the payload in its text
 * form (docs/PROTOCOL.md §"Safety numbers", QR text form); "Compare with their code" scans the other
 * person's QR with the camera (QrScanner) or takes their pasted code, compares it with ours on this device,
 * and a match marks them verified.
 *
 * While the contact's identity key change awaits acceptance (sending to them is paused), this shows the
 * NEW number — the one to compare now — marked "Not verified", says plainly that it changed and that an
 * earlier verification no longer applies, and offers "Mark as verified" (compared and matching: accepts the
 * change and verifies the new key in one step) or "Accept without verifying".
 */
import { createResource, createSignal, For, Show } from 'solid-js';
import { compareScannedText, encodeScannableText } from '../../protocol/fingerprint.js';
import { groupsOfFive } from '../logic.js';
import { useStore } from '../store/index.js';
import { Qr } from './Qr.js';
import { ScanOrPaste } from './ScanOrPaste.js';
import { Banner, Button, Spinner } from './ui.js';

export function SafetyNumber(props: { userId: string }) {
  const { state, actions } = useStore();
  const [contact] = createResource(
    () => props.userId,
    (u) => actions.loadContact(u),
  );
  const c = () => state.contacts[props.userId];
  const pending = () => c()?.pendingIdentityKey ?? null;
  // Re-read whenever the key we show changes (a change arrives, or is accepted while the dialog is open).
  const [sn] = createResource(
    () => (c() ? { u: props.userId, key: pending() ?? c()!.identityKey, pending: pending() !== null } : null),
    (k) => actions.safetyNumber(k.u, k.pending ? 'pending' : 'trusted'),
  );
  const verified = () => c()?.verified ?? false;
  // The username, with the display name from their profile next to it when they shared one (issue 17).
  const name = () =>
    actions.profileName(props.userId)
      ? `${actions.nameOf(props.userId)} (${actions.profileName(props.userId)})`
      : actions.nameOf(props.userId);
  const fail = () => actions.toast('Could not save', 'error');
  // Comparing by their code (camera or pasted): the QR carries the payload as text (protocol/fingerprint.ts).
  const [comparing, setComparing] = createSignal(false);
  const [pasted, setPasted] = createSignal('');
  const [outcome, setOutcome] = createSignal<'match' | 'mismatch' | 'not_a_code' | null>(null);
  /** Returns true when the text was a safety-number code (match or not): the camera can stop. */
  const compare = (text: string): boolean => {
    const ours = sn()?.scannable;
    if (!ours) return false;
    let same: boolean;
    try {
      same = compareScannedText(ours, text);
    } catch {
      setOutcome('not_a_code');
      return false;
    }
    setOutcome(same ? 'match' : 'mismatch');
    // Matching codes are a verification (as in Signal): the same step as "Mark as verified".
    if (same && pending()) void actions.verifyKeyChange(props.userId).catch(fail);
    else if (same && !verified()) void actions.setVerified(props.userId, true).catch(fail);
    return true;
  };
  return (
    <div class="space-y-4">
      <Show
        when={pending()}
        fallback={
          <p class="text-sm text-slate-600 dark:text-slate-300">
            Compare these numbers with {name()} in person or over a call you trust, or scan the code. If they match,
            nobody is in the middle.
          </p>
        }
      >
        <Banner kind="warn">
          <div class="space-y-1" data-testid="safety-number-changed">
            <p>
              <strong>{name()}’s safety number has changed.</strong> This is the new number. They may have reinstalled
              or reset their account — or someone may be intercepting.
            </p>
            <Show when={c()?.verificationLost}>
              <p>You had verified the previous number; that verification no longer applies.</p>
            </Show>
            <p>Compare it with {name()} in person or over a call you trust before you accept it.</p>
          </div>
        </Banner>
      </Show>
      <Show when={sn()} fallback={<Spinner />}>
        {(s) => (
          <>
            <div class="flex justify-center" data-testid="safety-code" data-code={encodeScannableText(s().scannable)}>
              <Qr data={encodeScannableText(s().scannable)} label={`Safety number QR code for ${name()}`} />
            </div>
            <ol
              class="grid grid-cols-4 gap-x-4 gap-y-2 text-center font-mono text-lg tracking-wider tabular-nums"
              aria-label="Safety number"
              data-testid="safety-number"
              data-pending={pending() ? 'true' : 'false'}
            >
              <For each={groupsOfFive(s().digits)}>{(g) => <li>{g}</li>}</For>
            </ol>
          </>
        )}
      </Show>
      <Show
        when={comparing()}
        fallback={
          <Button variant="secondary" class="w-full" onClick={() => setComparing(true)}>
            Compare with their code
          </Button>
        }
      >
        <div class="space-y-2" data-testid="compare-code">
          <ScanOrPaste
            scanLabel="Scan their QR code with the camera"
            pasteLabel="Or paste their code"
            pasteId="their-code"
            placeholder="e2echat-sn:…"
            rows={2}
            submitLabel="Compare"
            value={pasted()}
            onInput={setPasted}
            onCode={compare}
          />
          <div role="status" data-testid="compare-outcome" data-outcome={outcome() ?? ''}>
            <Show when={outcome() === 'match'}>
              <Banner kind="info">The codes match: nobody is in the middle. Marked as verified.</Banner>
            </Show>
            <Show when={outcome() === 'mismatch'}>
              <Banner kind="error">
                These codes do not match. Do not mark {name()} as verified; check that you scanned their code for this
                chat.
              </Banner>
            </Show>
            <Show when={outcome() === 'not_a_code'}>
              <Banner kind="error">That is not a safety-number code.</Banner>
            </Show>
          </div>
        </div>
      </Show>
      <Show when={contact.error}>
        <Banner kind="error">Could not load this contact.</Banner>
      </Show>
      <div class="flex flex-wrap items-center justify-between gap-3 rounded-lg bg-slate-100 px-3 py-2 dark:bg-slate-800">
        <span class="text-sm" data-testid="verified-state">
          {verified() ? '✓ Verified' : 'Not verified'}
        </span>
        <Show
          when={pending()}
          fallback={
            <Button
              variant={verified() ? 'secondary' : 'primary'}
              onClick={() => void actions.setVerified(props.userId, !verified()).catch(fail)}
            >
              {verified() ? 'Clear verification' : 'Mark as verified'}
            </Button>
          }
        >
          <div class="flex flex-wrap gap-2">
            <Button
              variant="secondary"
              onClick={() =>
                void actions
                  .acceptKeyChange(props.userId)
                  .catch(() => actions.toast('Could not accept the change', 'error'))
              }
            >
              Accept without verifying
            </Button>
            <Button onClick={() => void actions.verifyKeyChange(props.userId).catch(fail)}>Mark as verified</Button>
          </div>
        </Show>
      </div>
    </div>
  );
}
