import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Registry } from 'prom-client';
import type { Clock } from '../src/clock.js';
import { DropoffAlarm, DROPOFF_MAX_MS, DROPOFF_MIN_MS } from '../src/dropoff.js';
import { createLogger } from '../src/log.js';
import { createMetrics, isMetricPrefix, measureBackpressure, quarantineReasonClass, QUARANTINE_REASONS, type PipelineMetrics, type QuarantineReasonClass } from '../src/metrics.js';
import { normalizeBatch } from '../src/transforms/normalize-time.js';
import { validateRecord } from '../src/transforms/validate.js';
import { batchOf, makeEvent } from './helpers/batches.js';
import { parseExposition, value, type Family } from './helpers/exposition.js';

const T0 = Date.parse('2026-11-21T10:00:00.000Z');

interface FakeClock extends Clock {
  advance(ms: number): void;
}

function fakeClock(start = T0): FakeClock {
  let t = start;
  return {
    now: () => t,
    sleep: async (ms) => {
      t += ms;
    },
    advance(ms) {
      t += ms;
    },
  };
}

function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    format: 'json',
    level: 'debug',
    stream: {
      write(s: string) {
        for (const l of s.split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
        return true;
      },
    },
  });
  return { logger, lines, count: (level: string) => lines.filter((l) => l['level'] === level).length };
}

async function scrape(m: PipelineMetrics): Promise<Map<string, Family>> {
  return parseExposition(await m.registry.metrics());
}

/** NaN equals NaN; otherwise ===. */
function sameNumber(a: number | undefined, b: number | undefined): boolean {
  if (typeof a === 'number' && typeof b === 'number' && Number.isNaN(a)) return Number.isNaN(b);
  return a === b;
}

/**
 * Makes every metric of `registry` return one snapshot from now on, so the JSON and the text
 * exposition describe the same moment (the default metrics — CPU, memory, event-loop lag — move
 * between two collections). The text is still produced by prom-client's own formatting code.
 * Returns the undo.
 */
async function freeze(registry: Registry): Promise<() => void> {
  const undo: Array<() => void> = [];
  for (const metric of registry.getMetricsAsArray()) {
    const m = metric as unknown as Record<string, unknown>;
    // Histograms format from getForPromString (get() splays its labels); the rest from get().
    const key = typeof m['getForPromString'] === 'function' ? 'getForPromString' : 'get';
    const snapshot: unknown = await (m[key] as () => Promise<unknown>).call(m);
    Object.defineProperty(m, key, { value: async () => structuredClone(snapshot), configurable: true, writable: true });
    undo.push(() => delete m[key]);
  }
  return () => {
    for (const u of undo) u();
  };
}

/** Every value of getMetricsAsJSON() is in the parsed exposition, under the same name and labels. */
async function assertRoundTrip(registry: Registry, families: Map<string, Family>): Promise<number> {
  const json = await registry.getMetricsAsJSON();
  assert.equal(families.size, json.length, 'one family per metric');
  let compared = 0;
  for (const metric of json) {
    const fam = families.get(metric.name);
    assert.ok(fam, `family ${metric.name} parsed`);
    assert.equal(fam.type, String(metric.type), `type of ${metric.name}`);
    assert.equal(fam.help, metric.help, `help of ${metric.name}`);
    assert.equal(fam.samples.length, metric.values.length, `sample count of ${metric.name}`);
    for (const v of metric.values) {
      const name = (v as { metricName?: string }).metricName ?? metric.name;
      const labels: Record<string, string> = {};
      for (const [k, x] of Object.entries(v.labels)) if (x !== undefined) labels[k] = String(x);
      const matches: Family['samples'] = fam.samples.filter((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === JSON.stringify(Object.entries(labels).sort()));
      assert.equal(matches.length, 1, `exactly one sample ${name}${JSON.stringify(labels)}`);
      assert.ok(sameNumber(matches[0]!.value, v.value), `${name}${JSON.stringify(labels)}: parsed ${matches[0]!.value}, JSON ${v.value}`);
      compared++;
    }
  }
  return compared;
}

const WEIRD = 'a"b\\c\nd';

/** Moves some counters, histograms and gauges so the round trip compares non-trivial values. */
function exercise(m: PipelineMetrics, clock: FakeClock): void {
  m.errors.inc({ stage: 'x', error_type: WEIRD });
  m.errors.inc({ stage: 'sink', error_type: 'ECONNRESET' }, 2);
  m.eventsReceived.inc(1234);
  m.eventsWritten.inc(1200);
  m.eventsQuarantined.inc({ reason: 'bad_time' }, 3);
  m.eventsQuarantined.inc({ reason: 'too_deep' });
  m.apiRequests.inc({ status: '200' }, 7);
  m.apiRequests.inc({ status: '0' });
  for (const s of [0.01, 0.3, 0.3, 2, 45]) m.apiRequestSeconds.observe(s);
  m.uploadSeconds.observe(12.5);
  m.rateLimitRemaining.set(-1);
  m.rateLimitWaitSeconds.inc({ reason: '429' }, 1.25);
  m.objectBytes('events', 1000, 7000);
  m.health.newestEventTimeMs = clock.now() - 90_000;
  m.health.lastCheckpointMs = clock.now() - 1_500;
  m.health.lastPageOkMs = clock.now();
  m.health.newestProcessedAtMs = clock.now() - 30_123;
}

for (const prefix of ['atlassian_audit_', 'myco_']) {
  test(`exposition with default metrics and prefix ${prefix} parses, is prefixed and round-trips`, async () => {
    const clock = fakeClock();
    const m = prefix === 'atlassian_audit_' ? createMetrics({ clock }) : createMetrics({ clock, prefix });
    const fresh = await scrape(m);
    assert.ok(fresh.size > 30, `a family per metric, default ones included (${fresh.size})`);
    for (const name of fresh.keys()) assert.ok(name.startsWith(prefix), `${name} starts with ${prefix}`);
    assert.equal(fresh.get(`${prefix}process_cpu_user_seconds_total`)?.type, 'counter', 'default metrics are on and prefixed');
    assert.ok(Number.isNaN(value(fresh, `${prefix}lag_seconds`)!), 'lag is NaN before any event (prom-client writes "Nan")');

    exercise(m, clock);
    const moved = await scrape(m);
    for (const name of moved.keys()) assert.ok(name.startsWith(prefix));
    assert.equal(value(moved, `${prefix}errors_total`, { stage: 'x', error_type: WEIRD }), 1, 'label value with quote, backslash and newline survives escaping');
    assert.equal(value(moved, `${prefix}errors_total`), 3, 'value() sums every matching sample');
    assert.equal(value(moved, `${prefix}api_request_duration_seconds_count`), 5);
    assert.equal(value(moved, `${prefix}api_request_duration_seconds_bucket`, { le: '0.5' }), 3);
    assert.equal(value(moved, `${prefix}api_request_duration_seconds_bucket`, { le: '+Inf' }), 5);
    assert.equal(value(moved, `${prefix}lag_seconds`), 90);

    const thaw = await freeze(m.registry);
    try {
      const frozen = parseExposition(await m.registry.metrics());
      const compared = await assertRoundTrip(m.registry, frozen);
      assert.ok(compared > 100, `compared ${compared} samples`);
    } finally {
      thaw();
    }
  });
}

test('parseExposition reads escapes, special values, timestamps and trailing commas', () => {
  const text = [
    '# A comment',
    '# HELP x_total Help with \\\\ and \\n escapes.',
    '# TYPE x_total counter',
    'x_total{a="q\\"b\\\\c\\nd",b="",} 3 1700000000000',
    'x_total{a="2"} +Inf',
    '',
    '# TYPE g gauge',
    'g NaN',
    'g{k="n"} -Inf',
    'g{k="m"}\t-1.5e3',
    '# TYPE h histogram',
    'h_bucket{le="1"} 1',
    'h_bucket{le="+Inf"} 2',
    'h_sum 3.5',
    'h_count 2',
    '# TYPE s summary',
    's{quantile="0.5"} 0.2',
    's_sum 1',
    's_count 4',
    '',
  ].join('\n');
  const f = parseExposition(text);
  assert.deepEqual([...f.keys()], ['x_total', 'g', 'h', 's']);
  assert.equal(f.get('x_total')!.help, 'Help with \\ and \n escapes.');
  assert.deepEqual(f.get('x_total')!.samples[0], { name: 'x_total', labels: { a: 'q"b\\c\nd', b: '' }, value: 3 });
  assert.equal(value(f, 'x_total'), Infinity);
  assert.equal(value(f, 'x_total', { a: 'q"b\\c\nd' }), 3);
  assert.equal(value(f, 'x_total', { a: 'nope' }), undefined);
  assert.ok(Number.isNaN(value(f, 'g', {})!), 'NaN + anything is NaN');
  assert.equal(value(f, 'g', { k: 'n' }), -Infinity);
  assert.equal(value(f, 'g', { k: 'm' }), -1500);
  assert.equal(value(f, 'h_bucket', { le: '1' }), 1);
  assert.equal(value(f, 'h'), undefined, 'sample names, not family names');
  assert.equal(value(f, 's', { quantile: '0.5' }), 0.2);
  assert.equal(f.get('s')!.type, 'summary');
  assert.equal(parseExposition('').size, 0);
});

test('parseExposition rejects invalid text, naming the line', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['missing TYPE', 'x_total 1\n', /line 1: sample x_total has no # TYPE/],
    ['HELP without TYPE', '# HELP x_total h\nx_total 1\n', /line 2: .*no # TYPE/],
    ['bad metric name', '# TYPE 1x counter\n', /line 1: invalid metric name "1x"/],
    ['bad sample name', '# TYPE a gauge\na-b 1\n', /line 2: invalid metric name "a-b"/],
    ['bad label name', '# TYPE g gauge\ng{a-b="1"} 1\n', /line 2: invalid label name "a-b"/],
    ['bad escape', '# TYPE g gauge\ng{a="\\t"} 1\n', /line 2: invalid escape sequence/],
    ['unterminated label value', '# TYPE g gauge\ng{a="x} 1\n', /line 2: unterminated value/],
    ['duplicate label', '# TYPE g gauge\ng{a="1",a="2"} 1\n', /line 2: duplicate label a/],
    ['bad value', '# TYPE g gauge\ng 1,5\n', /line 2: invalid value "1,5"/],
    ['missing value', '# TYPE g gauge\ng{a="1"}\n', /line 2: missing value/],
    ['hex value', '# TYPE g gauge\ng 0x10\n', /line 2: invalid value/],
    ['bad timestamp', '# TYPE g gauge\ng 1 1.5\n', /line 2: invalid timestamp/],
    ['trailing text', '# TYPE g gauge\ng 1 2 3\n', /line 2: unexpected text/],
    ['unknown type', '# TYPE g meter\n', /line 1: unknown type "meter"/],
    ['duplicate TYPE', '# TYPE g gauge\n# TYPE g gauge\n', /line 2: duplicate # TYPE/],
    ['duplicate HELP', '# HELP g a\n# HELP g b\n', /line 2: duplicate # HELP/],
    ['TYPE after samples', '# TYPE g gauge\ng 1\n# HELP g late\n', /line 3: # HELP for g after its samples/],
    ['duplicate sample', '# TYPE g gauge\ng{a="1",b="2"} 1\ng{b="2",a="1"} 2\n', /line 3: duplicate sample/],
    ['family not contiguous', '# TYPE g gauge\n# TYPE h gauge\ng 1\n', /line 3: lines of family g are not contiguous/],
    ['negative counter', '# TYPE c_total counter\nc_total -1\n', /line 2: counter c_total has a negative/],
    ['NaN counter', '# TYPE c_total counter\nc_total NaN\n', /line 2: counter/],
    ['counter with a suffix', '# TYPE c counter\nc_count 1\n', /line 2: .*no # TYPE/],
    ['no final newline', '# TYPE g gauge\ng 1', /line 2: the last line does not end/],
    ['histogram bucket without le', '# TYPE h histogram\nh_bucket 1\n', /line 2: bucket h_bucket has no le/],
    ['histogram base-name sample', '# TYPE h histogram\nh 1\n', /line 2: histogram h has a sample named h/],
    [
      'non-monotonic histogram',
      '# TYPE h histogram\nh_bucket{le="1"} 5\nh_bucket{le="2"} 4\nh_bucket{le="+Inf"} 5\nh_sum 1\nh_count 5\n',
      /line 2: histogram h.*less than bucket le=1/,
    ],
    ['+Inf bucket differs from count', '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n', /line 2: histogram h.*\+Inf bucket \(2\) differs from _count \(3\)/],
    ['no +Inf bucket', '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', /line 2: .*no le="\+Inf" bucket/],
    ['histogram without _sum', '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n', /line 2: .*no _sum/],
    ['summary without quantile', '# TYPE s summary\ns 1\ns_sum 1\ns_count 1\n', /line 2: summary sample s has no quantile/],
  ];
  for (const [what, text, re] of cases) {
    assert.throws(() => parseExposition(text), re, what);
  }
});

test('computed gauges read health at scrape time with the injected clock', async () => {
  const clock = fakeClock();
  const m = createMetrics({ clock, defaultMetrics: false, prefix: 'p_' });
  const stamps = {
    newestProcessedAtMs: 'p_newest_written_processed_at_seconds',
    newestEventTimeMs: 'p_newest_written_event_time_seconds',
    lastPageOkMs: 'p_last_successful_poll_timestamp_seconds',
    caughtUpMs: 'p_caught_up_timestamp_seconds',
    lastWrittenMs: 'p_last_write_timestamp_seconds',
  } as const;

  let f = await scrape(m);
  assert.ok(Number.isNaN(value(f, 'p_lag_seconds')!), 'lag NaN before any event time');
  assert.ok(Number.isNaN(value(f, 'p_checkpoint_age_seconds')!), 'checkpoint age NaN before a checkpoint');
  assert.equal(value(f, 'p_ready'), 0, 'not ready before any page');
  for (const name of Object.values(stamps)) assert.equal(value(f, name), 0, `${name} is 0 before`);
  assert.equal(f.get('p_compression_ratio')?.samples.length, 0, 'compression ratio absent before any object');
  assert.equal(value(f, 'p_dropoff_alarm'), 0, 'no alarm installed');

  m.health.newestEventTimeMs = clock.now() - 5_000;
  m.health.lastCheckpointMs = clock.now() - 250;
  const at: Record<keyof typeof stamps, number> = {
    newestProcessedAtMs: T0 - 61_001,
    newestEventTimeMs: T0 - 5_000,
    lastPageOkMs: T0,
    caughtUpMs: T0 - 3,
    lastWrittenMs: T0 - 7_777,
  };
  for (const k of Object.keys(stamps) as Array<keyof typeof stamps>) m.health[k] = at[k];
  f = await scrape(m);
  assert.equal(value(f, 'p_lag_seconds'), 5);
  assert.equal(value(f, 'p_checkpoint_age_seconds'), 0.25);
  assert.equal(value(f, 'p_ready'), 1);
  for (const k of Object.keys(stamps) as Array<keyof typeof stamps>) assert.equal(value(f, stamps[k]), at[k] / 1000, stamps[k]);

  clock.advance(m.health.readyWithinMs);
  f = await scrape(m);
  assert.equal(value(f, 'p_lag_seconds'), 5 + m.health.readyWithinMs / 1000, 'lag grows with the clock');
  assert.equal(value(f, 'p_checkpoint_age_seconds'), 0.25 + m.health.readyWithinMs / 1000);
  assert.equal(value(f, 'p_ready'), 1, 'still ready at exactly readyWithinMs');
  assert.equal(value(f, stamps.lastPageOkMs), T0 / 1000, 'timestamps do not move with the clock');
  clock.advance(1);
  f = await scrape(m);
  assert.equal(value(f, 'p_ready'), 0, 'not ready past readyWithinMs');
  assert.equal(m.isReady(), false);
  m.health.lastPageOkMs = clock.now();
  assert.equal(value(await scrape(m), 'p_ready'), 1, 'ready again after a page');

  m.objectBytes('events', 100, 400);
  f = await scrape(m);
  assert.equal(value(f, 'p_compression_ratio', { kind: 'events' }), 4);
  assert.equal(value(f, 'p_compression_ratio', { kind: 'quarantine' }), undefined, 'no quarantine object yet');
  m.objectBytes('events', 300, 600);
  m.objectBytes('quarantine', 10, 50);
  f = await scrape(m);
  assert.equal(value(f, 'p_compression_ratio', { kind: 'events' }), 1000 / 400, 'over all objects, not the last');
  assert.equal(value(f, 'p_compression_ratio', { kind: 'quarantine' }), 5);
  assert.equal(value(f, 'p_bytes_compressed_total', { kind: 'events' }), 400);
  assert.equal(value(f, 'p_bytes_uncompressed_total', { kind: 'events' }), 1000);
  assert.equal(value(f, 'p_bytes_uncompressed_total'), 1050);
});

/** A deeply nested value (JSON.stringify would overflow the stack on it). */
function deep(n: number): unknown {
  let v: unknown = {};
  for (let i = 0; i < n; i++) v = { v };
  return v;
}

function attrs(over: Record<string, unknown>): Record<string, unknown> {
  const e = makeEvent();
  Object.assign(e['attributes'] as Record<string, unknown>, over);
  return e;
}

function without(key: string): Record<string, unknown> {
  const e = makeEvent();
  delete e[key];
  return e;
}

test('quarantineReasonClass classes real validator reasons', () => {
  const cases: Array<[string, unknown, QuarantineReasonClass]> = [
    ['null', null, 'not_object'],
    ['number', 42, 'not_object'],
    ['string', 'event', 'not_object'],
    ['array', [makeEvent()], 'not_object'],
    ['no id', without('id'), 'missing_field'],
    ['null id', { ...makeEvent(), id: null }, 'missing_field'],
    ['no type', without('type'), 'missing_field'],
    ['no attributes', without('attributes'), 'missing_field'],
    ['no links', without('links'), 'missing_field'],
    ['no time', attrs({ time: undefined }), 'missing_field'],
    ['null time', attrs({ time: null }), 'missing_field'],
    ['numeric id', { ...makeEvent(), id: 7 }, 'wrong_type'],
    ['object type', { ...makeEvent(), type: {} }, 'wrong_type'],
    ['string attributes', { ...makeEvent(), attributes: 'x' }, 'wrong_type'],
    ['array links', { ...makeEvent(), links: [] }, 'wrong_type'],
    ['numeric time', attrs({ time: 1700000000 }), 'wrong_type'],
    ['boolean processedAt', attrs({ processedAt: true }), 'wrong_type'],
    ['numeric action', attrs({ action: 3 }), 'wrong_type'],
    ['string actor', attrs({ actor: 'me' }), 'wrong_type'],
    ['numeric actor email', attrs({ actor: { email: 1 } }), 'wrong_type'],
    ['string context', attrs({ context: 'c' }), 'wrong_type'],
    ['context item not an object', attrs({ context: [1] }), 'wrong_type'],
    ['container item links', attrs({ container: [{ links: { self: 2 } }] }), 'wrong_type'],
    ['location ip', attrs({ location: { ip: 1 } }), 'wrong_type'],
    ['message string', { ...makeEvent(), message: 'hi' }, 'wrong_type'],
    ['message content', { ...makeEvent(), message: { content: [] } }, 'wrong_type'],
    ['links.self', { ...makeEvent(), links: { self: 1 } }, 'wrong_type'],
    ['empty id', { ...makeEvent(), id: '' }, 'bad_id'],
    ['over-long id', { ...makeEvent(), id: 'x'.repeat(257) }, 'bad_id'],
    ['time not RFC 3339', attrs({ time: 'yesterday' }), 'bad_time'],
    ['time without zone', attrs({ time: '2026-11-21T10:00:00' }), 'bad_time'],
    ['processedAt not RFC 3339', attrs({ processedAt: '2026-13-01T00:00:00Z' }), 'bad_time'],
    ['time after year 9999 in UTC', attrs({ time: '9999-12-31T23:59:60Z' }), 'bad_time'],
    ['time before year 0000 in UTC', attrs({ time: '0000-01-01T00:00:00+01:00' }), 'bad_time'],
    ['processedAt after year 9999', attrs({ processedAt: '9999-12-31T23:00:00-01:00' }), 'bad_time'],
  ];
  for (const [what, record, expected] of cases) {
    const reason = validateRecord(record);
    assert.ok(reason !== undefined, `${what}: the validator rejects it`);
    const c = quarantineReasonClass(reason);
    assert.ok((QUARANTINE_REASONS as readonly string[]).includes(c), `${what}: ${c} is a known class`);
    assert.equal(c, expected, `${what}: ${JSON.stringify(reason)}`);
  }
  // A deep record passes validation (only serialising it fails, in the object sink).
  assert.equal(validateRecord({ ...makeEvent(), extra: deep(10_000) }), undefined);

  // The object sink's reasons (TOO_DEEP in src/sinks/object-sink.ts) and the combined form: a
  // combined reason is classed by its first part.
  assert.equal(quarantineReasonClass('record: nested too deeply to serialise as JSON'), 'too_deep');
  assert.equal(quarantineReasonClass('attributes.time: not RFC 3339; record: nested too deeply to serialise as JSON'), 'bad_time');
  assert.equal(quarantineReasonClass('id: missing; record: nested too deeply to serialise as JSON'), 'missing_field');

  // normalize-time's own reason.
  const batch = normalizeBatch({ ...batchOf([]), events: [attrs({ time: 'not a time' }) as never] });
  assert.equal(batch.quarantined.length, 1);
  assert.equal(quarantineReasonClass(batch.quarantined[0]!.reason), 'bad_time');

  assert.equal(quarantineReasonClass('something new'), 'other');
});

test('every reason the validator gives for a mutated event has a class other than "other"', () => {
  // Every field path of a valid event, set to every kind of JSON value.
  const values: unknown[] = [undefined, null, 0, -1, '', 'x', '2026-11-21T10:00:00Z', true, [], [1], [{ self: 1 }], {}, { self: 1 }];
  const paths: string[][] = [];
  const walk = (v: unknown, path: string[]): void => {
    if (path.length > 0) paths.push(path);
    if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) walk(x, [...path, k]);
  };
  walk(makeEvent(), []);
  for (const extra of [['attributes', 'actor', 'links'], ['attributes', 'actor', 'links', 'self'], ['links', 'alt'], ['attributes', 'location', 'geo']]) paths.push(extra);
  const seen = new Map<string, QuarantineReasonClass>();
  for (const path of paths) {
    for (const v of values) {
      const e = structuredClone(makeEvent()) as Record<string, unknown>;
      let o: Record<string, unknown> = e;
      for (const k of path.slice(0, -1)) {
        if (typeof o[k] !== 'object' || o[k] === null) o[k] = {};
        o = o[k] as Record<string, unknown>;
      }
      if (v === undefined) delete o[path[path.length - 1]!];
      else o[path[path.length - 1]!] = structuredClone(v);
      const reason = validateRecord(e);
      if (reason !== undefined) seen.set(reason, quarantineReasonClass(reason));
    }
  }
  assert.ok(seen.size > 30, `${seen.size} distinct reasons`);
  const other = [...seen].filter(([, c]) => c === 'other').map(([r]) => r);
  assert.deepEqual(other, []);
  for (const c of seen.values()) assert.ok((QUARANTINE_REASONS as readonly string[]).includes(c));
});

test('DropoffAlarm: raised once at the threshold, cleared once by a write, raised again', async () => {
  assert.equal(DROPOFF_MIN_MS, 15 * 60 * 1000);
  assert.equal(DROPOFF_MAX_MS, 30 * 24 * 60 * 60 * 1000);

  const clock = fakeClock();
  const m = createMetrics({ clock, defaultMetrics: false });
  const log = captureLogger();
  const afterMs = DROPOFF_MIN_MS;
  const alarm = new DropoffAlarm({ afterMs }, { metrics: m, logger: log.logger });
  const gauge = async (): Promise<number | undefined> => value(await scrape(m), 'atlassian_audit_dropoff_alarm');

  clock.advance(afterMs - 1);
  assert.equal(alarm.check(), 0);
  assert.equal(await gauge(), 0, 'below the threshold');
  assert.equal(log.lines.length, 0, 'nothing logged below the threshold');

  clock.advance(1);
  assert.equal(await gauge(), 1, 'a scrape at exactly the threshold raises it');
  for (let i = 0; i < 5; i++) {
    clock.advance(60_000);
    assert.equal(alarm.check(), 1);
    assert.equal(await gauge(), 1);
  }
  assert.equal(log.count('warn'), 1, 'one warning however many checks and scrapes');
  assert.equal(log.lines.length, 1);
  const warn = log.lines[0]!;
  assert.equal(warn['quietSince'], new Date(T0).toISOString(), 'quiet since the start (no write yet)');
  assert.equal(warn['dropoffAfterSeconds'], afterMs / 1000);
  assert.equal(warn['quietForSeconds'], afterMs / 1000);

  const wroteAt = clock.now() - 10;
  m.health.lastWrittenMs = wroteAt;
  assert.equal(await gauge(), 0, 'a write clears it');
  assert.equal(alarm.check(), 0);
  assert.equal(await gauge(), 0);
  assert.equal(log.count('info'), 1, 'one info line on recovery');
  assert.equal(log.lines.length, 2);
  assert.equal(log.lines[1]!['wroteAt'], new Date(wroteAt).toISOString());

  clock.advance(afterMs - 10 - 1);
  assert.equal(await gauge(), 0, 'quiet again, below the threshold from the write');
  clock.advance(1);
  assert.equal(await gauge(), 1, 'raised again');
  assert.equal(alarm.check(), 1);
  assert.equal(log.count('warn'), 2, 'a second warning');
  assert.equal(log.count('info'), 1);
  assert.equal(log.lines[2]!['quietSince'], new Date(wroteAt).toISOString());

  assert.throws(() => new DropoffAlarm({ afterMs: 0 }, { metrics: m }), RangeError);
  assert.throws(() => new DropoffAlarm({ afterMs: -1 }, { metrics: m }), RangeError);
  assert.throws(() => new DropoffAlarm({ afterMs: NaN }, { metrics: m }), RangeError);
});

/** Counts `n` chunks through a writable that advances the clock 100 ms per chunk, then returns the backpressure counter. */
async function backpressureRun(slow: boolean): Promise<number> {
  const clock = fakeClock();
  const m = createMetrics({ clock, defaultMetrics: false });
  const upstream = Readable.from(Array.from({ length: 10 }, (_, i) => ({ i })), { objectMode: true, highWaterMark: 1 });
  let written = 0;
  const downstream = new Writable({
    objectMode: true,
    highWaterMark: 1,
    write(_chunk, _enc, cb) {
      written++;
      if (!slow) {
        clock.advance(100);
        cb();
        return;
      }
      // The write takes 100 ms of (fake) time to complete: upstream waits on it.
      setImmediate(() => {
        clock.advance(100);
        cb();
      });
    },
  });
  measureBackpressure(upstream, downstream, 'x', m);
  await pipeline(upstream, downstream);
  assert.equal(written, 10);
  return value(await scrape(m), 'atlassian_audit_stage_backpressure_seconds_total', { stage: 'x' }) ?? 0;
}

test('measureBackpressure counts the time upstream waits on a slow downstream', async () => {
  const slow = await backpressureRun(true);
  const fast = await backpressureRun(false);
  assert.ok(slow > 0, `slow: ${slow}`);
  assert.ok(slow > fast, `slow ${slow} > fast ${fast}`);
});

test('isMetricPrefix and createMetrics prefix validation', () => {
  for (const p of ['', 'a_', 'a:b_', '_', ':', 'A9_']) assert.equal(isMetricPrefix(p), true, JSON.stringify(p));
  for (const p of ['1a', 'a-b', 'a b', 'a.b', ' a', 'a\n']) assert.equal(isMetricPrefix(p), false, JSON.stringify(p));
  for (const p of ['1a', 'a-b', 'a b']) assert.throws(() => createMetrics({ prefix: p, defaultMetrics: false }), RangeError);
  const m = createMetrics({ prefix: '', defaultMetrics: false });
  assert.ok(m.registry.getSingleMetric('events_received_total'), 'the empty prefix is allowed');
});

test('DropoffAlarm after a restart: the quiet time runs from the checkpoint\'s newest processedAt until a write', () => {
  const clock = fakeClock();
  const m = createMetrics({ clock, defaultMetrics: false });
  const log = captureLogger();
  // The checkpoint says events were last written 20 minutes before this process started.
  m.health.resumedLastWriteMs = T0 - 20 * 60_000;
  m.health.newestProcessedAtMs = T0 - 20 * 60_000;
  const alarm = new DropoffAlarm({ afterMs: DROPOFF_MIN_MS }, { metrics: m, logger: log.logger });
  assert.equal(alarm.check(), 1, 'raised at once: 20 min quiet > 15 min, though the process just started');
  assert.equal(log.lines[0]!['quietSince'], new Date(T0 - 20 * 60_000).toISOString());
  // A quarantine-only object moves the newest processedAt committed, but writes no event.
  m.health.newestProcessedAtMs = clock.now();
  clock.advance(1000);
  assert.equal(alarm.check(), 1, 'quarantined records are not events: the alarm stays up');
  assert.equal(log.count('info'), 0);
  m.health.lastWrittenMs = clock.now() + 1;
  clock.advance(1);
  assert.equal(alarm.check(), 0);
  assert.equal(log.count('info'), 1);
  alarm.stop();
  assert.equal(m.health.checkDropoff, undefined, 'stop() also ends the checks at scrape time');
});
