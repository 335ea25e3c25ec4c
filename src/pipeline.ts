/**
 * Where the collector's stages are wired (replay wires the same stages behind its own source: src/replay.ts).
 *
 *   atlassian-events ──Batch──▶ validate ──Batch──▶ normalize-time ──Batch──▶ dedupe ──Batch──▶ object-sink
 *   (Readable, hwm 1)      (Transform, hwm 1+1)   (Transform, hwm 1+1)    (Transform, hwm 1+1)  (Writable, hwm 1)
 *                                                                                  │                 │
 *                                                              DedupeWindow ◀──────┘      StateJournal (checkpoint file)
 *
 * Every edge carries Batches of at most one API page (≤ 500 records), so at most ~8 pages are
 * in the stream buffers at once. Backpressure runs from the store (S3 upload queue, or disk)
 * through zstd back to the source, which requests the next page only when pulled.
 *
 * Errors: `stream/promises` pipeline, first error wins, every stage destroyed; the sink aborts its
 * uploads and nothing is committed past the last complete objects. In follow mode a non-fatal
 * failure (API down for longer than the retries, S3 unreachable) rebuilds the pipeline from the
 * checkpoint after a pause; 401/403/404, configuration and state errors end the run.
 * Cancellation: `signal` stops gracefully (objects in flight are completed and committed), and
 * if that takes longer than `stopTimeoutMs` (S3 unreachable, say) the objects in flight are
 * aborted instead: the run still resolves as stopped, with the checkpoint at the last complete
 * objects. `abortSignal` tears everything down at once and rejects with AbortError.
 */
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Dispatcher } from 'undici';
import { acquireLock, hasCollected, loadState, newState, saveRunSummary, saveState, startOver, StateJournal, type CheckpointState, type RunSummary } from './checkpoint.js';
import { systemClock, type Clock } from './clock.js';
import { AbortError, ApiError, ConfigError, describeError, PipelineError, SinkError, StateError } from './errors.js';
import { silentLogger, type Logger } from './log.js';
import { measureBackpressure, type PipelineMetrics } from './metrics.js';
import { createAtlassianEventsSource } from './sources/atlassian-events.js';
import type { RateBudget } from './sources/rate-pacer.js';
import { LocalDirStore } from './sinks/local-dir.js';
import { createS3Client, S3Store } from './sinks/s3.js';
import { createObjectSink, type EpochCommit, type ObjectSink, type ObjectSinkDeps, type ObjectSinkOptions, type ObjectStore } from './sinks/object-sink.js';
import { createDedupe, DEFAULT_DEDUPE_WINDOW, DedupeWindow } from './transforms/dedupe.js';
import { createNormalizeTime } from './transforms/normalize-time.js';
import { createValidate } from './transforms/validate.js';
import { parseRfc3339 } from './time.js';
import type { Position } from './types.js';
import { requireZstd } from './zstd.js';

export type OutputOptions =
  | {
      kind: 's3';
      bucket: string;
      /** S3-compatible endpoint. Default: AWS. */
      endpoint?: string;
      forcePathStyle?: boolean;
      region?: string;
      /** Multipart part size. Default 5 MiB. */
      partSize?: number;
      /** Parts in flight per object. Default 4. */
      queueSize?: number;
      /** Server-side encryption: `AES256` (SSE-S3) or `aws:kms` (SSE-KMS). Default: the bucket's default encryption. */
      sse?: 'AES256' | 'aws:kms';
      /** KMS key id, ARN or alias for `aws:kms`. Default: the account's AWS managed key for S3. */
      sseKmsKeyId?: string;
      /** An S3 request that sends or receives nothing for this long fails and is retried. Default 30,000. */
      timeoutMs?: number;
    }
  | {
      kind: 'local';
      /** Directory objects are written under, with the same key layout as S3. */
      dir: string;
    }
  | {
      kind: 'store';
      /** Your own ObjectStore: where objects go (see src/sinks/object-sink.ts and examples/library-pipeline.ts). */
      store: ObjectStore;
      /** How summaries name the destination, e.g. `gs://bucket`. Default `store`. */
      where?: string;
    };

/** The ObjectStore for `output` (with `s3`, the client to use). */
export function createOutputStore(output: OutputOptions, s3: S3Client | undefined): ObjectStore {
  if (output.kind === 's3') {
    return new S3Store(s3!, { bucket: output.bucket, partSize: output.partSize, queueSize: output.queueSize, serverSideEncryption: output.sse, sseKmsKeyId: output.sseKmsKeyId });
  }
  if (output.kind === 'local') return new LocalDirStore({ dir: output.dir });
  return output.store;
}

/** The object sink for `output` (with `s3`, the client to use). */
export function createOutputSink(output: OutputOptions, options: ObjectSinkOptions, deps: Omit<ObjectSinkDeps, 'store'>, s3: S3Client | undefined): ObjectSink {
  return createObjectSink(options, { ...deps, store: createOutputStore(output, s3) });
}

/**
 * The S3 client a run makes for `output` (and `s3://` replay inputs): its time limit per request,
 * and retries logged and counted through `deps`.
 */
export function createRunS3Client(
  settings: { endpoint?: string; forcePathStyle?: boolean; region?: string; timeoutMs?: number },
  deps: { logger: Logger; metrics?: PipelineMetrics },
  maxAttempts?: number,
): S3Client {
  return createS3Client(
    {
      endpoint: settings.endpoint,
      forcePathStyle: settings.forcePathStyle,
      region: settings.region,
      ...(settings.timeoutMs === undefined ? {} : { requestTimeoutMs: settings.timeoutMs }),
      ...(maxAttempts === undefined ? {} : { maxAttempts }),
    },
    deps,
  );
}

/** Attempts per request in the start-up check: enough for a blip, few enough to fail in seconds. */
const CHECK_ATTEMPTS = 3;

/**
 * The sink's start-up check (ObjectStore.check), before the first API request: a run that can
 * never write must not start. With S3 it uses a client of its own with fewer attempts per request
 * (or `userClient`, a client the caller gave). A stop signal cuts it short without an error (the
 * run then stops).
 */
export async function checkOutput(
  output: OutputOptions,
  userClient: S3Client | undefined,
  prefixes: readonly string[],
  signals: { signal?: AbortSignal; abortSignal?: AbortSignal },
  clientDeps: { logger: Logger; metrics?: PipelineMetrics },
): Promise<void> {
  const stops = [signals.signal, signals.abortSignal].filter((x) => x !== undefined);
  const stop = stops.length === 0 ? undefined : AbortSignal.any(stops);
  const client = output.kind === 's3' && userClient === undefined ? createRunS3Client(output, clientDeps, CHECK_ATTEMPTS) : userClient;
  try {
    await createOutputStore(output, client).check?.(prefixes, stop);
  } catch (err) {
    if (stop?.aborted !== true) throw err;
  } finally {
    if (client !== userClient) client?.destroy();
  }
}

/** Where `output` puts event objects, for summaries. */
export function outputWhere(output: OutputOptions, prefix: string): string {
  if (output.kind === 's3') return `s3://${output.bucket}/${prefix}`;
  if (output.kind === 'local') return resolve(output.dir, prefix);
  return `${output.where ?? 'store'}/${prefix}`;
}

export interface PipelineOptions {
  /** Atlassian organization id. Required; must match the org of an existing state file. */
  orgId: string;
  /** Organization API key, sent as a bearer token. Required; never logged. */
  apiKey: string;
  /** Default `https://api.atlassian.com`. */
  apiUrl?: string;
  /** Epoch ms to start from on the first run (no state yet). Default: 180 days ago (the retention). */
  from?: number;
  /** Keep polling (true) or stop once caught up (false, `--once`). Default false. */
  follow?: boolean;
  /** Poll interval when following. Default 300,000 (5 minutes). */
  intervalMs?: number;
  /** Checkpoint file. */
  statePath: string;
  /** Event key prefix. Default `atlassian/audit/`. */
  prefix?: string;
  /** Quarantine key prefix. Default `atlassian/quarantine/`. */
  quarantinePrefix?: string;
  /** Where objects go: S3, a local directory, or your own ObjectStore. */
  output: OutputOptions;
  /** zstd level 1–19. Default 3. */
  zstdLevel?: number;
  /**
   * Worker threads that parse, validate and normalise API pages (0: on the main thread).
   * Default 2 (pages are fetched one after another, up to 4 ahead of the one being handed on).
   */
  pageWorkers?: number;
  /** Close objects at this compressed size. Default 32 MiB. */
  maxObjectBytes?: number;
  /** Close objects at this age. Default 300,000 (5 minutes). */
  maxObjectAgeMs?: number;
  /** Ids kept for dedupe after commit. Default 100,000. */
  dedupeWindow?: number;
  /** API page size. Default 500. */
  pageSize?: number;
  /** Per-request timeout. Default 30,000. */
  requestTimeoutMs?: number;
  /**
   * API request budget, spread evenly. Default 50 per minute (events-stream's limit); `false`:
   * none of its own (X-RateLimit-Remaining/-Reset and 429s are honoured either way).
   */
  rateLimit?: RateBudget | false;
  /** Retries of a failing page. Default 8. */
  maxRetries?: number;
  /** First backoff step for API retries, ms. Default 500. */
  backoffBaseMs?: number;
  /** Longest backoff step for API retries, ms. Default 60,000. */
  backoffCapMs?: number;
  /** Pause before rebuilding the pipeline after a non-fatal failure in follow mode. Default 30,000. */
  restartDelayMs?: number;
  /** Stop gracefully: finish objects in flight, save the checkpoint, resolve. */
  signal?: AbortSignal;
  /** Stop at once: abort uploads, keep the last checkpoint, reject with AbortError. */
  abortSignal?: AbortSignal;
  /**
   * After `signal`, how long objects in flight may take to complete before they are aborted
   * (their events are collected again by the next run). Default 20,000.
   */
  stopTimeoutMs?: number;
}

export interface PipelineDeps {
  /** Passed to the checkpoint journal: runs between "objects complete" and "checkpoint saved". */
  beforeCommit?: (commit: EpochCommit) => void;
  /** HTTP dispatcher for API requests. Default: a keep-alive Agent owned by the source. */
  dispatcher?: Dispatcher;
  /** Client for S3 output (ignored otherwise). Default: one made from `output`, destroyed when the run ends. */
  s3Client?: S3Client;
  /** Time source for waits, object age and run times. Default: the system clock. */
  clock?: Clock;
  /** Uniform [0,1) for retry jitter. Default Math.random. */
  random?: () => number;
  /** Where progress, retries and failures are logged. Default: no logging. */
  logger?: Logger;
  /** Metrics and health state to update. Default: none. */
  metrics?: PipelineMetrics;
}

/** What a run (`runPipeline` or `runReplay`) wrote and where, as its checkpoint commits count it. */
export interface RunResult {
  /** Records received (from the API, or read by a replay) and committed: always events + quarantined + duplicates. */
  fetched: number;
  /** Events written to committed objects by this run (restarts included). */
  events: number;
  /** Records written to quarantine objects by this run. */
  quarantined: number;
  /** Events dropped by dedupe as already written. */
  duplicates: number;
  /** Objects completed and committed by this run. */
  objects: number;
  /** Keys of those objects. */
  keys: string[];
  /** Absolute path of the state file. */
  statePath: string;
  /** Where event objects went: `s3://bucket/prefix`, a directory, or `<where>/prefix` for your own store. */
  where: string;
  /** True when `signal` stopped the run. */
  stopped: boolean;
  /** True when a stop had to abort objects in flight (see `stopTimeoutMs`). */
  abandoned: boolean;
}

export interface PipelineResult extends RunResult {
  /** The checkpoint's position at the end: where the next run resumes. */
  position: Position;
}

export const DEFAULT_PREFIX = 'atlassian/audit/';
export const DEFAULT_QUARANTINE_PREFIX = 'atlassian/quarantine/';
export const RETENTION_MS = 180 * 24 * 3_600_000;

/** Throws ConfigError unless both prefixes are well formed and disjoint. */
export function checkPrefixes(prefix: string, quarantinePrefix: string): void {
  for (const [name, p] of [['--prefix', prefix], ['--quarantine-prefix', quarantinePrefix]] as const) {
    if (p.length === 0 || !p.endsWith('/') || p.startsWith('/') || p.includes('//') || p.split('/').some((s) => s === '.' || s === '..')) {
      throw new ConfigError(`${name} must be a non-empty relative key prefix ending in "/" (got ${JSON.stringify(p)})`);
    }
  }
  // An indexer reads everything under the events prefix: nothing else may live there.
  if (prefix.startsWith(quarantinePrefix) || quarantinePrefix.startsWith(prefix)) {
    throw new ConfigError(`--prefix ${prefix} and --quarantine-prefix ${quarantinePrefix} must not contain one another`);
  }
}

/** How a run stops: `teardown` aborts the streams (the caller's abortSignal, or a graceful stop that ran out of time). */
export interface StopControl {
  readonly teardown: AbortController;
  /** A graceful stop took longer than stopTimeoutMs, and objects in flight were aborted. */
  readonly timedOut: boolean;
  dispose(): void;
}

/** Watches `signal` (graceful: a timer of stopTimeoutMs, then teardown) and `abortSignal` (teardown at once). */
export function stopControl(options: { signal?: AbortSignal; abortSignal?: AbortSignal; stopTimeoutMs?: number }, logger: Logger): StopControl {
  const teardown = new AbortController();
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const onAbort = (): void => teardown.abort();
  const onStop = (): void => {
    const ms = options.stopTimeoutMs ?? 20_000;
    logger.info('stopping: completing objects in flight', { stopTimeoutMs: ms });
    timer = setTimeout(() => {
      timedOut = true;
      logger.warn('objects in flight did not complete in time; aborting them (the next run collects their events again)', { stopTimeoutMs: ms });
      teardown.abort();
    }, ms);
  };
  if (options.abortSignal?.aborted) teardown.abort();
  options.abortSignal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) onStop();
  else options.signal?.addEventListener('abort', onStop, { once: true });
  return {
    teardown,
    get timedOut() {
      return timedOut;
    },
    dispose() {
      clearTimeout(timer);
      options.abortSignal?.removeEventListener('abort', onAbort);
      options.signal?.removeEventListener('abort', onStop);
    },
  };
}

/**
 * Errors a restart cannot fix: everything but the API or S3 failing for a while. An ApiError with
 * a 4xx status (the API refused the request itself, or a 404 that is not Atlassian's: a wrong
 * --api-url path) is fatal too: asking again in 30 s gets the same answer.
 */
function isFatal(err: unknown): boolean {
  if (err instanceof ApiError) return err.status !== undefined && err.status >= 400 && err.status < 500;
  return !(err instanceof SinkError);
}

/** Runs the collector: once until caught up, or following until `signal`. */
export async function runPipeline(options: PipelineOptions, deps: PipelineDeps = {}): Promise<PipelineResult> {
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  const quarantinePrefix = options.quarantinePrefix ?? DEFAULT_QUARANTINE_PREFIX;
  checkPrefixes(prefix, quarantinePrefix);
  // Every object goes through the zstd CLI: say so now, not after the first pages are fetched.
  requireZstd();
  if (options.orgId.trim() === '') throw new ConfigError('--org-id is required');
  if (options.apiKey.trim() === '') throw new ConfigError('ATLASSIAN_API_KEY is required');
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? silentLogger;
  const statePath = resolve(options.statePath);
  try {
    mkdirSync(dirname(statePath), { recursive: true });
  } catch (err) {
    throw new StateError(`cannot create the directory of ${statePath}: ${(err as Error).message}`);
  }
  const lock = acquireLock(statePath);
  const startedAt = new Date(clock.now()).toISOString();
  let state: CheckpointState | undefined;
  let journal: StateJournal | undefined;
  const ownsClient = options.output.kind === 's3' && deps.s3Client === undefined;
  const s3 = options.output.kind === 's3' ? deps.s3Client ?? createRunS3Client(options.output, { logger, metrics: deps.metrics }) : undefined;
  const totals = { fetched: 0, events: 0, quarantined: 0, duplicates: 0, objects: 0, keys: [] as string[] };
  let outcome: RunSummary['outcome'] = 'error';
  let failure: unknown;
  const stop = stopControl(options, logger);
  const { teardown } = stop;
  try {
    state = await loadState(statePath);
    const from = options.from ?? clock.now() - RETENTION_MS;
    if (state === undefined) {
      state = newState(options.orgId, from);
      logger.info('no state yet: starting a new collection', { from: new Date(from).toISOString(), state: statePath });
    } else {
      if (state.orgId !== options.orgId) {
        throw new StateError(`state file ${statePath} belongs to org ${state.orgId}, not ${options.orgId}: use another --state per organization`);
      }
      if (!hasCollected(state)) {
        // Runs so far failed before anything was committed (a rejected key, S3 down): the state
        // must not pin where the collection starts, so this run's --from (or default) applies.
        startOver(state, from);
        logger.info('nothing collected yet: starting a new collection', { from: new Date(from).toISOString(), state: statePath });
      } else if (options.from !== undefined) {
        logger.warn('state exists: continuing from its checkpoint; --from applies only until the first events are collected', { state: statePath });
      }
    }
    await saveState(statePath, state);
    await checkOutput(options.output, deps.s3Client, [prefix, quarantinePrefix], options, { logger, metrics: deps.metrics });
    if (deps.metrics !== undefined) {
      const h = deps.metrics.health;
      h.lastCheckpointMs = clock.now();
      const p = state.lastProcessedAt === undefined ? undefined : parseRfc3339(state.lastProcessedAt);
      if (p !== undefined && (h.newestProcessedAtMs === undefined || p > h.newestProcessedAtMs)) h.newestProcessedAtMs = p;
      // The drop-off alarm's stand-in for the last write: when events were last committed (a state
      // file from before that field: its newest processedAt, which quarantine-only commits move too).
      const lastWrite = state.lastEventsWrittenAt === undefined ? p : Date.parse(state.lastEventsWrittenAt);
      if (lastWrite !== undefined && (h.resumedLastWriteMs === undefined || lastWrite > h.resumedLastWriteMs)) h.resumedLastWriteMs = lastWrite;
    }
    for (let attempt = 0; ; attempt++) {
      if (options.abortSignal?.aborted) throw new AbortError();
      const dedupeWindow: DedupeWindow = new DedupeWindow(options.dedupeWindow ?? DEFAULT_DEDUPE_WINDOW, state.dedupe);
      journal = new StateJournal(state, { path: statePath, prefix, quarantinePrefix, window: dedupeWindow, beforeCommit: deps.beforeCommit, lock });
      const source = createAtlassianEventsSource(
        {
          apiUrl: options.apiUrl,
          orgId: options.orgId,
          apiKey: options.apiKey,
          start: state.position,
          lastProcessedAt: state.lastProcessedAt,
          fallbackFrom: state.origin,
          pageSize: options.pageSize,
          follow: options.follow,
          intervalMs: options.intervalMs,
          requestTimeoutMs: options.requestTimeoutMs,
          ...(options.rateLimit === undefined ? {} : { rateLimit: options.rateLimit }),
          maxRetries: options.maxRetries,
          backoffBaseMs: options.backoffBaseMs,
          backoffCapMs: options.backoffCapMs,
          signal: options.signal,
          ...(options.pageWorkers === undefined ? {} : { pageWorkers: options.pageWorkers }),
        },
        { dispatcher: deps.dispatcher, clock, random: deps.random, logger, metrics: deps.metrics },
      );
      const sinkOptions = {
        prefix,
        quarantinePrefix,
        zstdLevel: options.zstdLevel,
        maxObjectBytes: options.maxObjectBytes,
        maxObjectAgeMs: options.maxObjectAgeMs,
      };
      const sinkDeps = { journal, clock, logger, metrics: deps.metrics };
      const sink = createOutputSink(options.output, sinkOptions, sinkDeps, s3);
      const validate = createValidate();
      const normalize = createNormalizeTime();
      const dedupe = createDedupe({ window: dedupeWindow });
      if (deps.metrics !== undefined) {
        measureBackpressure(source, validate, 'source', deps.metrics);
        measureBackpressure(validate, normalize, 'validate', deps.metrics);
        measureBackpressure(normalize, dedupe, 'normalize_time', deps.metrics);
        measureBackpressure(dedupe, sink, 'dedupe', deps.metrics);
      }
      try {
        await pipeline(source, validate, normalize, dedupe, sink, { signal: teardown.signal });
        addTotals(totals, journal);
        break;
      } catch (err) {
        addTotals(totals, journal);
        if (stop.timedOut && options.abortSignal?.aborted !== true) break;
        if (teardown.signal.aborted) throw new AbortError('the run was aborted; objects in flight were discarded', { cause: err });
        if (!options.follow || isFatal(err) || options.signal?.aborted) throw err;
        const delay = options.restartDelayMs ?? 30_000;
        // Only an ApiError or a SinkError gets here (isFatal), so the label is ERR_API or ERR_SINK.
        deps.metrics?.errors.inc({ stage: err instanceof SinkError ? 'sink' : 'source', error_type: (err as ApiError | SinkError).code });
        if (deps.metrics !== undefined) deps.metrics.health.lastFailureMs = clock.now();
        logger.error('the pipeline failed; restarting from the checkpoint', { error: describeError(err), restartInMs: delay, attempt: attempt + 1 });
        await clock.sleep(delay, AbortSignal.any([options.signal, options.abortSignal].filter((x) => x !== undefined)));
        if (options.signal?.aborted) break;
        // Start again from what is on disk: the checkpoint is the only truth about what is in S3.
        state = (await loadState(statePath)) ?? state;
      }
    }
    outcome = options.signal?.aborted ? 'stopped' : 'ok';
    return {
      ...totals,
      position: state.position,
      statePath,
      where: outputWhere(options.output, prefix),
      stopped: options.signal?.aborted === true,
      abandoned: stop.timedOut,
    };
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    stop.dispose();
    if (state !== undefined) {
      await saveRunSummary(statePath, state, lock, { startedAt, finishedAt: new Date(clock.now()).toISOString(), outcome, ...totals, failure }, logger);
    }
    if (ownsClient) s3?.destroy();
    lock.release();
  }
}

function addTotals(totals: Pick<RunResult, 'fetched' | 'events' | 'quarantined' | 'duplicates' | 'objects' | 'keys'>, journal: StateJournal): void {
  const s = journal.session;
  totals.fetched += s.fetched;
  totals.events += s.events;
  totals.quarantined += s.quarantined;
  totals.duplicates += s.duplicates;
  totals.objects += s.objects;
  totals.keys.push(...s.keys);
  s.fetched = s.events = s.quarantined = s.duplicates = s.objects = 0;
  s.keys = [];
}
