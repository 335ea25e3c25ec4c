/**
 * s3-client: the S3Client every S3 call goes through, with a time limit on each request and a
 * retry policy that says what it does.
 *
 * Time limits: connecting at most `connectionTimeoutMs` (10 s); a request that sends or receives
 * nothing for `requestTimeoutMs` (30 s: a stalled server, proxy or load balancer) fails, and so
 * does one whose answer has not begun after REQUEST_TOTAL_MS (10 min, against a trickle). A body
 * its reader leaves unread for `requestTimeoutMs` (backpressure) is cut off too: the replay's
 * S3 inputs ask for the rest again (replay-inputs.ts).
 * Retries: throttling (SlowDown, 429), 500/502/503/504, timeouts and connection failures (what the
 * SDK classes as throttling or transient) are retried up to
 * `maxAttempts` attempts in all (6), with exponential backoff and full jitter (0.2 s doubling, at most
 * 20 s), or what the server's Retry-After asks; other errors (403, 404) are not. Each retry is
 * logged (`S3 request failed; retrying`), counted (`s3_retries_total{cause}`) and marks S3 as
 * failing in Health (so /readyz says not ready) until a request succeeds again.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { describeError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { PipelineMetrics } from '../metrics.js';

/** The longest an S3 request may take until its answer begins, however steadily bytes trickle. */
const REQUEST_TOTAL_MS = 600_000;
const BACKOFF_BASE_MS = 100;
const BACKOFF_CAP_MS = 20_000;

export interface S3ClientOptions {
  /** Custom endpoint (radosgw, MinIO, LocalStack). Default: AWS. */
  endpoint?: string;
  /** Path-style addressing, needed by most S3-compatible servers. Default false. */
  forcePathStyle?: boolean;
  /** Region. Default AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1. */
  region?: string;
  /** Attempts per request, retries included. Default 6. */
  maxAttempts?: number;
  /** A request that sends or receives nothing for this long fails (and is retried). Default 30,000. */
  requestTimeoutMs?: number;
  /** Connection set-up limit. Default 10,000. */
  connectionTimeoutMs?: number;
}

export interface S3ClientDeps {
  /** Where retries are logged. Default: no logging. */
  logger?: Logger;
  /** Counts retries (`s3_retries_total`) and marks S3 failing in its Health. Default: none. */
  metrics?: PipelineMetrics;
  /** Uniform [0,1) for the backoff's jitter. Default Math.random. */
  random?: () => number;
}

/** Why an S3 attempt failed, as `s3_retries_total`'s `cause` label. */
export type S3RetryCause = 'throttling' | 'server_error' | 'timeout' | 'network';

/** The SDK's description of a failed attempt (RetryErrorInfo). */
interface RetryErrorInfo {
  error?: unknown;
  errorType: 'TRANSIENT' | 'THROTTLING' | 'SERVER_ERROR' | 'CLIENT_ERROR';
  retryAfterHint?: Date;
}

class Token {
  constructor(readonly retries: number, readonly delayMs: number) {}
  getRetryCount(): number {
    return this.retries;
  }
  getRetryDelay(): number {
    return this.delayMs;
  }
  getRetryCost(): number {
    return 0;
  }
}

/** The HTTP status of an SDK error, if it had a response. */
function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

function causeOf(info: RetryErrorInfo): S3RetryCause {
  const name = (info.error as { name?: unknown } | undefined)?.name;
  if (name === 'TimeoutError' || (info.error as { code?: unknown } | undefined)?.code === 'ETIMEDOUT') return 'timeout';
  if (info.errorType === 'THROTTLING') return 'throttling';
  return (statusOf(info.error) ?? 0) >= 500 ? 'server_error' : 'network';
}

/** An S3 failure in a few words: the error's name, its HTTP status, its message. */
export function s3ErrorDetail(error: unknown): string {
  const name = (error as { name?: unknown } | undefined)?.name;
  const status = statusOf(error);
  const message = describeError(error).replace(/\s+/g, ' ').slice(0, 300);
  const head = [typeof name === 'string' && name !== 'Error' ? name : undefined, status === undefined ? undefined : `HTTP ${status}`].filter((x) => x !== undefined).join(', ');
  return head === '' ? message : `${head}: ${message}`;
}

/** The SDK's retry strategy (RetryStrategyV2) with this project's policy and reporting (see the header). */
class ReportingRetryStrategy {
  readonly #maxAttempts: number;
  readonly #deps: Required<Omit<S3ClientDeps, 'metrics'>> & Pick<S3ClientDeps, 'metrics'>;

  constructor(maxAttempts: number, deps: S3ClientDeps) {
    this.#maxAttempts = maxAttempts;
    this.#deps = { logger: deps.logger ?? silentLogger, metrics: deps.metrics, random: deps.random ?? Math.random };
  }

  async acquireInitialRetryToken(_scope: string): Promise<Token> {
    return new Token(0, 0);
  }

  async refreshRetryTokenForRetry(token: Token, info: RetryErrorInfo): Promise<Token> {
    const attempt = token.getRetryCount() + 1;
    const retryable = info.errorType === 'THROTTLING' || info.errorType === 'TRANSIENT';
    if (!retryable) throw new Error('not retryable');
    const cause = causeOf(info);
    const health = this.#deps.metrics?.health;
    if (health !== undefined) health.sinkFailingSinceMs ??= this.#deps.metrics!.clock.now();
    if (attempt >= this.#maxAttempts) throw new Error('out of attempts');
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
    const hinted = info.retryAfterHint === undefined ? 0 : Math.min(info.retryAfterHint.getTime() - Date.now(), BACKOFF_CAP_MS);
    const waitMs = Math.max(Math.floor(this.#deps.random() * ceiling), hinted);
    this.#deps.metrics?.s3Retries.inc({ cause });
    this.#deps.logger.warn('S3 request failed; retrying', { cause, detail: s3ErrorDetail(info.error), attempt, maxAttempts: this.#maxAttempts, waitMs });
    return new Token(attempt, waitMs);
  }

  recordSuccess(_token: Token): void {
    const health = this.#deps.metrics?.health;
    if (health !== undefined) health.sinkFailingSinceMs = undefined;
  }
}

/** An S3Client set up for streaming uploads to AWS or S3-compatible servers (see the header). */
export function createS3Client(options: S3ClientOptions = {}, deps: S3ClientDeps = {}): S3Client {
  const maxAttempts = options.maxAttempts ?? 6;
  return new S3Client({
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
    forcePathStyle: options.forcePathStyle ?? false,
    region: options.region ?? process.env['AWS_REGION'] ?? process.env['AWS_DEFAULT_REGION'] ?? 'us-east-1',
    maxAttempts,
    retryStrategy: new ReportingRetryStrategy(maxAttempts, deps),
    // Without these the SDK waits for a stalled server forever, and so would the pipeline.
    requestHandler: {
      connectionTimeout: options.connectionTimeoutMs ?? 10_000,
      socketTimeout: options.requestTimeoutMs ?? 30_000,
      requestTimeout: REQUEST_TOTAL_MS,
      throwOnRequestTimeout: true,
    },
    // Streaming bodies with the default checksums are rejected by radosgw (411) and corrupted by
    // some other S3-compatible servers; S3 itself does not require them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}
