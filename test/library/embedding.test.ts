/**
 * Each stage on its own, in streams built by someone else: `stream.pipeline` with foreign
 * Readables, Transforms and Writables. Backpressure, errors and destroy must behave as Node
 * streams do, and what lands in S3 (a real radosgw) is read back and compared.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import {
  createDedupe,
  createLocalDirSink,
  createNormalizeTime,
  createQuarantineRoute,
  createS3Sink,
  createUnbatch,
  createValidate,
  createAtlassianEventsSource,
  isQuarantined,
  normalizeTime,
  quarantined,
  SinkError,
  StateJournal,
  type AuditEvent,
  type QuarantineRecord,
} from '../../src/index.js';
import { newState } from '../../src/checkpoint.js';
import { createSimulator } from '../../src/simulator/index.js';
import { makeEvent } from '../helpers/batches.js';
import { until } from '../helpers/proc.js';
import { listFiles, readZstdFile, tempDir } from '../helpers/fs.js';
import { listKeys, listPendingUploads, readZstdJsonLines, withBucket } from '../helpers/s3.js';
import { s3Skip } from '../helpers/require-s3.js';
import { join } from 'node:path';

/** A user's Transform: adds a field to every event, leaves quarantine chunks alone. */
function enrich(): Transform {
  return new Transform({
    objectMode: true,
    transform(chunk: unknown, _enc, cb) {
      if (!isQuarantined(chunk)) (chunk as Record<string, unknown>)['enrichment'] = { site: 'eu-1' };
      cb(null, chunk);
    },
  });
}

async function collect(stream: Readable): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const c of stream) out.push(c);
  return out;
}

test('Readable.from(array) → validate → normalise → dedupe → a user Transform → the S3 sink: objects read back equal the input', { skip: s3Skip() }, async () => {
  await withBucket(async (client, bucket) => {
    const good = [
      makeEvent({ time: '2026-11-21T11:15:00+01:00' }),
      makeEvent(),
      makeEvent({ time: '2026-11-21T10:15:00.123456Z' }),
    ];
    const input: unknown[] = [
      good[0],
      { id: 'no-time', type: 'events', attributes: {}, links: {} },
      JSON.stringify(good[1]), // JSON text is parsed
      '{"id": broken',
      structuredClone(good[0]), // a re-delivery
      good[2],
      42,
    ];
    const sink = createS3Sink({ bucket, prefix: 'ev/', quarantinePrefix: 'q/' }, { client });
    await pipeline(Readable.from(input), createValidate(), createNormalizeTime(), createDedupe(), enrich(), sink);

    const eventKeys = await listKeys(client, bucket, 'ev/');
    assert.equal(eventKeys.length, 1);
    assert.match(eventKeys[0]!, /^ev\/2026\/11\/21\/10\//, 'keyed by the hour of processedAt');
    const events = (await readZstdJsonLines(client, bucket, eventKeys[0]!)) as AuditEvent[];
    const want = good.map((e) => {
      const c = structuredClone(e) as unknown as AuditEvent;
      c.attributes.time = normalizeTime(c.attributes.time)!;
      return { ...c, enrichment: { site: 'eu-1' } };
    });
    assert.deepEqual(events, want);

    const qKeys = await listKeys(client, bucket, 'q/');
    const q = (await Promise.all(qKeys.map((k) => readZstdJsonLines(client, bucket, k)))).flat() as QuarantineRecord[];
    assert.deepEqual(
      q.map((r) => [r.reason.replace(/:.*$/s, ''), r.record]),
      [
        ['attributes.time', { id: 'no-time', type: 'events', attributes: {}, links: {} }],
        ['not JSON', '{"id": broken'],
        ['record', 42],
      ],
    );
    assert.deepEqual(sink.totals.events, 3);
    assert.deepEqual(sink.totals.quarantined, 3);
    assert.deepEqual(await listPendingUploads(client, bucket), []);
  });
});

test('backpressure holds through the stages: a slow foreign Writable stops the foreign Readable', async () => {
  let pulled = 0;
  function* records(): Generator<unknown> {
    for (let i = 0; i < 10_000; i++) {
      pulled++;
      yield makeEvent();
    }
  }
  let written = 0;
  const slow = new Writable({
    objectMode: true,
    highWaterMark: 1,
    write(_chunk, _enc, cb) {
      written++;
      setTimeout(cb, 5);
    },
  });
  const run = pipeline(Readable.from(records()), createValidate(), createNormalizeTime(), createDedupe(), slow);
  // Each stage holds 1 chunk a side, Readable.from 16 (its default for objects), the Writable 1:
  // however far the run has got, the Readable is never further ahead than that.
  const bound = 16 + 2 * 3 + 2;
  let ahead = 0;
  await until(() => {
    ahead = Math.max(ahead, pulled - written);
    return written >= 50;
  }, '50 records written');
  assert.ok(ahead <= bound, `the Readable ran ahead: ${ahead} records pulled but not written`);
  slow.destroy();
  await assert.rejects(run);
  assert.ok(pulled < 10_000);
});

test('an error in a foreign Readable fails the pipeline with it and the S3 sink leaves no upload behind', { skip: s3Skip() }, async () => {
  await withBucket(async (client, bucket) => {
    async function* failing(): AsyncGenerator<unknown> {
      for (let i = 0; i < 50; i++) yield makeEvent();
      throw new Error('the archive went away');
    }
    const sink = createS3Sink({ bucket, prefix: 'ev/', quarantinePrefix: 'q/' }, { client });
    const validate = createValidate();
    await assert.rejects(pipeline(Readable.from(failing()), validate, createNormalizeTime(), sink), /the archive went away/);
    assert.ok(validate.destroyed && sink.destroyed, 'every stage destroyed');
    assert.deepEqual(await listKeys(client, bucket, ''), [], 'no object for a failed run');
    assert.deepEqual(await listPendingUploads(client, bucket), [], 'the multipart upload was aborted');
  });
});

test('destroying one of our stages mid-stream tears the foreign pipeline down', async () => {
  const normalize = createNormalizeTime();
  let n = 0;
  const destroyer = new Writable({
    objectMode: true,
    write(_c, _e, cb) {
      if (++n === 5) normalize.destroy(new Error('stopped by the user'));
      cb();
    },
  });
  const src = Readable.from((function* () {
    for (let i = 0; i < 1000; i++) yield makeEvent();
  })());
  await assert.rejects(pipeline(src, createValidate(), normalize, destroyer), /stopped by the user/);
  assert.ok(src.destroyed);
});

test('quarantine-route sends refused records to stderr-like byte streams, object streams or functions, and Batches still reconcile in the sink', async () => {
  const input = (): unknown[] => [makeEvent({ id: 'a' }), { id: 'x', type: 1 }, 'not json', makeEvent({ id: 'b' })];
  // A byte stream gets JSON lines.
  const bytes = new PassThrough();
  const textOut: Buffer[] = [];
  bytes.on('data', (c: Buffer) => textOut.push(c));
  const passed = await collect(Readable.from(input()).compose(createValidate()).compose(createQuarantineRoute({ to: bytes })));
  assert.deepEqual(passed.map((e) => (e as AuditEvent).id), ['a', 'b']);
  const lines = Buffer.concat(textOut).toString().trim().split('\n').map((l) => JSON.parse(l) as QuarantineRecord);
  assert.deepEqual(lines.map((l) => l.reason), ['type: expected string, got number', 'not JSON: ' + (() => { try { JSON.parse('not json'); } catch (e) { return (e as Error).message; } return ''; })()]);
  // An object-mode Writable gets the records; a function too.
  const objs: QuarantineRecord[] = [];
  const objectTarget = new Writable({ objectMode: true, write(c: QuarantineRecord, _e, cb) { objs.push(c); cb(); } });
  await collect(Readable.from(input()).compose(createValidate()).compose(createQuarantineRoute({ to: objectTarget })));
  assert.deepEqual(objs.map((o) => o.record), [{ id: 'x', type: 1 }, 'not json']);
  const viaFn: string[] = [];
  await collect(Readable.from(input()).compose(createValidate()).compose(createQuarantineRoute({ to: async (q) => { viaFn.push(q.reason); } })));
  assert.equal(viaFn.length, 2);

  // Batches: the routed records are counted, so the sink's reconciliation still holds.
  const dir = await tempDir();
  const batch = { records: input(), events: [], quarantined: [], position: { cursor: 'c', skip: 0 }, hour: Date.parse('2026-11-21T10:00:00Z') };
  const routed: QuarantineRecord[] = [];
  const sink = createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/' }, {});
  await pipeline(Readable.from([batch]), createValidate(), createQuarantineRoute({ to: (q) => { routed.push(q); } }), sink);
  assert.equal(routed.length, 2);
  const files = await listFiles(dir);
  assert.equal(files.filter((f) => f.startsWith('q/')).length, 0, 'no quarantine object: they were routed');
  const events = await readZstdFile(join(dir, files.find((f) => f.startsWith('ev/'))!));
  assert.deepEqual(events.map((e) => (e as AuditEvent).id), ['a', 'b']);
});

test('a failing quarantine target fails the stage, it does not drop records', async () => {
  const target = new Writable({ write(_c, _e, cb) { cb(new Error('disk full')); } });
  await assert.rejects(pipeline(Readable.from([{ bad: 1 }, { bad: 2 }, { bad: 3 }]), createValidate(), createQuarantineRoute({ to: target }), new PassThrough({ objectMode: true }).resume()), /disk full/);
  await assert.rejects(pipeline(Readable.from([{ bad: 1 }]), createValidate(), createQuarantineRoute({ to: () => { throw new Error('queue refused'); } }), new PassThrough({ objectMode: true }).resume()), /queue refused/);
});

test('dedupe on loose events: duplicates dropped and counted, its own window bounded and committed as chunks pass', async () => {
  const dedupe = createDedupe({ windowSize: 3 });
  const ev = (id: string): unknown => makeEvent({ id });
  const ids = ['a', 'b', 'a', 'c', 'd', 'e', 'a', quarantined('bad', { id: 'q' }), quarantined('bad', { id: 'q' })];
  const out = await collect(Readable.from(ids.map((x) => (typeof x === 'string' ? ev(x) : x))).compose(dedupe));
  // 'a' is forgotten once 3 newer ids were committed after it; the second quarantine chunk of 'q' is a duplicate.
  assert.deepEqual(out.map((c) => (isQuarantined(c) ? `q:${(c.record as { id: string }).id}` : (c as AuditEvent).id)), ['a', 'b', 'c', 'd', 'e', 'a', 'q:q']);
  assert.equal(dedupe.duplicates, 2);
  assert.ok(dedupe.window.size <= 3 + 1, `window holds ${dedupe.window.size} ids`);
});

test('the local-directory sink takes loose chunks without a journal, and refuses them with one', async () => {
  const dir = await tempDir();
  const sink = createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/' }, {});
  // No validate in front: the sink checks loose chunks itself, so a broken event is quarantined, not written.
  await pipeline(Readable.from([makeEvent({ id: 'ok' }), { id: 'broken' }, quarantined('from upstream', { x: 1 })]), sink);
  const files = await listFiles(dir);
  const ev = await readZstdFile(join(dir, files.find((f) => f.startsWith('ev/'))!));
  const q = await readZstdFile(join(dir, files.find((f) => f.startsWith('q/'))!));
  assert.deepEqual(ev.map((e) => (e as AuditEvent).id), ['ok']);
  assert.deepEqual((q as QuarantineRecord[]).map((r) => r.reason), ['type: missing', 'from upstream']);

  const stateDir = await tempDir();
  const journal = new StateJournal(newState('org', 0), { path: join(stateDir, 'state.json'), prefix: 'ev/', quarantinePrefix: 'q/' });
  const withJournal = createLocalDirSink({ dir: stateDir, prefix: 'ev/', quarantinePrefix: 'q/' }, { journal });
  await assert.rejects(pipeline(Readable.from([makeEvent()]), withJournal), (err: unknown) => err instanceof SinkError && /takes Batches only/.test(err.message));
});

test('our source → validate → normalise → dedupe → unbatch → a user Transform → the local sink: every valid event once, enriched', async () => {
  const sim = createSimulator({ events: 1200, seed: 21 });
  await sim.start();
  try {
    const dir = await tempDir();
    const source = createAtlassianEventsSource({ apiUrl: sim.url, orgId: sim.orgId, apiKey: sim.apiKey, start: { from: 0, skip: 0 }, rateLimit: false });
    const sink = createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/' }, {});
    await pipeline(source, createValidate(), createNormalizeTime(), createDedupe(), createUnbatch(), enrich(), sink);
    const truth = sim.truth();
    const files = await listFiles(dir);
    const events = (await Promise.all(files.filter((f) => f.startsWith('ev/')).map((f) => readZstdFile(join(dir, f))))).flat() as Array<AuditEvent & { enrichment?: unknown }>;
    assert.equal(events.length, truth.valid.size);
    assert.equal(new Set(events.map((e) => e.id)).size, events.length, 'no duplicates');
    for (const e of events) {
      const want = structuredClone(truth.valid.get(e.id)) as unknown as AuditEvent;
      want.attributes.time = normalizeTime(want.attributes.time)!;
      assert.deepEqual(e, { ...want, enrichment: { site: 'eu-1' } });
    }
    const q = (await Promise.all(files.filter((f) => f.startsWith('q/')).map((f) => readZstdFile(join(dir, f))))).flat();
    assert.equal(q.length, truth.invalid.length);
  } finally {
    await sim.close();
  }
});

test('an event that happens to carry Batch-like fields is still an event, checked and written as one', async () => {
  const odd = { ...makeEvent({ id: 'odd' }), records: [], events: [{ not: 'checked' }], quarantined: [], position: { skip: 0 }, hour: 0 };
  const dir = await tempDir();
  await pipeline(Readable.from([odd]), createValidate(), createNormalizeTime(), createDedupe(), createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/' }, {}));
  const files = await listFiles(dir);
  assert.deepEqual(files.filter((f) => f.startsWith('q/')), [], 'nothing quarantined');
  assert.deepEqual(await readZstdFile(join(dir, files.find((f) => f.startsWith('ev/'))!)), [odd], 'written as the event it is, fields and all');
});

test('quarantine-route fails instead of hanging when its target is destroyed while full, and leaves no listener on it', async () => {
  const target = new Writable({ highWaterMark: 1, write(_c, _e, _cb) { /* never calls back: full after one write */ } });
  const run = pipeline(Readable.from([{ bad: 1 }, { bad: 2 }, { bad: 3 }]), createValidate(), createQuarantineRoute({ to: target }), new PassThrough({ objectMode: true }).resume());
  setTimeout(() => target.destroy(), 50);
  await assert.rejects(run, /quarantine target closed|premature close/i);
  const stderrLike = new PassThrough();
  stderrLike.resume();
  const before = stderrLike.listenerCount('error');
  for (let i = 0; i < 20; i++) await collect(Readable.from([{ bad: i }]).compose(createValidate()).compose(createQuarantineRoute({ to: stderrLike })));
  assert.equal(stderrLike.listenerCount('error'), before, 'one error listener per stage, removed when it closes');
});
