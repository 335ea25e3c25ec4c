/**
 * Fixtures for the replay source's tests: events spread over hours, the formats an archive may
 * come in (JSON lines, a JSON array, a pretty-printed API page, pages one per line), real
 * compression (the zstd CLI, zlib gzip, several frames/members), and a look at the zstd
 * processes this process has spawned.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { gzipSync } from 'node:zlib';
import type { ReplayInput } from '../../src/sources/replay.js';
import type { Batch } from '../../src/types.js';
import { makeEvent } from './batches.js';

export type Format = 'lines' | 'array' | 'page' | 'pagelines';
export type Compression = 'none' | 'gzip' | 'zstd';

export const HOUR = 3_600_000;
export const H10 = Date.parse('2026-11-21T10:00:00Z');

/** `counts[h]` events whose processedAt is in hour H10 + h, in order, each with a distinct id. */
export function eventsOverHours(counts: number[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  counts.forEach((n, h) => {
    for (let i = 0; i < n; i++) {
      const at = new Date(H10 + h * HOUR + i * 1000).toISOString();
      out.push(makeEvent({ id: `ev-${h}-${i}`, time: at, processedAt: at }));
    }
  });
  return out;
}

/** Records per page line in the `pagelines` format. */
export const PAGE_LINE_SIZE = 6;

/** The records as an archive of `format`. */
export function encode(records: unknown[], format: Format): Buffer {
  switch (format) {
    case 'lines':
      return Buffer.from(records.map((r) => `${JSON.stringify(r)}\n`).join(''));
    case 'array':
      return Buffer.from(JSON.stringify(records, null, 2));
    case 'page':
      return Buffer.from(JSON.stringify({ data: records, links: { next: null }, meta: { next: null, pageSize: records.length } }, null, 2));
    case 'pagelines': {
      const lines: string[] = [];
      for (let i = 0; i < records.length; i += PAGE_LINE_SIZE) {
        lines.push(JSON.stringify({ data: records.slice(i, i + PAGE_LINE_SIZE), links: {}, meta: { next: `c${i}` } }));
      }
      return Buffer.from(lines.map((l) => `${l}\n`).join(''));
    }
  }
}

/** The origin of record `i` of an archive of `format` named `name`. */
export function originOf(name: string, format: Format, i: number): string {
  switch (format) {
    case 'lines':
      return `${name} line ${i + 1}`;
    case 'array':
      return `${name} element ${i}`;
    case 'page':
      return `${name} data[${i}]`;
    case 'pagelines':
      return `${name} line ${Math.floor(i / PAGE_LINE_SIZE) + 1} data[${i % PAGE_LINE_SIZE}]`;
  }
}

/** zstd with the real CLI. */
export function zstd(bytes: Buffer): Buffer {
  const r = spawnSync('zstd', ['-q', '-c', '-3'], { input: bytes, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`zstd: ${r.stderr.toString()}`);
  return r.stdout;
}

/** Compressed as two frames (zstd) or two members (gzip), as appended archives are. */
export function compress(bytes: Buffer, how: Compression): Buffer {
  if (how === 'none') return bytes;
  const half = Math.floor(bytes.length / 2);
  const parts = [bytes.subarray(0, half), bytes.subarray(half)];
  return Buffer.concat(parts.map((p) => (how === 'gzip' ? gzipSync(p) : zstd(p))));
}

/** An input whose stream hands out `bytes` in chunks of `size` (for re-chunking tests). */
export function chunkedInput(name: string, bytes: Buffer, size: number): ReplayInput & { opened: number } {
  const input = {
    name,
    opened: 0,
    open(): Promise<Readable> {
      input.opened++;
      const chunks: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
      return Promise.resolve(Readable.from(chunks, { objectMode: false }));
    },
  };
  return input;
}

/** A Transform that counts the bytes that pass it (without putting the stream into flowing mode). */
export function byteCounter(): Transform & { bytes: number } {
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      t.bytes += chunk.length;
      cb(null, chunk);
    },
  }) as Transform & { bytes: number };
  t.bytes = 0;
  return t;
}

/** Every batch of a source. */
export async function collect(source: AsyncIterable<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of source) out.push(b);
  return out;
}

/** Batches until the source fails; the error (undefined if it ended). */
export async function collectUntilError(source: AsyncIterable<Batch>): Promise<{ batches: Batch[]; error: unknown }> {
  const batches: Batch[] = [];
  try {
    for await (const b of source) batches.push(b);
  } catch (error) {
    return { batches, error };
  }
  return { batches, error: undefined };
}

/** How a valid run of records is cut: at `size` units and where the (known) hour changes. */
export function expectedCuts(hours: number[], size: number): number[][] {
  const out: number[][] = [];
  let cur: number[] = [];
  for (const h of hours) {
    if (cur.length > 0 && (cur.length >= size || cur[0] !== h)) {
      out.push(cur);
      cur = [];
    }
    cur.push(h);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** Pids of this process's child processes running `zstd` (from /proc). */
export function zstdChildren(): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // pid (comm) state ppid ...: comm may hold spaces and parentheses.
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    if (comm === 'zstd' && Number(fields[1]) === process.pid && fields[0] !== 'Z') out.push(Number(entry));
  }
  return out;
}

/** Waits until `check` is true, up to `ms` (a limit far above what the condition needs). */
export async function waitFor(check: () => boolean, ms = 60_000): Promise<boolean> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}
