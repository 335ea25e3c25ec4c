/**
 * unbatch: turns Batches into loose chunks (see src/chunks.ts), one event object or quarantine
 * chunk each, for a user's per-event Transform after the pipeline's own stages.
 *
 * In:  Batch (events as lines, `packed`, are parsed back into objects; event objects pass as
 *      they are). Loose chunks pass unchanged.
 * Out: the batch's events in order, then its quarantined records as quarantine chunks.
 *      Loose chunks carry no position: downstream of this stage no checkpoint is committed.
 * Memory: one batch's events at most (a page, ≤ 500). Backpressure: the next batch is taken only
 *      when the readable side has room again. Errors: none of its own.
 */
import { Transform } from 'node:stream';
import { isBatch, quarantined } from '../chunks.js';
import type { AuditEvent, PackedEvents } from '../types.js';

export interface UnbatchOptions {
  /** Chunks buffered on the readable side (the writable side holds 1 batch). Default 16. */
  highWaterMark?: number;
}

/** The events of packed lines, as objects. */
export function unpackEvents(packed: PackedEvents): AuditEvent[] {
  const { bytes, start, ends } = packed;
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: AuditEvent[] = [];
  for (let i = 0; i < ends.length; i++) out.push(JSON.parse(buf.toString('utf8', i === 0 ? start : ends[i - 1]!, ends[i]!)) as AuditEvent);
  return out;
}

/** The unbatch stage. */
export function createUnbatch(options: UnbatchOptions = {}): Transform {
  return new Transform({
    objectMode: true,
    readableHighWaterMark: options.highWaterMark ?? 16,
    writableHighWaterMark: 1,
    transform(chunk: unknown, _enc, cb) {
      if (!isBatch(chunk)) {
        cb(null, chunk);
        return;
      }
      if (chunk.packed !== undefined) for (const e of unpackEvents(chunk.packed)) this.push(e);
      for (const e of chunk.events) this.push(e);
      for (const q of chunk.quarantined) this.push(quarantined(q.reason, q.record));
      cb();
    },
  });
}
