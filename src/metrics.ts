/**
 * Every metric, on an injected prom-client Registry. Labels are bounded: HTTP status codes,
 * retry causes from a fixed list, object kinds (`events`/`quarantine`), stage names.
 * Never an error message, URL, key or event id.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface MetricsOptions {
  /** Registry to register on. Default: a new one. */
  registry?: Registry;
  /** Name prefix. Default `atlassian_audit_`. */
  prefix?: string;
  /** Also collect prom-client's default Node/process metrics. Default true. */
  defaultMetrics?: boolean;
}

export type PipelineMetrics = ReturnType<typeof createMetrics>;

export function createMetrics(options: MetricsOptions = {}) {
  const registry = options.registry ?? new Registry();
  const p = options.prefix ?? 'atlassian_audit_';
  const registers = [registry];
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: p });
  return {
    registry,
    /** Plain values behind the health endpoints. */
    health: { lastPollSuccessMs: undefined as number | undefined },
    eventsReceived: new Counter({ name: `${p}events_received_total`, help: 'Records received from the API (valid or not, duplicates included).', registers }),
    eventsWritten: new Counter({ name: `${p}events_written_total`, help: 'Events in complete objects under the events prefix.', registers }),
    eventsQuarantined: new Counter({ name: `${p}events_quarantined_total`, help: 'Invalid records in complete objects under the quarantine prefix.', registers }),
    eventsDuplicate: new Counter({ name: `${p}events_duplicates_dropped_total`, help: 'Events dropped because their id was already admitted.', registers }),
    apiRequests: new Counter({ name: `${p}api_requests_total`, help: 'Requests to the events API by HTTP status (0 = no response).', labelNames: ['status'], registers }),
    apiRequestSeconds: new Histogram({ name: `${p}api_request_duration_seconds`, help: 'Time to fetch and parse one page.', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers }),
    apiRetries: new Counter({ name: `${p}api_retries_total`, help: 'Retried API requests by cause.', labelNames: ['cause'], registers }),
    rateLimitWaitSeconds: new Counter({ name: `${p}api_rate_limit_wait_seconds_total`, help: 'Seconds spent waiting for the API rate limit: reason="pacing" (spacing requests within the budget), reason="429" (after a refusal).', labelNames: ['reason'], registers }),
    rateLimitRemaining: new Gauge({ name: `${p}api_rate_limit_remaining`, help: 'X-RateLimit-Remaining of the last response.', registers }),
    objectsWritten: new Counter({ name: `${p}objects_written_total`, help: 'Complete objects by kind.', labelNames: ['kind'], registers }),
    bytesCompressed: new Counter({ name: `${p}bytes_compressed_total`, help: 'Compressed bytes in complete objects by kind.', labelNames: ['kind'], registers }),
    bytesUncompressed: new Counter({ name: `${p}bytes_uncompressed_total`, help: 'JSON-lines bytes in complete objects by kind.', labelNames: ['kind'], registers }),
    uploadSeconds: new Histogram({ name: `${p}object_upload_duration_seconds`, help: 'From object open to complete.', buckets: [0.5, 1, 5, 15, 60, 300, 900, 3600], registers }),
    uploadAborts: new Counter({ name: `${p}multipart_aborts_total`, help: 'Object uploads aborted after a failure.', registers }),
    errors: new Counter({ name: `${p}errors_total`, help: 'Errors by stage and type.', labelNames: ['stage', 'error_type'], registers }),
    checkpoints: new Counter({ name: `${p}checkpoints_saved_total`, help: 'Checkpoints saved.', registers }),
    lastPollSuccess: new Gauge({ name: `${p}last_successful_poll_timestamp_seconds`, help: 'When the source last reached the end of the stream.', registers }),
    newestProcessedAt: new Gauge({ name: `${p}newest_written_processed_at_seconds`, help: 'processedAt of the newest event in a complete object.', registers }),
  };
}
