import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createAtlassianEventsSource, MAX_AHEAD, type AtlassianEventsOptions } from '../../src/sources/atlassian-events.js';
import { createSimulator, type Simulator, type SimulatorOptions } from '../../src/simulator/index.js';
import { ApiError, AuthError, ForbiddenError, OrgNotFoundError } from '../../src/errors.js';
import { createMetrics } from '../../src/metrics.js';
import { hourOf, parseRfc3339 } from '../../src/time.js';
import type { Clock } from '../../src/clock.js';
import type { Batch, Position } from '../../src/types.js';
import { batchRecords } from '../helpers/batches.js';
import { startGateway } from '../helpers/gateway.js';
import { until } from '../helpers/proc.js';
import { createServer as createNetServer, type AddressInfo } from 'node:net';

async function withSim(opts: SimulatorOptions, fn: (sim: Simulator) => Promise<void>): Promise<void> {
  const sim = createSimulator(opts);
  await sim.start();
  try {
    await fn(sim);
  } finally {
    await sim.close();
  }
}

/** A clock whose sleeps return at once and are recorded. */
function fastClock(): Clock & { waits: number[] } {
  const waits: number[] = [];
  return { waits, now: () => Date.now(), sleep: async (ms) => { waits.push(ms); } };
}

function opts(sim: Simulator, over: Partial<AtlassianEventsOptions> = {}): AtlassianEventsOptions {
  return { apiUrl: sim.url, orgId: sim.orgId, apiKey: sim.apiKey, start: { from: 0, skip: 0 }, backoffBaseMs: 1, backoffCapMs: 5, rateLimit: false, ...over };
}

async function drain(src: AsyncIterable<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of src) out.push(b);
  return out;
}

const ids = (batches: Batch[]): unknown[] => batches.flatMap(batchRecords);

test('walks every page in processedAt order, cuts at hour boundaries, ends when caught up', async () => {
  await withSim({ events: 1234, seed: 3 }, async (sim) => {
    const metrics = createMetrics({ defaultMetrics: false });
    const batches = await drain(createAtlassianEventsSource(opts(sim), { metrics }));
    const records = ids(batches);
    assert.equal(records.length, sim.summary().totalRecords);
    for (const b of batches) {
      const hours = new Set(batchRecords(b).map((r) => {
        const p = (r as { attributes?: { processedAt?: unknown } })?.attributes?.processedAt;
        return typeof p === 'string' ? hourOf(parseRfc3339(p)!) : undefined;
      }).filter((h) => h !== undefined));
      assert.ok(hours.size <= 1, 'a batch spans two hours');
      if (hours.size === 1) assert.equal(b.hour, [...hours][0]);
    }
    // Every request asked for 500 and sent `from` only on the first one.
    const log = sim.stats.log;
    assert.ok(log.every((e) => e.query['limit'] === '500'));
    assert.equal(log[0]!.query['from'], '0');
    assert.ok(log.slice(1).every((e) => e.query['from'] === undefined && typeof e.query['cursor'] === 'string'));
    assert.equal(log.length, Math.ceil(records.length / 500) + 1, 'one request per page plus the empty end page');
    assert.equal((await metrics.eventsReceived.get()).values[0]!.value, records.length);
  });
});

test('continues from a saved position: only new records, with both end-of-stream styles', async () => {
  for (const endStyle of ['cursor', 'null'] as const) {
    await withSim({ events: 700, seed: 4, endStyle, duplicateRate: 0 }, async (sim) => {
      const first = createAtlassianEventsSource(opts(sim));
      const before = ids(await drain(first));
      const saved: Position = first.position;
      assert.equal(before.length, sim.summary().totalRecords);
      // Nothing new: a second walk from the saved position yields no records.
      assert.equal(ids(await drain(createAtlassianEventsSource(opts(sim, { start: saved })))).length, 0, endStyle);
      sim.append(37);
      const again = createAtlassianEventsSource(opts(sim, { start: saved }));
      const fresh = ids(await drain(again));
      assert.equal(fresh.length, 37, endStyle);
      const all = new Set([...before, ...fresh].map((r) => JSON.stringify(r)));
      assert.equal(all.size, before.length + 37);
    });
  }
});

test('pull-based: a consumer that stops pulling stops the requests', async () => {
  await withSim({ events: 5000, seed: 5 }, async (sim) => {
    const src = createAtlassianEventsSource(opts(sim));
    try {
      const it = src[Symbol.asyncIterator]();
      await it.next();
      // At most the page pulled, the one buffered (highWaterMark 1), and MAX_AHEAD fetched ahead of
      // them (fewer when the first page's hours make two batches), however long nobody pulls. The
      // simulator has 11 pages: a source that kept going would go past the bound.
      // Regression: the test waited for exactly 2 + MAX_AHEAD, which depends on the time of day.
      let seen = -1;
      await until(async () => {
        if (sim.stats.requests === seen) return true;
        seen = sim.stats.requests;
        await new Promise((r) => setTimeout(r, 1000));
        return false;
      }, 'the requests to stop');
      assert.ok(seen <= 2 + MAX_AHEAD, `the source ran ahead: ${seen} requests for 1 batch pulled`);
      await new Promise((r) => setTimeout(r, 1000));
      assert.ok(sim.stats.requests <= 2 + MAX_AHEAD, `the requests did not stop: ${sim.stats.requests}`);
    } finally {
      // Also when an assertion failed: the page workers would keep the test process alive.
      src.destroy();
      await once(src, 'close');
    }
  });
});

test('429s are retried for as long as it takes, honouring each rate-limit header', async () => {
  await withSim({ events: 600, seed: 6, resetPrecision: 'second', faults: { retryAfterSeconds: 7 } }, async (sim) => {
    sim.failNextRequests(['429-retry-after', '429-x-retry-after', '429-reset', '429-none']);
    const clock = fastClock();
    const records = ids(await drain(createAtlassianEventsSource(opts(sim, { maxRetries: 0 }), { clock })));
    assert.equal(records.length, sim.summary().totalRecords);
    assert.equal(clock.waits.length, 4);
    assert.equal(clock.waits[0], 7000);
    assert.equal(clock.waits[1], 7000);
    assert.ok(clock.waits[2]! > 0 && clock.waits[2]! <= 120_000, `reset wait ${clock.waits[2]}`);
    assert.equal(clock.waits[3], 1000, 'no header: the jittered backoff (here within 5 ms), but never under 1 s');
  });
});

test('5xx, resets, truncated, HTML and wrongly shaped pages are retried; no record is lost or repeated', async () => {
  await withSim({ events: 1500, seed: 7 }, async (sim) => {
    sim.failNextRequests(['500', '502', '503', 'reset', 'truncated', 'html', 'bad-shape-data-object', 'bad-shape-no-data', 'bad-shape-no-meta']);
    const clock = fastClock();
    const records = ids(await drain(createAtlassianEventsSource(opts(sim, { maxRetries: 10 }), { clock })));
    assert.equal(records.length, sim.summary().totalRecords);
    const clean = ids(await drain(createAtlassianEventsSource(opts(sim))));
    assert.deepEqual(records, clean, 'a failed page produced partial or repeated output');
    assert.equal(clock.waits.length, 9);
  });
});

test('a page that keeps failing ends the stream with ApiError after maxRetries', async () => {
  await withSim({ events: 10, seed: 8 }, async (sim) => {
    sim.failNextRequests(['503', '503', '503', '503']);
    await assert.rejects(drain(createAtlassianEventsSource(opts(sim, { maxRetries: 2 }), { clock: fastClock() })), (err: unknown) => {
      assert.ok(err instanceof ApiError);
      assert.match(err.message, /the events API at http:\/\/127\.0\.0\.1:\d+ \(--api-url\) kept failing: 3 attempts, the last answered HTTP 503/);
      return true;
    });
  });
});

test('401, 403 and 404 end the stream at once with distinct errors that never contain the key', async () => {
  await withSim({ events: 10, seed: 9, apiKey: 'secret-key-value-123' }, async (sim) => {
    const cases: Array<[Partial<AtlassianEventsOptions>, new (...a: never[]) => Error]> = [
      [{ apiKey: 'wrong-key-value-456' }, AuthError],
      [{ orgId: 'no-such-org' }, OrgNotFoundError],
    ];
    for (const [over, cls] of cases) {
      sim.resetStats();
      await assert.rejects(drain(createAtlassianEventsSource(opts(sim, over))), (err: unknown) => {
        assert.ok(err instanceof cls, String(err));
        assert.ok(!(err as Error).message.includes('secret-key-value-123') && !(err as Error).message.includes('wrong-key-value-456'));
        return true;
      });
      assert.equal(sim.stats.requests, 1, 'fatal errors are not retried');
    }
    sim.entitled = false;
    await assert.rejects(drain(createAtlassianEventsSource(opts(sim))), ForbiddenError);
  });
});

test('an API that cannot be reached: each retry logs a readable cause (a timeout as "no answer within …", not a code), and the error names the URL and --api-url', async () => {
  // Regression: a page that timed out was logged with "detail":23 (the timeout's DOMException
  // code), and the run's last line named neither the URL nor the flag.
  const silent = createNetServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  const closed = createNetServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const closedUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
  await new Promise<void>((r) => closed.close(() => r()));
  const retries: Array<Record<string, unknown>> = [];
  const logger = { debug() {}, info() {}, error() {}, warn: (msg: string, fields?: Record<string, unknown>) => { if (msg === 'page request failed; retrying') retries.push(fields!); } };
  const source = (apiUrl: string): AsyncIterable<Batch> =>
    createAtlassianEventsSource({ apiUrl, orgId: 'o', apiKey: 'k', start: { from: 0, skip: 0 }, rateLimit: false, maxRetries: 2, requestTimeoutMs: 200 }, { clock: fastClock(), logger });
  try {
    await assert.rejects(drain(source(silentUrl)), (err: unknown) => {
      assert.ok(err instanceof ApiError, String(err));
      assert.equal(err.message, `cannot reach the events API at ${silentUrl} (--api-url): 3 attempts failed, the last with no answer within 0.2 s. Check --api-url, DNS, proxies and firewalls between here and the API`);
      return true;
    });
    assert.deepEqual(retries.map((r) => [r['cause'], r['detail']]), [['timeout', 'no answer within 0.2 s'], ['timeout', 'no answer within 0.2 s']]);
    retries.length = 0;
    await assert.rejects(drain(source(closedUrl)), (err: unknown) => {
      assert.ok(err instanceof ApiError, String(err));
      assert.match(err.message, new RegExp(`^cannot reach the events API at ${closedUrl} \\(--api-url\\): 3 attempts failed, the last with .*ECONNREFUSED.*\\. Check --api-url`));
      return true;
    });
    assert.equal(retries.length, 2);
    for (const r of retries) assert.match(r['detail'] as string, /ECONNREFUSED/);
  } finally {
    silent.close();
  }
});

test('a 404 says which it is: Atlassian\'s "organization not found", or another server\'s 404 page (a wrong --api-url or proxy path); a gateway\'s path prefix in --api-url is kept', async () => {
  await withSim({ events: 700, seed: 13 }, async (sim) => {
    const gateway = await startGateway(sim.url, { prefix: '/atlassian', upstreamHost: 'atlassian-upstream.internal:8443' });
    try {
      // Regression: every 404 read "organization not found", a gateway's own 404 page too.
      await assert.rejects(drain(createAtlassianEventsSource(opts(sim, { apiUrl: gateway.url.replace('/atlassian', '/wrong') }))), (err: unknown) => {
        assert.ok(err instanceof ApiError && !(err instanceof OrgNotFoundError), String(err));
        assert.equal(err.exitCode, 6);
        assert.match(err.message, /answered HTTP 404 without Atlassian's error document: \/wrong\/admin\/v1\/orgs\/[^/]+\/events-stream is not the events-stream API there\. Check --api-url/);
        return true;
      });
      assert.equal(gateway.paths.length, 1, 'a 404 is not retried');
      await assert.rejects(drain(createAtlassianEventsSource(opts(sim, { apiUrl: gateway.url, orgId: 'no-such-org' }))), (err: unknown) => {
        assert.ok(err instanceof OrgNotFoundError, String(err));
        assert.match(err.message, /organization "no-such-org" was not found \(HTTP 404 \(ADMIN-404-2\)\): check --org-id/);
        return true;
      });
      // Through the gateway, under its prefix: every record, though links.next names the upstream host.
      const records = ids(await drain(createAtlassianEventsSource(opts(sim, { apiUrl: `${gateway.url}/` }))));
      assert.equal(records.length, sim.summary().totalRecords);
      assert.ok(gateway.paths.slice(2).every((p) => p.startsWith('/atlassian/admin/v1/orgs/')), gateway.paths.join(' '));
    } finally {
      await gateway.close();
    }
  });
});

test('a rejected cursor falls back to from = last processedAt minus the overlap', async () => {
  await withSim({ events: 1600, seed: 10, duplicateRate: 0 }, async (sim) => {
    const src = createAtlassianEventsSource(opts(sim));
    const it = src[Symbol.asyncIterator]();
    const got: Batch[] = [];
    while (got.flatMap(batchRecords).length < 1000) got.push((await it.next()).value as Batch);
    const lastProcessedAt = got.map((b) => b.lastProcessedAt).filter((x) => x !== undefined).at(-1)!;
    const position = got.at(-1)!.position;
    src.destroy();
    sim.invalidateCursors();
    sim.resetStats();
    const rest = ids(await drain(createAtlassianEventsSource(opts(sim, { start: position, lastProcessedAt, cursorFallbackOverlapMs: 60_000 }))));
    assert.equal(sim.stats.log[0]!.status, 400);
    assert.equal(sim.stats.log[1]!.query['from'], String(parseRfc3339(lastProcessedAt)! - 60_000));
    // Everything not yet seen arrives; the overlap re-delivers some already seen (dedupe removes those).
    const seen = new Set(ids(got).map((r) => JSON.stringify(r)));
    const restSet = new Set(rest.map((r) => JSON.stringify(r)));
    const all = sim.truth();
    assert.equal(seen.size + [...restSet].filter((r) => !seen.has(r)).length, all.totalRecords);
  });
});

test('destroy during a slow request returns promptly; a stop signal ends a following source cleanly', async () => {
  await withSim({ events: 50, seed: 11, faults: { slowMs: 60_000 } }, async (sim) => {
    sim.failNextRequests(['slow']);
    const src = createAtlassianEventsSource(opts(sim));
    src.resume();
    await until(() => sim.stats.requests >= 1, 'the request at the API');
    src.destroy();
    await once(src, 'close');
    // The API holds its answer for a minute: closed before it, destroy did not wait for it.
    assert.equal(sim.stats.log.length, 0, 'destroy waited for the request');

    const stop = new AbortController();
    const following = createAtlassianEventsSource(opts(sim, { follow: true, intervalMs: 60_000, signal: stop.signal }));
    const batches: Batch[] = [];
    following.on('data', (b: Batch) => batches.push(b));
    await until(() => batches.some((b) => b.pollEnd !== undefined), 'the first poll to catch up');
    stop.abort();
    await once(following, 'end');
    assert.equal(ids(batches).length, sim.summary().totalRecords);
  });
});

test('a request that hangs past the per-request timeout is abandoned and retried', async () => {
  await withSim({ events: 700, seed: 12, faults: { slowMs: 60_000 } }, async (sim) => {
    sim.failNextRequests(['slow']);
    const records = ids(await drain(createAtlassianEventsSource(opts(sim, { requestTimeoutMs: 300 }), { clock: fastClock() })));
    assert.equal(records.length, sim.summary().totalRecords);
    // The held request (a minute) was never answered: it was abandoned and retried.
    assert.equal(sim.stats.requests, sim.stats.log.length + 1, 'the slow request was waited for instead of timed out');
  });
});

test('a rejected cursor with a skip count: the fallback page is not skipped and the rejected cursor is not kept', async () => {
  // Regression: the page fetched with `from` after a rejected {cursor, skip: 100} was sliced by
  // the old skip, and the old cursor stayed the position, so new events were lost.
  await withSim({ events: 600, seed: 13, endStyle: 'null', duplicateRate: 0 }, async (sim) => {
    const first = createAtlassianEventsSource(opts(sim));
    const before = await drain(first);
    const position = first.position;
    assert.ok(position.cursor !== undefined && position.skip > 0, JSON.stringify(position));
    const lastProcessedAt = before.map((b) => b.lastProcessedAt).filter((x) => x !== undefined).at(-1)!;
    sim.append(5);
    sim.invalidateCursors();
    const again = createAtlassianEventsSource(opts(sim, { start: position, lastProcessedAt }));
    const records = ids(await drain(again));
    const seen = new Set(ids(before).map((r) => JSON.stringify(r)));
    assert.equal(records.filter((r) => !seen.has(JSON.stringify(r))).length, 5, 'the new events were not all delivered');
    assert.notEqual(again.position.cursor, position.cursor, 'the rejected cursor is still the position');
  });
});

test('an API that answers a cursor with itself as next is caught up, not a tight loop; Retry-After: 0 waits 1 s', async () => {
  const { createServer } = await import('node:http');
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    if (requests === 1) return void res.writeHead(429, { 'retry-after': '0' }).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ data: [{ id: 'a' }, { id: 'b' }], meta: { next: 'SAME' } }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  try {
    const clock = fastClock();
    const src = createAtlassianEventsSource({ apiUrl: `http://127.0.0.1:${port}`, orgId: 'o', apiKey: 'k', start: { cursor: 'SAME', skip: 0 }, rateLimit: false }, { clock });
    assert.equal(ids(await drain(src)).length, 2);
    assert.deepEqual(src.position, { cursor: 'SAME', skip: 2 });
    assert.equal(requests, 2);
    assert.deepEqual(clock.waits, [1000]);
    const next = createAtlassianEventsSource({ apiUrl: `http://127.0.0.1:${port}`, orgId: 'o', apiKey: 'k', start: src.position });
    assert.equal(ids(await drain(next)).length, 0);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test('pacing: a server limit tighter than the budget is met by holding until X-RateLimit-Reset, with no 429', async () => {
  await withSim({ events: 600, seed: 14, duplicateRate: 0, rateLimit: { requests: 4, windowMs: 1000 }, resetPrecision: 'millisecond' }, async (sim) => {
    const metrics = createMetrics({ defaultMetrics: false });
    const records = ids(await drain(createAtlassianEventsSource(opts(sim, { pageSize: 50, rateLimit: { requests: 1000, windowMs: 1000 } }), { metrics })));
    assert.equal(records.length, sim.summary().totalRecords);
    assert.ok(sim.stats.requests >= 13, `${sim.stats.requests} requests`);
    assert.equal(sim.stats.byStatus['429'], undefined, `429s: ${sim.stats.byStatus['429']}`);
    const waited = (await metrics.rateLimitWaitSeconds.get()).values.find((v) => v.labels['reason'] === 'pacing')?.value ?? 0;
    assert.ok(waited > 0, 'the pacer never held a request');
  });
});

test('pacing: a budget matching the limit uses it without 429s and without waiting for a minute-rounded reset', async () => {
  // The simulator's windows start at the first request and announce their reset rounded up to
  // the minute, as observed: holding until that reset would wait up to a minute per window.
  await withSim({ events: 600, seed: 15, duplicateRate: 0, rateLimit: { requests: 10, windowMs: 1000 }, resetPrecision: 'minute' }, async (sim) => {
    const metrics = createMetrics({ defaultMetrics: false });
    const budget = { requests: 10, windowMs: 1000 };
    const records = ids(await drain(createAtlassianEventsSource(opts(sim, { pageSize: 25, rateLimit: budget }), { metrics })));
    assert.equal(records.length, sim.summary().totalRecords);
    assert.equal(sim.stats.byStatus['429'], undefined, `429s: ${sim.stats.byStatus['429']}`);
    // Every pacing wait is at most one spacing step (101 ms): none waited for a reset.
    const waited = (await metrics.rateLimitWaitSeconds.get()).values.find((v) => v.labels['reason'] === 'pacing')?.value ?? 0;
    assert.ok(waited <= (sim.stats.requests * 101) / 1000, `waited ${waited} s over ${sim.stats.requests} requests`);
    assert.ok(waited > 0, 'requests were not spaced at all');
  });
});

test('a stop signal cuts short an hour-long rate-limit wait: the source ends cleanly, nothing is emitted twice', { timeout: 15_000 }, async () => {
  await withSim({ events: 50, seed: 16, faults: { retryAfterSeconds: 3600 } }, async (sim) => {
    sim.failNextRequests(['429-retry-after']);
    const stop = new AbortController();
    const src = createAtlassianEventsSource(opts(sim, { signal: stop.signal }));
    const batches: Batch[] = [];
    src.on('data', (b: Batch) => batches.push(b));
    while (sim.stats.requests < 1) await new Promise((r) => setTimeout(r, 20));
    stop.abort();
    await once(src, 'end');
    assert.equal(batches.length, 0);
    assert.equal(sim.stats.requests, 1, 'the source retried instead of stopping');
  });
});

test('late events: processed hours after their time, they are still caught by polling from the saved cursor', async () => {
  for (const endStyle of ['cursor', 'null'] as const) {
    await withSim({ events: 600, seed: 17, endStyle, duplicateRate: 0, lateRate: 0, malformedRate: 0 }, async (sim) => {
      const first = createAtlassianEventsSource(opts(sim));
      const before = ids(await drain(first));
      const newestTime = Math.max(...before.map((r) => Date.parse((r as { attributes: { time: string } }).attributes.time)));
      // Events whose time is 2 min – 8 h before their processedAt: older than events already
      // collected. A poller that asks by event time (from = newest time seen) would miss them.
      sim.append(80, { late: true });
      const late = ids(await drain(createAtlassianEventsSource(opts(sim, { start: first.position }))));
      assert.equal(late.length, 80, endStyle);
      const attrs = late.map((r) => (r as { attributes: { time: string; processedAt: string } }).attributes);
      assert.ok(attrs.every((a) => Date.parse(a.processedAt) - Date.parse(a.time) >= 120_000), 'not late');
      assert.ok(attrs.some((a) => Date.parse(a.time) < newestTime), 'no late event is older than what was already collected');
    });
  }
});

test('pages are fetched ahead on the cursor the tail names; a wrong guess is abandoned and nothing from it is emitted', async () => {
  const { startScriptedApi, pageBody } = await import('../helpers/scripted-api.js');
  const { makeEvent } = await import('../helpers/batches.js');
  const recs = (n: number): string[] => Array.from({ length: n }, () => JSON.stringify(makeEvent()));
  const pages = [{ records: recs(2) }, { records: recs(2) }, { records: recs(2) }, { records: recs(1) }];
  let api: Awaited<ReturnType<typeof startScriptedApi>> | undefined;
  // Page 0 first answers with too many records (a malformed page, retried) whose meta.next skips
  // page 1: the guess fetches page 2 ahead, and the retry's real cursor (page 1) abandons it.
  (pages[0] as { bad?: unknown[] }).bad = [() => ({ body: pageBody(recs(3), (JSON.parse(api!.goodBody(1).toString()) as { meta: { next: string } }).meta.next) })];
  api = await startScriptedApi(pages);
  try {
    const batches = await drain(createAtlassianEventsSource({ apiUrl: api.url, orgId: api.orgId, apiKey: api.apiKey, start: { from: 0, skip: 0 }, pageSize: 2, rateLimit: false, backoffBaseMs: 1, backoffCapMs: 2 }));
    const got = batches.flatMap(batchRecords).map((r) => (r as { id: string }).id);
    assert.deepEqual(got, pages.flatMap((p) => p.records.map((r) => (JSON.parse(r) as { id: string }).id)), 'every good record once, in order');
    assert.deepEqual(api.requestsFor(0).map((r) => r.answer), ['bad0', 'good']);
    // Page 1 once. Page 2 was requested ahead on the wrong guess (unless the refusal aborted that
    // request before it was sent), then again in its turn; the abandoned chain went no further
    // than one page past it.
    assert.equal(api.requestsFor(1).length, 1);
    const page2 = api.requestsFor(2).length;
    assert.ok(page2 === 1 || page2 === 2, `page 2 requested ${page2} times`);
    assert.ok(api.requestsFor(3).length <= 2);
  } finally {
    await api.close();
  }
});

test('fetching ahead goes on once the chain is full: a page leaving the list lets the next one be fetched', async () => {
  const { startScriptedApi } = await import('../helpers/scripted-api.js');
  const { makeEvent } = await import('../helpers/batches.js');
  // One record a page, so one batch a page.
  const pages = Array.from({ length: 12 }, () => ({ records: [JSON.stringify(makeEvent())] }));
  const api = await startScriptedApi(pages);
  // The count once it reached `n`, half a second later (nothing more may come by then).
  const reach = async (n: number): Promise<number> => {
    await until(() => api.requests.length >= n, `${n} requests`);
    await new Promise((r) => setTimeout(r, 500));
    return api.requests.length;
  };
  const src = createAtlassianEventsSource({ apiUrl: api.url, orgId: api.orgId, apiKey: api.apiKey, start: { from: 0, skip: 0 }, pageSize: 1, rateLimit: false });
  try {
    const it = src[Symbol.asyncIterator]();
    await it.next();
    // Page 0 pulled, page 1 buffered (highWaterMark 1), and MAX_AHEAD pages fetched ahead.
    const full = 2 + MAX_AHEAD;
    assert.equal(await reach(full), full);
    // Each page pulled takes one off the list, and the successor guessed while it was full is
    // fetched at once, not only when the chain runs dry.
    for (let pulled = 1; pulled <= 3; pulled++) {
      await it.next();
      assert.equal(await reach(full + pulled), full + pulled, `after ${pulled} more pulled`);
    }
    assert.ok(api.requests.every((r) => r.answer === 'good'));
    assert.deepEqual(api.requests.map((r) => r.page), Array.from({ length: full + 3 }, (_, i) => i), 'each page once, in order');
  } finally {
    src.destroy();
    await once(src, 'close');
    await api.close();
  }
});
