/**
 * page-process: everything the pipeline does to one page of the events-stream API that needs the
 * parsed records, done in one pass so it can run off the main thread (see page-workers.ts).
 *
 * In:  the page body as received (bytes).
 * Out: a {@link ProcessedPage}: the cursor, each record's hour and processedAt (for the source's
 *      hour cuts and checkpoint), and the records split the way the validate and normalize-time
 *      stages split them: valid events as finished JSON lines in one UTF-8 buffer (their text as
 *      received, or re-serialised when normalize-time rewrote their time), and invalid records
 *      as quarantine entries with the same reasons the stages give. The valid events' ids travel
 *      beside the lines for dedupe, which stays on the main thread with the window.
 *
 * The functions are the stages' own (validateRecord, normalizeTime, parsePage with its
 * page-scan), so a page processed here and a page's records run through the Transform stages
 * give the same objects, the same lines and the same quarantine reasons.
 *
 * Errors: none for bad input. An unusable page is a reason string (the source retries it as
 * malformed); a bad record is a quarantine entry.
 */
import { hourOf, parseRfc3339 } from '../time.js';
import { normalizeTime } from '../transforms/normalize-time.js';
import { validateRecord } from '../transforms/validate.js';
import { recordText, TOO_DEEP, truncateDepth } from '../record-text.js';
import { RAW_TEXT, type AuditEvent, type PackedEvents, type WithRawText } from '../types.js';
import { isUtf8 } from 'node:buffer';
import { attachRawText, dataElementOffsets, timeValueRange } from './page-scan.js';

/** A page as parsed: its records and the cursor of the next page (null: none). */
export interface Page {
  records: unknown[];
  next: string | null;
  /**
   * Set when `meta.next` is a URL on another host than the API origin: that host's origin, and
   * `next` is null. The walk cannot go on without sending the key there, so it stops.
   */
  nextElsewhere?: string;
}

/** A record's UTC hour (epoch ms of its start) when neither processedAt nor time gives one. */
export const HOUR_UNKNOWN = -1;

/** 0000-01-01T00:00Z and 10000-01-01T00:00Z: instants outside cannot name a YYYY/ key (validate quarantines them). */
const MIN_KEY_MS = -62_167_219_200_000;
const MAX_KEY_MS = 253_402_300_800_000;

function inKeyRange(ms: number | undefined): number | undefined {
  return ms !== undefined && ms >= MIN_KEY_MS && ms < MAX_KEY_MS ? ms : undefined;
}

/**
 * The UTC hour a raw record belongs to (its processedAt, else its time, else unknown), and its
 * processedAt when that is valid: one parse of each field per record.
 */
export function recordTimes(record: unknown): { hour: number; processedAt: string | undefined; processedAtMs: number } {
  const none = { hour: HOUR_UNKNOWN, processedAt: undefined, processedAtMs: NaN };
  if (typeof record !== 'object' || record === null) return none;
  const attrs = (record as { attributes?: unknown }).attributes;
  if (typeof attrs !== 'object' || attrs === null) return none;
  const { processedAt, time } = attrs as { processedAt?: unknown; time?: unknown };
  const p = typeof processedAt === 'string' ? inKeyRange(parseRfc3339(processedAt)) : undefined;
  if (p !== undefined) return { hour: hourOf(p), processedAt: processedAt as string, processedAtMs: p };
  const t = typeof time === 'string' ? inKeyRange(parseRfc3339(time)) : undefined;
  return { hour: t === undefined ? HOUR_UNKNOWN : hourOf(t), processedAt: undefined, processedAtMs: NaN };
}

/** An absolute URL (scheme://). A cursor is opaque: base64 may start with "//", so that alone is no URL. */
export const LOOKS_LIKE_URL = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * Origins a pagination link may name besides --api-url: Atlassian's own API (a gateway in front of
 * it may pass its links through unchanged, and the key belongs there anyway).
 */
const ATLASSIAN_ORIGIN = 'https://api.atlassian.com';

/**
 * Where a pagination link points, when it is not on `origin`: an absolute URL's origin, else
 * undefined (a relative link, or an opaque cursor, stays on the API origin).
 */
export function foreignOrigin(link: string, origin: string): string | undefined {
  // Only what is unmistakably a URL: an opaque cursor may hold a colon or start with "//".
  if (!LOOKS_LIKE_URL.test(link)) return undefined;
  let url: URL;
  try {
    url = new URL(link);
  } catch {
    return 'an unparseable URL';
  }
  // "api.atlassian.com." is the same host as "api.atlassian.com".
  if (url.hostname.endsWith('.')) url.hostname = url.hostname.slice(0, -1);
  return url.origin === origin || url.origin === ATLASSIAN_ORIGIN ? undefined : url.origin;
}

/**
 * Parses a page body. Returns a reason string when it is not a usable page. With `origin` (the
 * configured API origin), the next page is always asked of `origin`: `meta.next` is the cursor,
 * or a URL on `origin` (or Atlassian's API) whose `cursor` is taken; a `meta.next` URL on
 * another host sets `nextElsewhere` instead. `links.next` is never followed, so where it points
 * does not matter (behind a proxy or gateway it names the upstream host).
 */
export function parsePage(text: string, origin?: string): Page | string {
  const page = parsePageJson(text, origin);
  // Each record's text as received, so the sink need not serialise it again.
  if (typeof page !== 'string') attachRawText(text, page.records);
  return page;
}

/** parsePage without marking the records with their text. */
function parsePageJson(text: string, origin?: string): Page | string {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return text.trimStart().startsWith('<') ? 'body is HTML, not JSON' : 'body is not valid JSON';
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return 'body is not a JSON object';
  const { data, meta } = json as { data?: unknown; meta?: unknown };
  if (!Array.isArray(data)) return '"data" is not an array';
  // A page without `meta` is broken, not the end: treating it as the end would stop a --once
  // run early. An absent or null `meta.next` is the end.
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) return '"meta" is missing or not an object';
  let next: string | null = null;
  const n = (meta as { next?: unknown }).next;
  if (n !== undefined && n !== null) {
    if (typeof n !== 'string' || n.length === 0 || n.length > 4096) return '"meta.next" is not a cursor string';
    next = n;
  }
  if (origin !== undefined && next !== null) {
    const foreign = foreignOrigin(next, origin);
    if (foreign !== undefined) return { records: data, next: null, nextElsewhere: foreign };
    // A same-origin URL where a cursor belongs: use the cursor it carries.
    if (LOOKS_LIKE_URL.test(next)) {
      const cursor = new URL(next, origin).searchParams.get('cursor');
      if (cursor === null || cursor === '') return '"meta.next" is a URL without a cursor';
      next = cursor;
    }
  }
  return { records: data, next };
}

/** The page body as text: UTF-8, without a byte order mark. */
export function pageText(body: Buffer): string {
  const text = body.toString('utf8');
  // A UTF-8 byte order mark (which RFC 8259 lets parsers ignore, and fetch's json() drops) would
  // make JSON.parse refuse every retry of the page.
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/**
 * An invalid record on its way to quarantine: `text` is the record's JSON (as received when the
 * page scan kept it), which the main thread parses back; `index` is its place on the page.
 */
export interface QuarantineEntry {
  /** The record's place on the page, 0-based. */
  index: number;
  /** Why it is quarantined, worded as the validate and normalize-time stages word it. */
  reason: string;
  /** The record's JSON: as received when the page scan kept it, else re-serialised (truncated if too deep). */
  text: string;
}

/** A page processed by {@link processPage}: all plain data and typed arrays, cheap to post between threads. */
export interface ProcessedPage {
  /** Cursor of the next page (`meta.next`, or the `cursor` of a next-page URL); null on the last page. */
  next: string | null;
  /** The origin `meta.next` points at when it is a URL on another host (see Page); else null. */
  nextElsewhere: string | null;
  /** Records on the page. */
  count: number;
  /** Per record: its UTC hour (HOUR_UNKNOWN when it has none). */
  hour: Float64Array;
  /** Per record: its processedAt as epoch ms, NaN when absent or invalid. */
  processedAtMs: Float64Array;
  /** Per record: its processedAt as received, when `processedAtMs` is a number. */
  processedAt: (string | null)[];
  /** Per record: 1 when it is a valid event (in `events`), 0 when it is quarantined. */
  valid: Uint8Array;
  /** The page's valid, normalised events, in page order. */
  events: PackedEvents;
  /** The page's invalid records, in page order. */
  quarantined: QuarantineEntry[];
}

export interface ProcessPageOptions {
  /** The API origin: a next page elsewhere sets `nextElsewhere` (see parsePage). */
  origin?: string;
  /** Most records a page may hold (the `limit` asked for). */
  pageSize: number;
  /** Longest `id` accepted (validate's option). Default 256. */
  maxIdLength?: number;
}

/**
 * Parses, validates and normalises one page, and writes its valid events as JSON lines.
 * Returns a reason string when the page itself is unusable.
 *
 * Most pages take the byte path (processBytes): a body that is valid UTF-8 and holds no `\u`
 * escape of a non-ASCII character is read as Latin-1 text. That reading is exact for JSON's
 * structure and for ASCII, and keeps every other character as its UTF-8 bytes, one character
 * per byte; it costs a copy where UTF-8 decoding costs a pass that is three times slower, and it
 * makes text offsets byte offsets, so an event's line is a copy of its bytes as received (with a
 * rewritten time spliced in). The few strings that leave this function (ids, quarantined
 * records) are decoded from their bytes. Any other page takes the text path (processText):
 * UTF-8 text, and `JSON.stringify` where the text as received cannot be used.
 */
export function processPage(body: Uint8Array, options: ProcessPageOptions): ProcessedPage | string {
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (byteReadable(buf)) {
    const r = processBytes(buf, options);
    if (r !== undefined) return r;
  }
  return processText(buf, options);
}

/** Whether reading `buf` as Latin-1 gives each non-ASCII character as its UTF-8 bytes (see processPage). */
function byteReadable(buf: Buffer): boolean {
  if (!isUtf8(buf)) return false;
  // \u0000–\u007f decode to ASCII either way; a higher escape would decode to one character
  // where the rest of the text has UTF-8 bytes, and the two could not be told apart.
  for (let i = buf.indexOf('\\u'); i >= 0; i = buf.indexOf('\\u', i + 2)) {
    if (!/^00[0-7][0-9a-fA-F]$/.test(buf.toString('latin1', i + 2, i + 6))) return false;
  }
  return true;
}

/** A string read as Latin-1 from UTF-8 bytes, decoded as it was meant. */
function fromBytes(s: string): string {
  return /[^\x00-\x7f]/.test(s) ? Buffer.from(s, 'latin1').toString('utf8') : s;
}

/**
 * The valid events' lines of a page, piece by piece: byte ranges of the body, and text (written
 * as Latin-1 on the byte path, which gives back its bytes; as UTF-8 on the text path).
 */
class LineWriter {
  readonly #encoding: 'latin1' | 'utf8';
  readonly #starts: number[] = [];
  readonly #ends: number[] = [];
  readonly #texts: (string | undefined)[] = [];
  /** Index into the pieces where each line ends. */
  readonly #lineEnds: number[] = [];
  #size = 0;

  constructor(encoding: 'latin1' | 'utf8') {
    this.#encoding = encoding;
  }

  range(from: number, to: number): void {
    this.#starts.push(from);
    this.#ends.push(to);
    this.#texts.push(undefined);
    this.#size += to - from;
  }

  text(s: string): void {
    this.#starts.push(0);
    this.#ends.push(0);
    this.#texts.push(s);
    this.#size += this.#encoding === 'latin1' ? s.length : Buffer.byteLength(s);
  }

  endLine(): void {
    this.#lineEnds.push(this.#texts.length);
    this.#size++;
  }

  /** The lines, each ending in "\n", in a buffer of their own; ends[i] is where line i ends. */
  finish(src: Buffer): { bytes: Buffer; ends: Uint32Array } {
    // Not from Buffer's shared pool: the whole ArrayBuffer is posted to another thread.
    const bytes = Buffer.allocUnsafeSlow(this.#size);
    const ends = new Uint32Array(this.#lineEnds.length);
    let at = 0;
    let piece = 0;
    for (let line = 0; line < this.#lineEnds.length; line++) {
      for (const last = this.#lineEnds[line]!; piece < last; piece++) {
        const t = this.#texts[piece];
        at += t === undefined ? src.copy(bytes, at, this.#starts[piece], this.#ends[piece]) : bytes.write(t, at, this.#encoding);
      }
      bytes[at++] = 0x0a;
      ends[line] = at;
    }
    return { bytes, ends };
  }
}

/** The byte path of processPage; undefined when the page must take the text path after all. */
function processBytes(buf: Buffer, options: ProcessPageOptions): ProcessedPage | string | undefined {
  // A byte order mark is dropped (see pageText); offsets below are into `text`, i.e. buf from `skip` on.
  const skip = buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
  const src = skip === 0 ? buf : buf.subarray(skip);
  const text = src.toString('latin1');
  const page = parsePageJson(text, options.origin);
  // The text path words the reason from the text as meant.
  if (typeof page === 'string') return undefined;
  // A non-ASCII cursor read here is bytes, or already decoded from a URL's %-escapes: which one,
  // only the text path knows.
  if (page.next !== null && /[^\x00-\x7f]/.test(page.next)) return undefined;
  // The other host is named in the error: the text path reads it as meant.
  if (page.nextElsewhere !== undefined) return undefined;
  const { records } = page;
  const n = records.length;
  if (n > options.pageSize) return tooMany(n, options.pageSize);
  const maxIdLength = options.maxIdLength ?? 256;
  let offsets = dataElementOffsets(text);
  if (offsets !== undefined && offsets.length !== n * 2) offsets = undefined;
  // A JSON line must not hold a line break; whitespace between tokens may.
  const breaks = text.includes('\n') || text.includes('\r');
  const out = new PageBuilder(n);
  const lines = new LineWriter('latin1');
  for (let i = 0; i < n; i++) {
    const record = records[i];
    out.times(i, record);
    const from = offsets === undefined ? -1 : offsets[2 * i]!;
    const to = offsets === undefined ? -1 : offsets[2 * i + 1]!;
    const checked = checkRecord(record, maxIdLength);
    if (typeof checked === 'string') {
      // The length was counted in bytes; in characters it may be within the limit.
      if (checked.startsWith('id: longer than') && /[^\x00-\x7f]/.test((record as { id: string }).id)) return undefined;
      out.quarantine(i, checked, record, to < 0 ? undefined : text.slice(from, to), fromBytes);
      continue;
    }
    const event = record as AuditEvent;
    const time = event.attributes.time;
    const canonical = checked.canonical;
    const usable = to >= 0 && !(breaks && /[\n\r]/.test(text.slice(from, to)));
    if (usable && canonical === time) {
      lines.range(from, to);
    } else {
      const at = usable ? timeValueRange(text, from, to) : undefined;
      if (at !== undefined && text.slice(at[0] + 1, at[1] - 1) === time) {
        lines.range(from, at[0] + 1);
        lines.text(canonical);
        lines.range(at[1] - 1, to);
      } else {
        event.attributes.time = canonical;
        let line: string;
        try {
          line = JSON.stringify(event);
        } catch {
          out.quarantine(i, TOO_DEEP, truncateDepth(event), undefined, fromBytes);
          continue;
        }
        lines.text(line);
      }
    }
    lines.endLine();
    out.event(i, fromBytes(event.id), canonical);
  }
  const { bytes, ends } = lines.finish(src);
  return out.finish(page, bytes, ends);
}

/** The text path of processPage: any page, UTF-8 text, lines as received or serialised. */
function processText(buf: Buffer, options: ProcessPageOptions): ProcessedPage | string {
  const page = parsePage(pageText(buf), options.origin);
  if (typeof page === 'string') return page;
  const { records } = page;
  const n = records.length;
  if (n > options.pageSize) return tooMany(n, options.pageSize);
  const out = new PageBuilder(n);
  const lines = new LineWriter('utf8');
  for (let i = 0; i < n; i++) {
    const record = records[i];
    out.times(i, record);
    const checked = checkRecord(record, options.maxIdLength ?? 256);
    if (typeof checked === 'string') {
      out.quarantine(i, checked, record, typeof record === 'object' && record !== null ? (record as WithRawText)[RAW_TEXT] : undefined);
      continue;
    }
    const event = record as AuditEvent;
    const { canonical } = checked;
    if (canonical !== event.attributes.time) {
      event.attributes.time = canonical;
      // The text as received no longer says what the event holds.
      (event as WithRawText)[RAW_TEXT] = undefined;
    }
    let line: string;
    try {
      line = recordText(event);
    } catch {
      out.quarantine(i, TOO_DEEP, truncateDepth(event), undefined);
      continue;
    }
    lines.text(line);
    lines.endLine();
    out.event(i, event.id, canonical);
  }
  const { bytes, ends } = lines.finish(buf);
  return out.finish(page, bytes, ends);
}

function tooMany(n: number, pageSize: number): string {
  return `page has ${n} records, more than the ${pageSize} asked for`;
}

/**
 * What validate and normalize-time make of a record: the reason it is quarantined, or the
 * canonical form of a valid event's time.
 */
function checkRecord(record: unknown, maxIdLength: number): string | { canonical: string } {
  const reason = validateRecord(record, maxIdLength);
  if (reason !== undefined) return reason;
  const canonical = normalizeTime((record as AuditEvent).attributes.time);
  return canonical === undefined ? 'attributes.time: not RFC 3339' : { canonical };
}

/** Collects a ProcessedPage record by record. */
class PageBuilder {
  readonly #hour: Float64Array;
  readonly #processedAtMs: Float64Array;
  readonly #processedAt: (string | null)[];
  readonly #valid: Uint8Array;
  readonly #quarantined: QuarantineEntry[] = [];
  readonly #ids: string[] = [];
  readonly #times: number[] = [];

  constructor(readonly count: number) {
    this.#hour = new Float64Array(count);
    this.#processedAtMs = new Float64Array(count);
    this.#processedAt = new Array<string | null>(count).fill(null);
    this.#valid = new Uint8Array(count);
  }

  /** Record `i`'s hour and processedAt (which, when valid, is ASCII). */
  times(i: number, record: unknown): void {
    const t = recordTimes(record);
    this.#hour[i] = t.hour;
    this.#processedAtMs[i] = t.processedAtMs;
    if (t.processedAt !== undefined) this.#processedAt[i] = t.processedAt;
  }

  /** Record `i` is invalid: `text` is its JSON as received, when known. */
  quarantine(i: number, reason: string, record: unknown, text: string | undefined, decode: (s: string) => string = (s) => s): void {
    if (text === undefined) {
      try {
        text = JSON.stringify(record);
      } catch {
        // Too deep for JSON.stringify: keep a truncated copy, with both reasons (as the sink does).
        this.#quarantined.push({ index: i, reason: reason === TOO_DEEP ? reason : `${reason}; ${TOO_DEEP}`, text: decode(JSON.stringify(truncateDepth(record))) });
        return;
      }
    }
    this.#quarantined.push({ index: i, reason, text: decode(text) });
  }

  /** Record `i` is a valid event, its line written. */
  event(i: number, id: string, canonicalTime: string): void {
    this.#valid[i] = 1;
    this.#ids.push(id);
    this.#times.push(Date.parse(canonicalTime));
  }

  finish(page: Page, bytes: Buffer, ends: Uint32Array): ProcessedPage {
    return {
      next: page.next,
      nextElsewhere: page.nextElsewhere ?? null,
      count: this.count,
      hour: this.#hour,
      processedAtMs: this.#processedAtMs,
      processedAt: this.#processedAt,
      valid: this.#valid,
      events: { bytes, start: 0, ends, ids: this.#ids, timeMs: Float64Array.from(this.#times) },
      quarantined: this.#quarantined,
    };
  }
}

/** Longest page tail guessNextCursor reads. */
const MAX_GUESS_TAIL = 64 * 1024;

/**
 * A cheap guess at the page's next cursor, from its tail alone: the API writes `meta` (and
 * `links`) after `data`, so the text from the last `"meta"` on is the rest of the page object.
 * Undefined when that does not hold. Only ever a guess: the caller checks it against the cursor
 * the full parse finds (processPage) before it uses a page fetched with it.
 */
export function guessNextCursor(body: Uint8Array, origin: string): string | undefined {
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const at = buf.lastIndexOf('"meta"');
  if (at < 0 || buf.length - at > MAX_GUESS_TAIL) return undefined;
  let tail: unknown;
  try {
    tail = JSON.parse(`{${buf.toString('utf8', at)}`);
  } catch {
    return undefined;
  }
  const next = (tail as { meta?: { next?: unknown } }).meta?.next;
  if (typeof next !== 'string' || next.length === 0 || next.length > 4096) return undefined;
  // A next page on another host ends the walk (see parsePage): fetch nothing on its word.
  if (foreignOrigin(next, origin) !== undefined) return undefined;
  if (!LOOKS_LIKE_URL.test(next)) return next;
  try {
    return new URL(next, origin).searchParams.get('cursor') ?? undefined;
  } catch {
    return undefined;
  }
}
