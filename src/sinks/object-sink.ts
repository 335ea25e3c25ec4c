/**
 * object-sink: the Writable end of the pipeline. Batches → JSON lines → zstd → an ObjectStore
 * (S3 multipart uploads, or files in a local directory).
 *
 * In: Batch (validated, normalised, deduplicated); or, without a journal, loose chunks (see
 *     src/chunks.ts: an event, JSON text, or a quarantine chunk), each checked like validate does
 *     and written as a batch of one. Events (lines the source already wrote,
 *     `packed`, copied as they are; then event objects, each as its text as received or
 *     serialised) go to an object under `prefix`,
 *     quarantine records to an object under `quarantinePrefix`, both named
 *     `<prefix>YYYY/MM/DD/HH/<name>.json.zst` for the batch's UTC hour of processedAt.
 * Objects: an "epoch" is the set of objects (one per kind, opened lazily) being written now.
 *     It closes when the events object reaches `maxObjectBytes` compressed, when it is
 *     `maxObjectAgeMs` old, when a batch of another hour arrives, when a poll has caught up (the
 *     batch carrying the source's `pollEnd`), or at end of input.
 *     Closing waits for every object of the epoch to be complete, then calls `journal.commit`
 *     with the position after the epoch's last batch: the checkpoint never runs ahead of S3.
 * Exactly once: `journal.reserve` records each key before its upload starts. After a crash the
 *     journal hands the same keys to the first epoch again, so the replayed events overwrite the
 *     object they may already be in, rather than land in a second one.
 * Memory: one batch in hand; per open object ~2.5 MB of input inside the zstd process (outside
 *     the Node heap) plus ~0.4 MB of stream buffers; and the store's buffers (for S3:
 *     partSize × queueSize per open upload).
 * Backpressure: `_write` calls back only when the compressor accepted the batch; the compressor
 *     stalls when the store stops reading, so a slow upload stops the source.
 * Errors/destroy: any write or upload error aborts every open upload (including the server-side
 *     multipart upload) and fails the stream with SinkError; nothing is committed.
 * Logs: one "object complete" line per object, and one "poll complete" line per poll (when the
 *     batch carrying the source's `pollEnd` is handled, after the poll's objects are complete).
 */
import { PassThrough, Transform, Writable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import { systemClock, type Clock } from '../clock.js';
import { describeError, SinkError } from '../errors.js';
import { zstdCompress } from '../zstd.js';
import { silentLogger, type Logger } from '../log.js';
import { quarantineReasonClass, type PipelineMetrics } from '../metrics.js';
import { recordText, TOO_DEEP, truncateDepth } from '../record-text.js';
import { formatCanonical, hourOf, hourPath, parseRfc3339 } from '../time.js';
import { isBatch, isQuarantined } from '../chunks.js';
import { HOUR_UNKNOWN, recordTimes } from '../sources/page-process.js';
import { validateLoose } from '../transforms/validate.js';
import { RAW_TEXT, samePosition, type Batch, type PollEnd, type Position, type WithRawText } from '../types.js';

export type ObjectKind = 'events' | 'quarantine';

/** The position of a loose chunk's batch: none that could be committed (a sink with a journal refuses loose chunks). */
const LOOSE_POSITION: Position = Object.freeze({ skip: 0 });

/** One object being written. The sink writes compressed bytes to `body` and ends it. */
export interface ObjectUpload {
  /** Where the sink writes the object's zstd-compressed bytes; it ends the stream when the object closes. */
  readonly body: NodeJS.WritableStream & Writable;
  /** Resolves when the object exists in full; rejects if it never will. */
  readonly done: Promise<void>;
  /** Stops the upload and removes every trace of it (e.g. the S3 multipart upload). */
  abort(): Promise<void>;
}

/** Where objects go. */
export interface ObjectStore {
  /** Starts writing the object `key`; the sink streams its bytes into the returned upload. */
  open(key: string, kind: ObjectKind): ObjectUpload;
  /** Removes incomplete uploads left for `key` by an earlier process. */
  abortIncomplete(key: string): Promise<void>;
  /** For logs and summaries: `s3://bucket/key` or a path. */
  describe(key: string): string;
  /**
   * Optional start-up check, run before the first API request: that objects can be written under
   * each prefix. Throws (a SinkError, ideally) with one line saying what to fix.
   */
  check?(prefixes: readonly string[], stop?: AbortSignal): Promise<void>;
}

/** What the sink tells the checkpoint. */
export interface EpochCommit {
  /** Position after the epoch's last batch: everything before it is in complete objects. */
  position: Position;
  /** Latest `attributes.processedAt` (RFC 3339, as received) in the epoch's batches; undefined if none had one. */
  lastProcessedAt: string | undefined;
  /** DedupeWindow mark after the epoch's last batch, if a dedupe stage stamped the batches. */
  dedupeMark: number | undefined;
  /** Records received from the source in this epoch's batches: events + quarantined + duplicates. */
  fetched: number;
  /** Events written to the epoch's events object. */
  events: number;
  /** Records written to the epoch's quarantine object. */
  quarantined: number;
  /** Events the dedupe stage dropped from the epoch's batches. */
  duplicates: number;
  /** Keys of the objects completed in this epoch. */
  keys: string[];
}

/** The checkpoint side of the sink. Without one, the sink names objects itself and commits nothing. */
export interface SinkJournal {
  /** Picks the key for a new object and records it durably before any byte is uploaded. */
  reserve(kind: ObjectKind, hour: number): Promise<string>;
  /** Keys reserved by a crashed run that the first epoch must rewrite (possibly empty). */
  pendingKeys(): Partial<Record<ObjectKind, string>>;
  /** Everything up to `commit.position` is in complete objects. */
  commit(commit: EpochCommit): Promise<void>;
}

export interface ObjectSinkOptions {
  /** Key prefix for event objects, e.g. `atlassian/audit/`. Only event objects go under it. */
  prefix: string;
  /** Key prefix for quarantine objects. Must not overlap `prefix`. */
  quarantinePrefix: string;
  /** zstd level, 1–19. Default 3. */
  zstdLevel?: number;
  /** Close an object once this many compressed bytes were written. Default 32 MiB. */
  maxObjectBytes?: number;
  /** Close an object this long after it was opened. Default 300,000 (5 minutes). */
  maxObjectAgeMs?: number;
  /** Batches buffered before the sink. Default 1. */
  highWaterMark?: number;
}

export interface ObjectSinkDeps {
  /** Where objects are written. */
  store: ObjectStore;
  /**
   * The checkpoint: names keys and records commits. Without one the sink names objects itself,
   * commits nothing, and also accepts loose chunks.
   */
  journal?: SinkJournal;
  /** Time source for object age and metric timestamps. Default: the system clock. */
  clock?: Clock;
  /** Where completed and aborted objects, and poll results, are logged. Default: no logging. */
  logger?: Logger;
  /** Metrics and health state to update. Default: none. */
  metrics?: PipelineMetrics;
}

/** Counts compressed bytes on their way to the store. */
class ByteCounter extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null, d?: Buffer) => void): void {
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

interface OpenObject {
  kind: ObjectKind;
  key: string;
  zstd: Duplex;
  counter: ByteCounter;
  upload: ObjectUpload;
  /** Settles when bytes stopped flowing and the store says the object is complete. */
  complete: Promise<void>;
  rawBytes: number;
  records: number;
  /** Set before this sink aborts the upload, so the failure it causes is not counted as an upload error. */
  aborting: boolean;
}

/** What a commit needs: the position and counts of the batches since the last commit. */
interface Tally {
  position: Position | undefined;
  lastProcessedAt: string | undefined;
  dedupeMark: number | undefined;
  fetched: number;
  events: number;
  quarantined: number;
  duplicates: number;
}

interface Epoch extends Tally {
  hour: number;
  openedAt: number;
  objects: Partial<Record<ObjectKind, OpenObject>>;
  /** Quarantined records by reason class (the metric's label). */
  quarantinedBy: Map<string, number>;
  /** Greatest canonical `attributes.time` among the epoch's events (24-character ISO strings compare as instants). */
  newestTime: string | undefined;
}

/** What the "poll complete" log line reports besides the source's PollEnd. */
interface PollTally {
  events: number;
  quarantined: number;
  duplicates: number;
  objects: number;
  bytes: number;
}

/** The greatest canonical (24-character, UTC) `attributes.time` among `events` and `known`. */
function newestTime(events: readonly { attributes: { time: unknown } }[], known: string | undefined): string | undefined {
  let best = known;
  for (let i = 0; i < events.length; i++) {
    const t = events[i]!.attributes.time;
    if (typeof t === 'string' && t.length === 24 && t.endsWith('Z') && (best === undefined || t > best)) best = t;
  }
  return best;
}

/** `known`, or the canonical time of the greatest of `timeMs` when that is later. */
function newestPackedTime(timeMs: Float64Array, known: string | undefined): string | undefined {
  let max = -Infinity;
  for (let i = 0; i < timeMs.length; i++) if (timeMs[i]! > max) max = timeMs[i]!;
  const t = max === -Infinity ? undefined : formatCanonical(max);
  return t !== undefined && (known === undefined || t > known) ? t : known;
}

/**
 * JSON lines for `records`. `JSON.stringify` is recursive: a record nested a few thousand levels
 * deep (JSON.parse accepts it) throws RangeError. Such records are handed to `onUnserialisable`
 * instead of failing the batch, which would fail every retry of the same page forever.
 */
function serialize(records: readonly unknown[], onUnserialisable: (record: unknown) => void): string {
  try {
    let out = '';
    for (let i = 0; i < records.length; i++) out += `${recordText(records[i])}\n`;
    return out;
  } catch {
    let out = '';
    for (const r of records) {
      try {
        out += `${recordText(r)}\n`;
      } catch (err) {
        // Only a record too deep for the recursion is the record's fault. Anything else (a text
        // over V8's string limit, say) fails the batch rather than quarantine a valid event.
        if (!(err instanceof RangeError && /call stack/i.test(err.message))) throw err;
        onUnserialisable(r);
      }
    }
    return out;
  }
}

export class ObjectSink extends Writable {
  readonly #prefix: string;
  readonly #quarantinePrefix: string;
  readonly #level: number;
  readonly #maxBytes: number;
  readonly #maxAgeMs: number;
  readonly #store: ObjectStore;
  readonly #journal: SinkJournal | undefined;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #metrics: PipelineMetrics | undefined;
  readonly #runId = randomBytes(4).toString('hex');
  #seq = 0;
  #epoch: Epoch | undefined;
  /** Position/commit data of batches that arrived while no epoch was open. */
  #idle: Tally | undefined;
  /**
   * Keys a crashed run reserved. The next object of each kind reuses its key, overwriting what
   * the crashed run may have completed there with the same events replayed from the checkpoint.
   */
  #redo: Partial<Record<ObjectKind, string>>;
  /** Serialises writes, age-triggered closes and the final flush. */
  #queue: Promise<void> = Promise.resolve();
  #ageTimer: NodeJS.Timeout | undefined;
  /** Set by _destroy: work still in flight must stop at its next step, never open or commit. */
  #gone = false;
  #poll: PollTally = { events: 0, quarantined: 0, duplicates: 0, objects: 0, bytes: 0 };
  /** Position of the last batch handled. */
  #lastPosition: Position | undefined;
  /** Totals over the sink's life, in complete objects. */
  readonly totals = { fetched: 0, events: 0, quarantined: 0, duplicates: 0, objects: 0, bytes: 0, keys: [] as string[] };

  constructor(options: ObjectSinkOptions, deps: ObjectSinkDeps) {
    super({ objectMode: true, highWaterMark: options.highWaterMark ?? 1 });
    this.#prefix = options.prefix;
    this.#quarantinePrefix = options.quarantinePrefix;
    this.#level = options.zstdLevel ?? 3;
    if (!Number.isInteger(this.#level) || this.#level < 1 || this.#level > 19) throw new RangeError('zstd level must be 1–19');
    this.#maxBytes = options.maxObjectBytes ?? 32 * 1024 * 1024;
    this.#maxAgeMs = options.maxObjectAgeMs ?? 300_000;
    this.#store = deps.store;
    this.#journal = deps.journal;
    this.#clock = deps.clock ?? systemClock;
    this.#logger = deps.logger ?? silentLogger;
    this.#metrics = deps.metrics;
    this.#redo = { ...(deps.journal?.pendingKeys() ?? {}) };
  }

  #serial(fn: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(() => {
      this.#alive();
      return fn();
    });
    this.#queue = next.catch(() => {});
    return next;
  }

  override _write(chunk: unknown, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    let batch: Batch;
    if (isBatch(chunk)) batch = chunk;
    else if (this.#journal !== undefined) {
      cb(new SinkError('this sink commits a checkpoint, so it takes Batches only: a loose event or record carries no position to commit (see src/chunks.ts)'));
      return;
    } else batch = this.#looseBatch(chunk);
    this.#serial(() => this.#handle(batch)).then(() => cb(), (err: unknown) => cb(this.#wrap(err)));
  }

  /**
   * A batch of one for a loose chunk (see src/chunks.ts): a quarantine chunk is quarantined; any
   * other chunk is checked as validate would (JSON text is parsed first), so nothing that is not a
   * valid event reaches the events prefix. Its hour is that of its processedAt (else its time,
   * else the open object's hour, else now).
   */
  #looseBatch(chunk: unknown): Batch {
    const checked = validateLoose(chunk);
    const q = isQuarantined(checked);
    let hour = recordTimes(q ? checked.record : checked).hour;
    if (hour === HOUR_UNKNOWN) hour = this.#epoch?.hour ?? hourOf(this.#clock.now());
    return {
      records: [],
      events: q ? [] : [checked],
      quarantined: q ? [{ reason: checked.reason, record: checked.record }] : [],
      fetched: 1,
      position: LOOSE_POSITION,
      hour,
    };
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.#serial(async () => {
      await this.#close('end');
      await this.#commitIdle();
    }).then(() => cb(), (err: unknown) => cb(this.#wrap(err)));
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.#gone = true;
    clearTimeout(this.#ageTimer);
    const abortOpen = async (): Promise<void> => {
      const epoch = this.#epoch;
      this.#epoch = undefined;
      if (epoch !== undefined) await this.#abortEpoch(epoch);
    };
    // Abort what is open (which unblocks a write waiting on it), let in-flight work notice #gone,
    // then abort anything it opened in the meantime.
    abortOpen()
      .then(() => Promise.race([this.#queue, new Promise((r) => setTimeout(r, 10_000).unref())]))
      .then(abortOpen)
      .then(() => cb(err), () => cb(err));
  }

  /** Throws once the sink is destroyed; called after every await that could outlive it. */
  #alive(): void {
    if (this.#gone) throw new SinkError('the sink was destroyed');
  }

  #wrap(err: unknown): Error {
    return err instanceof SinkError ? err : new SinkError(`writing objects failed: ${describeError(err)}`, { cause: err });
  }

  async #handle(batch: Batch): Promise<void> {
    // A poll that found nothing new ends with an empty batch at the same position: nothing to
    // commit (saving the same checkpoint every poll would hide a stuck position).
    const nothing = batch.records.length === 0 && batch.events.length === 0 && batch.quarantined.length === 0 && (batch.duplicates ?? 0) === 0 && (batch.fetched ?? 0) === 0;
    if (!(nothing && this.#lastPosition !== undefined && samePosition(batch.position, this.#lastPosition))) await this.#write(batch);
    this.#lastPosition = batch.position;
    this.#poll.duplicates += batch.duplicates ?? 0;
    if (batch.pollEnd === undefined) return;
    // The poll caught up: its objects are completed now (one object per poll and hour), so an
    // event is in the store within one poll of being served, rather than up to maxObjectAgeMs
    // later. maxObjectAgeMs still bounds a long catch-up.
    await this.#close('poll');
    // Nothing is left waiting in an open object: the pipeline is making progress (readiness).
    if (this.#metrics !== undefined) this.#metrics.health.lastProgressMs = this.#clock.now();
    this.#logPoll(batch.pollEnd);
  }

  #logPoll(end: PollEnd): void {
    const t = this.#poll;
    this.#logger.info('poll complete', {
      pages: end.pages,
      records: end.records,
      events: t.events,
      quarantined: t.quarantined,
      duplicates: t.duplicates,
      objects: t.objects,
      bytes: t.bytes,
      durationMs: Math.round(end.durationMs),
      nextPollAt: end.nextPollAtMs === undefined ? null : new Date(end.nextPollAtMs).toISOString(),
    });
    this.#poll = { events: 0, quarantined: 0, duplicates: 0, objects: 0, bytes: 0 };
  }

  async #write(batch: Batch): Promise<void> {
    // Every record the source delivered must be accounted for: written, quarantined or counted
    // as a duplicate. A batch that does not add up (a stage missing, e.g. no validate before the
    // sink, or a stage that lost records) would drop events silently, so it fails the run.
    const fetched = batch.records.length + (batch.fetched ?? 0);
    const packed = batch.packed;
    const packedCount = packed?.ids.length ?? 0;
    const eventTotal = batch.events.length + packedCount;
    const accounted = eventTotal + batch.quarantined.length + (batch.duplicates ?? 0) + (batch.routed ?? 0);
    if (fetched !== accounted) {
      const routed = batch.routed === undefined ? '' : ` + ${batch.routed} routed elsewhere`;
      throw new SinkError(
        `a batch does not reconcile: ${fetched} records received but ${eventTotal} events + ` +
          `${batch.quarantined.length} quarantined + ${batch.duplicates ?? 0} duplicates${routed} (is validate before the sink?)`,
      );
    }
    const hasContent = eventTotal > 0 || batch.quarantined.length > 0;
    let epoch = this.#epoch;
    if (epoch !== undefined && hasContent && (batch.hour !== epoch.hour || this.#expired(epoch))) {
      await this.#close(batch.hour !== epoch.hour ? 'hour' : 'age');
      this.#alive();
      epoch = undefined;
    }
    if (!hasContent) {
      // Only the position moved (or every record was a duplicate): ride along with the open
      // epoch, or remember it for the next commit.
      this.#note(epoch ?? this.#idleState(), batch);
      if (epoch === undefined) await this.#commitIdle();
      return;
    }
    epoch ??= this.#open(batch.hour);
    let eventsText = '';
    let eventCount = 0;
    let tooDeepEvents: Set<unknown> | undefined;
    if (batch.events.length > 0) {
      const before = batch.quarantined.length;
      eventsText = serialize(batch.events, (record) => {
        (tooDeepEvents ??= new Set()).add(record);
        batch.quarantined.push({ reason: TOO_DEEP, record: truncateDepth(record) });
      });
      eventCount = batch.events.length - (batch.quarantined.length - before);
    }
    let quarantineText = '';
    if (batch.quarantined.length > 0) {
      let tooDeep = false;
      quarantineText = serialize(batch.quarantined, () => { tooDeep = true; });
      if (tooDeep) {
        // An invalid record can be too deep as well: keep a truncated copy, with both reasons.
        batch.quarantined = batch.quarantined.map((q) => {
          try {
            JSON.stringify(q);
            return q;
          } catch {
            return { reason: `${q.reason}; ${TOO_DEEP}`, record: truncateDepth(q.record) };
          }
        });
        quarantineText = serialize(batch.quarantined, () => {});
      }
    }
    if (packed !== undefined && packedCount > 0) {
      // Lines the source already wrote (see PackedEvents): straight into the compressor.
      const obj = epoch.objects.events ?? (await this.#openObject(epoch, 'events'));
      const { bytes, start, ends } = packed;
      await this.#writeTo(obj, Buffer.from(bytes.buffer, bytes.byteOffset + start, ends[ends.length - 1]! - start), packedCount);
      epoch.events += packedCount;
      this.#poll.events += packedCount;
      if (this.#metrics !== undefined) epoch.newestTime = newestPackedTime(packed.timeMs, epoch.newestTime);
    }
    if (eventCount > 0) {
      const obj = epoch.objects.events ?? (await this.#openObject(epoch, 'events'));
      await this.#writeTo(obj, eventsText, eventCount);
      epoch.events += eventCount;
      this.#poll.events += eventCount;
      if (this.#metrics !== undefined) {
        const written = tooDeepEvents === undefined ? batch.events : batch.events.filter((e) => !tooDeepEvents!.has(e));
        epoch.newestTime = newestTime(written, epoch.newestTime);
      }
    }
    if (batch.quarantined.length > 0) {
      const obj = epoch.objects.quarantine ?? (await this.#openObject(epoch, 'quarantine'));
      await this.#writeTo(obj, quarantineText, batch.quarantined.length);
      epoch.quarantined += batch.quarantined.length;
      this.#poll.quarantined += batch.quarantined.length;
      if (this.#metrics !== undefined) {
        for (const q of batch.quarantined) {
          const c = quarantineReasonClass(q.reason);
          epoch.quarantinedBy.set(c, (epoch.quarantinedBy.get(c) ?? 0) + 1);
        }
      }
    }
    this.#note(epoch, batch);
    const events = epoch.objects.events;
    if (events !== undefined && events.counter.bytes >= this.#maxBytes) await this.#close('size');
  }

  #idleState(): Tally {
    this.#idle ??= { position: undefined, lastProcessedAt: undefined, dedupeMark: undefined, fetched: 0, events: 0, quarantined: 0, duplicates: 0 };
    return this.#idle;
  }

  #note(target: Tally, batch: Batch): void {
    target.position = batch.position;
    // The newest, not the latest: re-deliveries at the end of a page keep their old processedAt.
    if (batch.lastProcessedAt !== undefined && (target.lastProcessedAt === undefined || (parseRfc3339(batch.lastProcessedAt) ?? -Infinity) > (parseRfc3339(target.lastProcessedAt) ?? -Infinity))) {
      target.lastProcessedAt = batch.lastProcessedAt;
    }
    if (batch.dedupeMark !== undefined) target.dedupeMark = batch.dedupeMark;
    target.duplicates += batch.duplicates ?? 0;
    target.fetched += batch.records.length + (batch.fetched ?? 0);
  }

  #expired(epoch: Epoch): boolean {
    return this.#clock.now() - epoch.openedAt >= this.#maxAgeMs;
  }

  #open(hour: number): Epoch {
    const idle = this.#idle;
    this.#idle = undefined;
    const epoch: Epoch = {
      hour,
      openedAt: this.#clock.now(),
      objects: {},
      position: idle?.position,
      lastProcessedAt: idle?.lastProcessedAt,
      dedupeMark: idle?.dedupeMark,
      fetched: idle?.fetched ?? 0,
      events: 0,
      quarantined: 0,
      duplicates: idle?.duplicates ?? 0,
      quarantinedBy: new Map(),
      newestTime: undefined,
    };
    this.#epoch = epoch;
    // Close on age even when no more batches arrive (a quiet log between polls).
    this.#ageTimer = setTimeout(() => {
      this.#serial(async () => {
        if (this.#epoch === epoch) await this.#close('age');
      }).catch((err: unknown) => this.destroy(this.#wrap(err)));
    }, this.#maxAgeMs);
    this.#ageTimer.unref();
    return epoch;
  }

  async #key(kind: ObjectKind, hour: number): Promise<string> {
    if (this.#journal !== undefined) return this.#journal.reserve(kind, hour);
    const prefix = kind === 'events' ? this.#prefix : this.#quarantinePrefix;
    this.#seq++;
    return `${prefix}${hourPath(hour)}/${this.#runId}-${String(this.#seq).padStart(6, '0')}.json.zst`;
  }

  async #openObject(epoch: Epoch, kind: ObjectKind): Promise<OpenObject> {
    let key = this.#redo[kind];
    if (key !== undefined) {
      delete this.#redo[kind];
      // An earlier process may have left a multipart upload for this key: remove it first.
      await this.#store.abortIncomplete(key);
    } else {
      key = await this.#key(kind, epoch.hour);
    }
    // --single-thread: the CLI's default worker thread compresses multi-MB jobs, so output lags
    // input by megabytes (size limits overshoot) and ~10 MB of input sits in the process when
    // the store stalls; single-threaded it streams block by block and holds ~2.5 MB.
    this.#alive();
    const zstd = await zstdCompress(this.#level, ['--single-thread']);
    if (this.#gone) {
      zstd.destroy();
      this.#alive();
    }
    const counter = new ByteCounter();
    const upload = this.#store.open(key, kind);
    const flowing = pipeline(zstd, counter, upload.body);
    // Both must succeed; if either fails, the other is torn down by #abortEpoch.
    const complete = Promise.all([flowing, upload.done]).then(() => undefined);
    const obj: OpenObject = { kind, key, zstd, counter, upload, complete, rawBytes: 0, records: 0, aborting: false };
    // Observed in #close / #abortEpoch; counted here once, unless this sink caused it by aborting.
    complete.catch(() => {
      if (!obj.aborting) this.#metrics?.uploadErrors.inc({ kind });
    });
    epoch.objects[kind] = obj;
    this.#logger.debug('object opened', { kind, key });
    return obj;
  }

  async #writeTo(obj: OpenObject, text: string | Buffer, records: number): Promise<void> {
    // Encoded once: Buffer.byteLength and then write(text) would each walk (and the first
    // flatten) the batch's text, a rope of up to 500 lines.
    const bytes = typeof text === 'string' ? Buffer.from(text) : text;
    obj.rawBytes += bytes.length;
    obj.records += records;
    if (!obj.zstd.write(bytes)) {
      const since = this.#clock.now();
      await new Promise<void>((resolve, reject) => {
        const onDrain = (): void => { obj.zstd.off('error', onError); obj.zstd.off('close', onClose); resolve(); };
        const onError = (e: Error): void => { obj.zstd.off('drain', onDrain); obj.zstd.off('close', onClose); reject(e); };
        const onClose = (): void => { obj.zstd.off('drain', onDrain); obj.zstd.off('error', onError); reject(new SinkError('the compressor closed')); };
        obj.zstd.once('drain', onDrain);
        obj.zstd.once('error', onError);
        obj.zstd.once('close', onClose);
        // The upload may fail while we wait for the compressor to drain.
        obj.complete.catch(reject);
      }).finally(() => this.#metrics?.backpressureSeconds.inc({ stage: 'sink' }, (this.#clock.now() - since) / 1000));
    }
  }

  /** Completes every object of the open epoch, then commits. */
  async #close(reason: 'size' | 'age' | 'hour' | 'poll' | 'end'): Promise<void> {
    clearTimeout(this.#ageTimer);
    const epoch = this.#epoch;
    if (epoch === undefined) return;
    const objects = Object.values(epoch.objects);
    // Per object: from the end of its input to complete in the store (the last parts and
    // CompleteMultipartUpload, or fsync and rename): what S3's speed shows in.
    const endedAt = this.#clock.now();
    const finishSeconds = new Map<OpenObject, number>();
    try {
      for (const obj of objects) obj.zstd.end();
      await Promise.all(objects.map((o) => o.complete.then(() => finishSeconds.set(o, (this.#clock.now() - endedAt) / 1000))));
    } catch (err) {
      this.#epoch = undefined;
      await this.#abortEpoch(epoch);
      throw err;
    }
    this.#epoch = undefined;
    for (const obj of objects) {
      this.totals.bytes += obj.counter.bytes;
      this.#poll.objects++;
      this.#poll.bytes += obj.counter.bytes;
      this.#logger.info('object complete', { kind: obj.kind, object: this.#store.describe(obj.key), records: obj.records, bytes: obj.counter.bytes, reason });
    }
    this.totals.fetched += epoch.fetched;
    this.totals.events += epoch.events;
    this.totals.quarantined += epoch.quarantined;
    this.totals.duplicates += epoch.duplicates;
    this.totals.objects += objects.length;
    this.totals.keys.push(...objects.map((o) => o.key));
    await this.#commit(epoch, objects.map((o) => o.key));
    // Metrics move only once the epoch is committed: a commit that fails is redone by the next
    // run (or the restarted pipeline), which counts it then.
    const m = this.#metrics;
    if (m === undefined) return;
    for (const obj of objects) {
      m.objectsWritten.inc({ kind: obj.kind });
      m.objectBytes(obj.kind, obj.counter.bytes, obj.rawBytes);
      m.uploadSeconds.observe(finishSeconds.get(obj) ?? 0);
    }
    if (epoch.events > 0) m.eventToObjectSeconds.observe((this.#clock.now() - epoch.openedAt) / 1000);
    m.eventsWritten.inc(epoch.events);
    for (const [reason, n] of epoch.quarantinedBy) m.eventsQuarantined.inc({ reason }, n);
    m.eventsDuplicate.inc(epoch.duplicates);
    const h = m.health;
    if (epoch.events > 0) {
      h.lastWrittenMs = this.#clock.now();
      h.written += epoch.events;
    }
    const p = epoch.lastProcessedAt === undefined ? undefined : parseRfc3339(epoch.lastProcessedAt);
    if (p !== undefined && (h.newestProcessedAtMs === undefined || p > h.newestProcessedAtMs)) h.newestProcessedAtMs = p;
    const t = epoch.newestTime === undefined ? undefined : parseRfc3339(epoch.newestTime);
    if (t !== undefined && (h.newestEventTimeMs === undefined || t > h.newestEventTimeMs)) h.newestEventTimeMs = t;
  }

  async #commitIdle(): Promise<void> {
    const idle = this.#idle;
    if (idle?.position === undefined) return;
    this.#idle = undefined;
    this.totals.duplicates += idle.duplicates;
    this.totals.fetched += idle.fetched;
    await this.#commit(idle, []);
    this.#metrics?.eventsDuplicate.inc(idle.duplicates);
  }

  async #commit(state: Tally, keys: string[]): Promise<void> {
    this.#alive();
    if (this.#journal === undefined || state.position === undefined) return;
    await this.#journal.commit({
      position: state.position,
      lastProcessedAt: state.lastProcessedAt,
      dedupeMark: state.dedupeMark,
      fetched: state.fetched,
      events: state.events,
      quarantined: state.quarantined,
      duplicates: state.duplicates,
      keys,
    });
    if (this.#metrics !== undefined) {
      this.#metrics.checkpoints.inc();
      this.#metrics.health.lastCheckpointMs = this.#metrics.health.lastProgressMs = this.#clock.now();
    }
  }

  async #abortEpoch(epoch: Epoch): Promise<void> {
    clearTimeout(this.#ageTimer);
    const objects = Object.values(epoch.objects);
    await Promise.all(
      objects.map(async (obj) => {
        obj.aborting = true;
        obj.zstd.destroy();
        try {
          await obj.upload.abort();
          this.#metrics?.uploadAborts.inc();
          this.#logger.warn('object upload aborted', { kind: obj.kind, object: this.#store.describe(obj.key) });
        } catch (err) {
          this.#logger.error('could not abort an object upload; the next run removes it', {
            object: this.#store.describe(obj.key),
            error: describeError(err),
          });
        }
      }),
    );
  }
}

export function createObjectSink(options: ObjectSinkOptions, deps: ObjectSinkDeps): ObjectSink {
  return new ObjectSink(options, deps);
}

/** A PassThrough sized for compressed bytes on their way to a store. */
export function createBody(): PassThrough {
  return new PassThrough({ highWaterMark: 256 * 1024 });
}
