/**
 * Key-transparency warnings (engine transparency.ts): the alerts the engine raised — a key the log does not
 * prove, a log that forked, rolled back or rewrote history, a split view a contact's head exposed, a new key
 * registered for our own account — kept in `state.ktAlerts` for the security banner (App.tsx), newest first.
 * Loaded after sign-in and updated live from `kt_alert` events; dismissing one removes it from the engine's
 * store too.
 * @module
 */
import type { Agent } from './agent.js';
import type { Actions, SetState, State } from './state.js';

export function createTransparency(agent: () => Agent, actions: Actions, _state: State, setState: SetState): void {
  let wired = false;
  Object.assign(actions, {
    async loadKtAlerts() {
      if (!wired) {
        wired = true;
        agent().onEvent((e) => {
          if (e.type !== 'kt_alert') return;
          setState('ktAlerts', (all) => [e.alert, ...all.filter((a) => a.id !== e.alert.id)]);
        });
      }
      setState('ktAlerts', await agent().engine.ktAlerts());
    },
    async dismissKtAlert(id: string) {
      await agent().engine.dismissKtAlert(id);
      setState('ktAlerts', (all) => all.filter((a) => a.id !== id));
    },
  } satisfies Partial<Actions>);
}
