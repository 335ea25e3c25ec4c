/**
 * The two kinds of chunk the stages take, so that each one also works in a stream someone else
 * built (see "Use as a library" in the README):
 *
 * - a {@link Batch}: what the pipeline's own edges carry (a page, or a slice of one, with the
 *   position the checkpoint commits);
 * - a loose chunk: one record, one event, or one {@link QuarantinedChunk}, as
 *   `Readable.from(array)` or a user's Transform would produce.
 *
 * Every stage answers in the kind it was given: a Batch for a Batch, loose chunks for a loose
 * chunk. Loose chunks carry no position, so a sink that commits a checkpoint refuses them.
 */
import type { Batch, QuarantineRecord } from './types.js';

/** Brands a loose quarantine chunk; `Symbol.for`, so that two copies of this package agree. */
const QUARANTINED: unique symbol = Symbol.for('atlassian-audit-pipeline.quarantined') as never;

/** A record a stage refused, travelling as a chunk of its own (loose mode). */
export interface QuarantinedChunk extends QuarantineRecord {
  /** Brand, always `true`: marks the object as a loose quarantine chunk (see {@link isQuarantined}). */
  readonly [QUARANTINED]: true;
}

/** A loose quarantine chunk for `record`, refused for `reason`. */
export function quarantined(reason: string, record: unknown): QuarantinedChunk {
  return { reason, record, [QUARANTINED]: true };
}

/** Whether `chunk` is a loose quarantine chunk (made by {@link quarantined}). */
export function isQuarantined(chunk: unknown): chunk is QuarantinedChunk {
  return typeof chunk === 'object' && chunk !== null && (chunk as { [QUARANTINED]?: unknown })[QUARANTINED] === true;
}

/**
 * Whether `chunk` is a {@link Batch} (rather than a loose record, event or quarantine chunk): the
 * Batch fields with their types, and no `id` (every audit event has one, a Batch never does, so
 * an event that happens to carry such fields is still an event).
 */
export function isBatch(chunk: unknown): chunk is Batch {
  if (typeof chunk !== 'object' || chunk === null || Object.hasOwn(chunk, 'id')) return false;
  const b = chunk as Partial<Batch>;
  return Array.isArray(b.records) && Array.isArray(b.events) && Array.isArray(b.quarantined) && typeof b.hour === 'number' && typeof b.position === 'object' && b.position !== null;
}

/** A loose record given as JSON text (a string or bytes, one trailing newline allowed), parsed; or why it cannot be. */
export function parseLooseText(chunk: string | Uint8Array): { record: unknown } | { reason: string; text: string } {
  let text = typeof chunk === 'string' ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
  if (text.endsWith('\n')) text = text.slice(0, text.endsWith('\r\n') ? -2 : -1);
  try {
    return { record: JSON.parse(text) as unknown };
  } catch (err) {
    return { reason: `not JSON: ${(err as Error).message}`, text };
  }
}
