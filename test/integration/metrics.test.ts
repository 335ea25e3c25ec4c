/**
 * /metrics, /healthz and /readyz of a real `run` against the simulator: counters scraped during
 * and after the run equal the ground truth and what is in the complete objects; the exposition
 * parses; /readyz flips when the API fails and back when it recovers.
 *
 * Then the API and readiness metrics against real components, each scraped from a metrics server
 * serving the registry the pipeline used (or the CLI's own): the X-RateLimit-Remaining gauge,
 * retries by cause, 429 waits, readiness before the first page and while S3 keeps failing, and
 * errors_total after a rebuilt pipeline.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AuthError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { createMetrics, quarantineReasonClass, type PipelineMetrics } from '../../src/metrics.js';
import { startMetricsServer, type MetricsServer } from '../../src/metrics-server.js';
import { runPipeline, type PipelineOptions } from '../../src/pipeline.js';
import { createS3Client } from '../../src/sinks/s3.js';
import { createSimulator } from '../../src/simulator/index.js';
import { makeEvent } from '../helpers/batches.js';
import { startCli } from '../helpers/cli.js';
import { parseExposition, value, type Family } from '../helpers/exposition.js';
import { listFiles, readZstdFile, readZstdText, tempDir } from '../helpers/fs.js';
import { localRunOptions } from '../helpers/pipeline-options.js';
import { s3Skip } from '../helpers/require-s3.js';
import { isWriteCheck, startS3FaultProxy } from '../helpers/s3-fault-proxy.js';
import { createTestBucket, emptyAndDeleteBucket, testS3Client } from '../helpers/s3.js';
import { startScriptedApi } from '../helpers/scripted-api.js';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
    s.once('error', reject);
  });
}

async function get(port: number, path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, text: await res.text() };
}

async function scrape(port: number): Promise<Map<string, Family>> {
  const r = await get(port, '/metrics');
  assert.equal(r.status, 200);
  return parseExposition(r.text);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Events, quarantine records and bytes in the complete objects under `dir`. */
async function objectsOnDisk(dir: string): Promise<{ events: number; quarantine: unknown[]; files: Record<'events' | 'quarantine', number>; zst: Record<string, number>; raw: Record<string, number> }> {
  const out = { events: 0, quarantine: [] as unknown[], files: { events: 0, quarantine: 0 }, zst: { events: 0, quarantine: 0 } as Record<string, number>, raw: { events: 0, quarantine: 0 } as Record<string, number> };
  for (const f of await listFiles(dir)) {
    if (f.startsWith('.tmp')) continue;
    const kind = f.startsWith('atlassian/audit/') ? 'events' : 'quarantine';
    const text = await readZstdText(join(dir, f));
    out.files[kind]++;
    out.zst[kind]! += (await stat(join(dir, f))).size;
    out.raw[kind]! += Buffer.byteLength(text);
    if (kind === 'events') out.events += text === '' ? 0 : text.split('\n').length - 1;
    else out.quarantine.push(...(await readZstdFile(join(dir, f))));
  }
  return out;
}

test('metrics scraped during and after a run equal the ground truth and the complete objects', { timeout: 120_000 }, async () => {
  const sim = createSimulator({ events: 6000, seed: 71, malformedRate: 0.03, duplicateRate: 0.01 });
  await sim.start();
  const dir = await tempDir();
  const out = join(dir, 'out');
  const port = await freePort();
  // Paced to 4 pages a second, with small objects, so scrapes land while objects complete.
  const cli = startCli(
    ['run', '--org-id', sim.orgId, '--api-url', sim.url, '--from', '2000-01-01', '--out-dir', out, '--state', join(dir, 'state.json'),
      '--metrics-port', String(port), '--metrics-host', '127.0.0.1', '--rate-limit', '4/1s', '--interval', '1h',
      '--object-max-bytes', '16KiB', '--object-max-age', '1s', '--dropoff-after', '15m', '--log-format', 'json'],
    { ATLASSIAN_API_KEY: sim.apiKey },
  );
  let stderr = '';
  cli.child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  try {
    await cli.waitFor(/"msg":"metrics server listening"/);
    const truth = sim.truth();
    let scrapes = 0;
    let sawPartial = false;
    // During: written never runs ahead of what is in complete objects (read right after the scrape).
    for (let i = 0; i < 400; i++) {
      const m = await scrape(port);
      const written = value(m, 'atlassian_audit_events_written_total') ?? NaN;
      const onDisk = (await objectsOnDisk(out)).events;
      assert.ok(written <= onDisk, `scrape ${scrapes}: written ${written} > ${onDisk} events in complete objects`);
      assert.ok(written <= truth.valid.size);
      if (written > 0 && written < truth.valid.size) sawPartial = true;
      scrapes++;
      if (onDisk === truth.valid.size) break;
      await sleep(100);
    }
    assert.ok(scrapes >= 3 && sawPartial, `only ${scrapes} scrapes during the run (partial counts seen: ${sawPartial})`);
    await cli.waitFor(/"msg":"poll complete"/);
    // Objects close at age 1 s; wait until every event is in a complete object and counted.
    let m = await scrape(port);
    for (let i = 0; i < 100 && value(m, 'atlassian_audit_events_written_total') !== truth.valid.size; i++) {
      await sleep(100);
      m = await scrape(port);
    }
    const disk = await objectsOnDisk(out);
    const v = (name: string, labels?: Record<string, string>): number | undefined => value(m, `atlassian_audit_${name}`, labels);

    assert.equal(v('events_written_total'), truth.valid.size);
    assert.equal(disk.events, truth.valid.size);
    assert.equal(v('events_quarantined_total'), truth.invalid.length);
    const byReason = new Map<string, number>();
    for (const q of disk.quarantine as { reason: string }[]) byReason.set(quarantineReasonClass(q.reason), (byReason.get(quarantineReasonClass(q.reason)) ?? 0) + 1);
    assert.ok(byReason.size >= 2, 'the simulator should produce several kinds of invalid record');
    for (const [reason, n] of byReason) assert.equal(v('events_quarantined_total', { reason }), n, `quarantined{reason="${reason}"}`);
    const received = v('events_received_total')!;
    assert.equal(received, truth.totalRecords);
    assert.equal(v('events_duplicates_dropped_total'), received - truth.valid.size - truth.invalid.length);
    for (const kind of ['events', 'quarantine'] as const) {
      assert.equal(v('objects_written_total', { kind }), disk.files[kind], `objects{kind="${kind}"}`);
      assert.equal(v('bytes_compressed_total', { kind }), disk.zst[kind], `bytes_compressed{kind="${kind}"}`);
      assert.equal(v('bytes_uncompressed_total', { kind }), disk.raw[kind], `bytes_uncompressed{kind="${kind}"}`);
      assert.ok(Math.abs(v('compression_ratio', { kind })! - disk.raw[kind]! / disk.zst[kind]!) < 1e-9);
    }
    assert.equal(v('api_requests_total', { status: '200' }), sim.stats.byStatus['200']);
    const valid = [...truth.valid.values()];
    const newestProcessed = Math.max(...valid.map((e) => Date.parse(e.attributes.processedAt!)));
    const newestTime = Math.max(...valid.map((e) => Date.parse(e.attributes.time)));
    assert.equal(v('newest_written_processed_at_seconds'), newestProcessed / 1000);
    assert.equal(v('newest_written_event_time_seconds'), newestTime / 1000);
    const lag = v('lag_seconds')!;
    assert.ok(lag >= (Date.now() - newestTime) / 1000 - 60 && lag <= (Date.now() - newestTime) / 1000, `lag ${lag}`);
    assert.ok(v('checkpoint_age_seconds')! >= 0);
    assert.ok(v('checkpoints_saved_total')! >= disk.files.events);
    assert.equal(v('polls_total'), 1);
    assert.equal(v('ready'), 1);
    // The alarm is on (--dropoff-after 15m) and events were just written.
    assert.equal(v('dropoff_alarm'), 0);
    const lastWrite = v('last_write_timestamp_seconds')!;
    assert.ok(lastWrite > 0 && lastWrite <= Date.now() / 1000, `last write ${lastWrite}`);
    // The simulator announces no rate limit: the gauge is NaN, not a misleading 0.
    assert.ok(Number.isNaN(v('api_rate_limit_remaining')));
    // One poll line, for a poller: its counts add up and the next poll is an hour away.
    const pollLines = stderr.split('\n').filter((l) => l.includes('"msg":"poll complete"')).map((l) => JSON.parse(l) as Record<string, number | string>);
    assert.equal(pollLines.length, 1);
    const poll = pollLines[0]!;
    assert.equal(poll['records'], truth.totalRecords);
    assert.equal(poll['records'], (poll['events'] as number) + (poll['quarantined'] as number) + (poll['duplicates'] as number));
    assert.equal(poll['pages'], sim.stats.byStatus['200']);
    const nextPoll = Date.parse(poll['nextPollAt'] as string) - Date.parse(poll['time'] as string);
    assert.ok(Math.abs(nextPoll - 3_600_000) < 5000, `nextPollAt ${poll['nextPollAt']} is not an hour after ${poll['time']}`);
    assert.ok(v('api_rate_limit_waits_total', { reason: 'pacing' })! > 0);
    assert.ok(v('api_rate_limit_wait_seconds_total', { reason: 'pacing' })! > 0);
    assert.ok(v('last_successful_poll_timestamp_seconds')! > 0 && v('caught_up_timestamp_seconds')! > 0);
    // Histograms count what happened: one request duration per page, one upload per object.
    assert.equal(v('api_request_duration_seconds_count'), sim.stats.byStatus['200']);
    assert.equal(v('object_upload_duration_seconds_count'), disk.files.events + disk.files.quarantine);
    // Default process metrics carry the prefix, event-loop lag among them.
    assert.ok(m.has('atlassian_audit_nodejs_eventloop_lag_seconds'));
    assert.ok(m.has('atlassian_audit_process_resident_memory_bytes'));
    for (const name of m.keys()) assert.ok(name.startsWith('atlassian_audit_'), name);
    // No secret or event content in the exposition.
    const text = (await get(port, '/metrics')).text;
    assert.ok(!text.includes(sim.apiKey));
    assert.ok(!valid.slice(0, 50).some((e) => text.includes(e.id)));

    assert.deepEqual(await get(port, '/healthz'), { status: 200, text: 'ok\n' });
    assert.deepEqual(await get(port, '/readyz'), { status: 200, text: 'ready\n' });
  } finally {
    cli.child.kill('SIGTERM');
    const r = await cli.result;
    await sim.close();
    assert.equal(r.code, 0, r.stderr.slice(-2000));
  }
});

test('/readyz and the ready gauge flip to not ready while the API returns 500s, and back when it recovers', { timeout: 420_000 }, async () => {
  const sim = createSimulator({ events: 600, seed: 72 });
  await sim.start();
  const dir = await tempDir();
  const port = await freePort();
  // --interval 1s: ready means "a page succeeded within 2 s".
  const cli = startCli(
    ['run', '--org-id', sim.orgId, '--api-url', sim.url, '--from', '2000-01-01', '--out-dir', join(dir, 'out'), '--state', join(dir, 'state.json'),
      '--metrics-port', String(port), '--metrics-host', '127.0.0.1', '--rate-limit', '0', '--interval', '1s', '--log-format', 'json'],
    { ATLASSIAN_API_KEY: sim.apiKey },
  );
  const waitReady = async (want: number, timeoutMs: number): Promise<number> => {
    const started = Date.now();
    for (;;) {
      const r = await get(port, '/readyz');
      if (r.status === want) return Date.now() - started;
      if (Date.now() - started > timeoutMs) assert.fail(`/readyz stayed ${r.status}, expected ${want}`);
      await sleep(100);
    }
  };
  try {
    await cli.waitFor(/"msg":"metrics server listening"/);
    // Before the first page succeeds the process is alive but not ready.
    await waitReady(200, 120_000);
    assert.equal(value(await scrape(port), 'atlassian_audit_ready'), 1);

    sim.setFaults({ rate5xx: 1 });
    await waitReady(503, 120_000);
    const during = await scrape(port);
    assert.equal(value(during, 'atlassian_audit_ready'), 0);
    assert.ok((value(during, 'atlassian_audit_api_retries_total', { cause: 'server_error' }) ?? 0) > 0);
    const fiveHundreds = ['500', '502', '503', '504'].reduce((a, s) => a + (value(during, 'atlassian_audit_api_requests_total', { status: s }) ?? 0), 0);
    assert.ok(fiveHundreds > 0);
    assert.equal((await get(port, '/healthz')).status, 200, '/healthz is about the process, not the API');

    sim.setFaults({});
    // Back once a retry succeeds: within seconds, or, if the retries ran out meanwhile, after the
    // poller's 30 s restart. The limit is an upper bound, not an expectation.
    await waitReady(200, 180_000);
    assert.equal(value(await scrape(port), 'atlassian_audit_ready'), 1);
  } finally {
    cli.child.kill('SIGTERM');
    const r = await cli.result;
    await sim.close();
    assert.equal(r.code, 0, r.stderr.slice(-2000));
  }
});

// ---- The API and readiness metrics, from runs of the library against real servers ----

const M = 'atlassian_audit_';

/** Serves the registry a run uses as the CLI does: /metrics, /healthz, and /readyz from `isReady` and `notReadyReason`. */
function serve(metrics: PipelineMetrics): Promise<MetricsServer> {
  return startMetricsServer({ port: 0, host: '127.0.0.1', registry: metrics.registry, ready: metrics.isReady, notReadyReason: metrics.notReadyReason });
}

/**
 * Every sample named `name`, keyed by the values of `labels` joined with `/`:
 * `{ "rate_limit": 1, "network": 2 }`, or `{ "sink/ERR_SINK": 2 }` for two labels. Empty when there is none.
 */
function byLabels(m: Map<string, Family>, name: string, ...labels: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const fam of m.values()) {
    for (const s of fam.samples) if (s.name === name) out[labels.map((l) => s.labels[l] ?? '').join('/')] = s.value;
  }
  return out;
}

/** Pipeline options for a run against `api` (the simulator or a scripted API), writing to a local directory. */
function libOptions(api: { url: string; orgId: string; apiKey: string }, dir: string, over: Partial<PipelineOptions> = {}): PipelineOptions {
  // No budget of our own (events-stream's 50 a minute spaces requests 1.2 s apart). The API's
  // X-RateLimit-* headers and 429s are honoured either way.
  return localRunOptions(api, dir, { rateLimit: false, ...over });
}

/** A logger that keeps every line. */
function recordingLogger(): Logger & { lines: Array<{ level: string; msg: string }> } {
  const lines: Array<{ level: string; msg: string }> = [];
  const at = (level: string) => (msg: string): void => { lines.push({ level, msg }); };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** What the pipeline logs each time it is rebuilt after a failure (pipeline.ts). */
const RESTART = 'the pipeline failed; restarting from the checkpoint';

/** Resolves once `cond()` holds; polls every 25 ms and fails after `ms`. */
async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 120_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

const eventTexts = (n: number): string[] => Array.from({ length: n }, () => JSON.stringify(makeEvent()));

test('api_rate_limit_remaining is the X-RateLimit-Remaining of the last API response that had one', { timeout: 60_000 }, async () => {
  // Scripted: page 0 says 42, page 1 says 17, the end page says nothing.
  const rl = (n: string): Record<string, string> => ({ 'content-type': 'application/json', 'x-ratelimit-remaining': n });
  const api = await startScriptedApi([{ records: eventTexts(3), headers: rl('42') }, { records: eventTexts(2), headers: rl('17') }]);
  const dir = await tempDir();
  const metrics = createMetrics({ defaultMetrics: false });
  const server = await serve(metrics);
  try {
    assert.ok(Number.isNaN(value(await scrape(server.port), `${M}api_rate_limit_remaining`)), 'NaN before any response');
    const result = await runPipeline(libOptions(api, dir), { metrics });
    assert.equal(result.events, 5);
    assert.deepEqual(api.requestsFor(0).map((r) => r.answer), ['good']);
    assert.deepEqual(api.requestsFor(1).map((r) => r.answer), ['good']);
    // The end page (no header) was answered after page 1: it left the gauge alone.
    assert.ok(api.requestsFor(2).length >= 1 && api.requestsFor(2).every((r) => r.status === 200));
    const m = await scrape(server.port);
    assert.equal(value(m, `${M}api_rate_limit_remaining`), 17);
    assert.equal(value(m, `${M}api_requests_total`, { status: '200' }), api.requests.length);
  } finally {
    await server.close();
    await api.close();
    await rm(dir, { recursive: true, force: true });
  }

  // The simulator enforcing 50 requests a minute counts every request in its window and announces
  // what is left on each answer: after N requests, 50 − N.
  const sim = createSimulator({ events: 1200, seed: 76, rateLimit: { requests: 50, windowMs: 60_000 } });
  await sim.start();
  const dir2 = await tempDir();
  const metrics2 = createMetrics({ defaultMetrics: false });
  const server2 = await serve(metrics2);
  try {
    await runPipeline(libOptions(sim, dir2), { metrics: metrics2 });
    const m = await scrape(server2.port);
    assert.ok(sim.stats.requests >= 4, `${sim.stats.requests} requests`);
    assert.equal(sim.stats.byStatus['429'], undefined);
    assert.equal(value(m, `${M}api_rate_limit_remaining`), 50 - sim.stats.requests);
  } finally {
    await server2.close();
    await sim.close();
    await rm(dir2, { recursive: true, force: true });
  }
});

test('api_retries_total counts each retry by cause: rate_limit, network, malformed, timeout, server_error, invalid_cursor', { timeout: 60_000 }, async () => {
  // slowMs above requestTimeoutMs: a `slow` answer is a timeout.
  const sim = createSimulator({ events: 1200, seed: 77, faults: { slowMs: 3000 } });
  await sim.start();
  const dir = await tempDir();
  const metrics = createMetrics({ defaultMetrics: false });
  const server = await serve(metrics);
  try {
    // The first page is answered with each of these in turn, then well: a 429 with Retry-After,
    // a connection reset mid-body (twice), a JSON body cut short, an HTML login page with status
    // 200, an answer slower than the request timeout, and a 500.
    sim.failNextRequests(['429-retry-after', 'reset', 'truncated', 'html', 'slow', '500', 'reset']);
    const result = await runPipeline(libOptions(sim, dir, { requestTimeoutMs: 1500 }), { metrics });
    assert.equal(result.fetched, sim.summary().totalRecords);
    assert.deepEqual(sim.stats.faults, { '429-retry-after': 1, reset: 2, truncated: 1, html: 1, slow: 1, '500': 1 });
    const m = await scrape(server.port);
    assert.deepEqual(byLabels(m, `${M}api_retries_total`, 'cause'), { rate_limit: 1, network: 2, malformed: 2, timeout: 1, server_error: 1 });
    // The requests behind them: a reset, the cut body and the HTML page came with status 200; the
    // timed-out one never had an answer (status 0).
    const answered200 = sim.stats.log.filter((e) => e.status === 200 && e.fault !== 'slow').length;
    assert.deepEqual(byLabels(m, `${M}api_requests_total`, 'status'), { '0': 1, '200': answered200, '429': 1, '500': 1 });

    // A saved cursor the API no longer accepts (400): the next run falls back to processedAt
    // minus the overlap, and counts one retry with cause invalid_cursor.
    sim.invalidateCursors();
    const again = createMetrics({ defaultMetrics: false });
    await runPipeline(libOptions(sim, dir), { metrics: again });
    const m2 = parseExposition(await again.registry.metrics());
    assert.deepEqual(byLabels(m2, `${M}api_retries_total`, 'cause'), { invalid_cursor: 1 });
    assert.equal(value(m2, `${M}api_requests_total`, { status: '400' }), 1);
  } finally {
    await server.close();
    await sim.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a 429 counts api_rate_limit_waits_total{reason="429"} and the seconds its hint asked for, and the run really waits them', { timeout: 60_000 }, async () => {
  // Each refusal asks for 1 s: by Retry-After, by X-Retry-After, and by X-RateLimit-Reset (at
  // millisecond precision, so the wait is the 1 s floor, not the rest of a minute).
  const sim = createSimulator({ events: 700, seed: 78, resetPrecision: 'millisecond', faults: { retryAfterSeconds: 1 } });
  await sim.start();
  const dir = await tempDir();
  const metrics = createMetrics({ defaultMetrics: false });
  const server = await serve(metrics);
  try {
    sim.failNextRequests(['429-retry-after', '429-x-retry-after', '429-reset']);
    const started = Date.now();
    const result = await runPipeline(libOptions(sim, dir), { metrics });
    const took = Date.now() - started;
    assert.equal(result.fetched, sim.summary().totalRecords);
    assert.deepEqual(sim.stats.faults, { '429-retry-after': 1, '429-x-retry-after': 1, '429-reset': 1 });
    const m = await scrape(server.port);
    // Only 429 waits: no budget of our own, so nothing was paced.
    assert.deepEqual(byLabels(m, `${M}api_rate_limit_waits_total`, 'reason'), { '429': 3 });
    assert.deepEqual(byLabels(m, `${M}api_rate_limit_wait_seconds_total`, 'reason'), { '429': 3 });
    assert.ok(took >= 2990, `the run took ${took} ms: it did not wait the 3 s it counted`);
    assert.deepEqual(byLabels(m, `${M}api_retries_total`, 'cause'), { rate_limit: 3 });
    assert.equal(value(m, `${M}api_requests_total`, { status: '429' }), 3);
    // The refusals carried X-RateLimit-Remaining: 0; the simulator's 200s (no enforced limit)
    // carry none, so 0 is the last value the API sent.
    assert.equal(value(m, `${M}api_rate_limit_remaining`), 0);
  } finally {
    await server.close();
    await sim.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('/readyz answers 503 and ready is 0 while the API holds the first page; 200 once it arrives', { timeout: 60_000 }, async () => {
  // The first request is answered only after 4 s.
  const sim = createSimulator({ events: 300, seed: 79, faults: { slowMs: 4000 } });
  await sim.start();
  sim.failNextRequests(['slow']);
  const dir = await tempDir();
  const port = await freePort();
  const cli = startCli(
    ['run', '--org-id', sim.orgId, '--api-url', sim.url, '--from', '2000-01-01', '--out-dir', join(dir, 'out'), '--state', join(dir, 'state.json'),
      '--metrics-port', String(port), '--metrics-host', '127.0.0.1', '--rate-limit', '0', '--interval', '1s', '--log-format', 'json'],
    { ATLASSIAN_API_KEY: sim.apiKey },
  );
  try {
    await cli.waitFor(/"msg":"metrics server listening"/);
    // The first request has reached the API, which is holding it.
    await until('the first API request', () => sim.stats.requests >= 1, 20_000);
    const readyz = await get(port, '/readyz');
    const m = await scrape(port);
    const healthz = await get(port, '/healthz');
    assert.equal(sim.stats.log.length, 0, 'the API answered before the scrapes: they prove nothing');
    assert.deepEqual(readyz, { status: 503, text: 'not ready: no API page fetched yet\n' });
    assert.equal(value(m, `${M}ready`), 0);
    assert.equal(value(m, `${M}last_successful_poll_timestamp_seconds`), 0);
    assert.deepEqual(byLabels(m, `${M}api_requests_total`, 'status'), {});
    assert.deepEqual(healthz, { status: 200, text: 'ok\n' }, '/healthz is about the process');

    await until('/readyz 200', async () => (await get(port, '/readyz')).status === 200);
    assert.equal(sim.stats.log[0]?.fault, 'slow');
    const after = await scrape(port);
    assert.equal(value(after, `${M}ready`), 1);
    assert.ok(value(after, `${M}last_successful_poll_timestamp_seconds`)! > 0);
  } finally {
    cli.child.kill('SIGTERM');
    const r = await cli.result;
    await sim.close();
    await rm(dir, { recursive: true, force: true });
    assert.equal(r.code, 0, r.stderr.slice(-2000));
  }
});

// Events over 6 hours: the first page crosses hours, so each rebuilt pipeline must complete an
// object (and fails to) before it reaches the end of its poll. Events within one hour: the poll
// ends with its events still in an open object, which fails only when its age closes it.
for (const shape of [
  { name: 'events over 6 hours', sim: { spanMs: 6 * 3_600_000 }, maxObjectAgeMs: undefined },
  { name: 'events within one hour', sim: { spanMs: 10 * 60_000, now: Date.parse('2026-03-02T12:30:00.000Z') }, maxObjectAgeMs: 1500 },
]) {
test(`a poller whose S3 writes keep failing is not ready though pages keep arriving (${shape.name}); errors_total{stage="sink"} counts each rebuild`, { skip: s3Skip(), timeout: 120_000 }, async () => {
  const sim = createSimulator({ events: 600, seed: 80, ...shape.sim });
  await sim.start();
  const proxy = await startS3FaultProxy();
  const direct = testS3Client();
  const bucket = await createTestBucket(direct);
  const client = createS3Client({ endpoint: proxy.url, forcePathStyle: true, maxAttempts: 2 });
  const dir = await tempDir();
  const metrics = createMetrics({ defaultMetrics: false });
  const intervalMs = 30_000;
  // As the CLI sets it: pages are "recent" for 60 s, far longer than this test's failing phase,
  // so a not-ready answer in it is the sink's doing, not stale pages.
  metrics.health.readyWithinMs = 2 * intervalMs;
  const server = await serve(metrics);
  const logger = recordingLogger();
  const restarts = (): number => logger.lines.filter((l) => l.msg === RESTART).length;
  // Objects fail; the start-up check (which starts and aborts an upload) is let through.
  for (const op of ['PutObject', 'CreateMultipartUpload', 'UploadPart'] as const) proxy.failAlways(op, 'InternalError', (r) => !isWriteCheck(r));
  const stop = new AbortController();
  const abort = new AbortController();
  const run = runPipeline(
    libOptions(sim, dir, {
      follow: true, intervalMs, restartDelayMs: 250, zstdLevel: 1, signal: stop.signal, abortSignal: abort.signal,
      output: { kind: 's3', bucket, endpoint: proxy.url, forcePathStyle: true },
      ...(shape.maxObjectAgeMs === undefined ? {} : { maxObjectAgeMs: shape.maxObjectAgeMs }),
    }),
    { s3Client: client, metrics, logger },
  );
  run.catch(() => {});
  try {
    await until('the first rebuild', () => restarts() >= 1);
    const firstFailureMs = metrics.health.lastFailureMs!;
    assert.ok(firstFailureMs > 0);
    // From the first failure on, through two more rebuilds (each of which fetched pages), every
    // answer is "not ready".
    let scrapes = 0;
    let pageAfterFailure = false;
    while (restarts() < 3) {
      const readyz = await get(server.port, '/readyz');
      const m = await scrape(server.port);
      assert.equal(readyz.status, 503, `scrape ${scrapes} after ${restarts()} rebuild(s)`);
      assert.match(readyz.text, /^not ready: (S3 requests failing for \d+ s|nothing committed since the pipeline last failed)\n$/);
      assert.equal(value(m, `${M}ready`), 0);
      const lastPageMs = value(m, `${M}last_successful_poll_timestamp_seconds`)! * 1000;
      assert.ok(Date.now() - lastPageMs <= metrics.health.readyWithinMs, 'pages went stale: the test no longer isolates the sink');
      if (lastPageMs > firstFailureMs) pageAfterFailure = true;
      scrapes++;
      await sleep(50);
      if (Date.now() - firstFailureMs > 60_000) assert.fail('fewer than 3 rebuilds in a minute');
    }
    assert.ok(pageAfterFailure, `no scrape saw a page fetched after the first failure (${scrapes} scrapes)`);
    const failing = await scrape(server.port);
    const errors = byLabels(failing, `${M}errors_total`, 'stage', 'error_type');
    assert.deepEqual(Object.keys(errors), ['sink/ERR_SINK']);
    assert.ok(errors['sink/ERR_SINK']! >= 3);
    // Events or quarantine: whichever object's upload fails first, the other is aborted (not an error).
    assert.ok(value(failing, `${M}upload_errors_total`)! >= 3);
    assert.equal(value(failing, `${M}events_written_total`), 0);

    // S3 recovers: the next rebuild commits, and the pipeline is ready again.
    proxy.clear();
    await until('/readyz 200 after S3 recovered', async () => (await get(server.port, '/readyz')).status === 200);
    assert.equal(value(await scrape(server.port), `${M}ready`), 1);
    stop.abort();
    const result = await run;
    assert.equal(result.stopped, true);
    assert.ok(result.objects > 0);
    const m = await scrape(server.port);
    // One count per rebuild, none for the stop.
    assert.deepEqual(byLabels(m, `${M}errors_total`, 'stage', 'error_type'), { 'sink/ERR_SINK': restarts() });
  } finally {
    abort.abort();
    await run.catch(() => {});
    await server.close();
    client.destroy();
    await proxy.close();
    await sim.close();
    await emptyAndDeleteBucket(direct, bucket);
    direct.destroy();
    await rm(dir, { recursive: true, force: true });
  }
});
}

test('errors_total{stage="source",error_type="ERR_API"} counts a poller rebuilt after the API kept failing; a 401 ends the run uncounted', { timeout: 60_000 }, async () => {
  const sim = createSimulator({ events: 300, seed: 81 });
  await sim.start();
  const dir = await tempDir();
  const dir2 = await tempDir();
  const metrics = createMetrics({ defaultMetrics: false });
  metrics.health.readyWithinMs = 60_000;
  const server = await serve(metrics);
  assert.deepEqual(byLabels(await scrape(server.port), `${M}errors_total`, 'stage', 'error_type'), {});
  const logger = recordingLogger();
  const stop = new AbortController();
  // maxRetries 1: a 500 and then a 503 end the first pipeline with ApiError.
  sim.failNextRequests(['500', '503']);
  const run = runPipeline(libOptions(sim, dir, { follow: true, intervalMs: 30_000, maxRetries: 1, restartDelayMs: 200, signal: stop.signal }), { metrics, logger });
  run.catch(() => {});
  try {
    // Ready only once the rebuilt pipeline has fetched a page and finished a poll.
    await until('/readyz 200', async () => (await get(server.port, '/readyz')).status === 200);
    const m = await scrape(server.port);
    assert.deepEqual(byLabels(m, `${M}errors_total`, 'stage', 'error_type'), { 'source/ERR_API': 1 });
    assert.equal(logger.lines.filter((l) => l.msg === RESTART).length, 1);
    assert.deepEqual(byLabels(m, `${M}api_retries_total`, 'cause'), { server_error: 1 });
    assert.deepEqual(byLabels(m, `${M}api_requests_total`, 'status'), { '200': sim.stats.byStatus['200']!, '500': 1, '503': 1 });
    assert.equal(value(m, `${M}ready`), 1);
    stop.abort();
    const result = await run;
    assert.equal(result.fetched, sim.summary().totalRecords);

    // A revoked key: fatal, not rebuilt, so not counted in errors_total even when following.
    const fatal = createMetrics({ defaultMetrics: false });
    await assert.rejects(runPipeline(libOptions(sim, dir2, { apiKey: 'revoked-key', follow: true, restartDelayMs: 200 }), { metrics: fatal }), AuthError);
    const m2 = parseExposition(await fatal.registry.metrics());
    assert.deepEqual(byLabels(m2, `${M}errors_total`, 'stage', 'error_type'), {});
    assert.deepEqual(byLabels(m2, `${M}api_requests_total`, 'status'), { '401': 1 });
    assert.deepEqual(byLabels(m2, `${M}api_retries_total`, 'cause'), {});
    assert.equal(value(m2, `${M}ready`), 0);
  } finally {
    stop.abort();
    await run.catch(() => {});
    await server.close();
    await sim.close();
    await rm(dir, { recursive: true, force: true });
    await rm(dir2, { recursive: true, force: true });
  }
});
