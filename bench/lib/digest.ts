/**
 * An order-independent fingerprint of a set of events, to compare what landed in S3 with the
 * simulator's ground truth without shipping a million events between processes or holding their
 * text: each event is hashed as it is added, and only (id, hash) pairs are kept.
 */
import { createHash } from 'node:crypto';

export interface Digest {
  events: number;
  distinctIds: number;
  /** sha256 over the events sorted by id, each contributing sha256(`id TAB JSON.stringify(event)`). */
  sha256: string;
}

export class DigestBuilder {
  readonly #pairs: [string, string][] = [];

  add(event: unknown): void {
    const id = String((event as { id?: unknown }).id);
    this.#pairs.push([id, createHash('sha256').update(`${id}\t${JSON.stringify(event)}`).digest('base64')]);
  }

  finish(): Digest {
    const p = this.#pairs;
    p.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    const h = createHash('sha256');
    for (const [id, hash] of p) h.update(`${id}\t${hash}\n`);
    return { events: p.length, distinctIds: new Set(p.map((x) => x[0])).size, sha256: h.digest('hex') };
  }
}
