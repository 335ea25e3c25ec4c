/**
 * page-workers: runs {@link processPage} on worker threads, so the JSON work of a page (decoding,
 * JSON.parse, validation, normalisation, writing the lines) leaves the main thread, which keeps
 * the HTTP requests, dedupe, the sink and the checkpoint.
 *
 * Order: each call returns its own promise; the source awaits one page before it asks for the
 * next (the next cursor is inside the page), so pages come back in order by construction.
 * Transfer: the body goes to the worker and the finished lines come back as transferred
 * ArrayBuffers, not copies.
 * Memory: one page body and its lines per call in flight, plus one V8 isolate per worker.
 * Errors: a worker that dies (out of memory on a pathological page, say) fails the calls in
 * flight with a reason, as a malformed page would; the next call starts a fresh worker.
 * `workers: 0` runs the same function inline, on the calling thread.
 */
import { Worker } from 'node:worker_threads';
import { processPage, type ProcessedPage, type ProcessPageOptions } from './page-process.js';

/** What a worker answers for one page. */
export type PageReply = { seq: number; page: ProcessedPage } | { seq: number; reason: string };

/** What the worker thread is sent for one page. */
export interface PageRequest {
  seq: number;
  body: Uint8Array;
  options: ProcessPageOptions;
}

interface Pending {
  resolve: (r: ProcessedPage | string) => void;
  worker: Worker;
}

/** See #spawn. */
const WORKER_YOUNG_GENERATION_MB = 8;

/** Call close() when done: live workers keep the process alive. */
export class PageProcessor {
  readonly #size: number;
  readonly #workers: (Worker | undefined)[];
  readonly #pending = new Map<number, Pending>();
  #seq = 0;
  #next = 0;
  #closed = false;

  /** `workers`: threads to spread pages over (0: inline on this thread). */
  constructor(workers: number) {
    if (!Number.isInteger(workers) || workers < 0) throw new RangeError(`page workers must be a whole number ≥ 0, got ${workers}`);
    this.#size = workers;
    this.#workers = new Array<Worker | undefined>(workers).fill(undefined);
  }

  /** The page processed, or the reason it is unusable. Never rejects for what the page holds. */
  process(body: Uint8Array, options: ProcessPageOptions): Promise<ProcessedPage | string> {
    if (this.#closed) return Promise.reject(new Error('the page processor is closed'));
    if (this.#size === 0) {
      try {
        return Promise.resolve(processPage(body, options));
      } catch (err) {
        return Promise.resolve(`page processing failed: ${(err as Error).message}`);
      }
    }
    const slot = this.#next;
    this.#next = (this.#next + 1) % this.#size;
    const worker = (this.#workers[slot] ??= this.#spawn(slot));
    const seq = this.#seq++;
    return new Promise<ProcessedPage | string>((resolve) => {
      this.#pending.set(seq, { resolve, worker });
      // A body that is a view on a larger (or pooled) ArrayBuffer is copied; one of its own moves.
      const own = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength && !(body.buffer instanceof SharedArrayBuffer);
      const message: PageRequest = { seq, body, options };
      worker.postMessage(message, own ? [body.buffer as ArrayBuffer] : []);
    });
  }

  /** Stops the workers; calls in flight answer with a reason. */
  async close(): Promise<void> {
    this.#closed = true;
    const all = this.#workers.filter((w): w is Worker => w !== undefined);
    this.#workers.fill(undefined);
    await Promise.all(all.map((w) => w.terminate()));
  }

  #spawn(slot: number): Worker {
    // A young generation of 8 MiB instead of V8's default (up to 3 × 16 MiB): a page's objects
    // die within its processing either way, and each worker's RSS is some 30 MB smaller. Only the
    // young generation: an old-generation limit ends a worker with a fatal, process-wide OOM.
    const worker = new Worker(new URL('./page-worker.js', import.meta.url), { resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB } });
    worker.on('message', (reply: PageReply) => {
      const p = this.#pending.get(reply.seq);
      if (p === undefined) return;
      this.#pending.delete(reply.seq);
      p.resolve('page' in reply ? reply.page : reply.reason);
    });
    const fail = (why: string): void => {
      if (this.#workers[slot] === worker) this.#workers[slot] = undefined;
      for (const [seq, p] of this.#pending) {
        if (p.worker !== worker) continue;
        this.#pending.delete(seq);
        p.resolve(why);
      }
    };
    worker.on('error', (err: Error) => fail(`page processing failed: ${(err as { code?: string }).code ?? err.message}`));
    worker.on('exit', (code) => fail(this.#closed ? 'the page processor was closed' : `page processing failed: the worker exited (${code})`));
    return worker;
  }
}
