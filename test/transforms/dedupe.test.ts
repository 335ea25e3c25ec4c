import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pipeline } from 'node:stream/promises';
import { createDedupe, DedupeWindow } from '../../src/transforms/dedupe.js';
import { batchOf, collector, source } from '../helpers/batches.js';
import type { AuditEvent, Batch } from '../../src/types.js';

function evBatch(ids: string[]): Batch {
  const b = batchOf([]);
  b.events = ids.map((id) => ({ id, type: 'events', attributes: { time: '2024-01-01T00:00:00.000Z' }, links: {} }) as AuditEvent);
  return b;
}

test('drops repeated ids across batches, stamps counts and marks', async () => {
  const stage = createDedupe({ windowSize: 10 });
  const out = collector();
  await pipeline(source([evBatch(['a', 'b', 'a']), evBatch(['b', 'c']), evBatch([])]), stage, out);
  assert.deepEqual(out.batches.map((b) => b.events.map((e) => e.id)), [['a', 'b'], ['c'], []]);
  assert.deepEqual(out.batches.map((b) => b.duplicates), [1, 1, 0]);
  assert.deepEqual(out.batches.map((b) => b.dedupeMark), [2, 3, 3]);
});

test('the window forgets only committed ids beyond its capacity', () => {
  const w = new DedupeWindow(3);
  for (const id of ['a', 'b', 'c', 'd', 'e']) assert.equal(w.admit(id), true);
  // Nothing committed yet: every id is still remembered, however many.
  assert.equal(w.size, 5);
  assert.equal(w.admit('a'), false);
  w.commit(4); // a..d are in complete objects; keep the last 3 of them (b, c, d) plus e
  assert.equal(w.has('a'), false);
  assert.deepEqual(w.snapshot(4), ['b', 'c', 'd']);
  assert.equal(w.has('e'), true);
  w.commit(5);
  assert.deepEqual(w.snapshot(5), ['c', 'd', 'e']);
  assert.equal(w.size, 3);
});

test('a window restored from a checkpoint drops ids that span runs', async () => {
  const stage = createDedupe({ windowSize: 100, initialIds: ['x', 'y'] });
  const out = collector();
  await pipeline(source([evBatch(['y', 'z'])]), stage, out);
  assert.deepEqual(out.batches[0]!.events.map((e) => e.id), ['z']);
  assert.deepEqual(stage.window.snapshot(stage.window.mark), ['x', 'y', 'z']);
});

test('a long run keeps memory bounded: compaction keeps at most capacity + uncommitted ids', () => {
  const w = new DedupeWindow(1000);
  for (let i = 0; i < 100_000; i++) {
    w.admit(`id-${i}`);
    if (i % 500 === 499) w.commit(w.mark);
  }
  assert.equal(w.size, 1000);
  assert.equal(w.snapshot(w.mark).length, 1000);
  assert.equal(w.snapshot(w.mark).at(-1), 'id-99999');
});

test('an invalid record delivered again with the same id is dropped as a duplicate; one without an id never is', async () => {
  const { dedupeBatch } = await import('../../src/transforms/dedupe.js');
  const window = new DedupeWindow(100);
  const q = (record: unknown) => ({ reason: 'attributes: missing', record });
  const b = (events: AuditEvent[], quarantined: Batch['quarantined']): Batch => ({ records: [], events, quarantined, position: { skip: 0, from: 0 }, hour: 0 });
  const first = dedupeBatch(b([], [q({ id: 'x1' }), q(null), q({ id: 'x2' })]), window);
  assert.equal(first.quarantined.length, 3);
  const again = dedupeBatch(b([], [q({ id: 'x1', other: true }), q({ id: 'x3' }), q(null), q({ id: 'x2' })]), window);
  assert.deepEqual(again.quarantined.map((x) => x.record), [{ id: 'x3' }, null]);
  assert.equal(again.duplicates, 2);
  // A valid event is never dropped because an invalid record had its id, nor the other way round.
  const ev = dedupeBatch(b([{ id: 'x1', type: 'events', attributes: { time: '2026-11-21T10:00:00.000Z' }, links: {} }], [q({ id: 'e9' })]), window);
  assert.equal(ev.events.length, 1);
  assert.equal(ev.quarantined.length, 1);
});
