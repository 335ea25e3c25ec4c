/**
 * dedupe: drops events whose `id` was already admitted, within a bounded window of recent ids,
 * and invalid records whose id was already quarantined (records without an id are all kept).
 *
 * In/out: Batch (valid events and quarantined records), or loose events and quarantine chunks (see src/chunks.ts). Each batch leaves with `duplicates` (how many it lost) and
 * `dedupeMark` (the window's admission count after it), which the checkpoint uses to save
 * exactly the ids of events that are in complete objects.
 * Memory: the window holds the last `windowSize` committed ids plus every id admitted since the
 * last commit (the events of the objects being written). At ~100 bytes a UUID (the string, its
 * Set entry and its FIFO slot), the default 100,000 ids take ~10 MB.
 * Backpressure: a plain Transform. Errors: none.
 */
import { Transform } from 'node:stream';
import { isBatch, isQuarantined } from '../chunks.js';
import type { Batch, PackedEvents } from '../types.js';

export interface DedupeOptions {
  /** Ids remembered after they are committed (and saved in the checkpoint). Default 100,000. */
  windowSize?: number;
  /** Ids to start with, oldest first, e.g. from a checkpoint. */
  initialIds?: readonly string[];
  /** Use this window instead of creating one (the pipeline shares it with the checkpoint). */
  window?: DedupeWindow;
  /** Batches buffered on each side of the stage. Default 1. */
  highWaterMark?: number;
}

export const DEFAULT_DEDUPE_WINDOW = 100_000;

/**
 * A FIFO window of ids. Ids get consecutive admission numbers ("marks"). Eviction happens only in
 * `commit(mark)`, so ids of events still on their way to an object are never forgotten early.
 */
export class DedupeWindow {
  readonly capacity: number;
  #ids: string[] = [];
  #head = 0;
  /** Admission number of `#ids[#head]`. */
  #first = 1;
  #total = 0;
  #set = new Set<string>();

  constructor(capacity = DEFAULT_DEDUPE_WINDOW, initialIds: readonly string[] = []) {
    if (!Number.isInteger(capacity) || capacity < 0) throw new RangeError('dedupe window size must be a whole number ≥ 0');
    this.capacity = capacity;
    for (const id of initialIds) this.admit(id);
    this.commit(this.#total);
  }

  /** Admission count so far; the mark of the most recent id. */
  get mark(): number {
    return this.#total;
  }

  /** Ids held now (committed window plus uncommitted). */
  get size(): number {
    return this.#set.size;
  }

  has(id: string): boolean {
    return this.#set.has(id);
  }

  /** Admits `id`; false if it is already in the window (a duplicate). */
  admit(id: string): boolean {
    if (this.#set.has(id)) return false;
    this.#set.add(id);
    this.#ids.push(id);
    this.#total++;
    return true;
  }

  /** Everything up to `mark` is durable: forget ids older than the last `capacity` of them. */
  commit(mark: number): void {
    const ids = this.#ids;
    while (this.#head < ids.length && this.#first <= mark - this.capacity) {
      this.#set.delete(ids[this.#head]!);
      this.#head++;
      this.#first++;
    }
    // Compact now and then so the array does not grow without bound.
    if (this.#head > 1024 && this.#head * 2 > ids.length) {
      this.#ids = ids.slice(this.#head);
      this.#head = 0;
    }
  }

  /** The ids with marks in (mark - capacity, mark], oldest first: what a checkpoint at `mark` saves. */
  snapshot(mark: number): string[] {
    const from = Math.max(this.#first, mark - this.capacity + 1);
    const start = this.#head + (from - this.#first);
    const end = this.#head + (mark - this.#first + 1);
    return end > start ? this.#ids.slice(start, end) : [];
  }
}

/**
 * The window entry of an invalid record that has a usable id (a non-empty string of at most 256
 * characters), kept apart from event ids so a valid event is never dropped for an invalid record
 * of the same id. Undefined without one: a record with no id cannot be told from another record
 * with the same content, so it is never dropped.
 */
function quarantineKey(record: unknown): string | undefined {
  if (typeof record !== 'object' || record === null) return undefined;
  const id = (record as { id?: unknown }).id;
  return typeof id === 'string' && id.length > 0 && id.length <= 256 ? `\u0000quarantined:${id}` : undefined;
}

/**
 * Drops duplicates from the batch in place and stamps it. Returns the batch. Events are
 * duplicates when their `id` was admitted; invalid records when an invalid record with the same
 * id was (the API re-delivers them too, e.g. in the overlap re-read after a rejected cursor).
 */
export function dedupeBatch(batch: Batch, window: DedupeWindow): Batch {
  const { events, quarantined } = batch;
  let kept = 0;
  for (let i = 0; i < events.length; i++) {
    const event = events[i]!;
    if (window.admit(event.id)) events[kept++] = event;
  }
  let duplicates = events.length - kept;
  events.length = kept;
  if (batch.packed !== undefined) {
    const before = batch.packed.ids.length;
    batch.packed = dedupePacked(batch.packed, window);
    duplicates += before - (batch.packed?.ids.length ?? 0);
  }
  if (quarantined.length > 0) {
    let q = 0;
    for (let i = 0; i < quarantined.length; i++) {
      const entry = quarantined[i]!;
      const key = quarantineKey(entry.record);
      if (key === undefined || window.admit(key)) quarantined[q++] = entry;
    }
    duplicates += quarantined.length - q;
    quarantined.length = q;
  }
  batch.duplicates = (batch.duplicates ?? 0) + duplicates;
  batch.dedupeMark = window.mark;
  return batch;
}

/** Packed events (see PackedEvents) whose ids the window admits; undefined when none is. */
function dedupePacked(packed: PackedEvents, window: DedupeWindow): PackedEvents | undefined {
  const { ids } = packed;
  let keep: Uint8Array | undefined;
  let kept = 0;
  for (let i = 0; i < ids.length; i++) {
    if (window.admit(ids[i]!)) {
      kept++;
    } else {
      keep ??= new Uint8Array(ids.length).fill(1);
      keep[i] = 0;
    }
  }
  if (keep === undefined) return packed;
  if (kept === 0) return undefined;
  // Rare (re-deliveries): copy the kept lines into a buffer of their own.
  const { bytes, ends, timeMs } = packed;
  const out = Buffer.allocUnsafeSlow(ends[ends.length - 1]! - packed.start);
  const outEnds = new Uint32Array(kept);
  const outIds: string[] = [];
  const outTimes = new Float64Array(kept);
  let at = 0;
  for (let i = 0, k = 0; i < ids.length; i++) {
    if (keep[i] === 0) continue;
    const from = i === 0 ? packed.start : ends[i - 1]!;
    out.set(bytes.subarray(from, ends[i]!), at);
    at += ends[i]! - from;
    outEnds[k] = at;
    outIds.push(ids[i]!);
    outTimes[k++] = timeMs[i]!;
  }
  return { bytes: out.subarray(0, at), start: 0, ends: outEnds, ids: outIds, timeMs: outTimes };
}

/** Whether the window admits a loose chunk: an event by its id, a quarantine chunk by its record's id; anything without an id passes. */
export function admitLoose(chunk: unknown, window: DedupeWindow): boolean {
  if (isQuarantined(chunk)) {
    const key = quarantineKey(chunk.record);
    return key === undefined || window.admit(key);
  }
  const id = typeof chunk === 'object' && chunk !== null ? (chunk as { id?: unknown }).id : undefined;
  return typeof id !== 'string' || window.admit(id);
}

/** The dedupe stage, with its window and how many chunks' worth of duplicates it dropped. */
export type DedupeStage = Transform & {
  readonly window: DedupeWindow;
  /** Duplicates dropped so far (events and quarantined records). */
  readonly duplicates: number;
};

/**
 * The dedupe stage: a Transform of Batches (stamped for the checkpoint, see dedupeBatch), or of
 * loose events and quarantine chunks (see src/chunks.ts), where a duplicate is not passed on.
 * A stage that made its own window (no `window` option) also commits it as chunks pass, so it
 * remembers the last `windowSize` ids; a window passed in is committed by its owner (the
 * checkpoint, in runPipeline).
 */
export function createDedupe(options: DedupeOptions = {}): DedupeStage {
  const owned = options.window === undefined;
  const window = options.window ?? new DedupeWindow(options.windowSize ?? DEFAULT_DEDUPE_WINDOW, options.initialIds);
  const hwm = options.highWaterMark ?? 1;
  let duplicates = 0;
  const stage = new Transform({
    objectMode: true,
    readableHighWaterMark: hwm,
    writableHighWaterMark: hwm,
    transform(chunk: unknown, _enc, cb) {
      if (isBatch(chunk)) {
        const before = chunk.duplicates ?? 0;
        dedupeBatch(chunk, window);
        duplicates += (chunk.duplicates ?? 0) - before;
        if (owned) window.commit(window.mark);
        cb(null, chunk);
        return;
      }
      const admitted = admitLoose(chunk, window);
      if (owned) window.commit(window.mark);
      if (admitted) cb(null, chunk);
      else {
        duplicates++;
        cb();
      }
    },
  });
  return Object.defineProperties(stage, {
    window: { value: window, enumerable: true },
    duplicates: { get: () => duplicates, enumerable: true },
  }) as DedupeStage;
}
