/**
 * Times bodies: warm-up calls, then R runs (default 5) of N timed calls each, reporting the
 * median, min and max of events/s (and MB/s) over the runs, and the CPU time of each run.
 *
 * How to read it: the median is the number to quote; min–max is the spread over runs and shows
 * how noisy the machine was. CPU is the process's user+system time (all its threads: GC helpers
 * and the libuv pool for node:zlib) plus, on Linux, that of child processes reaped during the
 * call (zstd), so "CPU per event" stays comparable between an in-process and a spawned codec.
 *
 * Several bodies compared with each other are measured interleaved (run 1 of each, then run 2
 * of each, ...; the order rotates per run), so a burst of load from a neighbour on this shared
 * machine hits ours and the baseline alike instead of whichever ran at that moment. Their ratio
 * is taken run by run (run k of ours ÷ run k of the baseline) and then summarised.
 *
 * Setup runs before every timed call and is not timed: the stages work on batches in place, so
 * each call needs fresh input. If Node runs with --expose-gc, a full GC follows setup (untimed),
 * so garbage left by setup or by the previous call is not collected on the next call's clock.
 */
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

export interface Case {
  /** Prepares the input of one call (untimed). */
  setup?: () => unknown | Promise<unknown>;
  /** The timed work. Its result is kept, so the work cannot be optimised away. */
  body: () => unknown | Promise<unknown>;
  /** Events handled by one call of `body`. */
  events: number;
  /** Bytes handled by one call, for MB/s; omit where MB/s means nothing. */
  bytes?: number;
}

export interface MeasureOptions {
  /** Timed calls per run. Default 1 (a call is a whole pass over the events). */
  iterations?: number;
  /** Untimed calls of each body before the first run. Default 1. */
  warmup?: number;
  /** Runs. Default 5. */
  repeat?: number;
}

export interface RunSample {
  /** Wall time of the run's timed calls, seconds. */
  seconds: number;
  eventsPerSec: number;
  mbPerSec?: number;
  /** This process's user+system CPU during the timed calls, seconds. */
  cpuSeconds: number;
  /** CPU of child processes reaped during the timed calls, seconds (0 where unknown). */
  childCpuSeconds: number;
}

export interface Stats {
  median: number;
  min: number;
  max: number;
}

export interface Measurement {
  runs: RunSample[];
  eventsPerSec: Stats;
  mbPerSec?: Stats;
  /** Median over runs of (process + child CPU) per event, microseconds. */
  cpuPerEventUs: number;
  /** Median over runs of (process + child CPU) ÷ wall time: 1.0 is one core busy throughout. */
  cpuPerWall: number;
}

export function stats(values: readonly number[]): Stats {
  if (values.length === 0) return { median: NaN, min: NaN, max: NaN };
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]! };
}

/** Run-by-run ratio a÷b of events/s (both measured interleaved, same number of runs). */
export function ratio(a: Measurement, b: Measurement): Stats {
  const n = Math.min(a.runs.length, b.runs.length);
  const r: number[] = [];
  for (let i = 0; i < n; i++) r.push(a.runs[i]!.eventsPerSec / b.runs[i]!.eventsPerSec);
  return stats(r);
}

/** Results of timed bodies end up here, so V8 cannot drop the work as dead code. */
export let blackhole: unknown;

const gc = (globalThis as { gc?: () => void }).gc;

/** True when full GCs between calls are possible (node --expose-gc). */
export const canCollect = gc !== undefined;

let clockTicks: number | undefined;

/**
 * CPU seconds of this process's reaped children (utime+stime of /proc/self/stat's cutime and
 * cstime), or 0 where /proc is not there. Resolution is one clock tick (10 ms): fine for calls of
 * a second, meaningless for a call of a millisecond.
 */
function childCpuSeconds(): number {
  let stat: string;
  try {
    stat = readFileSync('/proc/self/stat', 'latin1');
  } catch {
    return 0;
  }
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 16 and 17 of proc(5) are cutime and cstime; fields[0] here is field 3.
  return (Number(fields[13]) + Number(fields[14])) / clockTicks;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

async function call(c: Case): Promise<{ ns: bigint; cpu: number; child: number }> {
  if (c.setup !== undefined) {
    const s = c.setup();
    if (isThenable(s)) await s;
  }
  gc?.();
  const child0 = childCpuSeconds();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let r = c.body();
  if (isThenable(r)) r = await r;
  const t1 = process.hrtime.bigint();
  const cpu = process.cpuUsage(cpu0);
  const child1 = childCpuSeconds();
  blackhole = r;
  return { ns: t1 - t0, cpu: (cpu.user + cpu.system) / 1e6, child: child1 - child0 };
}

function summarise(c: Case, runs: RunSample[]): Measurement {
  const m: Measurement = {
    runs,
    eventsPerSec: stats(runs.map((r) => r.eventsPerSec)),
    cpuPerEventUs: stats(runs.map((r) => ((r.cpuSeconds + r.childCpuSeconds) / (r.eventsPerSec * r.seconds)) * 1e6)).median,
    cpuPerWall: stats(runs.map((r) => (r.cpuSeconds + r.childCpuSeconds) / r.seconds)).median,
  };
  if (c.bytes !== undefined) m.mbPerSec = stats(runs.map((r) => r.mbPerSec ?? NaN));
  return m;
}

/**
 * Measures each case, interleaved: warm-up calls of every case, then `repeat` rounds in which
 * each case does one run of `iterations` timed calls. `onRun` is told after each run (progress).
 */
export async function measureAll<const K extends string>(
  cases: Record<K, Case>,
  options: MeasureOptions = {},
  onRun?: (name: NoInfer<K>, round: number, sample: RunSample) => void,
): Promise<Record<K, Measurement>> {
  const iterations = options.iterations ?? 1;
  const warmup = options.warmup ?? 1;
  const repeat = options.repeat ?? 5;
  if (!(iterations >= 1 && warmup >= 0 && repeat >= 1)) throw new RangeError('iterations and repeat must be >= 1, warmup >= 0');
  const names = Object.keys(cases) as K[];
  for (const name of names) for (let i = 0; i < warmup; i++) await call(cases[name]);
  const runs = new Map<K, RunSample[]>(names.map((n) => [n, []]));
  for (let round = 0; round < repeat; round++) {
    // Rotate who goes first, so no case always runs right after the same other one.
    for (let k = 0; k < names.length; k++) {
      const name = names[(k + round) % names.length]!;
      const c = cases[name];
      let ns = 0n;
      let cpu = 0;
      let child = 0;
      for (let i = 0; i < iterations; i++) {
        const t = await call(c);
        ns += t.ns;
        cpu += t.cpu;
        child += t.child;
      }
      const seconds = Number(ns) / 1e9;
      const sample: RunSample = { seconds, eventsPerSec: (c.events * iterations) / seconds, cpuSeconds: cpu, childCpuSeconds: child };
      if (c.bytes !== undefined) sample.mbPerSec = (c.bytes * iterations) / seconds / 1e6;
      runs.get(name)!.push(sample);
      onRun?.(name, round, sample);
    }
  }
  const out = {} as Record<K, Measurement>;
  for (const name of names) out[name] = summarise(cases[name], runs.get(name)!);
  return out;
}

/** Measures one body on its own (see {@link measureAll}). */
export async function measure(c: Case, options: MeasureOptions = {}): Promise<Measurement> {
  return (await measureAll({ only: c }, options)).only;
}
