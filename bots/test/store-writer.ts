/**
 * Child process for the crash test (bots/file-store.test.ts): opens the sealed store and commits
 * transactions 1, 2, 3, … — each writes `a/<i>` and `b/<i>` — printing `ack <i>` only after the commit
 * resolved. The parent SIGKILLs it at an arbitrary moment.
 *
 * Usage: node --import tsx bots/test/store-writer.ts <dir> <key base64url> <compactBytes>
 */
import { openFileStore, stateKeyFrom } from '../src/file-store.js';

const [dir, key, compact] = process.argv.slice(2) as [string, string, string];
const store = await openFileStore(dir, stateKeyFrom(key), { compactBytes: Number(compact) });
const start = Number((await store.get('last')) ? new TextDecoder().decode(await store.get('last')) : '0');
const pad = new Uint8Array(200).fill(7);
for (let i = start + 1; ; i++) {
  await store.transaction(async (tx) => {
    tx.put(`a/${i}`, pad);
    tx.put(`b/${i}`, new TextEncoder().encode(String(i)));
    tx.put('last', new TextEncoder().encode(String(i)));
  });
  process.stdout.write(`ack ${i}\n`);
}
