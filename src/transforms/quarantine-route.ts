/**
 * quarantine-route: takes quarantined records out of the stream and hands them to a place of the
 * user's choosing (stderr, a file, a queue), so the stream goes on with valid events only.
 *
 * In:  Batch: its `quarantined` records are handed over, counted in `routed`, and the batch goes
 *      on without them (the sink still reconciles every record). Loose quarantine chunks (see
 *      src/chunks.ts) are handed over and not passed on. Anything else passes unchanged.
 * Out: the same chunks, less their quarantined records.
 * Target: an object-mode Writable gets `{reason, record}` objects; a byte Writable (such as
 *      process.stderr) gets one JSON line each; a function is called with each record and may
 *      return a promise. The target is never ended by this stage.
 * Backpressure: a chunk is finished only once the target accepted its records (a Writable's
 *      `write()` returned true, or it drained; a function's promise resolved).
 * Errors: the target failing (an error event, or a function that throws or rejects) fails the
 *      stage with that error. Nothing is dropped.
 */
import { finished, Transform, type Writable } from 'node:stream';
import { isBatch, isQuarantined } from '../chunks.js';
import { TOO_DEEP, truncateDepth } from '../record-text.js';
import type { QuarantineRecord } from '../types.js';

export interface QuarantineRouteOptions {
  /**
   * Where quarantined records go: an object-mode Writable (gets `{reason, record}` objects), a
   * byte Writable (gets one JSON line each, e.g. `process.stderr`), or a function called with each
   * (awaited when it returns a promise).
   */
  to: Writable | ((record: QuarantineRecord) => void | Promise<void>);
  /** Chunks buffered on each side of the stage. Default 1. */
  highWaterMark?: number;
}

/** `{reason, record}` as one JSON line; a record too deep to serialise is kept truncated, with both reasons. */
export function quarantineLine(q: QuarantineRecord): string {
  try {
    return `${JSON.stringify({ reason: q.reason, record: q.record })}\n`;
  } catch {
    return `${JSON.stringify({ reason: `${q.reason}; ${TOO_DEEP}`, record: truncateDepth(q.record) })}\n`;
  }
}

/** Writes to `target` and waits while it is full; rejects if it fails or closes first. */
async function writeTo(target: Writable, value: unknown): Promise<void> {
  if (target.errored !== null) throw target.errored;
  if (target.destroyed || target.writableEnded) throw new Error('the quarantine target is closed');
  if (target.write(value)) return;
  await new Promise<void>((resolve, reject) => {
    const onDrain = (): void => {
      stop();
      resolve();
    };
    // finished() also reports a target destroyed or failed before (or while) we wait.
    const stopFinished = finished(target, { readable: false }, (err) => {
      stop();
      reject(err ?? new Error('the quarantine target closed'));
    });
    const stop = (): void => {
      target.off('drain', onDrain);
      stopFinished();
    };
    target.once('drain', onDrain);
  });
}

/** The quarantine-route stage. */
export function createQuarantineRoute(options: QuarantineRouteOptions): Transform {
  const { to } = options;
  const hwm = options.highWaterMark ?? 1;
  let failure: Error | undefined;
  let hand: (q: QuarantineRecord) => void | Promise<void>;
  let onError: ((err: Error) => void) | undefined;
  if (typeof to === 'function') hand = to;
  else {
    // Remember the target's error, and keep it from being an unhandled 'error' event.
    onError = (err) => {
      failure ??= err;
    };
    to.on('error', onError);
    const objectMode = to.writableObjectMode;
    hand = (q) => writeTo(to, objectMode ? { reason: q.reason, record: q.record } : quarantineLine(q));
  }
  const handAll = async (records: readonly QuarantineRecord[]): Promise<void> => {
    for (const q of records) {
      if (failure !== undefined) throw failure;
      await hand(q);
    }
    if (failure !== undefined) throw failure;
  };
  const stage = new Transform({
    objectMode: true,
    readableHighWaterMark: hwm,
    writableHighWaterMark: hwm,
    transform(chunk: unknown, _enc, cb) {
      let records: readonly QuarantineRecord[];
      let out: unknown;
      if (isBatch(chunk)) {
        records = chunk.quarantined;
        chunk.routed = (chunk.routed ?? 0) + records.length;
        chunk.quarantined = [];
        out = chunk;
      } else if (isQuarantined(chunk)) {
        records = [{ reason: chunk.reason, record: chunk.record }];
      } else {
        cb(null, chunk);
        return;
      }
      handAll(records).then(
        () => (out === undefined ? cb() : cb(null, out)),
        (err: unknown) => cb(err instanceof Error ? err : new Error(String(err))),
      );
    },
  });
  // A long-lived target (process.stderr) must not collect a listener per stage.
  if (onError !== undefined) stage.once('close', () => (to as Writable).off('error', onError!));
  return stage;
}
