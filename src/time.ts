/**
 * RFC 3339 timestamps: parsing, canonical formatting, hour buckets, durations.
 *
 * Hand-written rather than `Date.parse`, which accepts many non-RFC-3339 strings ("2024-10-03",
 * "Oct 3 2024", "yesterday" on some engines) and rounds sub-millisecond digits instead of
 * truncating them.
 */

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
  // By hand, not a regular expression: this runs several times per event.
  // date-time = YYYY-MM-DD ("T" / "t" / " ") hh:mm:ss [ "." 1*DIGIT ] ("Z" / "z" / ("+" / "-") hh:mm)
  const n = value.length;
  if (n < 20 || n > 40) return undefined;
  const year = digits(value, 0, 4);
  const month = digits(value, 5, 2);
  const day = digits(value, 8, 2);
  const hour = digits(value, 11, 2);
  const minute = digits(value, 14, 2);
  const second = digits(value, 17, 2);
  if (year < 0 || month < 0 || day < 0 || hour < 0 || minute < 0 || second < 0) return undefined;
  const sep = value.charCodeAt(10);
  if (value.charCodeAt(4) !== 0x2d || value.charCodeAt(7) !== 0x2d || (sep !== 0x54 && sep !== 0x74 && sep !== 0x20)) return undefined;
  if (value.charCodeAt(13) !== 0x3a || value.charCodeAt(16) !== 0x3a) return undefined;
  let i = 19;
  // Truncate, never round: "…26.4579Z" is 26.457 s.
  let ms = 0;
  if (value.charCodeAt(i) === 0x2e /* . */) {
    const first = ++i;
    while (i < n && isDigit(value.charCodeAt(i))) {
      if (i - first < 3) ms = ms * 10 + (value.charCodeAt(i) - 0x30);
      i++;
    }
    const count = i - first;
    if (count === 0 || count > 9) return undefined;
    for (let k = count; k < 3; k++) ms *= 10;
  }
  let offsetMinutes = 0;
  const zone = value.charCodeAt(i);
  if (zone === 0x5a || zone === 0x7a /* Z z */) {
    if (i + 1 !== n) return undefined;
  } else if (zone === 0x2b || zone === 0x2d /* + - */) {
    if (i + 6 !== n || value.charCodeAt(i + 3) !== 0x3a) return undefined;
    const oh = digits(value, i + 1, 2);
    const om = digits(value, i + 4, 2);
    if (oh < 0 || om < 0 || oh > 23 || om > 59) return undefined;
    offsetMinutes = (zone === 0x2d ? -1 : 1) * (oh * 60 + om);
  } else {
    return undefined;
  }
  if (month < 1 || month > 12) return undefined;
  const dim = month === 2 && isLeap(year) ? 29 : DAYS_IN_MONTH[month - 1]!;
  if (day < 1 || day > dim) return undefined;
  if (hour > 23 || minute > 59 || second > 60) return undefined;
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

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** The decimal number of `count` digits at `at`, or -1 when any is not a digit. */
function digits(value: string, at: number, count: number): number {
  let v = 0;
  for (let i = at; i < at + count; i++) {
    const c = value.charCodeAt(i);
    if (!isDigit(c)) return -1;
    v = v * 10 + (c - 0x30);
  }
  return v;
}

/** `YYYY-MM-DDTHH:mm:ss.sssZ`, or undefined if the instant is outside years 0000–9999. */
export function formatCanonical(epochMs: number): string | undefined {
  if (!Number.isFinite(epochMs) || epochMs < -62167219200000 || epochMs > 253402300799999) {
    return undefined;
  }
  return new Date(epochMs).toISOString();
}

/** True when the string is already in canonical form (so normalising would not change it). */
export function isCanonical(value: string): boolean {
  // Exactly YYYY-MM-DDTHH:mm:ss.sssZ (upper-case T and Z, three fraction digits), and a real instant.
  return (
    value.length === 24 &&
    value.charCodeAt(10) === 0x54 &&
    value.charCodeAt(19) === 0x2e &&
    value.charCodeAt(23) === 0x5a &&
    parseRfc3339(value) !== undefined
  );
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
