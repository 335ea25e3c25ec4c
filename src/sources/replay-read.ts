/**
 * replay-read: one replay input's raw bytes → its units, each a record with its origin or a
 * quarantined line. Used by the replay source (replay.ts), which cuts the units into Batches.
 *
 * Compression is told by magic bytes, never by name: zstd (`28 B5 2F FD`, or a skippable frame)
 * goes through simple-zstd (the `zstd` CLI, which reads concatenated frames), gzip (`1F 8B`)
 * through zlib (which reads concatenated members); anything else is read as it is.
 * The format is told by the first significant byte of the text (after a UTF-8 BOM and
 * whitespace):
 *   `[`  a JSON array of records, streamed with stream-json   origin `NAME element i`
 *   `{`  whose first line is complete JSON: JSON lines          origin `NAME line N`
 *        (a line holding an API page, `{"data":[...]}` without `id`: its elements,
 *        origin `NAME line N data[i]`)
 *   `{`  whose first line is not: one API page document, its `data` streamed with stream-json
 *        origin `NAME data[i]`
 *   anything else: JSON lines (whose bad lines are quarantined).
 * A unit is one non-blank line or one array/`data` element; a page line is as many units as
 * it has elements.
 *
 * Memory: a chunk or two of each stream (64 KiB file reads, the zstd process's pipes, stream-json's
 * tokens of one chunk) plus the line or element in hand; a line over 64 MiB is not held, only its
 * first KiB. Detecting the format may hold the first line, up to 64 MiB.
 * Backpressure: units are pulled one at a time (async iteration); nothing is read ahead of that
 * beyond the streams' own buffers.
 * Errors: a stream that fails ends the units with InputError naming the input (a read error, a
 * truncated or corrupt compressed input, a JSON array or page document cut short or malformed).
 * A bad line is not an error: it is a unit to quarantine. `destroy()` destroys every stream the
 * reader opened, which also kills the zstd process.
 */
import { isUtf8 } from 'node:buffer';
import { pipeline, Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { zstdDecompress } from '../zstd.js';
import { pick } from 'stream-json/filters/pick.js';
import { streamArray } from 'stream-json/streamers/stream-array.js';
import { withParser } from 'stream-json/utils/with-parser.js';
import { InputError } from '../errors.js';
import { RAW_TEXT, withOrigin, type QuarantineRecord } from '../types.js';
import { isJsonSpace, timeValueRange } from './page-scan.js';

/** Longest line held whole; a longer one is quarantined with its first {@link LONG_LINE_HEAD} bytes. */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;
/** How much of an over-long line its quarantine record keeps. */
export const LONG_LINE_HEAD = 1024;

/** The quarantine reason of a line that is not UTF-8; its record is the line's bytes in base64. */
export const NOT_UTF8 = "not JSON: invalid UTF-8 (the record is the line's bytes in base64)";

/** One unit of an input: a record to validate, or a line that goes straight to quarantine. */
/** One record (or a bad line), with the size of its text when known (JSON lines), for batch budgets. */
export type Unit = ({ readonly record: unknown; readonly origin: string } | { readonly bad: QuarantineRecord }) & { readonly bytes?: number };

/** The input's text format (see the header); `empty`: no bytes after decompression. */
export type ReplayFormat = 'lines' | 'array' | 'page' | 'empty';

/** The compression found by magic bytes. */
export type ReplayCompression = 'zstd' | 'gzip' | 'none';

const NOOP = (): void => {};

/** Buffers from a stream's async iteration, with room to put some back (for sniffing). */
class ByteReader implements AsyncIterable<Buffer> {
  readonly #it: AsyncIterator<unknown>;
  readonly #back: Buffer[] = [];
  readonly #wrap: (err: unknown) => unknown;

  constructor(stream: Readable, wrap: (err: unknown) => unknown) {
    this.#it = stream[Symbol.asyncIterator]();
    this.#wrap = wrap;
  }

  /** The next chunk, or undefined at the end. Errors are passed through `wrap`. */
  async next(): Promise<Buffer | undefined> {
    const back = this.#back.pop();
    if (back !== undefined) return back;
    let r: IteratorResult<unknown>;
    try {
      r = await this.#it.next();
    } catch (err) {
      throw this.#wrap(err);
    }
    if (r.done === true) return undefined;
    const v = r.value;
    return Buffer.isBuffer(v) ? v : typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v as Uint8Array);
  }

  /** Puts chunks back, to be read again in the order given. */
  unshift(...chunks: Buffer[]): void {
    for (let i = chunks.length - 1; i >= 0; i--) if (chunks[i]!.length > 0) this.#back.push(chunks[i]!);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    for (let b = await this.next(); b !== undefined; b = await this.next()) yield b;
  }
}

/** Reads at least `n` bytes (fewer only at the end), puts them back as one chunk and returns it. */
async function peek(src: ByteReader, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  while (size < n) {
    const c = await src.next();
    if (c === undefined) break;
    chunks.push(c);
    size += c.length;
  }
  const joined = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
  src.unshift(joined);
  return joined;
}

/**
 * The compression `head` (the input's first bytes) shows: zstd for a zstd frame's magic
 * (28 B5 2F FD) or a skippable frame's (5? 2A 4D 18, which zstd also reads), gzip for 1F 8B.
 */
export function compressionOf(head: Uint8Array): ReplayCompression {
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  if (head.length >= 4 && (head[0]! & 0xf0) === 0x50 && head[1] === 0x2a && head[2] === 0x4d && head[3] === 0x18) return 'zstd';
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  return 'none';
}

function isBlank(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (!isJsonSpace(s.charCodeAt(i))) return false;
  return true;
}

/** Counts `\n` in `buf[from, to)`. */
function countNewlines(buf: Buffer, from: number, to: number): number {
  let n = 0;
  for (let i = buf.indexOf(0x0a, from); i >= 0 && i < to; i = buf.indexOf(0x0a, i + 1)) n++;
  return n;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A line of a JSON-lines input: its text (without the line break), or the head of an over-long one. */
interface Line {
  /** 1-based physical line number. */
  no: number;
  text: string;
  /** The line was longer than MAX_LINE_BYTES; `text` is its first LONG_LINE_HEAD bytes. */
  tooLong: boolean;
  /** The line is not valid UTF-8; `text` is its bytes in base64. */
  notUtf8?: boolean;
}

/**
 * Splits bytes into lines at `\n` (dropping a `\r` before it), without a limit on chunk sizes; a
 * line over MAX_LINE_BYTES is not kept, only its head. split2 would hold such a line whole (or,
 * with maxLength, drop it without its head or fail), so the split is done here, on bytes.
 */
async function* splitLines(src: AsyncIterable<Buffer>, firstLine: number): AsyncGenerator<Line> {
  let pieces: Buffer[] = [];
  let size = 0;
  let head: Buffer | undefined;
  let no = firstLine;
  const add = (piece: Buffer): void => {
    if (head !== undefined || piece.length === 0) return;
    if (size + piece.length > MAX_LINE_BYTES) {
      pieces.push(piece);
      // A copy: the pieces (and the chunks they are views of) can go.
      head = Buffer.from(Buffer.concat(pieces, size + piece.length).subarray(0, LONG_LINE_HEAD));
      pieces = [];
      size = 0;
      return;
    }
    pieces.push(piece);
    size += piece.length;
  };
  const take = (): Line => {
    let line: Line;
    if (head !== undefined) {
      line = { no, text: head.toString('utf8'), tooLong: true };
    } else {
      let buf = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, size);
      if (buf.length > 0 && buf[buf.length - 1] === 0x0d) buf = buf.subarray(0, buf.length - 1);
      // Decoding invalid UTF-8 would replace bytes with U+FFFD: two different ids could become
      // one, and the line written would not be the line read. Such a line is kept as bytes.
      line = isUtf8(buf) ? { no, text: buf.toString('utf8'), tooLong: false } : { no, text: buf.toString('base64'), tooLong: false, notUtf8: true };
    }
    no++;
    pieces = [];
    size = 0;
    head = undefined;
    return line;
  };
  for await (const chunk of src) {
    let from = 0;
    for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, from)) {
      add(chunk.subarray(from, nl));
      from = nl + 1;
      yield take();
    }
    if (from < chunk.length) add(chunk.subarray(from));
  }
  // The last line without a line break (a plain file cut short ends this way).
  if (size > 0 || head !== undefined) yield take();
}

/** An API page as a JSON line: an object with a `data` array and no `id` (an event has one). */
function pageRecords(v: unknown): unknown[] | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || Object.hasOwn(v, 'id')) return undefined;
  const data = (v as { data?: unknown }).data;
  return Array.isArray(data) ? data : undefined;
}

/**
 * Reads one input. Construct it with the input's name, call `units(raw, skip)` once with the
 * input's raw stream and iterate; `destroy()` (on abort) destroys every stream it opened.
 */
export class InputReader {
  readonly #name: string;
  readonly #streams: { destroy(err?: Error): unknown; destroyed?: boolean }[] = [];
  #destroyed = false;
  /** Units passed over because `skip` asked for them (fewer than `skip` when the input is shorter). */
  skipped = 0;
  /** The compression the input turned out to have, once known. */
  compression: ReplayCompression | undefined;
  /** The format the input turned out to have, once known. */
  format: ReplayFormat | undefined;

  constructor(name: string) {
    this.#name = name;
  }

  /** Destroys every stream opened for this input (and so the zstd process). Idempotent. */
  destroy(): void {
    this.#destroyed = true;
    for (const s of this.#streams) if (s.destroyed !== true) s.destroy();
  }

  #track<T extends { destroy(err?: Error): unknown }>(s: T): T {
    this.#streams.push(s);
    if (this.#destroyed) s.destroy();
    return s;
  }

  #error(what: string, err: unknown): unknown {
    if (err instanceof InputError) return err;
    return new InputError(this.#name, `replay input ${this.#name} ${what} (${message(err)})`, { cause: err });
  }

  /**
   * The input's units after the first `skip` (which are read and passed over). Ends with
   * InputError when the input cannot be read to its end.
   */
  async *units(raw: Readable, skip: number): AsyncGenerator<Unit, void, undefined> {
    this.#track(raw);
    try {
      const rawBytes = new ByteReader(raw, (e) => this.#error('could not be read', e));
      const compression = compressionOf(await peek(rawBytes, 4));
      this.compression = compression;
      // simple-zstd starts zstd only for bytes that open with a frame's magic (and passes any
      // others through as they are): skippable frames in front (pzstd writes one before each
      // frame) are dropped here; zstd itself skips those between frames.
      if (compression === 'zstd' && !(await this.#skipSkippableFrames(rawBytes))) return;
      let text = rawBytes;
      if (compression !== 'none') {
        const codec = compression === 'zstd' ? await zstdDecompress() : createGunzip();
        this.#track(codec);
        this.#track(pipeline(this.#track(Readable.from(rawBytes, { objectMode: false })), codec, NOOP));
        text = new ByteReader(codec, (e) =>
          e instanceof InputError ? e : new InputError(this.#name, `replay input ${this.#name} is truncated or corrupt (${compression}: ${codecDetail(e)})`, { cause: e }),
        );
      }
      const { format, firstLine } = await this.#sniff(text);
      this.format = format;
      if (format === 'lines') yield* this.#lines(text, firstLine, skip);
      else if (format === 'array' || format === 'page') yield* this.#document(text, format, skip);
    } finally {
      this.destroy();
    }
  }

  /**
   * Reads past the skippable frames at the start of a zstd input. False when nothing follows
   * them (an empty input); InputError when what follows is not a zstd frame.
   */
  async #skipSkippableFrames(src: ByteReader): Promise<boolean> {
    for (;;) {
      const head = await peek(src, 8);
      if (head.length === 0) return false;
      if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return true;
      if (head.length < 8 || (head[0]! & 0xf0) !== 0x50 || head[1] !== 0x2a || head[2] !== 0x4d || head[3] !== 0x18) {
        throw new InputError(this.#name, `replay input ${this.#name} is truncated or corrupt (zstd: no frame after a skippable frame)`);
      }
      let drop = 8 + head.readUInt32LE(4);
      while (drop > 0) {
        const c = await src.next();
        if (c === undefined) throw new InputError(this.#name, `replay input ${this.#name} is truncated or corrupt (zstd: a skippable frame is cut short)`);
        if (c.length > drop) src.unshift(c.subarray(drop));
        drop -= Math.min(drop, c.length);
      }
    }
  }

  /**
   * Drops a UTF-8 BOM and leading whitespace, and tells the format from what follows (see the
   * header). Puts back everything it read from the first significant line on; returns that
   * line's number.
   */
  async #sniff(text: ByteReader): Promise<{ format: ReplayFormat; firstLine: number }> {
    const start = await peek(text, 3);
    if (start.length === 0) return { format: 'empty', firstLine: 1 };
    if (start[0] === 0xef && start[1] === 0xbb && start[2] === 0xbf) {
      await text.next();
      text.unshift(start.subarray(3));
    }
    let firstLine = 1;
    let chunk: Buffer | undefined;
    let at = -1;
    for (;;) {
      chunk = await text.next();
      if (chunk === undefined) return { format: 'lines', firstLine };
      at = 0;
      while (at < chunk.length && isJsonSpace(chunk[at]!)) at++;
      if (at < chunk.length) break;
      // Whitespace only: dropped, but its line breaks still count for line numbers.
      firstLine += countNewlines(chunk, 0, chunk.length);
    }
    // Back to the start of the line the first significant byte is on.
    const lineStart = chunk.lastIndexOf(0x0a, at) + 1;
    firstLine += countNewlines(chunk, 0, lineStart);
    chunk = chunk.subarray(lineStart);
    at -= lineStart;
    const c = chunk[at];
    if (c === 0x5b /* [ */) {
      text.unshift(chunk.subarray(at));
      return { format: 'array', firstLine };
    }
    if (c !== 0x7b /* { */) {
      text.unshift(chunk);
      return { format: 'lines', firstLine };
    }
    // `{`: JSON lines when the first line is complete JSON, else a (pretty-printed) page.
    const held = [chunk];
    let size = chunk.length;
    let nl = chunk.indexOf(0x0a, at);
    while (nl < 0 && size <= MAX_LINE_BYTES) {
      const more = await text.next();
      if (more === undefined) break;
      held.push(more);
      const found = more.indexOf(0x0a);
      if (found >= 0) nl = size + found;
      size += more.length;
    }
    text.unshift(...held);
    // A single line without a break is a line; one longer than any line we keep is a document.
    const joined = held.length === 1 ? chunk : Buffer.concat(held, size);
    // A document whose first line is longer than any line we keep (a page on one line).
    if (nl < 0) return { format: size > MAX_LINE_BYTES && opensPage(joined.toString('utf8', at, at + LONG_LINE_HEAD)) ? 'page' : 'lines', firstLine };
    const first = joined.toString('utf8', at, nl);
    try {
      JSON.parse(first);
      return { format: 'lines', firstLine };
    } catch {
      // Not complete JSON: a page document when it opens like one, else JSON lines whose first
      // line is bad (it is quarantined like any other).
      return { format: opensPage(first) ? 'page' : 'lines', firstLine };
    }
  }

  async *#lines(text: ByteReader, firstLine: number, skip: number): AsyncGenerator<Unit, void, undefined> {
    const name = this.#name;
    let toSkip = skip;
    for await (const line of splitLines(text, firstLine)) {
      if (line.tooLong) {
        if (toSkip > 0) {
          toSkip--;
          this.skipped++;
          continue;
        }
        yield { bad: { reason: withOrigin(`not JSON: line longer than ${MAX_LINE_BYTES / 1024 / 1024} MiB`, `${name} line ${line.no}`), record: line.text } };
        continue;
      }
      if (line.notUtf8 === true) {
        if (toSkip > 0) {
          toSkip--;
          this.skipped++;
          continue;
        }
        yield { bad: { reason: withOrigin(NOT_UTF8, `${name} line ${line.no}`), record: line.text }, bytes: line.text.length };
        continue;
      }
      const s = line.text;
      if (isBlank(s)) continue;
      // Passing over a line needs its unit count: one, unless it is a page. A line that cannot
      // spell a `data` key (even escaped) is no page and need not be parsed.
      if (toSkip > 0 && !s.includes('data') && !s.includes('\\u')) {
        toSkip--;
        this.skipped++;
        continue;
      }
      let value: unknown;
      try {
        value = JSON.parse(s);
      } catch (err) {
        if (toSkip > 0) {
          toSkip--;
          this.skipped++;
          continue;
        }
        yield { bad: { reason: withOrigin(`not JSON: ${message(err)}`, `${name} line ${line.no}`), record: s }, bytes: s.length };
        continue;
      }
      const data = pageRecords(value);
      if (data === undefined) {
        if (toSkip > 0) {
          toSkip--;
          this.skipped++;
          continue;
        }
        attachLineText(value, s);
        yield { record: value, origin: `${name} line ${line.no}`, bytes: s.length };
        continue;
      }
      let i = 0;
      if (toSkip > 0) {
        i = Math.min(toSkip, data.length);
        toSkip -= i;
        this.skipped += i;
      }
      for (; i < data.length; i++) yield { record: data[i], origin: `${name} line ${line.no} data[${i}]` };
    }
  }

  /** A JSON array, or a page document's `data`, element by element through stream-json. */
  async *#document(text: ByteReader, format: 'array' | 'page', skip: number): AsyncGenerator<Unit, void, undefined> {
    const name = this.#name;
    let sawData = format === 'array';
    // streamValues: false: stream-json assembles values from whole tokens only, twice as fast.
    const parser =
      format === 'array'
        ? streamArray.withParserAsStream({ streamValues: false })
        : withParser.asStream(
            // A function list, which stream-chain's gen() inlines: pick `data`, note that it was
            // there, stream its elements.
            ((o: Parameters<typeof pick>[0]) => [
              pick(o),
              (token: unknown) => {
                sawData = true;
                return token;
              },
              streamArray(),
            ]) as unknown as Parameters<typeof withParser.asStream>[0],
            { filter: 'data', streamValues: false } as Parameters<typeof withParser.asStream>[1],
          );
    this.#track(parser);
    this.#track(pipeline(this.#track(Readable.from(text, { objectMode: false })), parser, NOOP));
    let count = 0;
    const what = format === 'array' ? 'a JSON array' : 'a JSON page document';
    // stream-json reports no position; the last element it completed is the nearest we know.
    const where = (): string => (count === 0 ? '' : format === 'array' ? ` after element ${count - 1}` : ` after data[${count - 1}]`);
    const items = new ItemReader(parser, (e) =>
      this.#error(
        `is ${what} cut short or malformed${where()}`,
        format === 'page' && message(e) === 'Top-level object should be an array.' ? new Error('"data" is not an array', { cause: e }) : e,
      ),
    );
    for (let item = await items.next(); item !== undefined; item = await items.next()) {
      const i = count++;
      if (i < skip) {
        this.skipped++;
        continue;
      }
      yield { record: ownId(item.value), origin: format === 'array' ? `${name} element ${i}` : `${name} data[${i}]` };
    }
    if (!sawData) throw new InputError(name, `replay input ${name} is a JSON object without a "data" array (neither JSON lines nor an API page)`);
  }
}

/** stream-json's `{key, value}` items from a parser stream, errors passed through `wrap`. */
class ItemReader {
  readonly #it: AsyncIterator<{ key: number; value: unknown }>;
  readonly #wrap: (err: unknown) => unknown;
  constructor(stream: Readable | NodeJS.ReadableStream, wrap: (err: unknown) => unknown) {
    this.#it = (stream as Readable)[Symbol.asyncIterator]() as AsyncIterator<{ key: number; value: unknown }>;
    this.#wrap = wrap;
  }
  async next(): Promise<{ key: number; value: unknown } | undefined> {
    try {
      const r = await this.#it.next();
      return r.done === true ? undefined : r.value;
    } catch (err) {
      throw this.#wrap(err);
    }
  }
}

/** What a decompressor's error says, in a few words. */
function codecDetail(err: unknown): string {
  const m = message(err);
  // simple-zstd: "zstd exited non zero. code: 1 signal: null" (zstd's own stderr is not passed on).
  const exit = /exited non zero\. code: (\S+) signal: (\S+)/.exec(m);
  if (exit !== null) return exit[2] !== 'null' ? `killed by ${exit[2]}` : `exited with code ${exit[1]}`;
  if ((err as { code?: unknown }).code === 'EPIPE') return 'stopped reading before the end of its input';
  return m;
}

/**
 * Marks an event parsed from one line with the line as its text (RAW_TEXT), so the sink writes
 * the line as received instead of serialising the event again (normalize-time drops the mark
 * when it rewrites the time). Only when the line can be vouched for: an object, no line break
 * inside, and `attributes`/`time` keys that are neither escaped nor repeated (see
 * timeValueRange): JSON.parse keeps the last of two keys, and a line that still held the first
 * would read differently elsewhere.
 */
function attachLineText(value: unknown, line: string): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
  let from = 0;
  let to = line.length;
  while (from < to && isJsonSpace(line.charCodeAt(from))) from++;
  while (to > from && isJsonSpace(line.charCodeAt(to - 1))) to--;
  const text = from === 0 && to === line.length ? line : line.slice(from, to);
  if (text.includes('\r') || timeValueRange(text, 0, text.length) === undefined) return;
  Object.defineProperty(value, RAW_TEXT, { value: text, writable: true, configurable: true, enumerable: false });
}

/**
 * The record, with its `id` string copied. stream-json cuts strings out of the text it has read
 * (V8 keeps such a substring as a slice of its parent, the whole chunk), and the dedupe window
 * keeps 100,000 ids: each would keep a chunk of the input alive, hundreds of MB in all.
 */
function ownId(record: unknown): unknown {
  if (typeof record === 'object' && record !== null && !Array.isArray(record)) {
    const id = (record as { id?: unknown }).id;
    if (typeof id === 'string' && id.length >= 13) (record as { id: string }).id = JSON.parse(JSON.stringify(id)) as string;
  }
  return record;
}

/**
 * Whether a first line that is not complete JSON opens an API page document: `{` alone, or `{`
 * followed by one of a page's keys (`"data"`, `"links"`, `"meta"`).
 */
function opensPage(first: string): boolean {
  return /^\s*\{\s*(?:$|"(?:data|links|meta)"\s*:)/.test(first);
}
