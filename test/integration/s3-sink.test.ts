import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CreateMultipartUploadCommand, HeadObjectCommand, UploadPartCommand, type S3Client } from '@aws-sdk/client-s3';
import { createS3Sink, S3Store } from '../../src/sinks/s3.js';
import { SinkError } from '../../src/errors.js';
import { createMetrics } from '../../src/metrics.js';
import type { AuditEvent, Batch } from '../../src/types.js';
import { listKeys, listPendingUploads, readZstdJsonLines, withBucket } from '../helpers/s3.js';
import { s3Skip } from '../helpers/require-s3.js';

const HOUR = Date.parse('2026-11-21T10:00:00Z');
let n = 0;
function bigBatches(count: number, perBatch: number, bytes: number): Batch[] {
  return Array.from({ length: count }, (_, i) => ({
    records: [],
    fetched: perBatch,
    events: Array.from({ length: perBatch }, () => ({ id: `e${++n}`, type: 'events', attributes: { time: '2026-11-21T10:00:00.000Z' }, links: {}, blob: randomBytes(bytes).toString('base64') }) as AuditEvent),
    quarantined: [],
    position: { cursor: `c${i}`, skip: 0 },
    hour: HOUR,
  }));
}

test('a multipart object streams through zstd into S3 and reads back identical, with content headers', { skip: s3Skip() }, async () => {
  await withBucket(async (client, bucket) => {
    const metrics = createMetrics({ defaultMetrics: false });
    // ~12 MB of JSON (random base64, ~9 MB compressed) → two 5 MiB parts.
    const batches = bigBatches(24, 50, 7500);
    const sink = createS3Sink({ bucket, prefix: 'ev/', quarantinePrefix: 'q/', partSize: 5 * 1024 * 1024, queueSize: 2 }, { client, metrics });
    await pipeline(Readable.from(batches), sink);
    const keys = await listKeys(client, bucket, 'ev/');
    assert.equal(keys.length, 1);
    assert.match(keys[0]!, /^ev\/2026\/11\/21\/10\/[0-9a-f]{8}-\d{6}\.json\.zst$/);
    const back = await readZstdJsonLines(client, bucket, keys[0]!);
    assert.deepEqual(back, batches.flatMap((b) => b.events));
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: keys[0]! }));
    assert.equal(head.ContentType, 'application/x-ndjson');
    assert.equal(head.ContentEncoding, 'zstd');
    assert.ok((head.ContentLength ?? 0) > 5 * 1024 * 1024, 'expected an object of more than one part');
    assert.deepEqual(await listPendingUploads(client, bucket), []);
    assert.equal((await metrics.eventsWritten.get()).values[0]!.value, 24 * 50);
  });
});

test('a part that fails for good aborts the multipart upload on the server and fails the run', { skip: s3Skip() }, async () => {
  await withBucket(async (client, bucket) => {
    // Inject a permanent failure of part 2 after part 1 reached the server.
    client.middlewareStack.add(
      (next) => async (args) => {
        const input = args.input as { PartNumber?: number };
        if (input.PartNumber === 2) throw Object.assign(new Error('injected: part 2 refused'), { name: 'AccessDenied', $fault: 'client' });
        return next(args);
      },
      { step: 'initialize', name: 'failPart2' },
    );
    const sink = createS3Sink({ bucket, prefix: 'ev/', quarantinePrefix: 'q/', partSize: 5 * 1024 * 1024, queueSize: 1 }, { client });
    await assert.rejects(pipeline(Readable.from(bigBatches(24, 50, 7500)), sink), (err: unknown) => {
      assert.ok(err instanceof SinkError, String(err));
      assert.match((err as Error).message, /part 2 refused/);
      return true;
    });
    assert.deepEqual(await listPendingUploads(client, bucket), [], 'the multipart upload was left on the server');
    assert.deepEqual(await listKeys(client, bucket, ''), []);
  });
});

test('abortIncomplete removes an upload an earlier process left for a key, and only that one', { skip: s3Skip() }, async () => {
  await withBucket(async (client, bucket) => {
    const left = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'ev/a.json.zst' }));
    await client.send(new UploadPartCommand({ Bucket: bucket, Key: 'ev/a.json.zst', UploadId: left.UploadId, PartNumber: 1, Body: Buffer.alloc(1024) }));
    await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'ev/a.json.zst.other' }));
    await new S3Store(client, { bucket }).abortIncomplete('ev/a.json.zst');
    assert.deepEqual((await listPendingUploads(client, bucket)).map((u) => u.Key), ['ev/a.json.zst.other']);
  });
});

test('transient S3 errors (503 on a part) are retried by the SDK and the object completes', { skip: s3Skip() }, async () => {
  await withBucket(async (client, bucket) => {
    let failures = 0;
    // Inside the retry loop (finalizeRequest, low priority): the SDK sees a 503 and retries.
    client.middlewareStack.add(
      (next) => async (args) => {
        const input = args.input as { PartNumber?: number };
        if (input.PartNumber === 1 && failures < 2) {
          failures++;
          throw Object.assign(new Error('injected 503'), { name: 'ServiceUnavailable', $fault: 'server', $metadata: { httpStatusCode: 503 } });
        }
        return next(args);
      },
      { step: 'finalizeRequest', priority: 'low', name: 'flakyPart1' },
    );
    const batches = bigBatches(24, 50, 7500);
    const sink = createS3Sink({ bucket, prefix: 'ev/', quarantinePrefix: 'q/' }, { client });
    await pipeline(Readable.from(batches), sink);
    assert.equal(failures, 2);
    const keys = await listKeys(client, bucket, 'ev/');
    assert.deepEqual(await readZstdJsonLines(client, bucket, keys[0]!), batches.flatMap((b) => b.events));
    assert.deepEqual(await listPendingUploads(client, bucket), []);
  });
});
