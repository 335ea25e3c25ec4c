/**
 * Seeded pseudo-random numbers for the simulator.
 *
 * sfc32 (Chris Doty-Humphrey's Small Fast Counting generator): 128 bits of state, four 32-bit
 * additions per draw, period at least 2^32 and typically ~2^127, passes PractRand. It is not
 * cryptographic; the simulator only needs output that looks random and is identical for the
 * same seed on every run. The state is seeded from SHA-256 of the seed and a stream label, so
 * independent streams (event content, faults) never shift each other.
 */
import { createHash } from 'node:crypto';

const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export class Prng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /** `label` selects an independent stream for the same seed. */
  constructor(seed: number | string, label = '') {
    const h = createHash('sha256').update(`${seed}\u0000${label}`).digest();
    this.#a = h.readUInt32LE(0);
    this.#b = h.readUInt32LE(4);
    this.#c = h.readUInt32LE(8);
    this.#d = h.readUInt32LE(12) | 1;
    // Discard the first outputs: sfc32 mixes its state in a dozen rounds.
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** Uniform integer in [0, 2^32). */
  u32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }

  /** Uniform float in [0, 1). */
  next(): number {
    return this.u32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Uniform integer in [lo, hi], both inclusive. */
  range(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list');
    return items[this.int(items.length)] as T;
  }

  /** Picks by weight: `[[value, weight], ...]`. */
  weighted<T>(items: ReadonlyArray<readonly [T, number]>): T {
    let total = 0;
    for (const [, w] of items) total += w;
    let r = this.next() * total;
    for (const [v, w] of items) {
      r -= w;
      if (r < 0) return v;
    }
    const last = items[items.length - 1];
    if (last === undefined) throw new RangeError('weighted pick from an empty list');
    return last[0];
  }

  /** `bytes` random bytes as lowercase hex. */
  hex(bytes: number): string {
    let s = '';
    let word = 0;
    for (let i = 0; i < bytes; i++) {
      if ((i & 3) === 0) word = this.u32();
      s += HEX[(word >>> ((i & 3) * 8)) & 0xff];
    }
    return s;
  }

  /** A random UUID formatted as version 4 (RFC 9562): 122 random bits. */
  uuid(): string {
    const h = this.hex(16);
    const variant = HEX[0x80 | (parseInt(h.slice(16, 18), 16) & 0x3f)] as string;
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(18, 20)}-${h.slice(20, 32)}`;
  }
}
