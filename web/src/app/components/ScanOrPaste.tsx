/**
 * A code taken from the camera (QrScanner) or pasted: the shared block of "Link a new device" and the
 * safety number's "Compare with their code". A button opens the camera; if it is unavailable, why is shown
 * and the paste form stays; a pasted code is submitted with the form's button.
 *
 * Does NOT: interpret the code (the caller's `onCode` does, and answers whether the camera can stop).
 */
import { createSignal, Show } from 'solid-js';
import { QrScanner } from './QrScanner.js';
import { Banner, Button, inputClass } from './ui.js';

export interface ScanOrPasteProps {
  /** The camera button's words. */
  scanLabel: string;
  /** The paste field's label, id (also its test id), placeholder and height in rows. */
  pasteLabel: string;
  pasteId: string;
  placeholder: string;
  rows: number;
  /** The paste form's submit button. */
  submitLabel: string;
  /** The pasted text (controlled by the caller, which may need it later). */
  value: string;
  onInput: (text: string) => void;
  /** A code scanned or submitted; return true when it was taken (the camera then stops). */
  onCode: (text: string) => boolean;
}

export function ScanOrPaste(props: ScanOrPasteProps) {
  const [camera, setCamera] = createSignal(false);
  const [cameraNote, setCameraNote] = createSignal<string | null>(null);
  const take = (text: string) => {
    if (props.onCode(text)) setCamera(false);
  };
  return (
    <>
      <Show
        when={camera()}
        fallback={
          <Button variant="secondary" class="w-full" onClick={() => setCamera(true)}>
            {props.scanLabel}
          </Button>
        }
      >
        <QrScanner
          onCode={take}
          onUnavailable={(why) => {
            setCamera(false);
            setCameraNote(why);
          }}
        />
      </Show>
      <Show when={cameraNote()}>
        <Banner kind="warn">{cameraNote()}</Banner>
      </Show>
      <form
        class="space-y-2"
        onSubmit={(e) => {
          e.preventDefault();
          take(props.value);
        }}
      >
        <label for={props.pasteId} class="block text-sm font-medium text-slate-700 dark:text-slate-300">
          {props.pasteLabel}
        </label>
        <textarea
          id={props.pasteId}
          rows={props.rows}
          class={`${inputClass} font-mono text-xs`}
          placeholder={props.placeholder}
          value={props.value}
          onInput={(e) => props.onInput(e.currentTarget.value)}
          data-testid={props.pasteId}
        />
        <Button type="submit" class="w-full" disabled={!props.value.trim()}>
          {props.submitLabel}
        </Button>
      </form>
    </>
  );
}
