import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, pipeline, Readable } from 'node:stream';
import { pipeline as pipelineAsync } from 'node:stream/promises';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { compressBuffer } from 'simple-zstd';
import { ConfigError, InputError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { HOUR_UNKNOWN, recordTimes } from '../../src/sources/page-process.js';
import {
  createReplaySource,
  fileInput,
  parseS3Url,
  readReplayPosition,
  replayPosition,
  s3Inputs,
  stdinInput,
  type ReplayInput,
} from '../../src/sources/replay.js';
import { hourOf } from '../../src/time.js';
import { createValidate, validateBatch } from '../../src/transforms/validate.js';
import { ORIGIN_MARK, type Batch } from '../../src/types.js';
import { collector, makeEvent } from '../helpers/batches.js';
import { tempDir } from '../helpers/fs.js';
import { until } from '../helpers/proc.js';
import {
  byteCounter,
  chunkedInput,
  collect,
  collectUntilError,
  compress,
  encode,
  eventsOverHours,
  expectedCuts,
  H10,
  HOUR,
  originOf,
  waitFor,
  zstd,
  zstdChildren,
  type Compression,
  type Format,
} from '../helpers/replay-fixtures.js';
import { s3Skip } from '../helpers/require-s3.js';
import { createTestBucket, emptyAndDeleteBucket, testS3Client } from '../helpers/s3.js';

const dirs: string[] = [];
/** A temp dir, removed after the file's tests (the backpressure case writes ~100 MB). */
async function scratchDir(): Promise<string> {
  const dir = await tempDir('aap-replay-');
  dirs.push(dir);
  return dir;
}
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

const FORMATS: Format[] = ['lines', 'array', 'page', 'pagelines'];
const COMPRESSIONS: Compression[] = ['none', 'gzip', 'zstd'];

function recordsOf(batches: Batch[]): unknown[] {
  return batches.flatMap((b) => b.records);
}
function originsOf(batches: Batch[]): string[] {
  return batches.flatMap((b) => b.origins ?? []);
}

/** Checks the positions of one input's batches: units so far, `done` only (and always) on the last. */
function assertPositions(batches: Batch[], name: string, from = 0): void {
  let units = from;
  batches.forEach((b, i) => {
    units += b.records.length + b.quarantined.length;
    assert.deepEqual(b.position, replayPosition(name, units, i === batches.length - 1), `batch ${i} of ${name}`);
  });
}

/** A logger that keeps its lines. */
function memoryLogger(): Logger & { lines: { level: string; msg: string; fields?: Record<string, unknown> }[] } {
  const lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push({ level, msg, ...(fields === undefined ? {} : { fields }) });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

test('every format, plain, gzip and zstd (several frames/members), under a misleading name: the same records in order, their origins, hour cuts and positions', async () => {
  const dir = await scratchDir();
  const events = eventsOverHours([15, 12, 13]);
  const hours = events.map((e) => recordTimes(e).hour);
  const cuts = expectedCuts(hours, 7);
  for (const format of FORMATS) {
    for (const how of COMPRESSIONS) {
      // Every file is named .json: only the bytes tell zstd, gzip, JSON lines and pages apart.
      const path = join(dir, `${format}-${how}.json`);
      await writeFile(path, compress(encode(events, format), how));
      const batches = await collect(createReplaySource([fileInput(path)], { batchSize: 7 }));
      const what = `${format}/${how}`;
      assert.deepEqual(recordsOf(batches), events, what);
      assert.deepEqual(originsOf(batches), events.map((_, i) => originOf(path, format, i)), what);
      assert.deepEqual(batches.map((b) => b.records.length), cuts.map((c) => c.length), what);
      assert.deepEqual(batches.map((b) => b.hour), cuts.map((c) => c[0]), what);
      for (const b of batches) {
        assert.deepEqual(b.events, []);
        assert.deepEqual(b.quarantined, []);
        assert.equal(b.fetched, 0);
        assert.equal(b.lastProcessedAt, undefined);
      }
      assertPositions(batches, path);
    }
  }
});

test('the same inputs re-chunked at 1, 7 and 4096 bytes give the same batches', async () => {
  const events = eventsOverHours([5, 4]);
  // A BOM, a blank first line, CRLF line ends, and a last line without a line break.
  const lines = Buffer.from(`\uFEFF\r\n${events.map((e) => JSON.stringify(e)).join('\r\n')}`);
  const inputs: [string, Buffer][] = [
    ['lines', lines],
    ['array', encode(events, 'array')],
    ['page', encode(events, 'page')],
    ['zstd pagelines', zstd(encode(events, 'pagelines'))],
  ];
  for (const [name, bytes] of inputs) {
    const reference = await collect(createReplaySource([chunkedInput(name, bytes, 1 << 20)], { batchSize: 4 }));
    assert.deepEqual(recordsOf(reference), events, name);
    for (const size of [1, 7, 4096]) {
      const batches = await collect(createReplaySource([chunkedInput(name, bytes, size)], { batchSize: 4 }));
      assert.deepEqual(batches, reference, `${name} in chunks of ${size}`);
    }
  }
  const ref = await collect(createReplaySource([chunkedInput('x', lines, 5)]));
  assert.deepEqual(originsOf(ref), events.map((_, i) => `x line ${i + 2}`), 'line numbers count the blank first line');
});

test('cuts at batchSize and where the hour changes; a record without an hour joins the current batch', async () => {
  const at = (h: number, m = 0): string => new Date(H10 + h * HOUR + m * 60_000).toISOString();
  const ev = (h: number, m = 0): Record<string, unknown> => makeEvent({ time: at(h, m), processedAt: at(h, m) });
  // No processedAt: its time gives the hour. No time at all: no hour.
  const byTime = makeEvent({ time: at(1, 30) });
  delete (byTime['attributes'] as Record<string, unknown>)['processedAt'];
  const noHour = { id: 'x', attributes: {} };
  const lines = [ev(0), ev(0, 1), ev(0, 2), noHour, ev(1), byTime, 'garbage', ev(1, 5), ev(2), 5, ev(2, 1)].map((r) =>
    typeof r === 'string' ? r : JSON.stringify(r),
  );
  const batches = await collect(createReplaySource([chunkedInput('h', Buffer.from(lines.join('\n')), 64)], { batchSize: 3 }));
  const shape = batches.map((b) => ({ hour: (b.hour - H10) / HOUR, records: b.records.length, quarantined: b.quarantined.length, skip: b.position.skip }));
  assert.deepEqual(shape, [
    { hour: 0, records: 3, quarantined: 0, skip: 3 },
    { hour: 1, records: 3, quarantined: 0, skip: 6 }, // noHour, ev(1), byTime: full
    { hour: 1, records: 1, quarantined: 1, skip: 8 }, // 'garbage' joins, then the hour changes
    { hour: 2, records: 3, quarantined: 0, skip: 11 }, // 5 (a number) has no hour
  ]);
  assert.equal(batches.at(-1)!.position.cursor, 'replay:done:h');

  // Before any record with an hour, the clock's hour.
  const now = Date.parse('2031-02-03T04:05:06Z');
  const unknown = await collect(
    createReplaySource([chunkedInput('u', Buffer.from('[1, {"id": "a"}]'), 100)], {}, { clock: { now: () => now, sleep: async () => {} } }),
  );
  assert.deepEqual(unknown.map((b) => b.hour), [hourOf(now)]);
  assert.equal(recordTimes(1).hour, HOUR_UNKNOWN);
});

test('lines that are not JSON are quarantined with their line number, counted in fetched, and reconcile after validate', async () => {
  const dir = await scratchDir();
  const path = join(dir, 'mixed.jsonl');
  const good = eventsOverHours([3]);
  const noId = makeEvent();
  delete noId['id'];
  const text = [
    JSON.stringify(good[0]),
    '{"id": "cut',
    '',
    '   ',
    JSON.stringify(good[1]),
    'not json at all',
    JSON.stringify(noId),
    '[1, 2]',
    JSON.stringify(good[2]),
    '{"truncated": tr',
  ].join('\n');
  await writeFile(path, text);
  const batches = await collect(createReplaySource([fileInput(path)], { batchSize: 100 }));
  assert.equal(batches.length, 1);
  const b = batches[0]!;
  assert.deepEqual(b.quarantined.map((q) => q.record), ['{"id": "cut', 'not json at all', '{"truncated": tr']);
  for (const [q, line] of [[b.quarantined[0]!, 2], [b.quarantined[1]!, 6], [b.quarantined[2]!, 10]] as const) {
    assert.match(q.reason, /^not JSON: /);
    assert.ok(q.reason.endsWith(`${ORIGIN_MARK}${path} line ${line})`), q.reason);
  }
  assert.equal(b.fetched, 3);
  assert.deepEqual(b.origins, [1, 5, 7, 8, 9].map((n) => `${path} line ${n}`));
  // Blank lines are not units: 8 units.
  assert.deepEqual(b.position, replayPosition(path, 8, true));

  validateBatch(b);
  assert.deepEqual(b.events, good);
  assert.equal(b.fetched, b.events.length + b.quarantined.length);
  const reasons = b.quarantined.map((q) => q.reason);
  assert.ok(reasons.some((r) => r.startsWith('id: missing') && r.endsWith(`${ORIGIN_MARK}${path} line 7)`)), reasons.join('\n'));
  assert.ok(reasons.some((r) => r.endsWith(`${ORIGIN_MARK}${path} line 8)`)), 'an array line is a record, quarantined by validate');
});

test('a line longer than 64 MiB is quarantined with its first KiB, not held whole', async () => {
  const dir = await scratchDir();
  const path = join(dir, 'long.jsonl.gz');
  const events = eventsOverHours([2]);
  const long = `{"id": "${'a'.repeat(65 * 1024 * 1024)}"}`;
  // gzip keeps the file small (65 MiB of one letter is ~65 KB).
  await writeFile(path, gzipSync(Buffer.from(`${JSON.stringify(events[0])}\n${long}\n${JSON.stringify(events[1])}\n`), { level: 1 }));
  const batches = await collect(createReplaySource([fileInput(path)]));
  const q = batches.flatMap((b) => b.quarantined);
  assert.equal(q.length, 1);
  assert.equal(q[0]!.reason, `not JSON: line longer than 64 MiB${ORIGIN_MARK}${path} line 2)`);
  assert.equal(q[0]!.record, long.slice(0, 1024));
  assert.deepEqual(recordsOf(batches), events);
  assert.deepEqual(originsOf(batches), [`${path} line 1`, `${path} line 3`]);
});

test('array elements that are not objects are records (validate quarantines them); other first bytes read as JSON lines', async () => {
  const arr = await collect(createReplaySource([chunkedInput('a.json', Buffer.from(' \n[1, "x", null, [], {"id": "y"}]\n'), 3)]));
  assert.deepEqual(recordsOf(arr), [1, 'x', null, [], { id: 'y' }]);
  assert.deepEqual(originsOf(arr), [0, 1, 2, 3, 4].map((i) => `a.json element ${i}`));

  const other = await collect(createReplaySource([chunkedInput('o.txt', Buffer.from('hello\n"a string"\n{"id": 1}\n'), 4)]));
  assert.deepEqual(recordsOf(other), ['a string', { id: 1 }]);
  assert.deepEqual(other.flatMap((b) => b.quarantined.map((q) => q.record)), ['hello']);
});

test('an empty input (plain, gzip, zstd) is one empty batch marked done', async () => {
  const dir = await scratchDir();
  for (const [name, bytes] of [['empty', Buffer.alloc(0)], ['empty.gz', gzipSync(Buffer.alloc(0))], ['empty.zst', zstd(Buffer.alloc(0))], ['blank', Buffer.from('\n \n')]] as const) {
    const path = join(dir, name);
    await writeFile(path, bytes);
    const batches = await collect(createReplaySource([fileInput(path)]));
    assert.equal(batches.length, 1, name);
    assert.deepEqual(batches[0]!.records, []);
    assert.deepEqual(batches[0]!.quarantined, []);
    assert.equal(batches[0]!.fetched, 0);
    assert.deepEqual(batches[0]!.position, replayPosition(path, 0, true));
  }
});

test('inputs are read in the order given, each with its own positions; simple-zstd output is read too', async () => {
  const dir = await scratchDir();
  const events = eventsOverHours([4, 4]);
  const a = join(dir, 'a.jsonl.zst');
  const b = join(dir, 'b.json');
  await writeFile(a, await compressBuffer(encode(events.slice(0, 5), 'lines'), 3));
  await writeFile(b, encode(events.slice(5), 'array'));
  const batches = await collect(createReplaySource([fileInput(a), fileInput(b)], { batchSize: 3 }));
  assert.deepEqual(recordsOf(batches), events);
  const ofA = batches.filter((x) => x.position.cursor!.endsWith(a));
  const ofB = batches.filter((x) => x.position.cursor!.endsWith(b));
  assert.equal(ofA.length + ofB.length, batches.length);
  assertPositions(ofA, a);
  assertPositions(ofB, b);
});

test('resume: a done input is not opened; a partial one skips exactly its first n units', async () => {
  const events = eventsOverHours([10, 10]);
  // Units: 3 page lines of 6, a bad line, 2 records, a page line of 2: 18 + 1 + 2 + 2 = 23.
  const text = Buffer.concat([
    encode(events.slice(0, 18), 'pagelines'),
    Buffer.from(`oops\n${JSON.stringify(events[18])}\n\n${JSON.stringify(events[19])}\n`),
    Buffer.from(`${JSON.stringify({ data: [{ id: 'p0' }, { id: 'p1' }] })}\n`),
  ]);
  // One unit per batch: the units in input order.
  const all = await collect(createReplaySource([chunkedInput('r', text, 1000)], { batchSize: 1 }));
  const units = all.flatMap((b) => [...b.records.map((r, i) => ({ r, o: b.origins![i] })), ...b.quarantined.map((q) => ({ r: q.record, o: q.reason }))]);
  assert.equal(all.at(-1)!.position.skip, 23);

  for (const n of [0, 4, 6, 17, 18, 19, 22, 23]) {
    const done = chunkedInput('done', Buffer.from('{"id": 1}\n'), 100);
    const logger = memoryLogger();
    const batches = await collect(
      createReplaySource([done, chunkedInput('r', text, 1000)], { batchSize: 5, resume: { done: { records: 1, done: true }, r: { records: n, done: false } } }, { logger }),
    );
    assert.equal(done.opened, 0, 'a done input is never opened');
    assert.ok(logger.lines.some((l) => l.level === 'info' && l.fields?.['input'] === 'done'));
    const got = batches.flatMap((b) => [...b.records.map((r, i) => ({ r, o: b.origins![i] })), ...b.quarantined.map((q) => ({ r: q.record, o: q.reason }))]);
    // Within a batch records come before quarantined lines, so compare as sets of units.
    const key = (u: { r: unknown; o: string | undefined }): string => JSON.stringify(u);
    assert.deepEqual(got.map(key).sort(), units.slice(n).map(key).sort(), `resume at ${n}`);
    assertPositions(batches, 'r', n);
  }

  // A checkpoint past the end (the file changed): a warning, and done at what is there.
  const logger = memoryLogger();
  const past = await collect(createReplaySource([chunkedInput('r', text, 1000)], { resume: { r: { records: 99, done: false } } }, { logger }));
  assert.deepEqual(past.map((b) => b.position), [replayPosition('r', 23, true)]);
  assert.ok(logger.lines.some((l) => l.level === 'warn'));

  // The same for an array.
  const arr = await collect(createReplaySource([chunkedInput('a', encode(events, 'array'), 777)], { batchSize: 4, resume: { a: { records: 13, done: false } } }));
  assert.deepEqual(recordsOf(arr), events.slice(13));
  assert.deepEqual(originsOf(arr), events.slice(13).map((_, i) => `a element ${i + 13}`));
  assertPositions(arr, 'a', 13);
});

test('truncated zstd, gzip, JSON array and page document, and a missing file: InputError naming the input, never a done position after it', async () => {
  const dir = await scratchDir();
  const events = eventsOverHours([40, 40]);
  const lines = encode(events, 'lines');
  const cases: [string, Buffer, RegExp][] = [
    ['cut.jsonl.zst', zstd(lines).subarray(0, -30), /is truncated or corrupt \(zstd: /],
    ['cut.jsonl.gz', gzipSync(lines).subarray(0, -30), /is truncated or corrupt \(gzip: /],
    ['cut.json', encode(events, 'array').subarray(0, -500), /is a JSON array cut short or malformed after element \d+ /],
    ['cut-page.json', encode(events, 'page').subarray(0, 3000), /is a JSON page document cut short or malformed after data\[\d+\] /],
    ['no-data.json', Buffer.from('{\n  "meta": {"next": null}\n}\n'), /without a "data" array/],
    ['data-object.json', Buffer.from('{\n  "data": {"id": "x"}\n}\n'), /is a JSON page document cut short or malformed \("data" is not an array\)/],
    ['trailing.json', Buffer.from('[{"id": "a"}, {"id": "b"}] x'), /is a JSON array cut short or malformed \(Parser cannot parse input/],
    ['corrupt.zst', Buffer.concat([zstd(lines).subarray(0, 60), Buffer.alloc(2000, 0x55)]), /is truncated or corrupt \(zstd: /],
  ];
  for (const [name, bytes, pattern] of cases) {
    const path = join(dir, name);
    await writeFile(path, bytes);
    const { batches, error } = await collectUntilError(createReplaySource([fileInput(path), fileInput(join(dir, 'never-reached'))], { batchSize: 10 }));
    assert.ok(error instanceof InputError, `${name}: ${String(error)}`);
    assert.equal(error.input, path);
    assert.equal(error.code, 'ERR_INPUT');
    assert.ok(error.message.startsWith(`replay input ${path} `), error.message);
    assert.match(error.message, pattern);
    assert.ok(batches.every((b) => readReplayPosition(b.position)?.done === false), `${name}: no batch is marked done`);
  }
  const missing = join(dir, 'missing.jsonl');
  const { error } = await collectUntilError(createReplaySource([fileInput(missing)]));
  assert.ok(error instanceof InputError);
  assert.equal(error.input, missing);
  assert.match(error.message, /^replay input .*missing\.jsonl cannot be opened \(ENOENT/);

  // A plain JSON-lines file cut short is not an error: its last partial line is quarantined.
  const cut = join(dir, 'cut.jsonl');
  await writeFile(cut, lines.subarray(0, -40));
  const batches = await collect(createReplaySource([fileInput(cut)], { batchSize: 1000 }));
  assert.equal(batches.length, 2); // cut at the hour change
  assert.equal(recordsOf(batches).length, events.length - 1);
  assert.match(batches[1]!.quarantined[0]!.reason, new RegExp(`^not JSON: .*line ${events.length}\\)$`));
  assert.deepEqual(batches[1]!.position, replayPosition(cut, events.length, true));
});

test('through validate with pipeline(): records become events, bad ones are quarantined at their origin; an InputError reaches pipeline() as that error', async () => {
  const dir = await scratchDir();
  const events = eventsOverHours([3]);
  const good = join(dir, 'good.json');
  await writeFile(good, zstd(encode([...events, { id: 'bad' }], 'page')));
  const sink = collector();
  await pipelineAsync(createReplaySource([fileInput(good)]), createValidate(), sink);
  assert.deepEqual(sink.batches.flatMap((b) => b.events), events);
  assert.deepEqual(sink.batches.flatMap((b) => b.quarantined.map((q) => q.reason)), [`type: missing${ORIGIN_MARK}${good} data[3])`]);
  for (const b of sink.batches) assert.equal(b.fetched, b.events.length + b.quarantined.length);

  const cut = join(dir, 'cut.json.gz');
  await writeFile(cut, gzipSync(encode(events, 'array')).subarray(0, -10));
  await assert.rejects(
    pipelineAsync(createReplaySource([fileInput(good), fileInput(cut)]), createValidate(), collector()),
    (e: unknown) => e instanceof InputError && e.input === cut,
  );
});

test("stdin ('-') through a PassThrough, zstd-compressed, written in small pieces", async () => {
  const events = eventsOverHours([6]);
  const bytes = zstd(encode(events, 'lines'));
  const stdin = new PassThrough();
  const source = createReplaySource([stdinInput(stdin)], { batchSize: 4 });
  const reading = collect(source);
  for (let i = 0; i < bytes.length; i += 50) {
    stdin.write(bytes.subarray(i, i + 50));
    await new Promise((r) => setImmediate(r));
  }
  stdin.end();
  const batches = await reading;
  assert.deepEqual(recordsOf(batches), events);
  assert.deepEqual(originsOf(batches), events.map((_, i) => `- line ${i + 1}`));
  assertPositions(batches, '-');
});

test('positions: replayPosition and readReplayPosition round-trip; parseS3Url', () => {
  for (const [name, n, done] of [['a.jsonl', 0, false], ['s3://b/k:with:colons', 12, true], ['-', 3, false]] as const) {
    const p = replayPosition(name, n, done);
    assert.deepEqual(p, { cursor: `replay:${done ? 'done' : 'part'}:${name}`, skip: n });
    assert.deepEqual(readReplayPosition(p), { name, records: n, done });
  }
  assert.equal(readReplayPosition({ cursor: 'abc', skip: 0 }), undefined);
  assert.equal(readReplayPosition({ from: 5, skip: 0 }), undefined);
  assert.equal(readReplayPosition({ cursor: 'replay:half:x', skip: 0 }), undefined);
  assert.equal(readReplayPosition({ cursor: 'replay:part:x', skip: -1 }), undefined);

  assert.deepEqual(parseS3Url('s3://bucket'), { bucket: 'bucket', prefix: '' });
  assert.deepEqual(parseS3Url('s3://bucket/'), { bucket: 'bucket', prefix: '' });
  assert.deepEqual(parseS3Url('s3://bucket/2026/11/a.jsonl.zst'), { bucket: 'bucket', prefix: '2026/11/a.jsonl.zst' });
  assert.equal(parseS3Url('https://bucket/x'), undefined);
  assert.equal(parseS3Url('s3:///x'), undefined);
  assert.equal(parseS3Url('/tmp/a.jsonl'), undefined);
});

test('s3:// prefix: every object under it in key order, folder markers skipped; no objects and a failed GetObject are InputError', { skip: s3Skip(), timeout: 60_000 }, async () => {
  const client = testS3Client();
  const bucket = await createTestBucket(client);
  try {
    const events = eventsOverHours([3, 3, 3]);
    const objects: [string, Buffer][] = [
      ['arch/b.bin', zstd(encode(events.slice(3, 6), 'array'))],
      ['arch/a.jsonl', encode(events.slice(0, 3), 'lines')],
      ['arch/c/', Buffer.alloc(0)],
      ['arch/c/d.json.gz', gzipSync(encode(events.slice(6), 'page'))],
      ['other/x.jsonl', encode(events.slice(0, 1), 'lines')],
    ];
    for (const [Key, Body] of objects) await client.send(new PutObjectCommand({ Bucket: bucket, Key, Body }));
    const inputs = await s3Inputs(client, `s3://${bucket}/arch/`);
    assert.deepEqual(inputs.map((i) => i.name), ['a.jsonl', 'b.bin', 'c/d.json.gz'].map((k) => `s3://${bucket}/arch/${k}`));
    const batches = await collect(createReplaySource(inputs, { batchSize: 2 }));
    assert.deepEqual(recordsOf(batches), events);
    assert.deepEqual(originsOf(batches).slice(2, 5), [`s3://${bucket}/arch/a.jsonl line 3`, `s3://${bucket}/arch/b.bin element 0`, `s3://${bucket}/arch/b.bin element 1`]);
    assert.deepEqual(originsOf(batches).at(-1), `s3://${bucket}/arch/c/d.json.gz data[2]`);
    assert.deepEqual(batches.filter((b) => readReplayPosition(b.position)?.done).map((b) => readReplayPosition(b.position)), inputs.map((i) => ({ name: i.name, records: 3, done: true })));

    // A whole key, and the whole bucket.
    assert.deepEqual((await s3Inputs(client, `s3://${bucket}/other/x.jsonl`)).map((i) => i.name), [`s3://${bucket}/other/x.jsonl`]);
    assert.equal((await s3Inputs(client, `s3://${bucket}`)).length, 4);

    await assert.rejects(s3Inputs(client, `s3://${bucket}/nothing-here/`), (e: unknown) => e instanceof InputError && e.message.includes('names no objects'));
    await assert.rejects(s3Inputs(client, `s3://no-such-bucket-${Date.now()}/`), (e: unknown) => e instanceof InputError && /cannot be listed/.test(e.message));

    // Listed, then gone: GetObject fails when the source reaches it.
    const listed = await s3Inputs(client, `s3://${bucket}/other/`);
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'other/x.jsonl' }));
    const { error } = await collectUntilError(createReplaySource(listed));
    assert.ok(error instanceof InputError);
    assert.equal(error.input, `s3://${bucket}/other/x.jsonl`);
    assert.match(error.message, /cannot be opened \(.*NoSuchKey|cannot be opened \(.*not exist/i);
  } finally {
    await emptyAndDeleteBucket(client, bucket);
    client.destroy();
  }
});

test('backpressure: a consumer that stops pulling stops the reading (JSON lines and a JSON array)', { timeout: 60_000 }, async () => {
  const dir = await scratchDir();
  const line = Buffer.from(`${JSON.stringify(makeEvent({ id: 'same' }))}\n`);
  const lines = Buffer.concat(Array.from({ length: Math.ceil((48 << 20) / line.length) }, () => line));
  const array = Buffer.concat([Buffer.from('['), Buffer.from(lines.toString().trimEnd().split('\n').join(',')), Buffer.from(']')]);
  for (const [name, bytes] of [['big.jsonl', lines], ['big.json', array]] as const) {
    const path = join(dir, name);
    await writeFile(path, bytes);
    const counter = byteCounter();
    const input: ReplayInput = {
      name: path,
      open: () => Promise.resolve(pipeline(createReadStream(path), counter, () => {})),
    };
    const source = createReplaySource([input], { batchSize: 100 });
    const it = source[Symbol.asyncIterator]();
    const first = await it.next();
    assert.equal((first.value as Batch).records.length, 100);
    // Reading stops: once nothing was read for half a second, nothing more is.
    let seen = -1;
    await until(async () => {
      if (counter.bytes === seen) return true;
      seen = counter.bytes;
      await new Promise((r) => setTimeout(r, 500));
      return false;
    }, `${name}: reading to stop`);
    const stalled = counter.bytes;
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(counter.bytes, stalled, `${name}: reading stopped`);
    // A batch of 100 records is ~80 KB; a few 64 KiB reads beyond what was handed on.
    assert.ok(stalled < 2 * 1024 * 1024, `${name}: read ${stalled} bytes of ${bytes.length} for one batch`);
    source.destroy();
    await once(source, 'close');
    assert.ok(await waitFor(() => counter.destroyed, 60_000), `${name}: the file stream is destroyed with the source`);
  }
});

test('destroy mid-input kills the zstd process and closes the file', { timeout: 30_000 }, async () => {
  const dir = await scratchDir();
  const path = join(dir, 'mid.jsonl.zst');
  const events = eventsOverHours([200]);
  // ~20k lines: far more than the pipes between us and zstd hold.
  await writeFile(path, zstd(Buffer.concat(Array.from({ length: 100 }, () => encode(events, 'lines')))));
  assert.ok(await waitFor(() => zstdChildren().length === 0), 'no zstd child before');
  const counter = byteCounter();
  const input: ReplayInput = { name: path, open: () => Promise.resolve(pipeline(createReadStream(path), counter, () => {})) };
  const source = createReplaySource([input], { batchSize: 50 });
  const it = source[Symbol.asyncIterator]();
  await it.next();
  assert.equal(zstdChildren().length, 1, 'zstd is running while the input is read');
  source.destroy();
  await once(source, 'close');
  assert.ok(await waitFor(() => zstdChildren().length === 0), `zstd children left: ${zstdChildren().join(', ')}`);
  assert.ok(counter.destroyed);
});

test('signal: a graceful stop ends the stream cleanly at a batch boundary, and stops a pending read', async () => {
  const events = eventsOverHours([30]);
  const stop = new AbortController();
  const source = createReplaySource([chunkedInput('s', encode(events, 'lines'), 500)], { batchSize: 4, signal: stop.signal });
  const batches: Batch[] = [];
  for await (const b of source) {
    batches.push(b);
    if (batches.length === 2) stop.abort();
  }
  assert.ok(batches.length >= 2 && batches.length <= 3, `${batches.length} batches`);
  assert.ok(batches.every((b) => b.position.cursor === 'replay:part:s'));
  assert.deepEqual(recordsOf(batches), events.slice(0, batches.length * 4));

  // stdin that never ends: the stop does not wait for it.
  const stdin = new PassThrough();
  stdin.write(`${JSON.stringify(events[0])}\n`);
  const stop2 = new AbortController();
  const pending = collect(createReplaySource([stdinInput(stdin)], { signal: stop2.signal }));
  setTimeout(() => stop2.abort(), 100);
  assert.deepEqual(await pending, []);
});

test('a Readable of the source: objectMode, highWaterMark 1; bad options throw', () => {
  const s = createReplaySource([]);
  assert.equal(s.readableObjectMode, true);
  assert.equal(s.readableHighWaterMark, 1);
  assert.ok(s instanceof Readable);
  assert.throws(() => createReplaySource([], { batchSize: 0 }), RangeError);
  assert.throws(() => createReplaySource([fileInput('a'), fileInput('a')]), (e: unknown) => e instanceof ConfigError && /given twice/.test(e.message));
  s.destroy();
});

test('pzstd output (a skippable frame before each frame) is decompressed, not read as text', async () => {
  const dir = await scratchDir();
  const records = eventsOverHours([40, 40]);
  const plain = join(dir, 'p.jsonl');
  await writeFile(plain, encode(records, 'lines'));
  const { execFile } = await import('node:child_process');
  await new Promise<void>((resolve, reject) => execFile('pzstd', ['-q', '-p', '2', plain, '-o', join(dir, 'p.bin')], (err) => (err ? reject(err) : resolve())));
  const batches = await collect(createReplaySource([fileInput(join(dir, 'p.bin'))]));
  assert.deepEqual(recordsOf(batches), records);
  assert.equal(batches.flatMap((b) => b.quarantined).length, 0);
  // A skippable frame and nothing after it is an empty input; one cut short is an error.
  const skippable = Buffer.from([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]);
  await writeFile(join(dir, 'only-skippable.zst'), skippable);
  assert.deepEqual(recordsOf(await collect(createReplaySource([fileInput(join(dir, 'only-skippable.zst'))]))), []);
  await writeFile(join(dir, 'cut-skippable.zst'), skippable.subarray(0, 10));
  const { error } = await collectUntilError(createReplaySource([fileInput(join(dir, 'cut-skippable.zst'))]));
  assert.ok(error instanceof InputError && /cut-skippable\.zst is truncated or corrupt/.test(error.message), String(error));
});

test('a JSON-lines file whose first line is bad is still JSON lines: that line is quarantined, the rest read', async () => {
  const dir = await scratchDir();
  const good = eventsOverHours([3]);
  for (const first of ['{"id":"bad",', '{"id": "x", "type": tr', '{ "attributes": {']) {
    const path = join(dir, 'first-bad.jsonl');
    await writeFile(path, [first, ...good.map((r) => JSON.stringify(r))].join('\n') + '\n');
    const batches = await collect(createReplaySource([fileInput(path)]));
    assert.deepEqual(recordsOf(batches), good, first);
    assert.deepEqual(batches.flatMap((b) => b.quarantined).map((q) => q.record), [first]);
  }
  // A pretty-printed page still reads as a page.
  const page = join(dir, 'page.json');
  await writeFile(page, JSON.stringify({ data: good, links: {} }, null, 2));
  assert.deepEqual(recordsOf(await collect(createReplaySource([fileInput(page)]))), good);
});

test('a line that is not UTF-8 is quarantined as its bytes (base64), never decoded into another id', async () => {
  const dir = await scratchDir();
  const path = join(dir, 'latin1.jsonl');
  const line = (id: Buffer): Buffer => Buffer.concat([Buffer.from('{"id":"evt-'), id, Buffer.from('","type":"events","attributes":{"time":"2026-11-21T10:00:00Z"},"links":{}}')]);
  const a = line(Buffer.from([0xff]));
  const b = line(Buffer.from([0xfe]));
  await writeFile(path, Buffer.concat([a, Buffer.from('\n'), b, Buffer.from('\n'), Buffer.from(JSON.stringify(eventsOverHours([1])[0]) + '\n')]));
  const batches = await collect(createReplaySource([fileInput(path)]));
  const q = batches.flatMap((x) => x.quarantined);
  assert.deepEqual(q.map((x) => Buffer.from(x.record as string, 'base64')), [a, b], 'each line kept, byte for byte');
  for (const [i, x] of q.entries()) assert.equal(x.reason, `not JSON: invalid UTF-8 (the record is the line's bytes in base64)${ORIGIN_MARK}${path} line ${i + 1})`);
  assert.equal(recordsOf(batches).length, 1);
});

test('batches are also cut by the size of their lines, so long lines never make one huge batch', async () => {
  const dir = await scratchDir();
  const path = join(dir, 'long-lines.jsonl');
  const blob = 'x'.repeat(6 * 1024 * 1024);
  const records = eventsOverHours([7]).map((r) => ({ ...r, blob }));
  await writeFile(path, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  const batches = await collect(createReplaySource([fileInput(path)], { batchSize: 500 }));
  // 16 MiB a batch: three 6 MiB lines reach it.
  assert.deepEqual(batches.map((b) => b.records.length), [3, 3, 1]);
  assert.equal(recordsOf(batches).length, 7);
});

test('an s3:// object whose download is cut mid-body is resumed from where it stopped, same ETag, every record once', { skip: s3Skip(), timeout: 60_000 }, async () => {
  const { startS3FaultProxy, CUT_BODY_AFTER } = await import('../helpers/s3-fault-proxy.js');
  const { createS3Client } = await import('../../src/sinks/s3.js');
  const direct = testS3Client();
  const bucket = await createTestBucket(direct);
  const proxy = await startS3FaultProxy();
  const client = createS3Client({ endpoint: proxy.url, forcePathStyle: true });
  try {
    const { randomBytes } = await import('node:crypto');
    // Random text: the compressed object too is long enough to be cut twice.
    const events = eventsOverHours([400, 400]).map((e) => ({ ...e, noise: randomBytes(600).toString('base64') }));
    const plain = encode(events, 'lines');
    const body = zstd(plain);
    assert.ok(body.length > 3 * CUT_BODY_AFTER, 'the object is long enough to be cut twice');
    await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'big.jsonl', Body: plain }));
    await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'big.zst', Body: body }));
    for (const key of ['big.jsonl', 'big.zst']) {
      const before = proxy.log.length;
      proxy.failNext('GetObject', 'cut-body', 2);
      const batches = await collect(createReplaySource(await s3Inputs(client, `s3://${bucket}/${key}`)));
      assert.deepEqual(recordsOf(batches), events, key);
      assert.equal(batches.flatMap((b) => b.quarantined).length, 0, key);
      const gets = proxy.log.slice(before).filter((e) => e.op === 'GetObject');
      assert.deepEqual(gets.map((e) => e.outcome), ['reset', 'reset', 'forwarded'], key);
    }
  } finally {
    client.destroy();
    await proxy.close();
    await emptyAndDeleteBucket(direct, bucket);
    direct.destroy();
  }
});
