/**
 * What linking needs from the network (docs/API.md §"Linking a device"): the provisioning channel from
 * both sides, the linking token, and the new device's redemption — as two interfaces, with their HTTP
 * implementations over `HttpClient`. The fake server implements the same interfaces for engine tests.
 *
 * - `NewDeviceLinkApi` — the browser being linked: no session yet; the channel secret it got when opening
 *   the channel is its credential; `redeem` ends with this client signed in as the new device.
 * - `LinkingDeviceLinkApi` — the signed-in device that links it (bearer token).
 *
 * Does NOT: seal or open anything (linking.ts and the protocol core do), or retry (callers decide).
 * @module
 */
import type { TokenResponse } from '../../../schema/auth-api.js';
import { fromB64u, toB64u } from './_protocol.js';
import type { HttpClient } from './http-transport.js';

export interface ChannelMessage {
  readonly seq: number;
  readonly data: Uint8Array;
}

export interface ChannelPoll {
  readonly messages: readonly ChannelMessage[];
  /** How far the other side acknowledged what this side sent (the relay's count, informational). */
  readonly peerAcked: number;
  /** The new device redeemed its linking token. */
  readonly linked: boolean;
}

export interface RedeemRequest {
  readonly linkingToken: string;
  readonly channelId: string;
  readonly channelSecret: string;
  readonly deviceList: Uint8Array;
  /** The new device's `signLoginChallenge(linkingChallenge(token))`. */
  readonly signature: Uint8Array;
  /** The encrypted device name (account-keys.ts), if any. */
  readonly name?: Uint8Array;
}

export interface NewDeviceLinkApi {
  /** The server origin the link code names (`URL.origin` of the API base). */
  readonly origin: string;
  openChannel(channelId: string): Promise<{ secret: string; expiresAt: number }>;
  poll(channelId: string, secret: string, after: number, waitMs: number): Promise<ChannelPoll>;
  send(channelId: string, secret: string, data: Uint8Array): Promise<number>;
  close(channelId: string, secret: string): Promise<void>;
  /** Registers the new device with the linking token; afterwards this client is signed in as it. */
  redeem(r: RedeemRequest): Promise<{ userId: string; deviceId: string }>;
}

export interface LinkingDeviceLinkApi {
  readonly origin: string;
  /** A single-use token for the channel (claims it for this device). 409 `device_limit` when full. */
  linkingToken(channelId: string): Promise<{ linkingToken: string; expiresAt: number }>;
  poll(channelId: string, after: number, waitMs: number): Promise<ChannelPoll>;
  send(channelId: string, data: Uint8Array): Promise<number>;
  close(channelId: string): Promise<void>;
  /** Stores an encrypted device name for one of the account's devices. */
  setDeviceName(deviceId: string, name: Uint8Array): Promise<void>;
}

interface PollJson {
  messages: { seq: number; data: string }[];
  peerAcked: number;
  linked: boolean;
}

const poll = (r: PollJson): ChannelPoll => ({
  messages: r.messages.map((m) => ({ seq: m.seq, data: fromB64u(m.data) })),
  peerAcked: r.peerAcked,
  linked: r.linked,
});

const seg = (s: string) => encodeURIComponent(s);

/** The origin requests go to: the client's base URL, or the page's origin in a browser. */
export function apiOrigin(http: HttpClient): string {
  const base = http.baseUrl || (globalThis as { location?: { origin: string } }).location?.origin || '';
  return new URL(base).origin;
}

export function createNewDeviceLinkApi(http: HttpClient): NewDeviceLinkApi {
  const post = <T>(path: string, json: unknown) => http.request<T>('POST', path, { json, auth: false });
  return {
    origin: apiOrigin(http),
    openChannel: (channelId) => post<{ secret: string; expiresAt: number }>('/api/link/channels', { channelId }),
    poll: async (channelId, secret, after, waitMs) =>
      poll(await post<PollJson>(`/api/link/channels/${seg(channelId)}/new/poll`, { secret, after, waitMs })),
    send: async (channelId, secret, data) =>
      (await post<{ seq: number }>(`/api/link/channels/${seg(channelId)}/new/send`, { secret, data: toB64u(data) }))
        .seq,
    close: async (channelId, secret) => {
      await post(`/api/link/channels/${seg(channelId)}/new/close`, { secret });
    },
    async redeem(r) {
      const t = await post<TokenResponse>('/api/devices', {
        linkingToken: r.linkingToken,
        channelId: r.channelId,
        channelSecret: r.channelSecret,
        deviceList: toB64u(r.deviceList),
        signature: toB64u(r.signature),
        ...(r.name ? { name: toB64u(r.name) } : {}),
      });
      http.setTokens(t);
      return { userId: t.userId, deviceId: t.deviceId };
    },
  };
}

export function createLinkingDeviceLinkApi(http: HttpClient): LinkingDeviceLinkApi {
  const post = <T>(path: string, json?: unknown) => http.request<T>('POST', path, json === undefined ? {} : { json });
  return {
    origin: apiOrigin(http),
    linkingToken: (channelId) => post<{ linkingToken: string; expiresAt: number }>('/api/link/token', { channelId }),
    poll: async (channelId, after, waitMs) =>
      poll(await post<PollJson>(`/api/link/channels/${seg(channelId)}/existing/poll`, { after, waitMs })),
    send: async (channelId, data) =>
      (await post<{ seq: number }>(`/api/link/channels/${seg(channelId)}/existing/send`, { data: toB64u(data) })).seq,
    close: async (channelId) => {
      await post(`/api/link/channels/${seg(channelId)}/existing/close`);
    },
    setDeviceName: async (deviceId, name) => {
      await http.request('PUT', `/api/devices/${seg(deviceId)}/name`, { json: { name: toB64u(name) } });
    },
  };
}
