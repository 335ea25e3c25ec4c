/**
 * Finds where each element of a page's top-level `data` array lies in the page text, so the sink
 * can write an event's text as received instead of serialising the parsed object again: for the
 * JSON-bound pipeline that halves the JSON work per event (`JSON.stringify` costs about what
 * `JSON.parse` does).
 *
 * Only ever run on text that `JSON.parse` has accepted, so the text is valid JSON and a small
 * state machine (strings, nesting depth) finds the boundaries exactly. Whenever the scan could
 * disagree with what `JSON.parse` built, it gives up and the caller serialises as before:
 * - a top-level key written with an escape (`"d\u0061ta"`), because the scan compares raw keys;
 * - a count of elements other than the parsed array's length.
 * With duplicate top-level `data` keys, both take the last one.
 * An element nested deeper than {@link MAX_RAW_DEPTH} gets no offsets: it goes the serialising
 * way, so one too deep for `JSON.stringify` is quarantined by the sink exactly as before.
 */
import { RAW_TEXT, type WithRawText } from '../types.js';

/** Deepest nesting (inside an element) for which offsets are given. */
export const MAX_RAW_DEPTH = 1000;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Index of the quote that closes the string opening at `open` (a quote). */
function stringEnd(text: string, open: number): number {
  let j = open + 1;
  for (;;) {
    j = text.indexOf('"', j);
    if (j < 0) return -1;
    // The quote is escaped if an odd number of backslashes precede it.
    let k = j - 1;
    while (text.charCodeAt(k) === BACKSLASH) k--;
    if ((j - 1 - k) % 2 === 0) return j;
    j++;
  }
}

/**
 * `[start, end)` offsets of each element of the top-level object's `data` array, flattened
 * (`[s0, e0, s1, e1, …]`; `end` is -1 for an element nested deeper than MAX_RAW_DEPTH), or
 * undefined when the scan cannot vouch for them. `text` must be valid
 * JSON (JSON.parse accepted it).
 */
export function dataElementOffsets(text: string): number[] | undefined {
  const n = text.length;
  let depth = 0;
  /** The depth-1 key just read, as raw text between its quotes. */
  let key: string | undefined;
  let inData = false;
  let elemStart = -1;
  /** Deepest depth reached inside the current element. */
  let elemDepth = 0;
  let out: number[] | undefined;
  let cur: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (end < 0) return undefined;
      if (depth === 1) {
        const raw = text.slice(i + 1, end);
        // A key or a value at depth 1; only keys matter, and a key with an escape may decode to "data".
        if (raw.includes('\\')) return undefined;
        key = raw;
      } else if (inData && depth === 2 && elemStart < 0) {
        elemStart = i;
      }
      i = end;
      continue;
    }
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (depth === 1 && c === 0x5b && key === 'data') {
        inData = true;
        cur = [];
        elemDepth = 0;
        depth++;
        continue;
      }
      if (inData && depth === 2 && elemStart < 0) elemStart = i;
      depth++;
      if (depth > elemDepth) elemDepth = depth;
      continue;
    }
    if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
      if (inData && depth === 1) {
        // The data array closes.
        if (elemStart >= 0) cur.push(elemStart, elemEnd(text, elemStart, i, elemDepth));
        inData = false;
        elemStart = -1;
        elemDepth = 0;
        out = cur;
      }
      continue;
    }
    if (inData && depth === 2) {
      if (c === 0x2c /* , */) {
        if (elemStart >= 0) cur.push(elemStart, elemEnd(text, elemStart, i, elemDepth));
        elemStart = -1;
        elemDepth = 0;
      } else if (elemStart < 0 && c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) {
        elemStart = i; // a number, true, false or null
      }
    }
  }
  return out;
}

/** The element's end (`end` moved back over JSON whitespace), or -1 when it is nested too deep. */
function elemEnd(text: string, start: number, end: number, maxDepth: number): number {
  if (maxDepth - 2 > MAX_RAW_DEPTH) return -1;
  while (end > start) {
    const c = text.charCodeAt(end - 1);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    end--;
  }
  return end;
}

/**
 * Marks each object of `records` (the parsed `data` of `text`) with its text as received, when it
 * fits on one line. Returns how many were marked; 0 when the scan could not vouch for the offsets.
 */
export function attachRawText(text: string, records: unknown[]): number {
  const offsets = dataElementOffsets(text);
  if (offsets === undefined || offsets.length !== records.length * 2) return 0;
  let marked = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    if (typeof r !== 'object' || r === null || Array.isArray(r) || offsets[2 * i + 1]! < 0) continue;
    const raw = text.slice(offsets[2 * i]!, offsets[2 * i + 1]!);
    // Whitespace between tokens may hold line breaks; a JSON line must not.
    if (raw.includes('\n') || raw.includes('\r')) continue;
    // Not enumerable: invisible to comparisons and copies of the event, like the symbol itself is to JSON.
    Object.defineProperty(r, RAW_TEXT, { value: raw, writable: true, configurable: true, enumerable: false });
    marked++;
  }
  return marked;
}

/** JSON whitespace: space, tab, line feed, carriage return. */
export function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** The first character code at or after `i` (before `end`) that is not JSON whitespace; -1 if none. */
function nextSignificant(text: string, i: number, end: number): number {
  for (; i < end; i++) {
    const c = text.charCodeAt(i);
    if (!isJsonSpace(c)) return c;
  }
  return -1;
}

/**
 * `[start, end)` of the string value of `attributes.time`, quotes included, inside one element
 * of a page (an object spanning `text[from, to)`, as dataElementOffsets found it), so a rewritten
 * time can be put into the text as received instead of serialising the whole event again.
 * Undefined when the scan cannot vouch for it: a key of the element or of its `attributes`
 * written with an escape (it could decode to "attributes" or "time"), a duplicate `attributes` or
 * `time` key (JSON.parse keeps the last, but a line that still held the first would read
 * differently elsewhere), or no such string value. The caller still checks that the range holds
 * exactly the time it parsed.
 */
export function timeValueRange(text: string, from: number, to: number): [number, number] | undefined {
  let depth = 0;
  /** The element's key whose value comes next. */
  let key1: string | undefined;
  let inAttrs = false;
  /** The key `time` of attributes was read; its value comes next. */
  let timeNext = false;
  let attributesKeys = 0;
  let timeKeys = 0;
  let found: [number, number] | undefined;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const close = stringEnd(text, i);
      if (close < 0 || close >= to) return undefined;
      const isKey = nextSignificant(text, close + 1, to) === 0x3a; /* : */
      if (isKey && (depth === 1 || (depth === 2 && inAttrs))) {
        for (let k = i + 1; k < close; k++) if (text.charCodeAt(k) === BACKSLASH) return undefined;
        if (depth === 1) {
          key1 = text.slice(i + 1, close);
          if (key1 === 'attributes' && ++attributesKeys > 1) return undefined;
        } else {
          timeNext = close - i - 1 === 4 && text.startsWith('time', i + 1);
          if (timeNext && ++timeKeys > 1) return undefined;
        }
      } else if (!isKey) {
        if (depth === 2 && inAttrs && timeNext) found = [i, close + 1];
        if (depth === 1) key1 = undefined;
        if (depth === 2) timeNext = false;
      }
      i = close;
      continue;
    }
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      depth++;
      if (depth === 2) {
        if (c === 0x7b && key1 === 'attributes') inAttrs = true;
        key1 = undefined;
      } else if (depth === 3) {
        timeNext = false;
      }
      continue;
    }
    if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      if (depth === 2) inAttrs = false;
      depth--;
      continue;
    }
    if (!isJsonSpace(c) && c !== 0x3a && c !== 0x2c) {
      // The first character of a number, true, false or null: a value, not a key.
      if (depth === 1) key1 = undefined;
      if (depth === 2) timeNext = false;
    }
  }
  return found;
}
