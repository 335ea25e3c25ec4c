import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pipeline } from 'node:stream/promises';
import { createValidate, validateRecord } from '../../src/transforms/validate.js';
import { batchOf, collector, makeEvent, rechunk, source } from '../helpers/batches.js';

function withAttr(key: string, value: unknown): Record<string, unknown> {
  const e = makeEvent();
  (e['attributes'] as Record<string, unknown>)[key] = value;
  return e;
}

test('valid events pass, including loose variants the API sends', () => {
  assert.equal(validateRecord(makeEvent()), undefined);
  assert.equal(validateRecord(makeEvent({ time: '2024-10-03T10:44:26Z' })), undefined);
  assert.equal(validateRecord({ ...makeEvent(), relations: null, unknownKey: { deep: [1, 2] } }), undefined);
  assert.equal(validateRecord(withAttr('actor', { email: 'not an email', auth: { authType: 'session' } })), undefined);
  assert.equal(validateRecord(withAttr('location', {})), undefined);
  assert.equal(validateRecord(withAttr('context', null)), undefined);
  assert.equal(validateRecord({ id: 'a', type: 'events', attributes: { time: '2024-10-03T10:44:26Z' }, links: {} }), undefined);
  // The first and last instants of years 0000–9999 in UTC, however spelled.
  assert.equal(validateRecord(makeEvent({ time: '0000-01-01T01:00:00+01:00', processedAt: '9999-12-31T23:59:59.999Z' })), undefined);
  assert.equal(validateRecord(makeEvent({ time: '9999-12-31T22:59:59.999-01:00' })), undefined);
});

test('invalid records get a reason naming the field', () => {
  const cases: Array<[unknown, string]> = [
    [null, 'record: expected object, got null'],
    [42, 'record: expected object, got number'],
    ['event', 'record: expected object, got string'],
    [[makeEvent()], 'record: expected object, got array'],
    [{ ...makeEvent(), id: undefined }, 'id: missing'],
    [{ ...makeEvent(), id: 7 }, 'id: expected string, got number'],
    [{ ...makeEvent(), id: '' }, 'id: empty'],
    [{ ...makeEvent(), id: 'x'.repeat(300) }, 'id: longer than 256 characters'],
    [{ ...makeEvent(), type: undefined }, 'type: missing'],
    [{ ...makeEvent(), attributes: 'x' }, 'attributes: expected object, got string'],
    [{ ...makeEvent(), links: undefined }, 'links: missing'],
    [{ ...makeEvent(), links: [] }, 'links: expected object, got array'],
    [withAttr('time', 'yesterday'), 'attributes.time: not RFC 3339'],
    [withAttr('time', 1696330000), 'attributes.time: expected string, got number'],
    [withAttr('time', undefined), 'attributes.time: missing'],
    [withAttr('processedAt', 'soon'), 'attributes.processedAt: not RFC 3339'],
    // Regression (found by test/fuzz/records.test.ts): RFC 3339, but before year 0000 or after
    // 9999 in UTC. The time was quarantined later by normalize-time as "not RFC 3339"; the
    // processedAt was accepted and its event written under an hour path like "-000/01/12/31".
    [withAttr('time', '9999-12-31T23:59:60Z'), 'attributes.time: outside years 0000-9999 in UTC'],
    [withAttr('time', '0000-01-01T00:00:00+00:01'), 'attributes.time: outside years 0000-9999 in UTC'],
    [withAttr('processedAt', '0000-01-01T00:59:59.999+01:00'), 'attributes.processedAt: outside years 0000-9999 in UTC'],
    [withAttr('processedAt', '9999-12-31T23:30:00-00:31'), 'attributes.processedAt: outside years 0000-9999 in UTC'],
    [withAttr('action', 5), 'attributes.action: expected string, got number'],
    [withAttr('actor', 'bob'), 'attributes.actor: expected object, got string'],
    [withAttr('actor', { name: 5 }), 'attributes.actor.name: expected string, got number'],
    [withAttr('actor', { links: { self: 1 } }), 'attributes.actor.links.self: expected string, got number'],
    [withAttr('context', {}), 'attributes.context: expected array, got object'],
    [withAttr('context', [1]), 'attributes.context[0]: expected object, got number'],
    [withAttr('container', [{ id: 3 }]), 'attributes.container[0].id: expected string, got number'],
    [withAttr('location', { ip: 1 }), 'attributes.location.ip: expected string, got number'],
    [{ ...makeEvent(), message: 'hi' }, 'message: expected object, got string'],
    [{ ...makeEvent(), message: { content: 1 } }, 'message.content: expected string, got number'],
    [{ ...makeEvent(), links: { self: 1 } }, 'links.self: expected string, got number'],
  ];
  for (const [record, reason] of cases) assert.equal(validateRecord(record), reason, JSON.stringify(record)?.slice(0, 80));
});

test('the stage keeps every record: valid ones in order, invalid ones quarantined as received, at any chunking', async () => {
  const records: unknown[] = [];
  for (let i = 0; i < 50; i++) records.push(i % 7 === 3 ? { bad: i } : makeEvent());
  const validIds = records.filter((r) => (r as { id?: string }).id !== undefined).map((r) => (r as { id: string }).id);
  for (const size of [1, 7, 50]) {
    const out = collector();
    await pipeline(source(rechunk(records, size)), createValidate(), out);
    assert.deepEqual(out.batches.flatMap((b) => b.events.map((e) => e.id)), validIds, `chunk ${size}`);
    const q = out.batches.flatMap((b) => b.quarantined);
    assert.equal(q.length, records.length - validIds.length);
    assert.deepEqual(q[0], { reason: 'id: missing', record: { bad: 3 } });
    assert.ok(out.batches.every((b) => b.records.length === 0));
  }
});

test('an error upstream reaches the pipeline as that error, and destroy tears the stage down', async () => {
  const boom = new Error('upstream broke');
  const { Readable } = await import('node:stream');
  const failing = new Readable({ objectMode: true, read() { this.destroy(boom); } });
  await assert.rejects(pipeline(failing, createValidate(), collector()), boom);
  const stage = createValidate();
  stage.destroy();
  assert.equal(stage.destroyed, true);
  void batchOf;
});
