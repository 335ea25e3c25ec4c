/**
 * The sink fails fast and tells the truth: a sink that can never write stops the run before the
 * first API request, in one line naming the bucket or endpoint; an S3 that stalls mid-run is
 * retried, logged, counted and shown in /readyz, and the run completes once S3 answers again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { createServer as createNetServer, type AddressInfo, type Server } from 'node:net';
import { createSimulator, type Simulator } from '../../src/simulator/index.js';
import { createMetrics } from '../../src/metrics.js';
import { startMetricsServer } from '../../src/metrics-server.js';
import { runPipeline } from '../../src/pipeline.js';
import type { Logger } from '../../src/log.js';
import { runCli, startCli, summaryOf } from '../helpers/cli.js';
import { loadState } from '../../src/checkpoint.js';
import { tempDir } from '../helpers/fs.js';
import { parseExposition, value } from '../helpers/exposition.js';
import { until } from '../helpers/proc.js';
import { createTestBucket, emptyAndDeleteBucket, listPendingUploads, s3TestEnv, testS3Client } from '../helpers/s3.js';
import { s3Skip } from '../helpers/require-s3.js';
import { isWriteCheck, startS3FaultProxy } from '../helpers/s3-fault-proxy.js';
import { assertExactlyOnce, readBucket } from '../helpers/verify.js';

const P = 'check/audit/';
const Q = 'check/quarantine/';

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

test('a sink that can never write stops the run before the first API request, with one line naming the bucket or endpoint and what to fix (exit 7)', { skip: s3Skip(), timeout: 240_000 }, async () => {
  // Regression: the bucket was first tried when the first object was written. A closed port, a
  // missing bucket or a wrong secret key ended with exit 7 after 2–3 pages, among "could not
  // abort" lines; an endpoint that never answers hung the run, silent, for more than 5 minutes.
  const sim: Simulator = createSimulator({ events: 2000, seed: 51 });
  await sim.start();
  const client = testS3Client();
  const bucket = await createTestBucket(client);
  const dir = await tempDir();
  const closed = createNetServer();
  const closedPort = await listen(closed);
  await new Promise<void>((r) => closed.close(() => r()));
  const stalled = createNetServer((socket) => socket.on('data', () => {}));
  const stalledPort = await listen(stalled);
  const env = s3TestEnv();
  const endpoint = env['S3_ENDPOINT']!;
  const notAFile = join(dir, 'a-file');
  await writeFile(notAFile, 'not a directory');
  const run = (name: string, output: string[], extraEnv: Record<string, string> = {}, once = true): ReturnType<typeof runCli> =>
    runCli(['run', ...(once ? ['--once'] : ['--interval', '1s']), '--org-id', sim.orgId, '--api-url', sim.url, '--from', '2000-01-01', '--prefix', P, '--quarantine-prefix', Q,
      '--state', join(dir, `${name}.json`), '--metrics-port', '0', '--rate-limit', '0', '--log-format', 'json', ...output], { ATLASSIAN_API_KEY: sim.apiKey, ...env, ...extraEnv });
  const s3 = (at: string, b = bucket): string[] => ['--bucket', b, '--s3-endpoint', at, '--s3-force-path-style'];
  // A policy without s3:PutObject under the prefix: S3 answers the check's CreateMultipartUpload 403.
  const proxy = await startS3FaultProxy();
  proxy.failAlways('CreateMultipartUpload', 'AccessDenied');
  const cases: Array<[string, string[], Record<string, string>, boolean, RegExp]> = [
    ['closed-port', s3(`http://127.0.0.1:${closedPort}`), {}, true, new RegExp(`cannot reach S3 at http://127\\.0\\.0\\.1:${closedPort} \\(.*ECONNREFUSED.*\\): check --s3-endpoint and the network$`)],
    ['no-put-permission', s3(proxy.url), {}, true, new RegExp(`S3 at ${proxy.url.replace(/[.]/g, '\\.')} denied writing under s3://${bucket}/(${P}|${Q}) \\(AccessDenied, HTTP 403: Access Denied\\): grant s3:PutObject on arn:aws:s3:::${bucket}/\\1\\*`)],
    ['no-bucket', s3(endpoint, 'no-such-bucket-0451'), {}, true, new RegExp(`bucket no-such-bucket-0451 does not exist at ${endpoint.replace(/[.]/g, '\\.')}: check --bucket`)],
    ['wrong-secret', s3(endpoint), { AWS_SECRET_ACCESS_KEY: 'wrong-secret-key-000000000000000000000000' }, true, /rejected the credentials \(SignatureDoesNotMatch\): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/],
    ['stalled', [...s3(`http://127.0.0.1:${stalledPort}`), '--s3-timeout', '1s'], {}, true, new RegExp(`(S3 at http://127\\.0\\.0\\.1:${stalledPort} stopped answering \\(TimeoutError|no answer from S3 at http://127\\.0\\.0\\.1:${stalledPort} within 20 s)`)],
    ['poller-no-bucket', s3(endpoint, 'no-such-bucket-0452'), {}, false, /bucket no-such-bucket-0452 does not exist/],
    ['local-not-a-dir', ['--out-dir', join(notAFile, 'out')], {}, true, /cannot write to the output directory .*a-file\/out \(--out-dir\): (ENOTDIR|EEXIST)/],
  ];
  try {
    for (const [name, output, extraEnv, once, re] of cases) {
      sim.resetStats();
      const r = await run(name, output, extraEnv, once);
      assert.equal(r.code, 7, `${name}: ${r.stderr}`);
      const last = r.stderr.trim().split('\n').at(-1)!;
      assert.match(last, /^atlassian-audit-pipeline: /, name);
      assert.match(last, re, name);
      assert.equal(sim.stats.requests, 0, `${name}: the API was asked before the sink was known to work`);
      assert.doesNotMatch(r.stderr, /could not abort|upload aborted/, name);
      assert.ok(!r.stderr.includes('wrong-secret-key-0000'), 'the secret was printed');
    }
    // The check leaves nothing behind: no object, no pending upload.
    assert.deepEqual(await listPendingUploads(client, bucket), []);
  } finally {
    stalled.close();
    await proxy.close();
    await sim.close();
    await emptyAndDeleteBucket(client, bucket);
    client.destroy();
  }
});

test('S3 that stops answering mid-run: each timed-out request is retried, logged and counted, /readyz says why it is not ready; when S3 answers again the run completes exactly once', { skip: s3Skip(), timeout: 240_000 }, async () => {
  const sim = createSimulator({ events: 3000, seed: 52, malformedRate: 0.01 });
  await sim.start();
  const proxy = await startS3FaultProxy();
  const direct = testS3Client();
  const bucket = await createTestBucket(direct);
  const dir = await tempDir();
  const metrics = createMetrics({ defaultMetrics: false });
  metrics.health.readyWithinMs = 600_000;
  const server = await startMetricsServer({ port: 0, host: '127.0.0.1', registry: metrics.registry, ready: metrics.isReady, notReadyReason: metrics.notReadyReason });
  const retries: Array<Record<string, unknown>> = [];
  const logger: Logger = { debug() {}, info() {}, error() {}, warn: (msg, fields) => { if (msg === 'S3 request failed; retrying') retries.push(fields!); } };
  const readyz = async (): Promise<{ status: number; text: string }> => {
    const res = await fetch(`http://127.0.0.1:${server.port}/readyz`);
    return { status: res.status, text: await res.text() };
  };
  // The check passes; then every object upload is held, unanswered.
  proxy.blackhole('*', (r) => !isWriteCheck(r));
  const stop = new AbortController();
  const run = runPipeline(
    {
      orgId: sim.orgId, apiKey: sim.apiKey, apiUrl: sim.url, from: 0, statePath: join(dir, 'state.json'), prefix: P, quarantinePrefix: Q, rateLimit: false,
      follow: true, intervalMs: 60_000, restartDelayMs: 200, signal: stop.signal,
      output: { kind: 's3', bucket, endpoint: proxy.url, forcePathStyle: true, timeoutMs: 2000 },
    },
    { metrics, logger },
  );
  run.catch(() => {});
  try {
    await until(() => retries.some((r) => r['cause'] === 'timeout'), 'a timed-out S3 request retried');
    const r = retries.find((x) => x['cause'] === 'timeout')!;
    assert.equal(typeof r['detail'], 'string');
    assert.match(r['detail'] as string, /TimeoutError/);
    assert.ok(Number.isInteger(r['attempt']) && Number.isInteger(r['waitMs']), JSON.stringify(r));
    const notReady = await readyz();
    assert.equal(notReady.status, 503);
    assert.match(notReady.text, /^not ready: S3 requests failing for \d+ s\n$/);
    const m = parseExposition(await metrics.registry.metrics());
    assert.ok((value(m, 'atlassian_audit_s3_retries_total', { cause: 'timeout' }) ?? 0) >= 1);
    assert.equal(value(m, 'atlassian_audit_ready'), 0);
    // S3 answers again.
    proxy.release('forward');
    await until(async () => (await readyz()).status === 200 && metrics.health.written === sim.truth().valid.size, 'ready, with every event written');
    stop.abort();
    const result = await run;
    assert.equal(result.events, sim.truth().valid.size);
    await assertExactlyOnce(direct, bucket, sim.truth(), await readBucket(direct, bucket, P, Q));
  } finally {
    stop.abort();
    await run.catch(() => {});
    await server.close();
    await proxy.close();
    await sim.close();
    await emptyAndDeleteBucket(direct, bucket);
    direct.destroy();
  }
});

test('SIGTERM during the start-up check (S3 not answering) stops the run at once: exit 0, recorded as stopped, no API request', { timeout: 120_000 }, async () => {
  const sim = createSimulator({ events: 200, seed: 53 });
  await sim.start();
  let connections = 0;
  const stalled = createNetServer((socket) => {
    connections++;
    socket.on('data', () => {});
  });
  const port = await listen(stalled);
  const dir = await tempDir();
  const state = join(dir, 'state.json');
  try {
    const run = startCli(['run', '--once', '--org-id', sim.orgId, '--api-url', sim.url, '--bucket', 'b', '--s3-endpoint', `http://127.0.0.1:${port}`, '--s3-force-path-style',
      '--state', state, '--metrics-port', '0', '--log-format', 'json'], { ATLASSIAN_API_KEY: sim.apiKey, AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 'secret-0000000000', AWS_REGION: 'us-east-1' });
    // The check's first request is at the endpoint, which holds it (the check's own limit is 20 s).
    await until(() => connections > 0, 'the check\'s request at the endpoint');
    run.child.kill('SIGTERM');
    const r = await run.result;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(summaryOf(r.stdout).stopped, true);
    assert.equal((await loadState(state))!.lastRun?.outcome, 'stopped');
    assert.equal(sim.stats.requests, 0, 'the API was asked after a stop');
  } finally {
    stalled.close();
    await sim.close();
  }
});
