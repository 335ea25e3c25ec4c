/**
 * The straightforward implementation of the job: what a competent first version looks like when
 * written without measuring. The micro-benches compare each stage with its function here; the
 * capacity scenario runs {@link runBaseline}, the whole job, beside ours.
 *
 * Deliberately plain, not crippled: pages come through undici's keep-alive pool, a page is parsed
 * with one `JSON.parse`, then validate → normalise (`new Date(t).toISOString()`) → `Set` dedupe →
 * `JSON.stringify` per event → simple-zstd (the same `zstd -3 --single-thread` as ours) → a
 * lib-storage `Upload` (5 MiB parts, 4 in flight), with backpressure: the loop waits for the
 * compressor to drain. Objects roll over at the UTC hour of `processedAt`, like ours.
 *
 * What it leaves out (and ours does): checkpoints and exactly-once across restarts, retries and
 * rate-limit pacing, quarantine objects (invalid records are only counted), a bounded dedupe
 * window (its Set grows with the run), size and age limits on objects, metrics.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { PassThrough, type Duplex } from 'node:stream';
import { compress } from 'simple-zstd';
import { request } from 'undici';
import type { AuditEvent, Batch } from '../src/types.js';

/** validate baseline: the required fields present with the right types, and a time Date.parse accepts. */
export function baselineValidateBatch(batch: Batch): Batch {
  const { records } = batch;
  for (let i = 0; i < records.length; i++) {
    const r = records[i] as { id?: unknown; type?: unknown; attributes?: { time?: unknown } | null; links?: unknown } | null;
    const ok =
      typeof r === 'object' &&
      r !== null &&
      !Array.isArray(r) &&
      typeof r.id === 'string' &&
      typeof r.type === 'string' &&
      typeof r.attributes === 'object' &&
      r.attributes !== null &&
      typeof r.links === 'object' &&
      r.links !== null &&
      typeof r.attributes.time === 'string' &&
      !Number.isNaN(Date.parse(r.attributes.time));
    if (ok) batch.events.push(r as AuditEvent);
    else batch.quarantined.push({ reason: 'invalid', record: r });
  }
  batch.fetched = (batch.fetched ?? 0) + records.length;
  batch.records = [];
  return batch;
}

/** normalize baseline: `new Date(t).toISOString()` on every event, canonical or not. */
export function baselineNormalizeBatch(batch: Batch): Batch {
  for (const e of batch.events) e.attributes.time = new Date(e.attributes.time).toISOString();
  return batch;
}

/** dedupe baseline: a Set of every id ever seen (memory grows without bound), events only. */
export function baselineDedupeBatch(batch: Batch, seen: Set<string>): Batch {
  const { events } = batch;
  let kept = 0;
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    if (seen.has(e.id)) continue;
    seen.add(e.id);
    events[kept++] = e;
  }
  batch.duplicates = events.length - kept;
  events.length = kept;
  return batch;
}

/** serialise baseline: stringify into an array, join. */
export function baselineSerialize(records: readonly unknown[]): string {
  return `${records.map((r) => JSON.stringify(r)).join('\n')}\n`;
}


export interface BaselineOptions {
  apiUrl: string;
  orgId: string;
  apiKey: string;
  bucket: string;
  client: S3Client;
  /** Records per page asked for. Default 500 (the API's maximum). */
  pageSize?: number;
}

export interface BaselineResult {
  events: number;
  invalid: number;
  duplicates: number;
  objects: number;
  /** JSON-lines bytes written into the compressor. */
  rawBytes: number;
  /** Compressed bytes that left the compressor. */
  compressedBytes: number;
}

interface OpenObject {
  hour: number;
  zstd: Duplex;
  done: Promise<unknown>;
}

const HOUR_MS = 3_600_000;

/**
 * Every page's `data` from `from=0` to the end of the stream, following `links.next`. `parse` turns
 * a body into the page (the floor times it).
 */
export async function* eachPage(
  apiUrl: string,
  orgId: string,
  apiKey: string,
  pageSize = 500,
  parse: (text: string) => unknown = (text) => JSON.parse(text),
): AsyncGenerator<unknown[]> {
  let url: string | null = `${apiUrl}/admin/v1/orgs/${encodeURIComponent(orgId)}/events-stream?limit=${pageSize}&from=0`;
  while (url !== null) {
    const res = await request(url, { headers: { authorization: `Bearer ${apiKey}`, accept: 'application/json' } });
    if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode} from the events API`);
    const page = parse(await res.body.text()) as { data: unknown[]; links?: { next?: string | null } };
    yield page.data;
    if (page.data.length === 0) return;
    const next = page.links?.next;
    url = typeof next === 'string' ? new URL(next, apiUrl).href : null;
  }
}

/** Collects every event from `from=0` to the end of the stream into `bucket`. */
export async function runBaseline(o: BaselineOptions): Promise<BaselineResult> {
  const seen = new Set<string>();
  const result: BaselineResult = { events: 0, invalid: 0, duplicates: 0, objects: 0, rawBytes: 0, compressedBytes: 0 };
  let current: OpenObject | undefined;
  let n = 0;

  const open = async (hour: number): Promise<OpenObject> => {
    const zstd = await compress(3, { zstdOptions: ['--single-thread'] });
    const body = new PassThrough();
    zstd.on('data', (c: Buffer) => {
      result.compressedBytes += c.length;
    });
    zstd.pipe(body);
    const key = `baseline/${new Date(hour).toISOString().slice(0, 13)}-${++n}.json.zst`;
    const upload = new Upload({ client: o.client, partSize: 5 * 1024 * 1024, queueSize: 4, params: { Bucket: o.bucket, Key: key, Body: body } });
    return { hour, zstd, done: upload.done() };
  };
  const write = async (hour: number, text: string): Promise<void> => {
    if (current !== undefined && current.hour !== hour) {
      current.zstd.end();
      await current.done;
      result.objects++;
      current = undefined;
    }
    current ??= await open(hour);
    result.rawBytes += Buffer.byteLength(text);
    const z = current.zstd;
    if (!z.write(text)) await new Promise((resolve) => z.once('drain', resolve));
  };
  const hourOf = (e: AuditEvent): number => Math.floor(Date.parse(e.attributes.processedAt ?? e.attributes.time) / HOUR_MS) * HOUR_MS;

  for await (const data of eachPage(o.apiUrl, o.orgId, o.apiKey, o.pageSize)) {
    const batch: Batch = { records: data, events: [], quarantined: [], position: { skip: 0 }, hour: 0 };
    baselineDedupeBatch(baselineNormalizeBatch(baselineValidateBatch(batch)), seen);
    result.invalid += batch.quarantined.length;
    result.duplicates += batch.duplicates ?? 0;
    result.events += batch.events.length;
    // One write per run of events in the same hour.
    const { events } = batch;
    for (let i = 0; i < events.length; ) {
      const hour = hourOf(events[i]!);
      let j = i + 1;
      while (j < events.length && hourOf(events[j]!) === hour) j++;
      await write(hour, baselineSerialize(events.slice(i, j)));
      i = j;
    }
  }
  if (current !== undefined) {
    current.zstd.end();
    await current.done;
    result.objects++;
  }
  return result;
}
