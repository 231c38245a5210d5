/**
 * /removed — shown on a browser whose device was removed from the account from another device. The worker
 * checked the account's signed device list itself (our identity key, newer than ours, without this device)
 * before it erased this browser's keys and messages; the server's word alone never erases anything.
 */
import { AuthCard, buttonClass } from '../components/ui.js';
import { Link } from '../router.js';

export default function Removed() {
  return (
    <AuthCard title="This device was removed from your account">
      <div class="space-y-3 text-sm text-slate-600 dark:text-slate-300" data-testid="device-removed">
        <p>
          One of your other devices removed this browser. Its keys and the messages stored here have been erased, and
          nobody encrypts to it any more.
        </p>
        <p>
          If that was not you, sign in on a device you trust, remove the devices you do not recognise and change your
          password.
        </p>
      </div>
      <div class="mt-5 flex flex-col gap-2">
        <Link href="/link" class={buttonClass('primary')}>
          Link this browser again
        </Link>
        <Link href="/login" class={buttonClass('secondary')}>
          Sign in
        </Link>
      </div>
    </AuthCard>
  );
}
