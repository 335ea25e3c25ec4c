/**
 * The CLI under a terminal or a process supervisor: signals sent to the whole process group
 * (Ctrl-C, systemd's KillMode=control-group, `kill -- -PGID`, GNU timeout), and repeats of one
 * signal a few milliseconds apart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { loadState } from '../../src/checkpoint.js';
import { createSimulator } from '../../src/simulator/index.js';
import { runCli, startCli, summaryOf } from '../helpers/cli.js';
import { tempDir } from '../helpers/fs.js';
import { childProcesses, until } from '../helpers/proc.js';
import { createTestBucket, emptyAndDeleteBucket, listPendingUploads, s3TestEnv, testS3Client } from '../helpers/s3.js';
import { s3Skip } from '../helpers/require-s3.js';
import { startS3FaultProxy } from '../helpers/s3-fault-proxy.js';
import { assertExactlyOnce, readBucket } from '../helpers/verify.js';

const P = 'group/audit/';
const Q = 'group/quarantine/';

/**
 * How a supervisor signals: `group` is a terminal's Ctrl-C, `kill -- -PGID`, GNU timeout, a
 * container init's group signal; `every process` is systemd's default KillMode=control-group, which
 * signals each process of the service's cgroup whatever its process group.
 */
type Route = 'group' | 'every process';

for (const [mode, sig, route] of [
  ['--once backfill', 'SIGTERM', 'group'], ['--once backfill', 'SIGINT', 'group'], ['poller', 'SIGTERM', 'group'], ['poller', 'SIGINT', 'group'],
  ['--once backfill', 'SIGTERM', 'every process'], ['poller', 'SIGTERM', 'every process'],
] as Array<[string, NodeJS.Signals, Route]>) {
  // Regression: zstd children were in the CLI's process group, so a group signal killed them
  // mid-object and the run ended with exit 7 "zstd exited non zero ... signal: SIGINT".
  test(`${mode} in a process group of its own, ${sig} to ${route === 'group' ? 'the whole group' : 'every process (systemd\'s control-group)'} while zstd compresses: objects complete, exit 0; the next --once run writes every event exactly once`, { skip: s3Skip(), timeout: 240_000 }, async () => {
    const sim = createSimulator({ events: 12_000, seed: 41, malformedRate: 0.01 });
    await sim.start();
    const client = testS3Client();
    const bucket = await createTestBucket(client);
    const dir = await tempDir();
    const state = join(dir, 'state.json');
    const common = ['--org-id', sim.orgId, '--api-url', sim.url, '--from', '2000-01-01', '--bucket', bucket, '--prefix', P, '--quarantine-prefix', Q,
      '--s3-endpoint', process.env['S3_ENDPOINT']!, '--s3-force-path-style', '--state', state, '--metrics-port', '0', '--log-format', 'json',
      // A generous stop timeout: what is tested is that the objects in flight complete.
      '--stop-timeout', '120s'];
    // Paced, so the signal lands in the middle of the 24-page walk.
    const args = mode === 'poller' ? ['run', ...common, '--interval', '1s', '--rate-limit', '8/1s'] : ['run', '--once', ...common, '--rate-limit', '8/1s'];
    const env = { ATLASSIAN_API_KEY: sim.apiKey, ...s3TestEnv() };
    try {
      const run = startCli(args, env, { ownGroup: true });
      const pid = run.child.pid!;
      // Objects are being compressed: a zstd child is running, and the walk is not over.
      await until(() => sim.stats.requests >= 4 && childProcesses(pid, 'zstd').length > 0, 'a zstd child of the CLI');
      if (route === 'group') process.kill(-pid, sig);
      else for (const p of [pid, ...childProcesses(pid, 'zstd')]) process.kill(p, sig);
      const r = await run.result;
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /zstd exited|aborting|upload aborted/);
      assert.deepEqual([summaryOf(r.stdout).stopped, summaryOf(r.stdout).abandoned], [true, false], 'the objects in flight were aborted');
      const saved = (await loadState(state))!;
      assert.equal(saved.lastRun?.outcome, 'stopped', JSON.stringify(saved.lastRun));
      assert.deepEqual(saved.inflight, {}, 'objects in flight were left unfinished');
      assert.ok(saved.totals.events > 0 && saved.totals.events < sim.truth().valid.size, `stopped after ${saved.totals.events} events`);
      assert.equal(existsSync(`${state}.lock`), false, 'the lock was not released');
      assert.equal((await readBucket(client, bucket, P, Q)).events.length, saved.totals.events);
      const rest = await runCli(['run', '--once', ...common, '--rate-limit', '0'], env);
      assert.equal(rest.code, 0, rest.stderr);
      await assertExactlyOnce(client, bucket, sim.truth(), await readBucket(client, bucket, P, Q));
    } finally {
      await sim.close();
      await emptyAndDeleteBucket(client, bucket);
      client.destroy();
    }
  });
}

test('SIGTERM to the process and then at once to its group (as GNU timeout sends it) is one stop, not "send again to abort"; a second signal a while later aborts with 130', { skip: s3Skip(), timeout: 240_000 }, async () => {
  const sim = createSimulator({ events: 4000, seed: 42 });
  await sim.start();
  const proxy = await startS3FaultProxy();
  const client = testS3Client();
  const bucket = await createTestBucket(client);
  const dir = await tempDir();
  const env = { ATLASSIAN_API_KEY: sim.apiKey, ...s3TestEnv() };
  const argsFor = (state: string): string[] => ['run', '--once', '--org-id', sim.orgId, '--api-url', sim.url, '--from', '2000-01-01', '--bucket', bucket, '--prefix', P,
    '--quarantine-prefix', Q, '--s3-endpoint', proxy.url, '--s3-force-path-style', '--state', state, '--metrics-port', '0', '--rate-limit', '0',
    '--stop-timeout', '10m', '--log-format', 'json'];
  try {
    // S3 holds every object body, so a stop has objects in flight to wait for.
    const holdBodies = (): void => {
      proxy.blackhole('PutObject');
      proxy.blackhole('UploadPart');
    };
    holdBodies();
    // 1. The same signal twice within milliseconds, by two routes: one graceful stop.
    const first = startCli(argsFor(join(dir, 'a.json')), env, { ownGroup: true });
    await until(() => proxy.held >= 1, 'an upload held by S3');
    process.kill(first.child.pid!, 'SIGTERM');
    // Two signals sent back to back can merge in the kernel into one; the second goes once the
    // CLI has taken the first, milliseconds later.
    await first.waitFor(/SIGTERM: finishing objects in flight/);
    process.kill(-first.child.pid!, 'SIGTERM');
    await first.waitFor(/stopping: completing objects in flight/);
    // Regression: the group's copy counted as the second signal and aborted (exit 130).
    proxy.release('forward');
    const r1 = await first.result;
    assert.equal(r1.code, 0, r1.stderr);
    assert.doesNotMatch(r1.stderr, /again: aborting/);
    assert.equal((await loadState(join(dir, 'a.json')))!.lastRun?.outcome, 'stopped');
    // 2. A second signal after the grace still aborts at once.
    holdBodies();
    const second = startCli(argsFor(join(dir, 'b.json')), env, { ownGroup: true });
    await until(() => proxy.held >= 1, 'an upload held by S3');
    process.kill(-second.child.pid!, 'SIGINT');
    await second.waitFor(/stopping: completing objects in flight/);
    // The grace is counted in the CLI from its first signal, which came before this line.
    await new Promise((r) => setTimeout(r, 1500));
    process.kill(-second.child.pid!, 'SIGINT');
    const r2 = await second.result;
    assert.equal(r2.code, 130, r2.stderr);
    assert.match(r2.stderr, /SIGINT again: aborting uploads in flight/);
  } finally {
    proxy.release('reset');
    await sim.close();
    await proxy.close();
    await listPendingUploads(client, bucket).catch(() => []);
    await emptyAndDeleteBucket(client, bucket);
    client.destroy();
  }
});
