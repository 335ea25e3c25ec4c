import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { runPipeline, type PipelineOptions } from '../src/pipeline.js';
import { createSimulator } from '../src/simulator/index.js';
import { StateError } from '../src/errors.js';
import { loadState } from '../src/checkpoint.js';
import { DropoffAlarm, DROPOFF_MIN_MS } from '../src/dropoff.js';
import { createMetrics } from '../src/metrics.js';
import { listFiles, readZstdFile, readZstdText, tempDir } from './helpers/fs.js';
import { until } from './helpers/proc.js';

async function eventIds(dir: string): Promise<string[]> {
  const ids: string[] = [];
  for (const f of (await listFiles(dir)).filter((x) => x.startsWith('atlassian/audit/'))) {
    for (const e of await readZstdFile(join(dir, f))) ids.push((e as { id: string }).id);
  }
  return ids;
}

test('following: new events are picked up on the next poll, an API outage restarts from the checkpoint, stop saves', async () => {
  const sim = createSimulator({ events: 800, seed: 51 });
  await sim.start();
  const dir = await tempDir();
  const stop = new AbortController();
  try {
    const options: PipelineOptions = {
      orgId: sim.orgId, apiKey: sim.apiKey, apiUrl: sim.url, from: 0, follow: true, intervalMs: 200, rateLimit: false,
      statePath: join(dir, 'state.json'), output: { kind: 'local', dir: join(dir, 'out') },
      maxRetries: 1, backoffBaseMs: 1, backoffCapMs: 2, restartDelayMs: 50, maxObjectAgeMs: 100, signal: stop.signal,
    };
    const run = runPipeline(options);
    await until(async () => (await eventIds(join(dir, 'out'))).length === sim.truth().valid.size, 'every event written');
    // An outage longer than the retries: the pipeline fails, waits, rebuilds from the checkpoint.
    sim.failNextRequests(['503', '503', '503', '503']);
    sim.append(300);
    await until(async () => (await eventIds(join(dir, 'out'))).length === sim.truth().valid.size, 'every event written again');
    sim.append(200, { late: true });
    await until(async () => (await eventIds(join(dir, 'out'))).length === sim.truth().valid.size, 'every event written again');
    stop.abort();
    const result = await run;
    assert.equal(result.stopped, true);
    const ids = await eventIds(join(dir, 'out'));
    assert.equal(new Set(ids).size, ids.length, 'duplicates');
    assert.deepEqual(new Set(ids), new Set(sim.truth().valid.keys()));
    assert.equal(result.events, ids.length);
    assert.ok(sim.stats.byStatus['503']! >= 4, 'the outage did not happen');
  } finally {
    stop.abort();
    await sim.close();
  }
});

test('a corrupt or truncated state file is a clear error, never a silent restart from zero', async () => {
  const dir = await tempDir();
  const statePath = join(dir, 'state.json');
  const options: PipelineOptions = { orgId: 'o', apiKey: 'k', apiUrl: 'http://127.0.0.1:9', statePath, output: { kind: 'local', dir } };
  for (const content of ['{"version":1,"stateId":"abcd', '', '[]', '{"version":1}']) {
    await writeFile(statePath, content);
    await assert.rejects(runPipeline(options), (err: unknown) => {
      assert.ok(err instanceof StateError);
      assert.match((err as Error).message, /unusable.*refusing to start again from zero/);
      return true;
    });
  }
});

test('pages processed inline and on worker threads make the same objects, byte for byte', async () => {
  const sim = createSimulator({ events: 3000, seed: 52, now: Date.parse('2026-03-02T12:00:00.000Z') });
  await sim.start();
  const dir = await tempDir();
  try {
    const contents: [string, string][][] = [];
    for (const pageWorkers of [0, 2]) {
      const out = join(dir, `out-${pageWorkers}`);
      const result = await runPipeline({
        orgId: sim.orgId,
        apiKey: sim.apiKey,
        apiUrl: sim.url,
        from: 0,
        statePath: join(dir, `state-${pageWorkers}.json`),
        output: { kind: 'local', dir: out },
        rateLimit: false,
        pageWorkers,
      });
      const truth = sim.summary();
      assert.deepEqual([result.events, result.quarantined, result.duplicates], [truth.valid, truth.invalid, truth.duplicates], `pageWorkers ${pageWorkers}`);
      // Object keys carry a per-run id before their sequence number; everything else must match.
      const files: [string, string][] = [];
      for (const f of (await listFiles(out)).sort()) files.push([f.replace(/[0-9a-f]{8}-(\d+\.json\.zst)$/, "$1"), await readZstdText(join(out, f))]);
      contents.push(files);
    }
    assert.ok(contents[0]!.length > 1);
    assert.deepEqual(contents[1], contents[0]);
  } finally {
    await sim.close();
  }
});

test('after a restart the drop-off alarm measures quiet time from the last events write the checkpoint recorded', async () => {
  // Events processed by the API hours ago (a backfill): their processedAt is no measure of when
  // they were written.
  const sim = createSimulator({ events: 600, seed: 53, malformedRate: 0.05, now: Date.now() - 6 * 3_600_000 });
  await sim.start();
  const dir = await tempDir();
  try {
    const options: PipelineOptions = {
      orgId: sim.orgId, apiKey: sim.apiKey, apiUrl: sim.url, from: 0, rateLimit: false,
      statePath: join(dir, 'state.json'), output: { kind: 'local', dir: join(dir, 'out') },
    };
    const before = Date.now();
    await runPipeline(options);
    const state = (await loadState(options.statePath))!;
    const wrote = Date.parse(state.lastEventsWrittenAt!);
    assert.ok(wrote >= before && wrote <= Date.now(), state.lastEventsWrittenAt);
    assert.ok(Date.parse(state.lastProcessedAt!) < before - 5 * 3_600_000, 'the events were processed hours ago');
    // The second run finds nothing new: nothing is written, and the alarm's stand-in for the last
    // write is the checkpoint's record of it, not the events' processedAt.
    const metrics = createMetrics({ defaultMetrics: false });
    const again = await runPipeline(options, { metrics });
    assert.equal(again.events, 0);
    assert.equal(metrics.health.lastWrittenMs, undefined);
    assert.equal(metrics.health.resumedLastWriteMs, wrote);
    const at = (ms: number): DropoffAlarm => new DropoffAlarm({ afterMs: DROPOFF_MIN_MS }, { metrics, clock: { now: () => ms, sleep: async () => {} } });
    assert.equal(at(wrote + DROPOFF_MIN_MS - 1000).check(), 0, 'not yet quiet for 15 min since the write');
    assert.equal(at(wrote + DROPOFF_MIN_MS).check(), 1);
  } finally {
    await sim.close();
  }
});
