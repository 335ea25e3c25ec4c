/**
 * s3-check: the S3 sink's start-up check, and what its failures mean in one line.
 *
 * With the calls the README's least-privilege policy allows, under each prefix: list the multipart
 * uploads on a check key (s3:ListBucketMultipartUploads: the endpoint answers, the bucket exists,
 * the credentials are accepted) and abort any a check cut short left there, then start a multipart
 * upload on that key (s3:PutObject, with the run's encryption settings), abort it
 * (s3:AbortMultipartUpload), and abort any other upload a retried request left on it. No object is ever created, so nothing appears under the prefix and no
 * object-created notification fires. The whole check has a deadline.
 */
import { AbortMultipartUploadCommand, CreateMultipartUploadCommand, type S3Client, type ServerSideEncryption } from '@aws-sdk/client-s3';
import { SinkError } from '../errors.js';
import { s3ErrorDetail } from './s3-client.js';

/** The name, under each prefix, of the key the check starts and aborts an upload on. No object ever has it. */
export const WRITE_CHECK_NAME = '.atlassian-audit-pipeline-write-check';

/** How long the whole check may take. */
export const CHECK_TIMEOUT_MS = 20_000;

export interface S3CheckTarget {
  client: S3Client;
  bucket: string;
  serverSideEncryption?: ServerSideEncryption;
  sseKmsKeyId?: string;
  /** Lists and aborts every multipart upload on `key` (S3Store.abortIncomplete). */
  abortIncomplete(key: string, signal: AbortSignal): Promise<void>;
}

type Step = 'list' | 'create' | 'abort';

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ETIMEDOUT', 'EPROTO', 'CERT_HAS_EXPIRED', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'ERR_TLS_CERT_ALTNAME_INVALID']);
const CREDENTIAL_ERRORS = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'InvalidToken', 'ExpiredToken', 'TokenRefreshRequired', 'InvalidSecurity']);
const REGION_ERRORS = new Set(['AuthorizationHeaderMalformed', 'PermanentRedirect', 'IllegalLocationConstraintException']);

/** Where the client sends requests, for messages: the endpoint, or AWS S3 and the region. */
export async function describeS3Endpoint(client: S3Client): Promise<string> {
  const region = await client.config.region();
  const endpoint = client.config.endpoint === undefined ? undefined : await client.config.endpoint();
  if (endpoint === undefined) return `AWS S3 in ${region}`;
  const port = endpoint.port === undefined ? '' : `:${endpoint.port}`;
  return `${endpoint.protocol}//${endpoint.hostname}${port}${endpoint.path === '/' ? '' : endpoint.path}`;
}

/** The one line a failed check step says: what failed and what to fix. */
function explain(err: unknown, step: Step, t: { bucket: string; key: string; prefix: string; where: string; region: string; timedOut: boolean; sse: boolean }): string {
  const name = (err as { name?: unknown })?.name;
  const code = (err as { code?: unknown })?.code;
  const status = (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  const detail = s3ErrorDetail(err);
  if (t.timedOut || name === 'AbortError') {
    return `no answer from S3 at ${t.where} within ${CHECK_TIMEOUT_MS / 1000} s: check --s3-endpoint, the network, and any proxy or load balancer in between`;
  }
  if (name === 'TimeoutError') return `S3 at ${t.where} stopped answering (${detail}): check --s3-endpoint, the network, and any proxy or load balancer in between`;
  if (typeof code === 'string' && NETWORK_CODES.has(code)) return `cannot reach S3 at ${t.where} (${detail}): check --s3-endpoint and the network`;
  if (name === 'CredentialsProviderError') return `no AWS credentials found (${detail}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile or role the AWS SDK can use`;
  if (name === 'NoSuchBucket') return `bucket ${t.bucket} does not exist at ${t.where}: check --bucket (and --s3-endpoint or --s3-region)`;
  if (typeof name === 'string' && CREDENTIAL_ERRORS.has(name)) {
    return `S3 at ${t.where} rejected the credentials (${name}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the profile or role the AWS SDK uses`;
  }
  if ((typeof name === 'string' && REGION_ERRORS.has(name)) || status === 301) {
    return `bucket ${t.bucket} answers from another region than ${t.region} (${detail}): set --s3-region to the bucket's region`;
  }
  if (typeof name === 'string' && name.startsWith('KMS')) return `S3 could not use the KMS key (${detail}): check --sse-kms-key-id, and kms:GenerateDataKey and kms:Decrypt on it`;
  if (name === 'AccessDenied' || status === 403) {
    const grant =
      step === 'list'
        ? `s3:ListBucketMultipartUploads on arn:aws:s3:::${t.bucket} (and s3:AbortMultipartUpload on arn:aws:s3:::${t.bucket}/${t.prefix}*)`
        : step === 'create'
          ? `s3:PutObject on arn:aws:s3:::${t.bucket}/${t.prefix}*${t.sse ? ' (and kms:GenerateDataKey on the KMS key)' : ''}`
          : `s3:AbortMultipartUpload on arn:aws:s3:::${t.bucket}/${t.prefix}*`;
    return `S3 at ${t.where} denied ${step === 'list' ? 'listing multipart uploads in' : step === 'create' ? 'writing under' : 'aborting uploads under'} s3://${t.bucket}/${step === 'list' ? '' : t.prefix} (${detail}): grant ${grant} (see the README's S3 permissions)`;
  }
  const what = step === 'list' ? 'listing multipart uploads on' : step === 'create' ? 'starting a multipart upload on' : 'aborting the multipart upload on';
  return `the S3 sink cannot be written: ${what} s3://${t.bucket}/${t.key} at ${t.where} failed (${detail})`;
}

/**
 * Checks that objects can be written under each of `prefixes` (see the header). Throws SinkError
 * with one line naming the bucket or endpoint and what to fix. `stop` cuts it short (rethrown as is).
 */
export async function checkS3Sink(target: S3CheckTarget, prefixes: readonly string[], stop?: AbortSignal): Promise<void> {
  const deadline = AbortSignal.timeout(CHECK_TIMEOUT_MS);
  // The first prefix that fails ends the other checks too.
  const failed = new AbortController();
  const signal = AbortSignal.any([deadline, failed.signal, ...(stop === undefined ? [] : [stop])]);
  const { client, bucket, serverSideEncryption, sseKmsKeyId } = target;
  let where: string;
  let region: string;
  try {
    where = await describeS3Endpoint(client);
    region = await client.config.region();
  } catch (err) {
    throw new SinkError(`the S3 client for bucket ${bucket} is not usable: ${s3ErrorDetail(err)} (check --s3-region and --s3-endpoint)`, { cause: err });
  }
  const results = await Promise.allSettled(
    prefixes.map(async (prefix) => {
      const key = `${prefix}${WRITE_CHECK_NAME}`;
      let step: Step = 'list';
      try {
        await target.abortIncomplete(key, signal);
        step = 'create';
        const created = await client.send(
          new CreateMultipartUploadCommand({
            Bucket: bucket,
            Key: key,
            ...(serverSideEncryption === undefined ? {} : { ServerSideEncryption: serverSideEncryption }),
            ...(sseKmsKeyId === undefined ? {} : { SSEKMSKeyId: sseKmsKeyId }),
          }),
          { abortSignal: signal },
        );
        step = 'abort';
        try {
          await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: created.UploadId }), { abortSignal: signal });
        } catch (err) {
          // Another run's check on the same bucket and prefix may have aborted this upload first.
          if ((err as { name?: unknown }).name !== 'NoSuchUpload') throw err;
        }
        // A CreateMultipartUpload whose answer was lost and that the client retried left an
        // upload of its own: abort whatever is still listed for the key.
        await target.abortIncomplete(key, signal);
      } catch (err) {
        if (stop?.aborted === true || failed.signal.aborted) throw err;
        failed.abort();
        throw new SinkError(explain(err, step, { bucket, key, prefix, where, region, timedOut: deadline.aborted, sse: serverSideEncryption === 'aws:kms' }), { cause: err });
      }
    }),
  );
  // The first failure, as it happened (the others were cut short by it, or by a stop).
  const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
  const first = rejected.find((e) => e instanceof SinkError) ?? rejected[0];
  if (rejected.length > 0) throw first;
}
