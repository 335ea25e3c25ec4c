import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { createSimulator, type FaultOptions } from '../../src/simulator/index.js';
import { startCli, runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/fs.js';
import { until } from '../helpers/proc.js';
import { createTestBucket, emptyAndDeleteBucket, s3TestEnv, testS3Client } from '../helpers/s3.js';
import { s3Skip } from '../helpers/require-s3.js';
import { startS3FaultProxy, type Fault } from '../helpers/s3-fault-proxy.js';
import { assertExactlyOnce, readBucket } from '../helpers/verify.js';

const P = 'crash/audit/';
const Q = 'crash/quarantine/';

/** mulberry32: the kill schedule and the S3 faults are reproducible from the seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const API_FAULTS: FaultOptions = { rate429: 0.04, retryAfterSeconds: 0, rate5xx: 0.06, rateReset: 0.03, rateTruncated: 0.03, rateHtml: 0.02, rateBadShape: 0.02 };
/** Each S3 request gets one of these with its probability (seeded), whatever the operation. */
const S3_FAULTS: Array<[Fault, number]> = [['SlowDown', 0.05], ['InternalError', 0.03], ['ServiceUnavailable', 0.03], ['reset', 0.02], ['lost-response', 0.02]];

test('SIGKILL again and again, with API and S3 faults on: every event in exactly one object, none missing, no pending upload', { skip: s3Skip(), timeout: 480_000 }, async () => {
  const seed = Number(process.env['CRASH_SEED'] ?? 7);
  const random = prng(seed);
  const s3Random = prng(seed ^ 0x5eed);
  // Reset times to the second: a minute-precision X-RateLimit-Reset would make a 429 wait up to a
  // minute, and the runs would spend most of their time waiting.
  const sim = createSimulator({ events: 60_000, seed, malformedRate: 0.01, duplicateRate: 0.005, lateRate: 0.05, spanMs: 5 * 3_600_000, faults: API_FAULTS, resetPrecision: 'second' });
  await sim.start();
  const proxy = await startS3FaultProxy();
  const faultsOn = (): void => {
    for (const [fault, p] of S3_FAULTS) proxy.failAlways('*', fault, (r) => r.op !== 'ListMultipartUploads' && s3Random() < p);
  };
  faultsOn();
  const client = testS3Client();
  const bucket = await createTestBucket(client);
  const dir = await tempDir();
  const state = join(dir, 'state.json');
  const args = ['run', '--once', '--org-id', sim.orgId, '--api-url', sim.url, '--from', '2000-01-01', '--bucket', bucket, '--prefix', P, '--quarantine-prefix', Q,
    '--s3-endpoint', proxy.url, '--s3-force-path-style', '--state', state, '--metrics-port', '0', '--rate-limit', '0',
    // Small objects: one commit every page or so, so kills land in every phase of an epoch.
    '--object-max-bytes', '16KiB', '--log-level', 'warn'];
  const env = { ATLASSIAN_API_KEY: sim.apiKey, ...s3TestEnv() };
  const kills: string[] = [];
  const apiFaults = (): number => Object.values(sim.stats.faults).reduce((a, b) => a + b, 0);
  const s3Faults = (): number => proxy.entries('*', (e) => e.fault !== undefined).length;
  const failedRuns: number[] = [];
  /** A run may also end on its own: done (0), or API (6) / S3 (7) still failing after retries. */
  const endedOnItsOwn = (code: number | null, stderr: string): void => {
    assert.ok(code === 0 || code === 6 || code === 7, `exit ${code}: ${stderr}`);
    if (code !== 0) failedRuns.push(code!);
  };
  try {
    // 1. Deterministic: die after objects are complete and before the checkpoint records them.
    for (const n of [1, 3, 2]) {
      const r = await runCli(args, { ...env, AAP_FAULT_KILL_BEFORE_COMMIT: String(n) });
      if (r.signal !== 'SIGKILL') {
        endedOnItsOwn(r.code, r.stderr);
        continue;
      }
      kills.push(`before-commit#${n}`);
      const s = JSON.parse(await readFile(state, 'utf8')) as { inflight: Record<string, string> };
      assert.ok(Object.keys(s.inflight).length > 0, 'the killed run left no reserved key to reconcile');
    }
    // 2. Random: kill at seeded points of each run's progress (after a seeded number of its S3 or
    //    API requests, so on a slow machine too the kills land in every phase), while new (and late)
    //    events keep arriving; once, the API forgets every cursor it handed out. At least 18 runs,
    //    and more until enough kills and faults have happened (counting, not timing, decides).
    // Regression: kills at fixed delays and a fixed count of faults made the test depend on the
    // machine's speed ("faults injected: API 28, S3 11" on a loaded machine).
    const enough = (): boolean => kills.length >= 10 && apiFaults() >= 15 && s3Faults() >= 15;
    for (let i = 0; i < 18 || !enough(); i++) {
      assert.ok(i < 60, `after 60 runs: ${kills.length} kills, faults API ${apiFaults()}, S3 ${s3Faults()}`);
      if (i % 2 === 1) sim.append(400 + Math.floor(random() * 400), { late: i % 4 === 1 });
      if (i === 8) sim.invalidateCursors();
      const before = { s3: proxy.log.length, api: sim.stats.requests };
      const target = 2 + Math.floor(random() * 40);
      const run = startCli(args, env);
      let ended = false;
      void run.result.then(() => { ended = true; });
      await until(() => ended || proxy.log.length - before.s3 >= target || sim.stats.requests - before.api >= target, `${target} S3 or API requests of run ${i}`, 300_000);
      const alive = run.child.exitCode === null && run.child.signalCode === null;
      if (alive) run.child.kill('SIGKILL');
      const r = await run.result;
      if (alive && r.signal === 'SIGKILL') kills.push(`random@${target}`);
      else endedOnItsOwn(r.code, r.stderr);
    }
    assert.ok(kills.some((k) => k.startsWith('before-commit')), 'no kill landed between "objects complete" and "checkpoint saved"');
    const injected = { api: apiFaults(), s3: s3Faults() };
    // 3. Faults off, a clean run to the end.
    sim.setFaults({});
    proxy.clear();
    const final = await runCli(args, env);
    assert.equal(final.code, 0, final.stderr);
    const truth = sim.truth();
    const got = await readBucket(client, bucket, P, Q);
    // The API forgot its cursors once (above): id-less invalid records in the overlap re-read may
    // be quarantined again; everything else is exactly once.
    await assertExactlyOnce(client, bucket, truth, got, { idlessRequarantined: true });
    process.stdout.write(
      `# crash test seed ${seed}: ${kills.length} kills (${kills.join(', ')}); runs that failed on their own: ${failedRuns.length} (${failedRuns.join(',')}); ` +
        `faults injected: API ${injected.api} ${JSON.stringify(sim.stats.faults)}, S3 ${injected.s3}; ` +
        `${truth.valid.size} events, ${got.eventKeys.length} objects, lost 0, duplicated 0, pending uploads 0\n`,
    );
  } finally {
    await sim.close();
    await proxy.close();
    await emptyAndDeleteBucket(client, bucket);
    client.destroy();
  }
});
