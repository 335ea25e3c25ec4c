/**
 * Thin: argv → config → pipeline; signals → AbortSignals; errors → one line and an exit code.
 *
 *   atlassian-audit-pipeline run [--once] --org-id ORG ...   collect (see --help)
 *   atlassian-audit-pipeline replay INPUT... [--bucket ...]  archives through the same stages
 *   atlassian-audit-pipeline demo                           simulator → local directory, no setup
 *   atlassian-audit-pipeline simulate                       serve the built-in API simulator
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { lockHolder, loadState, type CheckpointState, type RunSummary } from './checkpoint.js';
import { ConfigError, describeError, PipelineError, StateError } from './errors.js';
import { createLogger, redactSecrets, type LogLevel, type Logger } from './log.js';
import { DEMO_HELP, GLOBAL_HELP, packageVersion, replayHelp, runHelp, SIMULATE_HELP, STATUS_HELP } from './cli-help.js';
import { DEFAULT_HEAP_GROWTH_PERCENT, MAX_HEAP_GROWTH_PERCENT, setHeapGrowth } from './heap.js';
import { DropoffAlarm, DROPOFF_MAX_MS, DROPOFF_MIN_MS } from './dropoff.js';
import { createMetrics, isMetricPrefix, type PipelineMetrics } from './metrics.js';
import { REPLAY_ORG_ID, runReplay, type ReplayOptions } from './replay.js';
import { ProgressLine } from './progress.js';
import { startMetricsServer, type MetricsServer } from './metrics-server.js';
import { checkApiUrl } from './sources/atlassian-events.js';
import { checkPrefixes, DEFAULT_PREFIX, DEFAULT_QUARANTINE_PREFIX, runPipeline, type PipelineOptions, type PipelineResult, type RunResult } from './pipeline.js';
import { createSimulator } from './simulator/index.js';
import { parseRateBudget } from './sources/rate-pacer.js';
import { parseDuration, parseFrom, parseSize } from './time.js';

const RUN_OPTIONS = {
  once: { type: 'boolean' },
  'org-id': { type: 'string' },
  'api-url': { type: 'string' },
  'api-key-file': { type: 'string' },
  from: { type: 'string' },
  interval: { type: 'string' },
  bucket: { type: 'string' },
  prefix: { type: 'string' },
  'quarantine-prefix': { type: 'string' },
  's3-endpoint': { type: 'string' },
  's3-force-path-style': { type: 'boolean' },
  's3-region': { type: 'string' },
  's3-timeout': { type: 'string' },
  'out-dir': { type: 'string' },
  state: { type: 'string' },
  'metrics-port': { type: 'string' },
  'metrics-host': { type: 'string' },
  'metrics-prefix': { type: 'string' },
  'dropoff-after': { type: 'string' },
  progress: { type: 'string' },
  'zstd-level': { type: 'string' },
  'page-workers': { type: 'string' },
  'object-max-bytes': { type: 'string' },
  'object-max-age': { type: 'string' },
  'part-size': { type: 'string' },
  'upload-concurrency': { type: 'string' },
  sse: { type: 'string' },
  'sse-kms-key-id': { type: 'string' },
  'dedupe-window': { type: 'string' },
  'rate-limit': { type: 'string' },
  'stop-timeout': { type: 'string' },
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
  'heap-growth': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** `replay` takes `run`'s sink, state, metrics and log flags, and a batch size. */
const REPLAY_OPTIONS = {
  bucket: RUN_OPTIONS.bucket,
  prefix: RUN_OPTIONS.prefix,
  'quarantine-prefix': RUN_OPTIONS['quarantine-prefix'],
  's3-endpoint': RUN_OPTIONS['s3-endpoint'],
  's3-force-path-style': RUN_OPTIONS['s3-force-path-style'],
  's3-region': RUN_OPTIONS['s3-region'],
  's3-timeout': RUN_OPTIONS['s3-timeout'],
  'out-dir': RUN_OPTIONS['out-dir'],
  state: RUN_OPTIONS.state,
  'metrics-port': RUN_OPTIONS['metrics-port'],
  'metrics-host': RUN_OPTIONS['metrics-host'],
  'metrics-prefix': RUN_OPTIONS['metrics-prefix'],
  'zstd-level': RUN_OPTIONS['zstd-level'],
  'object-max-bytes': RUN_OPTIONS['object-max-bytes'],
  'object-max-age': RUN_OPTIONS['object-max-age'],
  'part-size': RUN_OPTIONS['part-size'],
  'upload-concurrency': RUN_OPTIONS['upload-concurrency'],
  sse: RUN_OPTIONS.sse,
  'sse-kms-key-id': RUN_OPTIONS['sse-kms-key-id'],
  'dedupe-window': RUN_OPTIONS['dedupe-window'],
  'stop-timeout': RUN_OPTIONS['stop-timeout'],
  'log-level': RUN_OPTIONS['log-level'],
  'log-format': RUN_OPTIONS['log-format'],
  'heap-growth': RUN_OPTIONS['heap-growth'],
  'batch-size': { type: 'string' },
  help: RUN_OPTIONS.help,
} as const;

type RunFlag = keyof typeof RUN_OPTIONS | keyof typeof REPLAY_OPTIONS;
type Values = Partial<Record<RunFlag, string | boolean>>;

/** Strict flag parsing; errors are ConfigErrors that never echo a stray argument (it may be a secret). */
function parseFlags(argv: string[], options: ParseArgsConfig['options']): Record<string, unknown> {
  return parseFlagsAndArgs(argv, options, false).values;
}

function parseFlagsAndArgs(argv: string[], options: ParseArgsConfig['options'], allowPositionals: boolean): { values: Record<string, unknown>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: argv, options, strict: true, allowPositionals });
    return { values, positionals };
  } catch (err) {
    throw new ConfigError(`${(err as Error).message.replace(/^Unexpected argument '.*?'\./s, 'Unexpected argument.')} (see --help)`);
  }
}

/** Flag value, else its ATLASSIAN_AUDIT_* environment mirror. */
function get(values: Values, flag: RunFlag, env: NodeJS.ProcessEnv): string | undefined {
  const v = values[flag];
  if (typeof v === 'string') return v;
  const e = env[`ATLASSIAN_AUDIT_${flag.toUpperCase().replaceAll('-', '_')}`];
  return e === undefined || e === '' ? undefined : e;
}

/** What a boolean's environment variable may say, in any case. */
const TRUE_WORDS = ['1', 'true', 'yes', 'on'];
const FALSE_WORDS = ['0', 'false', 'no', 'off'];

/** A boolean flag, else its ATLASSIAN_AUDIT_* variable: 1/0, true/false, yes/no, on/off in any case; anything else is a ConfigError naming the variable. */
function flag(values: Values, name: RunFlag, env: NodeJS.ProcessEnv): boolean {
  if (values[name] === true) return true;
  const variable = `ATLASSIAN_AUDIT_${name.toUpperCase().replaceAll('-', '_')}`;
  const e = env[variable]?.trim().toLowerCase();
  if (e === undefined || e === '') return false;
  if (TRUE_WORDS.includes(e)) return true;
  if (FALSE_WORDS.includes(e)) return false;
  throw new ConfigError(`${variable} must be one of ${TRUE_WORDS.join(', ')} (for --${name}) or ${FALSE_WORDS.join(', ')}, in any case (got ${JSON.stringify(env[variable])})`);
}

function int(values: Values, name: RunFlag, env: NodeJS.ProcessEnv, min: number, max: number): number | undefined {
  const v = get(values, name, env);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || n < min || n > max) throw new ConfigError(`--${name} must be a whole number from ${min} to ${max} (got ${JSON.stringify(v)})`);
  return n;
}

function duration(values: Values, name: RunFlag, env: NodeJS.ProcessEnv, minMs: number): number | undefined {
  const v = get(values, name, env);
  if (v === undefined) return undefined;
  const ms = parseDuration(v);
  if (ms === undefined || ms < minMs) throw new ConfigError(`--${name} must be a duration like 30s, 5m or 1h, at least ${minMs} ms (got ${JSON.stringify(v)})`);
  return ms;
}

function size(values: Values, name: RunFlag, env: NodeJS.ProcessEnv, min: number): number | undefined {
  const v = get(values, name, env);
  if (v === undefined) return undefined;
  const n = parseSize(v);
  if (n === undefined || n < min) throw new ConfigError(`--${name} must be a size like 5MiB or 32MB, at least ${min} bytes (got ${JSON.stringify(v)})`);
  return n;
}

/** --sse and --sse-kms-key-id, checked against each other and --bucket. */
function sseOptions(values: Values, env: NodeJS.ProcessEnv, bucket: string | undefined): { sse?: 'AES256' | 'aws:kms'; sseKmsKeyId?: string } {
  const sse = get(values, 'sse', env);
  const sseKmsKeyId = get(values, 'sse-kms-key-id', env);
  if (sse === undefined && sseKmsKeyId === undefined) return {};
  if (bucket === undefined) throw new ConfigError('--sse and --sse-kms-key-id apply to S3 only: give --bucket');
  if (sse !== 'AES256' && sse !== 'aws:kms') {
    throw new ConfigError(sse === undefined ? '--sse-kms-key-id needs --sse aws:kms' : `--sse must be AES256 (SSE-S3) or aws:kms (SSE-KMS) (got ${JSON.stringify(sse)})`);
  }
  if (sseKmsKeyId === undefined) return { sse };
  if (sse !== 'aws:kms') throw new ConfigError('--sse-kms-key-id needs --sse aws:kms, not AES256');
  if (sseKmsKeyId.trim() === '') throw new ConfigError('--sse-kms-key-id must not be empty');
  return { sse, sseKmsKeyId };
}

/** The sink flags shared by `run` and `replay`: --bucket and the S3 settings, or --out-dir. */
function parseOutput(values: Values, env: NodeJS.ProcessEnv): PipelineOptions['output'] {
  const bucket = get(values, 'bucket', env);
  const outDir = get(values, 'out-dir', env);
  if (bucket !== undefined && outDir !== undefined) throw new ConfigError('give --bucket or --out-dir, not both');
  const partSize = size(values, 'part-size', env, 5 * 1024 * 1024);
  const queueSize = int(values, 'upload-concurrency', env, 1, 64);
  const endpoint = get(values, 's3-endpoint', env);
  const region = get(values, 's3-region', env);
  const timeoutMs = duration(values, 's3-timeout', env, 100);
  const { sse, sseKmsKeyId } = sseOptions(values, env, bucket);
  return bucket !== undefined
    ? {
        kind: 's3',
        bucket,
        ...(endpoint === undefined ? {} : { endpoint }),
        forcePathStyle: flag(values, 's3-force-path-style', env),
        ...(region === undefined ? {} : { region }),
        ...(timeoutMs === undefined ? {} : { timeoutMs }),
        ...(partSize === undefined ? {} : { partSize }),
        ...(queueSize === undefined ? {} : { queueSize }),
        ...(sse === undefined ? {} : { sse }),
        ...(sseKmsKeyId === undefined ? {} : { sseKmsKeyId }),
      }
    : { kind: 'local', dir: outDir ?? 'atlassian-audit-output' };
}

/** The log flags shared by `run` and `replay`. */
function parseLog(values: Values, env: NodeJS.ProcessEnv): { logLevel: LogLevel; logFormat: 'json' | 'pretty' | undefined } {
  const logLevel = (get(values, 'log-level', env) ?? 'info') as LogLevel;
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(logLevel)) throw new ConfigError('--log-level must be debug, info, warn, error or silent');
  const logFormat = get(values, 'log-format', env);
  if (logFormat !== undefined && logFormat !== 'json' && logFormat !== 'pretty') throw new ConfigError('--log-format must be json or pretty');
  return { logLevel, logFormat };
}

/** The metrics flags shared by `run` and `replay`. */
function parseMetricsFlags(values: Values, env: NodeJS.ProcessEnv): { metricsPort: number; metricsHost: string; metricsPrefix: string } {
  const metricsPrefix = get(values, 'metrics-prefix', env) ?? 'atlassian_audit_';
  if (!isMetricPrefix(metricsPrefix)) throw new ConfigError(`--metrics-prefix must be letters, digits, _ and : and not start with a digit (got ${JSON.stringify(metricsPrefix)})`);
  return { metricsPort: int(values, 'metrics-port', env, 0, 65535) ?? 9464, metricsHost: get(values, 'metrics-host', env) ?? '0.0.0.0', metricsPrefix };
}

export interface RunConfig {
  pipeline: Omit<PipelineOptions, 'signal' | 'abortSignal'>;
  metricsPort: number;
  metricsHost: string;
  metricsPrefix: string;
  /** Drop-off alarm threshold, ms; undefined = off. */
  dropoffAfterMs: number | undefined;
  progress: 'auto' | 'off';
  logLevel: LogLevel;
  logFormat: 'json' | 'pretty' | undefined;
  /** V8 heap growth above the live size, percent (see heap.ts). */
  heapGrowthPercent: number;
}

/** argv (after `run`) + environment → a validated configuration. Throws ConfigError. */
export function parseRunConfig(argv: string[], env: NodeJS.ProcessEnv): RunConfig {
  // The key is never taken from argv (ps, shell history, CI logs would show it): say so plainly.
  if (argv.some((a) => /^--(api-?key|key|token|api-?token)(=|$)/i.test(a))) {
    throw new ConfigError('the API key is never taken from the command line (ps and shell history would show it): set ATLASSIAN_API_KEY or use --api-key-file FILE');
  }
  const values = parseFlags(argv, RUN_OPTIONS) as Values;
  if (env['NODE_TLS_REJECT_UNAUTHORIZED'] === '0') {
    throw new ConfigError('NODE_TLS_REJECT_UNAUTHORIZED=0 would turn off TLS certificate checks for the API and S3: unset it (use NODE_EXTRA_CA_CERTS for a private CA)');
  }
  const orgId = get(values, 'org-id', env);
  if (orgId === undefined || orgId.trim() === '') throw new ConfigError('--org-id is required (or ATLASSIAN_AUDIT_ORG_ID)');
  const keyFile = get(values, 'api-key-file', env);
  let apiKey: string | undefined;
  if (keyFile !== undefined) {
    try {
      apiKey = readFileSync(keyFile, 'utf8').trim();
    } catch (err) {
      throw new ConfigError(`cannot read --api-key-file ${keyFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  } else {
    apiKey = env['ATLASSIAN_API_KEY']?.trim();
  }
  if (apiKey === undefined || apiKey === '') throw new ConfigError('the API key is missing: set ATLASSIAN_API_KEY (or --api-key-file) to an organization API key');
  // A key with spaces or control characters cannot be sent as a header; say so (without it).
  if (!/^[\x21-\x7e]+$/.test(apiKey)) throw new ConfigError('the API key contains spaces or characters that cannot be sent in a header: check ATLASSIAN_API_KEY or --api-key-file');
  const apiUrl = get(values, 'api-url', env);
  if (apiUrl !== undefined) checkApiUrl(apiUrl);
  let from: number | undefined;
  const fromText = get(values, 'from', env);
  if (fromText !== undefined) {
    const f = parseFrom(fromText);
    if (typeof f !== 'number') throw new ConfigError(f.error);
    from = f;
  }
  const output = parseOutput(values, env);
  const { logLevel, logFormat } = parseLog(values, env);
  const pipeline: RunConfig['pipeline'] = {
    orgId: orgId.trim(),
    apiKey,
    follow: !flag(values, 'once', env),
    statePath: get(values, 'state', env) ?? 'atlassian-audit-state.json',
    output,
  };
  const optional: Partial<RunConfig['pipeline']> = {
    apiUrl,
    from,
    intervalMs: duration(values, 'interval', env, 1000),
    prefix: get(values, 'prefix', env),
    quarantinePrefix: get(values, 'quarantine-prefix', env),
    zstdLevel: int(values, 'zstd-level', env, 1, 19),
    pageWorkers: int(values, 'page-workers', env, 0, 8),
    maxObjectBytes: size(values, 'object-max-bytes', env, 1024),
    maxObjectAgeMs: duration(values, 'object-max-age', env, 100),
    dedupeWindow: int(values, 'dedupe-window', env, 0, 100_000_000),
    rateLimit: parseRateBudget(get(values, 'rate-limit', env)),
    stopTimeoutMs: duration(values, 'stop-timeout', env, 0),
  };
  for (const [k, v] of Object.entries(optional)) if (v !== undefined) (pipeline as unknown as Record<string, unknown>)[k] = v;
  checkPrefixes(pipeline.prefix ?? DEFAULT_PREFIX, pipeline.quarantinePrefix ?? DEFAULT_QUARANTINE_PREFIX);
  const dropoffText = get(values, 'dropoff-after', env);
  const dropoffAfterMs = dropoffText === undefined ? undefined : parseDuration(dropoffText);
  if (dropoffText !== undefined && (dropoffAfterMs === undefined || dropoffAfterMs < DROPOFF_MIN_MS || dropoffAfterMs > DROPOFF_MAX_MS)) {
    throw new ConfigError(`--dropoff-after must be a duration from 15m to 30d, like 1h or 2d (got ${JSON.stringify(dropoffText)})`);
  }
  const progress = get(values, 'progress', env) ?? 'auto';
  if (progress !== 'auto' && progress !== 'off') throw new ConfigError(`--progress must be auto or off (got ${JSON.stringify(progress)})`);
  return {
    pipeline,
    ...parseMetricsFlags(values, env),
    dropoffAfterMs,
    progress,
    logLevel,
    logFormat,
    heapGrowthPercent: heapGrowth(values, env),
  };
}

/** `--heap-growth`, shared by `run` and `replay`. */
function heapGrowth(values: Values, env: NodeJS.ProcessEnv): number {
  return int(values, 'heap-growth', env, 0, MAX_HEAP_GROWTH_PERCENT) ?? DEFAULT_HEAP_GROWTH_PERCENT;
}

/** How the final summary is written: as the log lines are (`json` also when that is the default off a terminal). */
type SummaryFormat = 'json' | 'pretty';

/** The log format in effect: the flag, else pretty on a terminal and JSON elsewhere (as createLogger decides). */
function effectiveLogFormat(format: 'json' | 'pretty' | undefined): SummaryFormat {
  return format ?? (process.stderr.isTTY === true ? 'pretty' : 'json');
}

/**
 * The summary a run or a replay prints on stdout: a few aligned lines, or with JSON logs one JSON
 * line (`msg` "run summary" or "replay summary"). `extra` adds fields (and, where given, their
 * lines after the counts); `after` adds lines at the end (`note` in JSON).
 */
function printSummary(
  result: RunResult,
  out: NodeJS.WritableStream,
  format: SummaryFormat,
  kind: 'run' | 'replay',
  extra: Array<[field: string, value: unknown, line: string | undefined]>,
  after: string[],
): void {
  if (format === 'json') {
    out.write(`${JSON.stringify({
      time: new Date().toISOString(),
      level: 'info',
      msg: `${kind} summary`,
      records: result.fetched,
      events: result.events,
      objects: result.objects,
      quarantined: result.quarantined,
      duplicates: result.duplicates,
      ...Object.fromEntries(extra.map(([field, value]) => [field, value])),
      eventsUnder: result.where,
      checkpoint: result.statePath,
      stopped: result.stopped,
      abandoned: result.abandoned,
      ...(after.length === 0 ? {} : { note: after.join(' ') }),
    })}\n`);
    return;
  }
  out.write(
    [
      `${`records ${kind === 'run' ? 'fetched' : 'read'}:`.padEnd(18)}${result.fetched} (= written + quarantined + duplicates)`,
      `events written:   ${result.events}`,
      `objects:          ${result.objects}`,
      `quarantined:      ${result.quarantined}`,
      `duplicates:       ${result.duplicates}`,
      ...extra.flatMap(([, , line]) => (line === undefined ? [] : [line])),
      `events under:     ${result.where}`,
      `checkpoint:       ${result.statePath}`,
      ...after,
    ].join('\n') + '\n',
  );
}

/** printSummary for `run` and `demo`. */
function printRunSummary(result: PipelineResult, out: NodeJS.WritableStream, format: SummaryFormat): void {
  const aborted = 'stopped before objects in flight could complete: they were aborted, and the next run collects their events again';
  printSummary(result, out, format, 'run', [], result.abandoned ? [aborted] : []);
}

/**
 * A repeat signal within this long of the first is the same request to stop, not "send again to
 * abort": GNU timeout signals the process and then its group, and a terminal or a supervisor
 * signalling the group reaches the process once per route.
 */
export const REPEAT_SIGNAL_GRACE_MS = 1000;

/** Installs SIGINT/SIGTERM: the first stops gracefully, a second one later than the grace aborts. */
function signalControllers(logger: Logger): { stop: AbortController; abort: AbortController; dispose(): void } {
  const stop = new AbortController();
  const abort = new AbortController();
  let firstAt = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (!stop.signal.aborted) {
      firstAt = performance.now();
      logger.info(`${sig}: finishing objects in flight and saving the checkpoint (send again to abort)`);
      stop.abort();
    } else if (performance.now() - firstAt < REPEAT_SIGNAL_GRACE_MS) {
      logger.debug(`${sig} again within ${REPEAT_SIGNAL_GRACE_MS} ms of the first: the same stop`);
    } else if (!abort.signal.aborted) {
      logger.warn(`${sig} again: aborting uploads in flight`);
      abort.abort();
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    stop,
    abort,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/**
 * Test-only fault injection: AAP_FAULT_KILL_BEFORE_COMMIT=N kills the process with SIGKILL after
 * the N-th epoch's objects are complete and before its checkpoint is saved.
 */
function faultInjection(env: NodeJS.ProcessEnv): { beforeCommit?: () => void } {
  const n = Number(env['AAP_FAULT_KILL_BEFORE_COMMIT']);
  if (!Number.isInteger(n) || n < 1) return {};
  let commits = 0;
  return {
    beforeCommit: () => {
      if (++commits === n) process.kill(process.pid, 'SIGKILL');
    },
  };
}

/** Secrets learnt while running a command (a key read from --api-key-file), for the last error line. */
const knownSecrets: string[] = [];

/** Values that must never be printed: the API key and the AWS secrets in the environment. */
function secretsOf(config: RunConfig | undefined, env: NodeJS.ProcessEnv): string[] {
  return [...knownSecrets, config?.pipeline.apiKey, env['ATLASSIAN_API_KEY']?.trim(), env['AWS_SECRET_ACCESS_KEY'], env['AWS_SESSION_TOKEN']].filter((s): s is string => s !== undefined && s !== '');
}

/** Serves /metrics, /healthz and /readyz unless the port is 0. */
async function serveMetrics(config: { metricsPort: number; metricsHost: string }, metrics: PipelineMetrics, logger: Logger): Promise<MetricsServer | undefined> {
  if (config.metricsPort === 0) return undefined;
  try {
    const server = await startMetricsServer({
      port: config.metricsPort,
      host: config.metricsHost,
      registry: metrics.registry,
      ready: metrics.isReady,
      notReadyReason: metrics.notReadyReason,
    });
    logger.info('metrics server listening', { port: server.port });
    return server;
  } catch (err) {
    throw new ConfigError(`cannot serve metrics on port ${config.metricsPort}: ${(err as NodeJS.ErrnoException).code ?? describeError(err)} (use --metrics-port 0 to disable)`);
  }
}

export interface ReplayConfig {
  replay: Omit<ReplayOptions, 'signal' | 'abortSignal'>;
  metricsPort: number;
  metricsHost: string;
  metricsPrefix: string;
  logLevel: LogLevel;
  logFormat: 'json' | 'pretty' | undefined;
  /** V8 heap growth above the live size, percent (see heap.ts). */
  heapGrowthPercent: number;
}

/** argv (after `replay`) + environment → a validated configuration. Throws ConfigError. */
export function parseReplayConfig(argv: string[], env: NodeJS.ProcessEnv): ReplayConfig {
  const { values: raw, positionals } = parseFlagsAndArgs(argv, REPLAY_OPTIONS, true);
  const values = raw as Values;
  if (positionals.length === 0) throw new ConfigError('replay needs at least one input: a file, - for stdin, or s3://bucket/prefix (see --help)');
  const output = parseOutput(values, env);
  const endpoint = get(values, 's3-endpoint', env);
  const region = get(values, 's3-region', env);
  const s3Timeout = duration(values, 's3-timeout', env, 100);
  const replay: ReplayConfig['replay'] = {
    inputs: positionals,
    // Not from ATLASSIAN_AUDIT_STATE: in a collector's environment that names the collector's state.
    statePath: get(values, 'state', {}) ?? 'atlassian-audit-replay-state.json',
    output,
    s3Input: { ...(endpoint === undefined ? {} : { endpoint }), forcePathStyle: flag(values, 's3-force-path-style', env), ...(region === undefined ? {} : { region }), ...(s3Timeout === undefined ? {} : { timeoutMs: s3Timeout }) },
  };
  const optional: Partial<ReplayConfig['replay']> = {
    prefix: get(values, 'prefix', env),
    quarantinePrefix: get(values, 'quarantine-prefix', env),
    zstdLevel: int(values, 'zstd-level', env, 1, 19),
    maxObjectBytes: size(values, 'object-max-bytes', env, 1024),
    maxObjectAgeMs: duration(values, 'object-max-age', env, 100),
    dedupeWindow: int(values, 'dedupe-window', env, 0, 100_000_000),
    batchSize: int(values, 'batch-size', env, 1, 100_000),
    stopTimeoutMs: duration(values, 'stop-timeout', env, 0),
  };
  for (const [k, v] of Object.entries(optional)) if (v !== undefined) (replay as unknown as Record<string, unknown>)[k] = v;
  checkPrefixes(replay.prefix ?? DEFAULT_PREFIX, replay.quarantinePrefix ?? DEFAULT_QUARANTINE_PREFIX);
  // A replay is a job that ends: no metrics server unless its flag asks for one (not from
  // ATLASSIAN_AUDIT_METRICS_PORT, which in a collector's environment is the collector's port).
  const metricsFlags = parseMetricsFlags(values, env);
  return { replay, ...metricsFlags, metricsPort: int(values, 'metrics-port', {}, 0, 65535) ?? 0, ...parseLog(values, env), heapGrowthPercent: heapGrowth(values, env) };
}

async function commandReplay(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const config = parseReplayConfig(argv, env);
  setHeapGrowth(config.heapGrowthPercent);
  const metrics = createMetrics({ prefix: config.metricsPrefix });
  const logger = createLogger({
    level: config.logLevel,
    ...(config.logFormat === undefined ? {} : { format: config.logFormat }),
    redact: secretsOf(undefined, env),
    stream: process.stderr,
  });
  const server = await serveMetrics(config, metrics, logger);
  const signals = signalControllers(logger);
  try {
    const result = await runReplay({ ...config.replay, signal: signals.stop.signal, abortSignal: signals.abort.signal }, { logger, metrics, ...faultInjection(env) });
    const skipped = result.skipped.length === 0 ? '' : ` (${result.skipped.length} skipped: finished by an earlier replay into this state)`;
    printSummary(
      result,
      process.stdout,
      effectiveLogFormat(config.logFormat),
      'replay',
      [['inputsFinished', result.finished.length, `inputs finished:  ${result.finished.length}${skipped}`], ['inputsSkipped', result.skipped.length, undefined]],
      result.stopped ? ['stopped: run the same command again to continue where it stopped'] : [],
    );
    return 0;
  } finally {
    signals.dispose();
    await server?.close();
  }
}

async function commandRun(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const config = parseRunConfig(argv, env);
  setHeapGrowth(config.heapGrowthPercent);
  const metrics = createMetrics({ prefix: config.metricsPrefix });
  // The progress line only on a terminal: in a pipe or a log file, the log lines serve instead.
  const progress = config.progress === 'auto' && process.stderr.isTTY === true
    ? new ProgressLine(process.stderr, { metrics }, { stopWhenCaughtUp: config.pipeline.follow === true })
    : undefined;
  const logger = createLogger({
    level: config.logLevel,
    ...(config.logFormat === undefined ? {} : { format: config.logFormat }),
    redact: secretsOf(config, env),
    stream: progress?.wrap(process.stderr) ?? process.stderr,
  });
  if (!knownSecrets.includes(config.pipeline.apiKey)) knownSecrets.push(config.pipeline.apiKey);
  // /readyz and the `ready` gauge: the last page succeeded within two poll intervals.
  metrics.health.readyWithinMs = 2 * (config.pipeline.intervalMs ?? 300_000);
  const dropoff = config.dropoffAfterMs === undefined ? undefined : new DropoffAlarm({ afterMs: config.dropoffAfterMs }, { metrics, logger });
  const server = await serveMetrics(config, metrics, logger);
  const signals = signalControllers(logger);
  dropoff?.start();
  progress?.start();
  try {
    const result = await runPipeline(
      { ...config.pipeline, signal: signals.stop.signal, abortSignal: signals.abort.signal },
      { logger, metrics, ...faultInjection(env) },
    );
    progress?.stop();
    printRunSummary(result, process.stdout, effectiveLogFormat(config.logFormat));
    return 0;
  } finally {
    progress?.stop();
    dropoff?.stop();
    signals.dispose();
    await server?.close();
  }
}

/** The command that prints the first lines of every object under a prefix (YYYY/MM/DD/HH/name). */
export function demoGlob(outDir: string, prefix: string): string {
  return `zstd -dc ${resolve(outDir, 'objects')}/${prefix}*/*/*/*/*.json.zst | head -n 2`;
}

async function commandDemo(argv: string[]): Promise<number> {
  const values = parseFlags(argv, { events: { type: 'string' }, 'out-dir': { type: 'string' }, seed: { type: 'string' } }) as { events?: string; 'out-dir'?: string; seed?: string };
  const events = values.events === undefined ? 5000 : Number(values.events);
  if (!Number.isInteger(events) || events < 1) throw new ConfigError('--events must be a positive whole number');
  const outDir = resolve(values['out-dir'] ?? 'demo-output');
  setHeapGrowth(DEFAULT_HEAP_GROWTH_PERCENT);
  const sim = createSimulator({ events, seed: values.seed === undefined ? 1 : Number(values.seed) });
  const url = await sim.start(0, '127.0.0.1');
  const logger = createLogger({ level: 'warn' });
  process.stdout.write(`demo: simulator with ${events} events at ${url}; collecting into ${outDir}\n`);
  try {
    const statePath = resolve(outDir, 'state.json');
    const result = await runPipeline(
      // The embedded simulator enforces no rate limit, so the demo runs without a budget.
      { orgId: sim.orgId, apiKey: sim.apiKey, apiUrl: url, from: 0, statePath, rateLimit: false, output: { kind: 'local', dir: resolve(outDir, 'objects') } },
      { logger },
    );
    printRunSummary(result, process.stdout, 'pretty');
    process.stdout.write(
      `\nRead the events:   ${demoGlob(outDir, DEFAULT_PREFIX)}\n` +
        `Quarantined lines: ${demoGlob(outDir, DEFAULT_QUARANTINE_PREFIX)}\n` +
        'Run the demo again: it continues from the checkpoint and writes nothing twice.\n',
    );
    return 0;
  } finally {
    await sim.close();
  }
}

async function commandSimulate(argv: string[]): Promise<number> {
  const values = parseFlags(argv, {
    port: { type: 'string' }, host: { type: 'string' }, events: { type: 'string' }, seed: { type: 'string' }, span: { type: 'string' }, 'rate-limit': { type: 'string' },
  }) as Record<string, string | undefined>;
  const whole = (name: string, fallback: number, min: number, max: number): number => {
    const v = values[name];
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v.trim()) || Number(v) < min || Number(v) > max) throw new ConfigError(`--${name} must be a whole number from ${min} to ${max} (got ${JSON.stringify(v)})`);
    return Number(v);
  };
  const spanMs = values['span'] === undefined ? undefined : parseDuration(values['span']);
  if (spanMs === undefined && values['span'] !== undefined) throw new ConfigError(`--span must be a duration like 6h or 180d (got ${JSON.stringify(values['span'])})`);
  const limit = parseRateBudget(values['rate-limit']);
  const sim = createSimulator({
    events: whole('events', 1000, 0, 100_000_000),
    seed: whole('seed', 1, 0, 2 ** 32 - 1),
    ...(spanMs === undefined ? {} : { spanMs }),
    ...(limit === undefined || limit === false ? {} : { rateLimit: limit }),
  });
  const url = await sim.start(whole('port', 0, 0, 65535), values['host'] ?? '127.0.0.1');
  process.stdout.write(`${JSON.stringify({ url, orgId: sim.orgId, apiKey: sim.apiKey })}\n`);
  await new Promise<void>((resolveStop) => {
    process.once('SIGINT', () => resolveStop());
    process.once('SIGTERM', () => resolveStop());
  });
  await sim.close();
  return 0;
}

/** How long ago `iso` was, for people: "42 s ago", "3 min ago", "5 h ago", "2 d ago". */
function ago(iso: string | undefined, now: number): string {
  const t = iso === undefined ? NaN : Date.parse(iso);
  if (!Number.isFinite(t)) return 'never';
  const s = Math.round((now - t) / 1000);
  const text = Math.abs(s) < 120 ? `${s} s` : Math.abs(s) < 7200 ? `${Math.round(s / 60)} min` : Math.abs(s) < 172_800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86_400)} d`;
  return `${iso} (${text} ago)`;
}

/** What `status` reports: the checkpoint, the last run, and whether a run holds the lock. */
export async function readStatus(statePath: string, now = Date.now()): Promise<Record<string, unknown>> {
  const path = resolve(statePath);
  const state = await loadState(path);
  if (state === undefined) throw new StateError(`no state file at ${path}: no run has used it yet (check --state)`);
  const holder = lockHolder(path);
  const p = state.position;
  return {
    state: path,
    stateId: state.stateId,
    orgId: state.orgId,
    position: p.cursor !== undefined ? { cursor: p.cursor, skip: p.skip } : { from: new Date(p.from!).toISOString(), skip: p.skip },
    positionMovedAt: state.positionMovedAt ?? null,
    cursorAgeSeconds: state.positionMovedAt === undefined ? null : Math.round((now - Date.parse(state.positionMovedAt)) / 1000),
    checkpointSavedAt: state.updatedAt,
    checkpointAgeSeconds: Math.round((now - Date.parse(state.updatedAt)) / 1000),
    lastProcessedAt: state.lastProcessedAt ?? null,
    lastProcessedAgeSeconds: state.lastProcessedAt === undefined ? null : Math.round((now - Date.parse(state.lastProcessedAt)) / 1000),
    collectingSince: new Date(state.origin).toISOString(),
    dedupeWindowIds: state.dedupe.length,
    reservedKeys: state.inflight,
    totals: state.totals,
    lastRun: state.lastRun ?? null,
    ...(state.replay === undefined ? {} : { replay: state.replay }),
    running: holder === undefined ? false : holder.running,
    ...(holder === undefined ? {} : { lock: { pid: holder.pid, stale: !holder.running } }),
  };
}

async function commandStatus(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const values = parseFlags(argv, { state: { type: 'string' }, json: { type: 'boolean' } }) as { state?: string; json?: boolean };
  const statePath = values.state ?? env['ATLASSIAN_AUDIT_STATE'] ?? 'atlassian-audit-state.json';
  const now = Date.now();
  const s = await readStatus(statePath, now);
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    return 0;
  }
  const t = s['totals'] as CheckpointState['totals'];
  const pos = s['position'] as { cursor?: string; from?: string; skip: number };
  const run = s['lastRun'] as RunSummary | null;
  const lock = s['lock'] as { pid: number; stale: boolean } | undefined;
  const reserved = Object.entries(s['reservedKeys'] as Record<string, string>);
  const replay = s['replay'] as Record<string, { records: number; done: boolean }> | undefined;
  const isReplay = s['orgId'] === REPLAY_ORG_ID;
  const inputs = Object.entries(replay ?? {});
  const replayLines = replay === undefined
    ? []
    : [
        `replay inputs:     ${inputs.length} (${inputs.filter(([, v]) => v.done).length} finished)`,
        ...inputs.slice(0, 20).map(([name, v]) => `  ${name}: ${v.records} records${v.done ? ', finished' : ', in progress'}`),
        ...(inputs.length > 20 ? [`  … and ${inputs.length - 20} more (--json lists them all)`] : []),
      ];
  const lines = [
    `state:             ${String(s['state'])} (${isReplay ? 'replay' : `org ${String(s['orgId'])}`}, stateId ${String(s['stateId'])})`,
    ...replayLines,
    ...(isReplay
      ? []
      : [
          `position:          ${pos.cursor !== undefined ? `cursor ${pos.cursor.length > 24 ? `${pos.cursor.slice(0, 24)}… (${pos.cursor.length} chars)` : pos.cursor}` : `from ${pos.from}`}, ${pos.skip} records of its page handled`,
          `position moved:    ${s['positionMovedAt'] === null ? 'not recorded yet' : ago(s['positionMovedAt'] as string, now)}`,
        ]),
    `checkpoint saved:  ${ago(s['checkpointSavedAt'] as string, now)}`,
    ...(isReplay ? [] : [`last processedAt:  ${ago((s['lastProcessedAt'] as string | null) ?? undefined, now)}`, `collecting since:  ${String(s['collectingSince'])}`]),
    `dedupe window:     ${String(s['dedupeWindowIds'])} ids`,
    `reserved keys:     ${reserved.length === 0 ? 'none' : reserved.map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `totals:            fetched ${t.fetched ?? 0}, written ${t.events}, quarantined ${t.quarantined}, duplicates ${t.duplicates}, objects ${t.objects}`,
    `last run:          ${run === null ? 'none' : `${run.outcome}, ${run.startedAt} → ${run.finishedAt}: written ${run.events}, quarantined ${run.quarantined}, duplicates ${run.duplicates}, objects ${run.objects}${run.error === undefined ? '' : `; error: ${run.error}`}`}`,
    `running:           ${lock === undefined ? 'no' : lock.stale ? `no (stale lock from pid ${lock.pid}; the next run takes it over)` : `yes (pid ${lock.pid})`}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

/** Each command's help, by name. */
const COMMAND_HELP: Record<string, () => string> = {
  run: () => runHelp(Object.keys(RUN_OPTIONS)),
  replay: () => replayHelp(Object.keys(REPLAY_OPTIONS)),
  status: () => STATUS_HELP,
  demo: () => DEMO_HELP,
  simulate: () => SIMULATE_HELP,
};

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--version' || command === '-V' || command === 'version') {
    process.stdout.write(`atlassian-audit-pipeline ${packageVersion()}\n`);
    return 0;
  }
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    // `help run` is `run --help`; no command at all is a usage error.
    const topic = command === 'help' || command === '--help' || command === '-h' ? rest[0] : undefined;
    process.stdout.write(topic !== undefined && Object.hasOwn(COMMAND_HELP, topic) ? COMMAND_HELP[topic]!() : GLOBAL_HELP);
    return command === undefined ? 2 : 0;
  }
  const help = Object.hasOwn(COMMAND_HELP, command) ? COMMAND_HELP[command] : undefined;
  if (help !== undefined && (rest.includes('--help') || rest.includes('-h'))) {
    process.stdout.write(help());
    return 0;
  }
  try {
    if (command === 'run') return await commandRun(rest, env);
    if (command === 'replay') return await commandReplay(rest, env);
    if (command === 'demo') return await commandDemo(rest);
    if (command === 'simulate') return await commandSimulate(rest);
    if (command === 'status') return await commandStatus(rest, env);
    throw new ConfigError(`unknown command ${JSON.stringify(command)}: the commands are run, replay, status, demo and simulate (see --help)`);
  } catch (err) {
    const code = err instanceof PipelineError ? err.exitCode : 1;
    process.stderr.write(`atlassian-audit-pipeline: ${redactSecrets(describeError(err), secretsOf(undefined, env))}\n`);
    return code;
  }
}
