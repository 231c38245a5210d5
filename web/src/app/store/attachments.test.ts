/**
 * The attachments store against a stand-in agent: what the person does to an upload card is what happens to
 * the file. The media step (decode, strip, re-encode: browser only) is replaced by one the test releases.
 */
import { createStore } from 'solid-js/store';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { PreparedFile } from '../media.js';
import type { Agent } from './agent.js';
import { createAttachments } from './attachments.js';
import { type Actions, initialState, type State } from './state.js';

let release: (() => void)[] = [];
let failNext = false;
vi.mock('../media.js', () => ({
  formatSize: (n: number) => `${n} B`,
  prepareFile: (f: File): Promise<PreparedFile> =>
    new Promise((resolve, reject) => {
      const fail = failNext;
      failNext = false;
      release.push(() => {
        if (fail) reject(new Error('convertToBlob failed'));
        else resolve({ file: f, fileName: f.name, contentType: f.type, width: null, height: null, thumbnail: null });
      });
    }),
}));

function setup() {
  const sent: string[] = [];
  const cancelled: string[] = [];
  const agent = {
    onEvent: () => () => undefined,
    engine: {
      async sendAttachment(_c: string, draft: { fileName: string }) {
        sent.push(draft.fileName);
        return {};
      },
      async cancelTransfer(id: string) {
        cancelled.push(id);
      },
    },
  } as unknown as Agent;
  const [state, setState] = createStore<State>(initialState());
  const actions = {} as Actions;
  createAttachments(() => agent, actions, state, setState);
  return { state, actions, sent, cancelled };
}

const settle = () => new Promise((r) => setTimeout(r, 0));

describe('attachments store: upload cards', () => {
  beforeEach(() => {
    release = [];
  });

  it('a file cancelled while it is being prepared is never sent', async () => {
    const { state, actions, sent } = setup();
    const picking = actions.sendFiles('c1', [new File(['secret bytes'], 'holiday.jpg', { type: 'image/jpeg' })]);
    await settle();
    const card = state.uploads.c1?.[0];
    expect(card?.phase).toBe('preparing');
    await actions.cancelUpload('c1', card!.id);
    expect(state.uploads.c1).toEqual([]);
    // The media step finishes after the cancel.
    for (const r of release) r();
    await picking;
    await settle();
    expect(sent).toEqual([]);
    expect(state.uploads.c1).toEqual([]);
  });

  it('the files not cancelled are still sent (control)', async () => {
    const { state, actions, sent } = setup();
    const picking = actions.sendFiles('c1', [
      new File(['a'], 'a.pdf', { type: 'application/pdf' }),
      new File(['b'], 'b.pdf', { type: 'application/pdf' }),
    ]);
    await settle();
    await actions.cancelUpload('c1', state.uploads.c1![0]!.id);
    release.shift()!(); // a.pdf, cancelled
    await settle();
    release.shift()!(); // b.pdf
    await picking;
    await settle();
    expect(sent).toEqual(['b.pdf']);
  });

  it('a file whose media step fails is not sent as it is: the card fails, and Retry prepares it again', async () => {
    const { state, actions, sent } = setup();
    failNext = true;
    const picking = actions.sendFiles('c1', [new File(['exif+gps'], 'photo.jpg', { type: 'image/jpeg' })]);
    await settle();
    release.shift()!();
    await picking;
    await settle();
    expect(sent).toEqual([]);
    const card = state.uploads.c1![0]!;
    expect(card).toMatchObject({ state: 'failed', error: 'prepare_failed' });
    actions.retryUpload('c1', card.id);
    await settle();
    expect(state.uploads.c1![0]).toMatchObject({ state: 'running', phase: 'preparing' });
    release.shift()!();
    await settle();
    await settle();
    expect(sent).toEqual(['photo.jpg']);
  });
});
