/**
 * Files of the throw-away consumer project test/packaging.test.ts installs the packed tarball into.
 */

export const CONSUMER_PACKAGE_JSON = `${JSON.stringify({ name: 'aap-consumer', version: '0.0.0', private: true, type: 'module' }, null, 2)}\n`;

/** A consumer's tsconfig: what a strict Node ESM project has. `noEmit`: only the check. */
export const CONSUMER_TSCONFIG = `${JSON.stringify(
  {
    compilerOptions: {
      target: 'ES2022',
      module: 'nodenext',
      moduleResolution: 'nodenext',
      strict: true,
      noEmit: true,
      // Our declaration files are checked too, not only the consumer's code.
      skipLibCheck: false,
      types: ['node'],
    },
    files: ['good.ts'],
  },
  null,
  2,
)}\n`;

/** The same settings for the file that must fail. */
export const CONSUMER_TSCONFIG_BAD = `${JSON.stringify({ extends: './tsconfig.json', files: ['bad.ts'] }, null, 2)}\n`;

/**
 * Imports the installed package by name and prints its runtime export names (sorted), the ones
 * that are undefined, and what one event and one invalid record become after validate and
 * normalize-time; then writes them with the local-directory sink into argv[2].
 */
export const CONSUMER_RUNTIME_MJS = `import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as pkg from 'atlassian-audit-pipeline';

const names = Object.keys(pkg).sort();
const undefinedNames = names.filter((n) => pkg[n] === undefined);
const event = { id: 'e1', type: 'events', attributes: { time: '2026-11-21T11:15:00+01:00', processedAt: '2026-11-21T10:16:00Z' }, links: {} };
const out = [];
for await (const c of Readable.from([event, '{"id": broken']).compose(pkg.createValidate()).compose(pkg.createNormalizeTime())) {
  out.push(pkg.isQuarantined(c) ? { quarantined: c.reason } : c);
}
await pipeline(Readable.from([structuredClone(event)]), pkg.createLocalDirSink({ dir: process.argv[2], prefix: 'ev/', quarantinePrefix: 'q/' }, {}));
process.stdout.write(JSON.stringify({ names, undefinedNames, out }));
`;

/**
 * A consumer that uses the main factories with their option types, a custom ObjectStore and the
 * error classes. Type-checked only, never run.
 */
export const CONSUMER_GOOD_TS = `import { PassThrough, Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AbortError,
  ApiError,
  AuthError,
  ConfigError,
  createAtlassianEventsSource,
  createDedupe,
  createLocalDirSink,
  createMetrics,
  createNormalizeTime,
  createQuarantineRoute,
  createS3Client,
  createS3Sink,
  createUnbatch,
  createValidate,
  ForbiddenError,
  isQuarantined,
  OrgNotFoundError,
  PipelineError,
  runPipeline,
  SinkError,
  StateError,
  type AtlassianEventsOptions,
  type AuditEvent,
  type DedupeOptions,
  type DedupeStage,
  type LocalDirSinkOptions,
  type NormalizeTimeOptions,
  type ObjectKind,
  type ObjectStore,
  type ObjectUpload,
  type PipelineMetrics,
  type PipelineOptions,
  type PipelineResult,
  type QuarantineRecord,
  type QuarantineRouteOptions,
  type S3SinkOptions,
  type UnbatchOptions,
  type ValidateOptions,
} from 'atlassian-audit-pipeline';

const validateOptions: ValidateOptions = { maxIdLength: 128, highWaterMark: 4 };
const normalizeOptions: NormalizeTimeOptions = { highWaterMark: 4 };
const dedupeOptions: DedupeOptions = { windowSize: 10_000, initialIds: ['a', 'b'] };
const routed: QuarantineRecord[] = [];
const routeOptions: QuarantineRouteOptions = { to: (q) => { routed.push(q); } };
const unbatchOptions: UnbatchOptions = { highWaterMark: 8 };
const sinkBase = { prefix: 'audit/', quarantinePrefix: 'quarantine/', zstdLevel: 3, maxObjectBytes: 1 << 20, maxObjectAgeMs: 60_000 };
const s3Options: S3SinkOptions = { ...sinkBase, bucket: 'b', partSize: 5 * 1024 * 1024, queueSize: 2, serverSideEncryption: 'AES256' };
const localOptions: LocalDirSinkOptions = { ...sinkBase, dir: '/tmp/out' };
const sourceOptions: AtlassianEventsOptions = { orgId: 'org', apiKey: 'key', start: { from: 0, skip: 0 }, follow: false, rateLimit: { requests: 50, windowMs: 60_000 }, pageWorkers: 0 };

const metrics: PipelineMetrics = createMetrics({ prefix: 'my_', defaultMetrics: false });
const dedupe: DedupeStage = createDedupe(dedupeOptions);
const dropped: number = dedupe.duplicates;

/** A user's per-event stage. */
function tag(): Transform {
  return new Transform({
    objectMode: true,
    transform(c: unknown, _enc, cb) {
      cb(null, isQuarantined(c) ? c : { ...(c as AuditEvent), tagged: true });
    },
  });
}

export async function toS3(): Promise<{ events: number; quarantined: number; bytes: number; keys: string[] }> {
  const sink = createS3Sink(s3Options, { client: createS3Client({ endpoint: 'http://127.0.0.1:9000', forcePathStyle: true }), metrics });
  await pipeline(createAtlassianEventsSource(sourceOptions, { metrics }), createValidate(validateOptions), createNormalizeTime(normalizeOptions), dedupe, createUnbatch(unbatchOptions), tag(), sink);
  return sink.totals;
}

export async function fromArray(records: unknown[]): Promise<number> {
  const sink = createLocalDirSink(localOptions, {});
  await pipeline(Readable.from(records), createValidate(), createNormalizeTime(), createQuarantineRoute(routeOptions), createQuarantineRoute({ to: process.stderr }), sink);
  return sink.totals.events + routed.length + dropped;
}

/** A custom sink: objects kept in memory. */
class MemoryStore implements ObjectStore {
  readonly objects = new Map<string, Buffer>();
  open(key: string, kind: ObjectKind): ObjectUpload {
    const chunks: Buffer[] = [];
    const body = new PassThrough();
    const done = (async () => {
      for await (const c of body) chunks.push(c as Buffer);
      this.objects.set(key, Buffer.concat(chunks));
    })();
    return { body, done, abort: async () => { body.destroy(); await done.catch(() => {}); } };
  }
  async abortIncomplete(_key: string): Promise<void> {}
  describe(key: string): string {
    return \`memory:\${key}\`;
  }
}

const pipelineOptions: PipelineOptions = {
  orgId: 'org',
  apiKey: 'key',
  statePath: 'state.json',
  follow: true,
  intervalMs: 60_000,
  rateLimit: false,
  output: { kind: 'store', store: new MemoryStore(), where: 'memory' },
  signal: new AbortController().signal,
};

export async function collect(): Promise<PipelineResult | number> {
  try {
    return await runPipeline(pipelineOptions, { metrics });
  } catch (err) {
    if (err instanceof AuthError || err instanceof ForbiddenError || err instanceof OrgNotFoundError) return err.exitCode;
    if (err instanceof ApiError) return err.status ?? err.exitCode;
    if (err instanceof SinkError || err instanceof StateError || err instanceof ConfigError || err instanceof AbortError) return err.exitCode;
    if (err instanceof PipelineError) {
      const code: string = err.code;
      return code.length;
    }
    throw err;
  }
}

export const sinks: Writable[] = [createLocalDirSink(localOptions, {})];
`;

/**
 * Mistakes a consumer could make; each line marked `// error` must be reported by tsc, and
 * nothing else. Type-checked only, never run.
 */
export const CONSUMER_BAD_TS = `import { createValidate, createS3Sink, createS3Client, runPipeline, type ObjectStore, type ObjectUpload } from 'atlassian-audit-pipeline';

createValidate({ maxIdLenght: 128 }); // error
createS3Sink({ bucket: 'b', prefix: 'a/' }, { client: createS3Client() }); // error
createS3Sink({ bucket: 42, prefix: 'a/', quarantinePrefix: 'q/' }, { client: createS3Client() }); // error

class HalfStore implements ObjectStore { // error
  open(_key: string): ObjectUpload {
    throw new Error('not yet');
  }
  describe(key: string): string {
    return key;
  }
}

void runPipeline({ orgId: 'o', apiKey: 'k', statePath: 's', output: { kind: 'gcs', bucket: 'b' } }); // error
void HalfStore;
`;
