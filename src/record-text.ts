/**
 * A record's JSON line: its text as received when the page scan kept it (RAW_TEXT), else
 * serialised; and what happens to a record too deep for `JSON.stringify` (it is quarantined as a
 * truncated copy). Shared by the page workers (src/sources/page-process.ts) and the sink.
 */
import { RAW_TEXT, type WithRawText } from './types.js';

/** The quarantine reason of a record `JSON.stringify` cannot write (see object-sink.ts). */
export const TOO_DEEP = 'record: nested too deeply to serialise as JSON';

/** How deep a quarantined copy of an unserialisable record is kept. */
const TRUNCATE_DEPTH = 256;

/** A copy of `value` with everything below `depth` levels replaced by a marker string. */
export function truncateDepth(value: unknown, depth = TRUNCATE_DEPTH): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (depth <= 0) return '[truncated: nested too deep]';
  if (Array.isArray(value)) return value.map((v) => truncateDepth(v, depth - 1));
  const out: Record<string, unknown> = {};
  // defineProperty, not assignment: a "__proto__" key would otherwise set the copy's prototype
  // and vanish from the quarantined record.
  for (const [k, v] of Object.entries(value)) Object.defineProperty(out, k, { value: truncateDepth(v, depth - 1), enumerable: true, writable: true, configurable: true });
  return out;
}

/** A record's text: as received when the page scan kept it (RAW_TEXT), else serialised (may throw RangeError when too deep). */
export function recordText(record: unknown): string {
  return (record as WithRawText)[RAW_TEXT] ?? JSON.stringify(record);
}
