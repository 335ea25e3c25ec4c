/**
 * Realistic input for the benches: the simulator's audit events, served as the API's 500-record
 * pages, parsed and cut into Batches the way the source cuts them.
 *
 * The events come from the simulator's own generator (EventLog, the one behind
 * `createSimulator`), with its default rates: ~1 % malformed records, ~0.5 % identical
 * re-deliveries, 5 % late events, `attributes.time` in every RFC 3339 spelling, non-ASCII names.
 * A fixed seed and a fixed clock make the input identical on every run, so runs differ only by
 * the code and the machine.
 */
import { EventLog } from '../../src/simulator/log.js';
import { DEFAULT_ORG_ID, MAX_LIMIT } from '../../src/simulator/options.js';
import { parsePage } from '../../src/sources/atlassian-events.js';
import { hourOf, parseRfc3339 } from '../../src/time.js';
import type { Batch } from '../../src/types.js';

export interface AuditStream {
  /** Page bodies, as the events-stream API sends them. */
  pages: string[];
  /** UTF-8 bytes of all page bodies. */
  pageBytes: number;
  /** Records in the stream (valid, malformed and re-delivered). */
  records: number;
  /**
   * The pages parsed and cut into Batches at UTC-hour changes of `processedAt`, as the source
   * does: at most 500 records each, `records` filled, everything else empty.
   */
  batches: Batch[];
}

/** The simulator's default rates (src/simulator/index.ts). */
const RATES = { malformedRate: 0.01, duplicateRate: 0.005, duplicateVariantRate: 0, lateRate: 0.05, maxRedeliveryDistance: 2000 };
/** A fixed "now", so processedAt values (and the hour cuts) do not depend on when the bench runs. */
const NOW = Date.parse('2026-03-02T12:00:00.000Z');
const SPAN_MS = 6 * 3_600_000;
const LINK_BASE = 'https://api.atlassian.com';

function cursor(p: number): string {
  // Shaped like the simulator's cursors (opaque base64url); only its size matters here.
  return Buffer.from(JSON.stringify({ p, s: 'asc', e: 0, mac: 'f3a9c1d27b4e8a06' })).toString('base64url');
}

/** The UTC hour of a raw record's processedAt (else time), or undefined: what the source cuts on. */
function hourOfRecord(record: unknown): number | undefined {
  if (typeof record !== 'object' || record === null) return undefined;
  const attrs = (record as { attributes?: unknown }).attributes;
  if (typeof attrs !== 'object' || attrs === null) return undefined;
  const { processedAt, time } = attrs as { processedAt?: unknown; time?: unknown };
  const ms = typeof processedAt === 'string' ? parseRfc3339(processedAt) : typeof time === 'string' ? parseRfc3339(time) : undefined;
  return ms === undefined ? undefined : hourOf(ms);
}

/** `records` records of the simulated stream (seeded), as pages and as Batches. */
export function auditStream(records: number, seed: number | string = 'bench'): AuditStream {
  const log = new EventLog(seed, DEFAULT_ORG_ID, LINK_BASE, RATES);
  // Re-deliveries come on top of the fresh records: the log holds at least `records` texts.
  log.fill(records, NOW - SPAN_MS, SPAN_MS);
  const pages: string[] = [];
  const batches: Batch[] = [];
  let pageBytes = 0;
  let hour = hourOf(NOW - SPAN_MS);
  for (let start = 0; start < records; start += MAX_LIMIT) {
    const end = Math.min(records, start + MAX_LIMIT);
    const texts: string[] = [];
    for (let i = start; i < end; i++) texts.push(log.store.text(i));
    const self = `${LINK_BASE}/admin/v1/orgs/${DEFAULT_ORG_ID}/events-stream?cursor=${cursor(start)}&limit=${MAX_LIMIT}`;
    const next = `${LINK_BASE}/admin/v1/orgs/${DEFAULT_ORG_ID}/events-stream?cursor=${cursor(end)}&limit=${MAX_LIMIT}`;
    const body = `{"data":[${texts.join(',')}],"meta":${JSON.stringify({ next: cursor(end), page_size: end - start })},"links":${JSON.stringify({ self, prev: null, next })}}`;
    pages.push(body);
    pageBytes += Buffer.byteLength(body);
    const page = parsePage(body);
    if (typeof page === 'string') throw new Error(`bench page ${start / MAX_LIMIT} does not parse: ${page}`);
    let cut = 0;
    const emit = (to: number): void => {
      batches.push({ records: page.records.slice(cut, to), events: [], quarantined: [], position: { cursor: cursor(start), skip: cut }, hour });
      cut = to;
    };
    for (let i = 0; i < page.records.length; i++) {
      const h = hourOfRecord(page.records[i]);
      if (h !== undefined && h !== hour) {
        if (i > cut) emit(i);
        hour = h;
      }
    }
    emit(page.records.length);
  }
  return { pages, pageBytes, records, batches };
}
