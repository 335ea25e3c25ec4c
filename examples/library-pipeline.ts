/**
 * library-pipeline: the whole collector (source → validate → normalize-time → dedupe → sink, with
 * the checkpoint) from your own program, writing to an ObjectStore of your own.
 *
 * The store here writes each object to `<dir>/<key>` and appends one line per completed object
 * to `<dir>/manifest.jsonl`: `{"key", "kind", "bytes", "sha256", "completedAt"}`. Swap it for any
 * destination that can take a stream of bytes (another cloud's object store, a database, a queue).
 *
 *   ATLASSIAN_AUDIT_ORG_ID=... ATLASSIAN_API_KEY=... node dist/examples/library-pipeline.js
 *
 * Environment:
 *   ATLASSIAN_AUDIT_API_URL      API base URL (default https://api.atlassian.com), as --api-url
 *   ATLASSIAN_AUDIT_ORG_ID       organization id (required)
 *   ATLASSIAN_API_KEY            organization API key (required)
 *   ATLASSIAN_AUDIT_OUT_DIR      where objects and the manifest go (default <tmpdir>/atlassian-audit-example/objects)
 *   ATLASSIAN_AUDIT_STATE        checkpoint file (default <tmpdir>/atlassian-audit-example/state.json)
 *   ATLASSIAN_AUDIT_RATE_LIMIT   API request budget, as --rate-limit: 50 (per minute, the API's limit, the default),
 *                                300/1m, 10/2s; 0: no budget of its own (for the simulator)
 *
 * Run it twice: the second run continues from the checkpoint and writes nothing it wrote before.
 * Ctrl-C stops gracefully: objects in flight are completed and the checkpoint is saved.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, mkdirSync } from 'node:fs';
import { appendFile, mkdir, open, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  createLogger,
  describeError,
  parseRateBudget,
  PipelineError,
  runPipeline,
  type ObjectKind,
  type ObjectStore,
  type ObjectUpload,
  type RateBudget,
} from 'atlassian-audit-pipeline';

/** One line of manifest.jsonl. */
interface ManifestEntry {
  key: string;
  kind: ObjectKind;
  /** Size of the object (zstd-compressed JSON lines). */
  bytes: number;
  /** SHA-256 of the object, hex. */
  sha256: string;
  completedAt: string;
}

/**
 * An ObjectStore: the sink calls `open(key, kind)` for each object, writes its compressed bytes
 * to `body` (honouring `write() === false`) and ends it, then waits for `done`. Only after every
 * object of an epoch is done does it save the checkpoint, so `done` must mean "the object exists
 * in full". On failure or a hard stop it calls `abort()`.
 *
 * Bytes go to `<dir>/.partial/<key>` first and are renamed into place when complete, so a file
 * under the prefix is always a whole object. After a crash, the next run writes the same keys
 * again (the checkpoint reserved them before the first byte): the rename replaces the file, and
 * the manifest then lists that key twice. The last line for a key describes the file.
 */
class ManifestDirStore implements ObjectStore {
  readonly dir: string;
  readonly manifest: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
    this.manifest = join(this.dir, 'manifest.jsonl');
    mkdirSync(this.dir, { recursive: true });
  }

  /** `<base>/<key>`, refusing a key that would leave `base`. */
  #under(base: string, key: string): string {
    const path = resolve(base, key);
    if (!path.startsWith(base + sep)) throw new RangeError(`object key escapes ${base}: ${key}`);
    return path;
  }

  describe(key: string): string {
    return this.#under(this.dir, key);
  }

  open(key: string, kind: ObjectKind): ObjectUpload {
    const target = this.#under(this.dir, key);
    const partial = this.#under(join(this.dir, '.partial'), key);
    mkdirSync(dirname(partial), { recursive: true });
    const hash = createHash('sha256');
    let bytes = 0;
    // The body the sink writes to. Backpressure: when the file falls behind, the pipeline below
    // stops reading, `write()` on the body returns false, and the sink (and the API source
    // behind it) waits for 'drain'.
    const body = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        bytes += chunk.length;
        cb(null, chunk);
      },
    });
    let aborted = false;
    const done = (async (): Promise<void> => {
      await pipeline(body, createWriteStream(partial));
      // Durable before it is visible, and visible before the checkpoint moves past it.
      const fh = await open(partial, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      if (aborted) throw new Error('aborted');
      await mkdir(dirname(target), { recursive: true });
      await rename(partial, target);
      const entry: ManifestEntry = { key, kind, bytes, sha256: hash.digest('hex'), completedAt: new Date().toISOString() };
      await appendFile(this.manifest, `${JSON.stringify(entry)}\n`);
    })();
    // The sink awaits `done`; this only keeps an early rejection from being reported as unhandled.
    done.catch(() => {});
    return {
      body,
      done,
      abort: async () => {
        aborted = true;
        body.destroy(new Error('aborted'));
        await done.catch(() => {});
        await rm(partial, { force: true });
      },
    };
  }

  /** Called for each reserved key before a run rewrites it: drop what a killed process left. */
  async abortIncomplete(key: string): Promise<void> {
    await rm(this.#under(join(this.dir, '.partial'), key), { force: true });
  }
}

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') {
    process.stderr.write(`library-pipeline: ${name} is required\n`);
    process.exit(2);
  }
  return value;
}

const base = join(tmpdir(), 'atlassian-audit-example');
// The CLI's own parser: 50 (per minute), 300/1m, 10/2s, or 0 for no budget of its own.
let rateLimit: RateBudget | false;
try {
  rateLimit = parseRateBudget(process.env['ATLASSIAN_AUDIT_RATE_LIMIT'] || undefined) ?? { requests: 50, windowMs: 60_000 };
} catch (err) {
  process.stderr.write(`library-pipeline: ATLASSIAN_AUDIT_RATE_LIMIT: ${(err as Error).message}\n`);
  process.exit(2);
}
const store = new ManifestDirStore(process.env['ATLASSIAN_AUDIT_OUT_DIR'] || join(base, 'objects'));

// First signal: stop at the next page, complete the objects in flight, save the checkpoint.
const stop = new AbortController();
process.once('SIGINT', () => stop.abort());
process.once('SIGTERM', () => stop.abort());

try {
  const result = await runPipeline(
    {
      apiUrl: process.env['ATLASSIAN_AUDIT_API_URL'] || 'https://api.atlassian.com',
      orgId: required('ATLASSIAN_AUDIT_ORG_ID'),
      apiKey: required('ATLASSIAN_API_KEY'),
      statePath: process.env['ATLASSIAN_AUDIT_STATE'] || join(base, 'state.json'),
      follow: false, // true: poll every `intervalMs` until `signal`
      rateLimit,
      output: { kind: 'store', store, where: store.dir },
      signal: stop.signal,
    },
    { logger: createLogger({ level: 'warn' }) },
  );
  process.stdout.write(
    `wrote ${result.events} events and ${result.quarantined} quarantined records in ${result.objects} objects to ${result.where}; ` +
      `dropped ${result.duplicates} duplicates; manifest ${store.manifest}; checkpoint ${result.statePath}\n`,
  );
} catch (err) {
  process.stderr.write(`library-pipeline: ${describeError(err)}\n`);
  process.exitCode = err instanceof PipelineError ? err.exitCode : 1;
}
