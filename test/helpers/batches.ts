import { Readable, Writable } from 'node:stream';
import type { Batch } from '../../src/types.js';

let n = 0;
/** A valid audit event with a fresh id (or the given one). */
export function makeEvent(over: { id?: string; time?: string; processedAt?: string; extra?: Record<string, unknown> } = {}): Record<string, unknown> {
  n++;
  return {
    id: over.id ?? `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    type: 'events',
    attributes: {
      time: over.time ?? '2026-11-21T10:15:00.123Z',
      processedAt: over.processedAt ?? '2026-11-21T10:16:00.000Z',
      action: 'user_login',
      actor: { id: 'u1', name: 'Ada', email: 'ada@example.com', links: { self: 'https://x/u1' } },
      context: [{ id: 'c1', type: 'users', attributes: { a: 1 }, links: { alt: 'https://x/c1' } }],
      container: [],
      location: { ip: '192.0.2.1', countryName: 'Nowhere' },
      ...over.extra,
    },
    message: { content: 'Logged in', format: 'simple' },
    links: { self: 'https://api.atlassian.com/admin/v1/orgs/o/events/x' },
  };
}

export function batchOf(records: unknown[], hour = Date.parse('2026-11-21T10:00:00Z'), cursor = 'c'): Batch {
  return { records, events: [], quarantined: [], position: { cursor, skip: 0 }, hour };
}

/** Splits records into batches of `size`. */
export function rechunk(records: unknown[], size: number): Batch[] {
  const out: Batch[] = [];
  for (let i = 0; i < records.length; i += size) out.push(batchOf(records.slice(i, i + size), undefined, `c${i}`));
  return out;
}

export function source(batches: Batch[]): Readable {
  return Readable.from(batches, { objectMode: true });
}

/** A Writable collecting batches, optionally slow. */
export function collector(delayMs = 0): Writable & { batches: Batch[] } {
  const batches: Batch[] = [];
  const w = new Writable({
    objectMode: true,
    highWaterMark: 1,
    write(b: Batch, _e, cb) {
      batches.push(b);
      if (delayMs > 0) setTimeout(cb, delayMs);
      else cb();
    },
  });
  return Object.assign(w, { batches });
}

/** The lines of a batch's packed events (see PackedEvents), each parsed. */
export function packedEvents(b: Batch): unknown[] {
  const p = b.packed;
  if (p === undefined) return [];
  const buf = Buffer.from(p.bytes.buffer, p.bytes.byteOffset, p.bytes.byteLength);
  const out: unknown[] = [];
  for (let i = 0; i < p.ids.length; i++) out.push(JSON.parse(buf.toString('utf8', i === 0 ? p.start : p.ends[i - 1], p.ends[i])));
  return out;
}

/**
 * Every record a batch carries, parsed: records not yet validated, then valid events (packed,
 * then objects), then quarantined records. The events source hands its records over validated,
 * so for its batches this is the page's records, valid ones first.
 */
export function batchRecords(b: Batch): unknown[] {
  return [...b.records, ...packedEvents(b), ...b.events, ...b.quarantined.map((q) => q.record)];
}
