import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { loadState } from '../../src/checkpoint.js';
import { createSimulator } from '../../src/simulator/index.js';
import { runCli, startCli, summaryOf } from '../helpers/cli.js';
import { tempDir } from '../helpers/fs.js';
import { createTestBucket, emptyAndDeleteBucket, listPendingUploads, s3TestEnv, testS3Client } from '../helpers/s3.js';
import { s3Skip } from '../helpers/require-s3.js';
import { isWriteCheck, startS3FaultProxy } from '../helpers/s3-fault-proxy.js';
import { assertExactlyOnce, readBucket } from '../helpers/verify.js';

const P = 'stop/audit/';
const Q = 'stop/quarantine/';

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  test(`${sig} mid-run: objects in flight are completed, the checkpoint is saved, exit 0; the next run adds the rest exactly once`, { skip: s3Skip(), timeout: 120_000 }, async () => {
    const sim = createSimulator({ events: 20_000, seed: 31, malformedRate: 0.01 });
    await sim.start();
    const client = testS3Client();
    const bucket = await createTestBucket(client);
    const dir = await tempDir();
    const state = join(dir, 'state.json');
    // Paced at 20 pages/s, so the signal lands in the middle of the 40-page walk.
    const args = ['run', '--once', '--org-id', sim.orgId, '--api-url', sim.url, '--from', '2000-01-01', '--bucket', bucket, '--prefix', P, '--quarantine-prefix', Q,
      '--s3-endpoint', process.env['S3_ENDPOINT']!, '--s3-force-path-style', '--state', state, '--metrics-port', '0', '--rate-limit', '20/1s', '--log-format', 'json'];
    const env = { ATLASSIAN_API_KEY: sim.apiKey, ...s3TestEnv() };
    try {
      const run = startCli(args, env);
      while (sim.stats.requests < 12) await new Promise((r) => setTimeout(r, 20));
      run.child.kill(sig);
      const r = await run.result;
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`${sig}: finishing objects in flight`));
      const saved = (await loadState(state))!;
      assert.equal(saved.lastRun?.outcome, 'stopped');
      assert.deepEqual(saved.inflight, {}, 'objects in flight were left unfinished');
      assert.ok(saved.totals.events > 0 && saved.totals.events < sim.truth().valid.size, `stopped after ${saved.totals.events} events`);
      assert.equal(existsSync(`${state}.lock`), false, 'the lock was not released');
      // What the stopped run wrote is complete and consistent with its checkpoint.
      const part = await readBucket(client, bucket, P, Q);
      assert.equal(part.events.length, saved.totals.events);
      const rest = await runCli(args, env);
      assert.equal(rest.code, 0, rest.stderr);
      await assertExactlyOnce(client, bucket, sim.truth(), await readBucket(client, bucket, P, Q));
    } finally {
      await sim.close();
      await emptyAndDeleteBucket(client, bucket);
      client.destroy();
    }
  });
}

test('SIGTERM while S3 does not answer: in-flight objects are aborted after --stop-timeout, exit 0 with a consistent checkpoint; nothing is lost', { skip: s3Skip(), timeout: 120_000 }, async () => {
  const sim = createSimulator({ events: 8000, seed: 32, malformedRate: 0.01 });
  await sim.start();
  const proxy = await startS3FaultProxy();
  const client = testS3Client();
  const bucket = await createTestBucket(client);
  const dir = await tempDir();
  const state = join(dir, 'state.json');
  const args = ['run', '--once', '--org-id', sim.orgId, '--api-url', sim.url, '--from', '2000-01-01', '--bucket', bucket, '--prefix', P, '--quarantine-prefix', Q,
    '--s3-endpoint', proxy.url, '--s3-force-path-style', '--state', state, '--metrics-port', '0', '--rate-limit', '0', '--stop-timeout', '2s', '--log-format', 'json'];
  const env = { ATLASSIAN_API_KEY: sim.apiKey, ...s3TestEnv() };
  try {
    proxy.blackhole('*', (r) => !isWriteCheck(r));
    const run = startCli(args, env);
    // The first object's upload is being held: the pipeline is stalled on S3.
    while (proxy.held < 1) await new Promise((r) => setTimeout(r, 20));
    const requestsWhenStalled = sim.stats.requests;
    run.child.kill('SIGTERM');
    const r = await run.result;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /did not complete in time; aborting them/);
    assert.equal(summaryOf(r.stdout).abandoned, true);
    assert.match(summaryOf(r.stdout).note!, /stopped before objects in flight could complete/);
    assert.ok(sim.stats.requests <= requestsWhenStalled + 10, 'the source kept fetching while S3 was stalled');
    const saved = (await loadState(state))!;
    assert.equal(saved.lastRun?.outcome, 'stopped');
    assert.equal(saved.totals.events, 0, 'the checkpoint moved past events that are in no complete object');
    assert.equal(existsSync(`${state}.lock`), false);
    // S3 comes back: the next run cleans up what the stopped one left and writes everything once.
    proxy.release('reset');
    const rest = await runCli(args, env);
    assert.equal(rest.code, 0, rest.stderr);
    await assertExactlyOnce(client, bucket, sim.truth(), await readBucket(client, bucket, P, Q));
    assert.deepEqual(await listPendingUploads(client, bucket), []);
  } finally {
    await sim.close();
    await proxy.close();
    await emptyAndDeleteBucket(client, bucket);
    client.destroy();
  }
});
