/**
 * A Readable of Batches pulled from an async generator, one `next()` per `_read`: the base of the
 * pipeline's sources, so that nothing is produced before the stream is asked for it.
 */
import { Readable } from 'node:stream';
import type { Batch } from '../types.js';

export abstract class GeneratorReadable extends Readable {
  #it: AsyncGenerator<Batch, void, undefined> | undefined;

  constructor(highWaterMark: number) {
    super({ objectMode: true, highWaterMark });
  }

  /** The batches, in order. Called once, on the first read. */
  protected abstract generate(): AsyncGenerator<Batch, void, undefined>;

  override _read(): void {
    (this.#it ??= this.generate()).next().then(
      (r) => {
        if (r.done === true) this.push(null);
        else this.push(r.value);
      },
      (err: unknown) => this.destroy(err as Error),
    );
  }

  /**
   * Ends the generator, running its `finally` blocks; never rejects. A subclass's `_destroy`
   * first aborts whatever the generator awaits, so this does not wait behind it.
   */
  protected async endGenerator(): Promise<void> {
    await this.#it?.return(undefined).catch(() => {});
  }
}
