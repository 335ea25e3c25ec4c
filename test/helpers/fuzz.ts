/**
 * Shared pieces of the fuzz tests: the seed, hostile values built once, reading objects back
 * line by line, and a watch for unhandled rejections.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Prng } from '../../src/simulator/prng.js';
import { listFiles, readZstdText } from './fs.js';

export { Prng };

const DEFAULT_SEED = 20261121;

/**
 * The seed of this run: `FUZZ_SEED` from the environment, or a fixed default so that plain
 * `npm test` is reproducible. Tests print it with `t.diagnostic` so a failure can be replayed.
 */
export function fuzzSeed(): number {
  const raw = process.env['FUZZ_SEED'];
  if (raw === undefined || raw.trim() === '') return DEFAULT_SEED;
  const seed = Number(raw);
  if (!Number.isSafeInteger(seed)) throw new RangeError(`FUZZ_SEED must be an integer, got ${JSON.stringify(raw)}`);
  return seed;
}

/** 10 MiB characters. */
export const HUGE_LENGTH = 10 * 1024 * 1024;
let huge: string | undefined;
/**
 * One 10 MiB string, built once (building it costs ~50 ms): mostly ASCII with a NUL byte, a
 * quote, a backslash, a newline, U+2028, an emoji and a lone surrogate at both ends.
 */
export function hugeString(): string {
  const edge = '\u0000"\\\n\u2028\u{1F600}\ud800';
  huge ??= edge + 'x'.repeat(HUGE_LENGTH - 2 * edge.length) + edge;
  return huge;
}

/** JSON texts of the values `nested` made too deep for JSON.stringify. */
const deepTexts = new WeakMap<object, string>();

/** `{"d":{"d":...0}}` (or `[[...0]]`) nested `depth` levels deep, built without recursion. */
export function nested(depth: number, kind: 'object' | 'array' = 'object'): unknown {
  let v: unknown = 0;
  for (let i = 0; i < depth; i++) v = kind === 'array' ? [v] : { d: v };
  if (depth > 1000 && typeof v === 'object' && v !== null) deepTexts.set(v, nestedText(depth, kind));
  return v;
}

/** Its JSON text, built without JSON.stringify (which throws beyond ~5,000 levels). */
export function nestedText(depth: number, kind: 'object' | 'array' = 'object'): string {
  return kind === 'array' ? `${'['.repeat(depth)}0${']'.repeat(depth)}` : `${'{"d":'.repeat(depth)}0${'}'.repeat(depth)}`;
}

/** JSON.stringify that also writes values made by `nested`, however deep (as a page would carry them). */
export function jsonText(value: unknown): string {
  const deep: string[] = [];
  const text = JSON.stringify(value, (_key, v: unknown) => {
    const t = typeof v === 'object' && v !== null ? deepTexts.get(v) : undefined;
    if (t === undefined) return v;
    deep.push(t);
    return `\u0000deep${deep.length - 1}`;
  });
  return deep.length === 0 ? text : text.replace(/"\\u0000deep(\d+)"/g, (_m, i: string) => deep[Number(i)]!);
}

/** Deep enough that JSON.stringify always throws RangeError (its limit is ~5,000 on a default stack). */
export const TOO_DEEP_LEVELS = 20_000;

export interface ObjectLines {
  /** Every line of every object under the prefix, as written (without the newline). */
  lines: string[];
  objects: number;
}

/**
 * Reads back every object under `prefix`: each must be valid UTF-8, end with a newline, and hold
 * only lines that parse as JSON objects.
 */
export async function readObjectLines(dir: string, prefix: string): Promise<ObjectLines> {
  const files = (await listFiles(dir)).filter((f) => f.startsWith(prefix));
  const lines: string[] = [];
  for (const f of files) {
    // Keys name a real UTC hour: never a negative or five-digit year from a hostile time.
    assert.match(f.slice(prefix.length), /^\d{4}\/\d{2}\/\d{2}\/\d{2}\/[0-9a-z-]+\.json\.zst$/, `odd key ${f}`);
    const text = await readZstdText(join(dir, f));
    assert.ok(text.endsWith('\n'), `${f} does not end with a newline`);
    const own = text.slice(0, -1).split('\n');
    own.forEach((line, i) => {
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        assert.fail(`${f} line ${i + 1} is not JSON: ${line.slice(0, 120)}`);
      }
      assert.ok(typeof v === 'object' && v !== null && !Array.isArray(v), `${f} line ${i + 1} is not a JSON object`);
    });
    lines.push(...own);
  }
  return { lines, objects: files.length };
}

/** Collects unhandled rejections while a test runs; `stop()` returns them. */
export function watchUnhandled(): { stop(): unknown[] } {
  const seen: unknown[] = [];
  const onRejection = (reason: unknown): void => {
    seen.push(reason);
  };
  process.on('unhandledRejection', onRejection);
  return {
    stop: () => {
      process.off('unhandledRejection', onRejection);
      return seen;
    },
  };
}
