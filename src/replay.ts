/**
 * Replay: archives (files, stdin, S3 objects) through the same stages as the API.
 *
 *   replay source ──Batch──▶ validate ──▶ normalize-time ──▶ dedupe ──▶ object-sink
 *   (src/sources/replay.ts)                                   │             │
 *                                               DedupeWindow ◀┘     StateJournal (state file)
 *
 * Checkpoint: the state file keeps, per input name, how many units (lines, array elements) are
 * in complete objects and whether the input was read to its end (`state.replay`); its API
 * `position` is never touched. Inputs are read in the order given, so a commit at input k also
 * completes every input before it. A rerun skips finished inputs and continues the others after
 * their committed units; stdin (`-`) is never skipped or resumed. An input that cannot be read to
 * its end (InputError: truncated or corrupt compression, a JSON document cut short) fails the run
 * before its last objects are committed, and is not marked done.
 * Stop: `signal` ends the source at the next batch boundary and completes the objects in flight
 * (within stopTimeoutMs); `abortSignal` tears everything down at once.
 */
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { acquireLock, loadState, newState, saveRunSummary, saveState, StateJournal, type CheckpointState, type RunSummary } from './checkpoint.js';
import { systemClock, type Clock } from './clock.js';
import { AbortError, ConfigError, StateError } from './errors.js';
import { silentLogger, type Logger } from './log.js';
import { measureBackpressure, type PipelineMetrics } from './metrics.js';
import { checkOutput, checkPrefixes, createOutputSink, createRunS3Client, DEFAULT_PREFIX, DEFAULT_QUARANTINE_PREFIX, outputWhere, stopControl, type OutputOptions, type RunResult } from './pipeline.js';
import type { EpochCommit } from './sinks/object-sink.js';
import { createReplaySource, fileInput, readReplayPosition, s3Inputs, stdinInput, type ReplayInput, type ReplayProgress } from './sources/replay.js';
import { createDedupe, DEFAULT_DEDUPE_WINDOW, DedupeWindow } from './transforms/dedupe.js';
import { createNormalizeTime } from './transforms/normalize-time.js';
import { createValidate } from './transforms/validate.js';
import type { Batch, Position } from './types.js';
import { requireZstd } from './zstd.js';

/** The org id a state file made by replay carries: `run` refuses it, so the two never share a state by accident. */
export const REPLAY_ORG_ID = 'replay';

export interface ReplayOptions {
  /** Paths, `-` for stdin, or `s3://bucket/prefix` (every object under it, in key order). */
  inputs: readonly string[];
  /** Checkpoint file (replay progress, dedupe window, reserved keys). */
  statePath: string;
  /** Where objects go: S3, a local directory, or your own ObjectStore. */
  output: OutputOptions;
  /** Event key prefix. Default `atlassian/audit/`. */
  prefix?: string;
  /** Quarantine key prefix. Default `atlassian/quarantine/`. */
  quarantinePrefix?: string;
  /** zstd level 1–19. Default 3. */
  zstdLevel?: number;
  /** Close objects at this compressed size. Default 32 MiB. */
  maxObjectBytes?: number;
  /** Close objects at this age. Default 300,000 (5 minutes). */
  maxObjectAgeMs?: number;
  /** Ids kept for dedupe after commit. Default 100,000. */
  dedupeWindow?: number;
  /** Records per batch. Default 500. */
  batchSize?: number;
  /** For `s3://` inputs when the output is not S3 (else the output's settings are used). */
  s3Input?: { endpoint?: string; forcePathStyle?: boolean; region?: string; timeoutMs?: number };
  /** Stop gracefully: finish objects in flight, save the checkpoint, resolve. */
  signal?: AbortSignal;
  /** Stop at once: abort uploads, keep the last checkpoint, reject with AbortError. */
  abortSignal?: AbortSignal;
  /** After `signal`, how long objects in flight may take to complete before they are aborted. Default 20,000. */
  stopTimeoutMs?: number;
}

export interface ReplayDeps {
  /** Passed to the checkpoint journal: runs between "objects complete" and "checkpoint saved" (tests kill the process there). */
  beforeCommit?: (commit: EpochCommit) => void;
  /**
   * Client for S3 output and `s3://` inputs. Default: one made from the output's settings (or
   * `s3Input`) when needed, and destroyed when the run ends.
   */
  s3Client?: S3Client;
  /** What `-` reads. Default process.stdin. */
  stdin?: Readable;
  /** Time source (run summary times, object age). Default: the system clock. */
  clock?: Clock;
  /** Where input progress, objects and warnings are logged. Default: no logging. */
  logger?: Logger;
  /** Metrics to update (records received, objects, backpressure). Default: none. */
  metrics?: PipelineMetrics;
}

export interface ReplayResult extends RunResult {
  /** Inputs read to their end by this run. */
  finished: string[];
  /** Inputs skipped because an earlier run on this state finished them. */
  skipped: string[];
}

/**
 * Counts records on their way from the source (the `events_received` metric) and notes each
 * batch read as the input side's success, which readiness (/readyz) asks of a page otherwise.
 */
function countReceived(metrics: PipelineMetrics, clock: Clock): Transform {
  return new Transform({
    objectMode: true,
    highWaterMark: 1,
    transform(batch: Batch, _enc, cb) {
      const n = batch.records.length + (batch.fetched ?? 0);
      metrics.eventsReceived.inc(n);
      metrics.health.received += n;
      metrics.health.lastPageOkMs = clock.now();
      cb(null, batch);
    },
  });
}

/** Sets an input's progress as an own property, whatever its name (`__proto__` included). */
function setProgress(state: CheckpointState, name: string, p: ReplayProgress): void {
  Object.defineProperty(state.replay!, name, { value: p, enumerable: true, writable: true, configurable: true });
}

/**
 * Whether an object listed under an `s3://` input is one this replay writes: in the output
 * bucket, under the events or quarantine prefix. Reading those would replay the replay's own
 * output on a rerun (and quarantine its quarantine records again), so they are left out.
 */
function isOwnOutput(name: string, arg: string, output: OutputOptions, prefix: string, quarantinePrefix: string, logger: Logger): boolean {
  if (output.kind !== 's3') return false;
  const own = `s3://${output.bucket}/`;
  if (!name.startsWith(own)) return false;
  const key = name.slice(own.length);
  if (!key.startsWith(prefix) && !key.startsWith(quarantinePrefix)) return false;
  logger.warn('left out of the replay: the object is under the output prefix this replay writes to', { input: arg, object: name });
  return true;
}

/** Replays `options.inputs` into the output, exactly once across reruns on the same state file. */
export async function runReplay(options: ReplayOptions, deps: ReplayDeps = {}): Promise<ReplayResult> {
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  const quarantinePrefix = options.quarantinePrefix ?? DEFAULT_QUARANTINE_PREFIX;
  checkPrefixes(prefix, quarantinePrefix);
  // Every object goes through the zstd CLI: say so now, not after the first pages are fetched.
  requireZstd();
  if (options.inputs.length === 0) throw new ConfigError('replay needs at least one input: a file, - for stdin, or s3://bucket/prefix');
  if (options.inputs.filter((i) => i === '-').length > 1) throw new ConfigError('stdin (-) can be given once');
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
  const s3Settings = options.output.kind === 's3' ? options.output : options.s3Input;
  const needsS3 = options.output.kind === 's3' || options.inputs.some((i) => i.startsWith('s3://'));
  const ownsClient = needsS3 && deps.s3Client === undefined;
  const s3 = needsS3 ? deps.s3Client ?? createRunS3Client(s3Settings ?? {}, { logger, metrics: deps.metrics }) : undefined;
  const stop = stopControl(options, logger);
  let state: CheckpointState | undefined;
  let journal: StateJournal | undefined;
  let outcome: RunSummary['outcome'] = 'error';
  let failure: unknown;
  try {
    const loaded = await loadState(statePath);
    if (loaded !== undefined && loaded.orgId !== REPLAY_ORG_ID) {
      // A collector's checkpoint: its run summary, totals and dedupe window are the collector's,
      // and are left as they are.
      throw new StateError(`state file ${statePath} is the collector's checkpoint for org ${loaded.orgId}; replay keeps a state of its own (--state, default ./atlassian-audit-replay-state.json)`);
    }
    state = loaded ?? newState(REPLAY_ORG_ID, 0);
    const progress = (state.replay ??= {});
    await saveState(statePath, state);
    await checkOutput(options.output, deps.s3Client, [prefix, quarantinePrefix], options, { logger, metrics: deps.metrics });

    const inputs: ReplayInput[] = [];
    for (const arg of options.inputs) {
      if (arg === '-') inputs.push(stdinInput(deps.stdin));
      else if (arg.startsWith('s3://')) inputs.push(...(await s3Inputs(s3!, arg)).filter((i) => !isOwnOutput(i.name, arg, options.output, prefix, quarantinePrefix, logger)));
      // Progress is kept by name: the absolute path, so `a.jsonl` and `./a.jsonl` are one input,
      // and a rerun from another directory does not take another file for it.
      else inputs.push(fileInput(resolve(arg)));
    }
    const names = inputs.map((i) => i.name);
    if (new Set(names).size !== names.length) throw new ConfigError('an input is named twice (directly, or through an s3:// prefix): each is replayed once');
    // Own keys only: an input named "constructor" or "__proto__" is an input like any other.
    const prior = (n: string): ReplayProgress | undefined => (Object.hasOwn(progress, n) ? progress[n] : undefined);
    const skipped = names.filter((n) => n !== '-' && prior(n)?.done === true);
    const resume: Record<string, ReplayProgress> = Object.create(null) as Record<string, ReplayProgress>;
    for (const n of names) if (n !== '-' && prior(n) !== undefined) resume[n] = prior(n)!;

    // A commit at input k: its units so far, and every input before it read to its end.
    const order = new Map(names.map((n, i) => [n, i]));
    const finished = new Set<string>();
    const commitPosition = (s: CheckpointState, position: Position): void => {
      const p = readReplayPosition(position);
      if (p === undefined) return;
      const k = order.get(p.name) ?? -1;
      for (let i = 0; i < k; i++) markDone(s, names[i]!);
      if (p.done) finished.add(p.name);
      if (p.name !== '-') setProgress(s, p.name, { records: p.records, done: p.done });
    };
    const markDone = (s: CheckpointState, name: string): void => {
      if (finished.has(name) || prior(name)?.done === true) return;
      finished.add(name);
      if (name !== '-') setProgress(s, name, { records: prior(name)?.records ?? 0, done: true });
    };

    const window = new DedupeWindow(options.dedupeWindow ?? DEFAULT_DEDUPE_WINDOW, state.dedupe);
    journal = new StateJournal(state, { path: statePath, prefix, quarantinePrefix, window, lock, commitPosition, beforeCommit: deps.beforeCommit });
    const source = createReplaySource(inputs, { resume, ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }), ...(options.signal === undefined ? {} : { signal: options.signal }) }, { logger, clock });
    const sink = createOutputSink(
      options.output,
      { prefix, quarantinePrefix, zstdLevel: options.zstdLevel, maxObjectBytes: options.maxObjectBytes, maxObjectAgeMs: options.maxObjectAgeMs },
      { journal, clock, logger, metrics: deps.metrics },
      s3,
    );
    const validate = createValidate();
    const normalize = createNormalizeTime();
    const dedupe = createDedupe({ window });
    const stages: Array<Readable | Transform> = [source];
    if (deps.metrics !== undefined) {
      const count = countReceived(deps.metrics, clock);
      stages.push(count);
      // The counter passes batches straight on: the time it waits is the source's.
      measureBackpressure(count, validate, 'source', deps.metrics);
      measureBackpressure(validate, normalize, 'validate', deps.metrics);
      measureBackpressure(normalize, dedupe, 'normalize_time', deps.metrics);
      measureBackpressure(dedupe, sink, 'dedupe', deps.metrics);
    }
    try {
      await pipeline([...stages, validate, normalize, dedupe, sink], { signal: stop.teardown.signal });
    } catch (err) {
      if (stop.timedOut && options.abortSignal?.aborted !== true) {
        // Stopped, with objects in flight aborted: what is committed stands.
      } else if (stop.teardown.signal.aborted) throw new AbortError('the replay was aborted; objects in flight were discarded', { cause: err });
      else throw err;
    }
    outcome = options.signal?.aborted === true ? 'stopped' : 'ok';
    const s = journal.session;
    return {
      fetched: s.fetched,
      events: s.events,
      quarantined: s.quarantined,
      duplicates: s.duplicates,
      objects: s.objects,
      keys: [...s.keys],
      finished: names.filter((n) => finished.has(n)),
      skipped,
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
      const s = journal?.session ?? { fetched: 0, events: 0, quarantined: 0, duplicates: 0, objects: 0 };
      await saveRunSummary(statePath, state, lock, { startedAt, finishedAt: new Date(clock.now()).toISOString(), outcome, ...s, failure }, logger);
    }
    if (ownsClient) s3?.destroy();
    lock.release();
  }
}
