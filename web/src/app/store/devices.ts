/**
 * The account's devices (from the server, names opened in the worker) with rename and revocation —
 * optimistic, rolled back if the server refuses — and linking (issue 14): this browser being linked
 * (`linkStart`, progress in `state.link`; once linked it is signed in) or linking another device
 * (`linkDevice`, progress in `state.linkOut`).
 * @module
 */
import type { Agent } from './agent.js';
import type { Actions, SetState, State } from './state.js';

export function createDevices(agent: () => Agent, actions: Actions, state: State, setState: SetState): void {
  let wired = false;
  const wire = () => {
    if (wired) return;
    wired = true;
    agent().onLink((side, p) => {
      if (side === 'out') {
        setState('linkOut', p);
        if (p.phase === 'linked' || p.phase === 'done') void actions.loadDevices().catch(() => undefined);
        return;
      }
      setState('link', p);
      if (p.phase === 'linked' && p.me) void actions.linkedAs(p.me);
    });
  };
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
    async renameDevice(deviceId: string, name: string) {
      await agent().session.renameDevice(deviceId, name);
      setState('devices', (l) => l.map((d) => (d.deviceId === deviceId ? { ...d, name } : d)));
    },
    async linkStart() {
      wire();
      setState('link', { phase: 'waiting' });
      return agent().session.linkStart();
    },
    linkRetry: () => agent().session.linkRetryHistory(),
    async linkCancel() {
      setState('link', null);
      await agent().session.linkCancel();
    },
    async linkEraseLocal(username: string) {
      await agent().session.eraseLocal(username);
    },
    async linkDevice(code: string, req: { deviceName: string; history: boolean }) {
      wire();
      setState('linkOut', { phase: 'linking', deviceName: req.deviceName });
      return agent().session.linkDevice(code, req);
    },
    linkDeviceCancel: () => agent().session.linkDeviceCancel(),
  } satisfies Partial<Actions>);
}
