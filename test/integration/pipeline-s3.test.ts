import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { runPipeline, type PipelineOptions } from '../../src/pipeline.js';
import { loadState } from '../../src/checkpoint.js';
import { createSimulator } from '../../src/simulator/index.js';
import { createTestBucket, emptyAndDeleteBucket, testS3Client } from '../helpers/s3.js';
import { s3Skip } from '../helpers/require-s3.js';
import { tempDir } from '../helpers/fs.js';
import { assertExactlyOnce, readBucket } from '../helpers/verify.js';

const P = 'atlassian/audit/';
const Q = 'atlassian/quarantine/';

test('simulator → pipeline → radosgw: exactly once, normalised, quarantined with reasons; the next run adds only new events', { skip: s3Skip() }, async () => {
  const sim = createSimulator({ events: 4000, seed: 21, malformedRate: 0.02, duplicateRate: 0.01, lateRate: 0.1, spanMs: 3 * 3_600_000 });
  await sim.start();
  const client = testS3Client();
  const bucket = await createTestBucket(client);
  const dir = await tempDir();
  try {
    const options: PipelineOptions = {
      orgId: sim.orgId,
      rateLimit: false,
      apiKey: sim.apiKey,
      apiUrl: sim.url,
      from: 0,
      statePath: join(dir, 'state.json'),
      output: { kind: 's3', bucket, endpoint: process.env['S3_ENDPOINT'], forcePathStyle: true },
    };
    const first = await runPipeline(options, { s3Client: client });
    let truth = sim.truth();
    assert.equal(first.events, truth.valid.size);
    assert.equal(first.quarantined, truth.invalid.length);
    assert.equal(first.duplicates, truth.duplicates);
    let got = await readBucket(client, bucket, P, Q);
    await assertExactlyOnce(client, bucket, truth, got);
    // Late events (time hours before processedAt) are there; times were rewritten to canonical form.
    assert.ok(got.events.some((e) => {
      const a = e['attributes'] as { time: string; processedAt: string };
      return Date.parse(a.processedAt) - Date.parse(a.time) > 3_600_000;
    }));
    assert.ok(got.events.every((e) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test((e['attributes'] as { time: string }).time)));
    assert.ok(got.eventKeys.length >= 3, 'three hours of events → at least three hourly objects');
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: got.eventKeys[0]! }));
    assert.equal(head.ContentEncoding, 'zstd');
    const state = await loadState(options.statePath);
    assert.deepEqual(state!.inflight, {});
    assert.equal(state!.totals.events, truth.valid.size);

    // New events arrive, some of them late, with faults on the way: only they are added.
    sim.append(900, { late: true });
    sim.append(600);
    sim.failNextRequests(['503', 'reset', '429-retry-after', 'truncated']);
    sim.setFaults({ retryAfterSeconds: 0 });
    const second = await runPipeline({ ...options, backoffBaseMs: 10, backoffCapMs: 50 }, { s3Client: client });
    truth = sim.truth();
    assert.equal(first.events + second.events, truth.valid.size);
    got = await readBucket(client, bucket, P, Q);
    await assertExactlyOnce(client, bucket, truth, got);

    // Nothing new: a third run writes no object.
    const third = await runPipeline(options, { s3Client: client });
    assert.equal(third.objects, 0);
  } finally {
    await sim.close();
    await emptyAndDeleteBucket(client, bucket);
    client.destroy();
  }
});
