/**
 * replay: a pull-based Readable over archives of audit events (files, stdin, S3 objects), read
 * one after another in the order given, so they go through the same validate → normalize-time →
 * dedupe → sink stages as API pages.
 *
 * In:  ReplayInputs (replay-inputs.ts): zstd, gzip or plain; JSON lines, a JSON array, an API
 *      page document, or API pages one per line (replay-read.ts tells them apart by content).
 * Out: Batch of raw `records` with their `origins` (`audit.jsonl line 12`), at most `batchSize`
 *      units each, cut where a record's UTC hour (processedAt, else time) changes; lines that are
 *      not JSON go straight to `quarantined` (counted in `fetched`). Every batch carries the
 *      input's position after it (replayPosition): units read so far, and `done` on the last
 *      batch of the input (an empty one for an empty input).
 * Memory: one batch being filled plus one unit read ahead (to know whether a batch is the
 *      input's last), `highWaterMark` 1 batch, and replay-read's stream buffers.
 * Backpressure: an input is read only while downstream pulls (`_read`); nothing is read ahead
 *      beyond the unit above and the streams' own buffers (a 64 KiB read, the zstd pipes).
 * Errors: an input that cannot be opened or read to its end (missing, truncated or corrupt
 *      compression, a JSON array or page document cut short) destroys the stream with
 *      InputError naming it; the batch being filled is dropped, so no batch after the error
 *      claims the input done. A bad line is not an error: it is quarantined.
 * Stop and destroy: `signal` ends the stream cleanly (not an error) at the next batch boundary,
 *      abandoning the batch being filled (resume re-reads it). destroy() destroys the input's
 *      streams first (the file, the S3 body, the zstd process), so nothing waits on a read.
 */
import type { Readable } from 'node:stream';
import { GeneratorReadable } from './generator-readable.js';
import { systemClock, type Clock } from '../clock.js';
import { ConfigError, InputError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { hourOf } from '../time.js';
import type { Batch, Position, QuarantineRecord } from '../types.js';
import { HOUR_UNKNOWN, recordTimes } from './page-process.js';
import { InputReader } from './replay-read.js';
import { errorDetail, type ReplayInput } from './replay-inputs.js';

export { fileInput, parseS3Url, s3Inputs, stdinInput, type ReplayInput } from './replay-inputs.js';
export { LONG_LINE_HEAD, MAX_LINE_BYTES } from './replay-read.js';

/** How far an input was read: saved by the caller per input name, given back as `resume`. */
export interface ReplayProgress {
  /** Units (non-blank lines, array or `data` elements) of the input already handed downstream. */
  records: number;
  /** The input was read to its end. */
  done: boolean;
}

/** Options of {@link createReplaySource}. */
export interface ReplaySourceOptions {
  /** Most units (records plus quarantined lines) per Batch. Default 500 (an API page). */
  batchSize?: number;
  /**
   * Progress from an earlier run, by input name. `done`: the input is skipped without being
   * opened. Otherwise its first `records` units are read and passed over (not emitted).
   * Default: nothing done.
   */
  resume?: Readonly<Record<string, ReplayProgress>>;
  /**
   * Ends the stream cleanly (not an error) at the next batch boundary: the input being read is
   * closed and the batch being filled is abandoned, so every batch emitted is complete.
   */
  signal?: AbortSignal;
}

/** Collaborators of {@link createReplaySource}, injected so tests need no patching. */
export interface ReplaySourceDeps {
  /** Logs each input opened, finished or skipped. Default: silent. */
  logger?: Logger;
  /** For the hour of batches before any record with a time. Default: the system clock. */
  clock?: Clock;
}

const CURSOR_PREFIX = 'replay:';

/**
 * A batch is also handed on once its lines hold this much text, whatever `batchSize` says, so
 * one batch (and the sink's text for it) stays small even with long lines.
 */
export const BATCH_BYTES = 16 * 1024 * 1024;

/**
 * The checkpoint position after `records` units of input `name`:
 * `{ cursor: 'replay:done:NAME' | 'replay:part:NAME', skip: records }`.
 */
export function replayPosition(name: string, records: number, done: boolean): Position {
  return { cursor: `${CURSOR_PREFIX}${done ? 'done' : 'part'}:${name}`, skip: records };
}

/** The input and progress a position from {@link replayPosition} names; undefined for any other position. */
export function readReplayPosition(p: Position): { name: string; records: number; done: boolean } | undefined {
  const c = p.cursor;
  if (c === undefined || p.from !== undefined || !c.startsWith(CURSOR_PREFIX)) return undefined;
  if (!Number.isSafeInteger(p.skip) || p.skip < 0) return undefined;
  const rest = c.slice(CURSOR_PREFIX.length);
  const done = rest.startsWith('done:');
  if (!done && !rest.startsWith('part:')) return undefined;
  const name = rest.slice(5);
  return name === '' ? undefined : { name, records: p.skip, done };
}

/** A batch being filled. */
class BatchBuilder {
  records: unknown[] = [];
  origins: string[] = [];
  quarantined: QuarantineRecord[] = [];
  /** Whether a record in it has a known hour (until then it can take any hour). */
  hasHour = false;
  /** Text bytes of its lines (JSON lines only; elements of a document are not measured). */
  bytes = 0;

  get size(): number {
    return this.records.length + this.quarantined.length;
  }

  take(position: Position, hour: number): Batch {
    const batch: Batch = {
      records: this.records,
      origins: this.origins,
      events: [],
      quarantined: this.quarantined,
      fetched: this.quarantined.length,
      position,
      hour,
    };
    this.records = [];
    this.origins = [];
    this.quarantined = [];
    this.hasHour = false;
    this.bytes = 0;
    return batch;
  }
}

class ReplayReadable extends GeneratorReadable {
  readonly #inputs: readonly ReplayInput[];
  readonly #batchSize: number;
  readonly #resume: Readonly<Record<string, ReplayProgress>>;
  readonly #stop: AbortSignal | undefined;
  readonly #logger: Logger;
  readonly #clock: Clock;
  /** Aborted first on destroy, so a pending open or read never holds up teardown. */
  readonly #destroyed = new AbortController();
  /** Aborted on destroy or stop: what `open` and the reader listen to. */
  readonly #signal: AbortSignal;
  /** The UTC hour of the last batch (HOUR_UNKNOWN before the first). */
  #hour = HOUR_UNKNOWN;

  constructor(inputs: readonly ReplayInput[], options: ReplaySourceOptions, deps: ReplaySourceDeps) {
    super(1);
    const batchSize = options.batchSize ?? 500;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
    for (const [name, p] of Object.entries(options.resume ?? {})) {
      if (!Number.isSafeInteger(p.records) || p.records < 0) throw new RangeError(`resume[${JSON.stringify(name)}].records must be a non-negative integer, got ${p.records}`);
    }
    // Progress is kept by name: an input given twice could not be resumed.
    const names = new Set<string>();
    for (const input of inputs) {
      if (names.has(input.name)) throw new ConfigError(`replay input ${input.name} is given twice`);
      names.add(input.name);
    }
    this.#inputs = [...inputs];
    this.#batchSize = batchSize;
    this.#resume = options.resume ?? {};
    this.#stop = options.signal;
    this.#logger = deps.logger ?? silentLogger;
    this.#clock = deps.clock ?? systemClock;
    this.#signal = options.signal === undefined ? this.#destroyed.signal : AbortSignal.any([this.#destroyed.signal, options.signal]);
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    // Destroys the open input's streams (see #readInput), so the generator's pending read fails
    // at once and return() does not wait behind it.
    this.#destroyed.abort();
    void this.endGenerator().then(() => cb(err));
  }

  get #ending(): boolean {
    return this.#signal.aborted;
  }

  protected override async *generate(): AsyncGenerator<Batch, void, undefined> {
    for (const input of this.#inputs) {
      if (this.#ending) return;
      const prior = Object.hasOwn(this.#resume, input.name) ? this.#resume[input.name] : undefined;
      if (prior?.done === true) {
        this.#logger.info('replay input skipped: done in an earlier run', { input: input.name, records: prior.records });
        continue;
      }
      yield* this.#readInput(input, prior?.records ?? 0);
    }
  }

  #batchHour(): number {
    if (this.#hour === HOUR_UNKNOWN) this.#hour = hourOf(this.#clock.now());
    return this.#hour;
  }

  async *#readInput(input: ReplayInput, skip: number): AsyncGenerator<Batch, void, undefined> {
    const name = input.name;
    const reader = new InputReader(name);
    const onAbort = (): void => reader.destroy();
    this.#signal.addEventListener('abort', onAbort, { once: true });
    try {
      let raw: Readable;
      try {
        raw = await input.open(this.#signal);
      } catch (err) {
        if (this.#ending) return;
        throw new InputError(name, `replay input ${name} cannot be opened (${errorDetail(err)})`, { cause: err });
      }
      if (this.#ending) {
        raw.destroy();
        return;
      }
      this.#logger.info('replay input opened', { input: name, ...(skip > 0 ? { skip } : {}) });
      const batch = new BatchBuilder();
      /** Units of this input handed over or passed over so far, once the skip is done. */
      let units = skip;
      let quarantined = 0;
      try {
        for await (const unit of reader.units(raw, skip)) {
          const hour = 'record' in unit ? recordTimes(unit.record).hour : HOUR_UNKNOWN;
          // The batch is handed on only when the next unit is in hand: the last one is then
          // known to be the input's last and carries `done`.
          if (batch.size >= this.#batchSize || batch.bytes >= BATCH_BYTES || (hour !== HOUR_UNKNOWN && batch.hasHour && hour !== this.#hour)) {
            yield batch.take(replayPosition(name, units, false), this.#batchHour());
            if (this.#ending) return;
          }
          if (hour !== HOUR_UNKNOWN) {
            // A batch of records without an hour so far takes the first known one.
            this.#hour = hour;
            batch.hasHour = true;
          }
          batch.bytes += unit.bytes ?? 0;
          if ('record' in unit) {
            batch.records.push(unit.record);
            batch.origins.push(unit.origin);
          } else {
            batch.quarantined.push(unit.bad);
            quarantined++;
          }
          units++;
        }
      } catch (err) {
        // A read failed because we stopped or were destroyed: not the input's fault.
        if (this.#ending) return;
        throw err;
      }
      if (this.#ending) return;
      if (reader.skipped < skip) {
        this.#logger.warn('replay input has fewer records than an earlier run read from it: has it changed?', { input: name, records: reader.skipped, resumedAt: skip });
        units = reader.skipped;
      }
      this.#logger.info('replay input read', {
        input: name,
        records: units,
        notJson: quarantined,
        compression: reader.compression ?? 'none',
        format: reader.format ?? 'empty',
      });
      yield batch.take(replayPosition(name, units, true), this.#batchHour());
    } finally {
      this.#signal.removeEventListener('abort', onAbort);
      reader.destroy();
    }
  }
}

/**
 * A Readable (object mode, highWaterMark 1) of Batches from `inputs`, read one after another in
 * the order given. See the file header for what each batch holds and how errors end it.
 * Throws ConfigError when two inputs have the same name, RangeError for a bad option.
 */
export function createReplaySource(inputs: readonly ReplayInput[], options: ReplaySourceOptions = {}, deps: ReplaySourceDeps = {}): Readable {
  return new ReplayReadable(inputs, options, deps);
}
