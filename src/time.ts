/**
 * RFC 3339 timestamps: parsing, canonical formatting, hour buckets, durations.
 *
 * Hand-written rather than `Date.parse`, which accepts many non-RFC-3339 strings ("2024-10-03",
 * "Oct 3 2024", "yesterday" on some engines) and rounds sub-millisecond digits instead of
 * truncating them.
 */

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

/**
 * Parses an RFC 3339 date-time to epoch milliseconds, truncating sub-millisecond digits.
 * Returns `undefined` for anything that is not RFC 3339 (including impossible dates).
 * A leap second (`:60`) is accepted and lands on the next second, as in most systems.
 */
export function parseRfc3339(value: string): number | undefined {
  if (value.length > 40) return undefined;
  const m = RFC3339.exec(value);
  if (m === null) return undefined;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = Number(m[6]);
  if (month < 1 || month > 12) return undefined;
  const dim = month === 2 && isLeap(year) ? 29 : DAYS_IN_MONTH[month - 1]!;
  if (day < 1 || day > dim) return undefined;
  if (hour > 23 || minute > 59 || second > 60) return undefined;
  // Truncate, never round: "…26.4579Z" is 26.457 s.
  const ms = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'));
  let offsetMinutes = 0;
  if (m[8] === undefined) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) return undefined;
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  // Date.UTC reads years 0–99 as 1900–1999; the setters take them as written.
  let t: number;
  if (year >= 100) {
    t = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  } else {
    const d = new Date(0);
    d.setUTCFullYear(year, month - 1, day);
    d.setUTCHours(hour, minute, second, ms);
    t = d.getTime();
  }
  return t - offsetMinutes * 60_000;
}

/** `YYYY-MM-DDTHH:mm:ss.sssZ`, or undefined if the instant is outside years 0000–9999. */
export function formatCanonical(epochMs: number): string | undefined {
  if (!Number.isFinite(epochMs) || epochMs < -62167219200000 || epochMs > 253402300799999) {
    return undefined;
  }
  return new Date(epochMs).toISOString();
}

const CANONICAL = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** True when the string is already in canonical form (so normalising would not change it). */
export function isCanonical(value: string): boolean {
  return value.length === 24 && CANONICAL.test(value) && parseRfc3339(value) !== undefined;
}

export const HOUR_MS = 3_600_000;

/** Start of the UTC hour containing `epochMs`. */
export function hourOf(epochMs: number): number {
  return Math.floor(epochMs / HOUR_MS) * HOUR_MS;
}

/** `YYYY/MM/DD/HH` for a UTC hour. */
export function hourPath(hourMs: number): string {
  const iso = new Date(hourMs).toISOString();
  return `${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}/${iso.slice(11, 13)}`;
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: HOUR_MS, d: 24 * HOUR_MS };

/** Parses `500ms`, `30s`, `5m`, `1h`, `7d` (one unit) into milliseconds; undefined if malformed. */
export function parseDuration(value: string): number | undefined {
  const m = DURATION.exec(value.trim());
  if (m === null) return undefined;
  const ms = Number(m[1]) * UNIT_MS[m[2]!]!;
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

/**
 * Parses a `--from` value: an RFC 3339 date-time, a bare date (`2026-01-31`, midnight UTC), or
 * epoch milliseconds. A number below 1e11 looks like epoch seconds, which the API silently reads
 * as 1970, so it is refused rather than guessed at.
 */
export function parseFrom(value: string): number | { error: string } {
  const v = value.trim();
  if (/^\d+$/.test(v)) {
    const n = Number(v);
    if (n < 1e11) return { error: `--from ${v} looks like epoch seconds; give epoch milliseconds or an ISO date` };
    return n;
  }
  const date = /^\d{4}-\d{2}-\d{2}$/.test(v) ? parseRfc3339(`${v}T00:00:00Z`) : parseRfc3339(v);
  if (date === undefined) return { error: `--from ${JSON.stringify(v)} is neither an ISO 8601 date-time nor epoch milliseconds` };
  return date;
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$/i;
const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3 };

/** Parses `5MiB`, `32MB`, `1048576` into bytes; undefined if malformed. */
export function parseSize(value: string): number | undefined {
  const m = SIZE.exec(value.trim());
  if (m === null) return undefined;
  const n = Number(m[1]) * SIZE_UNITS[(m[2] ?? 'b').toLowerCase()]!;
  return Number.isFinite(n) ? Math.floor(n) : undefined;
}
