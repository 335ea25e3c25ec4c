import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatCanonical, hourPath, parseDuration, parseFrom, parseRfc3339, parseSize } from '../src/time.js';

test('parseRfc3339 accepts the API variants and truncates sub-millisecond digits', () => {
  assert.equal(parseRfc3339('2024-10-03T10:44:26.457Z'), Date.UTC(2024, 9, 3, 10, 44, 26, 457));
  assert.equal(parseRfc3339('2024-10-03T10:44:26Z'), Date.UTC(2024, 9, 3, 10, 44, 26, 0));
  assert.equal(parseRfc3339('2024-10-03T10:44:26.457999Z'), Date.UTC(2024, 9, 3, 10, 44, 26, 457));
  assert.equal(parseRfc3339('2024-10-03T12:44:26.4+02:00'), Date.UTC(2024, 9, 3, 10, 44, 26, 400));
  assert.equal(parseRfc3339('2024-10-03T05:14:26-05:30'), Date.UTC(2024, 9, 3, 10, 44, 26));
  assert.equal(parseRfc3339('2024-10-03t10:44:26z'), Date.UTC(2024, 9, 3, 10, 44, 26));
  assert.equal(parseRfc3339('2024-02-29T00:00:00Z'), Date.UTC(2024, 1, 29));
});

test('parseRfc3339 rejects what is not RFC 3339', () => {
  for (const bad of ['yesterday', '2024-10-03', '2024-10-03T10:44Z', '2023-02-29T00:00:00Z', '2024-13-01T00:00:00Z',
    '2024-10-03T24:00:00Z', '2024-10-03T10:44:26', '2024-10-03T10:44:26+2:00', '1696330000', '', ' 2024-10-03T10:44:26Z',
    '2024-10-03T10:44:26.Z', '2024-10-03T10:44:26+24:00', 'x'.repeat(100)]) {
    assert.equal(parseRfc3339(bad), undefined, bad);
  }
});

test('formatCanonical and hourPath', () => {
  assert.equal(formatCanonical(Date.UTC(2024, 0, 2, 3, 4, 5, 6)), '2024-01-02T03:04:05.006Z');
  assert.equal(formatCanonical(Date.UTC(10000, 0, 1)), undefined);
  assert.equal(hourPath(Date.UTC(2026, 10, 21, 9)), '2026/11/21/09');
});

test('durations, sizes and --from', () => {
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('5'), undefined);
  assert.equal(parseDuration('5 minutes'), undefined);
  assert.equal(parseSize('5MiB'), 5 * 1024 * 1024);
  assert.equal(parseSize('32MB'), 32_000_000);
  assert.equal(parseSize('1024'), 1024);
  assert.equal(parseSize('lots'), undefined);
  assert.equal(parseFrom('2026-01-31'), Date.UTC(2026, 0, 31));
  assert.equal(parseFrom('2026-01-31T10:00:00+01:00'), Date.UTC(2026, 0, 31, 9));
  assert.equal(parseFrom('1767225600000'), 1767225600000);
  // Epoch seconds mean 1970 to the API: refuse them rather than silently re-collect everything.
  assert.match((parseFrom('1767225600') as { error: string }).error, /epoch seconds/);
  assert.match((parseFrom('last week') as { error: string }).error, /neither/);
});
