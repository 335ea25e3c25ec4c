/**
 * A process for test/zstd.test.ts: it ignores SIGINT and SIGTERM itself (as the CLI does while it
 * stops) and compresses and decompresses `rounds` × 4 payloads through src/zstd.ts, while the
 * test signals its process group over and over. Prints one JSON line: how many round trips came
 * back identical and the first failure, if any (after a first line `ready`); exits when stdin closes.
 */
import { pipeline } from 'node:stream/promises';
import { Readable, Writable } from 'node:stream';
import { zstdCompress, zstdDecompress } from '../../src/zstd.js';

// `node --test dist/test/` also runs this file, with no arguments: then it does nothing.
if (process.argv[2] === undefined) process.exit(0);

process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
// The test signals only after this line: before it, a signal would kill this process itself.
process.stdout.write('ready\n');

async function roundTrip(payload: Buffer): Promise<boolean> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([payload]), await zstdCompress(3), await zstdDecompress(), new Writable({
    write(chunk: Buffer, _e, cb) {
      out.push(chunk);
      cb();
    },
  }));
  return Buffer.concat(out).equals(payload);
}

const rounds = Number(process.argv[2]);
let identical = 0;
let failure: string | undefined;
for (let r = 0; r < rounds; r++) {
  const results = await Promise.allSettled([0, 1, 2, 3].map((i) => roundTrip(Buffer.from(`{"round":${r},"n":${i}}\n`.repeat(2000)))));
  for (const res of results) {
    if (res.status === 'fulfilled' && res.value) identical++;
    else failure ??= res.status === 'rejected' ? String((res.reason as Error).message) : 'different bytes';
  }
}
process.stdout.write(`${JSON.stringify({ identical, failure })}\n`);
// Exits only when the test, done signalling, closes stdin: a signal during Node's exit would kill it.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
