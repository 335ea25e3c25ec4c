/**
 * Scenario `s3` (the 3): the capacity run into a real S3 server, single-node Ceph
 * radosgw on an in-memory OSD (scripts/s3-server.sh), then every object read back, decompressed
 * and compared with the simulator's ground truth.
 *
 * Uses the server in S3_ENDPOINT (with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) when set;
 * otherwise starts one in a temporary directory (installing the Ceph packages if missing, which
 * needs root) and stops it afterwards. radosgw shares the 2 cores with the pipeline, so this
 * measures the pair, not the pipeline alone: compare with `capacity` for what the store costs.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isCanonical } from '../src/time.js';
import { createTestBucket, emptyAndDeleteBucket, listKeys, readZstdJsonLines, testS3Client } from '../test/helpers/s3.js';
import { checkCounts, cpuPerM, E2E_COLUMNS, E2E_RIGHT, e2eRow, FIXTURE_NOW, FIXTURE_SEED, perSec, runOnce } from './capacity.js';
import { startFixture } from './lib/children.js';
import { DigestBuilder } from './lib/digest.js';
import { rate } from './lib/format.js';
import { machine, type Machine } from './lib/machine.js';
import type { ScenarioResult } from './lib/results.js';
import { freePort } from '../test/helpers/net.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const script = path.join(root, 'scripts', 's3-server.sh');

export interface S3ScenarioOptions {
  events: number;
  progress?: (line: string) => void;
  machine?: Machine;
}

/** The server from S3_ENDPOINT, or one started here; `stop` is a no-op for the former. */
async function s3Server(progress: (l: string) => void): Promise<{ started: boolean; stop(): Promise<void> }> {
  if ((process.env['S3_ENDPOINT'] ?? '') !== '') return { started: false, stop: async () => {} };
  const dir = await mkdtemp(path.join(tmpdir(), 'aap-bench-s3.'));
  progress('s3: starting radosgw (scripts/s3-server.sh; installs the Ceph packages if missing)');
  const r = spawnSync('bash', [script, 'start', dir, String(await freePort())], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  const stop = async (): Promise<void> => {
    spawnSync('bash', [script, 'stop', dir], { stdio: 'ignore' });
    await rm(dir, { recursive: true, force: true });
  };
  if (r.status !== 0) {
    await stop();
    throw new Error(`scripts/s3-server.sh start failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').slice(-5).join(' / ')}`);
  }
  for (const line of (await readFile(path.join(dir, 'env'), 'utf8')).split('\n')) {
    const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m !== null) process.env[m[1]!] = m[2]!.replace(/^'(.*)'$/, '$1');
  }
  return { started: true, stop };
}

export async function s3Scenario(o: S3ScenarioOptions): Promise<ScenarioResult> {
  const started = performance.now();
  const m = o.machine ?? machine();
  const progress = o.progress ?? (() => {});
  const server = await s3Server(progress);
  const client = testS3Client();
  let bucket: string | undefined;
  try {
    bucket = await createTestBucket(client);
    progress(`s3: generating ${o.events.toLocaleString('en-US')} records in the simulator`);
    const fx = await startFixture({ events: o.events, seed: FIXTURE_SEED, now: FIXTURE_NOW, discardS3: false });
    const truth = fx.ready.summary;
    let run;
    let expected;
    try {
      progress('s3: ours into radosgw');
      const env = {
        AWS_ACCESS_KEY_ID: process.env['AWS_ACCESS_KEY_ID']!,
        AWS_SECRET_ACCESS_KEY: process.env['AWS_SECRET_ACCESS_KEY']!,
        AWS_REGION: process.env['AWS_REGION'] ?? 'us-east-1',
      };
      run = await runOnce(fx, 'ours', 0, { endpoint: process.env['S3_ENDPOINT']!, bucket, env });
      const bad = checkCounts(run, truth);
      if (bad !== undefined) throw new Error(`s3: ${bad}`);
      progress('s3: computing the ground truth\'s digest');
      expected = await fx.digest();
    } finally {
      await fx.close();
    }

    progress('s3: reading every object back');
    const verifyStarted = performance.now();
    const eventKeys = await listKeys(client, bucket, 'atlassian/audit/');
    const quarantineKeys = await listKeys(client, bucket, 'atlassian/quarantine/');
    const digest = new DigestBuilder();
    let notCanonical = 0;
    for (const k of eventKeys) {
      for (const e of await readZstdJsonLines(client, bucket, k)) {
        const t = (e as { attributes?: { time?: unknown } }).attributes?.time;
        if (typeof t !== 'string' || !isCanonical(t)) notCanonical++;
        digest.add(e);
      }
    }
    let quarantined = 0;
    for (const k of quarantineKeys) quarantined += (await readZstdJsonLines(client, bucket, k)).length;
    const got = digest.finish();
    const verifySeconds = (performance.now() - verifyStarted) / 1000;
    const problems: string[] = [];
    if (got.events !== expected.events) problems.push(`${got.events} events in the objects, ${expected.events} expected`);
    if (got.distinctIds !== got.events) problems.push(`${got.events - got.distinctIds} ids twice`);
    if (got.sha256 !== expected.sha256) problems.push('the events differ from the ground truth');
    if (notCanonical > 0) problems.push(`${notCanonical} times not canonical`);
    if (quarantined !== truth.invalid) problems.push(`${quarantined} quarantine records, ${truth.invalid} expected`);
    if (problems.length > 0) throw new Error(`s3: verification failed: ${problems.join('; ')}`);

    return {
      title: 'the capacity run into a real S3 server (radosgw), objects verified',
      about: [
        `${truth.totalRecords.toLocaleString('en-US')} simulated records (the capacity scenario's input) through ours into a single-node Ceph radosgw ` +
          `on an in-memory OSD on the same 2 cores${server.started ? ', started by the bench' : ' (from S3_ENDPOINT)'}. One run; then every object is ` +
          'read back, decompressed and compared with the simulator\'s ground truth.',
      ],
      params: { events: truth.totalRecords, runs: 1, seed: FIXTURE_SEED },
      table: { columns: E2E_COLUMNS, right: E2E_RIGHT, rows: [e2eRow('ours → radosgw', [run])] },
      notes: [
        `Verified: ${eventKeys.length} event objects hold ${got.events.toLocaleString('en-US')} events, each id once, equal (sha256 over the events sorted by id) ` +
          `to the ground truth's ${expected.events.toLocaleString('en-US')} valid events with \`attributes.time\` normalised; every time canonical; ` +
          `${quarantineKeys.length} quarantine objects hold the ${quarantined.toLocaleString('en-US')} malformed records. Reading back took ${verifySeconds.toFixed(0)} s.`,
        `${rate(perSec(run))} events/s and ${cpuPerM(run).toFixed(1)} CPU s per 1M records for the pipeline process and its zstd children; radosgw's own CPU is not counted, ` +
          'but it runs on the same two cores.',
      ],
      seconds: (performance.now() - started) / 1000,
      machine: m,
      data: { truth, run, digest: { expected, got }, objects: { events: eventKeys.length, quarantine: quarantineKeys.length }, verifySeconds },
    };
  } finally {
    if (bucket !== undefined) await emptyAndDeleteBucket(client, bucket).catch(() => {});
    client.destroy();
    await server.stop();
  }
}
