import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pipeline } from 'node:stream/promises';
import { createNormalizeTime, normalizeBatch, normalizeTime } from '../../src/transforms/normalize-time.js';
import { batchOf, collector, makeEvent, source } from '../helpers/batches.js';
import type { AuditEvent } from '../../src/types.js';

test('normalizeTime: UTC, milliseconds, truncated', () => {
  assert.equal(normalizeTime('2024-10-03T10:44:26.457Z'), '2024-10-03T10:44:26.457Z');
  assert.equal(normalizeTime('2024-10-03T10:44:26Z'), '2024-10-03T10:44:26.000Z');
  assert.equal(normalizeTime('2024-10-03T10:44:26.457999Z'), '2024-10-03T10:44:26.457Z');
  assert.equal(normalizeTime('2024-10-03T10:44:26.9999999Z'), '2024-10-03T10:44:26.999Z');
  assert.equal(normalizeTime('2024-10-03T12:44:26.1+02:00'), '2024-10-03T10:44:26.100Z');
  assert.equal(normalizeTime('2024-12-31T20:00:00-05:30'), '2025-01-01T01:30:00.000Z');
  assert.equal(normalizeTime('2024-10-03 10:44:26z'), '2024-10-03T10:44:26.000Z');
  assert.equal(normalizeTime('yesterday'), undefined);
});

test('a leap second is rewritten as the next second, with or without milliseconds', () => {
  // Regression (found by test/fuzz/records.test.ts): "…23:59:60.000Z" has the canonical shape, so
  // it was passed through unchanged, and Date.parse reads it as NaN; "…23:59:60Z" was rewritten.
  assert.equal(normalizeTime('2016-12-31T23:59:60.000Z'), '2017-01-01T00:00:00.000Z');
  assert.equal(normalizeTime('2016-12-31T23:59:60.250Z'), '2017-01-01T00:00:00.250Z');
  assert.equal(normalizeTime('2016-12-31T23:59:60Z'), '2017-01-01T00:00:00.000Z');
});

test('only attributes.time changes; every other field stays as received', () => {
  const e = makeEvent({ time: '2024-10-03T12:44:26.123456+02:00', processedAt: '2024-10-03T10:50:00+00:00', extra: { odd: null } });
  const before = structuredClone(e);
  const b = batchOf([]);
  b.events.push(e as unknown as AuditEvent);
  normalizeBatch(b);
  const after = b.events[0] as unknown as Record<string, Record<string, unknown>>;
  assert.equal(after['attributes']!['time'], '2024-10-03T10:44:26.123Z');
  after['attributes']!['time'] = (before['attributes'] as Record<string, unknown>)['time'];
  assert.deepEqual(after, before);
});

test('an unparseable time (stage used without validate) is quarantined, not dropped or thrown', async () => {
  const b = batchOf([]);
  b.events.push(makeEvent() as unknown as AuditEvent, makeEvent({ time: 'nope' }) as unknown as AuditEvent);
  const out = collector();
  await pipeline(source([b]), createNormalizeTime(), out);
  assert.equal(out.batches[0]!.events.length, 1);
  assert.equal(out.batches[0]!.quarantined[0]!.reason, 'attributes.time: not RFC 3339');
});
