import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { createSimulator } from '../../src/simulator/index.js';
import { startCli, runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/fs.js';
import { createTestBucket, emptyAndDeleteBucket, s3TestEnv, testS3Client } from '../helpers/s3.js';
import { s3Skip } from '../helpers/require-s3.js';
import { assertExactlyOnce, readBucket } from '../helpers/verify.js';

const P = 'crash/audit/';
const Q = 'crash/quarantine/';

/** mulberry32: the kill schedule is reproducible from the seed. */
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

test('SIGKILL at any moment, restart: every event in exactly one object, none missing, no pending upload', { skip: s3Skip(), timeout: 240_000 }, async () => {
  const seed = Number(process.env['CRASH_SEED'] ?? 7);
  const random = prng(seed);
  const sim = createSimulator({ events: 30_000, seed, malformedRate: 0.01, duplicateRate: 0.005, lateRate: 0.05, spanMs: 5 * 3_600_000 });
  await sim.start();
  const client = testS3Client();
  const bucket = await createTestBucket(client);
  const dir = await tempDir();
  const state = join(dir, 'state.json');
  const args = ['run', '--once', '--org-id', sim.orgId, '--api-url', sim.url, '--from', '2000-01-01', '--bucket', bucket, '--prefix', P, '--quarantine-prefix', Q,
    '--s3-endpoint', process.env['S3_ENDPOINT']!, '--s3-force-path-style', '--state', state, '--metrics-port', '0',
    // Small objects: one commit every page or so, so kills land in every phase of an epoch.
    '--object-max-bytes', '48KiB', '--log-level', 'warn'];
  const env = { ATLASSIAN_API_KEY: sim.apiKey, ...s3TestEnv() };
  const kills: string[] = [];
  try {
    // 1. Deterministic: die after objects are complete and before the checkpoint records them.
    for (const n of [1, 3, 2]) {
      const r = await runCli(args, { ...env, AAP_FAULT_KILL_BEFORE_COMMIT: String(n) });
      assert.equal(r.signal, 'SIGKILL', `expected a kill before commit ${n}: ${r.stderr}`);
      kills.push(`before-commit#${n}`);
      const s = JSON.parse(await readFile(state, 'utf8')) as { inflight: Record<string, string> };
      assert.ok(Object.keys(s.inflight).length > 0, 'the killed run left no reserved key to reconcile');
    }
    // 2. Random: kill at seeded moments while new events keep arriving.
    for (let i = 0; i < 8; i++) {
      if (i % 2 === 1) sim.append(400 + Math.floor(random() * 400), { late: i % 4 === 1 });
      const run = startCli(args, env);
      const delay = 250 + Math.floor(random() * 1200);
      await new Promise((r) => setTimeout(r, delay));
      const alive = run.child.exitCode === null && run.child.signalCode === null;
      if (alive) run.child.kill('SIGKILL');
      const r = await run.result;
      kills.push(alive ? `random@${delay}ms` : `finished-before-${delay}ms(code ${r.code})`);
      if (!alive) assert.equal(r.code, 0, r.stderr);
    }
    // 3. A clean run to the end.
    const final = await runCli(args, env);
    assert.equal(final.code, 0, final.stderr);
    const truth = sim.truth();
    const got = await readBucket(client, bucket, P, Q);
    await assertExactlyOnce(client, bucket, truth, got);
    process.stdout.write(`# crash test seed ${seed}: ${kills.length} kills (${kills.join(', ')}); ${truth.valid.size} events, ${got.eventKeys.length} objects, lost 0, duplicated 0, pending uploads 0\n`);
  } finally {
    await sim.close();
    await emptyAndDeleteBucket(client, bucket);
    client.destroy();
  }
});
