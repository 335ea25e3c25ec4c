/**
 * The simulator's log: every record of the stream, in stream (processedAt) order, as UTF-8 JSON
 * text rendered once.
 *
 * Texts live in 16 MiB Buffer slabs outside the V8 heap, so 1M events (~1.3 GB) neither press
 * the heap limit nor slow the garbage collector, and a page is one copy of byte ranges into the
 * response buffer. Per record the store keeps 21 bytes in typed arrays: slab, offset, length,
 * sort key and kind. An identical re-delivery points at its original's bytes.
 */

/** What a record is, for the ground truth. */
export const RecordKind = {
  /** First delivery of a valid event. */
  Valid: 0,
  /** A malformed record. */
  Invalid: 1,
  /** An identical re-delivery of an earlier valid event. */
  Duplicate: 2,
  /** A re-delivery with changed content. */
  DuplicateVariant: 3,
} as const;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];

const SLAB_BYTES = 16 * 1024 * 1024;

export class RecordStore {
  #slabs: Buffer[] = [];
  #cur: Buffer = Buffer.alloc(0);
  #curUsed = 0;
  #slab = new Uint32Array(1024);
  #off = new Uint32Array(1024);
  #len = new Uint32Array(1024);
  #key = new Float64Array(1024);
  #kind = new Uint8Array(1024);
  #length = 0;
  /** Bytes of text stored (re-deliveries sharing bytes count once). */
  bytes = 0;

  get length(): number {
    return this.#length;
  }

  /** Appends a record's JSON text with its sort key (processedAt, epoch ms). Keys must not decrease. */
  push(text: string, key: number, kind: RecordKind): number {
    // A UTF-16 code unit takes at most 3 UTF-8 bytes: when that fits, write without measuring.
    if (this.#curUsed + text.length * 3 > this.#cur.length) {
      const need = Buffer.byteLength(text);
      if (this.#curUsed + need > this.#cur.length) {
        this.#cur = Buffer.allocUnsafe(Math.max(SLAB_BYTES, need));
        this.#slabs.push(this.#cur);
        this.#curUsed = 0;
      }
    }
    const n = this.#cur.write(text, this.#curUsed, 'utf8');
    const i = this.#append(this.#slabs.length - 1, this.#curUsed, n, key, kind);
    this.#curUsed += n;
    this.bytes += n;
    return i;
  }

  /** Appends a record whose bytes are those of record `of`. */
  pushCopy(of: number, key: number, kind: RecordKind): number {
    return this.#append(this.#slab[of] as number, this.#off[of] as number, this.#len[of] as number, key, kind);
  }

  key(i: number): number {
    return this.#key[i] as number;
  }

  kind(i: number): RecordKind {
    return this.#kind[i] as RecordKind;
  }

  byteLength(i: number): number {
    return this.#len[i] as number;
  }

  text(i: number): string {
    const slab = this.#slabs[this.#slab[i] as number] as Buffer;
    const off = this.#off[i] as number;
    return slab.toString('utf8', off, off + (this.#len[i] as number));
  }

  /** Copies record `i`'s bytes into `target` at `at`; returns the bytes copied. */
  copyTo(i: number, target: Buffer, at: number): number {
    const slab = this.#slabs[this.#slab[i] as number] as Buffer;
    const off = this.#off[i] as number;
    return slab.copy(target, at, off, off + (this.#len[i] as number));
  }

  /**
   * The id of a valid record or re-delivery, read from its first bytes: the factory renders
   * `{"id":"<36-char uuid>"` first. Undefined for other records.
   */
  id(i: number): string | undefined {
    const k = this.#kind[i];
    if (k === RecordKind.Invalid || k === undefined) return undefined;
    const slab = this.#slabs[this.#slab[i] as number] as Buffer;
    const off = this.#off[i] as number;
    return slab.toString('latin1', off + 7, off + 43);
  }

  /** First index whose key is ≥ `key` (the length if none). */
  lowerBound(key: number): number {
    let lo = 0;
    let hi = this.#length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#key[mid] as number) < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  #append(slab: number, off: number, len: number, key: number, kind: RecordKind): number {
    const i = this.#length;
    if (i > 0 && key < (this.#key[i - 1] as number)) throw new RangeError(`sort key ${key} < previous ${this.#key[i - 1]}`);
    if (i === this.#slab.length) this.#grow();
    this.#slab[i] = slab;
    this.#off[i] = off;
    this.#len[i] = len;
    this.#key[i] = key;
    this.#kind[i] = kind;
    this.#length = i + 1;
    return i;
  }

  #grow(): void {
    const cap = this.#slab.length * 2;
    const grow = <T extends Uint32Array | Float64Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(cap);
      b.set(a);
      return b;
    };
    this.#slab = grow(this.#slab, (n) => new Uint32Array(n));
    this.#off = grow(this.#off, (n) => new Uint32Array(n));
    this.#len = grow(this.#len, (n) => new Uint32Array(n));
    this.#key = grow(this.#key, (n) => new Float64Array(n));
    this.#kind = grow(this.#kind, (n) => new Uint8Array(n));
  }
}
