import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import { createLocalDirSink, LocalDirStore } from '../../src/sinks/local-dir.js';
import { createObjectSink, type EpochCommit, type ObjectKind, type ObjectStore, type SinkJournal } from '../../src/sinks/object-sink.js';
import { SinkError } from '../../src/errors.js';
import { createMetrics } from '../../src/metrics.js';
import type { AuditEvent, Batch } from '../../src/types.js';
import { listFiles, readZstdFile, readZstdText, tempDir } from '../helpers/fs.js';
import { until } from '../helpers/proc.js';
import { parsePage } from '../../src/sources/atlassian-events.js';
import { normalizeBatch } from '../../src/transforms/normalize-time.js';
import { validateBatch } from '../../src/transforms/validate.js';

const H10 = Date.parse('2026-11-21T10:00:00Z');
const H11 = Date.parse('2026-11-21T11:00:00Z');
let seq = 0;

function ev(payload = 'x'): AuditEvent {
  seq++;
  return { id: `id-${seq}`, type: 'events', attributes: { time: '2026-11-21T10:00:00.000Z', processedAt: '2026-11-21T10:00:01.000Z' }, links: {}, payload };
}

function batch(events: AuditEvent[], hour = H10, quarantined: Batch['quarantined'] = []): Batch {
  seq++;
  return { records: [], fetched: events.length + quarantined.length, events, quarantined, position: { cursor: `c${seq}`, skip: 0 }, hour, lastProcessedAt: '2026-11-21T10:00:01.000Z' };
}

class RecordingJournal implements SinkJournal {
  commits: Array<EpochCommit & { existed: boolean[] }> = [];
  reserved: string[] = [];
  n = 0;
  constructor(readonly dir: string, readonly pending: Partial<Record<ObjectKind, string>> = {}) {}
  pendingKeys() { return this.pending; }
  async reserve(kind: ObjectKind, hour: number) {
    const key = `${kind === 'events' ? 'ev/' : 'q/'}${new Date(hour).toISOString().slice(0, 13)}/${++this.n}.json.zst`;
    this.reserved.push(key);
    return key;
  }
  async commit(c: EpochCommit) {
    // The checkpoint must never run ahead of the objects: they exist when commit is called.
    this.commits.push({ ...c, existed: c.keys.map((k) => existsSync(join(this.dir, k))) });
  }
}

test('events and quarantine go to separate prefixes; objects split at hour changes; commit follows completion', async () => {
  const dir = await tempDir();
  const journal = new RecordingJournal(dir);
  const metrics = createMetrics({ defaultMetrics: false });
  const sink = createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/' }, { journal, metrics });
  const a = [ev(), ev()];
  const b = [ev()];
  await pipeline(Readable.from([batch(a, H10, [{ reason: 'id: missing', record: { x: 1 } }]), batch(b, H11)]), sink);
  assert.deepEqual(await listFiles(dir), ['.tmp', 'ev/2026-11-21T10/1.json.zst', 'ev/2026-11-21T11/3.json.zst', 'q/2026-11-21T10/2.json.zst'].filter((f) => f !== '.tmp'));
  assert.deepEqual(await readZstdFile(join(dir, 'ev/2026-11-21T10/1.json.zst')), a);
  assert.deepEqual(await readZstdFile(join(dir, 'q/2026-11-21T10/2.json.zst')), [{ reason: 'id: missing', record: { x: 1 } }]);
  assert.equal(journal.commits.length, 2);
  assert.ok(journal.commits.every((c) => c.existed.every(Boolean)));
  assert.deepEqual(journal.commits.map((c) => [c.events, c.quarantined]), [[2, 1], [1, 0]]);
  assert.equal((await metrics.eventsWritten.get()).values[0]!.value, 3);
  assert.equal((await metrics.objectsWritten.get()).values.find((v) => v.labels['kind'] === 'events')!.value, 2);
});

test('objects close on compressed size; every event lands once, in order', async () => {
  const dir = await tempDir();
  const journal = new RecordingJournal(dir);
  const sink = createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/', maxObjectBytes: 200_000 }, { journal });
  // ~2.5 MB of incompressible JSON: zstd emits compressed blocks as it goes, so sizes are seen.
  const events = Array.from({ length: 3000 }, () => ev(randomBytes(600).toString('base64')));
  const batches: Batch[] = [];
  for (let i = 0; i < events.length; i += 10) batches.push(batch(events.slice(i, i + 10)));
  await pipeline(Readable.from(batches), sink);
  const keys = journal.commits.flatMap((c) => c.keys);
  assert.ok(keys.length >= 2, `expected several objects, got ${keys.length}`);
  // Every object but the last closed because it reached the limit (zstd output trails input by
  // one block or so, so the limit is a floor, not an exact size).
  for (const k of keys.slice(0, -1)) assert.ok(statSync(join(dir, k)).size >= 200_000, `${k} closed early`);
  const back: unknown[] = [];
  for (const k of journal.commits.flatMap((c) => c.keys)) back.push(...(await readZstdFile(join(dir, k))));
  assert.deepEqual(back, events);
  assert.deepEqual(journal.commits.at(-1)!.position, batches.at(-1)!.position);
});

test('objects close on age, even when no more batches arrive', async () => {
  const dir = await tempDir();
  const journal = new RecordingJournal(dir);
  const sink = createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/', maxObjectAgeMs: 150 }, { journal });
  const input = new PassThrough({ objectMode: true });
  const done = pipeline(input, sink);
  input.write(batch([ev()]));
  // No more batches: only the age timer can close the object.
  await until(() => journal.commits.length === 1, 'the age timer to close the object');
  input.end(batch([ev()]));
  await done;
  assert.equal(journal.commits.length, 2);
});

test('position-only batches commit without writing an object', async () => {
  const dir = await tempDir();
  const journal = new RecordingJournal(dir);
  const sink = createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/' }, { journal });
  await pipeline(Readable.from([batch([])]), sink);
  assert.equal(journal.commits.length, 1);
  assert.deepEqual(journal.commits[0]!.keys, []);
  assert.deepEqual((await listFiles(dir)).filter((f) => !f.startsWith('.tmp')), []);
});

test('keys a crashed run reserved are rewritten by the next objects of their kind', async () => {
  const dir = await tempDir();
  const journal = new RecordingJournal(dir, { events: 'ev/redo.json.zst' });
  const sink = createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/' }, { journal });
  await pipeline(Readable.from([batch([ev()], H10, [{ reason: 'r', record: 1 }])]), sink);
  assert.deepEqual(journal.commits[0]!.keys.sort(), ['ev/redo.json.zst', journal.reserved[0]!].sort());
  assert.equal(journal.reserved.length, 1, 'no new key reserved for the redone kind');
});

/** A store whose uploads never read their body (S3 unreachable). */
function stalledStore(): ObjectStore & { opened: number } {
  const store = {
    opened: 0,
    open() {
      store.opened++;
      const body = new PassThrough({ highWaterMark: 16 * 1024 });
      return { body, done: new Promise<void>(() => {}), abort: async () => { body.destroy(); } };
    },
    abortIncomplete: async () => {},
    describe: (k: string) => k,
  };
  return store;
}

test('backpressure: a store that stops reading stops the source, with bounded buffering', async () => {
  let pulled = 0;
  const src = new Readable({
    objectMode: true,
    highWaterMark: 1,
    read() {
      pulled++;
      this.push(batch(Array.from({ length: 50 }, () => ev(randomBytes(2000).toString('base64')))));
    },
  });
  const sink = createObjectSink({ prefix: 'ev/', quarantinePrefix: 'q/' }, { store: stalledStore() });
  const done = pipeline(src, sink).catch(() => {});
  // The source must stop, not slow down: wait until it has not pulled for a second, then check it
  // stays there. What was pulled sits in bounded buffers: the zstd process holds ~2.5 MB of input
  // when its output is not read, plus the pipe and stream buffers.
  let seen = -1;
  await until(async () => {
    if (pulled === seen) return true;
    seen = pulled;
    await new Promise((r) => setTimeout(r, 1000));
    return false;
  }, 'the source to stop pulling');
  const early = pulled;
  assert.ok(early * 135_000 < 8 * 1024 * 1024, `${early} batches (~${Math.round((early * 135_000) / 1e6)} MB) buffered`);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(pulled, early, `the source kept producing while the store read nothing (${early} → ${pulled} batches)`);
  sink.destroy();
  await done;
});

test('an upload failure aborts every open upload and fails the pipeline with SinkError; nothing is committed', async () => {
  const dir = await tempDir();
  const journal = new RecordingJournal(dir);
  const aborted: string[] = [];
  const store: ObjectStore = {
    open(key) {
      const body = new PassThrough();
      body.resume();
      const done = key.startsWith('q/') ? Promise.reject(new Error('AccessDenied')) : new Promise<void>((res) => body.on('end', res));
      done.catch(() => {});
      return { body, done, abort: async () => { aborted.push(key); } };
    },
    abortIncomplete: async () => {},
    describe: (k) => k,
  };
  const sink = createObjectSink({ prefix: 'ev/', quarantinePrefix: 'q/' }, { store, journal });
  await assert.rejects(pipeline(Readable.from([batch([ev()], H10, [{ reason: 'r', record: null }])]), sink), (err: unknown) => {
    assert.ok(err instanceof SinkError);
    assert.match((err as Error).message, /AccessDenied/);
    return true;
  });
  assert.deepEqual(aborted.sort(), journal.reserved.sort());
  assert.equal(journal.commits.length, 0);
});

test('destroy aborts open uploads and leaves nothing under the prefix', async () => {
  const dir = await tempDir();
  const sink = createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/' }, {});
  await new Promise<void>((res, rej) => sink.write(batch([ev()]), (e) => (e ? rej(e) : res())));
  sink.destroy();
  await new Promise((r) => sink.on('close', r));
  assert.deepEqual(await listFiles(dir), []);
  void new LocalDirStore({ dir }); // a new store starts with an empty .tmp
  void Writable;
});

test('a record nested too deeply for JSON.stringify is quarantined (truncated, with a reason), not a failed run', async () => {
  // Regression: such a record parses, then made JSON.stringify throw RangeError in the sink, so
  // every retry of the same page failed and the collector never got past it.
  const deep = JSON.parse(`${'['.repeat(20_000)}${']'.repeat(20_000)}`) as unknown;
  const dir = await tempDir();
  const journal = new RecordingJournal(dir);
  const sink = createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/' }, { journal });
  const good = ev();
  const bad = { ...ev(), deep };
  await pipeline(Readable.from([batch([good, bad], H10, [{ reason: 'attributes.time: not RFC 3339', record: { deep } }])]), sink);
  const evKey = journal.commits[0]!.keys.find((k) => k.startsWith('ev/'))!;
  const qKey = journal.commits[0]!.keys.find((k) => k.startsWith('q/'))!;
  assert.deepEqual(await readZstdFile(join(dir, evKey)), [good]);
  const q = (await readZstdFile(join(dir, qKey))) as Array<{ reason: string; record: Record<string, unknown> }>;
  assert.equal(q.length, 2);
  assert.equal(q[0]!.reason, 'attributes.time: not RFC 3339; record: nested too deeply to serialise as JSON');
  assert.equal(q[1]!.reason, 'record: nested too deeply to serialise as JSON');
  assert.equal(q[1]!.record['id'], bad.id);
  assert.match(JSON.stringify(q[1]!.record), /truncated: nested too deep/);
  assert.deepEqual([journal.commits[0]!.events, journal.commits[0]!.quarantined], [1, 2]);
});

test('work in flight when the sink is destroyed never opens, writes or commits afterwards', async () => {
  // Regression: a write waiting on journal.reserve carried on after destroy, started zstd and an
  // upload, and later committed a checkpoint behind the back of the next pipeline.
  const dir = await tempDir();
  const journal = new RecordingJournal(dir);
  const slowReserve = journal.reserve.bind(journal);
  let reserving: Promise<unknown> | undefined;
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  journal.reserve = (kind, hour) => {
    const p = held.then(() => slowReserve(kind, hour));
    reserving = p.catch(() => {});
    return p;
  };
  const sink = createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/', maxObjectAgeMs: 100 }, { journal });
  sink.on('error', () => {});
  sink.write(batch([ev()]));
  // The write is waiting on reserve: destroy the sink, then let reserve answer.
  await until(() => reserving !== undefined, 'the write to ask for a key');
  const closed = new Promise((r) => sink.on('close', r));
  sink.destroy();
  release();
  await reserving;
  await closed;
  // Anything the write did after reserve answered (opening zstd, an upload, a commit) would show
  // within a few hundred milliseconds.
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(journal.commits.length, 0);
  assert.deepEqual(await listFiles(dir), []);
});

test('counts reconcile: a batch whose records are not all written, quarantined or counted as duplicates fails the run', async () => {
  const dir = await tempDir();
  const journal = new RecordingJournal(dir);
  // Raw records straight from a source, no validate stage: nothing would be written for them.
  const raw: Batch = { records: [ev(), ev()], events: [], quarantined: [], position: { cursor: 'raw', skip: 0 }, hour: H10 };
  await assert.rejects(
    pipeline(Readable.from([raw]), createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/' }, { journal })),
    (err: unknown) => err instanceof SinkError && /2 records received but 0 events \+ 0 quarantined \+ 0 duplicates/.test(err.message),
  );
  // A stage that lost one event on the way.
  const lossy = batch([ev(), ev()]);
  lossy.events.pop();
  await assert.rejects(pipeline(Readable.from([lossy]), createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/' }, { journal })), SinkError);
  assert.equal(journal.commits.length, 0, 'nothing committed past a batch that does not add up');
  // One that adds up: fetched is committed alongside the counts.
  const ok = batch([ev(), ev(), ev()], H10, [{ reason: 'id: missing', record: {} }]);
  ok.fetched = 5;
  ok.duplicates = 1;
  await pipeline(Readable.from([ok]), createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/' }, { journal }));
  assert.deepEqual(journal.commits.map((c) => [c.fetched, c.events, c.quarantined, c.duplicates]), [[5, 3, 1, 1]]);
});

test('truncateDepth keeps a "__proto__" key as data instead of setting the copy\'s prototype', async () => {
  const { truncateDepth } = await import('../../src/record-text.js');
  const copy = truncateDepth(JSON.parse('{"id":"a","__proto__":{"x":1}}')) as Record<string, unknown>;
  assert.equal(JSON.stringify(copy), '{"id":"a","__proto__":{"x":1}}');
  assert.equal(Object.getPrototypeOf(copy), Object.prototype);
});

test('events are written as the API sent them (escapes kept); an event whose time was normalised is serialised again', async () => {
  const first = '{"id":"r1","type":"events","attributes":{"time":"2026-11-21T10:00:00.000Z","processedAt":"2026-11-21T10:00:01.000Z","actor":{"name":"Jos\\u00e9 \\/ \\"Q\\""}},"links":{}}';
  const second = '{"id":"r2","type":"events","attributes":{"time":"2026-11-21T12:00:00+02:00","processedAt":"2026-11-21T10:00:02.000Z"},"links":{"self":"caf\\u00e9"}}';
  const page = parsePage(`{"data":[${first},${second}],"meta":{"next":null}}`);
  assert.ok(typeof page !== 'string');
  const b = batch([], H10);
  b.records = page.records;
  b.fetched = 0;
  normalizeBatch(validateBatch(b));
  assert.equal(b.events.length, 2);
  const dir = await tempDir();
  const journal = new RecordingJournal(dir);
  await pipeline(Readable.from([b]), createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/' }, { journal }));
  const lines = (await readZstdText(join(dir, journal.commits[0]!.keys[0]!))).split('\n');
  assert.deepEqual(lines, [
    first,
    '{"id":"r2","type":"events","attributes":{"time":"2026-11-21T10:00:00.000Z","processedAt":"2026-11-21T10:00:02.000Z"},"links":{"self":"café"}}',
    '',
  ]);
});
