/**
 * Helpers for node:test integration tests against a real S3 server (single-node Ceph radosgw,
 * started by `scripts/s3-server.sh start DIR`, which writes DIR/env with the variables read here:
 * S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).
 *
 * Tests should skip when `s3Available()` is false:
 *   test('...', { skip: !s3Available() && 'S3_ENDPOINT not set' }, async () => { ... })
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';

/** The fixed credentials `scripts/s3-server.sh` gives its test user. */
export const TEST_ACCESS_KEY_ID = 'TESTACCESSKEY0000000';
export const TEST_SECRET_ACCESS_KEY = 'testsecretkey000000000000000000000000000';
const DEFAULT_REGION = 'us-east-1';

const ZSTD_BIN = existsSync('/usr/bin/zstd') ? '/usr/bin/zstd' : 'zstd';

/** True when an S3 test server is configured (S3_ENDPOINT is set). */
export function s3Available(): boolean {
  return (process.env['S3_ENDPOINT'] ?? '') !== '';
}

function requireEndpoint(): string {
  const endpoint = process.env['S3_ENDPOINT'] ?? '';
  if (endpoint === '') {
    throw new Error(
      'S3_ENDPOINT is not set: start a server with `scripts/s3-server.sh start DIR` and `source DIR/env`',
    );
  }
  return endpoint;
}

/**
 * The variables a child process (our CLI) needs to reach the test server. Merge them over
 * process.env: `spawn(cmd, args, { env: { ...process.env, ...s3TestEnv() } })`.
 */
export function s3TestEnv(): Record<string, string> {
  return {
    S3_ENDPOINT: requireEndpoint(),
    AWS_ACCESS_KEY_ID: process.env['AWS_ACCESS_KEY_ID'] || TEST_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: process.env['AWS_SECRET_ACCESS_KEY'] || TEST_SECRET_ACCESS_KEY,
    AWS_REGION: process.env['AWS_REGION'] || DEFAULT_REGION,
  };
}

/** An S3 client for the test server: path-style, checksums only when required. */
export function testS3Client(): S3Client {
  const env = s3TestEnv();
  return new S3Client({
    endpoint: env['S3_ENDPOINT'],
    region: env['AWS_REGION'],
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    credentials: {
      accessKeyId: env['AWS_ACCESS_KEY_ID'] ?? TEST_ACCESS_KEY_ID,
      secretAccessKey: env['AWS_SECRET_ACCESS_KEY'] ?? TEST_SECRET_ACCESS_KEY,
    },
  });
}

let warmUp: Promise<void> | undefined;

/**
 * Writes, deletes and starts+aborts a multipart upload once per process, so that radosgw
 * creates its data pools here rather than inside the first timed test.
 */
async function warmUpOnce(client: S3Client, bucket: string): Promise<void> {
  warmUp ??= (async () => {
    const Key = '.warmup';
    await client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: 'warm-up' }));
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
    if (UploadId !== undefined) {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId }));
    }
  })();
  await warmUp;
}

/** Creates a bucket (default name `t-<random hex>`) and returns its name. */
export async function createTestBucket(client: S3Client, name?: string): Promise<string> {
  const bucket = name ?? `t-${randomBytes(8).toString('hex')}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  await warmUpOnce(client, bucket);
  return bucket;
}

/** All keys under `prefix`, across pages, sorted. */
export async function listKeys(client: S3Client, bucket: string, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  let ContinuationToken: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken }),
    );
    for (const obj of page.Contents ?? []) {
      if (obj.Key !== undefined) keys.push(obj.Key);
    }
    ContinuationToken = page.IsTruncated === true ? page.NextContinuationToken : undefined;
  } while (ContinuationToken !== undefined);
  return keys.sort();
}

/** The whole object body. */
export async function readObject(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  if (res.Body === undefined) throw new Error(`GetObject ${bucket}/${key} returned no body`);
  const bytes = await res.Body.transformToByteArray();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decompresses (one or more concatenated) zstd frames with the `zstd` CLI. */
export function decompressZstd(buf: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(ZSTD_BIN, ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    // zstd may exit early on bad input; its exit status carries the error, not EPIPE.
    child.stdin.on('error', () => {});
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) {
        resolve(Buffer.concat(out));
      } else {
        const msg = Buffer.concat(err).toString('utf8').trim();
        reject(new Error(`${ZSTD_BIN} -dc failed (${signal ?? `exit ${code}`}): ${msg}`));
      }
    });
    child.stdin.end(buf);
  });
}

/**
 * Gets a zstd-compressed JSON-lines object and parses every line. A single trailing empty line
 * (the final "\n") is ignored; any other line that is not JSON throws, naming key and line.
 */
export async function readZstdJsonLines(
  client: S3Client,
  bucket: string,
  key: string,
): Promise<unknown[]> {
  const text = (await decompressZstd(await readObject(client, bucket, key))).toString('utf8');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((line, i) => {
    try {
      return JSON.parse(line) as unknown;
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      const shown = line.length > 200 ? `${line.slice(0, 200)}...` : line;
      throw new Error(`${bucket}/${key} line ${i + 1} is not JSON (${reason}): ${JSON.stringify(shown)}`);
    }
  });
}

/** Multipart uploads not yet completed or aborted, across pages. */
export async function listPendingUploads(
  client: S3Client,
  bucket: string,
  prefix?: string,
): Promise<{ Key: string; UploadId: string }[]> {
  const uploads: { Key: string; UploadId: string }[] = [];
  let KeyMarker: string | undefined;
  let UploadIdMarker: string | undefined;
  for (;;) {
    const page = await client.send(
      new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker, UploadIdMarker }),
    );
    for (const u of page.Uploads ?? []) {
      if (u.Key !== undefined && u.UploadId !== undefined) uploads.push({ Key: u.Key, UploadId: u.UploadId });
    }
    if (page.IsTruncated !== true) break;
    if (page.NextKeyMarker === KeyMarker && page.NextUploadIdMarker === UploadIdMarker) {
      throw new Error(`ListMultipartUploads on ${bucket} is truncated but its markers do not advance`);
    }
    KeyMarker = page.NextKeyMarker;
    UploadIdMarker = page.NextUploadIdMarker;
  }
  return uploads;
}

function errorName(e: unknown): string {
  return e instanceof Error ? e.name : String(e);
}

/**
 * Cleanup (best effort, never throws): aborts pending uploads, deletes every object, deletes
 * the bucket. A bucket that does not exist is fine; other failures are logged as warnings.
 */
export async function emptyAndDeleteBucket(client: S3Client, bucket: string): Promise<void> {
  const warn = (step: string, e: unknown): void => {
    if (errorName(e) === 'NoSuchBucket') return;
    console.warn(`emptyAndDeleteBucket(${bucket}): ${step}: ${e instanceof Error ? e.message : String(e)}`);
  };
  try {
    const uploads = await listPendingUploads(client, bucket);
    for (let i = 0; i < uploads.length; i += 16) {
      await Promise.all(
        uploads.slice(i, i + 16).map(async (u) => {
          try {
            await client.send(
              new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }),
            );
          } catch (e) {
            if (errorName(e) !== 'NoSuchUpload') warn(`abort ${u.Key}`, e);
          }
        }),
      );
    }
  } catch (e) {
    warn('list uploads', e);
  }
  try {
    const keys = await listKeys(client, bucket);
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const res = await client.send(
        new DeleteObjectsCommand({
          Bucket: bucket,
          Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
        }),
      );
      for (const err of res.Errors ?? []) warn(`delete ${err.Key}`, new Error(`${err.Code}: ${err.Message}`));
    }
  } catch (e) {
    warn('delete objects', e);
  }
  try {
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  } catch (e) {
    warn('delete bucket', e);
  }
}

/** Runs `fn` with a client and a fresh bucket, then empties and deletes the bucket. */
export async function withBucket(fn: (client: S3Client, bucket: string) => Promise<void>): Promise<void> {
  const client = testS3Client();
  const bucket = await createTestBucket(client);
  try {
    await fn(client, bucket);
  } finally {
    await emptyAndDeleteBucket(client, bucket);
    client.destroy();
  }
}
