/**
 * Dialogs on Kobalte's Dialog / AlertDialog: focus trapped and restored, Esc and outside click close,
 * title and description wired to aria-labelledby / aria-describedby. A dialog opens with focus on its
 * first field (not on "Close"); one opened from a menu item (which is gone once the menu closes) gives
 * focus back to `returnFocus` when it closes.
 */
// Named parts, not the `Dialog` / `AlertDialog` namespaces: Kobalte 0.13 builds both namespaces with
// Object.assign onto the SAME root function, so whichever module loads last wins (`Dialog.Content`
// would render role="alertdialog").
import * as AlertDialog from '@kobalte/core/alert-dialog';
import * as Dialog from '@kobalte/core/dialog';
import { type JSX, Show } from 'solid-js';
import { Banner, Button, createAction, focusRing } from './ui.js';

const overlay = 'fixed inset-0 z-40 bg-slate-950/50 backdrop-blur-[2px]';
const positioner = 'fixed inset-0 z-40 flex items-end justify-center p-0 sm:items-center sm:p-4';
const panel =
  'max-h-[90vh] w-full max-w-md overflow-y-auto rounded-t-2xl bg-white p-6 shadow-xl ring-1 ring-slate-200 sm:rounded-2xl dark:bg-slate-900 dark:ring-slate-800';

/** Focus the first field of the dialog (else Kobalte's default: its first tabbable element, "Close"). */
function focusFirstField(e: Event) {
  const content = e.currentTarget instanceof HTMLElement ? e.currentTarget : null;
  const field = content?.querySelector<HTMLElement>(
    '[autofocus], input:not([disabled]):not([type=hidden]), textarea:not([disabled]), select:not([disabled])',
  );
  if (!field) return;
  e.preventDefault();
  field.focus();
}

export function Modal(props: {
  open: boolean;
  onOpenChange: (open: boolean) => void;
  title: string;
  description?: string;
  children: JSX.Element;
  /**
   * Where focus goes when the dialog closes (default: the element focused before it opened); null leaves
   * focus alone (the dialog's action moved it, e.g. to a page it opened).
   */
  returnFocus?: () => HTMLElement | null | undefined;
}) {
  return (
    <Dialog.Root open={props.open} onOpenChange={props.onOpenChange}>
      <Dialog.Portal>
        <Dialog.Overlay class={overlay} />
        <div class={positioner}>
          <Dialog.Content
            class={panel}
            onOpenAutoFocus={focusFirstField}
            onCloseAutoFocus={(e) => {
              if (!props.returnFocus) return;
              e.preventDefault();
              props.returnFocus()?.focus();
            }}
          >
            <div class="flex items-start justify-between gap-4">
              <Dialog.Title class="text-lg font-semibold">{props.title}</Dialog.Title>
              <Dialog.CloseButton
                class={`rounded-md p-1 text-slate-500 hover:bg-slate-100 dark:hover:bg-slate-800 ${focusRing}`}
                aria-label="Close"
              >
                ✕
              </Dialog.CloseButton>
            </div>
            <Show when={props.description}>
              <Dialog.Description class="mt-1 text-sm text-slate-500 dark:text-slate-400">
                {props.description}
              </Dialog.Description>
            </Show>
            <div class="mt-4">{props.children}</div>
          </Dialog.Content>
        </div>
      </Dialog.Portal>
    </Dialog.Root>
  );
}

/** A warned confirmation (destructive actions): the action runs only on the explicit confirm button. */
export function ConfirmDialog(props: {
  open: boolean;
  onOpenChange: (open: boolean) => void;
  title: string;
  children: JSX.Element;
  confirmLabel: string;
  danger?: boolean;
  onConfirm: () => Promise<void> | void;
}) {
  const { busy, error, run } = createAction();
  const confirm = () =>
    run(async () => {
      await props.onConfirm();
      props.onOpenChange(false);
    });
  return (
    <AlertDialog.Root open={props.open} onOpenChange={props.onOpenChange}>
      <AlertDialog.Portal>
        <AlertDialog.Overlay class={overlay} />
        <div class={positioner}>
          <AlertDialog.Content class={panel}>
            <AlertDialog.Title class="text-lg font-semibold">{props.title}</AlertDialog.Title>
            <AlertDialog.Description as="div" class="mt-2 space-y-2 text-sm text-slate-600 dark:text-slate-300">
              {props.children}
            </AlertDialog.Description>
            <Show when={error()}>
              <Banner kind="error" class="mt-3">
                {error()}
              </Banner>
            </Show>
            <div class="mt-6 flex justify-end gap-2">
              <AlertDialog.CloseButton
                class={`${focusRing} rounded-lg px-3.5 py-2 text-sm font-medium hover:bg-slate-100 dark:hover:bg-slate-800`}
              >
                Cancel
              </AlertDialog.CloseButton>
              <Button variant={props.danger ? 'danger' : 'primary'} busy={busy()} disabled={busy()} onClick={confirm}>
                {props.confirmLabel}
              </Button>
            </div>
          </AlertDialog.Content>
        </div>
      </AlertDialog.Portal>
    </AlertDialog.Root>
  );
}
