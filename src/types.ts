/**
 * Chunk types that travel between stages.
 *
 * Every edge of the pipeline carries one {@link Batch} per chunk: a page of the events-stream API
 * (at most 500 records), or a slice of one. Batching per page, not per event, keeps the
 * per-chunk cost of Node streams (a few microseconds) off each event.
 */

/**
 * An audit event as the events-stream API returns it. Unknown keys are kept as received.
 * Events the source parsed also carry their text as received under the non-enumerable symbol
 * `RAW_TEXT` (src/sources/page-scan.ts), which the sink writes as their line: a stage that changes
 * an event in place must set `event[RAW_TEXT] = undefined`.
 */
export interface AuditEvent {
  /** The event's id: what dedupe keys on (at most `maxIdLength` characters, 256 by default). */
  id: string;
  /** The resource type, `events` from the events-stream API. */
  type: string;
  /** `time` (RFC 3339; canonical `YYYY-MM-DDTHH:mm:ss.sssZ` after normalize-time), `processedAt`, `action`, and the rest as received. */
  attributes: {
    time: string;
    processedAt?: string;
    action?: string;
    [key: string]: unknown;
  };
  /** Links as received (`self`, `alt`). */
  links: Record<string, unknown>;
  [key: string]: unknown;
}

/** Marks an event object with its text as received (set by src/sources/page-scan.ts, written by the sink). */
export const RAW_TEXT: unique symbol = Symbol('atlassian-audit-pipeline.rawText');

/** An object that may carry its text as received, under RAW_TEXT (not enumerable). */
export interface WithRawText {
  /** The object's JSON text as received (one line), or undefined once the object was changed. */
  [RAW_TEXT]?: string | undefined;
}

/**
 * Valid, normalised events already written as JSON lines (see src/sources/page-process.ts): what
 * the source hands downstream in place of event objects when it processed its pages itself.
 * Event `i` is `bytes[i === 0 ? start : ends[i - 1], ends[i])`, its line with the final `\n`.
 */
export interface PackedEvents {
  /** UTF-8 JSON lines; may be shared with other batches cut from the same page. */
  bytes: Uint8Array;
  /** Where the first event's line starts in `bytes`. */
  start: number;
  /** Where each event's line ends in `bytes` (after its `\n`). */
  ends: Uint32Array;
  /** Each event's `id`. */
  ids: string[];
  /** Each event's (canonical) `attributes.time`, epoch ms. */
  timeMs: Float64Array;
}

/** Where a quarantine reason says where its record came from: `id: missing (at audit.jsonl line 3)`. */
export const ORIGIN_MARK = ' (at ';

/** A quarantine reason with the record's origin (a file and line, say) after it. */
export function withOrigin(reason: string, origin: string | undefined): string {
  return origin === undefined ? reason : `${reason}${ORIGIN_MARK}${origin})`;
}

/** A record that failed validation, with the reason, as written to the quarantine prefix. */
export interface QuarantineRecord {
  /** Why the record was refused, field path first: `attributes.time: not RFC 3339`; a replayed record's origin at the end. */
  reason: string;
  /** The record exactly as received (any JSON value). */
  record: unknown;
}

/**
 * Where to resume reading the events stream. Exactly one of `cursor` or `from` is set.
 * `skip` counts records of the page fetched at that cursor (or `from`) that were already handled:
 * the API returns its last cursor again when a poller is caught up, and re-reading that page must
 * not hand the same records downstream twice.
 */
export interface Position {
  /** The events-stream cursor to request (opaque; replay uses `replay:part:NAME` / `replay:done:NAME`). */
  cursor?: string;
  /** Epoch milliseconds, used only before the first cursor is known. */
  from?: number;
  /** Records of the page at this position already handed downstream (replay: units of the input). */
  skip: number;
}

/** Whether two positions denote the same place in the stream. */
export function samePosition(a: Position, b: Position): boolean {
  return a.cursor === b.cursor && a.from === b.from && a.skip === b.skip;
}

/** One page, or a slice of one, on its way from the source to the sink. */
export interface Batch {
  /** Records as received. The source fills this; validate empties it into `events`/`quarantined`. */
  records: unknown[];
  /**
   * Where each of `records` came from, for a source that reads files (the replay source): e.g.
   * `audit.jsonl line 12`. validate adds it to the reason of a record it quarantines
   * (`id: missing (at audit.jsonl line 12)`, see withOrigin).
   */
  origins?: string[];
  /** Valid, normalised events, in API order. */
  events: AuditEvent[];
  /**
   * Valid, normalised events already written as lines, in API order, by a source that processes
   * its pages itself (validate and normalize-time pass them on unchanged; dedupe filters them;
   * the sink writes them before `events`).
   */
  packed?: PackedEvents;
  /** Invalid records with reasons, in API order. */
  quarantined: QuarantineRecord[];
  /** Resume position after this batch: everything up to here has been handed downstream. */
  position: Position;
  /**
   * UTC hour (epoch ms of the hour's start) of `attributes.processedAt` of the batch's records.
   * The source cuts pages at hour boundaries, so a batch never spans two hours.
   */
  hour: number;
  /** Highest `attributes.processedAt` seen in this batch (as received), if any. */
  lastProcessedAt?: string;
  /** Set by the dedupe stage: total ids it has admitted after this batch (see DedupeWindow). */
  dedupeMark?: number;
  /** Set by a quarantine-route stage: how many quarantined records it handed elsewhere. */
  routed?: number;
  /** Set by the dedupe stage: how many events it dropped from this batch as duplicates. */
  duplicates?: number;
  /**
   * How many records the source delivered in this batch. Set by validate when it moves `records`
   * into `events`/`quarantined`. The sink checks fetched = events + quarantined + duplicates + routed.
   */
  fetched?: number;
  /** Set by the source on the last batch of a poll (the one that caught up with the stream). */
  pollEnd?: PollEnd;
}

/** What the source knows about a poll when it catches up; the sink adds what it wrote and logs it. */
export interface PollEnd {
  /** When the poll's first request was made, epoch ms. */
  startedMs: number;
  /** Pages fetched in the poll (retries not counted). */
  pages: number;
  /** Records received in the poll. */
  records: number;
  /** From the poll's start to catching up, ms. */
  durationMs: number;
  /** When the next poll starts (following only), epoch ms. */
  nextPollAtMs?: number;
}
