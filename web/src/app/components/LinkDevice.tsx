/**
 * "Link a new device" (Account → Devices, issue 14): the code from the new device — scanned with the camera
 * or pasted — then its name, whether to send recent history, and a plain statement of what that device
 * will be able to read; then progress on this side (linking, history sent, done) with every failure in
 * words. The code is checked and everything is sealed in the engine worker; this screen holds no key.
 */
import { createSignal, Match, Show, Switch } from 'solid-js';
import { useStore } from '../store/index.js';
import { Modal } from './Modal.js';
import { ScanOrPaste } from './ScanOrPaste.js';
import { Banner, Button, errorText, Field, Spinner } from './ui.js';

/** A readable default name for the device being linked. */
const DEFAULT_NAME = 'New device';

export function LinkDevice(props: { open: boolean; onOpenChange: (open: boolean) => void }) {
  const { state, actions } = useStore();
  const [step, setStep] = createSignal<'code' | 'confirm' | 'progress'>('code');
  const [code, setCode] = createSignal('');
  const [name, setName] = createSignal(DEFAULT_NAME);
  const [history, setHistory] = createSignal(true);
  const [error, setError] = createSignal<string | null>(null);

  const reset = () => {
    setStep('code');
    setCode('');
    setName(DEFAULT_NAME);
    setHistory(true);
    setError(null);
  };
  const close = (open: boolean) => {
    if (!open) {
      const p = state.linkOut?.phase;
      if (step() === 'progress' && p !== 'done' && p !== 'failed')
        void actions.linkDeviceCancel().catch(() => undefined);
      reset();
    }
    props.onOpenChange(open);
  };
  const takeCode = (text: string): boolean => {
    const t = text.trim();
    if (!t.replace(/\s+/g, '').startsWith('e2echat-link:')) {
      setError(errorText({ code: 'bad_link_code' }));
      return false;
    }
    setError(null);
    setCode(t);
    setStep('confirm');
    return true;
  };
  const link = () => {
    setStep('progress');
    void actions
      .linkDevice(code(), { deviceName: name().trim() || DEFAULT_NAME, history: history() })
      .catch((e) => setError(errorText(e)));
  };
  const out = () => state.linkOut;

  return (
    <Modal open={props.open} onOpenChange={close} title="Link a new device">
      <div class="mt-4 space-y-4" data-testid="link-device">
        <Switch>
          <Match when={step() === 'code'}>
            <p class="text-sm text-slate-600 dark:text-slate-300">
              On the new device, choose “Link to a device you already use”. Then scan the code it shows, or paste the
              text under it.
            </p>
            <ScanOrPaste
              scanLabel="Scan the QR code with the camera"
              pasteLabel="Or paste the code"
              pasteId="paste-code"
              placeholder="e2echat-link:…"
              rows={3}
              submitLabel="Continue"
              value={code()}
              onInput={setCode}
              onCode={takeCode}
            />
          </Match>
          <Match when={step() === 'confirm'}>
            <form
              class="space-y-4"
              onSubmit={(e) => {
                e.preventDefault();
                link();
              }}
            >
              <Field
                label="Name for the new device"
                hint="Only your own devices can read it; the server stores it encrypted."
                maxlength={40}
                value={name()}
                onInput={(e) => setName(e.currentTarget.value)}
                autofocus
                data-testid="device-name"
              />
              <label class="flex items-start gap-2 text-sm">
                <input
                  type="checkbox"
                  class="mt-0.5 size-4 rounded"
                  checked={history()}
                  onChange={(e) => setHistory(e.currentTarget.checked)}
                  data-testid="send-history"
                />
                <span>
                  Send my recent history (the last 90 days, up to 10,000 messages), encrypted to that device only
                </span>
              </label>
              <Banner kind="warn">
                <span data-testid="link-warning">
                  This device will be able to read your new messages — and your history if you choose to send it. Link
                  only a device you control.
                </span>
              </Banner>
              <div class="flex gap-2">
                <Button type="submit" class="flex-1" data-testid="confirm-link">
                  Link this device
                </Button>
                <Button variant="secondary" onClick={() => setStep('code')}>
                  Back
                </Button>
              </div>
            </form>
          </Match>
          <Match when={step() === 'progress'}>
            <div
              role="status"
              aria-live="polite"
              class="space-y-3 text-sm"
              data-testid="link-out-progress"
              data-phase={out()?.phase ?? ''}
            >
              <Switch>
                <Match when={out()?.phase === 'linking'}>
                  <p class="flex items-center gap-2">
                    <Spinner class="text-blue-600" /> Linking “{name()}”…
                  </p>
                </Match>
                <Match when={out()?.phase === 'linked'}>
                  <p class="flex items-center gap-2">
                    <Spinner class="text-blue-600" /> Linked. Preparing your history…
                  </p>
                </Match>
                <Match when={out()?.phase === 'history'}>
                  <p>
                    Sending your history: {out()?.done ?? 0} of {out()?.total ?? 0} parts ({out()?.messages ?? 0}{' '}
                    messages)
                  </p>
                  <progress
                    class="h-1.5 w-full overflow-hidden rounded-full [&::-webkit-progress-bar]:bg-slate-200 [&::-webkit-progress-value]:bg-blue-600 dark:[&::-webkit-progress-bar]:bg-slate-800"
                    max={Math.max(1, out()?.total ?? 1)}
                    value={out()?.done ?? 0}
                    aria-label="History sent"
                  />
                </Match>
                <Match when={out()?.phase === 'interrupted'}>
                  <Banner kind="warn">
                    The new device stopped answering. Keep this window open: if it asks again, the history is sent
                    again. Nothing is imported there until all of it has arrived.
                  </Banner>
                </Match>
                <Match when={out()?.phase === 'done'}>
                  <p class="text-emerald-700 dark:text-emerald-400" data-testid="link-out-done">
                    ✓ “{name()}” is linked
                    <Show when={out()?.messages}> and has {out()?.messages} messages of your history</Show>.
                  </p>
                </Match>
              </Switch>
              <Show when={error() || out()?.phase === 'failed'}>
                <Banner kind="error">
                  <span role="alert">{error() ?? errorText({ code: out()?.code })}</span>
                </Banner>
              </Show>
              <Button
                variant={out()?.phase === 'done' ? 'primary' : 'secondary'}
                class="w-full"
                onClick={() => close(false)}
              >
                {out()?.phase === 'done' || out()?.phase === 'failed' || error() ? 'Close' : 'Cancel'}
              </Button>
            </div>
          </Match>
        </Switch>
        <Show when={error() && step() === 'code'}>
          <Banner kind="error">
            <span role="alert">{error()}</span>
          </Banner>
        </Show>
      </div>
    </Modal>
  );
}
