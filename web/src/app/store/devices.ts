/**
 * The account's devices (from the server) with revocation — optimistic, rolled back if the server refuses.
 * @module
 */
import type { Agent } from './agent.js';
import type { Actions, SetState, State } from './state.js';

export function createDevices(agent: () => Agent, actions: Actions, state: State, setState: SetState): void {
  Object.assign(actions, {
    async loadDevices() {
      setState('devices', await agent().session.devices());
    },
    async revokeDevice(deviceId: string) {
      const before = state.devices;
      setState('devices', (l) => l.map((d) => (d.deviceId === deviceId ? { ...d, revoked: true } : d)));
      try {
        await agent().session.revokeDevice(deviceId);
      } catch (e) {
        setState('devices', before);
        throw e;
      }
    },
  } satisfies Partial<Actions>);
}
