/**
 * /metrics, /healthz and /readyz of a real `run` against the simulator: counters scraped during
 * and after the run equal the ground truth and what is in the complete objects; the exposition
 * parses; /readyz flips when the API fails and back when it recovers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { quarantineReasonClass } from '../../src/metrics.js';
import { createSimulator } from '../../src/simulator/index.js';
import { startCli } from '../helpers/cli.js';
import { parseExposition, value, type Family } from '../helpers/exposition.js';
import { listFiles, readZstdFile, readZstdText, tempDir } from '../helpers/fs.js';

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

test('/readyz and the ready gauge flip to not ready while the API returns 500s, and back when it recovers', { timeout: 120_000 }, async () => {
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
    await waitReady(200, 20_000);
    assert.equal(value(await scrape(port), 'atlassian_audit_ready'), 1);

    sim.setFaults({ rate5xx: 1 });
    await waitReady(503, 30_000);
    const during = await scrape(port);
    assert.equal(value(during, 'atlassian_audit_ready'), 0);
    assert.ok((value(during, 'atlassian_audit_api_retries_total', { cause: 'server_error' }) ?? 0) > 0);
    const fiveHundreds = ['500', '502', '503', '504'].reduce((a, s) => a + (value(during, 'atlassian_audit_api_requests_total', { status: s }) ?? 0), 0);
    assert.ok(fiveHundreds > 0);
    assert.equal((await get(port, '/healthz')).status, 200, '/healthz is about the process, not the API');

    sim.setFaults({});
    await waitReady(200, 90_000);
    assert.equal(value(await scrape(port), 'atlassian_audit_ready'), 1);
  } finally {
    cli.child.kill('SIGTERM');
    const r = await cli.result;
    await sim.close();
    assert.equal(r.code, 0, r.stderr.slice(-2000));
  }
});
