import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '../../src/sinks/s3.js';

test('an S3 server that accepts but never answers fails the request after requestTimeoutMs', { timeout: 60_000 }, async () => {
  // Regression: without a request timeout the SDK waited forever, and so did the pipeline.
  const server = createServer((sock) => sock.on('data', () => {}));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  process.env['AWS_ACCESS_KEY_ID'] ??= 'test';
  process.env['AWS_SECRET_ACCESS_KEY'] ??= 'test';
  const client = createS3Client({ endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, maxAttempts: 1, requestTimeoutMs: 300 });
  try {
    // Without the time limit this would wait for ever (the test's own timeout would end it).
    await assert.rejects(client.send(new PutObjectCommand({ Bucket: 'b', Key: 'k', Body: 'x' })), (err: Error) => err.name === 'TimeoutError');
  } finally {
    client.destroy();
    server.close();
  }
});
