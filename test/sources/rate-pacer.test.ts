import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRateLimitReset, RatePacer } from '../../src/sources/rate-pacer.js';
import { retryHintMs } from '../../src/sources/atlassian-events.js';

/** Drives a pacer with a virtual clock: each request starts as soon as allowed and takes `latencyMs`. */
function drive(pacer: RatePacer, n: number, latencyMs: number, start = 1_000_000): number[] {
  const starts: number[] = [];
  let now = start;
  for (let i = 0; i < n; i++) {
    now += pacer.delay(now);
    pacer.started(now);
    starts.push(now);
    now += latencyMs;
  }
  return starts;
}

/** Most starts inside any window of `windowMs`, wherever the window begins. */
function busiestWindow(starts: number[], windowMs: number): number {
  let best = 0;
  for (let i = 0, j = 0; i < starts.length; i++) {
    while (starts[i]! - starts[j]! >= windowMs) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

test('the budget spreads requests evenly: no window of any alignment holds more than allowed, and the rate is used', () => {
  for (const [requests, windowMs, latency] of [[50, 60_000, 80], [300, 60_000, 5], [10, 1000, 0], [7, 3330, 200]] as const) {
    const pacer = new RatePacer({ requests, windowMs });
    const starts = drive(pacer, requests * 5, latency);
    assert.ok(busiestWindow(starts, windowMs) <= requests, `${requests}/${windowMs}: ${busiestWindow(starts, windowMs)} in one window`);
    // Five windows' worth of requests take five windows, give or take the 1% margin.
    const span = starts.at(-1)! - starts[0]!;
    const ideal = ((requests * 5 - 1) * windowMs) / requests;
    assert.ok(span >= ideal && span <= ideal * 1.02, `${requests}/${windowMs}: span ${span} vs ideal ${ideal}`);
  }
  // Without a budget the pacer adds no spacing of its own.
  const free = drive(new RatePacer(undefined), 100, 3);
  assert.equal(free.at(-1)! - free[0]!, 99 * 3);
});

test('Remaining 0 before the budget is spent holds the next request until the reset; at the budget\'s end it does not', () => {
  const now = Date.parse('2026-11-21T10:00:10Z');
  // A tighter server limit (or other clients of the key): hold until the reset plus a margin.
  const a = new RatePacer({ requests: 50, windowMs: 60_000 });
  a.started(now);
  a.observe({ 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '2026-11-21T10:01Z' }, now);
  assert.equal(a.delay(now), 50_000 + 250);
  // No budget at all: the headers alone pace.
  const b = new RatePacer(undefined);
  b.observe({ 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '2026-11-21T10:00:11.500Z' }, now);
  assert.equal(b.delay(now), 1750);
  // Remaining above 0, a reset already past (rounded down, skewed clock), or no usable reset: no hold.
  for (const headers of [
    { 'x-ratelimit-remaining': '3', 'x-ratelimit-reset': '2026-11-21T10:01Z' },
    { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '2026-11-21T10:00Z' },
    { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': 'soon' },
    { 'x-ratelimit-remaining': '0' },
    { 'x-ratelimit-remaining': 'lots', 'x-ratelimit-reset': '2026-11-21T10:01Z' },
  ]) {
    const p = new RatePacer(undefined);
    p.observe(headers, now);
    assert.equal(p.delay(now), 0, JSON.stringify(headers));
  }
  // The budget's own last request of a window meets Remaining 0 as expected: its spacing already
  // puts the next request past the window, so a minute-rounded reset is not waited for.
  const c = new RatePacer({ requests: 10, windowMs: 1000 });
  const starts = drive(c, 10, 0, now);
  c.observe({ 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '2026-11-21T10:01Z' }, starts.at(-1)!);
  assert.ok(c.delay(starts.at(-1)!) <= 102, `held ${c.delay(starts.at(-1)!)} ms`);
  // A nonsense reset a year away is capped at a day.
  const d = new RatePacer(undefined);
  d.observe({ 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '2027-11-21T10:00Z' }, now);
  assert.equal(d.delay(now), 24 * 3_600_000 + 250);
});

test('X-RateLimit-Reset is read at minute, second and millisecond precision, with offsets; junk is ignored', () => {
  const now = Date.parse('2023-10-11T17:04:30Z');
  assert.equal(parseRateLimitReset('2023-10-11T17:05Z', now), Date.parse('2023-10-11T17:05:00Z'));
  assert.equal(parseRateLimitReset('2023-10-11T17:05:07Z', now), Date.parse('2023-10-11T17:05:07Z'));
  assert.equal(parseRateLimitReset('2023-10-11T17:05:07.250Z', now), Date.parse('2023-10-11T17:05:07.250Z'));
  assert.equal(parseRateLimitReset('2023-10-11T19:05+02:00', now), Date.parse('2023-10-11T17:05:00Z'));
  assert.equal(parseRateLimitReset('2023-10-11T19:05:00+0200', now), Date.parse('2023-10-11T17:05:00Z'));
  assert.equal(parseRateLimitReset('42', now), now + 42_000);
  assert.equal(parseRateLimitReset('1697043900', now), Date.parse('2023-10-11T17:05:00Z'));
  assert.equal(parseRateLimitReset('1697043900000', now), Date.parse('2023-10-11T17:05:00Z'));
  for (const junk of ['', 'tomorrow', '2023-10-11', '2023-10-11T17:5Z', '2023-13-11T17:05Z']) assert.equal(parseRateLimitReset(junk, now), undefined, junk);
  // A 429 with only a reset time waits until it, however long.
  assert.equal(retryHintMs({ 'x-ratelimit-reset': '2023-10-11T20:00Z' }, now), Date.parse('2023-10-11T20:00:00Z') - now);
});

test('--rate-limit: N per minute, N/DURATION, 0 for no budget; anything else is a clear ConfigError', async () => {
  const { parseRateBudget: rateBudget } = await import('../../src/sources/rate-pacer.js');
  const { ConfigError } = await import('../../src/errors.js');
  assert.equal(rateBudget(undefined), undefined);
  assert.deepEqual(rateBudget('50'), { requests: 50, windowMs: 60_000 });
  assert.deepEqual(rateBudget('300/1m'), { requests: 300, windowMs: 60_000 });
  assert.deepEqual(rateBudget('10/2s'), { requests: 10, windowMs: 2000 });
  assert.equal(rateBudget('0'), false);
  for (const bad of ['', 'fast', '-5', '1.5', '50/', '50/soon', '0/1m', '200000', '1/30d']) {
    assert.throws(() => rateBudget(bad), (err: unknown) => err instanceof ConfigError && /--rate-limit/.test(err.message), bad);
  }
});
