/**
 * custom-enrichment: the collector's own stages with a Transform of yours in the middle.
 *
 *   events API ─Batch─▶ validate ─▶ normalize-time ─▶ dedupe ─▶ unbatch ─event─▶ addCollector ─▶ S3 sink
 *
 * Every event gets `collector: { host, receivedAt }` before it is written to S3 as zstd JSON
 * lines (invalid records go to the quarantine prefix, unchanged). The run stops once it has
 * caught up with the API and prints one summary line.
 *
 *   ATLASSIAN_AUDIT_ORG_ID=... ATLASSIAN_API_KEY=... ATLASSIAN_AUDIT_BUCKET=my-bucket node dist/examples/custom-enrichment.js
 *
 * Environment:
 *   ATLASSIAN_AUDIT_API_URL      API base URL (default https://api.atlassian.com), as --api-url
 *   ATLASSIAN_AUDIT_ORG_ID       organization id (required)
 *   ATLASSIAN_API_KEY            organization API key (required)
 *   ATLASSIAN_AUDIT_BUCKET       bucket to write to (required)
 *   ATLASSIAN_AUDIT_S3_ENDPOINT  an S3-compatible endpoint (radosgw, MinIO); path-style addressing is used for it
 *   ATLASSIAN_AUDIT_RATE_LIMIT   API request budget, as --rate-limit: 50 (per minute, the API's limit, the default),
 *                                300/1m, 10/2s; 0: no budget of its own (for the simulator)
 * AWS credentials and region come from the AWS SDK's usual chain (AWS_ACCESS_KEY_ID, AWS_REGION, ...).
 *
 * No checkpoint: downstream of unbatch the chunks carry no stream position, so every run starts
 * 180 days back and writes what it reads. For exactly-once runs that continue where the last one
 * stopped, use runPipeline (see library-pipeline.ts), which wires the same stages to a checkpoint.
 */
import { hostname } from 'node:os';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  createAtlassianEventsSource,
  createDedupe,
  createNormalizeTime,
  createS3Client,
  createS3Sink,
  createUnbatch,
  createValidate,
  DEFAULT_PREFIX,
  DEFAULT_QUARANTINE_PREFIX,
  describeError,
  isQuarantined,
  parseRateBudget,
  PipelineError,
  type AuditEvent,
  type RateBudget,
} from 'atlassian-audit-pipeline';

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') {
    process.stderr.write(`custom-enrichment: ${name} is required\n`);
    process.exit(2);
  }
  return value;
}

const apiUrl = process.env['ATLASSIAN_AUDIT_API_URL'] || 'https://api.atlassian.com';
const orgId = required('ATLASSIAN_AUDIT_ORG_ID');
const apiKey = required('ATLASSIAN_API_KEY');
const bucket = required('ATLASSIAN_AUDIT_BUCKET');
const endpoint = process.env['ATLASSIAN_AUDIT_S3_ENDPOINT'] || undefined;
// The CLI's own parser: 50 (per minute), 300/1m, 10/2s, or 0 for no budget of its own.
let rateLimit: RateBudget | false;
try {
  rateLimit = parseRateBudget(process.env['ATLASSIAN_AUDIT_RATE_LIMIT'] || undefined) ?? { requests: 50, windowMs: 60_000 };
} catch (err) {
  process.stderr.write(`custom-enrichment: ATLASSIAN_AUDIT_RATE_LIMIT: ${(err as Error).message}\n`);
  process.exit(2);
}

/**
 * Your stage: adds `collector` to every event. It gets one chunk at a time: an event, or a
 * quarantine chunk (an invalid record on its way to the quarantine prefix), which it passes on
 * untouched.
 */
function addCollector(host: string): Transform {
  return new Transform({
    objectMode: true,
    transform(chunk: unknown, _enc, cb) {
      if (isQuarantined(chunk)) {
        cb(null, chunk);
        return;
      }
      // A new object rather than a change in place: an event object may carry its text as
      // received (RAW_TEXT), which the sink would write instead of the changed object. The
      // spread does not copy it. (A stage that changes events in place sets event[RAW_TEXT] = undefined.)
      const event = chunk as AuditEvent;
      cb(null, { ...event, collector: { host, receivedAt: new Date().toISOString() } });
    },
  });
}

const client = createS3Client({ endpoint, forcePathStyle: endpoint !== undefined });
try {
  const source = createAtlassianEventsSource({
    apiUrl,
    orgId,
    apiKey,
    // The API keeps 180 days of events.
    start: { from: Date.now() - 180 * 24 * 3_600_000, skip: 0 },
    follow: false,
    rateLimit,
  });
  const dedupe = createDedupe();
  const sink = createS3Sink({ bucket, prefix: DEFAULT_PREFIX, quarantinePrefix: DEFAULT_QUARANTINE_PREFIX }, { client });
  await pipeline(source, createValidate(), createNormalizeTime(), dedupe, createUnbatch(), addCollector(hostname()), sink);
  // 'finish' of the sink (which pipeline waited for) means every object is complete in S3.
  const t = sink.totals;
  process.stdout.write(
    `wrote ${t.events} events and ${t.quarantined} quarantined records in ${t.objects} objects (${t.bytes} bytes) to s3://${bucket}/; dropped ${dedupe.duplicates} duplicates\n`,
  );
} catch (err) {
  process.stderr.write(`custom-enrichment: ${describeError(err)}\n`);
  process.exitCode = err instanceof PipelineError ? err.exitCode : 1;
} finally {
  client.destroy();
}
