/**
 * normalize-time: rewrites `attributes.time` as the same instant in `YYYY-MM-DDTHH:mm:ss.sssZ`
 * (UTC, milliseconds, sub-millisecond digits truncated). Every other field is left as received.
 * An event whose time it rewrites loses its text as received (RAW_TEXT), so the sink serialises it.
 *
 * In/out: Batch, or loose events (see src/chunks.ts). Events are rewritten in place (the pipeline owns them after parsing). A batch's
 *     `packed` events (already normalised by the events source's page workers, which put the
 *     canonical time into the text as received) pass unchanged.
 * Memory: none beyond the batch in hand. Backpressure: a plain Transform.
 * Errors: an event whose time cannot be parsed (possible only when the stage is used without
 * validate in front) moves to `quarantined` with a reason; nothing is thrown or dropped.
 */
import { Transform } from 'node:stream';
import { formatCanonical, isCanonical, parseRfc3339 } from '../time.js';
import { isBatch, isQuarantined, quarantined } from '../chunks.js';
import { RAW_TEXT, type AuditEvent, type Batch, type WithRawText } from '../types.js';

export interface NormalizeTimeOptions {
  /** Batches buffered on each side of the stage. Default 1. */
  highWaterMark?: number;
}

/** The canonical form of an RFC 3339 string, or undefined if it is not one. */
export function normalizeTime(value: string): string | undefined {
  // A leap second ("…23:59:60.000Z") has the canonical shape but is not what toISOString prints,
  // and Date.parse reads it as NaN: it must be rewritten as the next second like "…:60Z" is.
  if (isCanonical(value) && value.charCodeAt(17) !== 0x36 /* '6' */) return value;
  const ms = parseRfc3339(value);
  return ms === undefined ? undefined : formatCanonical(ms);
}

const NOT_RFC3339 = 'attributes.time: not RFC 3339';

/** Normalises one event's time in place; false when it has no time that can be. */
export function normalizeEvent(event: AuditEvent): boolean {
  const attrs = (event as { attributes?: unknown }).attributes as Record<string, unknown> | undefined;
  const time = typeof attrs === 'object' && attrs !== null ? attrs['time'] : undefined;
  const canonical = typeof time === 'string' ? normalizeTime(time) : undefined;
  if (canonical === undefined) return false;
  if (canonical !== time) {
    attrs!['time'] = canonical;
    // The text as received no longer says what the event holds.
    if ((event as WithRawText)[RAW_TEXT] !== undefined) (event as WithRawText)[RAW_TEXT] = undefined;
  }
  return true;
}

/** Normalises every event of the batch in place. Returns the batch. */
export function normalizeBatch(batch: Batch): Batch {
  const { events } = batch;
  let kept = 0;
  for (let i = 0; i < events.length; i++) {
    const event = events[i]!;
    if (normalizeEvent(event)) events[kept++] = event;
    else batch.quarantined.push({ reason: NOT_RFC3339, record: event });
  }
  events.length = kept;
  return batch;
}

/**
 * The normalize-time stage: a Transform of Batches, or of loose events (see src/chunks.ts), each
 * coming out normalised or as a quarantine chunk; quarantine chunks pass unchanged.
 */
export function createNormalizeTime(options: NormalizeTimeOptions = {}): Transform {
  const hwm = options.highWaterMark ?? 1;
  return new Transform({
    objectMode: true,
    readableHighWaterMark: hwm,
    writableHighWaterMark: hwm,
    transform(chunk: unknown, _enc, cb) {
      if (isBatch(chunk)) cb(null, normalizeBatch(chunk));
      else if (isQuarantined(chunk)) cb(null, chunk);
      else cb(null, normalizeEvent(chunk as AuditEvent) ? chunk : quarantined(NOT_RFC3339, chunk));
    },
  });
}
