/**
 * An order-independent fingerprint of a set of events, to compare what landed in S3 with the
 * simulator's ground truth without shipping a million events between processes.
 */
import { createHash } from 'node:crypto';

export interface Digest {
  events: number;
  distinctIds: number;
  /** sha256 over the events sorted by id, each as `id TAB JSON.stringify(event) LF`. */
  sha256: string;
}

export function eventDigest(events: Iterable<unknown>): Digest {
  const lines: [string, string][] = [];
  for (const e of events) {
    const id = String((e as { id?: unknown }).id);
    lines.push([id, `${id}\t${JSON.stringify(e)}\n`]);
  }
  lines.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  const h = createHash('sha256');
  for (const [, l] of lines) h.update(l);
  return { events: lines.length, distinctIds: new Set(lines.map((l) => l[0])).size, sha256: h.digest('hex') };
}
