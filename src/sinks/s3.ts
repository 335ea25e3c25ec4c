/**
 * s3: the ObjectStore for S3 (and S3-compatible servers), and the S3 sink factory.
 *
 * Each object is one `@aws-sdk/lib-storage` Upload reading from a PassThrough: multipart with
 * `partSize` parts and `queueSize` parts in flight (a body smaller than one part becomes a single
 * PutObject). Memory per open object: `queueSize × partSize` plus the body's 256 KiB buffer.
 * On failure the Upload is aborted, and then every multipart upload still listed for the key is
 * aborted explicitly: `Upload.abort()` alone leaves the multipart upload on the server. After a
 * multipart object completes, uploads still listed for its key (orphans of a retried
 * CreateMultipartUpload) are aborted too.
 * The client's retries (s3-client.ts) cover throttling, 5xx, timeouts and resets on every request.
 */
import {
  AbortMultipartUploadCommand,
  ListMultipartUploadsCommand,
  type S3Client,
  type ServerSideEncryption,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
export { createS3Client, type S3ClientOptions, type S3ClientDeps } from './s3-client.js';
import { checkS3Sink } from './s3-check.js';
import { createBody, createObjectSink, type ObjectKind, type ObjectSink, type ObjectSinkDeps, type ObjectSinkOptions, type ObjectStore, type ObjectUpload } from './object-sink.js';

/** Longest an abort spends cleaning up multipart uploads on the server. */
const ABORT_CLEANUP_TIMEOUT_MS = 15_000;

export interface S3StoreOptions {
  /** Bucket the objects are written to. */
  bucket: string;
  /** Multipart part size in bytes, ≥ 5 MiB. Default 5 MiB. Bounds memory with `queueSize`. */
  partSize?: number;
  /** Parts uploaded concurrently per object. Default 4. */
  queueSize?: number;
  /** `AES256` (SSE-S3) or `aws:kms` (SSE-KMS). Default: the bucket's default encryption. */
  serverSideEncryption?: ServerSideEncryption;
  /** KMS key id for `aws:kms`. */
  sseKmsKeyId?: string;
}

export class S3Store implements ObjectStore {
  readonly #client: S3Client;
  readonly #opts: S3StoreOptions;

  constructor(client: S3Client, options: S3StoreOptions) {
    if ((options.partSize ?? 5 * 1024 * 1024) < 5 * 1024 * 1024) throw new RangeError('S3 part size must be at least 5 MiB');
    this.#client = client;
    this.#opts = options;
  }

  describe(key: string): string {
    return `s3://${this.#opts.bucket}/${key}`;
  }

  open(key: string, _kind: ObjectKind): ObjectUpload {
    const body = createBody();
    const { bucket, serverSideEncryption, sseKmsKeyId } = this.#opts;
    const upload = new Upload({
      client: this.#client,
      partSize: this.#opts.partSize ?? 5 * 1024 * 1024,
      queueSize: this.#opts.queueSize ?? 4,
      leavePartsOnError: false,
      params: {
        Bucket: bucket,
        Key: key,
        Body: body,
        ContentType: 'application/x-ndjson',
        ContentEncoding: 'zstd',
        ...(serverSideEncryption === undefined ? {} : { ServerSideEncryption: serverSideEncryption }),
        ...(sseKmsKeyId === undefined ? {} : { SSEKMSKeyId: sseKmsKeyId }),
      },
    });
    // A CreateMultipartUpload whose response was lost (reset, or timed out on a slow server) is
    // retried by the SDK, and the upload the first attempt created is left on the server with no
    // one to complete or abort it. The key belongs to this object alone, so once the object is
    // complete every upload still listed for it is such an orphan. Best effort: the object is
    // complete either way, and an orphan holds no parts (they all went to the retried upload).
    // Bounded like an abort's clean-up: a commit never waits long on it.
    const done = upload.done().then(async () => {
      if (upload.uploadId !== undefined) await this.abortIncomplete(key, AbortSignal.timeout(ABORT_CLEANUP_TIMEOUT_MS)).catch(() => {});
    });
    done.catch(() => {}); // the sink observes it
    return {
      body,
      done,
      abort: async () => {
        // Bounded as a whole: an abort runs on failures and shutdowns, when S3 may be unreachable.
        // If the clean-up cannot finish in time the key stays reserved in the checkpoint, and the
        // next run aborts what is left of it before writing the key again.
        const deadline = AbortSignal.timeout(ABORT_CLEANUP_TIMEOUT_MS);
        body.destroy();
        await upload.abort().catch(() => {});
        await Promise.race([done.catch(() => {}), new Promise((resolve) => deadline.addEventListener('abort', resolve, { once: true }))]);
        await this.abortIncomplete(key, deadline);
      },
    };
  }

  /** The start-up check (s3-check.ts): objects can be written under each prefix. Throws SinkError saying what to fix. */
  check(prefixes: readonly string[], stop?: AbortSignal): Promise<void> {
    const { bucket, serverSideEncryption, sseKmsKeyId } = this.#opts;
    return checkS3Sink(
      { client: this.#client, bucket, serverSideEncryption, sseKmsKeyId, abortIncomplete: (key, signal) => this.abortIncomplete(key, signal) },
      prefixes,
      stop,
    );
  }

  async abortIncomplete(key: string, signal?: AbortSignal): Promise<void> {
    const opts = signal === undefined ? {} : { abortSignal: signal };
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.#client.send(
        new ListMultipartUploadsCommand({ Bucket: this.#opts.bucket, Prefix: key, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
        opts,
      );
      for (const u of page.Uploads ?? []) {
        if (u.Key !== key || u.UploadId === undefined) continue;
        await this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.#opts.bucket, Key: key, UploadId: u.UploadId }), opts);
      }
      if (page.IsTruncated !== true) return;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }
}

export interface S3SinkOptions extends ObjectSinkOptions, S3StoreOptions {}

/** The sink writing to S3: `createObjectSink` over an S3Store. */
export function createS3Sink(options: S3SinkOptions, deps: Omit<ObjectSinkDeps, 'store'> & { client: S3Client }): ObjectSink {
  return createObjectSink(options, { ...deps, store: new S3Store(deps.client, options) });
}
