/**
 * The CLI's help: one text per command (`atlassian-audit-pipeline COMMAND --help`), a short
 * global one, and the version. Flag descriptions live in one table, so `run --help` and
 * `replay --help` describe a shared flag the same way.
 */
import { readFileSync } from 'node:fs';

const NAME = 'atlassian-audit-pipeline';

/** The package's version, from its package.json (two levels above this file, in `src/` or `dist/src/`). */
export function packageVersion(): string {
  for (const up of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === NAME && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not there
    }
  }
  return 'unknown';
}

/** Each flag's help line(s), as `--flag VALUE` padded to column 29, then what it does and its default. */
const FLAGS: Record<string, string> = {
  once: '--once                     collect until caught up, complete every object, save, exit 0',
  'org-id': '--org-id ORG               organization id (required)',
  'api-url': `--api-url URL              the API's base URL (default https://api.atlassian.com); a gateway's
                             path prefix is kept (https://gateway.example.com/atlassian)`,
  'api-key-file': '--api-key-file FILE        read the API key from FILE instead of ATLASSIAN_API_KEY',
  from: `--from ISO|epoch-ms        where to start until the first events are collected
                             (default 180 days ago)`,
  interval: '--interval DURATION        pause between polls without --once (default 5m; 30s, 5m, 1h)',
  bucket: '--bucket B                 write to this S3 bucket (default: a local directory)',
  prefix: '--prefix P                 event key prefix (default atlassian/audit/)',
  'quarantine-prefix': '--quarantine-prefix Q      key prefix for invalid records (default atlassian/quarantine/)',
  's3-endpoint': '--s3-endpoint URL          S3-compatible endpoint (radosgw, MinIO)',
  's3-force-path-style': '--s3-force-path-style      path-style addressing (most S3-compatible servers need it)',
  's3-region': '--s3-region REGION         region (default AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1)',
  's3-timeout': `--s3-timeout DURATION      an S3 request that sends or receives nothing for this long
                             fails and is retried (default 30s; connecting: at most 10s)`,
  'out-dir': '--out-dir DIR              local-directory sink (default ./atlassian-audit-output when no --bucket)',
  state: '--state FILE               checkpoint file (default ./atlassian-audit-state.json)',
  'metrics-port': '--metrics-port N           serve /metrics, /healthz, /readyz on N (default 9464; 0 disables)',
  'metrics-host': '--metrics-host HOST        address for the metrics server (default 0.0.0.0)',
  'metrics-prefix': `--metrics-prefix P         prefix of every metric name, Node/process ones included
                             (default atlassian_audit_)`,
  'dropoff-after': `--dropoff-after DURATION   raise the drop-off alarm (gauge dropoff_alarm=1, one warning)
                             when no new event is written for this long: 15m to 30d
                             (default off)`,
  'zstd-level': '--zstd-level N             1–19 (default 3)',
  'page-workers': `--page-workers N           worker threads that parse, validate and normalise pages,
                             0–8; 0 does it on the main thread (default 2)`,
  'object-max-bytes': '--object-max-bytes SIZE    close an object at this compressed size (default 32MiB)',
  'object-max-age': '--object-max-age DURATION  close an object at this age (default 5m)',
  'part-size': '--part-size SIZE           S3 multipart part size, ≥ 5MiB (default 5MiB)',
  'upload-concurrency': '--upload-concurrency N     parts in flight per object (default 4)',
  sse: '--sse AES256|aws:kms       S3 server-side encryption: SSE-S3 or SSE-KMS (default: the bucket\'s)',
  'sse-kms-key-id': '--sse-kms-key-id KEY       KMS key id, ARN or alias; needs --sse aws:kms (default: aws/s3 key)',
  'dedupe-window': '--dedupe-window N          ids remembered for dedupe (default 100000)',
  'rate-limit': `--rate-limit N[/DURATION]  API requests allowed per DURATION (default 50/1m, events-stream's
                             limit), spread evenly; 0 = no budget of its own. X-RateLimit-*
                             headers and 429s are honoured either way`,
  'stop-timeout': `--stop-timeout DURATION    after SIGINT/SIGTERM, how long objects in flight may take to
                             complete before they are aborted (default 20s)`,
  'log-level': '--log-level LEVEL          debug|info|warn|error, or silent for none (default info)',
  'log-format': `--log-format FORMAT        json|pretty (default: pretty on a TTY, else json); with json the
                             final summary on stdout is one JSON line too`,
  progress: `--progress auto|off        progress line while catching up (default auto: only when
                             stderr is a TTY)`,
  'heap-growth': `--heap-growth PERCENT      let V8's heap grow this much above its live size between full
                             garbage collections, 0–300; 0 = V8's own choice, up to 300
                             (default 100: lower, steadier peak RSS for a little more CPU)`,
  'batch-size': '--batch-size N             records per batch, 1–100000 (default 500)',
  help: '--help, -h                 this help',
};

/** Help lines that differ for `replay`. */
const REPLAY_FLAGS: Record<string, string> = {
  state: `--state FILE               replay checkpoint (default ./atlassian-audit-replay-state.json;
                             never ATLASSIAN_AUDIT_STATE, which is the collector's)`,
  'metrics-port': `--metrics-port N           serve /metrics, /healthz, /readyz on N (default 0: off; never
                             ATLASSIAN_AUDIT_METRICS_PORT)`,
};

const EXIT_CODES = `Exit codes: 0 done (or stopped by SIGINT/SIGTERM after finishing objects in flight),
1 unexpected, 2 configuration, 3 key rejected (401), 4 forbidden (403), 5 org not found (404),
6 API failing after retries (or not the events-stream API: a 404 that is not Atlassian's),
7 S3/sink failing after retries, 8 state file unusable or locked, 9 a replay input unreadable
(missing, truncated or corrupt), 10 the API pointed at another host or redirected (not followed),
130 aborted by a second signal (later than 1 s after the first).`;

const ENVIRONMENT = `Every valued flag can also come from the environment as ATLASSIAN_AUDIT_<FLAG>, e.g.
ATLASSIAN_AUDIT_ORG_ID, ATLASSIAN_AUDIT_BUCKET; booleans take 1/0, true/false, yes/no, on/off.
Flags win over the environment.`;

function flagLines(flags: readonly string[], overrides: Record<string, string> = {}): string {
  return flags.map((f) => `  ${overrides[f] ?? FLAGS[f] ?? `--${f}`}`).join('\n');
}

/** The help of `run`, listing `flags` (the keys of its option table). */
export function runHelp(flags: readonly string[]): string {
  return `Usage: ${NAME} run [--once] --org-id ORG [flags]

Collects every event of the organization from the events-stream API, validates it, normalises
attributes.time, drops duplicate ids and writes zstd JSON-lines objects to S3 (--bucket) or a
directory (--out-dir). Without --once it polls every --interval until SIGTERM or SIGINT, then
completes the objects in flight, saves the checkpoint and exits 0. Before the first request it
checks that the sink can be written (S3: that the endpoint answers, the bucket exists, the
credentials work, and a multipart upload can be started and aborted under each prefix).
The API key comes from ATLASSIAN_API_KEY (or --api-key-file), never from a flag value.
AWS credentials come from the AWS SDK's usual chain; the region from --s3-region, else
AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1.

${flagLines(flags)}

${ENVIRONMENT}

${EXIT_CODES}
`;
}

/** The help of `replay`, listing `flags` (the keys of its option table). */
export function replayHelp(flags: readonly string[]): string {
  return `Usage: ${NAME} replay INPUT... [flags]

Reads archives of audit events through the same validate, normalise, dedupe and sink path as
run. INPUT is a file, - for stdin, or s3://bucket/prefix (every object under it, in key order;
read with the --s3-* settings). Each input may be zstd, gzip or plain (told by its first bytes),
and hold JSON lines, a JSON array of events, an API page {"data":[...]}, or API pages one per
line. Lines or records that are bad are quarantined with the input and line (or element) in the
reason. The state file remembers how far each input got: running the same command again skips
finished inputs and continues the others, so nothing is written twice.

${flagLines(flags, REPLAY_FLAGS)}

${ENVIRONMENT} replay takes --state and --metrics-port from its flags only.

${EXIT_CODES}
`;
}

export const STATUS_HELP = `Usage: ${NAME} status [--state FILE] [--json]

Prints a state file's checkpoint (position, newest processedAt written and its age, the dedupe
window, reserved keys, totals), the last run's summary, and whether a run holds its lock. It
never changes the file.

  --state FILE               the state file (default ./atlassian-audit-state.json, or
                             ATLASSIAN_AUDIT_STATE)
  --json                     machine output: one JSON document
  --help, -h                 this help

Exit codes: 0 printed, 2 bad flags, 8 the file does not exist or is unusable.
`;

export const DEMO_HELP = `Usage: ${NAME} demo [--events N] [--out-dir DIR] [--seed N]

Starts the built-in API simulator (some records malformed, some re-delivered, some late) and
collects it once into a local directory: the whole pipeline, no credentials, no setup. Run it
again: it continues from the checkpoint and writes nothing twice.

  --events N                 events the simulator holds (default 5000)
  --out-dir DIR              where objects and the state go (default ./demo-output)
  --seed N                   the simulator's seed (default 1)
  --help, -h                 this help
`;

export const SIMULATE_HELP = `Usage: ${NAME} simulate [--port N] [--host HOST] [--events N] [--seed N] [--span DURATION]
       [--rate-limit N[/DURATION]]

Serves the built-in events-stream API simulator until SIGINT or SIGTERM, for manual runs. It
prints one JSON line with its url, orgId and apiKey: pass them as --api-url, --org-id and
ATLASSIAN_API_KEY.

  --port N                   port (default: a free one)
  --host HOST                address (default 127.0.0.1)
  --events N                 events it holds (default 1000)
  --seed N                   seed (default 1)
  --span DURATION            the events' processedAt spread over this long before now (default 6h)
  --rate-limit N[/DURATION]  answer 429 beyond N requests per DURATION (per minute without one),
                             with X-RateLimit-* headers as events-stream does (default: no limit)
  --help, -h                 this help
`;

export const GLOBAL_HELP = `${NAME}: Atlassian organization audit events → zstd JSON lines in S3, exactly once.

Usage: ${NAME} COMMAND [flags]

Commands:
  run       collect an organization's audit events into S3 or a directory (a poller, or --once)
  replay    put archives of audit events (files, stdin, s3://) through the same stages
  status    print what a state file says: position, totals, the last run, the lock
  demo      the whole pipeline against the built-in simulator, into ./demo-output: no setup
  simulate  serve the built-in API simulator for manual runs

  ${NAME} COMMAND --help    that command's usage and flags
  ${NAME} --version         the version

${EXIT_CODES}
`;
