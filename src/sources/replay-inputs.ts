/**
 * replay-inputs: where the replay source's bytes come from. A {@link ReplayInput} is a name and a
 * way to open a raw byte stream: a local file, stdin, or an S3 object. Opening is deferred until
 * the replay source reaches the input, so a long list of inputs holds one open stream at a time
 * and an input already done (see ReplaySourceOptions.resume) is never opened.
 *
 * Errors: `open` rejects when the input cannot be opened (a missing file, a failed GetObject); the
 * replay source turns that into an InputError naming the input. `s3Inputs` rejects with
 * InputError when the prefix cannot be listed or names no objects.
 */
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { ConfigError, InputError } from '../errors.js';

/** One archive of audit events to replay, opened only when the replay source reaches it. */
export interface ReplayInput {
  /**
   * The input's name as the user gave it (a path, `-` for stdin, `s3://bucket/key`). It names the
   * input in origins, errors and logs, and keys its progress in the checkpoint
   * (ReplaySourceOptions.resume), so it must be stable between runs.
   */
  readonly name: string;
  /**
   * Opens the input and resolves to its raw bytes (compressed or not: the replay source detects
   * that). Rejects when it cannot be opened. `signal` aborts a pending open (an S3 request).
   * The replay source destroys the stream when it is done with it, or is destroyed itself.
   */
  open(signal?: AbortSignal): Promise<Readable>;
}

/** A local file. `name` is `path` as given. The file is opened (and a missing one found) when read. */
export function fileInput(path: string): ReplayInput {
  return {
    name: path,
    async open(): Promise<Readable> {
      // Opened here rather than by createReadStream, so a missing file rejects `open` instead of
      // surfacing as a stream error later.
      const handle = await open(path, 'r');
      return handle.createReadStream({ autoClose: true });
    },
  };
}

/** Standard input (or `stdin`), named `-`. It can be read once. */
export function stdinInput(stdin: Readable = process.stdin): ReplayInput {
  return {
    name: '-',
    open(): Promise<Readable> {
      return Promise.resolve(stdin);
    },
  };
}

/**
 * Splits `s3://bucket/prefix` into bucket and prefix (possibly empty, or a whole key). Undefined
 * when `url` is not an s3:// URL with a bucket name.
 */
export function parseS3Url(url: string): { bucket: string; prefix: string } | undefined {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/s.exec(url);
  if (m === null) return undefined;
  const bucket = m[1]!;
  // Bucket names: 3–63 of lower-case letters, digits, dots and hyphens (legacy buckets may hold
  // upper case and underscores, which S3 still serves).
  if (!/^[A-Za-z0-9._-]{1,255}$/.test(bucket)) return undefined;
  return { bucket, prefix: m[2] ?? '' };
}

/** UTF-8 byte order, the order S3 lists keys in (UTF-16 order differs above U+FFFF). */
function byKeyBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Every object under an `s3://bucket/prefix` URL, as inputs in key order. The prefix is a plain
 * key prefix (`s3://b/2026/11/` or a whole key; `s3://b/audit.jsonl` also lists
 * `audit.jsonl.1`). Keys ending in `/` (folder markers) are skipped. Each input's name is
 * `s3://bucket/key`; its `open` sends GetObject and streams the body.
 *
 * Rejects with ConfigError when `url` is not an s3:// URL, and with InputError when listing
 * fails or lists no objects.
 */
export async function s3Inputs(client: S3Client, url: string): Promise<ReplayInput[]> {
  const parsed = parseS3Url(url);
  if (parsed === undefined) throw new ConfigError(`${JSON.stringify(url)} is not an s3://bucket/prefix URL`);
  const { bucket, prefix } = parsed;
  const keys: string[] = [];
  let ContinuationToken: string | undefined;
  try {
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: bucket, ...(prefix === '' ? {} : { Prefix: prefix }), ContinuationToken }),
      );
      for (const o of page.Contents ?? []) if (o.Key !== undefined && !o.Key.endsWith('/')) keys.push(o.Key);
      const next = page.IsTruncated === true ? page.NextContinuationToken : undefined;
      // A server that says "truncated" without a new token would list the same page forever.
      if (next !== undefined && next === ContinuationToken) throw new Error('the listing is truncated but its continuation token does not advance');
      ContinuationToken = next;
    } while (ContinuationToken !== undefined);
  } catch (err) {
    throw new InputError(url, `replay input ${url} cannot be listed (${errorDetail(err)})`, { cause: err });
  }
  if (keys.length === 0) throw new InputError(url, `replay input ${url} names no objects`);
  keys.sort(byKeyBytes);
  return keys.map((key) => s3Input(client, bucket, key));
}

/** Times a download cut off mid-body is resumed (a ranged GetObject from where it stopped). */
export const S3_BODY_RESUMES = 5;

function s3Input(client: S3Client, bucket: string, key: string): ReplayInput {
  const get = async (signal: AbortSignal | undefined, from: number, etag: string | undefined): Promise<{ body: Readable; etag: string | undefined }> => {
    const res = await client.send(
      // From where the last body stopped, and only if the object is still the one being read.
      new GetObjectCommand({ Bucket: bucket, Key: key, ...(from > 0 ? { Range: `bytes=${from}-`, ...(etag === undefined ? {} : { IfMatch: etag }) } : {}) }),
      signal === undefined ? {} : { abortSignal: signal },
    );
    // In Node the SDK's body is an http.IncomingMessage (a Readable) with helpers mixed in.
    if (!(res.Body instanceof Readable)) throw new Error('GetObject returned no readable body');
    return { body: res.Body, etag: res.ETag };
  };
  return {
    name: `s3://${bucket}/${key}`,
    async open(signal?: AbortSignal): Promise<Readable> {
      const first = await get(signal, 0, undefined);
      return Readable.from(resumingBody(first, get, signal), { objectMode: false });
    },
  };
}

/**
 * The object's bytes. A body that fails mid-way (a connection reset, a timeout) is asked for
 * again from the byte where it stopped, pinned to the same ETag, up to S3_BODY_RESUMES times in
 * a row; the SDK's own retries cover the requests themselves, not a body already streaming.
 */
async function* resumingBody(
  first: { body: Readable; etag: string | undefined },
  get: (signal: AbortSignal | undefined, from: number, etag: string | undefined) => Promise<{ body: Readable; etag: string | undefined }>,
  signal: AbortSignal | undefined,
): AsyncGenerator<Buffer> {
  let current: Readable = first.body;
  const etag = first.etag;
  let offset = 0;
  let resumes = 0;
  for (;;) {
    try {
      for await (const chunk of current) {
        const b = chunk as Buffer;
        offset += b.length;
        if (b.length > 0) resumes = 0;
        yield b;
      }
      return;
    } catch (err) {
      if (signal?.aborted === true || ++resumes > S3_BODY_RESUMES) throw err;
      await new Promise((r) => setTimeout(r, 100 * 2 ** resumes));
      current = (await get(signal, offset, etag)).body;
    }
  }
}

/** An error as `Name: message` when its name says more than `Error` (the AWS SDK's name is the S3 error code, e.g. NoSuchKey). */
export function errorDetail(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  return err.name !== 'Error' && err.name !== '' && !err.message.startsWith(err.name) ? `${err.name}: ${err.message}` : err.message;
}
