/**
 * validate: checks each record against Panther's `Atlassian.Audit` schema.
 *
 * In:  Batch with `records` (raw JSON values, as parsed from the page); or loose records, one a
 *      chunk (see src/chunks.ts): each comes out as the event, or as a quarantine chunk.
 * Out: the same Batch with `records` emptied into `events` (valid, unchanged) and `quarantined`
 *      (`{reason, record}` with the record exactly as received). Nothing is dropped.
 *      A batch's `packed` events (pages the events source already validated and normalised on its
 *      page workers, with these same functions) pass unchanged.
 * Memory: none beyond the batch in hand (objectMode, highWaterMark 1 on each side by default).
 * Backpressure: a plain Transform; it holds at most one batch when downstream is slow.
 * Errors: none from records; a bad record is quarantined, never thrown.
 *
 * The schema: `type`, `id`, `attributes`, `links` are required; `attributes.time` (and
 * `processedAt` when present) is an RFC 3339 string whose instant lies in years 0000–9999 UTC.
 * Optional fields are checked for the types the schema names when present and not null
 * (the API sends `null` and `{}` for absent optional objects). Unknown keys are kept as received.
 */
import { Transform } from 'node:stream';
import { isBatch, isQuarantined, parseLooseText, quarantined, type QuarantinedChunk } from '../chunks.js';
import { parseRfc3339 } from '../time.js';
import { withOrigin, type AuditEvent, type Batch, type QuarantineRecord } from '../types.js';

export interface ValidateOptions {
  /** Longest `id` accepted, in characters. Bounds the dedupe window's memory. Default 256. */
  maxIdLength?: number;
  /** Batches buffered on each side of the stage. Default 1. */
  highWaterMark?: number;
}

function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reason for an optional field of the wrong type, or undefined. `null` counts as absent. */
function optString(obj: Record<string, unknown>, key: string, path: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null || typeof v === 'string') return undefined;
  return `${path}.${key}: expected string, got ${kind(v)}`;
}

function optObject(obj: Record<string, unknown>, key: string, path: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null || isObject(v)) return undefined;
  return `${path}.${key}: expected object, got ${kind(v)}`;
}

function checkLinks(obj: Record<string, unknown>, path: string): string | undefined {
  const links = obj['links'];
  if (!isObject(links)) return optObject(obj, 'links', path);
  return optString(links, 'self', `${path}.links`) ?? optString(links, 'alt', `${path}.links`);
}

/** Epoch ms of 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: the years formatCanonical (time.ts) writes. */
const MIN_TIME_MS = -62167219200000;
const MAX_TIME_MS = 253402300799999;

/** Reason an RFC 3339 field's string is unusable, or undefined. */
function checkTime(value: string, path: string): string | undefined {
  const ms = parseRfc3339(value);
  if (ms === undefined) return `${path}: not RFC 3339`;
  // "9999-12-31T23:59:60Z" and "0000-01-01T00:00:00+01:00" are RFC 3339, but in UTC they fall
  // outside years 0000–9999: `time` has no canonical form (normalize-time would quarantine the
  // event as "not RFC 3339") and a `processedAt` there would name an hour like "-000/01/12/31".
  if (ms < MIN_TIME_MS || ms > MAX_TIME_MS) return `${path}: outside years 0000-9999 in UTC`;
  return undefined;
}

function checkRefs(attrs: Record<string, unknown>, key: 'context' | 'container'): string | undefined {
  const v = attrs[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) return `attributes.${key}: expected array, got ${kind(v)}`;
  for (let i = 0; i < v.length; i++) {
    const item: unknown = v[i];
    const path = `attributes.${key}[${i}]`;
    if (!isObject(item)) return `${path}: expected object, got ${kind(item)}`;
    const r = optString(item, 'id', path) ?? optString(item, 'type', path) ?? checkLinks(item, path);
    if (r !== undefined) return r;
  }
  return undefined;
}

/**
 * Returns why `record` is not a valid audit event, or `undefined` when it is.
 * The reason names the field path first: `attributes.time: not RFC 3339`.
 */
export function validateRecord(record: unknown, maxIdLength = 256): string | undefined {
  if (!isObject(record)) return `record: expected object, got ${kind(record)}`;
  const id = record['id'];
  if (id === undefined || id === null) return 'id: missing';
  if (typeof id !== 'string') return `id: expected string, got ${kind(id)}`;
  if (id.length === 0) return 'id: empty';
  if (id.length > maxIdLength) return `id: longer than ${maxIdLength} characters`;
  const type = record['type'];
  if (type === undefined || type === null) return 'type: missing';
  if (typeof type !== 'string') return `type: expected string, got ${kind(type)}`;
  const attrs = record['attributes'];
  if (attrs === undefined || attrs === null) return 'attributes: missing';
  if (!isObject(attrs)) return `attributes: expected object, got ${kind(attrs)}`;
  const links = record['links'];
  if (links === undefined || links === null) return 'links: missing';
  if (!isObject(links)) return `links: expected object, got ${kind(links)}`;

  const time = attrs['time'];
  if (time === undefined || time === null) return 'attributes.time: missing';
  if (typeof time !== 'string') return `attributes.time: expected string, got ${kind(time)}`;
  let r = checkTime(time, 'attributes.time');
  if (r !== undefined) return r;
  const processedAt = attrs['processedAt'];
  if (processedAt !== undefined && processedAt !== null) {
    if (typeof processedAt !== 'string') return `attributes.processedAt: expected string, got ${kind(processedAt)}`;
    r = checkTime(processedAt, 'attributes.processedAt');
    if (r !== undefined) return r;
  }

  r = optString(attrs, 'action', 'attributes') ?? optObject(attrs, 'actor', 'attributes');
  if (r !== undefined) return r;
  const actor = attrs['actor'];
  if (isObject(actor)) {
    r =
      optString(actor, 'id', 'attributes.actor') ??
      optString(actor, 'name', 'attributes.actor') ??
      optString(actor, 'email', 'attributes.actor') ??
      checkLinks(actor, 'attributes.actor');
    if (r !== undefined) return r;
  }
  r = checkRefs(attrs, 'context') ?? checkRefs(attrs, 'container') ?? optObject(attrs, 'location', 'attributes');
  if (r !== undefined) return r;
  const location = attrs['location'];
  if (isObject(location)) {
    for (const key of ['ip', 'geo', 'countryName', 'regionName', 'city']) {
      r = optString(location, key, 'attributes.location');
      if (r !== undefined) return r;
    }
  }
  r = optObject(record, 'message', 'record');
  if (r !== undefined) return r.slice('record.'.length);
  const message = record['message'];
  if (isObject(message)) {
    r = optString(message, 'content', 'message') ?? optString(message, 'format', 'message');
    if (r !== undefined) return r;
  }
  r = optString(links, 'self', 'links') ?? optString(links, 'alt', 'links');
  return r;
}

/** Splits `batch.records` into `events` and `quarantined`, in place. Returns the batch. */
export function validateBatch(batch: Batch, maxIdLength = 256): Batch {
  const { records, origins } = batch;
  for (let i = 0; i < records.length; i++) {
    const record = records[i];
    const reason = validateRecord(record, maxIdLength);
    if (reason === undefined) batch.events.push(record as AuditEvent);
    else batch.quarantined.push({ reason: withOrigin(reason, origins?.[i]), record } satisfies QuarantineRecord);
  }
  batch.fetched = (batch.fetched ?? 0) + records.length;
  batch.records = [];
  delete batch.origins;
  return batch;
}

/**
 * The valid event for one loose record, or a quarantine chunk saying why it is not one. A string
 * or bytes is JSON text (a line, say) and is parsed first.
 */
export function validateLoose(chunk: unknown, maxIdLength = 256): AuditEvent | QuarantinedChunk {
  if (isQuarantined(chunk)) return chunk;
  let record = chunk;
  if (typeof chunk === 'string' || chunk instanceof Uint8Array) {
    const parsed = parseLooseText(chunk);
    if ('reason' in parsed) return quarantined(parsed.reason, parsed.text);
    record = parsed.record;
  }
  const reason = validateRecord(record, maxIdLength);
  return reason === undefined ? (record as AuditEvent) : quarantined(reason, record);
}

/**
 * The validate stage: a Transform of Batches (see validateBatch), or of loose records (any JSON
 * value, or JSON text as a string or bytes) into valid events and quarantine chunks (see
 * src/chunks.ts and validateLoose). Each chunk comes out in the kind it came in.
 */
export function createValidate(options: ValidateOptions = {}): Transform {
  const maxIdLength = options.maxIdLength ?? 256;
  const hwm = options.highWaterMark ?? 1;
  return new Transform({
    objectMode: true,
    readableHighWaterMark: hwm,
    writableHighWaterMark: hwm,
    transform(chunk: unknown, _enc, cb) {
      cb(null, isBatch(chunk) ? validateBatch(chunk, maxIdLength) : validateLoose(chunk, maxIdLength));
    },
  });
}
