/**
 * Every metric, on an injected prom-client Registry. Labels are bounded: HTTP status codes,
 * retry causes from a fixed list, quarantine reason classes ({@link QUARANTINE_REASONS}), object
 * kinds (`events`/`quarantine`), stage names. Never an error message, URL, key or event id.
 *
 * Counters move per batch or per object, never per event. "Written" counts move only when the
 * object holding the events is complete in the store.
 *
 * {@link Health} holds the plain values behind the gauges that are computed at scrape time
 * (lag, checkpoint age, readiness, the drop-off alarm) and behind the progress line.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Readable, Writable } from 'node:stream';
import { systemClock, type Clock } from './clock.js';
import { ORIGIN_MARK } from './types.js';

export interface MetricsOptions {
  /** Registry to register on. Default: a new one. */
  registry?: Registry;
  /** Name prefix of every metric, the default Node/process ones included. Default `atlassian_audit_`. */
  prefix?: string;
  /** Also collect prom-client's default Node/process metrics (CPU, memory, event-loop lag, GC). Default true. */
  defaultMetrics?: boolean;
  /** Time for the computed gauges (lag, ages, readiness). Default the system clock. */
  clock?: Clock;
}

/** A valid Prometheus metric-name prefix: `[a-zA-Z_:][a-zA-Z0-9_:]*`, or empty. */
export function isMetricPrefix(prefix: string): boolean {
  return /^([a-zA-Z_:][a-zA-Z0-9_:]*)?$/.test(prefix);
}

/** The `reason` label values of `events_quarantined_total`: one per class of validation failure. */
export const QUARANTINE_REASONS = ['not_json', 'not_object', 'missing_field', 'wrong_type', 'bad_id', 'bad_time', 'too_deep', 'other'] as const;
export type QuarantineReasonClass = (typeof QUARANTINE_REASONS)[number];

/**
 * The bounded class of a quarantine reason string (which names a field path and is unbounded):
 * `attributes.time: not RFC 3339` → `bad_time`. A combined reason (`a; b`) is classed by its first part,
 * and where a record came from (` (at FILE line N)`, from a replay) is not part of its class.
 */
export function quarantineReasonClass(reason: string): QuarantineReasonClass {
  const at = reason.indexOf(ORIGIN_MARK);
  const first = (at < 0 ? reason : reason.slice(0, at)).split('; ')[0]!;
  if (first.startsWith('not JSON')) return 'not_json';
  if (first.startsWith('record: nested too deeply')) return 'too_deep';
  if (first.startsWith('record: expected object')) return 'not_object';
  if (first.endsWith(': missing')) return 'missing_field';
  if (/: expected \w+, got \w+$/.test(first)) return 'wrong_type';
  if (first.startsWith('id: ')) return 'bad_id';
  if (/: (not RFC 3339|outside years)/.test(first)) return 'bad_time';
  return 'other';
}

/** Plain values the computed gauges, /readyz, the drop-off alarm and the progress line read. */
export interface Health {
  /** When the metrics were created (the process started collecting), epoch ms. */
  readonly startedMs: number;
  /** Last API page fetched and parsed successfully, epoch ms. */
  lastPageOkMs: number | undefined;
  /** Last time the source reached the end of the stream (caught up), epoch ms. */
  caughtUpMs: number | undefined;
  /** Last time an object holding events completed, epoch ms. */
  lastWrittenMs: number | undefined;
  /** `processedAt` / `attributes.time` of the newest event in a complete object, epoch ms. */
  newestProcessedAtMs: number | undefined;
  newestEventTimeMs: number | undefined;
  /**
   * When the checkpoint last recorded events written (`lastEventsWrittenAt`; in a file from before
   * that field, its newest processedAt), read at start, epoch ms: the drop-off alarm's stand-in
   * for the last write until an events object completes. Quarantine-only commits never move it.
   */
  resumedLastWriteMs: number | undefined;
  /** Last checkpoint save, epoch ms. */
  lastCheckpointMs: number | undefined;
  /** Last time the sink committed, or handled the end of a poll with nothing waiting in an open object: the whole pipeline moved. */
  lastProgressMs: number | undefined;
  /** Last time the pipeline failed and had to be rebuilt (follow mode), epoch ms. */
  lastFailureMs: number | undefined;
  /**
   * Since when S3 requests have been failing (timeouts, 5xx, throttling, connection failures) with
   * no request succeeding since, epoch ms; undefined while S3 answers. Set by the S3 client's retries.
   */
  sinkFailingSinceMs: number | undefined;
  /** Newest `processedAt` the source has fetched (how far through the stream it is), epoch ms. */
  fetchedUpToMs: number | undefined;
  /** Where this run's range starts (the checkpoint's position in time), epoch ms. */
  rangeStartMs: number | undefined;
  /** Totals since the process started, for the progress line. */
  received: number;
  written: number;
  rateLimitWaits: number;
  rateLimitWaitMs: number;
  /** /readyz: ready when the last page succeeded within this many ms. Default 600,000 (2 × 5 min). */
  readyWithinMs: number;
  /** Drop-off alarm state, set by DropoffAlarm (0 when off). */
  dropoff: 0 | 1;
  /** Installed by a DropoffAlarm: evaluates it, so a scrape sees the state of this moment. */
  checkDropoff: (() => void) | undefined;
}

export type PipelineMetrics = ReturnType<typeof createMetrics>;

export function createMetrics(options: MetricsOptions = {}) {
  const registry = options.registry ?? new Registry();
  const p = options.prefix ?? 'atlassian_audit_';
  if (!isMetricPrefix(p)) throw new RangeError(`metric prefix ${JSON.stringify(p)} is not a valid Prometheus name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)`);
  const clock = options.clock ?? systemClock;
  const registers = [registry];
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: p });
  const health: Health = {
    startedMs: clock.now(),
    lastPageOkMs: undefined,
    caughtUpMs: undefined,
    lastWrittenMs: undefined,
    newestProcessedAtMs: undefined,
    newestEventTimeMs: undefined,
    resumedLastWriteMs: undefined,
    lastCheckpointMs: undefined,
    lastProgressMs: undefined,
    lastFailureMs: undefined,
    sinkFailingSinceMs: undefined,
    fetchedUpToMs: undefined,
    rangeStartMs: undefined,
    received: 0,
    written: 0,
    rateLimitWaits: 0,
    rateLimitWaitMs: 0,
    readyWithinMs: 600_000,
    dropoff: 0,
    checkDropoff: undefined,
  };
  /**
   * Why the pipeline is not ready, or undefined when it is: an API page must have succeeded within
   * the window; S3 must not be failing now (requests retried with none succeeding since); and the
   * pipeline must have moved (committed, or handled a poll's end with nothing waiting in an open
   * object) since it last failed, so a sink that keeps failing is not ready even though each
   * rebuilt pipeline fetches a page.
   */
  const notReadyReason = (): string | undefined => {
    const now = clock.now();
    if (health.lastPageOkMs === undefined) return 'no API page fetched yet';
    if (now - health.lastPageOkMs > health.readyWithinMs) return `no API page fetched for ${Math.round((now - health.lastPageOkMs) / 1000)} s`;
    if (health.sinkFailingSinceMs !== undefined) return `S3 requests failing for ${Math.round((now - health.sinkFailingSinceMs) / 1000)} s`;
    if (health.lastFailureMs !== undefined && (health.lastProgressMs === undefined || health.lastProgressMs < health.lastFailureMs)) return 'nothing committed since the pipeline last failed';
    return undefined;
  };
  const isReady = (): boolean => notReadyReason() === undefined;
  /** Seconds, or NaN when unknown (Prometheus keeps NaN; 0 would read as "fresh"). */
  const secondsSince = (ms: number | undefined): number => (ms === undefined ? NaN : (clock.now() - ms) / 1000);
  const timestamp = (ms: number | undefined): number => (ms === undefined ? 0 : ms / 1000);
  const bytesCompressed = new Counter({ name: `${p}bytes_compressed_total`, help: 'Compressed bytes in complete objects, by kind.', labelNames: ['kind'], registers });
  const bytesUncompressed = new Counter({ name: `${p}bytes_uncompressed_total`, help: 'JSON-lines bytes in complete objects, by kind.', labelNames: ['kind'], registers });
  const ratio = { events: { raw: 0, zst: 0 }, quarantine: { raw: 0, zst: 0 } };
  /** A gauge whose value is read at scrape time. */
  const computed = (name: string, help: string, read: () => number): Gauge =>
    new Gauge({ name: `${p}${name}`, help, registers, collect() { this.set(read()); } });
  const rateLimitRemaining = new Gauge({ name: `${p}api_rate_limit_remaining`, help: 'X-RateLimit-Remaining of the last response that had one (NaN until one had).', registers });
  // Not 0 before any response: that would read as "the rate limit is used up".
  rateLimitRemaining.set(NaN);
  return {
    registry,
    clock,
    health,
    isReady,
    notReadyReason,
    // Events
    eventsReceived: new Counter({ name: `${p}events_received_total`, help: 'Records received from the API (valid or not, duplicates included).', registers }),
    eventsWritten: new Counter({ name: `${p}events_written_total`, help: 'Events in complete objects under the events prefix.', registers }),
    eventsQuarantined: new Counter({ name: `${p}events_quarantined_total`, help: `Invalid records in complete objects under the quarantine prefix, by reason class (${QUARANTINE_REASONS.join(', ')}).`, labelNames: ['reason'], registers }),
    eventsDuplicate: new Counter({ name: `${p}events_duplicates_dropped_total`, help: 'Records dropped because their id was already admitted (counted when committed).', registers }),
    // API
    apiRequests: new Counter({ name: `${p}api_requests_total`, help: 'Requests to the events API by HTTP status (0 = no response).', labelNames: ['status'], registers }),
    apiRequestSeconds: new Histogram({ name: `${p}api_request_duration_seconds`, help: 'Time from sending one API request to having its whole body, any status (parsing not included).', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers }),
    apiRetries: new Counter({ name: `${p}api_retries_total`, help: 'Retried API requests by cause.', labelNames: ['cause'], registers }),
    rateLimitWaits: new Counter({ name: `${p}api_rate_limit_waits_total`, help: 'Requests held for the rate limit: reason="pacing" (spacing within the budget or until X-RateLimit-Reset), reason="429" (after a refusal).', labelNames: ['reason'], registers }),
    rateLimitWaitSeconds: new Counter({ name: `${p}api_rate_limit_wait_seconds_total`, help: 'Seconds spent waiting for the API rate limit, by reason (pacing, 429).', labelNames: ['reason'], registers }),
    rateLimitRemaining: rateLimitRemaining,
    polls: new Counter({ name: `${p}polls_total`, help: 'Polls that reached the end of the stream (caught up).', registers }),
    // S3 / store
    objectsWritten: new Counter({ name: `${p}objects_written_total`, help: 'Complete objects by kind.', labelNames: ['kind'], registers }),
    bytesCompressed,
    bytesUncompressed,
    /** Records the bytes of one complete object in both byte counters and the ratio gauge. */
    objectBytes(kind: 'events' | 'quarantine', compressed: number, uncompressed: number): void {
      bytesCompressed.inc({ kind }, compressed);
      bytesUncompressed.inc({ kind }, uncompressed);
      ratio[kind].zst += compressed;
      ratio[kind].raw += uncompressed;
    },
    compressionRatio: new Gauge({
      name: `${p}compression_ratio`,
      help: 'Uncompressed ÷ compressed bytes over the complete objects of this process, by kind (absent until one is complete).',
      labelNames: ['kind'],
      registers,
      collect() {
        for (const kind of ['events', 'quarantine'] as const) if (ratio[kind].zst > 0) this.set({ kind }, ratio[kind].raw / ratio[kind].zst);
      },
    }),
    uploadSeconds: new Histogram({ name: `${p}object_upload_duration_seconds`, help: 'From the end of an object\'s input to the object being complete in the store (the last parts and CompleteMultipartUpload).', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120], registers }),
    eventToObjectSeconds: new Histogram({ name: `${p}event_to_object_seconds`, help: 'Per events object: from the sink receiving its first events (as the source hands them on) to the object being complete in the store: how long a served event waits to be written.', buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600], registers }),
    uploadAborts: new Counter({ name: `${p}multipart_aborts_total`, help: 'Object uploads aborted after a failure or a timed-out stop.', registers }),
    s3Retries: new Counter({ name: `${p}s3_retries_total`, help: 'S3 requests retried by cause: throttling, server_error, timeout, network.', labelNames: ['cause'], registers }),
    uploadErrors: new Counter({ name: `${p}upload_errors_total`, help: 'Object uploads that failed after the S3 client\'s retries, by kind.', labelNames: ['kind'], registers }),
    // Freshness
    newestProcessedAt: computed('newest_written_processed_at_seconds', 'The newest processedAt the checkpoint has committed (of any record in complete objects), Unix seconds; read from the checkpoint at start (0 = none yet).', () => timestamp(health.newestProcessedAtMs)),
    newestEventTime: computed('newest_written_event_time_seconds', 'attributes.time of the newest event in a complete object since the process started, Unix seconds (0 = none yet).', () => timestamp(health.newestEventTimeMs)),
    lag: computed('lag_seconds', 'Now minus newest_written_event_time_seconds (NaN until an event is written).', () => secondsSince(health.newestEventTimeMs)),
    lastPollSuccess: computed('last_successful_poll_timestamp_seconds', 'When an API page was last fetched and parsed successfully, Unix seconds (0 = never).', () => timestamp(health.lastPageOkMs)),
    caughtUp: computed('caught_up_timestamp_seconds', 'When the source last reached the end of the stream, Unix seconds (0 = not yet).', () => timestamp(health.caughtUpMs)),
    lastWrite: computed('last_write_timestamp_seconds', 'When an object holding events last completed, Unix seconds (0 = not since start).', () => timestamp(health.lastWrittenMs)),
    checkpoints: new Counter({ name: `${p}checkpoints_saved_total`, help: 'Checkpoints saved after complete objects or a moved position (not at start).', registers }),
    checkpointAge: computed('checkpoint_age_seconds', 'Seconds since the checkpoint was last saved (NaN before the state file is read).', () => secondsSince(health.lastCheckpointMs)),
    // Pipeline
    backpressureSeconds: new Counter({ name: `${p}stage_backpressure_seconds_total`, help: 'Seconds a stage spent blocked because the next one was full (sink: waiting on the compressor and the store).', labelNames: ['stage'], registers }),
    errors: new Counter({ name: `${p}errors_total`, help: 'Pipeline failures that led to a restart, by stage and error code.', labelNames: ['stage', 'error_type'], registers }),
    ready: computed('ready', '1 when an API page succeeded within the readiness window (2 poll intervals), S3 is not failing, and the pipeline has moved since it last failed, as /readyz; else 0.', () => isReady() ? 1 : 0),
    dropoff: new Gauge({
      name: `${p}dropoff_alarm`,
      help: '1 when no new event has been written for --dropoff-after; 0 otherwise (always 0 when the alarm is off).',
      registers,
      collect() {
        health.checkDropoff?.();
        this.set(health.dropoff);
      },
    }),
  };
}

/**
 * Counts the time `upstream` spends blocked on `downstream`: from the moment `stream/promises`
 * pipeline pauses it (downstream's `write()` returned false) to downstream's `'drain'`.
 */
export function measureBackpressure(upstream: Readable, downstream: Writable, stage: string, metrics: PipelineMetrics, clock: Clock = metrics.clock): void {
  let since: number | undefined;
  upstream.on('pause', () => {
    if (since === undefined && downstream.writableNeedDrain) since = clock.now();
  });
  downstream.on('drain', () => {
    if (since === undefined) return;
    metrics.backpressureSeconds.inc({ stage }, (clock.now() - since) / 1000);
    since = undefined;
  });
}
