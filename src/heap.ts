/**
 * How far V8 lets the heap grow between full garbage collections.
 *
 * After each full collection V8 sets the next limit to the live heap times a growing factor.
 * By default the factor is chosen from the collector's and the program's speeds, and for a
 * streaming job (most of the heap is garbage, collections are quick) it is the largest, 4: a
 * replay with about 40 MiB live let its heap reach 180–210 MiB before collecting, and its peak
 * RSS varied with the machine's load (300 MiB here, 398 MiB once in CI). A fixed factor of 2
 * (`--heap-growth 100`, the CLI's default) peaked at 213–225 MiB on the same 2 GiB inputs, for
 * 1–4 % more wall time; README.md "Memory bound" and "Replaying archives" give the measurements.
 *
 * This is a process-wide V8 setting (worker threads share it). The CLI applies it for `run`,
 * `replay` and `demo`; the library never changes it on its own, so an embedding program keeps
 * its own GC behaviour unless it calls {@link setHeapGrowth}.
 */
import { setFlagsFromString } from 'node:v8';

/** The CLI's default: the heap may grow to twice its live size between full collections. */
export const DEFAULT_HEAP_GROWTH_PERCENT = 100;

/** The largest growth accepted: V8's own heuristic never goes above a factor of 4 either. */
export const MAX_HEAP_GROWTH_PERCENT = 300;

/**
 * Sets V8's heap growing factor to `1 + percent / 100` for this process (V8's
 * `--heap-growing-percent`, which it reads each time it sets a new limit). `0` gives the choice
 * back to V8. Throws a RangeError outside 0 to {@link MAX_HEAP_GROWTH_PERCENT}.
 */
export function setHeapGrowth(percent: number): void {
  if (!Number.isInteger(percent) || percent < 0 || percent > MAX_HEAP_GROWTH_PERCENT) {
    throw new RangeError(`heap growth must be a whole percentage from 0 to ${MAX_HEAP_GROWTH_PERCENT}, got ${percent}`);
  }
  setFlagsFromString(`--heap-growing-percent=${percent}`);
}
