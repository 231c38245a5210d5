/**
 * Content-type vectors (docs/PROTOCOL.md §"Content types"): the PLAINTEXT layer inside a pairwise or
 * sender-key message — the UTF-8 JSON payload before padding and encryption — and what a version-1 receiver
 * makes of it (`decodeContent`): `ok` with the checked content, `unsupported` (a type or version from the
 * future: shown as "unsupported message" when it carries an id, ignored otherwise) or `malformed` with the
 * field that broke its rule. No randomness, no clock: every input is the payload itself.
 * @module
 */
import { toHex } from '../bytes.js';
import { type Content, decodeContent, encodeContent, encodeJson } from '../content.js';

export interface ContentVector {
  readonly name: string;
  /** The payload as it is inside the ciphertext (UTF-8 JSON). */
  readonly payload: string;
  readonly payloadHex: string;
  /** What a version-1 receiver decodes (bytes in `{"$b": base64url}` form, as in the payload). */
  readonly expected:
    | { readonly kind: 'ok'; readonly content: unknown }
    | { readonly kind: 'unsupported'; readonly t: string; readonly conv: string; readonly id: string | null }
    | { readonly kind: 'malformed'; readonly t: string | null; readonly conv: string | null; readonly reason: string };
  /** For `ok` vectors: the canonical encoding a version-1 sender writes for that content. */
  readonly canonical?: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const C = 'c_vectors';

/** Each case: a name and the exact payload string. */
export const CONTENT_CASES: readonly (readonly [string, string])[] = [
  ['text', `{"t":"text","conv":"${C}","id":"m1","body":"Hello, Bob 👋","sentAt":1700000000000}`],
  [
    'text reply with timer hint',
    `{"t":"text","conv":"${C}","id":"m2","body":"yes!","sentAt":1700000001000,"reply":{"id":"m1","author":"alice","text":"Hello, Bob 👋"},"exp":300}`,
  ],
  [
    'text with explicit v 1 and an unknown field (ignored)',
    `{"t":"text","v":1,"conv":"${C}","id":"m3","body":"x","sentAt":0,"color":"red"}`,
  ],
  [
    'att',
    `{"t":"att","conv":"${C}","id":"m4","body":"holiday","sentAt":1700000002000,"att":{"v":1,"attachmentId":"a_0123456789abcdefghijkl"}}`,
  ],
  ['react', `{"t":"react","conv":"${C}","target":"m1","emoji":"👍🏽"}`],
  ['react removed', `{"t":"react","conv":"${C}","target":"m1","emoji":""}`],
  ['edit', `{"t":"edit","conv":"${C}","target":"m1","body":"Hello, Bob!","sentAt":1700000003000}`],
  ['delete', `{"t":"delete","conv":"${C}","target":"m1"}`],
  ['typing', `{"t":"typing","conv":"${C}","on":true}`],
  ['receipt', `{"t":"receipt","conv":"${C}","status":"read","ids":["m1","m2"]}`],
  ['skd', `{"t":"skd","conv":"${C}","d":{"$b":"AQIDBA"}}`],
  ['pk', `{"t":"pk","conv":"${C}","k":{"$b":"AQID"}}`],
  ['sync', `{"t":"sync","conv":"${C}","read":[{"c":"c2","seq":41},{"c":"c3","seq":0}]}`],
  ['kth', `{"t":"kth","conv":"${C}","head":{"$b":"AQIDBAU"}}`],
  ['future type with id: unsupported message', `{"t":"poll","conv":"${C}","id":"m5","question":"lunch?"}`],
  ['future type without id: ignored signal', `{"t":"presence","conv":"${C}","state":"away"}`],
  ['future version of a known type', `{"t":"text","v":2,"conv":"${C}","id":"m6","rich":[]}`],
  ['not JSON', 'hello'],
  ['no type', `{"conv":"${C}","id":"m7"}`],
  ['text without id', `{"t":"text","conv":"${C}","body":"x","sentAt":0}`],
  ['react with two emoji', `{"t":"react","conv":"${C}","target":"m1","emoji":"👍👎"}`],
  ['react with a letter', `{"t":"react","conv":"${C}","target":"m1","emoji":"a"}`],
  ['edit with a bad target', `{"t":"edit","conv":"${C}","target":"../m1","body":"x","sentAt":0}`],
  ['typing with a non-boolean', `{"t":"typing","conv":"${C}","on":"yes"}`],
  ['text with a timer out of range', `{"t":"text","conv":"${C}","id":"m8","body":"x","sentAt":0,"exp":60}`],
  ['sync with a negative seq', `{"t":"sync","conv":"${C}","read":[{"c":"c2","seq":-1}]}`],
  ['version 0', `{"t":"text","v":0,"conv":"${C}","id":"m9","body":"x","sentAt":0}`],
];

const jsonSafe = (x: unknown): unknown => JSON.parse(dec.decode(encodeJson(x)));

export function generateContentVectors(): { vectors: ContentVector[] } {
  const vectors = CONTENT_CASES.map(([name, payload]): ContentVector => {
    const bytes = enc.encode(payload);
    const r = decodeContent(bytes);
    const base = { name, payload, payloadHex: toHex(bytes) };
    if (r.kind === 'ok')
      return {
        ...base,
        expected: { kind: 'ok', content: jsonSafe(r.content) },
        canonical: dec.decode(encodeContent(r.content as Content)),
      };
    return { ...base, expected: r };
  });
  return { vectors };
}
