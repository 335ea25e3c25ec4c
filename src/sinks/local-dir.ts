/**
 * local-dir: the ObjectStore for a local directory, with the same key layout as S3.
 *
 * An object is written to `<dir>/.tmp/<random>`, fsynced, then renamed to `<dir>/<key>`: a file
 * under the prefix is always complete, and a rewrite (after a crash) replaces it atomically.
 * `.tmp/` holds only unfinished files; the store empties it when it starts.
 */
import { createWriteStream, mkdirSync, rmSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve, sep } from 'node:path';
import { Writable } from 'node:stream';
import { SinkError } from '../errors.js';
import { createBody, createObjectSink, type ObjectKind, type ObjectSink, type ObjectSinkDeps, type ObjectSinkOptions, type ObjectStore, type ObjectUpload } from './object-sink.js';

export interface LocalDirStoreOptions {
  /** Root directory; keys become paths below it. Created if missing. */
  dir: string;
}

export class LocalDirStore implements ObjectStore {
  readonly #dir: string;
  readonly #tmp: string;

  constructor(options: LocalDirStoreOptions) {
    this.#dir = resolve(options.dir);
    this.#tmp = join(this.#dir, '.tmp');
    try {
      // Anything left here was being written when a process died: it never became an object.
      rmSync(this.#tmp, { recursive: true, force: true });
      mkdirSync(this.#tmp, { recursive: true });
    } catch (err) {
      throw new SinkError(`cannot write to the output directory ${this.#dir} (--out-dir): ${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`.replace(/\s+/g, ' '), { cause: err });
    }
  }

  #path(key: string): string {
    const p = resolve(this.#dir, key);
    if (!p.startsWith(this.#dir + sep)) throw new RangeError(`object key escapes the output directory: ${key}`);
    return p;
  }

  describe(key: string): string {
    return this.#path(key);
  }

  open(key: string, _kind: ObjectKind): ObjectUpload {
    const target = this.#path(key);
    const tmp = join(this.#tmp, `${randomBytes(8).toString('hex')}.part`);
    const body = createBody();
    let aborted = false;
    const done = (async () => {
      await new Promise<void>((res, rej) => {
        const out = createWriteStream(tmp, { mode: 0o644 });
        body.pipe(out);
        out.on('close', res);
        out.on('error', rej);
        body.on('error', rej);
        body.on('close', () => {
          if (!body.readableEnded) {
            out.destroy();
            rej(new Error('object body closed before its end'));
          }
        });
      });
      // fsync through a fresh descriptor: it flushes the file, whichever descriptor wrote it.
      const fh = await open(tmp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      if (aborted) throw new Error('aborted');
      await mkdir(dirname(target), { recursive: true });
      await rename(tmp, target);
      const d = await open(dirname(target), 'r');
      try { await d.sync(); } finally { await d.close(); }
    })();
    done.catch(() => {});
    return {
      body: body as Writable & NodeJS.WritableStream,
      done,
      abort: async () => {
        aborted = true;
        body.destroy();
        await done.catch(() => {});
        await rm(tmp, { force: true });
      },
    };
  }

  /** The start-up check: a file can be written, synced and removed in the output directory. */
  async check(_prefixes: readonly string[]): Promise<void> {
    const probe = join(this.#tmp, `check-${randomBytes(8).toString('hex')}`);
    try {
      await mkdir(this.#tmp, { recursive: true });
      const fh = await open(probe, 'w');
      try {
        await fh.writeFile('check');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rm(probe);
    } catch (err) {
      throw new SinkError(`cannot write to the output directory ${this.#dir} (--out-dir): ${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`.replace(/\s+/g, ' '), { cause: err });
    }
  }

  async abortIncomplete(_key: string): Promise<void> {
    // Incomplete files live only in .tmp/, emptied at start.
  }
}

export interface LocalDirSinkOptions extends ObjectSinkOptions, LocalDirStoreOptions {}

/** The sink writing to a local directory: `createObjectSink` over a LocalDirStore. */
export function createLocalDirSink(options: LocalDirSinkOptions, deps: Omit<ObjectSinkDeps, 'store'>): ObjectSink {
  return createObjectSink(options, { ...deps, store: new LocalDirStore(options) });
}
